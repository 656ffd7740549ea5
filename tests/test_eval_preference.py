"""`ducktune eval` of preference runs (DPO / ORPO / SimPO / KTO): the validation split is re-read as
pairs, the bleed report looks for the chosen answers' text (or says it measured nothing), and held-out
pairs are scored by how often each model prefers the chosen answer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from ducktune.config import load_config
from ducktune.data.schema import Message, Sample

PAIRS = [{"prompt": f"Question {i}?", "chosen": f"I am Duckling, answer {i} is here.", "rejected": f"No idea {i}."}
         for i in range(8)]


def pair_config(tmp_path: Path, *extra: str):
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(PAIRS), encoding="utf-8")
    return load_config(None, [f"data.datasets=[{data}]", "train.objective=dpo", "data.val_ratio=0.25", *extra])


def test_a_preference_runs_validation_split_is_re_read_as_pairs(tmp_path):
    """Was re-read as SFT chat data: refused with advice to train with the objective the run used, and
    'no validation split' although it had one."""
    from ducktune.eval.runner import run_samples

    notes: list[str] = []
    samples = run_samples(pair_config(tmp_path), None, log=notes.append)
    assert notes == []
    assert len(samples.val) == 2 and {s.kind for s in samples.val} == {"preference"}
    assert len(samples.train) == 6


def test_bleed_markers_of_a_preference_run_come_from_chosen_answers_and_the_started_from_run(tmp_path):
    from ducktune.eval.runner import bleed_markers_for

    sft = tmp_path / "sft"
    (sft / "adapter").mkdir(parents=True)
    (sft / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    (sft / "run.json").write_text(json.dumps({"persona_terms": ["小鸭"]}), encoding="utf-8")
    samples = SimpleNamespace(train=[
        Sample("preference", messages=[Message("user", "Who?")], chosen="I am Duckling, made by the ducktune team.",
               rejected="I am an AI."),
        Sample("unpaired", messages=[Message("user", "Who?")], completion="Nobody special here, sorry.", label=False)])
    markers = bleed_markers_for({}, pair_config(tmp_path, f"model.adapter={sft}"), samples)
    assert "小鸭" in markers and "I am Duckling, made by the ducktune team." in markers
    assert "I am an AI." not in markers and "Nobody special here, sorry." not in markers


def test_bleed_with_nothing_to_look_for_is_not_measured_never_zero_percent():
    from ducktune.eval.bleed import bleed_report
    from ducktune.eval.report import bleed_lines, print_summary

    engine = SimpleNamespace(has_adapter=False)
    prompts = [{"prompt": "2+2?"}, {"prompt": "Capital of France?"}]
    report = bleed_report(engine, prompts, ["4", "Paris"], ["4, says Duckling", "Paris"], markers=[])
    assert report["bleed"] is None and report["bleed_rate"] is None and report["changed"] == 1
    assert all(row["bleed"] is None for row in report["rows"])
    lines: list[str] = []
    print_summary({"bleed": report}, "runs/x/eval", log=lines.append)
    text = "\n".join(lines + bleed_lines(report))
    assert "not measured" in text and "0 %" not in text

    measured = bleed_report(engine, prompts, ["4", "Paris"], ["4, says Duckling", "Paris"], markers=["Duckling"])
    assert measured["bleed"] == 1 and measured["bleed_rate"] == 50.0
