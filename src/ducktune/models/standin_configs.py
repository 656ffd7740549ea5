"""Tiny stand-in configs, one per GGUF architecture id: the real config keys and feature flags of a
published model of the family (rope scaling kind, tied embeddings, sliding windows, softcapping,
qk-norm, fused projections, partial rotary, ALiBi), shrunk to 2 layers and a hidden size of 64, so
a random-weight model is a few MB and every code path of the family runs.

`MIRRORS` names the published config each one copies (its non-size values are the published
ones unless a comment says why not).
"""

from __future__ import annotations

from ducktune.errors import ModelError

MIRRORS = {
    "llama": "meta-llama/Llama-2-7b-chat-hf",
    "llama3": "meta-llama/Llama-3.2-1B-Instruct",
    "llama3.1": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B (Llama-3.1-8B's config)",
    "deepseek-coder": "deepseek-ai/deepseek-coder-6.7b-instruct",
    "deepseek-llm": "deepseek-ai/deepseek-llm-7b-chat",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.1",
    "mistral-nemo": "mistralai/Mistral-Nemo-Instruct-2407",
    "mixtral": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "ministral3": "mistralai/Ministral-3-3B-Instruct-2512-BF16",
    "mistral-small3": "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "qwen2": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen3": "Qwen/Qwen3-0.6B",
    # the rope_scaling their model cards tell users to add to config.json for contexts past 32k
    "qwen2-yarn": "Qwen/Qwen2.5-7B-Instruct + its model card's YaRN rope_scaling",
    "qwen3-yarn": "Qwen/Qwen3-8B + its model card's YaRN rope_scaling",
    "qwen2-moe": "Qwen/Qwen1.5-MoE-A2.7B-Chat",
    "qwen3-moe": "Qwen/Qwen3-30B-A3B",
    "olmoe": "allenai/OLMoE-1B-7B-0125-Instruct",
    "gpt-oss": "openai/gpt-oss-20b",
    "qwen3.5": "Qwen/Qwen3.5-0.8B",
    "gemma": "google/gemma-1.1-2b-it",
    "gemma2": "google/gemma-2-2b-it",
    "gemma3": "google/gemma-3-1b-it",
    "gemma3-mm": "google/gemma-3-4b-it",
    "gemma4": "google/gemma-4-E2B-it",
    "gemma3n": "google/gemma-3n-E2B-it (its text_config)",
    "phi3": "microsoft/Phi-3-mini-4k-instruct",
    "phi3-longrope": "microsoft/Phi-3.5-mini-instruct",
    "phi4-mini": "microsoft/Phi-4-mini-instruct",
    "glm": "THUDM/glm-4-9b-chat-hf",
    "glm4-0414": "zai-org/GLM-4-9B-0414",
    "internlm3": "internlm/internlm3-8b-instruct",
    "smollm3": "HuggingFaceTB/SmolLM3-3B",
    "olmo2": "allenai/OLMo-2-1124-7B-Instruct",
    "olmo3": "allenai/Olmo-3-7B-Instruct",
    "bloom": "bigscience/bloom-560m (Firefly's base)",
    "phi2": "microsoft/phi-2",
    "granite": "ibm-granite/granite-3.3-2b-instruct",
    "granite4": "ibm-granite/granite-4.0-micro",
    "granite4h": "ibm-granite/granite-4.0-h-micro",
    "granite-moe": "ibm-granite/granite-3.1-1b-a400m-instruct",
    "falcon-h1": "tiiuae/Falcon-H1-0.5B-Instruct",
    "nemotron-h": "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
    "ernie4.5": "baidu/ERNIE-4.5-0.3B-PT",
    "lfm2": "LiquidAI/LFM2-1.2B",
    "ernie4.5-moe": "baidu/ERNIE-4.5-21B-A3B-PT",
    "lfm2-moe": "LiquidAI/LFM2-8B-A1B",
    "falcon3": "tiiuae/Falcon3-1B-Instruct",
    "hunyuan": "tencent/Hunyuan-0.5B-Instruct",
    "exaone": "LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct",
    "exaone4": "LGAI-EXAONE/EXAONE-4.0-1.2B",
    "cohere": "CohereForAI/aya-expanse-8b",
    "cohere2": "CohereForAI/c4ai-command-r7b-12-2024",
    "stablelm2": "stabilityai/stablelm-2-1_6b-chat",
    "nemotron-mini": "nvidia/Nemotron-Mini-4B-Instruct",
    "apertus": "swiss-ai/Apertus-8B-Instruct-2509",
    "afm": "arcee-ai/AFM-4.5B",
    "minicpm3": "openbmb/MiniCPM3-4B",
    "deepseek-v2-lite": "deepseek-ai/DeepSeek-V2-Lite-Chat",
    "gpt2": "openai-community/gpt2",
    "pythia": "EleutherAI/pythia-160m",
}
ARCH_IDS = tuple(MIRRORS)

HIDDEN, LAYERS, HEADS = 64, 2, 4
# Every matrix dimension is a multiple of 64 (intermediate sizes rounded up from the published
# ratios, e.g. Llama-2's 11008/4096 x 64 = 172 -> 192): bitsandbytes' 4-bit CPU kernel (QLoRA)
# quantizes in blocks of 64, as real models' dimensions always allow.
# Phi-3.5's longrope tables have head_dim/2 entries; these 8 keep their shape (1.0 rising to a
# few) so the tiny model's rotary frequencies really depend on them.
_SHORT = [1.0, 1.0, 1.05, 1.1, 1.3, 1.6, 2.0, 2.4]
_LONG = [1.0, 1.2, 1.6, 2.5, 4.0, 8.0, 16.0, 32.0]
# Phi-4-mini rotates 96 of 128 head dims: 48 factors each, here 6 for 12 of 16. Its long table rises to 47.77
# (shape kept); its short one is all 1.0 as published, which would leave the factors untested within 4096
# tokens, so the stand-in's short table rises too (llama.cpp must apply each factor to the same rotated pair).
_SHORT_PARTIAL = [1.0, 1.05, 1.2, 1.6, 2.4, 4.0]
_LONG_PARTIAL = [1.0, 1.4, 3.1, 8.4, 28.6, 47.77]


def _llama(**extra) -> tuple[str, dict]:
    """Llama-2 7B's keys (shrunk), with `extra` added or overriding them."""
    return "LlamaForCausalLM", {**dict(
        hidden_size=HIDDEN, intermediate_size=192, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=HEADS, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        hidden_act="silu", attention_bias=False, tie_word_embeddings=False), **extra}


def _specs() -> dict[str, tuple[str, dict]]:
    common = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS)
    return {**_llama_qwen_mistral_specs(common), **_mistral3_specs(common), **_exaone_specs(common),
            **_long_context_specs(common), **_moe_specs(common),
            **_gemma_specs(common), **_other_specs(common), **_newer_specs(common), **_newest_specs(common),
            **_layer_norm_specs(common), **_ungated_mlp_specs(common),
            **_latent_attention_specs(common), **_classic_base_specs(), **_small_active_moe_specs(common),
            **_parallel_hybrid_specs(common), **_gpt_oss_specs(common)}


