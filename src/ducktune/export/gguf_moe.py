"""llama.cpp's routed mixture-of-experts architectures: Qwen3-MoE (`qwen3moe`), OLMoE (`olmoe`), Granite 3.0/3.1
MoE (`granitemoe`, whose attention, muP scalars and rope are the dense granite's: gguf_arch), Mixtral (`llama`
with experts: Llama's graph, per-expert w1/w3/w2 as gate/up/down, always renormalized) and Qwen2-MoE
(`qwen2moe`: Qwen2's attention with q/k/v biases, plus a shared expert whose output a sigmoid gate scales:
mlp.shared_expert.* -> ffn_*_shexp, mlp.shared_expert_gate [1, H] -> ffn_gate_inp_shexp, written as stored and
kept F32, as llama.cpp's converter does), ERNIE 4.5 MoE (`ernie4_5-moe`: the dense ERNIE 4.5's attention,
leading dense layers up to moe_layer_start_index, ungated shared experts mlp.shared_experts.* -> ffn_*_shexp)
and LFM2-MoE (`lfm2moe`: LFM2's short-conv and attention layers, gguf_lfm2, with num_dense_layers leading
dense MLPs and a sigmoid router).

Both of the last choose experts by the router's probabilities plus a per-expert bias, then weight them by the
unbiased ones: ERNIE's mlp.moe_statics.e_score_correction_bias [1, E] and LFM2-MoE's feed_forward.expert_bias
[E], written as llama.cpp's exp_probs_b.bias [E] (`selection_bias`), F32 as every 1-D tensor.

Learned from llama.cpp's loaders and graphs (src/models/qwen3moe.cpp, olmoe.cpp, granite.cpp, llama.cpp,
qwen2moe.cpp, ernie4-5.cpp / ernie4-5-moe.cpp, lfm2moe.cpp / lfm2.cpp) and its converters (conversion/qwen.py,
olmo.py, granite.py, llama.py, ernie.py, lfm2.py). Each routed MLP: softmax (LFM2-MoE: sigmoid) over the
router's logits (-> ffn_gate_inp), the top `num_experts_per_tok` kept, each a SiLU-gated MLP. What differs per
architecture (`MoeArch`): whether llama.cpp renormalizes the kept weights (its build_moe_ffn `norm_w`, fixed
per graph: the config's `norm_topk_prob` must agree, Granite's router softmaxes the top-k logits, which is the
same renormalization), which config key holds each expert's width, how many leading layers are dense, and
the router's function where llama.cpp reads it from the file.

Checkpoints keep one weight per expert (model.layers.N.mlp.experts.E.gate_proj.weight, as Qwen2/3-MoE and
OLMoE publish them and as transformers 5 saves them; Mixtral's block_sparse_moe.experts.E.w1/w3/w2) or fused
3-D ones: transformers 5 in memory (experts.gate_up_proj [E, 2I, H], gate rows first; experts.down_proj
[E, H, I]) and Granite as published
(block_sparse_moe.input_linear [E, 2I, H], gate rows first, as transformers chunks it; output_linear
[E, H, I]). llama.cpp wants one stacked tensor per kind: ffn_gate_exps / ffn_up_exps [E, I, H] and
ffn_down_exps [E, H, I] (numpy order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ducktune.errors import ModelError


@dataclass(frozen=True)
class MoeArch:
    renormalizes: bool          # llama.cpp's build_moe_ffn norm_w in this graph
    expert_width_key: str       # config key of each expert's MLP width
    # transformers renormalizes the kept weights whatever the config says (Granite's top-k softmax, Mixtral, ERNIE)
    always_renormalized: bool = False
    norm_topk_default: bool = False  # the config class's norm_topk_prob when config.json has none
    # (config key, its default) of how many leading layers are dense MLPs: llama.cpp's leading_dense_block_count
    dense_lead: tuple[str, int] | None = None
    gating: str | None = None  # gguf.ExpertGatingFuncType member llama.cpp must be told (its default: none)


ARCHES = {
    "qwen3moe": MoeArch(renormalizes=True, expert_width_key="moe_intermediate_size"),
    # OLMoE's and Granite's experts are intermediate_size wide: llama.cpp sizes them by feed_forward_length
    "olmoe": MoeArch(renormalizes=False, expert_width_key="intermediate_size"),
    "granitemoe": MoeArch(renormalizes=True, expert_width_key="intermediate_size", always_renormalized=True),
    # Mixtral: llama's graph with experts (only configs with experts are routed: `routed`)
    "llama": MoeArch(renormalizes=True, expert_width_key="intermediate_size", always_renormalized=True),
    # Qwen2-MoE adds a shared expert (ffn_*_shexp) scaled by a sigmoid gate (ffn_gate_inp_shexp) to every layer
    "qwen2moe": MoeArch(renormalizes=False, expert_width_key="moe_intermediate_size"),
    # ERNIE 4.5 MoE's router softmaxes, then always renormalizes the kept weights (clamped at moe_norm_min)
    "ernie4_5-moe": MoeArch(renormalizes=True, expert_width_key="moe_intermediate_size", always_renormalized=True,
                            dense_lead=("moe_layer_start_index", 1)),
    # LFM2-MoE's router is a sigmoid (written as the gating function), its kept weights renormalized
    "lfm2moe": MoeArch(renormalizes=True, expert_width_key="moe_intermediate_size", norm_topk_default=True,
                       dense_lead=("num_dense_layers", 2), gating="SIGMOID"),
    # DeepSeek-V2: dense leading layers, then routed experts beside always-on shared ones (gguf_deepseek2)
    "deepseek2": MoeArch(renormalizes=False, expert_width_key="moe_intermediate_size"),
}
EXPERT_WEIGHT = re.compile(
    r"^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe|feed_forward)\.(?:experts\.(?:(\d+)\.)?"
    r"(gate_proj|up_proj|down_proj|gate_up_proj|w1|w2|w3)|(input_linear|output_linear))(?:\.weight)?$")
GGUF_KIND = {"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps"}
# published names -> transformers 5's: Mixtral's per-expert w1 (SiLU's input) / w3 / w2, Granite's fused pair
PUBLISHED_NAMES = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj",
                   "input_linear": "gate_up_proj", "output_linear": "down_proj"}


# ERNIE 4.5's selection bias (published under mlp.moe_statics, transformers 5 in memory under mlp.gate.moe_statics)
# and LFM2-MoE's
SELECTION_BIAS = re.compile(r"^model\.layers\.(\d+)\.(?:mlp\.(?:gate\.)?moe_statics\.e_score_correction_bias"
                            r"|feed_forward\.expert_bias)$")


def expert_count(config: dict) -> int:
    # published configs say num_experts (Qwen3-MoE, OLMoE), num_local_experts (Granite, transformers 5 saves),
    # moe_num_experts (ERNIE 4.5) or n_routed_experts (DeepSeek-V2)
    return int(config.get("num_experts") or config.get("num_local_experts") or config.get("moe_num_experts")
               or config.get("n_routed_experts") or 0)


def experts_used(config: dict) -> int:
    return int(config.get("num_experts_per_tok") or config.get("moe_k") or 0)  # ERNIE 4.5 says moe_k


def routed(config: dict, arch: str) -> bool:
    """Whether llama.cpp's `arch` runs this config's MLPs as routed experts (llama only when it has experts)."""
    return arch in ARCHES and (arch != "llama" or expert_count(config) > 0)


def moe_support(config: dict, name: str, arch: str) -> str | None:
    """None when llama.cpp's `arch` runs this config as transformers does, else a one-line reason."""
    facts = ARCHES[arch]
    renormalized = facts.always_renormalized or bool(config.get("norm_topk_prob", facts.norm_topk_default))
    if expert_count(config) < 1 or experts_used(config) < 1:
        reason = f"the expert count and num_experts_per_tok must be set (llama.cpp's {arch} needs both)"
    elif renormalized != facts.renormalizes:
        reason = (f"norm_topk_prob {str(renormalized).lower()}; llama.cpp's {arch} "
                  f"{'always' if facts.renormalizes else 'never'} renormalizes the top-k expert weights")
    elif config.get("hidden_act", "silu") != "silu":
        reason = f"hidden_act {config['hidden_act']!r}; llama.cpp's {arch} runs SiLU experts"
    elif config.get("attention_bias") and arch != "granitemoe":  # granitemoe loads q/k/v/o biases
        reason = f"attention_bias true; llama.cpp's {arch} adds no output-projection bias"
    else:  # Mixtral (llama) has nothing of its own to refuse
        problem = {"qwen3moe": _dense_layers_problem, "olmoe": _olmoe_problem, "granitemoe": _granitemoe_problem,
                   "qwen2moe": _qwen2moe_problem, "ernie4_5-moe": _ernie_problem, "lfm2moe": _lfm2moe_problem}.get(arch)
        reason = problem(config) if problem else None
    return f"GGUF export of {name}: {reason}" if reason else None


