"""Refusal reasons that several llama.cpp architectures share (gguf_arch and the per-family modules)."""

from __future__ import annotations

BIAS_FLAGS = ("attention_bias", "mlp_bias")


def unloaded_biases(config: dict, arch: str, what: str = "such biases") -> str | None:
    """Why llama.cpp's `arch`, which loads no attention or MLP biases, would run this config differently
    (the bias flags it sets, in order), or None."""
    biased = [key for key in BIAS_FLAGS if config.get(key)]
    return f"{' and '.join(biased)} true, but llama.cpp's {arch} loads no {what}" if biased else None
