"""Attach LoRA adapters with PEFT, targeting every linear projection of the architecture."""

from __future__ import annotations

from ducktune.config import LoraConfig


def attach_lora(model, cfg: LoraConfig):
    """(PEFT model, the leaf names of the modules adapted). `all-linear` is PEFT's own
    resolution (every linear layer but the output head, bitsandbytes linears included);
    the names are read back from the resolved PEFT config."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear" if cfg.target_modules == "all-linear" else list(cfg.target_modules),
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, peft_config)
    return peft_model, sorted(peft_model.peft_config["default"].target_modules)
