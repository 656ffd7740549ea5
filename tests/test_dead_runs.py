"""A run killed with SIGKILL leaves run.json saying "running": readers tell it from a live one by the
writer lock (an flock the OS releases when the writer dies) and show it as interrupted."""

import json

import pytest

from ducktune.errors import UserError
from ducktune.rundir import RunDir, WriterLock
from ducktune.ui.runs import run_summary


def test_a_running_run_without_a_live_writer_shows_as_interrupted(tmp_path):
    run = tmp_path / "k1"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running", "method": "lora"}))
    assert run_summary(run)["status"] == "interrupted"  # its writer was killed: nobody holds the lock
    with pytest.raises(UserError, match=r"run status: interrupted"):
        RunDir(run).weights_dir()
    with WriterLock("train") as lock:  # a live training
        lock.acquire(run)
        assert run_summary(run)["status"] == "running"
        assert RunDir(run).status() == "running"
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # readers never rewrite it
    # The probe does not get in a writer's way.
    with WriterLock("train") as lock:
        lock.acquire(run)


def test_export_of_a_run_still_training_says_wait_not_resume(tmp_path):
    """Export beside a live training said "finish it with `ducktune train ...`", which the lock then refuses."""
    from ducktune.export.merge import open_run

    run = tmp_path / "k1"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running", "method": "lora"}))
    with pytest.raises(UserError, match=r"not finished \(status: interrupted\); finish it with `ducktune train "):
        open_run(run)
    with WriterLock("train") as lock:
        lock.acquire(run)
        with pytest.raises(UserError, match=r"not finished \(status: running\): another process is still training "
                                            r"it; wait for it to finish before exporting$"):
            open_run(run)
