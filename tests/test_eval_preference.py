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


def test_eval_of_dpo_on_an_sft_adapter_scores_its_validation_pairs(tmp_path, tiny_qwen, capsys, monkeypatch):
    """The QA reproduction: DPO with model.adapter on an SFT run and data.val_ratio. eval scores the
    held-out pairs for base, the adapter it started from and tuned, the reward against that adapter,
    finds bleed markers in the chosen answers, and --data accepts pair files (reference: the base)."""
    from ducktune.cli import main
    from ducktune.train import recipe

    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "cache"))
    sft_data = tmp_path / "sft.json"
    sft_data.write_text(json.dumps([{"instruction": p["prompt"], "output": p["chosen"]} for p in PAIRS]))
    common = [f"model.name_or_path={tiny_qwen}", "train.max_steps=2", "train.num_threads=1",
              "train.learning_rate=5e-3", "eval.max_new_tokens=4"]
    # lora.r for the new adapter only: the DPO run continues it (a lora.r there is refused as unused).
    recipe.train(load_config(None, [*common, "lora.r=4", f"data.datasets=[{sft_data}]", f"output.dir={tmp_path / 'sft'}"]),
                 progress=False, compare=False)
    recipe.train(pair_config(tmp_path, *common, f"model.adapter={tmp_path / 'sft'}", f"output.dir={tmp_path / 'dpo'}",
                             "train.batch_size=2"), progress=False, compare=False)
    capsys.readouterr()

    assert main(["eval", str(tmp_path / "dpo"), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "cannot be re-read" not in out and "no validation split" not in out
    assert "Preference on 2 held-out pairs: reward accuracy" in out
    result = json.loads((tmp_path / "dpo" / "eval" / "eval.json").read_text())
    preference = result["preference"]
    assert preference["pairs"] == 2 and preference["reference"] == f"model.adapter: {tmp_path / 'sft'}"
    assert all(preference[side] is not None for side in ("base", "tuned", "started_from"))
    expected = preference["beta"] * (preference["tuned"]["margin"] - preference["started_from"]["margin"])
    assert abs(preference["reward_margin"] - expected) < 1e-3
    assert result["preference_accuracy"]["tuned"] == preference["tuned"]["accuracy"]
    assert result["bleed"]["bleed_rate"] is not None and "I am Duckling, answer 0 is here." in result["bleed"]["markers"]

    pairs = tmp_path / "held.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS[:3]), encoding="utf-8")
    assert main(["eval", str(tmp_path / "sft"), "--data", str(pairs), "--max-new-tokens", "4"]) == 0
    preference = json.loads((tmp_path / "sft" / "eval" / "eval.json").read_text())["preference"]
    assert preference["pairs"] == 3 and preference["reference"] == "base" and preference["started_from"] is None
    assert preference["sets"] == [{"name": str(pairs), "pairs": 3}]
