"""Is a saved LoRA adapter whole, and does it fit its base model? Checked from the safetensors
headers before anything is loaded, by every stage that loads an adapter (export, chat, compare,
eval, serve), so a half-written or mismatched adapter is one line naming the file, never a
traceback from PEFT or a model answering without its adapter."""

from __future__ import annotations

import re
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.io import optional_json_field, read_json_file

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def adapter_folder(path: str) -> Path:
    """The LoRA adapter folder named by model.adapter: a run directory (its adapter/) or the folder itself."""
    from ducktune.errors import ConfigError

    folder = Path(path)
    if (folder / "adapter" / "adapter_config.json").is_file():
        folder = folder / "adapter"
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"model.adapter: {path}: no LoRA adapter there (expected a run directory with adapter/ "
                          "or a folder with adapter_config.json)")
    return folder


def weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of every safetensors file in a folder, from the headers only."""
    from safetensors import safe_open

    shapes = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise ModelError(f"{path}: unreadable ({exc})") from None
    if not shapes:
        raise ModelError(f"{model_dir}: no .safetensors weights")
    return shapes


def loaded_weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape as transformers names the weights once loaded (None: it cannot build the
    model). Checkpoints may use an older layout that transformers renames while loading (Gemma 3's
    multimodal models ship language_model.model.layers.*, loaded as model.language_model.layers.*),
    and adapters name the loaded modules. Built on the meta device: no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ducktune.models.loading import register_multimodal_lms

    register_multimodal_lms()
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # remote code, an unknown architecture: the checkpoint's names are all there is
        return None
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _excluded(module: str, exclude: object) -> bool:
    """Whether PEFT's exclude_modules (a regex, or names matched as targets are) leaves `module` out."""
    if isinstance(exclude, str):
        return re.fullmatch(exclude, module) is not None
    return isinstance(exclude, list) and _named(module, exclude)


def _named(module: str, names: list[str]) -> bool:
    """PEFT's matching of a module to a list of names: a whole module name or a dotted suffix of one."""
    return any(module == name or module.endswith("." + name) for name in names)


_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.[^.]+)?\.weight$")


def check_adapter(adapter_dir: Path, base_folder: Path) -> dict:
    """Refuse an adapter that does not fit the base model, or is incomplete. Returns a summary."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / ADAPTER_CONFIG
    weights_path = adapter_dir / ADAPTER_WEIGHTS
    run_config = adapter_dir.parent / "config.yaml"  # a run's adapter/: its own config resumes that folder
    how = f"`ducktune train {run_config}`" if run_config.is_file() else "`ducktune train` on its config"
    hint = f"the run may have been interrupted while saving (rerun {how} to finish it) or its files were changed since"
    if not config_path.is_file():
        raise ModelError(f"{config_path}: missing; {hint}")
    adapter_config = read_json_file(config_path, ModelError, f"; {hint}")
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise ModelError(f"{config_path}: peft_type {adapter_config.get('peft_type')} is not a LoRA adapter")
    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: missing; {hint}")
    try:
        adapter = weight_shapes(adapter_dir)
    except ModelError as exc:
        raise ModelError(f"{exc.message}; the file is incomplete: {hint}") from None
    base = weight_shapes(base_folder)

    pairs: dict[str, dict[str, tuple]] = {}
    for key, shape in adapter.items():
        match = _LORA_KEY.match(key)
        if match:
            pairs.setdefault(match["module"], {})[match["part"]] = shape
    if not pairs:
        raise ModelError(f"{weights_path}: holds no LoRA weights (lora_A / lora_B); {hint}")
    # PEFT can also adapt bare parameters (target_parameters: the fused expert tensors of MoE models
    # under transformers 5). Those modules have no `.weight`, and the checkpoint may name them as
    # the original model did (Mixtral's block_sparse_moe.*): PEFT checks them when it loads.
    parameter_targets = bool(adapter_config.get("target_parameters"))
    # A quantized checkpoint stores packed weights (bitsandbytes 4-bit: [n/2, 1]): the model's own shapes count
    quantized = bool(optional_json_field(Path(base_folder) / "config.json", "quantization_config"))
    if quantized or (not parameter_targets and any(f"{module}.weight" not in base for module in pairs)):
        base = loaded_weight_shapes(base_folder) or base
    for module, parts in sorted(pairs.items()):
        base_shape = base.get(f"{module}.weight")
        if base_shape is None and parameter_targets:
            continue
        if base_shape is None:
            raise ModelError(f"{weights_path}: adapts {module}, which the base model {base_folder} does not have: "
                             "the adapter was trained on a different architecture")
        if set(parts) != {"lora_A", "lora_B"}:
            missing = ({"lora_A", "lora_B"} - set(parts)).pop()
            raise ModelError(f"{weights_path}: {module} has no {missing} weights; {hint}")
        out_features, in_features = base_shape[0], base_shape[-1]
        if adapter_config.get("fan_in_fan_out"):  # GPT-2's Conv1D keeps its weight as [in, out]
            in_features, out_features = out_features, in_features
        a, b = parts["lora_A"], parts["lora_B"]
        if a[-1] != in_features or b[0] != out_features or a[0] != b[-1]:
            raise ModelError(f"{weights_path}: {module} is {out_features}x{in_features} in the base model {base_folder}, "
                             f"but the adapter's matrices are {b[0]}x{b[-1]} and {a[0]}x{a[-1]}: the adapter was trained "
                             "on a different model")
    targets = adapter_config.get("target_modules")
    if isinstance(targets, list):
        # PEFT matches each target as a whole module name or a dotted suffix of one ("q_proj", or the
        # full "model.layers.0.self_attn.q_proj" its all-linear resolution saves).
        matrices = [name[: -len(".weight")] for name in base
                    if name.endswith(".weight") and len(base[name]) == 2 and not name.startswith("lm_head")]
        expected = {module for module in matrices
                    if _named(module, targets) and not _excluded(module, adapter_config.get("exclude_modules"))}
        missing = sorted(expected - set(pairs))
        if missing:
            raise ModelError(f"{weights_path}: no weights for {len(missing)} of the {len(expected)} modules the "
                             f"adapter config targets (e.g. {missing[0]}); {hint}")
    return {"modules": len(pairs), "rank": next(iter(pairs.values()))["lora_A"][0]}
