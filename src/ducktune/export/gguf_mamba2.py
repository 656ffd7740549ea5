"""llama.cpp's `granitehybrid` architecture: Granite 4.0-H (GraniteMoeHybridForCausalLM with Mamba-2 layers:
granite-4.0-h-micro, -h-1b, -h-350m, and the MoE h-tiny / h-small).

Learned from llama.cpp's loader and graph (src/models/granite-hybrid.cpp, mamba-base.cpp's Mamba-2 layer) and
how its converter writes GraniteMoeHybrid (conversion/granite.py on top of conversion/mamba.py's Mamba-2). Its
Mamba-2 mixer helpers (mamba_dims, mixer_problem, add_ssm_hparams, mamba_tensor, keep_f32) also write Falcon-H1's
mixers (gguf_falconh1) and Nemotron-H's (gguf_nemotronh, its keys translated to the spelling read here):

- Layers are Mamba-2 (`mamba`; transformers 5 saves `linear_attention`) or attention (`attention` /
  `full_attention`). llama.cpp knows a layer is recurrent by its head_count_kv being 0, so that key is an
  array per layer.
- Mamba-2 mixer: in_proj rows [z (d_inner); x B C (conv channels); dt (one per head)] -> ssm_in, in the order
  llama.cpp splits them; conv1d [channels, 1, d_conv] squeezed to [channels, d_conv] (F32, as ssm_conv reads
  it); dt_bias -> ssm_dt.bias; A_log -> ssm_a written as -exp(A_log) (llama.cpp multiplies by it) and D ->
  ssm_d, both [heads, 1]; the gated norm (RMS over groups of d_inner / n_groups after y * silu(z), as
  transformers' RMSNormGated) -> ssm_norm reshaped [n_groups, d_inner / n_groups]; out_proj -> ssm_out.
- ssm.* keys: conv_kernel = mamba_d_conv, inner_size = mamba_expand * hidden (llama.cpp only runs an expansion
  of 2), state_size = mamba_d_state, group_count = mamba_n_groups, time_step_rank = mamba_n_heads (llama.cpp's
  name for the head count; each head mamba_d_head = inner_size / heads wide).
- Attention layers are Granite's (muP scalars, q/k re-ordered for llama.cpp's rotary). Granite 4.0-H runs them
  without position embedding (`position_embedding_type` "nope"): rope.scaling.finetuned, which llama.cpp's
  granitehybrid reads as "rotate", is written false then (true for "rope", as transformers rotates then).
- The MLP is the dense shared_mlp (input_linear split into ffn_gate / ffn_up, as for Granite 4.0 micro), of
  shared_intermediate_size. MoE configs (num_local_experts > 0: h-tiny, h-small) route each token to the top
  num_experts_per_tok experts (softmax over the top-k router logits, which is llama.cpp's softmax over all,
  top-k, renormalized) beside the shared_mlp as a shared expert: router.layer -> ffn_gate_inp, the experts'
  stacked [E, 2I, H] input_linear split per expert into ffn_gate_exps / ffn_up_exps, output_linear ->
  ffn_down_exps, shared_mlp -> ffn_*_shexp; feed_forward_length is then the experts' intermediate_size and
  expert_shared_feed_forward_length the shared one.
"""

from __future__ import annotations

from collections.abc import Callable

ARCH = "granitehybrid"
# Granite 4's Mamba-2 layer kinds as published and as transformers 5 saves them
MAMBA_KINDS = {"mamba", "linear_attention"}
ATTENTION_KINDS = {"attention", "full_attention"}
# the one Mamba expansion llama.cpp's granitehybrid loads (it asserts d_inner == 2 * n_embd)
LLAMA_CPP_EXPAND = 2
# transformers' default dt clamp: none (llama.cpp's ssm_scan clamps nothing)
NO_DT_LIMIT = (0.0, float("inf"))


def layer_kinds(config: dict) -> list[str]:
    """Per-layer kind as GraniteMoeHybridConfig reads it (every layer Mamba-2 when `layer_types` is absent)."""
    return list(config.get("layer_types") or ["mamba"] * int(config["num_hidden_layers"]))


def mamba_layers(config: dict) -> list[bool]:
    return [kind in MAMBA_KINDS for kind in layer_kinds(config)]


def is_hybrid(config: dict) -> bool:
    """Whether a GraniteMoeHybrid config has Mamba-2 layers (granitehybrid) rather than attention only (granite)."""
    return any(mamba_layers(config))


def mamba_dims(config: dict) -> tuple[int, int, int, int]:
    """(inner size, heads, head dim, groups) of the Mamba-2 mixers, with GraniteMoeHybridConfig's defaults
    (FalconH1Config's are the same); Falcon-H1 may set the inner size apart from expand x hidden (mamba_d_ssm)."""
    inner = int(config.get("mamba_d_ssm") or int(config.get("mamba_expand", 2)) * int(config["hidden_size"]))
    heads = int(config.get("mamba_n_heads", 128))
    head_dim = config.get("mamba_d_head", "auto")
    head_dim = inner // heads if head_dim in (None, "auto") else int(head_dim)
    return inner, heads, head_dim, int(config.get("mamba_n_groups", 1))


def _json_float(value) -> float:
    """A float of config.json: transformers 5 saves infinity as {"__float__": "Infinity"}."""
    return float(value["__float__"] if isinstance(value, dict) else value)


