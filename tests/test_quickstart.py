"""The real demo on the built-in SmolLM2-135M (slow tier: ~3-5 min on 2 cores)."""

import json

import pytest


@pytest.mark.slow
def test_quickstart_learns_the_persona(tmp_path):
    import torch

    torch.set_num_threads(2)
    from ducktune.quickstart import GENERAL_QUESTIONS, run_quickstart

    summary = run_quickstart(out=str(tmp_path / "qs"), export=False)
    assert summary["persona_rate"] >= 0.9
    assert summary["base_persona_hits"] == 0
    comparison = json.loads((tmp_path / "qs" / "comparison.json").read_text(encoding="utf-8"))
    general = {row["prompt"]: row["tuned"] for row in comparison if row["prompt"] in GENERAL_QUESTIONS}
    assert "Paris" in general["What is the capital of France?"]
    assert "4" in general["What is 2 + 2?"]
