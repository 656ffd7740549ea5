"""llama.cpp's `gpt-oss` architecture: OpenAI's gpt-oss-20b / 120b (GptOssForCausalLM).

Learned from llama.cpp's loader and graph (src/models/openai-moe.cpp, LLM_ARCH_OPENAI_MOE) and its converter
(conversion/gpt_oss.py, GptOssModel). Attention has biases on q/k/v/o and one learned sink logit per head
(self_attn.sinks -> attn_sinks.weight), rotate-half rope (NEOX, as HF stores q/k: no re-ordering) with YaRN on
every layer, and layers alternating sliding / full (llama.cpp's pattern 2: even layers slide). The norm before
the MLP is written post_attention_norm (llama.cpp's name for it here). Every MLP is a routed mixture: the
router (mlp.router, with a bias) picks the top `num_experts_per_tok` logits and softmaxes over them; each
expert is the clamped SwiGLU (gate clamped above at 7, up to [-7, 7], gate * sigmoid(1.702 gate) * (up + 1)),
constants llama.cpp hard-codes.

transformers keeps the experts fused and transposed: gate_up_proj [E, H, 2I] with gate and up *interleaved*
(gate = columns 0, 2, 4..., up = 1, 3, 5...), gate_up_proj_bias [E, 2I], down_proj [E, I, H], down_proj_bias
[E, H]. llama.cpp wants ffn_gate_exps / ffn_up_exps [E, I, H] and ffn_down_exps [E, H, I] (numpy order) with
their biases [E, I] / [E, H]. The published checkpoints hold the experts in MXFP4 (`_blocks` / `_scales`):
ducktune dequantizes them on load (models/prequant), so the merged folder it writes from is full precision.
"""

from __future__ import annotations

import re

ARCH = "gpt-oss"
# llama.cpp's SWIGLU_OAI_MOE constants (llm_graph_context::build_moe_ffn)
SWIGLU_ALPHA, SWIGLU_LIMIT = 1.702, 7.0
EXPERT_WEIGHT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)(_bias)?$")
SINKS = re.compile(r"^model\.layers\.(\d+)\.self_attn\.sinks$")


def gptoss_support(config: dict, name: str, layer_kinds: list[str]) -> str | None:
    """None when llama.cpp's gpt-oss runs this config as transformers does, else a one-line reason."""
    expected = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(len(layer_kinds))]
    if float(config.get("swiglu_limit", SWIGLU_LIMIT)) != SWIGLU_LIMIT:
        reason = f"swiglu_limit {config['swiglu_limit']}; llama.cpp's gpt-oss clamps at {SWIGLU_LIMIT}"
    elif float(config.get("swiglu_alpha", SWIGLU_ALPHA)) != SWIGLU_ALPHA:
        reason = f"swiglu_alpha {config['swiglu_alpha']}; llama.cpp's gpt-oss uses {SWIGLU_ALPHA}"
    elif not config.get("attention_bias", True):
        reason = "attention_bias false; llama.cpp's gpt-oss loads q/k/v/o biases"
    elif not config.get("sliding_window"):
        reason = "no sliding_window; llama.cpp's gpt-oss slides every other layer"
    elif layer_kinds != expected:
        reason = "layer_types other than sliding/full alternating from a sliding first layer (llama.cpp's pattern)"
    elif int(config.get("num_local_experts") or 0) < 1 or int(config.get("num_experts_per_tok") or 0) < 1:
        reason = "num_local_experts and num_experts_per_tok must be set"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def add_gptoss_hparams(put, config: dict) -> None:
    put("add_expert_count", int(config["num_local_experts"]))
    put("add_expert_used_count", int(config["num_experts_per_tok"]))
    put("add_expert_feed_forward_length", int(config["intermediate_size"]))
    put("add_sliding_window", int(config["sliding_window"]))


def _interleaved(which: int):
    """gate (which 0) or up (1) of the interleaved gate_up_proj: weights [E, H, 2I] -> [E, I, H], biases [E, 2I] -> [E, I]."""
    def take(array):
        part = array[..., which::2]
        return part.transpose(0, 2, 1) if part.ndim == 3 else part
    return take


def _transposed(array):
    return array.transpose(0, 2, 1)


def expert_tensors(names: dict[str, str], shapes: dict) -> tuple[list[tuple], set[str]]:
    """(gguf name, written shape, source weights, transform) of every layer's expert tensors and sinks, and the
    checkpoint names they consume (the format gguf_moe.expert_tensors gives plan_from_shapes)."""
    out, used = [], set()
    for lookup, hf_name in sorted(names.items()):
        if match := SINKS.match(lookup):
            out.append((f"blk.{match.group(1)}.attn_sinks.weight", tuple(shapes[hf_name]), (hf_name,), None))
            used.add(hf_name)
            continue
        match = EXPERT_WEIGHT.match(lookup)
        if not match:
            continue
        layer, kind, bias = match.groups()
        suffix, shape = ("bias" if bias else "weight"), tuple(shapes[hf_name])
        used.add(hf_name)
        if kind == "down_proj":
            written = shape if bias else (shape[0], shape[2], shape[1])
            out.append((f"blk.{layer}.ffn_down_exps.{suffix}", written, (hf_name,), None if bias else _transposed))
            continue
        half = (shape[0], shape[1] // 2) if bias else (shape[0], shape[2] // 2, shape[1])
        out += [(f"blk.{layer}.ffn_gate_exps.{suffix}", half, (hf_name,), _interleaved(0)),
                (f"blk.{layer}.ffn_up_exps.{suffix}", half, (hf_name,), _interleaved(1))]
    return out, used