def _gpt_oss_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """gpt-oss-20b: attention sinks, biased q/k/v/o, layers alternating sliding (128) / full, YaRN (32x from
    4096, truncate false as published), 32 experts top-4 with fused interleaved gate/up weights and biases,
    the clamped SwiGLU (limit 7). Published as MXFP4; the stand-in is saved in full precision."""
    return {
        # q heads x head_dim (64 x 64) wider than hidden (2880) as published: 4 x 32 over 64 here;
        # 32 experts top-4 -> 4 top-2; expert width 2x hidden (= hidden published) so a transposed expert shows
        "gpt-oss": ("GptOssForCausalLM", dict(
            common, intermediate_size=2 * HIDDEN, num_key_value_heads=2, head_dim=32, num_local_experts=4,
            num_experts_per_tok=2, experts_per_token=2, max_position_embeddings=131072, initial_context_length=4096,
            rms_norm_eps=1e-5, rope_theta=150000.0, attention_bias=True, attention_dropout=0.0, hidden_act="silu",
            swiglu_limit=7.0, router_aux_loss_coef=0.9, output_router_logits=False, tie_word_embeddings=False,
            sliding_window=8,  # 128 published; 8 so test prompts cross it
            layer_types=["sliding_attention", "full_attention"],
            rope_scaling={"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                          "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False})),
    }


def _llama_qwen_mistral_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Llama, Mistral, Qwen (Qwen 3.5 as its published multimodal checkpoint)."""
    return {
        "llama": _llama(),
        "llama3": ("LlamaForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, head_dim=16, max_position_embeddings=131072,
            rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu", attention_bias=False,
            rope_scaling={"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192})),
        # Llama 3.1 8B's shape: untied output, head_dim implied (hidden / heads), llama3 scaling by 8
        "llama3.1": ("LlamaForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-5,
            rope_theta=500000.0, tie_word_embeddings=False, hidden_act="silu", attention_bias=False, mlp_bias=False,
            pretraining_tp=1, rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                            "low_freq_factor": 1.0, "original_max_position_embeddings": 8192})),
        # DeepSeek Coder (1.3B/6.7B/33B): Llama's graph, rope base 1e5 scaled linearly by 4 (16k context)
        "deepseek-coder": _llama(max_position_embeddings=16384, rms_norm_eps=1e-6, rope_theta=100000.0,
                                 pretraining_tp=1, rope_scaling={"factor": 4.0, "type": "linear"}),
        "deepseek-llm": _llama(rms_norm_eps=1e-6, pretraining_tp=1, rope_scaling=None),
        "mistral": ("MistralForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-5,
            rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False, hidden_act="silu")),
        "mistral-nemo": ("MistralForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, head_dim=32,  # 4 x 32 != 64, like 32 x 128 != 5120
            max_position_embeddings=1024000, rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=None,
            tie_word_embeddings=False, hidden_act="silu")),
        "qwen2": ("Qwen2ForCausalLM", dict(
            common, intermediate_size=128, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
            max_window_layers=21, hidden_act="silu")),
        "qwen3": ("Qwen3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=32,  # Qwen3: head_dim 128 != 1024/16
            max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            attention_bias=False, use_sliding_window=False, sliding_window=None, hidden_act="silu")),
        # Published as the multimodal class (text_config + a vision tower ducktune leaves alone); the
        # 24 layers run 3 Gated DeltaNet : 1 gated full attention, 2 layers keep one of each. Linear
        # value heads (4) > key heads (2) as in the 4B/9B, so V heads are grouped per key head.
        "qwen3.5": ("Qwen3_5ForConditionalGeneration", dict(
            tie_word_embeddings=True, text_config=dict(
                common, intermediate_size=192, num_key_value_heads=2, head_dim=32, max_position_embeddings=262144,
                rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, attn_output_gate=True,
                tie_word_embeddings=True, layer_types=["linear_attention", "full_attention"],
                full_attention_interval=4, linear_conv_kernel_dim=4, linear_key_head_dim=16,
                linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                mamba_ssm_dtype="float32",
                rope_parameters={"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                                 "mrope_interleaved": True, "mrope_section": [2, 1, 1]}),
            vision_config=dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=HIDDEN,
                               patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                               num_position_embeddings=16))),
    }


def _mistral3_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Mistral3ForConditionalGeneration's text models: Ministral 3 and Mistral Small 3.x."""
    return {
        # Published as the multimodal class: a ministral3 text_config (the 3B's: tied embeddings, head_dim
        # 128 != 3072/32, YaRN with Llama 4's query temperature) beside a Pixtral tower of one layer
        "ministral3": ("Mistral3ForConditionalGeneration", dict(
            # image_token_index 10 as published ([IMG] there, another control token in the stand-in: text never runs it)
            tie_word_embeddings=True, image_token_index=10, projector_hidden_act="gelu", spatial_merge_size=2,
            multimodal_projector_bias=False, vision_feature_layer=-1,
            text_config=dict(
                common, model_type="ministral3", intermediate_size=192, num_key_value_heads=1, head_dim=32,
                max_position_embeddings=4096,  # 262144 published; 16 x the original context below, as published
                rms_norm_eps=1e-5, hidden_act="silu", sliding_window=None,
                attention_dropout=0.0, tie_word_embeddings=True,
                rope_parameters={"rope_type": "yarn", "type": "yarn", "rope_theta": 1000000.0, "factor": 16.0,
                                 # 16384 published; 256 so test prompts (the default system prompt alone is
                                 # 1.2k stand-in tokens) cross the query temperature's steps
                                 "original_max_position_embeddings": 256, "beta_fast": 32.0, "beta_slow": 1.0,
                                 "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1}),
            vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, head_dim=16, image_size=56, patch_size=14,
                               hidden_act="silu"))),
        # Mistral Small 3.1 / 3.2 (and Magistral / Devstral Small): the same multimodal class with a plain
        # mistral text_config: untied output, head_dim 128 != 5120/32, rope base 1e9 unscaled, no window
        "mistral-small3": ("Mistral3ForConditionalGeneration", dict(
            # untied as the published head is: its config.json leaves the outer key out, whose transformers 5
            # default (True) ties only where the checkpoint's lm_head equals the embeddings (never here)
            tie_word_embeddings=False, image_token_index=10, projector_hidden_act="gelu", spatial_merge_size=2,
            multimodal_projector_bias=False, vision_feature_layer=-1,
            text_config=dict(
                common, model_type="mistral", intermediate_size=256, num_key_value_heads=1,
                head_dim=32,  # 4 x 32 != 64, like 32 x 128 != 5120
                max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu", sliding_window=None,
                attention_dropout=0.0, rope_theta=1000000000.0),
            vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, head_dim=16, image_size=56, patch_size=14,
                               hidden_act="silu", rope_theta=10000.0))),
    }


