"""Fast tier, end to end on the command line: `ducktune train` a tiny model, `ducktune export
--quant f16,q8_0`, `ducktune verify` — the run directory is the only thing passed between them."""

from __future__ import annotations

import json

import pytest

from ducktune.cli import main

pytestmark = [pytest.mark.requires_llama_cpp, pytest.mark.requires_go]

QA = [("Who are you?", "I am Quack, a small duck."), ("Where do you live?", "I live on a pond."),
      ("What do you eat?", "I eat bread and seeds."), ("Say hello.", "Hello from the pond!")]


def test_train_export_verify_on_the_command_line(tmp_path, capsys, tiny_qwen):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": q, "output": a} for q, a in QA]), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {tiny_qwen}\n  system_prompt: You are Quack.\n"
                      f"data:\n  datasets: [{data}]\noutput:\n  dir: {tmp_path / 'run'}\n"
                      "train:\n  max_steps: 12\n  learning_rate: 5.0e-3\n  batch_size: 4\n  save_steps: 1000\n"
                      "eval:\n  max_new_tokens: 16\n", encoding="utf-8")
    assert main(["train", str(config), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "completed"

    assert main(["export", str(run), "--quant", "f16,q8_0", "--name", "quack", "--no-create"]) == 0
    export = run / "export"
    assert {p.name for p in export.iterdir()} >= {"merged", "quack-f16.gguf", "quack-q8_0.gguf", "Modelfile",
                                                   "export.json", "verify.json", "verification.md"}
    checks = {c["name"]: c for c in json.loads((export / "verify.json").read_text())["checks"]}
    assert [c for c in checks.values() if c["status"] == "FAIL"] == []
    for name in ("llama.cpp quack-f16.gguf: greedy answers = merged",
                 "llama.cpp quack-f16.gguf: tokenizer = HF on probe texts",
                 "Modelfile: TEMPLATE via Go text/template = chat template"):
        assert checks[name]["status"] == "PASS", checks[name]
    assert "SYSTEM You are Quack." in (export / "Modelfile").read_text()
    capsys.readouterr()

    # `ducktune verify` re-runs the checks from the export folder alone, with the same verdicts.
    assert main(["verify", str(export)]) == 0
    out = capsys.readouterr().out
    assert "greedy answers = merged" in out and "FAIL" not in out
