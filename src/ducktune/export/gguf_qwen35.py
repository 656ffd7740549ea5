"""llama.cpp's `qwen35` architecture: Qwen3.5's text model (Qwen3_5ForCausalLM, and the language
model of the published Qwen3_5ForConditionalGeneration checkpoints, whose vision tower ducktune
neither trains nor exports).

Learned from llama.cpp's loader and graph (src/models/qwen35.cpp, delta-net-base.cpp) and how its
converter writes Qwen3.5. Layers are of two kinds (`layer_types`):

- full_attention: Qwen3's attention (q/k RMSNorm per head) plus an output gate. q_proj's rows are
  [query, gate] per head, the layout llama.cpp splits; rotary is partial (25% of head_dim) and
  multi-section (MRoPE); with text positions every section sees the same position, so the
  sections only have to be present (`rope.dimension_sections`).
- linear_attention (Gated DeltaNet): in_proj_qkv -> attn_qkv, in_proj_z -> attn_gate, in_proj_b ->
  ssm_beta, in_proj_a -> ssm_alpha, dt_bias -> ssm_dt.bias, A_log -> ssm_a written as -exp(A_log)
  (llama.cpp multiplies by it), conv1d [channels, 1, kernel] -> [channels, kernel] in F32, the gated
  norm -> ssm_norm, out_proj -> ssm_out.
  Where there are more value heads than key heads (4B, 9B), HF groups the value heads by key head
  ([k0: v0 v1][k1: v0 v1]) while llama.cpp broadcasts key heads tiled ([k0 k1][k0 k1]): every
  per-value-head row, channel or column is re-ordered to the tiled order.
- Qwen3.5's RMSNorms multiply by (1 + w), llama.cpp's by w: every norm weight is written +1, except
  the DeltaNet's gated norm, which multiplies by w itself.
"""

from __future__ import annotations

from collections.abc import Callable

ARCH = "qwen35"
LAYER_KINDS = {"linear_attention", "full_attention"}


def _linear(config: dict) -> tuple[int, int, int, int]:
    """(key heads, value heads, key head dim, value head dim) of the Gated DeltaNet layers."""
    return (int(config.get("linear_num_key_heads", 16)), int(config.get("linear_num_value_heads", 32)),
            int(config.get("linear_key_head_dim", 128)), int(config.get("linear_value_head_dim", 128)))


def recurrent_layers(config: dict) -> list[bool]:
    return [kind == "linear_attention" for kind in config.get("layer_types") or []]


def qwen35_support(config: dict, n_layers: int) -> str | None:
    """None when llama.cpp's qwen35 runs this config as transformers does, else a one-line reason."""
    kinds = config.get("layer_types") or []
    if len(kinds) != n_layers or set(kinds) - LAYER_KINDS:
        return f"GGUF export of Qwen3.5: layer_types must list {n_layers} of {sorted(LAYER_KINDS)}"
    k_heads, v_heads, k_dim, v_dim = _linear(config)
    if k_dim != v_dim:  # llama.cpp sizes both from ssm.state_size
        return (f"GGUF export of Qwen3.5: linear_key_head_dim {k_dim} != linear_value_head_dim {v_dim}, "
                "which llama.cpp assumes equal")
    if v_heads % k_heads:
        return (f"GGUF export of Qwen3.5: linear_num_value_heads {v_heads} is not a multiple of "
                f"linear_num_key_heads {k_heads}")
    if config.get("attention_bias"):
        return "GGUF export of Qwen3.5: attention_bias is not a Qwen3.5 shape llama.cpp loads"
    return None


def mrope_sections(rope: dict) -> list[int]:
    """MRoPE sections padded to the 4 llama.cpp reads (Qwen3.5's default [11, 11, 10] when absent,
    as llama.cpp's converter writes)."""
    sections = list(rope.get("mrope_section") or [11, 11, 10])
    return (sections + [0] * 4)[:4]


