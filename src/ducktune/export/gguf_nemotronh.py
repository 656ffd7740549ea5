"""llama.cpp's `nemotron_h` architecture: NVIDIA Nemotron-H (NemotronHForCausalLM: NVIDIA-Nemotron-Nano-9B-v2 /
12B-v2, Nemotron-H-4B / 8B / 47B / 56B).

Learned from llama.cpp's loader and graph (src/models/nemotron-h.cpp on mamba-base.cpp's Mamba-2 layer) and how
its converter writes NemotronHForCausalLM (conversion/nemotron.py's NemotronHModel, on GraniteHybridModel):

- Each layer is ONE of a Mamba-2 mixer ("M"; transformers 5: linear_attention), attention ("*"; full_attention)
  or a squared-ReLU MLP without gate ("-"; mlp), after one RMS norm (blk.N.attn_norm), plus the residual. The
  published config spells the layers as `hybrid_override_pattern`; transformers 5 saves `layers_block_type`
  (and no num_hidden_layers). llama.cpp tells them apart per layer: recurrent when head_count_kv and
  feed_forward_length are both 0, attention when only feed_forward_length is, MLP otherwise.
- The Mamba-2 mixers are written by gguf_mamba2 (A_log -> -exp, D / A [heads, 1], dt_bias, conv1d squeezed, the
  gated norm per group, F32) from Nemotron-H's keys translated to Granite's spelling (mamba2_keys): the inner
  size is mamba_num_heads x mamba_head_dim, not expand x hidden.
- Attention has no position embedding (llama.cpp's nemotron_h rotates nothing), a head_dim apart from
  hidden / heads (key_length written) and no biases (transformers hard-codes none).
- llama.cpp requires layer_norm_epsilon (it reads the RMS one from it when absent); both are written.
- MoE layers ("E"/moe: Nemotron 3 Nano, llama.cpp's separate nemotron_h_moe, with its MTP head) are refused.
"""

from __future__ import annotations

from ducktune.export import gguf_mamba2
from ducktune.export.gguf_common import first_value

ARCH = "nemotron_h"
# hybrid_override_pattern's letters -> transformers 5's layer kinds
PATTERN_KINDS = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
KINDS = set(PATTERN_KINDS.values())
# the MLP activation llama.cpp's nemotron_h graph runs (LLM_FFN_RELU_SQR)
LLAMA_CPP_MLP_ACT = "relu2"


def layer_kinds(config: dict) -> list[str]:
    """Per-layer kind in transformers 5's names, from layers_block_type / layer_types or the published pattern."""
    kinds = config.get("layers_block_type") or config.get("layer_types")
    if kinds:
        return list(kinds)
    return [PATTERN_KINDS.get(letter, letter) for letter in config.get("hybrid_override_pattern") or ""]


def mamba2_keys(config: dict) -> dict:
    """The Mamba-2 mixer's settings in Granite 4.0-H's key spelling, which gguf_mamba2 reads (NemotronHConfig's
    defaults where absent; it also accepts the mamba_-prefixed names)."""
    heads, head_dim = int(config.get("mamba_num_heads", 128)), int(config.get("mamba_head_dim", 64))
    return {
        "hidden_size": config["hidden_size"], "mamba_d_ssm": heads * head_dim, "mamba_n_heads": heads,
        "mamba_d_head": head_dim, "mamba_n_groups": int(first_value(config, "n_groups", "mamba_n_groups", default=8)),
        "mamba_d_state": int(first_value(config, "ssm_state_size", "mamba_d_state", default=128)),
        "mamba_d_conv": int(first_value(config, "conv_kernel", "mamba_d_conv", default=4)),
        # NemotronH's in_proj / out_proj biases follow use_bias
        "mamba_proj_bias": bool(config.get("use_bias")), "hidden_act": config.get("mamba_hidden_act", "silu"),
        "time_step_limit": first_value(config, "time_step_limit", "mamba_dt_limit", default=gguf_mamba2.NO_DT_LIMIT),
    }


def nemotronh_support(config: dict, name: str) -> str | None:
    """None when llama.cpp's nemotron_h runs this config as transformers does, else a one-line reason."""
    kinds = layer_kinds(config)
    if not kinds or set(kinds) - KINDS:
        return f"GGUF export of {name}: hybrid_override_pattern / layers_block_type must list M, *, - or E layers"
    if "moe" in kinds:
        return (f"GGUF export of {name}: MoE layers (Nemotron 3 Nano) run as llama.cpp's nemotron_h_moe, which "
                "ducktune does not write")
    if config.get("num_hidden_layers") is not None and int(config["num_hidden_layers"]) != len(kinds):
        return f"GGUF export of {name}: num_hidden_layers {config['num_hidden_layers']} but {len(kinds)} layer kinds"
    if (act := config.get("mlp_hidden_act", LLAMA_CPP_MLP_ACT)) != LLAMA_CPP_MLP_ACT:
        return f"GGUF export of {name}: mlp_hidden_act {act!r}: llama.cpp's {ARCH} runs squared ReLU (relu2) only"
    # the Mamba-2 limits gguf_mamba2 checks under Granite's names, named here as Nemotron-H spells them
    if config.get("use_bias"):
        return f"GGUF export of {name}: use_bias true, but llama.cpp's Mamba-2 in/out projections have no bias"
    if (act := config.get("mamba_hidden_act", "silu")) != "silu":
        return f"GGUF export of {name}: mamba_hidden_act {act!r}: llama.cpp's {ARCH} runs SiLU only"
    mixer = mamba2_keys(config)
    if mixer["mamba_d_ssm"] % mixer["mamba_n_groups"]:
        return (f"GGUF export of {name}: n_groups {mixer['mamba_n_groups']} does not divide mamba_num_heads x "
                f"mamba_head_dim ({mixer['mamba_d_ssm']})")
    if reason := gguf_mamba2.mixer_problem(mixer, ARCH):
        return f"GGUF export of {name}: {reason}"
    return None


def feed_forward_lengths(config: dict) -> list[int]:
    """The MLP width on MLP layers, 0 elsewhere (how llama.cpp's nemotron_h tells the other kinds apart)."""
    return [int(config["intermediate_size"]) if kind == "mlp" else 0 for kind in layer_kinds(config)]


def head_count_kv(config: dict, kv_heads: int) -> list[int]:
    """KV heads on attention layers, 0 on Mamba-2 and MLP layers."""
    return [kv_heads if kind == "full_attention" else 0 for kind in layer_kinds(config)]


def add_nemotronh_hparams(put, config: dict, head_dim: int) -> None:
    """The Mamba-2 `ssm.*` keys, the attention head width and the LayerNorm epsilon llama.cpp requires."""
    gguf_mamba2.add_ssm_hparams(put, mamba2_keys(config))
    put("add_key_length", head_dim)
    put("add_value_length", head_dim)
    put("add_layer_norm_eps", float(config.get("layer_norm_epsilon", 1e-5)))

