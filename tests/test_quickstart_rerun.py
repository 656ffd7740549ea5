"""The quickstart's run directory on a tiny local model: one writer at a time, and an interrupted
demo is the demo's own (its rerun resumes or replaces it)."""

import json

import pytest

from ducktune.errors import UserError
from ducktune.rundir import RunDir, WriterLock
from ducktune.train import recipe


def tiny_demo(model, *extra) -> tuple[str, ...]:
    return (f"model.name_or_path={model}", "train.max_steps=2", "eval.max_new_tokens=4", "train.save_steps=1",
            *extra)


def test_quickstart_does_not_replace_a_demo_run_another_process_is_writing(tmp_path, tiny_qwen, monkeypatch):
    """`ducktune quickstart --out DIR` while `ducktune export DIR` runs: refused in one line as train is,
    the previous demo run (adapter, report) left whole."""
    from ducktune.quickstart import run_quickstart

    out = tmp_path / "qs"
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (out / "run.json").write_text(json.dumps({"origin": "quickstart", "status": "completed"}))

    def trained(*args, **kwargs):
        raise AssertionError("the demo trained over a run another process is writing")

    monkeypatch.setattr(recipe, "train", trained)
    with WriterLock("export") as export:
        export.acquire(out)
        with pytest.raises(UserError, match="another ducktune process .* is writing to this run directory"):
            run_quickstart(out=str(out), export=False, replay=0, overrides=tiny_demo(tiny_qwen))
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"


def test_an_interrupted_quickstart_is_the_demos_and_its_rerun_resumes_or_replaces_it(tmp_path, tiny_qwen, monkeypatch,
                                                                                      capsys):
    from ducktune.quickstart import run_quickstart

    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "home"))
    out = tmp_path / "qs"

    def interrupted(*args, **kwargs):  # Ctrl-C in the training loop
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "_run_training", interrupted)
    with pytest.raises(UserError, match="interrupted"):
        run_quickstart(out=str(out), export=False, replay=0, overrides=tiny_demo(tiny_qwen))
    info = RunDir(out).info()
    assert info["origin"] == "quickstart" and info["status"] == "interrupted"

    # The same demo again: its own unfinished run, resumed (not "exists and is not a quickstart run").
    capsys.readouterr()
    with pytest.raises(UserError, match="interrupted"):
        run_quickstart(out=str(out), export=False, replay=0, overrides=tiny_demo(tiny_qwen))
    assert "Resuming the unfinished quickstart run" in capsys.readouterr().out
    # Other settings: the unfinished demo run is replaced.
    with pytest.raises(UserError, match="interrupted"):
        run_quickstart(out=str(out), export=False, replay=0, overrides=tiny_demo(tiny_qwen, "train.max_steps=3"))
    out_text = capsys.readouterr().out
    assert "Resuming" not in out_text
    # ... and the user is told why the progress is gone
    assert f"Starting over in {out}: the unfinished quickstart run there used other settings (train.max_steps" in out_text
    assert RunDir(out).info()["origin"] == "quickstart"
    # Not interrupted: the rerun finishes the demo run, in the same folder.
    monkeypatch.undo()
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "home"))
    run_quickstart(out=str(out), export=False, replay=0, overrides=tiny_demo(tiny_qwen))
    info = RunDir(out).info()
    assert info["status"] == "completed" and info["origin"] == "quickstart" and (out / "identity.json").is_file()