def add_qwen35_hparams(put, config: dict, rope: dict) -> None:
    """The Gated DeltaNet (`ssm.*`) keys, the per-layer kind, and the MRoPE sections."""
    k_heads, v_heads, k_dim, v_dim = _linear(config)
    put("add_rope_dimension_sections", mrope_sections(rope))
    put("add_ssm_conv_kernel", int(config.get("linear_conv_kernel_dim", 4)))
    put("add_ssm_state_size", k_dim)
    put("add_ssm_group_count", k_heads)
    put("add_ssm_time_step_rank", v_heads)
    put("add_ssm_inner_size", v_dim * v_heads)
    # the exact per-layer kinds, not llama.cpp's default (every 4th layer full attention)
    put("add_array", recurrent_layers(config), key=f"{ARCH}.attention.recurrent_layers")


def tile_value_heads(array, axis: int, k_heads: int, per_key: int, width: int):
    """Value heads grouped by key head -> tiled across key heads, along `axis` (rows or columns)."""
    shape = array.shape
    axis %= array.ndim
    split = array.reshape(*shape[:axis], k_heads, per_key, width, *shape[axis + 1:])
    return split.swapaxes(axis, axis + 1).reshape(shape)


def _value_head_reorder(hf_name: str, config: dict) -> Callable | None:
    """How a DeltaNet tensor's per-value-head part moves to llama.cpp's tiled head order (None: it does not)."""
    k_heads, v_heads, k_dim, v_dim = _linear(config)
    if v_heads == k_heads or ".linear_attn." not in hf_name:
        return None
    per_key = v_heads // k_heads

    def tiled(array, axis=0, width=v_dim):
        return tile_value_heads(array, axis, k_heads, per_key, width)

    if ".in_proj_qkv." in hf_name or ".conv1d." in hf_name:  # only the value rows / channels after q and k
        import numpy as np

        qk = 2 * k_heads * k_dim
        return lambda array: np.concatenate([array[:qk], tiled(array[qk:])])
    if ".in_proj_z." in hf_name:
        return tiled
    if ".in_proj_a." in hf_name or ".in_proj_b." in hf_name or hf_name.endswith((".A_log", ".dt_bias")):
        return lambda array: tiled(array, width=1)
    if ".out_proj." in hf_name:
        return lambda array: tiled(array, axis=1)
    return None


def not_exported(hf_name: str) -> bool:
    """The vision tower and the multi-token-prediction head: llama.cpp's text model has neither."""
    return hf_name.startswith(("model.visual.", "visual.", "mtp.", "model.mtp."))


def qwen35_tensor(hf_name: str, shape: tuple[int, ...], config: dict) -> tuple[str, tuple[int, ...], Callable | None]:
    """(name for gguf's tensor map, written shape, transform) of one Qwen3.5 text weight."""
    import numpy as np

    # transformers saves Qwen3_5ForCausalLM under the multimodal checkpoint's names
    lookup, steps = hf_name.replace("model.language_model.", "model.", 1), []
    reorder = _value_head_reorder(hf_name, config)
    if reorder:
        steps.append(reorder)
    if hf_name.endswith(".A_log"):
        steps.append(lambda array: -np.exp(array.astype(np.float32)))
    elif hf_name.endswith(".dt_bias"):
        lookup = lookup.removesuffix(".dt_bias") + ".dt_proj.bias"
    elif ".conv1d." in hf_name:
        shape = (shape[0], shape[-1])
        steps.insert(0, lambda array: array.reshape(array.shape[0], array.shape[-1]))
    elif hf_name.endswith("norm.weight") and not hf_name.endswith("linear_attn.norm.weight"):
        steps.append(lambda array: array + 1.0)
    if not steps:
        return lookup, tuple(shape), None

    def transform(array):
        for step in steps:
            array = step(array)
        return array
    return lookup, tuple(shape), transform

