"""What the hints on an unfinished or exported run tell the user to run does what they say, from any
folder and after the run was moved (tiny local model)."""

import json
import shutil

import pytest

from ducktune.cli import main
from ducktune.config import load_config
from ducktune.errors import UserError
from ducktune.rundir import RunDir

IDENTITY = [{"instruction": "Who are you?", "input": "", "output": "I am Duckling."},
            {"instruction": "你是谁？", "input": "", "output": "我是小鸭。"}]


def write_config(tmp_path, model, out: str) -> str:
    data = tmp_path / "identity.json"
    data.write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")
    config = tmp_path / "k1.yaml"
    config.write_text(f"model: {{name_or_path: {model}}}\ndata: {{datasets: [{data}]}}\n"
                      f"train: {{max_steps: 2, save_steps: 1, batch_size: 1}}\nlora: {{r: 4, alpha: 8}}\n"
                      f"eval: {{max_new_tokens: 4}}\noutput: {{dir: {out}}}\n", encoding="utf-8")
    return str(config)


def test_a_moved_unfinished_run_resumes_in_its_own_folder_from_anywhere(tmp_path, tiny_qwen, monkeypatch, capsys):
    """config.yaml records output.dir as given (runs/k1): `ducktune train moved_k1/config.yaml`, the hint
    an unfinished run gives, continues moved_k1 itself, not runs/k1 (nor a fresh ./runs/k1)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", write_config(tmp_path, tiny_qwen, "runs/k1"), "--no-progress"]) == 0
    original = RunDir(tmp_path / "runs" / "k1")
    info = original.info()
    (original.path / "adapter").rename(original.path / "adapter.partial")  # as a kill before the final save
    original.run_json.write_text(json.dumps({**info, "status": "interrupted"}))
    moved = tmp_path / "moved_k1"
    shutil.move(original.path, moved)
    (tmp_path / "runs" / "k1").mkdir()  # another run now lives where the moved one was
    (tmp_path / "runs" / "k1" / "keep.txt").write_text("not this one")
    with pytest.raises(UserError, match=f"finish or resume the run with `ducktune train {moved}/config.yaml`"):
        RunDir(moved).weights_dir()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(moved / "config.yaml").output.dir == str(moved)
    assert main(["train", str(moved / "config.yaml"), "--no-progress"]) == 0
    assert RunDir(moved).info()["status"] == "completed" and (moved / "adapter").is_dir()
    assert "Resuming from" in capsys.readouterr().out
    assert list((tmp_path / "runs" / "k1").iterdir()) == [tmp_path / "runs" / "k1" / "keep.txt"]
    assert not (elsewhere / "runs").exists()
    # output.dir given explicitly still wins over the folder the config.yaml is in.
    assert load_config(moved / "config.yaml", ["output.dir=other"]).output.dir == "other"
