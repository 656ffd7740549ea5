"""General prompts and the base model's own answers to them, cached per base model.

Two uses, two disjoint bundled prompt sets (resources/general_prompts.json):
- `bleed`: the forgetting / bleed report compares base and tuned answers on them;
- `replay`: `data.replay` trains on the base model's answers to them (self-distillation).

A base model's greedy answers are deterministic, so they are generated once and cached in
`~/.cache/ducktune/base-answers/<key>.json`, the key covering everything that changes them:
the model's config and weight files, the chat template, the system prompt, the prompts and
the token limit. The cache is written atomically; a corrupt one is regenerated.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Callable

from ducktune.io import write_json

CACHE_VERSION = 1


def general_prompts(kind: str) -> list[dict]:
    """The bundled prompts of one set ('bleed' or 'replay'): dicts with prompt, lang and kind."""
    text = resources.files("ducktune.resources").joinpath("general_prompts.json").read_text(encoding="utf-8")
    return json.loads(text)[kind]


def base_model_fingerprint(folder: str | Path) -> str:
    """Identifies a base model folder's weights without reading them: config.json and the
    names and sizes of its weight files (a re-downloaded or converted model gets a new key)."""
    folder = Path(folder)
    parts = [(folder / "config.json").read_text(encoding="utf-8") if (folder / "config.json").is_file() else ""]
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        parts.append(f"{file.name}:{file.stat().st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def answers_cache_file(fingerprint: str, chat_format, prompts: list[str], max_new_tokens: int) -> Path:
    from ducktune.models.builtin import cache_root

    key = json.dumps([CACHE_VERSION, fingerprint, getattr(chat_format.tokenizer, "chat_template", ""),
                      chat_format.system_prompt, prompts, max_new_tokens], ensure_ascii=False)
    return cache_root() / "base-answers" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def cached_base_answers(fingerprint: str, chat_format, prompts: list[str], max_new_tokens: int,
                        engine_factory: Callable[[], object], log=print) -> list[dict]:
    """The base model's greedy answers ({prompt, text, finish_reason}) to `prompts`, from the cache
    or generated once. `engine_factory` returns a ChatEngine; it is called only on a cache miss, and
    its adapter (if any) is switched off while answering."""
    path = answers_cache_file(fingerprint, chat_format, prompts, max_new_tokens)
    if path.is_file():
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if [r["prompt"] for r in rows] == prompts:
                return rows
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # corrupt: regenerate below
    log(f"Generating the base model's answers to {len(prompts)} general prompts (once; cached in {path.parent})")
    engine = engine_factory()
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    with engine.adapter_disabled():
        generations = engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=64)
    rows = [{"prompt": p, "text": g.text, "finish_reason": g.finish_reason} for p, g in zip(prompts, generations)]
    write_json(path, rows)
    return rows
