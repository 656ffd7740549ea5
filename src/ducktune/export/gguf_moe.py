"""llama.cpp's `qwen3moe` architecture: Qwen3-MoE (Qwen3MoeForCausalLM: Qwen3-30B-A3B, Qwen3-235B-A22B).

Learned from llama.cpp's loader and graph (src/models/qwen3moe.cpp) and its converter (conversion/qwen.py).
Attention is Qwen3's (per-head q/k RMSNorm, rotate-half rope as HF stores it); every layer's MLP is a
routed mixture: softmax over `num_experts` router logits (mlp.gate -> ffn_gate_inp), the top
`num_experts_per_tok` kept and renormalized (llama.cpp always renormalizes: `norm_topk_prob` false is
refused), each a SiLU-gated MLP of width `moe_intermediate_size`.

Checkpoints keep one weight per expert (model.layers.N.mlp.experts.E.gate_proj.weight, as published and
as transformers 5 saves them) or, loaded in transformers 5, fused 3-D ones (experts.gate_up_proj
[E, 2I, H], gate rows first; experts.down_proj [E, H, I]). llama.cpp wants one stacked tensor per kind:
ffn_gate_exps / ffn_up_exps [E, I, H] and ffn_down_exps [E, H, I] (numpy order).
"""

from __future__ import annotations

import re

from ducktune.errors import ModelError

ARCH = "qwen3moe"
EXPERT_WEIGHT = re.compile(
    r"^model\.layers\.(\d+)\.mlp\.experts\.(?:(\d+)\.)?(gate_proj|up_proj|down_proj|gate_up_proj)(?:\.weight)?$")
GGUF_KIND = {"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps"}


def expert_count(config: dict) -> int:
    # published configs say num_experts; transformers 5 saves num_local_experts
    return int(config.get("num_experts") or config.get("num_local_experts") or 0)


def qwen3moe_support(config: dict, name: str) -> str | None:
    """None when llama.cpp's qwen3moe runs this config as transformers does, else a one-line reason."""
    if expert_count(config) < 1 or int(config.get("num_experts_per_tok") or 0) < 1:
        reason = "num_experts and num_experts_per_tok must be set (llama.cpp's qwen3moe needs both)"
    elif config.get("mlp_only_layers") or int(config.get("decoder_sparse_step", 1)) != 1:
        # transformers then runs dense MLPs on some layers; llama.cpp's qwen3moe has experts on every layer
        reason = "mlp_only_layers / decoder_sparse_step give dense layers; llama.cpp's qwen3moe is all-MoE"
    elif not config.get("norm_topk_prob", False):  # Qwen3MoeConfig's default is false
        reason = "norm_topk_prob false; llama.cpp's qwen3moe always renormalizes the top-k expert weights"
    elif config.get("attention_bias"):
        reason = "attention_bias true; llama.cpp's qwen3moe adds no output-projection bias"
    elif config.get("hidden_act", "silu") != "silu":
        reason = f"hidden_act {config['hidden_act']!r}; llama.cpp's qwen3moe runs SiLU experts"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def add_qwen3moe_hparams(put, config: dict) -> None:
    put("add_expert_count", expert_count(config))
    put("add_expert_used_count", int(config["num_experts_per_tok"]))
    put("add_expert_feed_forward_length", int(config["moe_intermediate_size"]))


def expert_tensors(names: dict[str, str], shapes: dict, config: dict, where: str) -> tuple[list[tuple], set[str]]:
    """(gguf name, written shape, source weights stacked per expert (or one fused weight), transform) of
    every layer's stacked expert tensor, and the checkpoint names they consume."""
    experts = expert_count(config)
    found: dict[tuple[int, str], dict] = {}
    used = set()
    for lookup, hf_name in names.items():
        match = EXPERT_WEIGHT.match(lookup)
        if match:
            layer, expert, kind = match.groups()
            found.setdefault((int(layer), kind), {})[None if expert is None else int(expert)] = hf_name
            used.add(hf_name)
    out = []
    for (layer, kind), by_expert in sorted(found.items()):
        if None in by_expert:  # transformers 5's fused 3-D weight
            out += _fused_tensors(layer, kind, by_expert[None], shapes[by_expert[None]])
            continue
        sources = tuple(by_expert.get(e) for e in range(experts))
        if None in sources or len(by_expert) != experts:
            raise ModelError(f"{where}: layer {layer} {kind}: weights for {len(by_expert)} experts, config.json says {experts}")
        shape = (experts, *shapes[sources[0]])
        out.append((f"blk.{layer}.{GGUF_KIND[kind]}.weight", shape, sources, None))
    return out, used


def _fused_tensors(layer: int, kind: str, hf_name: str, shape: tuple) -> list[tuple]:
    """gate_up_proj [E, 2I, H] -> gate (first I rows of each expert) and up (the rest); down_proj as it is."""
    if kind != "gate_up_proj":
        return [(f"blk.{layer}.{GGUF_KIND[kind]}.weight", tuple(shape), (hf_name,), None)]
    width = shape[1] // 2
    half = (shape[0], width, shape[2])
    return [(f"blk.{layer}.ffn_gate_exps.weight", half, (hf_name,), lambda array: array[:, :width]),
            (f"blk.{layer}.ffn_up_exps.weight", half, (hf_name,), lambda array: array[:, width:])]
