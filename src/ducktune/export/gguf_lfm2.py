"""llama.cpp's `lfm2` architecture: Liquid LFM2 (Lfm2ForCausalLM: LFM2-350M, 700M, 1.2B, 2.6B).

Learned from llama.cpp's loader and graph (src/models/lfm2.cpp) and its converter (conversion/lfm2.py).
Layers are of two kinds (`layer_types`, or `full_attn_idxs` in the published configs):

- conv (short convolution): in_proj -> [B, C, x], B * x through a causal depthwise conv of
  `conv_L_cache` taps, times C, out_proj. Written as shortconv.in_proj / shortconv.conv /
  shortconv.out_proj; the conv kernel [hidden, 1, L] is squeezed to [hidden, L] and kept F32.
  llama.cpp knows a layer is recurrent by its head_count_kv being 0, so that key is an array per layer.
- full_attention: GQA with per-head q/k RMSNorm; rope in rotate-half (NEOX) order as HF stores it.

The MLP width llama.cpp reads is the one the weights have: `intermediate_size` (published as
`block_ff_dim`) is shrunk to 2/3, times `block_ffn_dim_multiplier`, rounded up to `block_multiple_of`
when `block_auto_adjust_ff_dim` is on (LFM2-MoE's dense layers are `intermediate_size` wide as given).
Norms multiply by w (no +1); the final norm (`model.embedding_norm`) is gguf's token_embd_norm, which llama.cpp's lfm2 applies to the output.
"""

from __future__ import annotations

ARCH = "lfm2"
# LFM2-MoE (Lfm2MoeForCausalLM, LFM2-8B-A1B): the same layers with routed experts after the leading dense ones
# (gguf_moe)
MOE_ARCH = "lfm2moe"
ARCHS = {ARCH, MOE_ARCH}
LAYER_KINDS = {"conv", "full_attention"}


def layer_types(config: dict, n_layers: int) -> list[str]:
    """Per-layer kind as transformers runs the model: `layer_types`, else from `full_attn_idxs`
    (every layer attention when neither is given, Lfm2Config's default)."""
    kinds = config.get("layer_types")
    if kinds:
        return list(kinds)
    attention = config.get("full_attn_idxs")
    attention = range(n_layers) if attention is None else set(attention)
    return ["full_attention" if i in attention else "conv" for i in range(n_layers)]


def feed_forward_length(config: dict, arch: str = ARCH) -> int:
    """The MLP width of the weights (Lfm2MLP's own arithmetic on the config keys; Lfm2MoeMLP's as given)."""
    if arch == MOE_ARCH:
        return int(config["intermediate_size"])
    width = int(config.get("intermediate_size") or config.get("block_ff_dim") or 12288)
    if config.get("block_auto_adjust_ff_dim", True):
        width = int(2 * width / 3)
        multiplier = config.get("block_ffn_dim_multiplier", 1.0)
        if multiplier is not None:
            width = int(multiplier * width)
            multiple = int(config.get("block_multiple_of", 256))
            width = multiple * ((width + multiple - 1) // multiple)
    return width


def lfm2_support(config: dict, n_layers: int, heads: int, head_dim: int, hidden: int) -> str | None:
    """None when llama.cpp's lfm2 runs this config as transformers does, else a one-line reason."""
    kinds = layer_types(config, n_layers)
    if len(kinds) != n_layers or set(kinds) - LAYER_KINDS:
        return f"GGUF export of LFM2: layer_types must list {n_layers} of {sorted(LAYER_KINDS)}"
    if config.get("conv_bias"):  # llama.cpp's shortconv and attention have no bias tensors
        return "GGUF export of LFM2: conv_bias is not an LFM2 shape llama.cpp loads"
    if int(config.get("conv_L_cache", 3)) < 2:
        return f"GGUF export of LFM2: conv_L_cache {config.get('conv_L_cache')} (llama.cpp needs at least 2)"
    if heads * head_dim != hidden:  # llama.cpp's attention output is hidden x hidden
        return f"GGUF export of LFM2: heads x head_dim ({heads} x {head_dim}) must equal hidden_size for llama.cpp"
    return None


def head_count_kv(config: dict, n_layers: int, kv_heads: int) -> list[int]:
    """KV heads per layer, 0 on the conv layers: how llama.cpp tells recurrent layers apart."""
    return [kv_heads if kind == "full_attention" else 0 for kind in layer_types(config, n_layers)]


def add_lfm2_hparams(put, config: dict) -> None:
    put("add_shortconv_l_cache", int(config.get("conv_L_cache", 3)))
    put("add_vocab_size", int(config["vocab_size"]))


def conv_kernel(hf_name: str, shape: tuple[int, ...]):
    """(written shape, transform) of a short-conv kernel [hidden, 1, L] -> [hidden, L]; None for other weights."""
    if not hf_name.endswith(".conv.conv.weight"):
        return None
    return (shape[0], shape[-1]), lambda array: array.reshape(array.shape[0], array.shape[-1])
