"""llama.cpp's `deepseek2` architecture: DeepSeek-V2 (DeepseekV2ForCausalLM, transformers-native: V2-Lite-Chat).

Learned from llama.cpp's loader and graph (src/models/deepseek2.cpp), its rope type (interleaved pairs, as
transformers' complex-number rotary already stores q/k: nothing is re-ordered) and its context set-up
(llama-context.cpp's DeepSeek-V2 YaRN case). Multi-head latent attention as MiniCPM3's (gguf_minicpm3), written
the "legacy" way llama.cpp still loads: kv_b_proj whole as attn_kv_b (no key_length_mla keys, so llama.cpp
expands keys and values per head as transformers does), q_proj as attn_q when q_lora_rank is null (V2-Lite) or
the q_a/q_b pair. The MLP of the first `first_k_dense_replace` layers is dense; the others route to
n_routed_experts (stacked by gguf_moe) beside n_shared_experts always-on experts (ffn_*_shexp, one MLP
n_shared x moe_intermediate_size wide), weighted by the softmax scores of the top-k experts, never
renormalized, times routed_scaling_factor.

YaRN: transformers scales the softmax by mscale(factor, mscale_all_dim)^2 and cos/sin by
mscale(factor, mscale) / mscale(factor, mscale_all_dim); llama.cpp's deepseek2 does the same from
rope.scaling.yarn_log_multiplier (0.1 x mscale_all_dim, as its converter writes it) when mscale equals
mscale_all_dim, which it assumes: other configs are refused.
"""

from __future__ import annotations

from ducktune.export.gguf_mla import MlaSizes

ARCH = "deepseek2"
# llama.cpp tells DeepSeek-V2-Lite-shaped models (no q_lora_rank key read) by their layer count alone
LITE_LAYER_COUNTS = (26, 27)
# DeepseekV2Config's defaults for the MLA sizes a config.json may leave out
MLA = MlaSizes({"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128})
_mla, rope_dims, key_length = MLA.size, MLA.rope_dims, MLA.key_length


def deepseek2_problem(config: dict, rope: dict) -> str | None:
    """What llama.cpp's deepseek2 would run differently from transformers' DeepseekV2 with these rope settings
    (gguf_arch.rope_params), or None; the experts' own checks are gguf_moe's."""
    layers, q_rank = int(config["num_hidden_layers"]), config.get("q_lora_rank")
    if (config.get("topk_method") or "greedy") != "greedy":
        return f"topk_method {config['topk_method']!r}; llama.cpp's deepseek2 picks the top-k experts greedily"
    if config.get("scoring_func", "softmax") != "softmax":
        return (f"scoring_func {config['scoring_func']!r}; transformers' DeepseekV2 and llama.cpp's deepseek2 "
                "score experts by softmax")
    if q_rank and layers in LITE_LAYER_COUNTS:
        return (f"q_lora_rank {q_rank} with {layers} layers: llama.cpp takes {layers}-layer deepseek2 models for "
                "V2-Lite and reads no q_lora_rank")
    if int(config.get("n_shared_experts") or 0) < 1:
        return "n_shared_experts must be set (llama.cpp's deepseek2 always runs the shared experts)"
    if config.get("attention_bias"):
        return "attention_bias true, but llama.cpp's deepseek2 loads no attention biases"
    mscales = (rope.get("mscale"), rope.get("mscale_all_dim"))
    if rope["rope_type"] == "yarn" and (not mscales[1] or float(mscales[0] or 1.0) != float(mscales[1])):
        return ("yarn with mscale != mscale_all_dim (or no mscale_all_dim); llama.cpp's deepseek2 assumes them "
                "equal")
    return None


def add_deepseek2_hparams(put, config: dict, rope: dict) -> None:
    """The MLA, dense-lead and expert keys llama.cpp's deepseek2 loader reads (expert count, top-k and width are
    gguf_moe's), and YaRN's softmax scale (the other yarn keys are gguf_arch's)."""
    import gguf

    put("add_leading_dense_block_count", int(config.get("first_k_dense_replace") or 0))
    put("add_q_lora_rank", int(config.get("q_lora_rank") or 0))  # 0: one q_proj (attn_q)
    put("add_kv_lora_rank", _mla(config, "kv_lora_rank"))
    put("add_key_length", key_length(config))
    put("add_value_length", _mla(config, "v_head_dim"))
    put("add_expert_shared_count", int(config["n_shared_experts"]))
    put("add_expert_weights_scale", float(config.get("routed_scaling_factor") or 1.0))
    put("add_expert_weights_norm", False)  # transformers' DeepseekV2 never renormalizes the top-k weights
    put("add_expert_gating_func", gguf.ExpertGatingFuncType.SOFTMAX)
    if rope["rope_type"] == "yarn":  # llama.cpp divides it by 0.1 again: softmax x (1 + 0.1 x it x ln(factor))^2
        put("add_rope_scaling_yarn_log_mul", 0.1 * float(rope["mscale_all_dim"]))
