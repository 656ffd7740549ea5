"""llama.cpp's `gemma3n` architecture: Gemma 3n's language model (Gemma3nForCausalLM, and the text_config of the
published Gemma3nForConditionalGeneration checkpoints, E2B and E4B, whose vision and audio towers are not exported).

Learned from llama.cpp's loader and graph (src/models/gemma3n.cpp) and how its converter writes Gemma 3n. What
Gemma 3n adds to Gemma 3:

- AltUp: the hidden state is carried as 4 streams (altup_num_inputs), stream 0 active; the extra streams come from
  3 projections of the embedding (altup_projections, written stacked as one [3, H, H] `altup_proj`) and are merged
  back by 3 more (altup_unembed_projections -> `altup_unembd_proj`). Each layer predicts and corrects the streams
  with small coefficient matrices and a router (per token).
- Laurel: a rank-64 residual branch beside attention (per token).
- Per-layer embeddings (as Gemma 4 E2B/E4B): a second token table with a 256-wide slice per layer, mixed with a
  projection of the embedding. Its vocabulary (vocab_size_per_layer_input) may be shorter than the model's: the
  ids beyond it read row 0 in transformers, so the table is padded with copies of row 0.
- Activation sparsity: the first layers' MLP gate keeps only values above mean + 1.645 std (gaussian top-k at 0.95).
- KV sharing: the last num_kv_shared_layers layers reuse the K/V of the last unshared layer of their kind; their
  k/v projections (unused, and absent from a checkpoint transformers 5 saves) are written as zeros, since
  llama.cpp's loader requires them.
- Norms multiply by w (not 1 + w): written as stored; v is normed without a weight; attention scale 1.

llama.cpp hard-codes much of this instead of reading it from the file: 4 AltUp streams with stream 0 active,
Laurel rank 64, 256-wide per-layer inputs, sparsity 0.95 on exactly the first 10 layers, K/V kept by the first 20
layers (the shared ones reuse layer 18 if sliding, 19 if full), final logit softcapping 30, rope over whole heads.
Configs that differ are refused (`gemma3n_support`) rather than written to run differently.
"""

from __future__ import annotations

from ducktune.export import gguf_gemma4

ARCH = "gemma3n"
# what llama.cpp's gemma3n reads no key for (llama-hparams.h, models.h, gemma3n.cpp)
FIXED = {"altup_num_inputs": 4, "altup_active_idx": 0, "laurel_rank": 64, "hidden_size_per_layer_input": 256}
KV_LAYERS = 20          # n_layer_kv_from_start: layers from here on reuse K/V
SPARSE_LAYERS = 10      # n_layer_sparsity: layers whose MLP gate is sparsified
SPARSITY = 0.95         # its std multiplier is normal_dist.icdf(0.95)
SOFTCAP = 30.0          # f_final_logit_softcapping, never read from the file
_STACKED = {"model.altup_projections": "altup_proj.weight",
            "model.altup_unembed_projections": "altup_unembd_proj.weight"}


# tensor types as llama.cpp writes them: its converter keeps the AltUp coefficient matrices F32, and llama-quantize
# leaves the small AltUp / Laurel matrices and the per-layer projection as converted (f16) in a q8_0 file
_F32_PARTS = (".altup_correct_coef.", ".altup_predict_coef.")
_UNQUANTIZED_PARTS = ("altup", "laurel", "per_layer_model_proj")


def tensor_qtype(gguf_name: str, qtype):
    """The type llama.cpp's converter and quantizer would give this Gemma 3n tensor, where it differs from `qtype`."""
    import gguf

    if any(part in gguf_name for part in _F32_PARTS):
        return gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.Q8_0 and any(part in gguf_name for part in _UNQUANTIZED_PARTS):
        return gguf.GGMLQuantizationType.F16
    return qtype