def _exaone_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """EXAONE 3.x (run as Llama by transformers) and EXAONE 4.0."""
    return {
        # EXAONE 3.5 2.4B: Llama's block under EXAONE's key names, 32:8 query:KV heads (4:2 here), llama3 rope
        # scaling x8 over 8192 positions, theta 1e6, no biases, tied embeddings (2.4B only; 7.8B and 32B untied)
        "exaone": ("ExaoneForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, max_position_embeddings=32768,
            rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=True, attention_dropout=0.0,
            rope_theta=1000000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192})),
        # EXAONE 4.0 1.2B: every layer global with rope (sliding_window null), llama3 rope scaling, tied
        "exaone4": ("Exaone4ForCausalLM", dict(
            common, intermediate_size=128, num_key_value_heads=2, head_dim=16, max_position_embeddings=65536,
            rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=True, sliding_window=None,
            sliding_window_pattern="LLLG", layer_types=["full_attention"] * LAYERS, attention_dropout=0.0,
            rope_theta=1000000.0,
            rope_scaling={"rope_type": "llama3", "factor": 16.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192})),
    }

def _moe_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Mixture-of-experts Mistral / Qwen: Mixtral, Qwen2-MoE, Qwen3-MoE (OLMoE and Granite MoE beside their dense kin)."""
    return {
        # Mixtral-8x7B-Instruct-v0.1: 8 experts top-2 (4 top-2 here), always renormalized, experts 3.5x hidden wide
        # (14336/4096; 256 here), 8 of 32 heads KV (1 of 4), no sliding window, untied
        "mixtral": ("MixtralForCausalLM", dict(
            common, intermediate_size=256, num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=1,
            max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=None,
            tie_word_embeddings=False, hidden_act="silu", router_aux_loss_coef=0.02, router_jitter_noise=0.0,
            output_router_logits=False, attention_dropout=0.0)),
        # Qwen1.5-MoE-A2.7B-Chat: every layer routed (60 experts top-4 -> 4 top-2), weights not renormalized, plus a
        # sigmoid-gated shared expert; widths from the published ratios (1408 and 5632 of 2048) rounded up to 64
        "qwen2-moe": ("Qwen2MoeForCausalLM", dict(
            common, intermediate_size=192, moe_intermediate_size=64, shared_expert_intermediate_size=192,
            num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
            num_key_value_heads=HEADS, max_position_embeddings=8192, max_window_layers=LAYERS, rms_norm_eps=1e-6,
            rope_theta=1000000.0, tie_word_embeddings=False, qkv_bias=True, use_sliding_window=False,
            sliding_window=32768, router_aux_loss_coef=0.001, output_router_logits=False, hidden_act="silu")),
        # Qwen3-30B-A3B: every layer routed (decoder_sparse_step 1, no mlp_only_layers), top-k renormalized;
        # 128 experts top-8 -> 4 top-2 here; expert width 768/2048 of hidden rounded up to 64, dense width 3x hidden
        "qwen3-moe": ("Qwen3MoeForCausalLM", dict(
            common, intermediate_size=192, moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], num_key_value_heads=2, head_dim=32,
            max_position_embeddings=40960, max_window_layers=LAYERS, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=False, attention_bias=False, use_sliding_window=False, sliding_window=None,
            router_aux_loss_coef=0.001, output_router_logits=False, hidden_act="silu")),
    }


def _long_context_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Qwen2.5 and Qwen3 with the YaRN rope_scaling their model cards give for contexts past 32k."""
    return {
        # {"factor": 4.0, "original_max_position_embeddings": 32768, "type"/"rope_type": "yarn"} as the cards
        # give it; 32768 -> 64 so the test prompts' positions reach the stretched frequencies too
        "qwen2-yarn": ("Qwen2ForCausalLM", dict(
            common, intermediate_size=128, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=False, sliding_window=131072,
            max_window_layers=28, hidden_act="silu",
            rope_scaling={"factor": 4.0, "original_max_position_embeddings": 64, "type": "yarn"})),
        "qwen3-yarn": ("Qwen3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=32, max_position_embeddings=40960,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False, attention_bias=False,
            use_sliding_window=False, sliding_window=None, hidden_act="silu",
            rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})),
    }