def _granitemoe_problem(config: dict) -> str | None:
    # GraniteMoeShared's shared expert has no place in GraniteMoeForCausalLM's checkpoints
    if int(config.get("shared_intermediate_size") or 0) > 0:
        return "shared_intermediate_size set (GraniteMoeShared's shared expert; not written by ducktune)"
    return None


def _dense_layers_problem(config: dict, arch: str = "qwen3moe") -> str | None:
    if config.get("mlp_only_layers") or int(config.get("decoder_sparse_step", 1)) != 1:
        # transformers then runs dense MLPs on some layers; llama.cpp's Qwen MoE graphs have experts on every layer
        return f"mlp_only_layers / decoder_sparse_step give dense layers; llama.cpp's {arch} is all-MoE"
    return None


def _square_attention_problem(config: dict, arch: str) -> str | None:
    """llama.cpp's olmoe and qwen2moe size q and the output projection hidden x hidden, and load an output
    layer of their own (no tied embeddings)."""
    heads = int(config["num_attention_heads"])
    dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    if heads * dim != int(config["hidden_size"]):
        return f"heads x head_dim ({heads} x {dim}) must equal hidden_size for llama.cpp's {arch}"
    if config.get("tie_word_embeddings"):
        return f"tie_word_embeddings true; llama.cpp's {arch} loads an output layer of its own"
    return None


