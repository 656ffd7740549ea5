"""General prompts and the base model's own answers, cached per base model.

Two bundled prompt sets (resources/general_prompts.json), disjoint:
- `bleed`: the forgetting / bleed report compares base and tuned answers on them;
- `replay`: `data.replay` trains on the base model's answers to them (self-distillation).

A base model's greedy answers are deterministic, so they are generated once and cached in
`~/.cache/ducktune/base-answers/<key>.json`; the key covers everything that changes them:
the model (config.json, weight file sizes and dates; the built-in model by its name and
conversion version), device and dtype, the chat template, the system prompt, the prompts and
the token limit. For the built-in model and the demo's own prompts the answers also ship with
ducktune (resources/base_answers/, same keys): the demo does not spend a minute regenerating
what is the same on every machine. A missing or corrupt cache only costs time.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    """Identifies a base model folder's weights without reading them."""
    from ducktune.models.builtin import BUILTIN_MODELS, builtin_dir

    folder = Path(folder)
    for name in BUILTIN_MODELS:
        if folder.resolve() == builtin_dir(name).resolve():
            return f"builtin:{builtin_dir(name).name}"  # the same conversion on every machine
    parts = [(folder / "config.json").read_text(encoding="utf-8") if (folder / "config.json").is_file() else str(folder)]
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = file.stat()
        parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def engine_base_folder(engine) -> Path | None:
    """The local folder the engine's base model was loaded from (None when unknown)."""
    model = engine.model
    config = getattr(getattr(model, "get_base_model", lambda: model)(), "config", None)
    folder = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    return Path(folder) if folder and Path(folder).is_dir() else None


def engine_variant(engine) -> str:
    """Device type and dtype of an engine's weights: answers differ between them."""
    parameter = next(engine.model.parameters())
    return f"{parameter.device.type}/{str(parameter.dtype).removeprefix('torch.')}"


def cache_key(model_key: str, chat_format, prompts: list[str], max_new_tokens: int) -> str:
    from ducktune.data.template_rules import AnswerFrame

    parts = [CACHE_VERSION, model_key, getattr(chat_format.tokenizer, "chat_template", ""),
             chat_format.system_prompt, prompts, max_new_tokens]
    frame = chat_format.answer_frame  # a measured frame: answers are written without it since it was measured
    key = json.dumps(parts + ([repr(frame)] if frame != AnswerFrame() else []), ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _read_rows(text: str, prompts: list[str]) -> list[dict] | None:
    try:
        rows = json.loads(text)
        if [r["prompt"] for r in rows] != prompts:
            return None
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    for row in rows:  # caches written before a length-cut answer dropped its half character (U+FFFD)
        if row.get("finish_reason") == "length" and isinstance(row.get("text"), str):
            row["text"] = row["text"].rstrip("\ufffd")
    return rows


def _bundled(key: str) -> str | None:
    file = resources.files("ducktune.resources").joinpath("base_answers", f"{key}.json")
    return file.read_text(encoding="utf-8") if file.is_file() else None


def cached_base_answers(model_key: str, chat_format, prompts: list[str], max_new_tokens: int,
                        engine_factory: Callable[[], object], log=print) -> list[dict]:
    """The base model's greedy answers ({prompt, text, finish_reason}) to `prompts`: cached, bundled,
    or generated once. `model_key` is base_model_fingerprint() + '/' + the device/dtype variant.
    `engine_factory` returns a ChatEngine, called only on a miss; its adapter is switched off."""
    from ducktune.models.builtin import cache_root

    key = cache_key(model_key, chat_format, prompts, max_new_tokens)
    path = cache_root() / "base-answers" / f"{key}.json"
    for text in (path.read_text(encoding="utf-8") if path.is_file() else None, _bundled(key)):
        rows = _read_rows(text, prompts) if text else None
        if rows is not None:
            for row in rows:  # written before answers were shown without a leading <think> block
                if isinstance(row.get("text"), str):
                    row["text"] = chat_format.answer_frame.answer(row["text"])[1]
            return rows
    log(f"Generating the base model's answers to {len(prompts)} prompts (once; cached in {path.parent})")
    engine = engine_factory()
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    with engine.adapter_disabled():
        generations = engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=64)
    rows = [{"prompt": p, "text": g.text, "finish_reason": g.finish_reason} for p, g in zip(prompts, generations)]
    write_json(path, rows)
    return rows


def engine_base_answers(engine, prompts: list[str], max_new_tokens: int, log=print) -> list[str] | None:
    """Base answers for an engine holding base + adapter, through the cache; None when the base
    folder is unknown (the caller then generates as before)."""
    folder = engine_base_folder(engine)
    if folder is None or not engine.has_adapter:
        return None
    model_key = f"{base_model_fingerprint(folder)}/{engine_variant(engine)}"
    rows = cached_base_answers(model_key, engine.chat_format, prompts, max_new_tokens, lambda: engine, log=log)
    return [r["text"] for r in rows]


_LAST_BREAK = re.compile(r"^(.*[.!?。！？\n])", re.S)


def complete_part(text: str) -> str:
    """An answer cut by the token limit, up to its last finished sentence ('' when none finished)."""
    match = _LAST_BREAK.match(text)
    return match.group(1).strip() if match else ""