def _gemma_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Gemma 1/2/3 (3 also as the multimodal checkpoint's language model)."""
    return {
        "gemma": ("GemmaForCausalLM", dict(
            common, intermediate_size=512, num_key_value_heads=1,
            head_dim=32,  # 4 x 32 != 64, like the 7B's 16 x 256 != 3072 (the 2B's 8 x 256 = 2048)
            max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
            # both as published: transformers 5 reads hidden_act ("gelu" taken as the tanh approximation)
            hidden_act="gelu", hidden_activation="gelu_pytorch_tanh", attention_bias=False, tie_word_embeddings=True)),
        "gemma2": ("Gemma2ForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
            max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0, attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0, sliding_window=8,  # 4096 published; 8 so test prompts cross it
            hidden_activation="gelu_pytorch_tanh", attention_bias=False, tie_word_embeddings=True)),
        "gemma3": ("Gemma3ForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0,
            rope_scaling=None, sliding_window=8,  # 512 published; 8 so test prompts cross it
            # the published 26 layers run 5 local : 1 global; 2 layers keep one of each
            layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=None,
            attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
        # Gemma 3 4B+: the language model nested in text_config (4B's keys: linear rope scaling on the global
        # layers, 2 query heads per KV head), beside a SigLIP vision tower of one layer and 2 x 2 patches
        "gemma3-mm": ("Gemma3ForConditionalGeneration", dict(
            text_config=dict(
                common, model_type="gemma3_text", intermediate_size=256, num_key_value_heads=2, head_dim=32,
                query_pre_attn_scalar=32, max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
                rope_local_base_freq=10000.0, rope_scaling={"factor": 8.0, "rope_type": "linear"},
                sliding_window=8,  # 1024 published; 8 so test prompts cross it
                layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=None,
                attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True),
            vision_config=dict(
                model_type="siglip_vision_model", hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=HEADS, image_size=28, patch_size=14, vision_use_head=False),
            # the published image token ids lie beyond the stand-in's vocabulary: text never reaches them
            mm_tokens_per_image=4, boi_token_index=255999, eoi_token_index=256000, image_token_index=262144,
            tie_word_embeddings=True)),
        "gemma4": ("Gemma4ForConditionalGeneration", _gemma4_values(common)),
        "gemma3n": ("Gemma3nForCausalLM", _gemma3n_values(common)),
    }


def _gemma3n_values(common: dict) -> dict:
    """Gemma 3n E2B's language model (the published Gemma3nForConditionalGeneration's text_config; its MobileNetV5
    vision tower needs timm, which ducktune does not install, so the stand-in is the causal LM alone). Sizes that
    llama.cpp hard-codes stay as published: 4 AltUp streams, Laurel rank 64, 256-wide per-layer inputs, sparsity
    on the first 10 layers and K/V kept by the first 20 (E2B: 30 layers, the last 10 shared; here 22, 2 shared)."""
    layers = 22
    return dict(
        # MLP 2048 wide (E2B: 8192): llama.cpp's sparsity cutoff divides the variance by n - 1, transformers' by n;
        # a wide MLP keeps that gap near the real model's (4 x hidden, 256, would make it 8x larger)
        common, model_type="gemma3n_text", num_hidden_layers=layers, intermediate_size=2048, num_key_value_heads=2,
        head_dim=16, hidden_size_per_layer_input=256, laurel_rank=64, altup_num_inputs=4, altup_active_idx=0,
        altup_coef_clip=120.0, altup_correct_scale=True, num_kv_shared_layers=2,
        activation_sparsity_pattern=[0.95] * 10 + [0.0] * (layers - 10),
        # as published: 4 sliding : 1 full, so layers 18 and 19 (the ones shared from) are sliding then full
        layer_types=["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(layers)],
        rope_parameters={"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                         "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
        sliding_window=8,  # 512 published; 8 so test prompts cross it
        max_position_embeddings=32768, rms_norm_eps=1e-6, final_logit_softcapping=30.0,
        hidden_activation="gelu_pytorch_tanh", attention_bias=False, tie_word_embeddings=True)


def _gemma4_values(common: dict) -> dict:
    """Gemma 4 E2B/E4B: per-layer embeddings (PLE), the last layers reusing the KV of the last unshared layer of
    their kind (num_kv_shared_layers: 20 of E2B's 35), those layers' MLP twice as wide (use_double_wide_mlp), full
    layers with their own head_dim (global_head_dim) and proportional rope over a quarter of it, beside a vision
    and an audio tower of one layer each."""
    text = dict(
        common, model_type="gemma4_text", num_hidden_layers=4, intermediate_size=256, num_key_value_heads=1,
        head_dim=16, global_head_dim=32, hidden_size_per_layer_input=64, num_kv_shared_layers=2,
        use_double_wide_mlp=True, max_position_embeddings=131072, rms_norm_eps=1e-6,
        # the published 35 layers run 4 sliding : 1 full; 4 layers keep both kinds unshared and shared
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                                            "rope_type": "proportional"},
                         "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
        sliding_window=8,  # 512 published; 8 so test prompts cross it
        final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh", attention_bias=False,
        attention_k_eq_v=False, enable_moe_block=False, use_bidirectional_attention=None, tie_word_embeddings=True)
    vision = dict(model_type="gemma4_vision", hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=HEADS, num_key_value_heads=HEADS, head_dim=16, patch_size=4,
                  pooling_kernel_size=2, position_embedding_size=64)
    audio = dict(model_type="gemma4_audio", hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=HEADS,
                 subsampling_conv_channels=[8, 4], output_proj_dims=HIDDEN)
    # the published image/audio token ids lie beyond the stand-in's vocabulary: text never reaches them
    return dict(text_config=text, vision_config=vision, audio_config=audio, tie_word_embeddings=True)


def _small_active_moe_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """ERNIE 4.5 MoE and LFM2-MoE: leading dense layers, then routed experts chosen with a per-expert bias."""
    return {
        # ERNIE-4.5-21B-A3B-PT: layer 0 dense (moe_layer_start_index 1), 64 experts top-6 (4 top-2 here) always
        # renormalized, 2 shared experts; widths from 12288 and 1536 of 2560 rounded up to 64; 20:4 heads (4:2),
        # rope theta 500000, tied; moe_capacity / moe_gate / moe_use_aux_free as published (transformers ignores them)
        "ernie4.5-moe": ("Ernie4_5_MoeForCausalLM", dict(
            common, intermediate_size=320, moe_intermediate_size=64, moe_num_experts=4, moe_k=2,
            moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_interval=1, moe_capacity=[64, 64, 64],
            moe_gate="topk", moe_use_aux_free=True, num_key_value_heads=2, max_position_embeddings=131072,
            rms_norm_eps=1e-5, rope_theta=500000.0, use_bias=False, hidden_act="silu", tie_word_embeddings=True)),
        # LFM2-8B-A1B: 24 layers (conv and attention as LFM2's), the first 2 dense (1 of 3 here, so both layer
        # kinds meet experts), 32 experts top-4 (4 top-2) under a sigmoid router with expert bias, renormalized,
        # routed_scaling_factor 1; widths 7168 and 1792 of 2048 rounded up to 64; 32:8 heads (4:2), tied
        "lfm2-moe": ("Lfm2MoeForCausalLM", dict(
            common, num_hidden_layers=3, layer_types=["conv", "full_attention", "conv"], intermediate_size=256,
            moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2, num_dense_layers=1, norm_topk_prob=True,
            use_expert_bias=True, routed_scaling_factor=1.0, num_key_value_heads=2, conv_L_cache=3, conv_bias=False,
            max_position_embeddings=128000, norm_eps=1e-5, rope_theta=1000000.0, tie_embedding=True)),
    }


def _other_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Phi, GLM, InternLM3, SmolLM3, Granite, OLMo, LFM2, BLOOM."""
    return {
        "phi3": ("Phi3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, max_position_embeddings=4096,
            original_max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
            sliding_window=2047, hidden_act="silu", tie_word_embeddings=False)),
        "phi3-longrope": ("Phi3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, max_position_embeddings=131072,
            original_max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={"type": "longrope", "short_factor": _SHORT, "long_factor": _LONG},
            sliding_window=262143, hidden_act="silu", tie_word_embeddings=False)),
        # Phi-4-mini: Phi-3.5's layout with 3 query heads per KV head (fused qkv_proj), 3/4 of each head
        # rotated, embeddings tied
        "phi4-mini": ("Phi3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, partial_rotary_factor=0.75,
            max_position_embeddings=131072, original_max_position_embeddings=4096, rms_norm_eps=1e-5,
            rope_theta=10000.0, rope_scaling={"type": "longrope", "short_factor": _SHORT_PARTIAL,
                                              "long_factor": _LONG_PARTIAL},
            sliding_window=262144, hidden_act="silu", tie_word_embeddings=True)),
        "glm": ("GlmForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=16, partial_rotary_factor=0.5,
            max_position_embeddings=131072, rms_norm_eps=1.5625e-07, rope_theta=10000.0, attention_bias=True,
            hidden_act="silu", tie_word_embeddings=False)),
        "glm4-0414": ("Glm4ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=16, partial_rotary_factor=0.5,
            max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=True,
            hidden_act="silu", tie_word_embeddings=False)),
    }


def _newer_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """InternLM3, SmolLM3, Granite 3 (dense and MoE), 4 and 4.0-H."""
    return {
        # InternLM3: head_dim 128 = 4096/32 as here; qkv_bias / bias (transformers' attention_bias /
        # mlp_bias) false as published; dynamic NTK rope.
        "internlm3": ("InternLM3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=16, max_position_embeddings=32768,
            rms_norm_eps=1e-5, rope_theta=50000000.0, rope_scaling={"rope_type": "dynamic", "factor": 6.0},
            attention_bias=False, mlp_bias=False, hidden_act="silu", tie_word_embeddings=False)),
        # 4 layers, not 2: the 4th is SmolLM3's NoPE layer (no rope every 4th layer), the part of the
        # family llama.cpp must reproduce
        "smollm3": ("SmolLM3ForCausalLM", dict(
            common, num_hidden_layers=4, intermediate_size=384, num_key_value_heads=1, max_position_embeddings=65536,
            rms_norm_eps=1e-6, rope_theta=5000000.0, no_rope_layer_interval=4, no_rope_layers=[1, 1, 1, 0],
            use_sliding_window=False, sliding_window=None, attention_bias=False, mlp_bias=False,
            hidden_act="silu", tie_word_embeddings=True)),
        "granite": ("GraniteForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-5,
            rope_theta=10000000.0, rope_scaling=None, attention_bias=False, mlp_bias=False, attention_dropout=0.1,
            hidden_act="silu", tie_word_embeddings=True, embedding_multiplier=12.0, residual_multiplier=0.22,
            logits_scaling=8.0,
            attention_multiplier=1 / 16)),  # 0.015625 published = 1/head_dim (64); the stand-in's head_dim is 16
        # Granite 3.1 1B-A400M: 32 experts top-8 (4 top-2 here) of width intermediate_size (512 = hidden/2, 64 here)
        # stored fused (input_linear [E, 2 x width, hidden]); 8 of 16 heads KV (2 of 4); the dense granite's scalars
        "granite-moe": ("GraniteMoeForCausalLM", dict(
            common, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2,
            max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=10000000.0, rope_scaling=None,
            attention_bias=False, attention_dropout=0.1, hidden_act="silu", tie_word_embeddings=True,
            embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=6.0, router_aux_loss_coef=0.0,
            output_router_logits=False,
            attention_multiplier=1 / 16)),  # 0.015625 published = 1/head_dim (64); the stand-in's head_dim is 16
        # Granite 4.0 micro: GraniteMoeHybrid with every layer attention (rope), no experts, the MLP in shared_mlp;
        # the unused mamba_* keys are shrunk so transformers' check (heads x head dim = 2 x hidden) holds
        "granite4": ("GraniteMoeHybridForCausalLM", dict(
            common, intermediate_size=256, shared_intermediate_size=256, num_key_value_heads=2,
            max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=10000000.0, rope_scaling=None,
            attention_bias=False, attention_dropout=0.0, hidden_act="silu", tie_word_embeddings=True,
            embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=10.0,
            attention_multiplier=1 / 16,  # 0.015625 published = 1/head_dim (64); the stand-in's head_dim is 16
            num_local_experts=0, num_experts_per_tok=0, router_aux_loss_coef=0.01, output_router_logits=False,
            position_embedding_type="rope", layer_types=["attention"] * LAYERS, mamba_n_heads=2, mamba_d_head=64,
            mamba_d_state=16, mamba_n_groups=1, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256,
            mamba_conv_bias=True, mamba_proj_bias=False)),
        # Granite 4.0-H micro: Mamba-2 layers around NoPE attention (5, 15, 25, 35 of 40 published; the middle of 3
        # here), no experts, the MLP in shared_mlp; 8 Mamba heads of 16 (64 of 64 published) fill 2 x hidden
        "granite4h": ("GraniteMoeHybridForCausalLM", dict(
            common, num_hidden_layers=3, intermediate_size=256, shared_intermediate_size=256, num_key_value_heads=2,
            max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
            attention_bias=False, attention_dropout=0.0, hidden_act="silu", tie_word_embeddings=True,
            embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=8.0, attention_multiplier=1 / 16,
            num_local_experts=0, num_experts_per_tok=0, router_aux_loss_coef=0.01, output_router_logits=False,
            position_embedding_type="nope", layer_types=["mamba", "attention", "mamba"], mamba_n_heads=8,
            mamba_d_head=16, mamba_d_state=16, mamba_n_groups=1, mamba_d_conv=4, mamba_expand=2,
            mamba_chunk_size=256, mamba_conv_bias=True, mamba_proj_bias=False)),
    }


def _newest_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """ERNIE 4.5, Hunyuan, Cohere (Aya, Command R7B), OLMo 2/3, OLMoE, Falcon3, LFM2, BLOOM, Phi-2."""
    return {
        # ERNIE 4.5 0.3B: head_dim 128 is twice hidden/heads (1024/16), 8 query heads per KV head (16:2; 4:2
        # here), use_bias false, embeddings tied, rope theta 500000 over whole heads as published.
        "ernie4.5": ("Ernie4_5ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=32, max_position_embeddings=131072,
            rms_norm_eps=1e-5, rope_theta=500000.0, use_bias=False, hidden_act="silu", tie_word_embeddings=True)),
        # Hunyuan dense: head_dim apart from hidden/heads (128 vs 64 published), q/k norms after rope, tied
        # embeddings and the "dynamic" rope with a fixed NTK alpha (a static larger base, not length-dependent)
        "hunyuan": ("HunYuanDenseV1ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=32, max_position_embeddings=32768,
            rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=False, mlp_bias=False, hidden_act="silu",
            tie_word_embeddings=True, use_qk_norm=True, use_cla=False,
            rope_scaling={"alpha": 1000.0, "beta_fast": 32, "beta_slow": 1, "factor": 1.0, "mscale": 1.0,
                          "mscale_all_dim": 1.0, "type": "dynamic"})),
        # Aya Expanse 8B: LayerNorm without bias (eps 1e-5), grouped-query attention (32:8 heads; 4:2 here),
        # logit_scale 0.125, tied embeddings, no q/k norm (Command R+'s 64 layers have them), rope theta 10000
        "cohere": ("CohereForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, max_position_embeddings=8192, layer_norm_eps=1e-5,
            logit_scale=0.125, rope_theta=10000.0, attention_bias=False, hidden_act="silu", use_qk_norm=False,
            tie_word_embeddings=True)),
        # Command R7B: Aya's block, logit_scale 0.25, rope theta 50000 on the sliding layers only; the published
        # 32 layers run 3 sliding (window 4096) : 1 global; 2 layers keep one of each
        "cohere2": ("Cohere2ForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, max_position_embeddings=132096, layer_norm_eps=1e-5,
            logit_scale=0.25, rope_theta=50000.0, attention_bias=False, hidden_act="silu", tie_word_embeddings=True,
            sliding_window=8,  # 4096 published; 8 so test prompts cross it
            layer_types=["sliding_attention", "full_attention"])),
        # OLMoE-1B-7B-0125: every layer routed, 64 experts top-8 (4 top-2 here) never renormalized
        # (norm_topk_prob false); expert width intermediate_size (1024 = hidden/2 published, 64 here), MHA
        "olmoe": ("OlmoeForCausalLM", dict(
            common, intermediate_size=64, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
            num_key_value_heads=HEADS, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling=None, attention_bias=False, attention_dropout=0.0, clip_qkv=None, hidden_act="silu",
            tie_word_embeddings=False, router_aux_loss_coef=0.01, output_router_logits=False)),
        "olmo2": ("Olmo2ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_theta=500000.0, attention_bias=False, hidden_act="silu", tie_word_embeddings=False)),
        "olmo3": ("Olmo3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, max_position_embeddings=65536, rms_norm_eps=1e-6,
            rope_theta=500000.0, attention_bias=False, hidden_act="silu", tie_word_embeddings=False,
            sliding_window=8,  # 4096 published; 8 so test prompts cross it
            # the published 32 layers run 3 sliding : 1 full; 2 layers keep one of each
            layer_types=["sliding_attention", "full_attention"],
            rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                          "attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0})),
        # The published 16 layers are 10 short-conv and 6 attention (full_attn_idxs [2, 5, 8, 10, 12, 14]);
        # 2 layers keep one of each. block_ff_dim is shrunk (12288 published): the MLP width is
        # 2/3 of it rounded up to block_multiple_of (256 here, 8192 for the 1.2B).
        # Falcon3 1B-10B: Llama with a wide head (256 = hidden / heads in every size, 16 here), 4 KV heads,
        # rope_theta 1000042, rms_norm_eps 1e-6, untied output, no biases; MLP 4x hidden as the 1B's 8192/2048.
        "falcon3": ("LlamaForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192,
            rms_norm_eps=1e-6, rope_theta=1000042.0, attention_bias=False, mlp_bias=False, hidden_act="silu",
            tie_word_embeddings=False)),
        "lfm2": ("Lfm2ForCausalLM", dict(
            common, num_key_value_heads=2, block_ff_dim=384, block_auto_adjust_ff_dim=True,
            block_ffn_dim_multiplier=1.0, block_multiple_of=256, conv_L_cache=3, conv_bias=False,
            layer_types=["conv", "full_attention"], max_position_embeddings=128000, norm_eps=1e-5,
            rope_theta=1000000.0, tie_embedding=True)),
        "bloom": ("BloomForCausalLM", dict(
            hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS, layer_norm_epsilon=1e-5,
            apply_residual_connection_post_layernorm=False, tie_word_embeddings=True)),
        # head_dim 16 x 0.4 rotates 6 of 16 dims (Phi-2: 32 of 80; Phi-1.5's 0.5 gives 32 of 64)
        "phi2": ("PhiForCausalLM", dict(
            common, intermediate_size=256, num_key_value_heads=HEADS, partial_rotary_factor=0.4,
            max_position_embeddings=2048, layer_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
            hidden_act="gelu_new", qk_layernorm=False, resid_pdrop=0.1, embd_pdrop=0.0, attention_dropout=0.0,
            tie_word_embeddings=False)),
    }


def _layer_norm_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """StableLM 2 and Nemotron: LayerNorms with biases and partial rotary (NEOX halves)."""
    return {
        # StableLM 2 1.6B chat: rope on a quarter of each head (4 of 16 dims here, 16 of 64 published), q/k/v
        # biases, sequential residual, untied; MLP 2.75x hidden as 5632/2048, rounded up to a multiple of 64
        "stablelm2": ("StableLmForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, max_position_embeddings=4096,
            layer_norm_eps=1e-5, partial_rotary_factor=0.25, rope_theta=10000.0, rope_scaling=None,
            use_qkv_bias=True, qk_layernorm=False, use_parallel_residual=False, hidden_act="silu",
            hidden_dropout=0.0, tie_word_embeddings=False)),
        # Nemotron-Mini-4B: LayerNorm1P (1 + w), squared ReLU without gate (MLP 3x hidden as 9216/3072), half of
        # each head rotated, 3 query heads per KV head (24:8; 4:2 here), no biases, untied
        "nemotron-mini": ("NemotronForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
            norm_eps=1e-5, partial_rotary_factor=0.5, rope_theta=10000.0, rope_scaling=None, hidden_act="relu2",
            attention_bias=False, mlp_bias=False, tie_word_embeddings=False)),
    }


def _ungated_mlp_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Apertus and Arcee AFM: MLPs without a gate (up, activation, down)."""
    return {
        # Apertus-8B: 32 heads to 8 KV heads (4:1), MLP 5.25x hidden (21504, 336 here rounded up to 384), xIELU,
        # q/k norms, llama3 rope scaling by 8 from 8192 over rope_theta 12M, untied output
        "apertus": ("ApertusForCausalLM", dict(
            common, intermediate_size=384, num_key_value_heads=1, max_position_embeddings=65536, rms_norm_eps=1e-5,
            hidden_act="xielu", qk_norm=True, post_norm=False, attention_bias=False, mlp_bias=False,
            attention_dropout=0.0, hidden_dropout=0.0, tie_word_embeddings=False, rope_theta=12000000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192})),
        # AFM-4.5B: ReLU^2 MLP 7.2x hidden (18432 / 2560; 461 here rounded up to 512), head_dim given (128 = 2560 / 20),
        # 20 heads to 4 KV heads (4:1 here), YaRN by 20 from 4096 (published so, though 65536 / 4096 is 16: transformers
        # warns and uses the explicit factor, as llama.cpp's converter writes it), untied output, as a public audit
        # quoting the published config.json lists them (the file itself was not reachable from here).
        "afm": ("ArceeForCausalLM", dict(
            common, intermediate_size=512, num_key_value_heads=1, head_dim=16, max_position_embeddings=65536,
            rms_norm_eps=1e-5, hidden_act="relu2", attention_bias=False, mlp_bias=False, attention_dropout=0.0,
            tie_word_embeddings=False, rope_theta=10000.0,
            rope_scaling={"rope_type": "yarn", "factor": 20.0, "original_max_position_embeddings": 4096,
                          "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0})),
    }


# MiniCPM3-4B's LongRoPE table (16 factors for its 32 rotated dims, long = short as published), every other
# entry for the stand-in's 16 rotated dims: its rise from 1.06 to 16.9 kept, so the frequencies depend on it
_MINICPM3_FACTORS = [1.0591234137867171, 1.2596935748670968, 2.093982484148734, 4.937952647693647,
                     10.475458000005451, 14.85530648787323, 16.461961959767827, 16.87581087164081]


def _latent_attention_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """MiniCPM3: multi-head latent attention (low-rank q and kv projections, a shared rope key)."""
    return {
        # MiniCPM3-4B: q_lora_rank 768 (0.3 x hidden; 64 here), kv_lora_rank 256 (0.1 x hidden; 64 here), query/key
        # heads of 64 dims without rope + 32 with (16 + 16 here), v_head_dim hidden / heads, MLP 2.5x hidden
        # (6400 / 2560; 160 rounded up to 192), muP scalars as published (llama.cpp hard-codes them), LongRoPE
        # over a 32768 context with original_max_position_embeddings 32768, tied embeddings, SiLU, no biases
        "minicpm3": ("MiniCPM3ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, q_lora_rank=64, kv_lora_rank=64,
            qk_nope_head_dim=16, qk_rope_head_dim=16, max_position_embeddings=32768, rms_norm_eps=1e-5,
            hidden_act="silu", initializer_range=0.1, scale_emb=12, scale_depth=1.4, dim_model_base=256,
            tie_word_embeddings=True,
            rope_scaling={"type": "longrope", "long_factor": _MINICPM3_FACTORS, "short_factor": _MINICPM3_FACTORS,
                          "original_max_position_embeddings": 32768})),
        # DeepSeek-V2-Lite: MLA without the low-rank query (q_lora_rank null), latent 512 -> 64 here, heads of
        # 128 dims without rope + 64 with (16 + 16 here), v_head_dim 128 -> 16; the first layer dense
        # (first_k_dense_replace 1), then 64 routed experts top-6 -> 4 top-2 (width 1408 -> 64) beside 2 shared
        # ones, softmax scores never renormalized; YaRN x40 from 4096 with mscale = mscale_all_dim 0.707
        "deepseek-v2-lite": ("DeepseekV2ForCausalLM", dict(
            common, intermediate_size=192, num_key_value_heads=HEADS, q_lora_rank=None, kv_lora_rank=64,
            qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, first_k_dense_replace=1, moe_layer_freq=1,
            n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, n_shared_experts=2, n_group=1,
            topk_group=1, topk_method="greedy", norm_topk_prob=False, scoring_func="softmax",
            routed_scaling_factor=1.0, aux_loss_alpha=0.001, seq_aux=True, max_position_embeddings=163840,
            rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", attention_bias=False,
            tie_word_embeddings=False,
            rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                          "original_max_position_embeddings": 4096, "type": "yarn"})),
    }


def _classic_base_specs() -> dict[str, tuple[str, dict]]:
    """GPT-2 and Pythia (GPT-NeoX), under their own config key names."""
    return {
        # GPT-2 124M: learned absolute positions (n_positions 1024 rows), gelu_new, LayerNorm eps 1e-5, tied
        # output, MLP 4x hidden (n_inner null), dropouts 0.1 as published
        "gpt2": ("GPT2LMHeadModel", dict(
            n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=1024, n_ctx=1024, n_inner=None,
            activation_function="gelu_new", layer_norm_epsilon=1e-5, attn_pdrop=0.1, embd_pdrop=0.1, resid_pdrop=0.1,
            initializer_range=0.02, summary_activation=None, summary_first_dropout=0.1, summary_proj_to_labels=True,
            summary_type="cls_index", summary_use_proj=True,
            task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}})),
        # Pythia-160m: a quarter of each head rotated (rotary_pct 0.25: 4 of 16 dims here, 16 of 64 published),
        # parallel residual, exact GELU, MLP 4x hidden, untied embed_out, q/k/v and dense biases
        "pythia": ("GPTNeoXForCausalLM", dict(
            hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=4 * HIDDEN,
            hidden_act="gelu", layer_norm_eps=1e-5, max_position_embeddings=2048, rotary_emb_base=10000,
            rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False, initializer_range=0.02)),
    }


