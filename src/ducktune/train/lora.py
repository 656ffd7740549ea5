"""Attach LoRA adapters with PEFT, targeting every linear projection of the architecture."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ducktune.config import LoraConfig
from ducktune.models.adapter_check import adapter_folder
from ducktune.models.loading import VISION_MODULES, VISION_PARTS


# The frozen copy of a continued adapter that preference objectives compare against.
REFERENCE_ADAPTER = "reference"


def adapter_for_base(path: str, base_folder: Path) -> Path:
    """adapter_folder(path), refused in one line unless its weights fit the base model's (an adapter
    trained on another model failed in PEFT with hundreds of size-mismatch lines, after the run
    folder was made)."""
    from ducktune.errors import ConfigError, ModelError
    from ducktune.models.adapter_check import check_adapter

    folder = adapter_folder(path)
    try:
        check_adapter(folder, base_folder)
    except ModelError as exc:
        raise ConfigError(f"model.adapter: {exc.message}") from None
    return folder


def check_lora_targets(config_json: dict, cfg: LoraConfig) -> None:
    """Refuse lora.target_modules that name no module of the model, before anything is loaded or
    written (PEFT's own match: the whole module name or a dotted suffix of it). Checked on the
    module tree transformers builds on the meta device; a model it cannot build (remote code) is
    checked by PEFT when the adapter is attached."""
    from ducktune.errors import ConfigError
    from ducktune.models.loading import linear_layers, model_skeleton

    if cfg.target_modules == "all-linear" and not cfg.target_parameters:
        return
    skeleton = model_skeleton(config_json)
    if skeleton is None:
        return
    parameters = [name for name, _ in skeleton.named_parameters()]
    for target in cfg.target_parameters:  # PEFT only warns when one matches nothing
        if not any(n == target or n.endswith("." + target) for n in parameters):
            raise ConfigError(f"lora.target_parameters: {target!r} is not a parameter of {type(skeleton).__name__}; "
                              "name one by a dotted suffix of its path, e.g. mlp.experts.gate_up_proj")
    if cfg.target_modules == "all-linear":
        return
    names = [name for name, _ in skeleton.named_modules() if name]
    unknown = [t for t in cfg.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        linears = sorted({name.rsplit(".", 1)[-1] for name, _ in linear_layers(skeleton)})
        raise ConfigError(f"lora.target_modules: {unknown[0]!r} is not a module of {type(skeleton).__name__}; "
                          f"its linear layers are {', '.join(linears)} (or use all-linear)")


# A multimodal model (Gemma 3 4B+: Gemma3ForConditionalGeneration) fine-tuned on text: all-linear leaves its
# vision encoder and projector (models.loading.VISION_MODULES) alone. Text batches never reach them, so their
# adapters would stay zero and only grow the adapter (and PEFT's QLoRA refused the vision tower's biased
# linears on CPU).
def _has_vision_parts(model) -> bool:
    return any(name.rsplit(".", 1)[-1] in VISION_PARTS for name, _ in model.named_modules())


# PEFT refuses LoRA on the Mamba mixer's out_proj of these model types (the fused mamba_ssm path reads
# out_proj.weight itself, skipping an adapter there): all-linear leaves it out for them (Falcon-H1's and
# Nemotron-H's attention output is o_proj, so only the mixer's is left out).
PEFT_MAMBA_TYPES = {"falcon_h1", "nemotron_h"}
MAMBA_OUT_PROJ = ["out_proj"]


def _excluded_modules(model, all_linear: bool) -> str | list[str] | None:
    """What all-linear must leave alone in this model, as PEFT's exclude_modules (the vision parts' regex, the
    PEFT-refused Mamba out_proj by name), or None."""
    if not all_linear:
        return None
    if _has_vision_parts(model):
        return VISION_MODULES
    if getattr(getattr(model, "config", None), "model_type", None) in PEFT_MAMBA_TYPES:
        return MAMBA_OUT_PROJ
    return None


def attach_lora(model, cfg: LoraConfig, start_from: str | None = None, reference_copy: bool = False):
    """(PEFT model, the leaf names of the modules adapted, then any bare parameters). `all-linear` is PEFT's own
    resolution (every linear layer but the output head, bitsandbytes linears included);
    the names are read back from the resolved PEFT config.

    start_from: an existing adapter (model.adapter) to continue training instead of a new one
    (its own rank and targets apply; cfg.fused still chooses the layer class); reference_copy
    loads it a second time, frozen, as the "reference" adapter (only adapter weights are
    duplicated, never the base). cfg.fused: plain linear layers get AddmmLoraLinear
    (train/lora_addmm.py), PEFT's layer with the adapter term as one addmm."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftConfig, PeftModel, get_peft_model

    from ducktune.train.lora_addmm import addmm_layers_apply, register_addmm_layers

    fused = cfg.fused and addmm_layers_apply(model)
    if start_from:
        folder = adapter_folder(start_from)
        saved = PeftConfig.from_pretrained(str(folder))  # the saved adapter's own config class
        if fused and isinstance(saved, PeftLoraConfig):
            register_addmm_layers(saved)
        peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name="default", is_trainable=True,
                                               config=saved)
        if reference_copy:
            peft_model.load_adapter(str(folder), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
            peft_model.set_adapter("default")
        # A saved adapter may name its targets by full path: the leaf names, as for a new adapter.
        return peft_model, sorted({name.rsplit(".", 1)[-1] for name in peft_model.peft_config["default"].target_modules})

    all_linear = cfg.target_modules == "all-linear"
    peft_config = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear" if all_linear else list(cfg.target_modules),
        exclude_modules=_excluded_modules(model, all_linear),
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        target_parameters=list(cfg.target_parameters) or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    if fused:
        register_addmm_layers(peft_config)
    try:
        peft_model = get_peft_model(model, peft_config)
    except ValueError as exc:  # PEFT's "Target modules {...} not found in the base model" (remote-code models),
        # or its refusal of a Mamba out_proj named in lora.target_modules
        if "not found in the base model" not in str(exc) and "incompatible with Mamba" not in str(exc):
            raise
        from ducktune.errors import ConfigError

        raise ConfigError(f"lora.target_modules: {str(exc).splitlines()[0]}") from None
    resolved = peft_model.peft_config["default"]
    # PEFT's all-linear also adapts bare parameters of some models (the fused experts of MoE models
    # under transformers 5): named too, so the log and run.json say what trains.
    parameters = [f"{name} (parameter)" for name in getattr(resolved, "target_parameters", None) or []]
    # PEFT may keep full module paths where a leaf name is ambiguous (tiny models): leaf names, as logged;
    # its resolved names include excluded modules' (the vision tower's fc1/fc2): those adapted, then.
    names = ({name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
             if peft_config.exclude_modules else resolved.target_modules)
    return peft_model, sorted({name.rsplit(".", 1)[-1] for name in names}) + parameters


def adapter_parameter_ids(peft_model) -> set[int]:
    """id() of every adapter weight of every adapter name (lora_A/lora_B, DoRA magnitudes, ...): frozen
    ones too, such as the `reference` copy a preference run keeps, which are no base weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    ids = set()
    for module in peft_model.modules():
        if isinstance(module, BaseTunerLayer):
            for attribute in module.adapter_layer_names:
                ids.update(id(p) for p in getattr(module, attribute).parameters())
    return ids


def unadapted_weights(peft_model) -> tuple[dict[str, int], int]:
    """({name with layer numbers as *: elements} of the frozen weight matrices no adapter covers, the
    elements of all frozen weight matrices), embedding tables, LM head and a multimodal model's vision parts
    left out of both: what all-linear
    (or a target list) leaves as in the base, e.g. Qwen2-MoE's routed experts, which transformers keeps
    as bare tensors rather than linear layers."""
    import re

    import torch

    # every token table (Gemma 4's per-layer embedding too: looked up, not multiplied, so not a LoRA target)
    tables = [m for m in peft_model.modules() if isinstance(m, torch.nn.Embedding)]
    embeddings = {id(module.weight) for module in (*tables, peft_model.get_input_embeddings(), peft_model.get_output_embeddings())
                  if module is not None and getattr(module, "weight", None) is not None}
    left: dict[str, int] = {}
    total = 0
    adapters = adapter_parameter_ids(peft_model)
    vision = re.compile(VISION_MODULES)
    for name, param in peft_model.named_parameters():
        if param.requires_grad or param.ndim < 2 or id(param) in embeddings or id(param) in adapters:
            continue
        if vision.fullmatch(name):  # left alone on purpose (VISION_MODULES): text batches never reach it
            continue
        total += param.numel()
        if ".base_layer." not in name:  # PEFT moves every adapted weight under a base_layer
            short = re.sub(r"\.\d+\.", ".*.", name.removeprefix("base_model.model."))
            left[short] = left.get(short, 0) + param.numel()
    return left, total


def unadapted_note(peft_model) -> str | None:
    """One log line naming the weights all-linear leaves frozen, with their share of the layers' weights;
    None when that is under 2 % (an MoE router) or nothing."""
    left, total = unadapted_weights(peft_model)
    if sum(left.values()) < 0.02 * total:
        return None
    return (f"Not adapted (stay as in the base): {', '.join(left)} ({sum(left.values()) / max(total, 1):.0%} of "
            "the layers' weights); lora.target_parameters adapts bare weight tensors such as fused experts")


@contextmanager
def adapter_input_casting(model, enabled: bool):
    """Within the block, PEFT's adapter layers cast their input to the adapter's dtype (`enabled`) or
    take it as it comes, through PEFT's documented `cast_input_dtype_enabled` switch; restored after.

    Why: a half-precision base with fp32 adapters (PEFT's default) makes every adapter copy its input
    to fp32, and autograd keeps each copy: seven copies per decoder layer (SmolLM2's shape, 2,048
    tokens, bf16: 2.35 GiB kept for backward instead of 1.56, counted by storage). Under autocast the
    adapter computes in half precision anyway (the fp32 copy is cast straight back), so with every
    forward autocast the casts are pure cost. Without autocast a half-precision input meets fp32
    weights and fails: generation in the middle of training (train/probe.py) turns casting back on."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    before = [getattr(m, "cast_input_dtype_enabled", True) for m in layers]
    for m in layers:
        m.cast_input_dtype_enabled = enabled
    try:
        yield len(layers)
    finally:
        for m, value in zip(layers, before):
            m.cast_input_dtype_enabled = value


def restore_trained_adapter(model, checkpoint: Path) -> bool:
    """Load a checkpoint's trained ("default") adapter weights into `model` before a resume.

    transformers' Trainer restores a PEFT checkpoint itself, but 5.17 (5.25 does not) skips the
    root (trained) adapter whenever the checkpoint also holds other adapters in subfolders (our
    frozen `reference` copy): a resumed DPO run on a continued adapter then silently trained on
    from the weights it started with. Loading it here is right on every release (newer ones load
    the same weights again). Returns whether anything was loaded.
    """
    weights = Path(checkpoint) / "adapter_model.safetensors"
    if not weights.is_file() or "default" not in getattr(model, "peft_config", {}):
        return False
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(weights)), adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"{weights}: adapter weights that the model does not have: {result.unexpected_keys[:3]}")
    return True