def layer_kinds(config: dict) -> list[str]:
    """layer_types, or Gemma3nTextConfig's default: every 5th layer full."""
    layers = int(config["num_hidden_layers"])
    return gguf_gemma4.layer_kinds(config) or [
        "full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(layers)]


def sparsity_pattern(config: dict) -> list[float]:
    """activation_sparsity_pattern, or Gemma3nTextConfig's default (0.95 on the first 10 layers when there are
    more than 10, else none)."""
    layers = int(config["num_hidden_layers"])
    if config.get("activation_sparsity_pattern") is not None:
        return [float(value) for value in config["activation_sparsity_pattern"]]
    sparse = SPARSE_LAYERS if layers > SPARSE_LAYERS else 0
    return [SPARSITY] * sparse + [0.0] * (layers - sparse)


# rope base per layer kind: transformers 4's key for it, and Gemma3nTextConfig's default
_ROPE_BASE = {"full_attention": ("rope_theta", 1_000_000.0), "sliding_attention": ("rope_local_base_freq", 10_000.0)}


def _rope(config: dict, kind: str) -> dict:
    return dict((config.get("rope_parameters") or {}).get(kind) or {})


def rope_base(config: dict, kind: str) -> float:
    """A layer kind's rope base: transformers 5's rope_parameters, else a transformers 4 config's top-level key."""
    legacy, default = _ROPE_BASE[kind]
    return float(_rope(config, kind).get("rope_theta") or config.get(legacy) or default)


def _fixed_problem(config: dict) -> str | None:
    """The first key llama.cpp hard-codes that this config sets otherwise, as a reason."""
    for key, value in FIXED.items():
        if key in config and int(config[key]) != value:
            return f"{key} {config[key]} (llama.cpp's gemma3n assumes {value})"
    if config.get("altup_correct_scale") is False:
        return "altup_correct_scale false (llama.cpp's gemma3n always scales the corrected output)"
    layers = int(config["num_hidden_layers"])
    theirs = [SPARSITY] * min(SPARSE_LAYERS, layers) + [0.0] * max(0, layers - SPARSE_LAYERS)
    if sparsity_pattern(config) != theirs:
        return (f"activation_sparsity_pattern {sparsity_pattern(config)} (llama.cpp's gemma3n sparsifies exactly the "
                f"first {SPARSE_LAYERS} layers at {SPARSITY})")
    softcap = config.get("final_logit_softcapping", SOFTCAP)
    if softcap is None or float(softcap) != SOFTCAP:
        return f"final_logit_softcapping {softcap} (llama.cpp's gemma3n always caps at {SOFTCAP})"
    return None


def _kv_sharing_problem(config: dict, kinds: list[str]) -> str | None:
    """llama.cpp keeps K/V in the first 20 layers and lets the rest reuse layer 18 (sliding) or 19 (full)."""
    layers, shared = int(config["num_hidden_layers"]), int(config.get("num_kv_shared_layers") or 0)
    if (shared == 0 and layers > KV_LAYERS) or (shared and layers - shared != KV_LAYERS):
        return (f"num_kv_shared_layers {shared} of {layers} layers (llama.cpp's gemma3n keeps K/V in exactly the "
                f"first {KV_LAYERS} layers and shares it with the rest)")
    return gguf_gemma4.shared_tail_problem(kinds, layers, shared)


def gemma3n_support(config: dict) -> str | None:
    """None when llama.cpp's gemma3n runs this text config as transformers does, else a one-line reason."""
    kinds, layers = layer_kinds(config), int(config["num_hidden_layers"])
    if len(kinds) != layers or set(kinds) - {"sliding_attention", "full_attention"}:
        reason = f"layer_types must list {layers} sliding_attention/full_attention layers"
    elif config.get("attention_bias"):
        reason = "attention_bias is not a Gemma 3n shape llama.cpp loads"
    elif config.get("hidden_activation", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_new"):
        reason = f"activation {config.get('hidden_activation')} (llama.cpp runs tanh GELU)"
    elif any(_rope(config, kind).get("rope_type", "default") != "default"
             or float(_rope(config, kind).get("partial_rotary_factor") or 1.0) != 1.0
             for kind in ("full_attention", "sliding_attention")) or config.get("rope_scaling"):
        reason = "rope must be plain rope over whole heads on both layer kinds, as llama.cpp's gemma3n runs it"
    elif int(config.get("vocab_size_per_layer_input") or config["vocab_size"]) > int(config["vocab_size"]):
        reason = "vocab_size_per_layer_input exceeds vocab_size"
    else:
        reason = _fixed_problem(config) or _kv_sharing_problem(config, kinds)
    return reason and f"GGUF export of Gemma 3n: {reason}"


def feed_forward_lengths(config: dict) -> int | list[int]:
    """intermediate_size: one for all layers, or one per layer (transformers 5 saves the list)."""
    widths = config["intermediate_size"]
    if not isinstance(widths, list):
        return int(widths)
    return int(widths[0]) if len(set(widths)) == 1 else [int(width) for width in widths]


def add_gemma3n_hparams(put, config: dict) -> None:
    """Every `gemma3n.*` key beside the common ones, as llama.cpp's converter writes them (the AltUp and sparsity
    keys are informative: llama.cpp uses its fixed values, which gemma3n_support has checked)."""
    import math
    from statistics import NormalDist  # the normal quantile, as torch's Normal.icdf the converter uses

    head_dim = int(config.get("head_dim") or 256)
    put("add_key_length", head_dim)
    put("add_value_length", head_dim)
    put("add_rope_freq_base", rope_base(config, "full_attention"))
    put("add_rope_freq_base_swa", rope_base(config, "sliding_attention"))
    put("add_rope_dimension_count", head_dim)
    put("add_sliding_window", int(config["sliding_window"]))
    put("add_sliding_window_pattern", [kind == "sliding_attention" for kind in layer_kinds(config)])
    put("add_final_logit_softcapping", SOFTCAP)
    gguf_gemma4.add_per_layer_input_hparams(put, config)
    put("add_altup_active_idx", FIXED["altup_active_idx"])
    put("add_altup_num_inputs", FIXED["altup_num_inputs"])
    put("add_activation_sparsity_scale",
        [NormalDist().inv_cdf(value) if value > 0 else -math.inf for value in sparsity_pattern(config)])


def gemma3n_lookup(lookup: str) -> str:
    """The name gguf's map knows for a Gemma 3n weight: AltUp's output scale is a bare parameter (no `.weight`)."""
    return lookup + ".weight" if lookup.endswith(".correct_output_scale") else lookup


def per_layer_table(shape: tuple[int, ...], config: dict):
    """(written shape, transform) of the per-layer embedding: rows up to vocab_size, the ids past the table's own
    vocabulary reading row 0, as transformers' get_per_layer_inputs maps them."""
    vocab = int(config["vocab_size"])
    if shape[0] >= vocab:
        return tuple(shape), None

    def pad(array):
        import numpy as np

        return np.concatenate([array, np.repeat(array[:1], vocab - array.shape[0], axis=0)])
    return (vocab, *shape[1:]), pad


def extra_tensors(names: dict, shapes: dict, config: dict) -> tuple[list[tuple], set[str]]:
    """([(gguf name, shape, source weights, transform)], consumed checkpoint names): the AltUp projections stacked
    into one tensor each, and zero K/V projections and k norms for the KV-shared layers that have none."""
    import numpy as np

    tensors, consumed = [], set()
    for prefix, gguf_name in _STACKED.items():
        sources = tuple(names[f"{prefix}.{i}.weight"] for i in range(FIXED["altup_num_inputs"] - 1))
        tensors.append((gguf_name, (len(sources), *shapes[sources[0]]), sources, None))
        consumed.update(sources)
    head_dim, hidden = int(config.get("head_dim") or 256), int(config["hidden_size"])
    kv_rows = int(config.get("num_key_value_heads") or config["num_attention_heads"]) * head_dim
    for layer in range(int(config["num_hidden_layers"])):
        for part, hf_part, shape in (("attn_k", "k_proj", (kv_rows, hidden)), ("attn_v", "v_proj", (kv_rows, hidden)),
                                     ("attn_k_norm", "k_norm", (head_dim,))):
            if f"model.layers.{layer}.self_attn.{hf_part}.weight" not in names:
                zeros = np.zeros(shape, dtype=np.float32)
                tensors.append((f"blk.{layer}.{part}.weight", shape, (), lambda _unused, zeros=zeros: zeros))
    return tensors, consumed
