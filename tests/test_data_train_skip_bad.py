"""`ducktune train` on bad data: refuses with the exact lines, or with --skip-bad trains on the good
records and reports how many were skipped (end to end, tiny model)."""

from __future__ import annotations

import json

from data_support import run_cli

GOOD = [f'{{"instruction": "Question {i}?", "output": "Answer {i}."}}' for i in range(6)]
BAD = ['{"instruction": "q", "output": ""}', "not json", '{"instruction": "q", "output": 3}']


def test_train_refuses_then_skip_bad_trains_on_the_good_records(tmp_path, tiny_qwen, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(GOOD[:3] + BAD + GOOD[3:]) + "\n")
    run_dir = tmp_path / "run"
    settings = ["--set", f"model.name_or_path={tiny_qwen}", "--set", f"data.datasets=[{data}]",
                "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "eval.max_new_tokens=2",
                "--set", "data.cutoff_len=64", "-o", run_dir, "--no-progress"]

    code, _, err = run_cli(capsys, "train", *settings)
    assert code == 2
    assert err.splitlines() == [
        f"error: {data}:4: output: empty assistant answer",
        f"error: {data}:5:1: (json): invalid JSON: Expecting value",
        f"error: {data}:6: output: must be a string, got int",
        "error: 3 problems: the training data has problems; fix them or pass --skip-bad to train on the good records",
    ]
    assert not run_dir.exists()  # nothing written on refusal

    code, out, err = run_cli(capsys, "train", *settings, "--skip-bad")
    assert code == 0, err
    assert "Data: 6 train / 0 validation samples" in out and "3 bad records skipped" in out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["data"]["train_samples"] == 6 and info["data"]["skipped_bad"] == 3