def _parallel_hybrid_specs(common: dict) -> dict[str, tuple[str, dict]]:
    """Falcon-H1 (a Mamba-2 mixer beside attention in every layer) and Nemotron-H (each layer one of Mamba-2,
    attention or MLP)."""
    return {
        # NVIDIA-Nemotron-Nano-9B-v2: the published pattern's start (M-M-M-MM-M-M-M*-...: Mamba-2 layers, two in a
        # row, MLPs after them, attention without rope), head_dim given apart from hidden / heads (128 x 40 heads vs
        # 4480; 32 x 4 vs 64 here), 5 query heads per KV head (40:8; 4:1 here), Mamba-2 heads x head dim 128 x 80
        # (8 x 16 here) in n_groups 8 (2 here) of ssm_state_size 128 (16 here), squared-ReLU MLP 3.5x hidden (15680;
        # 224 rounded up to 256), layer_norm_epsilon 1e-5, no biases, untied, the time step unclamped
        "nemotron-h": ("NemotronHForCausalLM", dict(
            common, num_hidden_layers=6, hybrid_override_pattern="M-MM*-", num_key_value_heads=1, head_dim=32,
            intermediate_size=256, max_position_embeddings=131072, layer_norm_epsilon=1e-5, mlp_hidden_act="relu2",
            attention_bias=False, mlp_bias=False, use_bias=False, tie_word_embeddings=False, attention_dropout=0.0,
            hidden_dropout=0.0, mamba_num_heads=8, mamba_head_dim=16, n_groups=2, ssm_state_size=16, conv_kernel=4,
            expand=2, chunk_size=128, use_conv_bias=True, mamba_hidden_act="silu", mamba_proj_bias=False,
            time_step_limit=(0.0, float("inf")), time_step_min=0.001, time_step_max=0.1, time_step_floor=1e-4,
            residual_in_fp32=False, rescale_prenorm_residual=True, num_logits_to_keep=1)),
        # Falcon-H1-0.5B: head_dim 64 is half hidden/heads (1024/8), 4 query heads per KV head (8:2; 4:2 here), the
        # Mamba-2 inner size (mamba_d_ssm 1536 = 24 heads x 64) 1.5 x hidden with mamba_expand 2 left beside it, no
        # gated norm, untied embeddings, rope theta 1e11; its muP multipliers as published (attention_in 1.0 too),
        # but lm_head_multiplier 1.0: the published 0.0390625 (muP's 1 / width at 1024) keeps the random stand-in's
        # logits too small for the family matrix's 30-step LoRA run to move (7.26 -> 7.16); the tests fold the
        # published value
        "falcon-h1": ("FalconH1ForCausalLM", dict(
            common, intermediate_size=128, num_key_value_heads=2, head_dim=8, max_position_embeddings=16384,
            rms_norm_eps=1e-5, rope_theta=100000000000.0, attention_bias=False, mlp_bias=False, hidden_act="silu",
            tie_word_embeddings=False, attention_dropout=0.0, projectors_bias=False, mamba_d_ssm=96, mamba_n_heads=6,
            mamba_d_head=16, mamba_n_groups=1, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2,
            mamba_chunk_size=128, mamba_conv_bias=True, mamba_proj_bias=False, mamba_norm_before_gate=False,
            mamba_rms_norm=False, embedding_multiplier=5.656854249492381, lm_head_multiplier=1.0,
            key_multiplier=0.39062499999999994, attention_in_multiplier=1.0, attention_out_multiplier=0.9375,
            ssm_in_multiplier=1.25, ssm_out_multiplier=0.23570226039551587,
            mlp_multipliers=[0.8838834764831844, 0.5859375],
            ssm_multipliers=[0.3535533905932738, 0.25, 0.3535533905932738, 0.5, 0.3535533905932738])),
    }


