"""A PEFT LoRA linear layer whose adapter term is one addmm into the frozen layer's output.

PEFT computes `result + lora_B(lora_A(dropout(x))) * scaling`: two passes over the whole
[tokens x out_features] output that are not matmuls (the scale and the add), the same two again in
backward (the scale of the incoming gradient), and two temporaries of that size. Here the scale is
applied to the rank-wide activations (r columns instead of out_features) and lora_B's product is
accumulated straight into the frozen layer's output by the GEMM (beta=1): the same sum up to float
rounding, with fewer full-size passes and less heap left behind (whole runs against PEFT's forward:
bench/lora_addmm.py, bench/RESULTS.md "LoRA as one addmm").

The class is PEFT's own `lora.Linear` with only `forward` changed, registered through PEFT's
documented custom-module dispatch (`LoraConfig._register_custom_module`), so saving, loading,
merging, adapter switching and disabling are PEFT's. Whatever the fast path does not cover (mixed
adapter batches, DoRA and other variants, LoRA bias, merged or disabled adapters, several active
adapters, autocast, an input dtype that differs from the adapter's) goes to PEFT's forward.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn


class AddmmLoraLinear(PeftLoraLinear):
    """PEFT's LoRA linear layer; plain single-adapter forwards accumulate the adapter term by addmm."""

    def fast_path_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The active adapter when this call can take the addmm path, else None (PEFT's forward)."""
        if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
            return None
        name = self.active_adapters[0]
        if name not in self.lora_A or name in self.lora_variant or self.lora_bias.get(name, False):
            return None
        if type(self.base_layer) is not nn.Linear or self.lora_A[name].weight.dtype != x.dtype:
            return None
        if x.dtype != self.base_layer.weight.dtype or torch.is_autocast_enabled(x.device.type):
            return None
        return name

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        name = self.fast_path_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        flat = x.reshape(-1, x.shape[-1])
        result = self.base_layer(flat)  # a fresh tensor: linear's backward keeps its inputs, not its output
        rank_wide = self.lora_A[name](self.lora_dropout[name](flat)) * self.scaling[name]
        result.addmm_(rank_wide, self.lora_B[name].weight.t())
        return result.view(*x.shape[:-1], result.shape[-1])


def addmm_layers_apply(model) -> bool:
    """Whether AddmmLoraLinear may replace PEFT's layer on this model: every linear layer is a plain
    `nn.Linear` (the dispatch matches subclasses too, so bitsandbytes' 4/8-bit linears would be
    caught) and the model carries no quantizer (torchao and others quantize inside nn.Linear)."""
    if getattr(model, "hf_quantizer", None) is not None:
        return False
    return all(type(module) is nn.Linear for module in model.modules() if isinstance(module, nn.Linear))


def register_addmm_layers(peft_config) -> None:
    """Route nn.Linear targets of `peft_config` to AddmmLoraLinear (PEFT's custom-module dispatch)."""
    peft_config._register_custom_module({nn.Linear: AddmmLoraLinear})
