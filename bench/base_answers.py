"""Regenerate the built-in model's bundled base answers (src/ducktune/resources/base_answers/).

The demo's base-model answers are deterministic greedy generations of SmolLM2-135M on the CPU in
fp32; ducktune ships them so `make demo` does not regenerate them on every machine. They are a
cache, keyed exactly as chat/general.py keys ~/.cache/ducktune/base-answers: run this after
changing the demo's prompts, the persona data or the built-in model's conversion.

    .venv/bin/python bench/base_answers.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "src" / "ducktune" / "resources" / "base_answers"


def main() -> None:
    from ducktune.chat.engine import ChatEngine
    from ducktune.chat.general import (base_model_fingerprint, cache_key, cached_base_answers, general_prompts)
    from ducktune.config import load_config
    from ducktune.data.identity import identity_records
    from ducktune.data.template import ChatFormat
    from ducktune.models.builtin import cache_root
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer
    from ducktune.models.sources import resolve_model
    from ducktune.quickstart import DEMO_SETTINGS, PERSONA_AUTHOR, PERSONA_NAME
    from ducktune.train.replay import REPLAY_MAX_NEW_TOKENS

    config = load_config(None, DEMO_SETTINGS)
    folder = resolve_model(config.model.name_or_path)
    placement = choose_placement("cpu", "float32", 135_000_000)
    tokenizer = load_tokenizer(folder)
    chat_format = ChatFormat(tokenizer)
    engine = None

    def factory():
        nonlocal engine
        engine = engine or ChatEngine(load_model(folder, placement), tokenizer, chat_format, name="base")
        return engine

    model_key = f"{base_model_fingerprint(folder)}/cpu/float32"
    trained = [r["instruction"] for r in identity_records(PERSONA_NAME, PERSONA_AUTHOR)]
    sets = [([p["prompt"] for p in general_prompts("replay")], REPLAY_MAX_NEW_TOKENS),
            ([p["prompt"] for p in general_prompts("bleed")], config.eval.max_new_tokens),
            (trained, config.eval.max_new_tokens)]
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    for prompts, limit in sets:
        key = cache_key(model_key, chat_format, prompts, limit)
        cached = cache_root() / "base-answers" / f"{key}.json"
        cached.unlink(missing_ok=True)  # regenerate, never copy a stale cache
        cached_base_answers(model_key, chat_format, prompts, limit, factory)
        shutil.copy(cached, TARGET / cached.name)
        print(f"{TARGET / cached.name}: {len(prompts)} answers")


if __name__ == "__main__":
    main()
