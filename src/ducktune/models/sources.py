"""Resolve `model.name_or_path` to a local Hugging Face folder.

Sources, in order:
- a built-in name (`smollm2-135m`): converted from the bundled GGUF, offline;
- an existing local folder;
- `modelscope:org/name` (or `ms:`): ModelScope's snapshot_download (optional extra);
- `org/name`: the Hugging Face hub through huggingface_hub, which honours HF_ENDPOINT
  (mirrors such as hf-mirror.com), HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE. A snapshot
  already in the cache is used when the network is unreachable.
Only safetensors weights are fetched: pickled .bin checkpoints can run code when loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.models import builtin

HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", "tokenizer*"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def resolve_model(name_or_path: str, revision: str | None = None, log=print) -> Path:
    name = builtin.canonical_name(name_or_path)
    if name:
        return builtin.ensure_builtin(name, log=log)

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json){_what_folder_is(path)}")
        return path.resolve()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            raise ModelError(f"{path}: a GGUF file; ducktune trains from a Hugging Face model folder (config.json + "
                             "*.safetensors). To chat with or serve a GGUF: ducktune chat/serve --gguf FILE")
        raise ModelError(f"{path}: a file, not a model folder (config.json + *.safetensors)")

    for prefix in ("modelscope:", "ms:"):
        if name_or_path.startswith(prefix):
            return download_modelscope(name_or_path[len(prefix):], revision)

    if _HUB_ID.match(name_or_path):
        return download_hf(name_or_path, revision)

    if path.suffix or name_or_path.startswith((".", "/", "~")):
        raise ModelError(f"{name_or_path}: model folder not found")
    raise ModelError(
        f"{name_or_path}: not a built-in model ({', '.join(builtin.BUILTIN_MODELS)}), a local folder or a hub id (org/name)"
    )


def _what_folder_is(path: Path) -> str:
    """What a folder without config.json holds, when it is something ducktune knows (a hint, or "")."""
    from ducktune.io import read_json_file

    for adapter in (path / "adapter_config.json", path / "adapter" / "adapter_config.json"):
        if adapter.is_file():
            try:
                base = read_json_file(adapter, ModelError).get("base_model_name_or_path")
            except (ModelError, AttributeError):
                base = None
            where = "a ducktune run" if adapter.parent != path else "a LoRA adapter"
            return (f": it is {where}; set model.adapter to it and model.name_or_path to its base model"
                    + (f" ({base})" if base else ""))
    return ""


def check_model_name(name_or_path: str) -> None:
    """Refuse, without downloading or converting anything, a model.name_or_path that resolve_model
    could never resolve (the web UI's Start, before it writes a config and starts a job)."""
    path = Path(name_or_path).expanduser()
    if builtin.canonical_name(name_or_path) or name_or_path.startswith(("modelscope:", "ms:")):
        return
    if path.is_dir() or not _HUB_ID.match(name_or_path):
        resolve_model(name_or_path)  # a local folder is checked; anything else raises its one line


def model_config_without_weights(name_or_path: str, revision: str | None = None) -> tuple[Path | None, dict]:
    """(local folder or None, config.json) of `model.name_or_path`: a hub id fetches only its
    config.json (for planning before a download); anything else resolves as resolve_model does."""
    from ducktune.models.loading import model_config

    local = builtin.canonical_name(name_or_path) or Path(name_or_path).expanduser().is_dir()
    if not local and _HUB_ID.match(name_or_path):
        from huggingface_hub import hf_hub_download

        path = _from_hub(name_or_path, revision, lambda: hf_hub_download(name_or_path, "config.json", revision=revision))
        return None, model_config(Path(path).parent)
    folder = resolve_model(name_or_path, revision)
    return folder, model_config(folder)


def _no_network(model_id: str) -> ModelError:
    import huggingface_hub

    constants = huggingface_hub.constants
    if model_id.startswith("modelscope:"):
        why = "no network (or ModelScope cannot be reached)"
    elif getattr(constants, "HF_HUB_OFFLINE", False):
        why = f"HF_HUB_OFFLINE is set and it is not in the local cache ({constants.HF_HUB_CACHE})"
    else:
        why = f"{constants.ENDPOINT} cannot be reached"
    return ModelError(f"cannot download {model_id}: {why}; pass a local folder or use the built-in model (smollm2-135m)")


def download_hf(model_id: str, revision: str | None = None) -> Path:
    import huggingface_hub

    folder = _from_hub(model_id, revision, lambda: huggingface_hub.snapshot_download(
        model_id, revision=revision, allow_patterns=HUB_PATTERNS))
    return _check_folder(Path(folder), model_id)


def _from_hub(model_id: str, revision: str | None, fetch):
    """fetch()'s result, the hub's failures (no network, no such model, gated...) as one-line ModelErrors."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - transformers depends on it
        raise ModelError("huggingface_hub is not installed: pip install huggingface_hub") from None

    try:
        return fetch()
    except hf_errors.RepositoryNotFoundError:
        raise ModelError(f"{model_id}: no such model on {huggingface_hub.constants.ENDPOINT} (or it is private)") from None
    except hf_errors.RevisionNotFoundError:
        raise ModelError(f"{model_id}: revision '{revision}' not found") from None
    except hf_errors.GatedRepoError:
        raise ModelError(f"{model_id}: gated model; accept its licence on the hub and run `hf auth login`") from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, OSError) as exc:
        # LocalEntryNotFoundError: offline and not cached. OSError covers connection failures.
        if isinstance(exc, OSError) and not _looks_like_network_error(exc):
            raise
        raise _no_network(model_id) from None
    except Exception as exc:  # httpx/requests errors differ across huggingface_hub versions
        if _looks_like_network_error(exc):
            raise _no_network(model_id) from None
        raise


def _looks_like_network_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    network = {"ConnectionError", "ConnectError", "TimeoutException", "ConnectTimeout", "ReadTimeout",
               "NetworkError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "ProxyError", "SSLError"}
    return bool(names & network) or "connect" in str(exc).lower() or "resolve" in str(exc).lower()


def download_modelscope(model_id: str, revision: str | None = None) -> Path:
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise ModelError("ModelScope models need the modelscope package: pip install 'ducktune[modelscope]'") from None
    kwargs = {"allow_patterns": HUB_PATTERNS}
    if revision:
        kwargs["revision"] = revision
    try:
        folder = snapshot_download(model_id, **kwargs)
    except Exception as exc:
        if _looks_like_network_error(exc):
            raise _no_network(f"modelscope:{model_id}") from None
        raise ModelError(f"modelscope:{model_id}: {exc}") from None
    return _check_folder(Path(folder), f"modelscope:{model_id}")


def _check_folder(folder: Path, model_id: str) -> Path:
    if not (folder / "config.json").is_file():
        raise ModelError(f"{model_id}: download has no config.json ({folder})")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(
            f"{model_id}: no .safetensors weights in {folder}: the repository has none, or they were never "
            "downloaded (offline, only the local cache is seen: connect and run again). ducktune loads only "
            "safetensors (pickled .bin files can run code): convert the model or pick another revision."
        )
    return folder
