"""The export folder and the run's report agree after any interruption: the new export is verified
before it replaces the previous one; `ducktune verify` is one more writer of the run (tiny model)."""

from __future__ import annotations

import json

import pytest

from export_support import make_lora_run

from ducktune.cli import main
from ducktune.export import pipeline
from ducktune.rundir import WriterLock


def test_an_export_stopped_during_verification_leaves_the_previous_export_and_its_report(tmp_path, tiny_qwen,
                                                                                        monkeypatch):
    run = make_lora_run(tmp_path / "run", tiny_qwen)
    assert main(["export", str(run), "--quant", "f16"]) == 0
    first = json.loads((run / "export" / "export.json").read_text())
    assert "run-f16.gguf" in (run / "report.md").read_text()

    def stopped(*args, **kwargs):  # Ctrl-C (or a kill) while the new export is being verified
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_checks", stopped)
    assert main(["export", str(run), "--quant", "q8_0"]) == 130
    # The previous export, whole, and the report's table naming its files, which are all there.
    assert json.loads((run / "export" / "export.json").read_text()) == first
    assert (run / "export" / "run-f16.gguf").is_file() and not (run / "export" / "run-q8_0.gguf").exists()
    report = (run / "report.md").read_text()
    assert "run-f16.gguf" in report and "run-q8_0.gguf" not in report
    assert json.loads((run / "export" / "verify.json").read_text())["verified"] is True
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]

    monkeypatch.undo()
    assert main(["export", str(run), "--quant", "q8_0"]) == 0
    report = (run / "report.md").read_text()
    assert report.count(pipeline.REPORT_MARKER) == 1 and "run-q8_0.gguf" in report and "run-f16.gguf" not in report
    assert json.loads((run / "export" / "verify.json").read_text())["verified"] is True


def test_verify_waits_for_no_export_and_names_the_export_of_a_run_folder(tmp_path, tiny_qwen, capsys):
    run = make_lora_run(tmp_path / "run", tiny_qwen)
    assert main(["export", str(run), "--quant", "f16"]) == 0
    capsys.readouterr()
    with WriterLock("export") as export:  # an export of the same run still writing
        export.acquire(run)
        assert main(["verify", str(run / "export")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another ducktune process" in errors[0] and "verify" in errors[0], errors
    # The run folder given instead of its export: the command to run.
    assert main(["verify", str(run)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {run}: a run folder, not an export; verify its export with "
                      f"`ducktune verify {run / 'export'}`"]
    assert main(["verify", str(run / "export")]) == 0
