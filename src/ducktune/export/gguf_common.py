"""What gguf_arch and the per-family GGUF modules share: reading a config key under its several spellings, and
the refusal reasons several llama.cpp architectures share."""

from __future__ import annotations

BIAS_FLAGS = ("attention_bias", "mlp_bias")


def first_value(config: dict, *keys: str, default=None):
    """The value of the first of `keys` the config sets (not None): one setting published under several names."""
    return next((config[key] for key in keys if config.get(key) is not None), default)


def unloaded_biases(config: dict, arch: str, what: str = "such biases") -> str | None:
    """Why llama.cpp's `arch`, which loads no attention or MLP biases, would run this config differently
    (the bias flags it sets, in order), or None."""
    biased = [key for key in BIAS_FLAGS if config.get(key)]
    return f"{' and '.join(biased)} true, but llama.cpp's {arch} loads no {what}" if biased else None