def _olmoe_problem(config: dict) -> str | None:
    # llama.cpp's olmoe normalizes q and k over the whole projection, as transformers does, but clamps nothing
    if config.get("clip_qkv") is not None:
        return f"clip_qkv {config['clip_qkv']}; llama.cpp's olmoe does not clamp q/k/v"
    return _square_attention_problem(config, "olmoe")


def _qwen2moe_problem(config: dict) -> str | None:
    if int(config.get("shared_expert_intermediate_size") or 0) < 1:
        return "shared_expert_intermediate_size must be set (llama.cpp's qwen2moe always runs the shared expert)"
    return _dense_layers_problem(config, "qwen2moe") or _square_attention_problem(config, "qwen2moe")


def _ernie_problem(config: dict) -> str | None:
    """ERNIE 4.5 routes layers moe_layer_start_index..moe_layer_end_index whose number + 1 is a multiple of
    moe_layer_interval; llama.cpp's loader gives every layer from the start index on experts."""
    layers = int(config["num_hidden_layers"])
    end = config.get("moe_layer_end_index")
    if int(config.get("moe_layer_interval", 1)) != 1:
        return (f"moe_layer_interval {config['moe_layer_interval']} puts dense layers between the MoE ones; "
                "llama.cpp's ernie4_5-moe loads experts on every layer from moe_layer_start_index on")
    if end is not None and int(end) not in (-1, layers - 1):
        return (f"moe_layer_end_index {end} leaves dense layers at the end; llama.cpp's ernie4_5-moe loads "
                "experts on every layer from moe_layer_start_index on")
    # the kept softmax weights sum to at least k/E; transformers divides by max(sum, moe_norm_min), llama.cpp
    # by max(sum, 6.1e-5): the same unless moe_norm_min can exceed the sum
    if float(config.get("moe_norm_min", 1e-12)) > experts_used(config) / expert_count(config):
        return f"moe_norm_min {config['moe_norm_min']} can exceed the kept weights' sum; llama.cpp divides by the sum"
    return None


