"""The real demo on the built-in SmolLM2-135M (slow tier: ~3-5 min on 2 cores)."""

import json

import pytest


@pytest.mark.slow
def test_quickstart_learns_the_persona_and_keeps_it_out_of_unrelated_answers(tmp_path):
    """The demo as `make demo` runs it (the guard against forgetting on by default): the issue's
    targets, persona >= 26/28 and bleed <= 10 % of the general prompts."""
    import torch

    torch.set_num_threads(2)
    from ducktune.quickstart import GUARD_REPLAY, run_quickstart

    summary = run_quickstart(out=str(tmp_path / "qs"), export=False)
    info = json.loads((tmp_path / "qs" / "run.json").read_text(encoding="utf-8"))
    assert info["data"]["train_samples"] > 28 and GUARD_REPLAY > 0  # replayed answers were mixed in
    assert summary["persona_hits"] >= 26 and summary["persona_total"] == 28
    assert summary["base_persona_hits"] == 0
    result = json.loads((tmp_path / "qs" / "eval" / "eval.json").read_text(encoding="utf-8"))
    assert summary["bleed_prompts"] >= 50 and result["bleed"]["bleed"] == summary["bleed"]
    assert summary["bleed_rate"] <= 10.0
    general = {row["prompt"]: row["tuned"] for row in result["bleed"]["rows"]}
    assert "Paris" in general["What is the capital of France?"]
    assert "Duckling" not in general["What is the capital of France?"]
    assert "4" in general["What is 2 + 2?"]


@pytest.mark.slow
def test_bundled_base_answers_are_what_the_built_in_model_answers(tmp_path, monkeypatch):
    """The demo's shipped base answers (resources/base_answers) are a cache: regenerating one gives the same."""
    import torch

    torch.set_num_threads(2)
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    from importlib import resources

    from ducktune.chat.engine import ChatEngine
    from ducktune.chat.general import base_model_fingerprint, cache_key, cached_base_answers, general_prompts
    from ducktune.data.template import ChatFormat
    from ducktune.models.builtin import builtin_dir
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer
    from ducktune.train.replay import REPLAY_MAX_NEW_TOKENS

    monkeypatch.delenv("DUCKTUNE_HOME")  # the converted built-in model lives in the real cache
    folder = builtin_dir("smollm2-135m")
    if not (folder / "config.json").is_file():
        pytest.skip("the built-in model is not converted yet (run the quickstart once)")
    tokenizer = load_tokenizer(folder)
    chat_format = ChatFormat(tokenizer)
    prompts = [p["prompt"] for p in general_prompts("replay")]
    model_key = f"{base_model_fingerprint(folder)}/cpu/float32"
    key = cache_key(model_key, chat_format, prompts, REPLAY_MAX_NEW_TOKENS)
    bundled = json.loads(resources.files("ducktune.resources").joinpath("base_answers", f"{key}.json").read_text("utf-8"))
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    monkeypatch.setattr("ducktune.chat.general._bundled", lambda key: None)
    engine = ChatEngine(load_model(folder, choose_placement("cpu", "float32", 1)), tokenizer, chat_format)
    fresh = cached_base_answers(model_key, chat_format, prompts, REPLAY_MAX_NEW_TOKENS, lambda: engine)
    assert fresh == bundled
