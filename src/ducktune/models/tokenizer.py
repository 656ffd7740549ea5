"""The tokenizer of `model:` without loading weights (data commands, the UI, `ducktune plan`).

`ducktune data check/preview` need only the tokenizer. For the built-in model that means
not converting the whole GGUF file: its tokenizer is read from the GGUF metadata once and
cached next to the models (~/.cache/ducktune/tokenizers/). If the built-in model was
already converted, its folder is used. Other models resolve as in training (a local folder,
or a hub download).
"""

from __future__ import annotations

from pathlib import Path

from ducktune.config import ModelConfig


def builtin_tokenizer_dir(name: str, log=print) -> Path:
    from ducktune.io import atomic_dir
    from ducktune.models import builtin

    converted = builtin.builtin_dir(name)
    if (converted / "tokenizer_config.json").is_file():
        return converted
    target = builtin.cache_root() / "tokenizers" / f"{name}-v{builtin.CONVERSION_VERSION}"
    if (target / "tokenizer_config.json").is_file():
        return target
    gguf = builtin.find_gguf(name)
    log(f"Reading the tokenizer of the built-in model {name} (once, ~30 s): {target}")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with atomic_dir(target) as tmp:
        tokenizer.save_pretrained(tmp)
    return target


def model_tokenizer(model: ModelConfig, log=print):
    """The tokenizer training would use for `model` (with model.chat_template applied)."""
    from ducktune.models import builtin
    from ducktune.models.loading import load_tokenizer
    from ducktune.models.sources import resolve_model

    name = builtin.canonical_name(model.name_or_path)
    folder = builtin_tokenizer_dir(name, log) if name else resolve_model(model.name_or_path, model.revision, log=log)
    return load_tokenizer(folder, model.chat_template, model.trust_remote_code, model.enable_thinking)
