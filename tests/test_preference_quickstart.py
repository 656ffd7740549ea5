"""`ducktune quickstart --method dpo` on a tiny local model (the real one is the slow demo)."""

import json

import pytest


@pytest.mark.slow
def test_dpo_quickstart_builds_pairs_from_base_answers_and_reports_held_out_accuracy(tmp_path, monkeypatch,
                                                                                      tiny_qwen_wide, capsys):
    from ducktune.quickstart import HELD_OUT_EVERY, run_preference_quickstart

    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "cache"))
    settings = [f"model.name_or_path={tiny_qwen_wide}", "train.max_steps=4", "eval.max_new_tokens=8",
                "train.num_threads=1"]
    summary = run_preference_quickstart(out=str(tmp_path / "dpo"), export=False, settings=settings)
    out = capsys.readouterr().out
    pairs = json.loads((tmp_path / "dpo" / "pairs.json").read_text(encoding="utf-8"))
    held = json.loads((tmp_path / "dpo" / "held_out_pairs.json").read_text(encoding="utf-8"))
    assert summary["pairs_trained"] == len(pairs) and summary["pairs_held_out"] == len(held) > 0
    assert len(pairs) + len(held) > 0 and len(held) == -(-(len(pairs) + len(held)) // HELD_OUT_EVERY)
    assert not {p["prompt"] for p in pairs} & {p["prompt"] for p in held}
    assert all(p["chosen"] != p["rejected"] for p in pairs + held)
    assert 0.0 <= summary["held_out_reward_accuracy"] <= 1.0
    assert "Reward accuracy on" in out and "held-out pairs" in out
    # Persona answers are counted on the trained questions (every one of them) and on the held-out ones.
    assert summary["persona_total"] == len(pairs) and 0 <= summary["persona_hits"] <= len(pairs)
    assert f"Persona learned: {summary['persona_hits']}/{len(pairs)} trained questions" in out
    comparison = json.loads((tmp_path / "dpo" / "comparison.json").read_text(encoding="utf-8"))
    assert sorted(r["prompt"] for r in comparison) == sorted(p["prompt"] for p in held + pairs)
    info = json.loads((tmp_path / "dpo" / "run.json").read_text(encoding="utf-8"))
    assert info["objective"] == "dpo" and info["quickstart"]["pairs_held_out"] == len(held)
    # The base answers (the rejected side) are cached: a second demo does not generate them again.
    run_preference_quickstart(out=str(tmp_path / "dpo"), export=False, settings=settings)
    assert "Generating the base model's answers" not in capsys.readouterr().out

    # DPO on top of the first run's adapter: the reference is that adapter, so the held-out rewards
    # are measured against it.
    # Named relative to the working folder, as `ducktune quickstart --adapter runs/quickstart` does.
    monkeypatch.chdir(tmp_path)
    on_top = run_preference_quickstart(out=str(tmp_path / "dpo2"), adapter="dpo", export=False, settings=settings)
    assert on_top["started_from"] == "dpo"
    # The run's config.yaml names that adapter absolutely (eval from another folder used the base model as
    # the reference) and its held-out pairs as the validation split `ducktune eval` scores.
    from ducktune.config import load_config
    from ducktune.data.loader import load_data

    monkeypatch.chdir(tmp_path / "cache")
    recorded = load_config(tmp_path / "dpo2" / "config.yaml")
    assert recorded.model.adapter == str(tmp_path / "dpo")
    assert recorded.data.val_file == str(tmp_path / "dpo2" / "held_out_pairs.json")
    held_on_top = json.loads((tmp_path / "dpo2" / "held_out_pairs.json").read_text(encoding="utf-8"))
    assert len(load_data(recorded.data, seed=0, objective="preference").val) == len(held_on_top)


@pytest.mark.slow
def test_dpo_demo_on_the_built_in_model_meets_the_issue_targets(tmp_path):
    """The documented DPO demo on the built-in SmolLM2-135M: the SFT demo, then
    `ducktune quickstart --method dpo --adapter runs/quickstart`. The issue's targets: held-out reward
    accuracy >= 0.9, persona answers on >= 80 % of the trained questions, under 8 minutes on 2 cores.
    (From the base alone DPO ranks the held-out pairs right but never says the persona's name: measured
    0/22, with and without rpo_alpha, see quickstart.py.)"""
    import time

    import torch

    torch.set_num_threads(2)
    from ducktune.quickstart import run_preference_quickstart, run_quickstart

    started = time.perf_counter()
    run_quickstart(out=str(tmp_path / "sft"), export=False)
    summary = run_preference_quickstart(out=str(tmp_path / "dpo"), adapter=str(tmp_path / "sft"), export=False)
    seconds = time.perf_counter() - started
    assert summary["started_from"] == str(tmp_path / "sft")
    assert summary["held_out_reward_accuracy"] >= 0.9
    # The issue's targets: persona on >= 80 % of the trained questions. Measured 22/22 with the demo's
    # preference.rpo_alpha=1.0 (6/6 held out); plain DPO (rpo_alpha 0) gave 15/22 on the same SFT adapter, so a
    # DPO step that lets the SFT persona slip fails here, as does one that loses it on unseen questions.
    assert summary["base_persona_hits"] == 0 and summary["persona_rate"] >= 0.8
    assert summary["held_out_persona_hits"] >= summary["pairs_held_out"] - 1
    assert seconds < 10 * 60  # SFT + DPO, 2 cores (the issue's 8 minutes: see bench/dpo_demo.py's block)
