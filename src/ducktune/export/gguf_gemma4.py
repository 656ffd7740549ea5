"""llama.cpp's `gemma4` architecture: Gemma 4's language model (Gemma4ForCausalLM, and the text_config of the
published Gemma4ForConditionalGeneration checkpoints, whose vision and audio towers are not exported).

Learned from llama.cpp's loader and graph (src/models/gemma4.cpp) and how its converter writes Gemma 4. What
Gemma 4 adds to Gemma 3:

- Two head sizes: sliding layers use `head_dim`, full layers their own (`per_layer_config`, from
  `global_head_dim`), written as key/value_length (full) and key/value_length_swa; KV heads may differ per
  layer kind too (head_count_kv as an array).
- Full layers rotate with "proportional" rope: a quarter of the rotary pairs turn, at frequencies whose
  exponent is over the whole head_dim; llama.cpp rotates the whole head (rope.dimension_count = head_dim)
  and stops the other pairs with a `rope_freqs` table of 1e30 divisors. Sliding layers: plain rope over
  their head (rope.dimension_count_swa), their own base (rope.freq_base_swa).
- Per-layer embeddings (E2B/E4B): a second embedding table with a slice per layer, mixed with a projection
  of the hidden state and added through a gate in every layer (embedding_length_per_layer_input).
- KV sharing: the last `num_kv_shared_layers` layers keep no K/V of their own and reuse those of the last
  unshared layer of their kind (attention.shared_kv_layers); their MLP is twice as wide with
  use_double_wide_mlp (feed_forward_length as an array).
- A learned scalar per layer output (layer_scalar -> layer_output_scale), v normed without a weight,
  attention scale 1 (q/k are RMS-normed), final logit softcapping.
- Its RMSNorm multiplies by w (not 1 + w as Gemma 1-3): norm weights are written as they are.
"""

from __future__ import annotations

ARCH = "gemma4"
# llama.cpp's shared layer il reuses layer n_unshared - 2 (sliding) or n_unshared - 1 (full): the last
# unshared layers must be one sliding, then one full, as in the published checkpoints
_SHARED_TAIL = ["sliding_attention", "full_attention"]
_UNROTATED = 1e30  # a divisor that stops a rotary pair (llama.cpp's converter writes the same)


def layer_kinds(config: dict) -> list[str]:
    return list(config.get("layer_types") or [])


def _full_layer_value(config: dict, key: str, fallback):
    """A full-attention layer's `key` from per_layer_config (transformers' saved form) or its published source."""
    kinds = layer_kinds(config)
    for index, values in (config.get("per_layer_config") or {}).items():
        if int(index) < len(kinds) and kinds[int(index)] == "full_attention" and key in (values or {}):
            return values[key]
    return fallback


def head_dims(config: dict) -> tuple[int, int]:
    """(full layers' head_dim, sliding layers' head_dim)."""
    sliding = int(config.get("head_dim") or 256)
    return int(_full_layer_value(config, "head_dim", config.get("global_head_dim") or sliding)), sliding


def kv_heads(config: dict) -> list[int]:
    """KV heads per layer (full layers may have num_global_key_value_heads of their own)."""
    sliding = int(config.get("num_key_value_heads") or config["num_attention_heads"])
    full = int(_full_layer_value(config, "num_key_value_heads", config.get("num_global_key_value_heads") or sliding))
    return [full if kind == "full_attention" else sliding for kind in layer_kinds(config)]


def _rope(config: dict, kind: str) -> dict:
    return dict((config.get("rope_parameters") or {}).get(kind) or {})


def head_count_kv(config: dict) -> int | list[int]:
    counts = kv_heads(config)
    return counts if len(set(counts)) > 1 else counts[0]