def granitehybrid_support(config: dict) -> str | None:
    """None when llama.cpp's granitehybrid runs this (hybrid) config as transformers does, else a one-line reason
    (without the "GGUF export of X:" prefix)."""
    kinds = layer_kinds(config)
    if len(kinds) != int(config["num_hidden_layers"]) or set(kinds) - MAMBA_KINDS - ATTENTION_KINDS:
        return f"layer_types must list {config['num_hidden_layers']} of mamba / attention"
    if expert_count(config) == 1 or (expert_count(config) and int(config.get("num_experts_per_tok") or 0) < 1):
        # llama.cpp reads one expert as none, and needs a top-k
        return (f"num_local_experts {config['num_local_experts']} with num_experts_per_tok "
                f"{config.get('num_experts_per_tok')}: llama.cpp's granitehybrid needs 2+ experts and a top-k")
    if int(config.get("mamba_expand", 2)) != LLAMA_CPP_EXPAND:
        return f"mamba_expand {config['mamba_expand']}; llama.cpp's granitehybrid runs an expansion of 2 only"
    if reason := mixer_problem(config, ARCH):
        return reason
    if config.get("position_embedding_type") not in (None, "nope", "rope"):
        return f"position_embedding_type {config['position_embedding_type']!r} is not rope or none"
    return None


def mixer_problem(config: dict, arch: str) -> str | None:
    """What llama.cpp's Mamba-2 layer (build_mamba2_layer) would run differently from transformers' mixer, as a
    one-line reason naming the config key; None when nothing."""
    inner, heads, head_dim, groups = mamba_dims(config)
    if heads * head_dim != inner:
        return f"mamba_n_heads {heads} x mamba_d_head {head_dim} must equal the Mamba-2 inner size ({inner})"
    if inner % groups:
        return f"mamba_n_groups {groups} does not divide the Mamba-2 inner size {inner}"
    if config.get("mamba_proj_bias"):
        return "mamba_proj_bias true, but llama.cpp's Mamba-2 in/out projections have no bias"
    if config.get("hidden_act", "silu") != "silu":
        return f"hidden_act {config['hidden_act']!r}: llama.cpp's {arch} runs SiLU only"
    limit = config.get("time_step_limit", NO_DT_LIMIT)
    if limit is not None and tuple(_json_float(x) for x in limit) != NO_DT_LIMIT:
        return f"time_step_limit {list(limit)}: llama.cpp's Mamba-2 does not clamp the time step"
    return None


def add_ssm_hparams(put, config: dict) -> None:
    """The Mamba-2 mixer's `ssm.*` keys (time_step_rank is llama.cpp's name for the head count)."""
    inner, heads, _, groups = mamba_dims(config)
    put("add_ssm_conv_kernel", int(config.get("mamba_d_conv", 4)))
    put("add_ssm_inner_size", inner)
    put("add_ssm_state_size", int(config.get("mamba_d_state", 256)))
    put("add_ssm_time_step_rank", heads)
    put("add_ssm_group_count", groups)


def expert_count(config: dict) -> int:
    return int(config.get("num_local_experts") or 0)


def feed_forward_length(config: dict) -> int:
    """The width llama.cpp reads as feed_forward_length: the experts' with experts, else the shared_mlp's."""
    return int(config["intermediate_size"] if expert_count(config) else config["shared_intermediate_size"])


def head_count_kv(config: dict, kv_heads: int) -> list[int]:
    """KV heads per layer, 0 on the Mamba-2 layers: how llama.cpp tells recurrent layers apart."""
    return [0 if mamba else kv_heads for mamba in mamba_layers(config)]


def add_granitehybrid_hparams(put, config: dict) -> None:
    """The Mamba-2 (`ssm.*`) keys, and whether the attention layers rotate."""
    add_ssm_hparams(put, config)
    put("add_rope_scaling_finetuned", config.get("position_embedding_type") == "rope")
    if expert_count(config):
        put("add_expert_count", expert_count(config))
        put("add_expert_used_count", int(config["num_experts_per_tok"]))
        put("add_expert_shared_feed_forward_length", int(config["shared_intermediate_size"]))


def keep_f32(gguf_name: str) -> bool:
    """The Mamba-2 tensors llama.cpp's converter keeps in F32 (the conv kernel, A, D and the gated norm)."""
    return gguf_name.endswith((".ssm_a", ".ssm_d")) or ".ssm_conv1d." in gguf_name or ".ssm_norm." in gguf_name


def mamba_tensor(lookup: str, shape: tuple[int, ...], config: dict) -> tuple[str, tuple[int, ...], Callable | None]:
    """(name for gguf's tensor map, written shape, transform) of one Mamba-2 mixer weight (`.mamba.` in its name);
    in_proj and out_proj are written as they are."""
    import numpy as np

    if lookup.endswith(".A_log"):  # llama.cpp multiplies by A = -exp(A_log)
        return lookup, (shape[0], 1), lambda array: -np.exp(array.astype(np.float32)).reshape(-1, 1)
    if lookup.endswith(".D"):
        return lookup, (shape[0], 1), lambda array: array.reshape(-1, 1)
    if lookup.endswith(".dt_bias"):  # gguf's name map knows it as the dt projection's bias
        return lookup.removesuffix(".dt_bias") + ".dt_proj.bias", tuple(shape), None
    if ".conv1d." in lookup and len(shape) == 3:  # [channels, 1, d_conv] -> [channels, d_conv]
        return lookup, (shape[0], shape[-1]), lambda array: array.reshape(array.shape[0], array.shape[-1])
    if lookup.endswith(".norm.weight"):  # one RMS norm per group: [groups, d_inner / groups]
        groups = mamba_dims(config)[3]
        return lookup, (groups, shape[0] // groups), lambda array: array.reshape(groups, -1)
    return lookup, tuple(shape), None