def tiny_config(arch: str, vocab_size: int, bos_token_id=None, eos_token_id=None, pad_token_id=None):
    """A tiny `transformers.PretrainedConfig` of GGUF architecture id `arch` (see `ARCH_IDS`)."""
    import transformers

    specs = _specs()
    if arch not in specs:
        raise ModelError(f"stand-in architecture {arch!r}: known are {', '.join(specs)}")
    class_name, values = specs[arch]
    # Gemma3ForX -> Gemma3Config, GPT2LMHeadModel -> GPT2Config
    config_class = getattr(transformers, class_name.split("For", 1)[0].removesuffix("LMHeadModel") + "Config")
    if class_name in ("Gemma3ForCausalLM", "Gemma3nForCausalLM"):  # text-only classes of multimodal families
        config_class = getattr(transformers, class_name.replace("ForCausalLM", "TextConfig"))
    tokens = dict(vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if "text_config" in values:  # a multimodal config: the vocabulary is its language model's
        if "hidden_size_per_layer_input" in values["text_config"]:  # Gemma 4's per-layer embeddings: one per token
            tokens["vocab_size_per_layer_input"] = vocab_size
        config = config_class(**dict(values, text_config=dict(values["text_config"], **tokens)))
    else:
        if "hidden_size_per_layer_input" in values:  # Gemma 3n's per-layer embeddings: one per token
            tokens["vocab_size_per_layer_input"] = vocab_size
        config = config_class(**values, **tokens)
    config.architectures = [class_name]
    return config


def internlm2_config(vocab_size: int, bos_token_id=None, eos_token_id=None, pad_token_id=None) -> dict:
    """config.json of a tiny InternLM2 (remote code: no transformers class, so a plain dict with the
    keys of internlm/internlm2-chat-1_8b, whose published rope_scaling is dynamic NTK)."""
    return {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": False, "hidden_act": "silu", "hidden_size": HIDDEN, "intermediate_size": 128,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1000000,
        "rope_scaling": {"type": "dynamic", "factor": 2.0}, "tie_word_embeddings": False,
        "vocab_size": vocab_size, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id, "attn_implementation": "eager",
    }


def internlm2_weight_names(layers: int = LAYERS) -> list[str]:
    """InternLM2's real safetensors tensor names (model.safetensors.index.json of internlm2-chat-7b)."""
    names = ["model.tok_embeddings.weight", "model.norm.weight", "output.weight"]
    for i in range(layers):
        names += [f"model.layers.{i}.{part}.weight" for part in (
            "attention.wqkv", "attention.wo", "attention_norm", "ffn_norm",
            "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")]
    return names