def gemma4_support(config: dict) -> str | None:
    """None when llama.cpp's gemma4 runs this text config as transformers does, else a one-line reason."""
    kinds, layers = layer_kinds(config), int(config["num_hidden_layers"])
    if len(kinds) != layers or set(kinds) - {"sliding_attention", "full_attention"}:
        return f"GGUF export of Gemma 4: layer_types must list {layers} sliding_attention/full_attention layers"
    if config.get("enable_moe_block"):
        return "GGUF export of Gemma 4: the MoE block (26B-A4B) is not exported by ducktune"
    if config.get("use_bidirectional_attention") == "all":
        return "GGUF export of Gemma 4: bidirectional attention on text is not what llama.cpp runs"
    if config.get("attention_bias"):
        return "GGUF export of Gemma 4: attention_bias is not a Gemma 4 shape llama.cpp loads"
    if config.get("hidden_activation", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_new"):
        return f"GGUF export of Gemma 4: activation {config.get('hidden_activation')} (llama.cpp runs tanh GELU)"
    full, sliding = _rope(config, "full_attention"), _rope(config, "sliding_attention")
    if full.get("rope_type", "proportional") != "proportional" or float(full.get("factor") or 1.0) != 1.0:
        return "GGUF export of Gemma 4: full layers' rope must be unscaled proportional rope, as llama.cpp writes it"
    if sliding.get("rope_type", "default") != "default" or float(sliding.get("partial_rotary_factor") or 1.0) != 1.0:
        return "GGUF export of Gemma 4: sliding layers' rope must be plain rope over the whole head"
    reason = shared_tail_problem(kinds, layers, int(config.get("num_kv_shared_layers") or 0))
    return reason and f"GGUF export of Gemma 4: {reason}"


def shared_tail_problem(kinds: list[str], layers: int, shared: int) -> str | None:
    """Why llama.cpp's KV-shared layers (Gemma 3n and 4) would reuse other layers than transformers does, or None."""
    if shared and kinds[layers - shared - 2:layers - shared] != _SHARED_TAIL:
        return ("with num_kv_shared_layers the last unshared layers must be sliding then full (llama.cpp reuses "
                "those two)")
    return None


def feed_forward_lengths(config: dict) -> int | list[int]:
    """intermediate_size, doubled on the KV-shared layers with use_double_wide_mlp (as transformers builds them)."""
    width, layers = int(config["intermediate_size"]), int(config["num_hidden_layers"])
    shared = int(config.get("num_kv_shared_layers") or 0)
    if not (config.get("use_double_wide_mlp") and shared):
        return width
    return [width * 2 if i >= layers - shared else width for i in range(layers)]


def add_gemma4_hparams(put, config: dict) -> None:
    """Every `gemma4.*` key beside the common ones (context, embedding, blocks, heads and KV heads, MLP widths,
    norm epsilon)."""
    full_dim, sliding_dim = head_dims(config)
    kinds = layer_kinds(config)
    put("add_key_length", full_dim)
    put("add_value_length", full_dim)
    put("add_key_length_swa", sliding_dim)
    put("add_value_length_swa", sliding_dim)
    put("add_rope_freq_base", float(_rope(config, "full_attention").get("rope_theta", 1_000_000.0)))
    put("add_rope_freq_base_swa", float(_rope(config, "sliding_attention").get("rope_theta", 10_000.0)))
    put("add_rope_dimension_count", full_dim)  # the whole head; rope_freqs stops the pairs that do not turn
    put("add_rope_dimension_count_swa", sliding_dim)
    put("add_sliding_window", int(config["sliding_window"]))
    put("add_sliding_window_pattern", [kind == "sliding_attention" for kind in kinds])
    add_per_layer_input_hparams(put, config)
    if config.get("final_logit_softcapping"):
        put("add_final_logit_softcapping", float(config["final_logit_softcapping"]))


def add_per_layer_input_hparams(put, config: dict) -> None:
    """The per-layer embedding width and the KV-shared layer count (Gemma 3n and Gemma 4 E2B/E4B)."""
    put("add_shared_kv_layers", int(config.get("num_kv_shared_layers") or 0))
    put("add_embedding_length_per_layer_input", int(config.get("hidden_size_per_layer_input") or 0))


def rope_freqs(config: dict) -> list[float]:
    """Per rotary pair of a full layer, 1 where proportional rope turns it, 1e30 (no turn) elsewhere."""
    full_dim = head_dims(config)[0]
    turning = int(float(_rope(config, "full_attention").get("partial_rotary_factor", 1.0)) * full_dim // 2)
    return [1.0] * turning + [_UNROTATED] * (full_dim // 2 - turning)


def gemma4_lookup(lookup: str) -> str:
    """The name gguf's map knows for a Gemma 4 weight: the layer scalar is a bare parameter (no `.weight`)."""
    return lookup + ".weight" if lookup.endswith(".layer_scalar") else lookup
