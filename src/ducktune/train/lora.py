"""Attach LoRA adapters with PEFT, targeting every linear projection of the architecture."""

from __future__ import annotations

from ducktune.config import LoraConfig


def linear_module_names(model) -> list[str]:
    """Leaf names of every linear layer except the LM head (q_proj, k_proj, ..., down_proj).

    Found from the model itself, so any architecture works without a per-model table.
    bitsandbytes' 4-bit/8-bit linears count as linear.
    """
    import torch

    head = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if module is head:
            continue
        kind = type(module).__name__
        if isinstance(module, torch.nn.Linear) or kind in ("Linear4bit", "Linear8bitLt"):
            names.add(name.rsplit(".", 1)[-1])
    names.discard("lm_head")
    return sorted(names)


def attach_lora(model, cfg: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = linear_module_names(model) if cfg.target_modules == "all-linear" else list(cfg.target_modules)
    peft_config = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config), targets