def _lfm2moe_problem(config: dict) -> str | None:
    if float(config.get("routed_scaling_factor", 1.0)) != 1.0:  # the graph would read expert_weights_scale
        return (f"routed_scaling_factor {config['routed_scaling_factor']}; llama.cpp's lfm2moe loader reads no "
                "expert weight scale")
    if not config.get("use_expert_bias", True):
        return "use_expert_bias false; llama.cpp's lfm2moe requires each MoE layer's expert bias (exp_probs_b)"
    return None


def shared_expert_width(config: dict, arch: str) -> int:
    """The shared expert's MLP width (0: none): Qwen2-MoE's own key, ERNIE's moe_num_shared_experts experts of
    moe_intermediate_size fused into one MLP (as transformers builds it)."""
    if arch == "qwen2moe":
        return int(config["shared_expert_intermediate_size"])
    if arch == "ernie4_5-moe":
        return int(config["moe_intermediate_size"]) * int(config.get("moe_num_shared_experts", 2))
    return 0


def add_moe_hparams(put, config: dict, arch: str) -> None:
    import gguf

    facts = ARCHES[arch]
    put("add_expert_count", expert_count(config))
    put("add_expert_used_count", experts_used(config))
    if facts.expert_width_key != "intermediate_size":  # else feed_forward_length is the experts' width
        put("add_expert_feed_forward_length", int(config[facts.expert_width_key]))
    if shared_expert_width(config, arch):
        put("add_expert_shared_feed_forward_length", shared_expert_width(config, arch))
    if facts.dense_lead:
        key, default = facts.dense_lead
        put("add_leading_dense_block_count", int(config.get(key, default)))
    if arch == "ernie4_5-moe":  # required by its loader (other steps are refused)
        put("add_interleave_moe_layer_step", 1)
    if facts.gating:  # lfm2moe's graph takes the router's function from this key
        put("add_expert_gating_func", gguf.ExpertGatingFuncType[facts.gating])


def selection_bias(lookup: str, shape: tuple) -> tuple[str, tuple, object] | None:
    """(gguf name, written shape, transform) of a layer's expert-selection bias, None for other weights."""
    match = SELECTION_BIAS.match(lookup)
    if not match:
        return None
    experts = shape[-1]
    return f"blk.{match.group(1)}.exp_probs_b.bias", (experts,), lambda array: array.reshape(experts)


def expert_tensors(names: dict[str, str], shapes: dict, config: dict, where: str) -> tuple[list[tuple], set[str]]:
    """(gguf name, written shape, source weights stacked per expert (or one fused weight), transform) of
    every layer's stacked expert tensor and selection bias, and the checkpoint names they consume."""
    experts = expert_count(config)
    found: dict[tuple[int, str], dict] = {}
    used = set()
    out = []
    for lookup, hf_name in names.items():
        if bias := selection_bias(lookup, shapes[hf_name]):
            out.append((bias[0], bias[1], (hf_name,), bias[2]))
            used.add(hf_name)
        match = EXPERT_WEIGHT.match(lookup)
        if match:
            layer, expert, kind, granite = match.groups()
            kind = PUBLISHED_NAMES.get(granite or kind, kind)
            found.setdefault((int(layer), kind), {})[None if expert is None else int(expert)] = hf_name
            used.add(hf_name)
    for (layer, kind), by_expert in sorted(found.items()):
        if None in by_expert:  # one fused 3-D weight for all experts
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
