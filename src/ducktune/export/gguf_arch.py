"""What llama.cpp needs per model architecture: its architecture name, hyper-parameters and tensors.

Learned from llama.cpp's own loaders (src/models/<arch>.cpp: which keys each architecture reads,
which tensors it creates with which shapes, which rotary layout it uses) and its converter;
written here from the Hugging Face config alone, so a model folder -> GGUF needs no llama.cpp.

Per architecture, what differs from "read config, rename tensors":
- llama / internlm2: llama.cpp rotates interleaved pairs, HF stores rotary halves -> q/k rows
  (weights and biases) are re-ordered per head. Llama 3.1+ "llama3" rope scaling is a per-dim
  frequency divisor table, written as the `rope_freqs` tensor.
- internlm2: q/k/v are one grouped `wqkv` tensor ([q.. q, k, v] per KV group); llama.cpp wants
  three tensors.
- bloom: fused query_key_value is interleaved per head ([q, k, v] per head); llama.cpp wants
  [all q; all k; all v]. Layer norms with biases, ALiBi (no rope).
- gemma / gemma2 / gemma3: RMSNorm multiplies by (1 + w); llama.cpp multiplies by w -> every norm
  weight is written +1. The output layer is the embedding (llama.cpp scales the input by
  sqrt(hidden), as HF does). Gemma 2/3: sliding-window layers are named per layer; Gemma 3's local
  layers use their own rope base. Gemma 1 (and CodeGemma) has neither windows nor softcapping.
- phi3: fused qkv_proj / gate_up_proj stay fused (llama.cpp splits them itself, grouped-query
  shapes too); longrope's long/short factor tables become tensors, its attention factor a key.
  Phi-4-mini rotates 3/4 of each head (NEOX halves of the first 96 dims, as HF stores them; the
  factor tables have one entry per rotated pair) and ties its output to the embedding (no output
  tensor: llama.cpp's phi3 then reuses token_embd).
- chatglm (GlmForCausalLM): partial rotary (interleaved pairs, as HF already stores), fused
  gate_up_proj stays fused.
- glm4 (Glm4ForCausalLM, GLM-4-0414 / GLM-Z1): chatglm's layout plus a norm after attention and
  one after the MLP (post_self_attn_layernorm / post_mlp_layernorm), which gguf's name map knows.
- llama for InternLM3 (InternLM3ForCausalLM; transformers runs it as LlamaForCausalLM): Llama's
  layout and rotary re-ordering. Its qkv_bias (q/k/v) and bias (o_proj, MLP) are optional tensors
  llama.cpp's llama graph adds, so biased InternLM3 configs export as they are.
- smollm3 (SmolLM3ForCausalLM): llama's layout and rotary re-ordering, embeddings tied, and every
  4th layer without rope (NoPE). llama.cpp hard-codes that period (`n_no_rope_layer_step = 4`) and
  reads no key for it, so a config whose `no_rope_layers` (1 = rope) is any other pattern is refused.
- phi2 (PhiForCausalLM, Phi-2 / Phi-1.5): attention and MLP in parallel off one LayerNorm (with
  biases), partial rotary in NEOX halves as HF stores them (no re-ordering), separate q/k/v and an
  output head, all with biases, under gguf's own names. llama.cpp has no q/k norms for it and
  runs gelu_new (tanh GELU) only.
- granite (GraniteForCausalLM, Granite 3.x dense): llama's layout and rotary permutation plus four
  muP scalars: embedding_multiplier (embedding scale), residual_multiplier (residual scale),
  attention_multiplier (the softmax scale itself, in place of 1/sqrt(head_dim)) and
  logits_scaling (logit scale: both HF and llama.cpp divide the logits by it).
- granite for Granite 4.0 dense (GraniteMoeHybridForCausalLM with every layer attention and no experts:
  granite-4.0-micro / -1b / -350m), as llama.cpp's converter writes it: Granite 3's graph and scalars, the
  MLP (shared_mlp, shared_intermediate_size wide) with its fused input_linear split into ffn_gate (first
  half) and ffn_up. All-attention ones with experts are refused (no published Granite 4.0 has that shape).
- granitehybrid for Granite 4.0-H (GraniteMoeHybridForCausalLM with Mamba-2 layers: granite-4.0-h-micro / -h-1b
  / -h-350m): the same attention layers, scalars and MLP beside Mamba-2 layers, in its own module
  (gguf_mamba2); the hybrid MoE ones (h-tiny / h-small) with their experts as stacked, the shared_mlp as the
  shared expert.
- falcon-h1 (FalconH1ForCausalLM): a Mamba-2 mixer beside attention in every layer, in its own module
  (gguf_falconh1): the Mamba-2 tensors as for granitehybrid, Falcon-H1's muP multipliers folded into the
  merged weights (llama.cpp's graph has none), rotate-half rope.
- nemotron_h (NemotronHForCausalLM: Nemotron Nano 9B / 12B v2, Nemotron-H): each layer one of a Mamba-2 mixer,
  attention without rope or a squared-ReLU MLP, in its own module (gguf_nemotronh): the layer kinds as per-layer
  head_count_kv / feed_forward_length zeros, the Mamba-2 tensors as for granitehybrid; MoE variants refused.
- olmo2 (Olmo2ForCausalLM, and Olmo3ForCausalLM, which llama.cpp runs with the same graph): norms
  after attention and after the MLP instead of before, q_norm/k_norm over the whole projection,
  rotate-half rope (NEOX, no re-ordering). OLMo 3's sliding-window layers are written per layer
  (every 4th layer full unless `layer_types` says otherwise); its full-attention layers' YaRN is
  written as llama.cpp's yarn keys (llama.cpp rotates the sliding layers unscaled, as transformers).
- ernie4_5 (Ernie4_5ForCausalLM, ERNIE 4.5 dense): llama's layout, but transformers already rotates
  interleaved pairs (GLM's rotate_half on repeat-interleaved cos/sin), as llama.cpp's NORM rope does:
  no q/k re-ordering. Embeddings tied by default; head_dim (128) is not hidden/heads (64), so the key
  and value lengths are written. llama.cpp's graph adds no o_proj or MLP bias and rotates whole
  heads, so `use_bias` and partial rotary are refused.
- hunyuan-dense (HunYuanDenseV1ForCausalLM, Hunyuan 0.5B/1.8B/4B/7B): llama's layout, rotate-half rope
  (NEOX, no re-ordering) with per-head q/k norms (query_layernorm / key_layernorm) after it, as
  transformers runs them; head_dim may differ from hidden/heads. Its "dynamic" rope with an `alpha` is
  a fixed NTK-aware base, rope_theta * alpha^(d/(d-2)) (transformers' ntk_alpha), written as the base
  itself (llama.cpp would scale again if the alpha key were written too).
- mistral3 (Ministral 3: Mistral3ForConditionalGeneration's ministral3 text_config, or Ministral3ForCausalLM):
  llama's layout and rotary re-ordering, YaRN rope (written as llama.cpp's yarn keys), and Llama 4's
  query temperature (q x (1 + beta ln(1 + floor(pos / original_max_position_embeddings)))), whose beta
  (rope_parameters.llama_4_scaling_beta) becomes attention.temperature_scale. llama.cpp's mistral3 has no
  sliding window, computes SiLU and rotates whole heads. Mistral Small 3.1 / 3.2 (and Magistral / Devstral
  Small as Mistral3ForConditionalGeneration) publish the same class with a plain mistral text_config, which
  llama.cpp's converter also writes as mistral3, with Llama's keys only: rope base 1e9 unscaled, no
  temperature, head_dim 128 != 5120 / 32 as the key/value length, an untied output layer.
- qwen2 / qwen3 with YaRN (the rope_scaling Qwen2.5's and Qwen3's model cards give for contexts past 32k):
  llama.cpp's yarn keys, which its qwen2/qwen3 graphs read as every graph does.
- qwen3moe (Qwen3MoeForCausalLM, Qwen3-30B-A3B / 235B-A22B): Qwen3's attention, every MLP a routed mixture of
  experts, whose per-expert weights are stacked into one tensor per kind, in its own module (gguf_moe).
- llama with experts (MixtralForCausalLM, Mixtral 8x7B / 8x22B): Llama's layout and rotary re-ordering, each
  layer's experts stacked as Qwen3-MoE's (gguf_moe).
- qwen2moe (Qwen2MoeForCausalLM, Qwen1.5-MoE-A2.7B / Qwen2-57B-A14B): Qwen2's attention (q/k/v biases), routed
  experts never renormalized plus a sigmoid-gated shared expert (gguf_moe).
- olmoe (OlmoeForCausalLM, OLMoE-1B-7B): OLMo's attention with q/k RMSNorm over the whole projection (NEOX
  rope as HF stores it), experts as Qwen3-MoE's but never renormalized (norm_topk_prob false), in gguf_moe.
- granitemoe (GraniteMoeForCausalLM, Granite 3.0/3.1 1B-A400M / 3B-A800M): the granite graph (muP scalars,
  q/k re-ordered) with routed experts, their fused input_linear split into gate and up (gguf_moe).
- gpt-oss (GptOssForCausalLM, gpt-oss-20b / 120b): attention sinks, biased attention, sliding/full layers,
  YaRN, routed experts with the clamped SwiGLU whose fused interleaved gate_up_proj is split, in its own
  module (gguf_gptoss). YaRN with truncate false (as published) is written as it is: llama.cpp rounds the
  correction range (a caveat, as llama.cpp's own converter writes it).
- qwen35 (Qwen3.5, text; the multimodal checkpoints' text_config): Gated DeltaNet layers beside gated
  full attention, in its own module (gguf_qwen35).
- ernie4_5-moe (Ernie4_5_MoeForCausalLM, ERNIE-4.5-21B-A3B): the dense ERNIE 4.5's attention and rope, leading
  dense layers, routed experts plus shared ones, their selection bias (gguf_moe).
- lfm2moe (Lfm2MoeForCausalLM, LFM2-8B-A1B): LFM2's layers (gguf_lfm2) with leading dense MLPs, then routed
  experts under a sigmoid router with a selection bias (gguf_moe).
- lfm2 (Lfm2ForCausalLM, Liquid LFM2): short-convolution layers beside GQA attention with q/k norms,
  in its own module (gguf_lfm2): per-layer head_count_kv (0 = conv layer), the conv kernel squeezed,
  the MLP width the weights have.
- gemma4 (Gemma 4, text; the multimodal checkpoints' text_config): per-layer embeddings, KV-shared layers,
  two head sizes and proportional rope, in its own module (gguf_gemma4).
- gemma3n (Gemma 3n E2B/E4B, text; the multimodal checkpoints' text_config): AltUp streams, Laurel, per-layer
  embeddings, activation sparsity and KV-shared layers, in its own module (gguf_gemma3n), which refuses the
  configs whose values llama.cpp hard-codes otherwise.
- exaone4 (Exaone4ForCausalLM, EXAONE 4.0 1.2B / 32B): no norm before attention or the MLP, one after each
  (post_attention_layernorm / post_feedforward_layernorm), per-head q/k norms before rope, rotate-half rope
  (NEOX, no re-ordering), Llama 3.1 "llama3" rope scaling as the `rope_freqs` table, tied embeddings (1.2B).
  transformers rotates every layer when `sliding_window` is null (1.2B), else only the sliding layers
  (global NoPE: 32B's 3 sliding : 1 full). llama.cpp turns sliding windows on for 64-layer models only
  (its 32B) and then rotates only the sliding layers: other configs that slide or skip rope are refused.
- exaone (ExaoneForCausalLM: EXAONE 3.0 / 3.5 / EXAONE Deep; transformers 5 runs model_type exaone as
  LlamaForCausalLM and saves that name, and EXAONE's own weight names transformer.h.N.attn.attention.*): Llama's
  block with rotate-half rope (NEOX, no re-ordering), 3.5's "llama3" rope scaling as the `rope_freqs` table. The
  published config.json spells num_layers / layer_norm_epsilon / activation_function (ExaoneConfig's
  attribute_map); both spellings and both class names are read as EXAONE. llama.cpp loads no o_proj or MLP biases.
- command-r (CohereForCausalLM: Aya 23, Aya Expanse, Command R / R+): attention and MLP in parallel off one
  LayerNorm without bias, outputs summed onto the residual; the logits multiplied by `logit_scale`; the output
  layer is always the embedding (llama.cpp loads no output tensor: untied configs are refused). transformers'
  Cohere rotates interleaved pairs (its rotate_half takes x[::2] / x[1::2]), as llama.cpp's NORM rope does: no
  q/k re-ordering. llama.cpp loads the per-head q/k LayerNorms (`use_qk_norm`) exactly when there are 64
  layers or more (Command R+): configs that differ are refused.
- cohere2 (Cohere2ForCausalLM: Command R7B): command-r's block without q/k norms; sliding-window layers
  (3 of every 4 by `sliding_window_pattern`, or `layer_types`) rotate, the global ones have no rope at all, as
  llama.cpp's cohere2 runs them once the per-layer pattern is written.
- stablelm (StableLmForCausalLM: StableLM 2 1.6B, StableLM Zephyr 3B): LayerNorms with biases, partial
  rotary in NEOX halves as HF stores them (no re-ordering), optional q/k/v biases (use_qkv_bias), SwiGLU.
  use_parallel_residual runs as llama.cpp's graph does when a layer has no ffn_norm (HF then creates no
  post_attention_layernorm). StableLM 2 12B's per-head q/k LayerNorms (qk_layernorm: one weight per head,
  no bias) are stacked into attn_q_norm / attn_k_norm [heads, head_dim], as llama.cpp's converter does.
- nemotron (NemotronForCausalLM, Nemotron-Mini-4B / Minitron): LayerNorm1P, which normalizes with
  (1 + w), so every norm weight is written +1 as llama.cpp's converter does; a squared-ReLU MLP with no
  gate (up_proj, down_proj), partial rotary in NEOX halves, optional attention and MLP biases.
- apertus (ApertusForCausalLM, Apertus-8B / 70B): per-head q/k norms before rotate-half rope (NEOX, no
  re-ordering), llama3 rope_freqs table, no gate in the MLP (up, xIELU, down); xIELU's learned per-layer
  scalars are hyper-parameter arrays, not tensors, in its own module (gguf_apertus).
- gpt2 (GPT2LMHeadModel: GPT-2, gpt2-medium, DistilGPT2): learned absolute position embeddings (position_embd,
  n_positions rows, which llama.cpp reads as the trained context), LayerNorms with biases, no rope, the fused
  c_attn ([q; k; v] blocks), gelu_new, the output layer tied to the embedding. Its Conv1D layers store weights
  as [in, out]: c_attn / c_proj / c_fc are written transposed ([out, in]), as llama.cpp's converter does.
- gptneox (GPTNeoXForCausalLM: Pythia, GPT-NeoX-20B and their chat tunes): LayerNorms with biases, parallel
  residual (use_parallel_residual, written as llama.cpp's key), partial rotary (rotary_pct, 0.25 for Pythia)
  in NEOX halves as HF stores them, and the fused query_key_value interleaved per head ([q, k, v] per head, as
  Bloom's) re-ordered to [all q; all k; all v]. Pythia's exact GELU ("gelu") runs as llama.cpp's tanh GELU
  (a gguf_caveats line); an untied embed_out is required.
- arcee (ArceeForCausalLM, Arcee AFM-4.5B): llama's layout and rotary re-ordering, an MLP without a gate
  (up, ReLU^2, down), YaRN written as llama.cpp's yarn keys (as its converter writes AFM-4.5B's).
- minicpm3 (MiniCPM3ForCausalLM, MiniCPM3-4B): multi-head latent attention (low-rank q and kv projections,
  rope on a trailing slice of each head in NEOX order, no re-ordering), the MLA ranks and head sizes as keys,
  LongRoPE tables as Phi-3's; llama.cpp hard-codes its muP scalars (gguf_minicpm3).

A multimodal checkpoint (Gemma3ForConditionalGeneration: Gemma 3 4B/12B/27B; Mistral3ForConditionalGeneration:
Ministral 3; Gemma 3n; Gemma 4; Qwen3.5) is written as its
language model alone, as llama.cpp's converter writes the text model: hyper-parameters from its
text_config (`language_model_config`), weights from under `language_model.` (`language_model_names`);
the vision (and audio) towers and projectors are not part of the GGUF.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from ducktune.errors import ModelError
from ducktune.export import (gguf_apertus, gguf_deepseek2, gguf_falconh1, gguf_gemma3n, gguf_gemma4, gguf_gptoss,
                             gguf_lfm2, gguf_mamba2, gguf_minicpm3, gguf_moe, gguf_nemotronh, gguf_qwen35)
from ducktune.export.gguf_common import first_value, unloaded_biases
from ducktune.models.loading import exaone_keys_renamed

# HF architecture -> llama.cpp architecture
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "MixtralForCausalLM": "llama",  # with experts (gguf_moe)
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen2MoeForCausalLM": "qwen2moe",
    "Qwen3MoeForCausalLM": "qwen3moe",
    "OlmoeForCausalLM": "olmoe",
    "GraniteMoeForCausalLM": "granitemoe",
    "GptOssForCausalLM": "gpt-oss",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3",  # its language model (text only)
    "Phi3ForCausalLM": "phi3",
    "GlmForCausalLM": "chatglm",
    "Glm4ForCausalLM": "glm4",
    "SmolLM3ForCausalLM": "smollm3",
    "BloomForCausalLM": "bloom",
    "InternLM2ForCausalLM": "internlm2",
    "InternLM3ForCausalLM": "llama",
    "PhiForCausalLM": "phi2",
    "GraniteForCausalLM": "granite",
    "GraniteMoeHybridForCausalLM": "granite",  # all attention, no experts; with Mamba-2 layers: granitehybrid
    "FalconH1ForCausalLM": gguf_falconh1.ARCH,
    "NemotronHForCausalLM": gguf_nemotronh.ARCH,
    "Olmo2ForCausalLM": "olmo2",
    "Olmo3ForCausalLM": "olmo2",
    "Ernie4_5ForCausalLM": "ernie4_5",
    "Ernie4_5_MoeForCausalLM": "ernie4_5-moe",
    "HunYuanDenseV1ForCausalLM": "hunyuan-dense",
    "Ministral3ForCausalLM": "mistral3",
    "Mistral3ForConditionalGeneration": "mistral3",  # its language model (text only)
    "Qwen3_5ForCausalLM": "qwen35",
    "Qwen3_5ForConditionalGeneration": "qwen35",
    "Lfm2ForCausalLM": "lfm2",
    "Lfm2MoeForCausalLM": "lfm2moe",
    "Gemma4ForCausalLM": "gemma4",
    "Gemma4ForConditionalGeneration": "gemma4",  # its language model (text only)
    "Gemma3nForCausalLM": "gemma3n",
    "Gemma3nForConditionalGeneration": "gemma3n",  # its language model (text only)
    "ExaoneForCausalLM": "exaone",
    "Exaone4ForCausalLM": "exaone4",
    "CohereForCausalLM": "command-r",
    "Cohere2ForCausalLM": "cohere2",
    "StableLmForCausalLM": "stablelm",
    "NemotronForCausalLM": "nemotron",
    "ApertusForCausalLM": "apertus",
    "ArceeForCausalLM": "arcee",
    "MiniCPM3ForCausalLM": gguf_minicpm3.ARCH,
    "DeepseekV2ForCausalLM": gguf_deepseek2.ARCH,  # MLA and experts (gguf_deepseek2, gguf_moe)
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gptneox",
}
# llama.cpp's rope for these is LLAMA_ROPE_TYPE_NORM (interleaved pairs) while the HF weights
# are laid out for rotate-half: q/k rows are re-ordered. (GLM's HF code already rotates pairs.)
ROTARY_PERMUTED = {"llama", "internlm2", "smollm3", "granite", "granitemoe", gguf_mamba2.ARCH, "mistral3", "arcee"}
GRANITE_ARCHS = {"granite", "granitemoe", gguf_mamba2.ARCH}
# architectures whose Mamba-2 mixers gguf_mamba2 writes -> the name part of their mixer weights (Nemotron-H's
# attention and MLP weights are `.mixer.` too: mamba_tensor passes them through)
MAMBA2_ARCHS = {gguf_mamba2.ARCH: ".mamba.", gguf_falconh1.ARCH: ".mamba.", gguf_nemotronh.ARCH: ".mixer."}
# llama.cpp's smollm3 skips rope on layer il when (il + 1) % 4 == 0, with no key to change it
SMOLLM3_NO_ROPE_STEP = 4
GEMMA = {"gemma", "gemma2", "gemma3"}
# llama.cpp's graphs for these assert rope over the whole head: partial rotary is refused
WHOLE_HEAD_ROPE = {"smollm3", "ernie4_5", "ernie4_5-moe", "hunyuan-dense", "mistral3", "exaone", "exaone4", "apertus",
                   "arcee", "olmoe", gguf_falconh1.ARCH}
NO_ROPE = {"bloom", "gpt2", gguf_nemotronh.ARCH}  # ALiBi; learned absolute position embeddings; none
# configs whose transformers class ties the output layer to the embeddings when tie_word_embeddings is absent
TIED_BY_DEFAULT = {"bloom", "smollm3", "ernie4_5", "ernie4_5-moe", "lfm2", "lfm2moe", "command-r", "cohere2",
                   gguf_gemma3n.ARCH, gguf_minicpm3.ARCH, "gpt2"}
# Cohere's parallel blocks: llama.cpp reads their logit scale and always reuses the embedding as output layer
COHERE = {"command-r", "cohere2", gguf_gemma3n.ARCH}
# transformers' CohereConfig / Cohere2Config defaults when the key is absent
COHERE_DEFAULT_LOGIT_SCALE = 0.0625
COHERE2_DEFAULT_WINDOW = 4096
COHERE2_DEFAULT_PATTERN = 4
# llama.cpp's command-r creates per-head q/k norms for models of this many layers or more, and never otherwise
COMMAND_R_QK_NORM_LAYERS = 64
EXAONE_DEFAULT_THETA = 500000.0  # ExaoneConfig's rope theta when the config names none (not Llama's 10000)
# llama.cpp's exaone4 enables sliding windows (and skips rope on the global layers) for this layer count only
EXAONE4_SWA_LAYERS = 64
# Exaone4Config's sliding_window when the key is absent
EXAONE4_DEFAULT_WINDOW = 4096
# LayerNorm (with bias) rather than RMSNorm: llama.cpp reads attention.layer_norm_epsilon
LAYER_NORM = {"bloom", "phi2", "command-r", "cohere2", "stablelm", "nemotron", "gpt2", "gptneox"}
# LayerNorm1P (Nemotron): scales by (1 + w) where llama.cpp's LayerNorm scales by w -> written +1, as Gemma's norms
LAYER_NORM_1P = {"nemotron"}
# the one MLP activation llama.cpp's graph runs per architecture (StableLM: SwiGLU; Nemotron: squared ReLU)
MLP_ACTIVATION = {"stablelm": "silu", "nemotron": "relu2"}
# HF activations computed as llama.cpp's GELU (the tanh approximation)
TANH_GELU = {"gelu_new", "gelu_pytorch_tanh"}
# GPT-2's Conv1D layers keep their weight as [in, out]; llama.cpp (like nn.Linear) wants [out, in]
GPT2_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# Granite's muP scalars -> the GGUF writer method of the key llama.cpp's granite loader reads
GRANITE_SCALES = {
    "embedding_multiplier": "add_embedding_scale",
    "residual_multiplier": "add_residual_scale",
    "attention_multiplier": "add_attention_scale",
    "logits_scaling": "add_logit_scale",
}
# rope scaling kinds written (dynamic NTK only changes rope beyond the trained context, which
# llama.cpp does not do; within it HF and llama.cpp agree)
ROPE_KINDS = {
    "default": None,
    "linear": None,
    "dynamic": None,
    "llama3": {"llama", "exaone", "exaone4", "apertus"},
    "longrope": {"phi3", gguf_minicpm3.ARCH},
    # OLMo 3's full-attention layers (its sliding ones rotate unscaled, as llama.cpp does); Ministral 3; AFM-4.5B;
    # Qwen2.5 / Qwen3 with the rope_scaling their model cards give for long contexts
    "yarn": {"olmo2", "mistral3", "arcee", "qwen2", "qwen3", "gpt-oss", gguf_deepseek2.ARCH},
}


@dataclass
class TensorPlan:
    hf_name: str | None           # source weight; None for a tensor computed from the config
    gguf_name: str
    shape: tuple[int, ...]        # written (HF row-major) shape, after `transform`
    qtype: object                 # gguf.GGMLQuantizationType
    transform: Callable | None = None   # numpy source array (or None) -> written array
    # several source weights stacked along a new first axis (one per expert), read in place of hf_name
    stacked: tuple[str, ...] = ()


# ---------------------------------------------------------------------- config reading


def language_model_config(config: dict) -> dict:
    """The config the GGUF is written from: for a multimodal config.json, its text_config over its top-level
    keys, under the checkpoint's architecture, with transformers' defaults for the keys the file leaves out
    (gemma-3-4b-it's text_config names 6; llama.cpp's converter reads it through AutoConfig too). Other
    configs are returned as they are."""
    if config.get("model_type") == "exaone":
        return exaone_config(config)
    text = config.get("text_config")
    if not isinstance(text, dict):
        return config
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        text = CONFIG_MAPPING[config["model_type"]].from_dict(config).to_dict()["text_config"]
    except Exception:  # noqa: BLE001 (transformers cannot build it: the keys the file has are all there is)
        pass
    outer = {key: value for key, value in config.items() if not key.endswith("_config")}
    return {**outer, **text, "architectures": config.get("architectures")}


def exaone_config(config: dict) -> dict:
    """An EXAONE 3.x config under transformers' key names and EXAONE's class: the published file spells
    num_layers etc., and a merged model is saved as the LlamaForCausalLM transformers runs it as, which llama.cpp's
    converter would write as llama rather than exaone (the architecture of EXAONE's own GGUFs)."""
    renamed = exaone_keys_renamed(config)
    if not (config.get("rope_parameters") or {}).get("rope_theta"):
        renamed.setdefault("rope_theta", EXAONE_DEFAULT_THETA)
    return {**renamed, "architectures": ["ExaoneForCausalLM"]}


def language_model_names(shapes: dict) -> dict[str, str]:
    """{name as a causal LM has it: checkpoint name} of the weights the GGUF is made of. A multimodal
    checkpoint's language model lies under `language_model.` (published: language_model.model.layers.N,
    transformers 5: model.language_model.layers.N), which is dropped as llama.cpp's converter drops it;
    its other weights (vision tower, projector) are left out. Other checkpoints: every weight, as named."""
    if not any("language_model." in name for name in shapes):
        return {name: name for name in shapes}
    return {name.replace("language_model.", "", 1): name for name in shapes
            if "language_model." in name or name == "lm_head.weight"}


def hidden_size(config: dict) -> int:
    return int(first_value(config, "hidden_size", "n_embed", "n_embd"))


def n_layers(config: dict) -> int:
    count = first_value(config, "num_hidden_layers", "n_layer")
    if count is None and config.get("layers_block_type"):  # NemotronHConfig saves only its layer kinds
        return len(config["layers_block_type"])
    return int(count)


def n_heads(config: dict) -> int:
    return int(first_value(config, "num_attention_heads", "n_head"))


def n_kv_heads(config: dict) -> int:
    return int(first_value(config, "num_key_value_heads", "multi_query_group_num", default=n_heads(config)))


def head_dim(config: dict) -> int:
    return int(config.get("head_dim") or hidden_size(config) // n_heads(config))


def context_length(config: dict) -> int:
    return int(first_value(config, "max_position_embeddings", "seq_length", "n_positions", default=2048))


def rope_params(config: dict, layer_kind: str = "full_attention") -> dict:
    """Rope settings of one layer kind, from transformers 5's `rope_parameters` (flat or per layer
    kind, as Gemma 3 saves it) or a published config's `rope_theta` + `rope_scaling`."""
    params = dict(config.get("rope_parameters") or {})
    per_kind = "full_attention" in params or "sliding_attention" in params
    if per_kind:
        params = dict(params.get(layer_kind) or params.get("full_attention") or {})
    if layer_kind == "full_attention":  # Gemma 3: rope_scaling applies to global layers only
        for key, value in (config.get("rope_scaling") or {}).items():
            if per_kind:
                params.setdefault(key, value)
            else:  # a legacy rope_scaling beside rope_parameters wins, as transformers reads the config
                params[key] = value
    theta_key = "rope_local_base_freq" if layer_kind == "sliding_attention" else "rope_theta"
    if params.get("rope_theta") is None:
        # GPT-NeoX's published configs name them rotary_emb_base and rotary_pct
        params["rope_theta"] = first_value(config, theta_key, "rope_theta", "rotary_emb_base", default=10000.0)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    if params["rope_type"] == "su":  # early Phi-3 128k configs' name for longrope
        params["rope_type"] = "longrope"
    if params.get("partial_rotary_factor") is None:
        params["partial_rotary_factor"] = first_value(config, "partial_rotary_factor", "rotary_pct", default=1.0)
    if params.get("original_max_position_embeddings") is None and config.get("original_max_position_embeddings"):
        params["original_max_position_embeddings"] = config["original_max_position_embeddings"]
    return params


def rotary_dims(config: dict) -> int:
    if llama_cpp_arch(config) == gguf_minicpm3.ARCH:  # MLA: rope on its own slice of each head
        return gguf_minicpm3.rope_dims(config)
    if llama_cpp_arch(config) == gguf_deepseek2.ARCH:
        return gguf_deepseek2.rope_dims(config)
    return int(head_dim(config) * float(rope_params(config)["partial_rotary_factor"]))


def layer_kinds(config: dict) -> list[str]:
    """Per-layer attention kind ("sliding_attention" / "full_attention") as HF runs the model."""
    kinds = config.get("layer_types")
    if kinds:
        return list(kinds)
    count = n_layers(config)
    pattern = first_value(config, "sliding_window_pattern", "_sliding_window_pattern")
    if config.get("model_type") == "gemma2":
        pattern = 2
    if hf_architecture(config) == "Olmo3ForCausalLM":  # Olmo3Config's default: every 4th layer is global
        pattern = 4
    if hf_architecture(config) == "GptOssForCausalLM":  # GptOssConfig's default: odd layers are full
        pattern = 2
    if not pattern or not config.get("sliding_window"):
        return ["full_attention"] * count
    return ["full_attention" if (i + 1) % int(pattern) == 0 else "sliding_attention" for i in range(count)]


def exaone4_layer_kinds(config: dict) -> list[str]:
    """Exaone4's layer kinds as transformers runs them: `layer_types`, else none slide without a window, else
    every `sliding_window_pattern`-th layer (default 4) is global; a string such as "LLLG" spells the pattern."""
    window, pattern = exaone4_window(config), config.get("sliding_window_pattern", 4)
    if config.get("layer_types") or not window or not isinstance(pattern, str):
        return layer_kinds({**config, "sliding_window": window, "sliding_window_pattern": pattern})
    return ["sliding_attention" if pattern[i % len(pattern)] == "L" else "full_attention" for i in range(n_layers(config))]


def rope_layers(config: dict) -> list[bool]:
    """Per layer, whether transformers applies rope: SmolLM3's `no_rope_layers` (1 = rope, 0 = NoPE;
    it may list more entries than layers), else every `no_rope_layer_interval`-th layer without."""
    count = n_layers(config)
    listed = config.get("no_rope_layers")
    if listed:
        return [bool(flag) for flag in list(listed)[:count]]
    interval = int(config.get("no_rope_layer_interval") or SMOLLM3_NO_ROPE_STEP)
    return [(i + 1) % interval != 0 for i in range(count)]


# ---------------------------------------------------------------------- support


def hf_architecture(config: dict) -> str:
    names = config.get("architectures") or []
    return next((name for name in names if name in ARCHITECTURES), names[0] if names else "unknown")


def llama_cpp_arch(config: dict) -> str | None:
    """llama.cpp's architecture for this (language model) config, None for an unknown one: ARCHITECTURES', except
    that a GraniteMoeHybrid with Mamba-2 layers is granitehybrid (all attention: granite, as llama.cpp's
    converter decides)."""
    name = hf_architecture(config)
    if name == "GraniteMoeHybridForCausalLM" and gguf_mamba2.is_hybrid(config):
        return gguf_mamba2.ARCH
    return ARCHITECTURES.get(name)


def architecture_support(config: dict) -> str | None:
    """None when ducktune can write this model as a GGUF llama.cpp runs, else a one-line reason."""
    config = language_model_config(config)
    name = hf_architecture(config)
    arch = llama_cpp_arch(config)
    if arch is None:
        return f"GGUF export supports {', '.join(ARCHITECTURES)}; this model is {name}"
    if arch == gguf_gemma4.ARCH:  # its own rope kinds per layer kind (proportional on full layers)
        return gguf_gemma4.gemma4_support(config)
    if arch == gguf_gemma3n.ARCH:  # rope per layer kind, and the many values llama.cpp hard-codes
        return gguf_gemma3n.gemma3n_support(config)
    kind = rope_params(config)["rope_type"]
    if arch not in NO_ROPE and (kind not in ROPE_KINDS or (ROPE_KINDS[kind] and arch not in ROPE_KINDS[kind])):
        return f"GGUF export of {name} does not support rope scaling '{kind}' (supported: default, linear, dynamic, llama3 for Llama / EXAONE 3.5 / EXAONE 4 / Apertus, longrope for Phi-3 / MiniCPM3, yarn for Qwen2/2.5, Qwen3, OLMo 2/3, Ministral 3, Arcee, gpt-oss and DeepSeek-V2)"
    # gpt-oss is published with truncate false, which llama.cpp cannot do: its converter writes it as it is (a caveat)
    if kind == "yarn" and (reason := yarn_refusal(rope_params(config), arch != gguf_gptoss.ARCH)):
        return f"GGUF export of {name}: {reason}"
    # these graphs size the attention output (and Phi-3's / GLM's fused qkv) by hidden_size
    full_width = ("phi3", "chatglm", "phi2", "olmo2", "stablelm", "nemotron", "gptneox")
    if arch in full_width and n_heads(config) * head_dim(config) != hidden_size(config):
        return f"GGUF export of {name}: heads x head_dim ({n_heads(config)} x {head_dim(config)}) must equal hidden_size for llama.cpp"
    if arch == "bloom" and n_kv_heads(config) != n_heads(config):
        return f"GGUF export of {name}: grouped-query attention is not a Bloom shape llama.cpp loads"
    if arch in GEMMA:
        return _gemma_problem(config, name, arch)
    if arch == gguf_qwen35.ARCH:
        return gguf_qwen35.qwen35_support(config, n_layers(config))
    if arch in gguf_lfm2.ARCHS and (reason := gguf_lfm2.lfm2_support(config, n_layers(config), n_heads(config),
                                                                      head_dim(config), hidden_size(config))):
        return reason  # LFM2-MoE's experts are checked below
    problem = {"phi2": _phi2_problem, "smollm3": _smollm3_problem, "granite": _granite_problem,
               gguf_mamba2.ARCH: _granite_problem, gguf_falconh1.ARCH: gguf_falconh1.falconh1_support,
               gguf_nemotronh.ARCH: gguf_nemotronh.nemotronh_support,
               "olmo2": _olmo2_problem, "ernie4_5": _ernie4_5_problem, "hunyuan-dense": _hunyuan_problem,
               "mistral3": _mistral3_problem, "exaone": _exaone_problem, "exaone4": _exaone4_problem, "arcee": _arcee_problem,
               "command-r": _cohere_problem, "cohere2": _cohere_problem,
               "stablelm": _layer_norm_lm_problem, "nemotron": _layer_norm_lm_problem,
               "gpt2": _gpt2_problem, "gptneox": _gptneox_problem,
               gguf_apertus.ARCH: gguf_apertus.apertus_support,
               gguf_minicpm3.ARCH: gguf_minicpm3.minicpm3_support,
               gguf_gptoss.ARCH: lambda config, name: gguf_gptoss.gptoss_support(config, name, layer_kinds(config))}.get(arch)
    if gguf_moe.routed(config, arch):
        problem = functools.partial(gguf_moe.moe_support, arch=arch)
    reason = problem(config, name) if problem else None
    if reason is None and arch in DENSE_PROBLEMS:  # the dense model's graph, experts aside
        reason = DENSE_PROBLEMS[arch](config, name)
    if reason is None and arch == gguf_deepseek2.ARCH:  # MLA, routing and YaRN, experts aside
        problem = gguf_deepseek2.deepseek2_problem(config, rope_params(config))
        reason = f"GGUF export of {name}: {problem}" if problem else None
    if reason is None and arch in WHOLE_HEAD_ROPE and rotary_dims(config) != head_dim(config):
        reason = (f"GGUF export of {name}: rope over {rotary_dims(config)} of {head_dim(config)} head dims; "
                  f"llama.cpp's {arch} rotates whole heads")
    return reason


def _hunyuan_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's hunyuan-dense graph cannot run as transformers' HunYuanDenseV1 does: it loads no
    attention or MLP biases, always has q/k norms, shares no KV across layers (CLA), runs SiLU only."""
    # use_qk_norm / use_cla are the published configs' keys (Tencent's own modelling code); transformers'
    # native class ignores them (always q/k norms, no CLA), so a checkpoint built otherwise is refused
    if config.get("use_qk_norm") is False:
        reason = "use_qk_norm false, but llama.cpp's hunyuan-dense (and transformers') always norms q/k"
    elif config.get("use_cla"):
        reason = "use_cla (KV shared across layers) is not what llama.cpp's hunyuan-dense or transformers runs"
    elif bias := unloaded_biases(config, "hunyuan-dense"):
        reason = bias
    elif config.get("hidden_act", "silu") != "silu":
        reason = f"hidden_act {config['hidden_act']!r}: llama.cpp's hunyuan-dense runs SiLU only"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def _exaone_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's exaone graph would run differently: it loads no o_proj or MLP biases and runs SiLU only
    (its converter asserts activation_function silu)."""
    if bias := unloaded_biases(config, "exaone", "o_proj / MLP biases"):
        return f"GGUF export of {name}: {bias}"
    if config.get("hidden_act", "silu") != "silu":
        return f"GGUF export of {name}: activation_function {config['hidden_act']!r}; llama.cpp's exaone runs SiLU only"
    return None


def exaone4_window(config: dict) -> int | None:
    """The sliding window transformers' Exaone4 runs with (its default when the key is absent; null: none)."""
    window = config.get("sliding_window", EXAONE4_DEFAULT_WINDOW)
    return int(window) if window else None


def _exaone4_problem(config: dict, name: str) -> str | None:
    """Configs llama.cpp's exaone4 graph would run differently: it slides (and rotates the sliding layers only)
    for 64 layers alone, and otherwise rotates every layer with full attention, while transformers skips rope
    on every full-attention layer as soon as `sliding_window` is set."""
    window, layers = exaone4_window(config), n_layers(config)
    if layers == EXAONE4_SWA_LAYERS and window is None:
        return (f"GGUF export of {name}: sliding_window null with {layers} layers; llama.cpp's exaone4 then "
                "skips rope on every layer, transformers rotates them all")
    if layers != EXAONE4_SWA_LAYERS and window is not None:
        return (f"GGUF export of {name}: sliding_window {window} with {layers} layers; llama.cpp's exaone4 "
                f"slides (and skips rope on global layers) only for {EXAONE4_SWA_LAYERS}-layer models")
    return None


def cohere2_window(config: dict) -> int | None:
    """The sliding window transformers' Cohere2 runs with (its default when the key is absent; null: none)."""
    window = config.get("sliding_window", COHERE2_DEFAULT_WINDOW)
    return int(window) if window else None


def cohere2_layer_kinds(config: dict) -> list[str]:
    """Cohere2's layer kinds as transformers builds them: `layer_types`, else every `sliding_window_pattern`-th
    layer (default 4) global, the others sliding, whether or not a window is set."""
    if config.get("layer_types"):
        return list(config["layer_types"])
    pattern = int(config.get("sliding_window_pattern") or COHERE2_DEFAULT_PATTERN)
    return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers(config))]


def _cohere_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's command-r / cohere2 graphs would run differently from transformers' Cohere / Cohere2:
    an output layer of its own, biases, another activation, q/k norms where llama.cpp loads none (or none where
    it expects them), Cohere2 without a window (transformers then rotates no layer at all) or without a sliding
    layer (llama.cpp's sliding-window cache aborts)."""
    arch, layers = ARCHITECTURES[name], n_layers(config)
    qk_norm_expected = arch == "command-r" and layers >= COMMAND_R_QK_NORM_LAYERS
    if config.get("tie_word_embeddings", True) is False:
        reason = f"tie_word_embeddings false, but llama.cpp's {arch} always uses the embedding as output layer"
    elif bias := unloaded_biases(config, arch):
        reason = bias
    elif config.get("hidden_act", "silu") != "silu":
        reason = f"hidden_act {config['hidden_act']!r}: llama.cpp's {arch} runs SiLU only"
    elif bool(config.get("use_qk_norm")) != qk_norm_expected:
        reason = (f"use_qk_norm {bool(config.get('use_qk_norm'))} with {layers} layers; llama.cpp's {arch} loads "
                  f"q/k norms for models of {COMMAND_R_QK_NORM_LAYERS} layers or more only" if arch == "command-r"
                  else "use_qk_norm true; llama.cpp's cohere2 has no q/k norms")
    elif arch == "cohere2" and cohere2_window(config) is None:
        reason = "sliding_window null: transformers then rotates no layer, llama.cpp's cohere2 requires a window"
    elif arch == "cohere2" and "sliding_attention" not in cohere2_layer_kinds(config):
        reason = "no sliding-window layer (layer_types): llama.cpp's cohere2 aborts without one"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def _arcee_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's arcee graph would run differently: it runs ReLU^2 and adds no attention or MLP biases."""
    act = config.get("hidden_act", "relu2")
    if act != "relu2":
        return f"GGUF export of {name}: hidden_act {act!r}; llama.cpp's arcee runs ReLU^2 (relu2)"
    if bias := unloaded_biases(config, "arcee"):
        return f"GGUF export of {name}: {bias}"
    return None


def _olmo2_problem(config: dict, name: str) -> str | None:
    """llama.cpp's olmo2 graph (OLMo 2 and 3) has no attention output bias and rotates OLMo 3's
    sliding-window layers without any scaling."""
    if config.get("attention_bias"):
        return f"GGUF export of {name}: attention_bias is not an OLMo shape llama.cpp loads"
    sliding_rope = rope_params(config, "sliding_attention")["rope_type"]
    if "sliding_attention" in layer_kinds(config) and sliding_rope != "default":
        return f"GGUF export of {name}: rope scaling '{sliding_rope}' on sliding-window layers is not what llama.cpp runs"
    return None


def _ernie4_5_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's ernie4_5 graph would run differently: it loads q/k/v biases but adds no o_proj or
    MLP bias (transformers' `use_bias` sets all of them) and runs SiLU (whole-head rope: WHOLE_HEAD_ROPE)."""
    if config.get("use_bias"):
        return f"GGUF export of {name}: use_bias true, but llama.cpp's ernie4_5 adds no output-projection or MLP bias"
    act = config.get("hidden_act", "silu")
    if act != "silu":
        return f"GGUF export of {name}: hidden_act {act!r}; llama.cpp's ernie4_5 runs SiLU"
    return None


def _mistral3_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's mistral3 graph would run differently (Ministral 3's ministral3 text model and Mistral Small
    3.x's plain mistral one alike): a sliding window (it attends to the whole context), another MLP activation
    (it computes SiLU), Llama 4's query temperature without
    YaRN (llama.cpp floors positions by the YaRN original context, the only place it reads it from)."""
    window = config.get("sliding_window")
    if window and int(window) < context_length(config):
        return f"GGUF export of {name}: sliding_window {window}; llama.cpp's mistral3 attends to the whole context"
    if config.get("hidden_act", "silu") != "silu":
        return f"GGUF export of {name}: hidden_act {config['hidden_act']!r}; llama.cpp's mistral3 runs SiLU only"
    params = rope_params(config)
    if params.get("llama_4_scaling_beta") and params["rope_type"] != "yarn":
        return f"GGUF export of {name}: llama_4_scaling_beta with rope '{params['rope_type']}'; llama.cpp's mistral3 reads its period from YaRN's original_max_position_embeddings"
    return None


def _smollm3_problem(config: dict, name: str) -> str | None:
    """What llama.cpp's smollm3 graph cannot run as transformers does: another NoPE pattern, biases
    (it loads none on o_proj or the MLP); whole-head rope is WHOLE_HEAD_ROPE's check."""
    ours = rope_layers(config)
    theirs = [(i + 1) % SMOLLM3_NO_ROPE_STEP != 0 for i in range(len(ours))]
    if len(ours) < n_layers(config) or ours != theirs:
        pattern = "".join("1" if flag else "0" for flag in ours)
        given = (f"no_rope_layers {pattern}" if config.get("no_rope_layers")
                 else f"no_rope_layer_interval {config.get('no_rope_layer_interval')} (rope layers {pattern})")
        return (f"GGUF export of {name}: {given} for {n_layers(config)} layers differs from llama.cpp's fixed "
                f"pattern (no rope on every {SMOLLM3_NO_ROPE_STEP}th layer)")
    if bias := unloaded_biases(config, "smollm3"):
        return f"GGUF export of {name}: {bias}"
    return None


def _layer_norm_lm_problem(config: dict, name: str) -> str | None:
    """What in a StableLM or Nemotron config llama.cpp's graph would run differently, or None."""
    arch = ARCHITECTURES[name]
    act, expected = config.get("hidden_act", MLP_ACTIVATION[arch]), MLP_ACTIVATION[arch]
    if act != expected:
        reason = f"hidden_act {act!r}: llama.cpp's {arch} graph computes {expected} only"
    elif config.get("tie_word_embeddings"):
        reason = f"tied embeddings: llama.cpp's {arch} loads an output head of its own"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def _phi2_problem(config: dict, name: str) -> str | None:
    """What in a Phi config llama.cpp's phi2 graph would run differently, or None."""
    act = config.get("hidden_act", "gelu_new")
    if config.get("model_type", "phi") != "phi":  # phi-msft: the pre-transformers remote-code layout
        reason = f"model_type {config['model_type']!r} is not the transformers-native Phi layout (model_type 'phi')"
    elif config.get("qk_layernorm"):
        reason = "qk_layernorm (LayerNorm on queries and keys) has no place in llama.cpp's phi2 graph"
    elif act not in TANH_GELU:
        reason = f"hidden_act {act!r}: llama.cpp's phi2 graph computes the tanh GELU (gelu_new) only"
    elif config.get("tie_word_embeddings"):
        reason = "tied embeddings: llama.cpp's phi2 loads an output head of its own"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def _gpt2_problem(config: dict, name: str) -> str | None:
    """What in a GPT-2 config llama.cpp's gpt2 graph would run differently: it computes the tanh GELU, scales
    attention by 1/sqrt(head_dim) in every layer and has no cross-attention."""
    act = config.get("activation_function", "gelu_new")
    if act not in TANH_GELU:
        reason = f"activation_function {act!r}: llama.cpp's gpt2 graph computes the tanh GELU (gelu_new) only"
    elif config.get("scale_attn_weights", True) is False:
        reason = "scale_attn_weights false, but llama.cpp's gpt2 scales attention by 1/sqrt(head_dim)"
    elif config.get("scale_attn_by_inverse_layer_idx"):
        reason = "scale_attn_by_inverse_layer_idx (attention scaled by 1/layer) has no place in llama.cpp's gpt2 graph"
    elif config.get("add_cross_attention"):
        reason = "add_cross_attention: llama.cpp's gpt2 graph has no cross-attention layers"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def _gptneox_problem(config: dict, name: str) -> str | None:
    """What in a GPT-NeoX config llama.cpp's gptneox graph would run differently: it loads q/k/v and output
    biases and an output layer of its own, and computes (tanh) GELU; exact GELU is a caveat (gguf_caveats)."""
    act = config.get("hidden_act", "gelu")
    if act not in TANH_GELU | {"gelu"}:
        reason = f"hidden_act {act!r}: llama.cpp's gptneox graph computes GELU only"
    elif config.get("attention_bias", True) is False:
        reason = "attention_bias false, but llama.cpp's gptneox loads query_key_value and dense biases"
    elif config.get("tie_word_embeddings"):
        reason = "tied embeddings: llama.cpp's gptneox loads an output layer (embed_out) of its own"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def gemma_activation(config: dict) -> str:
    """The MLP activation transformers 5 runs for a Gemma config: Gemma 1 reads `hidden_act` (its
    published "gelu" is taken as the tanh approximation) and ignores `hidden_activation`, which
    Gemma 2/3 read."""
    if hf_architecture(config) == "GemmaForCausalLM":
        act = config.get("hidden_act") or "gelu_pytorch_tanh"
        return "gelu_pytorch_tanh" if act == "gelu" else act
    return config.get("hidden_activation") or "gelu_pytorch_tanh"


def _gemma_problem(config: dict, name: str, arch: str) -> str | None:
    """Why llama.cpp's gemma/gemma2/gemma3 graph would run this config differently (None: it would not)."""
    activation = gemma_activation(config)
    if activation not in TANH_GELU:
        return f"GGUF export of {name}: activation {activation} is not the tanh GELU llama.cpp runs for Gemma"
    if config.get("use_bidirectional_attention"):
        return f"GGUF export of {name}: use_bidirectional_attention is not causal attention, which llama.cpp runs"
    if config.get("attention_bias"):
        return f"GGUF export of {name}: attention_bias is set; llama.cpp's Gemma has no output-projection bias"
    if arch in ("gemma", "gemma2") and config.get("tie_word_embeddings") is False:
        return f"GGUF export of {name}: tie_word_embeddings is false; llama.cpp's {arch} reuses the embedding as output layer"
    scalar = config.get("query_pre_attn_scalar")
    # Gemma 2/3: llama.cpp scales queries by 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B
    # shape (Gemma 1 always scales by 1/sqrt(head_dim) and has no such key)
    allowed = {head_dim(config)} | ({hidden_size(config) // n_heads(config)} if n_layers(config) in (46, 62) else set())
    if arch != "gemma" and scalar is not None and int(scalar) not in allowed:
        return f"GGUF export of {name}: query_pre_attn_scalar {scalar} differs from head_dim {head_dim(config)}, which llama.cpp assumes"
    return None


def _granite_problem(config: dict, name: str) -> str | None:
    """llama.cpp's granite graph takes head_dim as hidden_size / heads (its converter drops a head_dim
    key) and reads a multiplier of 0 as "absent" (default scale): such configs would run differently."""
    if name == "GraniteMoeHybridForCausalLM" and (reason := _granite4_problem(config)):
        return f"GGUF export of {name}: {reason}"
    if head_dim(config) * n_heads(config) != hidden_size(config):
        return f"GGUF export of {name}: head_dim {head_dim(config)} x {n_heads(config)} heads must equal hidden_size for llama.cpp"
    for key in GRANITE_SCALES:
        if config.get(key) is not None and float(config[key]) == 0.0:
            return f"GGUF export of {name}: {key} 0 is read by llama.cpp as unset"
    return None


def _granite4_problem(config: dict) -> str | None:
    """What llama.cpp would run differently in a GraniteMoeHybrid config: with Mamba-2 layers, granitehybrid's
    limits (gguf_mamba2); all attention, anything but Granite 4.0 dense (rope, no experts), the one form
    llama.cpp's granite graph runs."""
    if gguf_mamba2.is_hybrid(config):
        return gguf_mamba2.granitehybrid_support(config)
    if int(config.get("num_local_experts") or 0) > 0:
        return (f"num_local_experts {config['num_local_experts']} with every layer attention (Granite 4.0's MoE "
                "models are hybrids; ducktune writes no granite GGUF with experts for this class)")
    if config.get("position_embedding_type") != "rope":
        return f"position_embedding_type {config.get('position_embedding_type')!r}: llama.cpp's granite always rotates"
    return None


# MoE graphs that are a dense one's with experts: that one's refusals apply too
DENSE_PROBLEMS = {"granitemoe": _granite_problem, "ernie4_5-moe": _ernie4_5_problem}


def gguf_caveats(config: dict) -> list[str]:
    """Where llama.cpp runs an exportable model differently from transformers (one line each)."""
    config = language_model_config(config)
    arch = ARCHITECTURES.get(hf_architecture(config))
    window, context = config.get("sliding_window"), context_length(config)
    notes = []
    uses_window = config.get("use_sliding_window", True) and window and int(window) < context
    if arch in ("llama", "qwen2", "phi3", "smollm3", "qwen3moe", "qwen2moe") and uses_window:
        notes.append(f"sliding_window {window}: llama.cpp attends to the whole context for this architecture, "
                     f"so answers may differ from transformers beyond {window} tokens")
    kind = rope_params(config)["rope_type"]
    if kind == "dynamic" and ntk_alpha_base(config) is None:
        notes.append("dynamic rope scaling: llama.cpp does not stretch rope past max_position_embeddings "
                     f"({context}); keep contexts within it")
    if arch == gguf_gemma3n.ARCH:
        notes.append("Gemma 3n's activation sparsity: llama.cpp's cutoff uses the sample standard deviation "
                     "(n - 1), transformers' the population one (n), so logits differ slightly (E2B's 8192-wide "
                     "MLP: a std 6e-5 larger)")
    if arch == "gptneox" and config.get("hidden_act", "gelu") == "gelu":
        notes.append("hidden_act gelu (exact): llama.cpp's gptneox computes the tanh approximation (within about "
                     "3e-4 of it), so logits differ from transformers' slightly")
    if arch in ROPE_KINDS["longrope"] and kind == "longrope":
        original = rope_params(config).get("original_max_position_embeddings")
        notes.append(f"longrope: llama.cpp picks the long factors for the whole run when its context exceeds {original} "
                     "tokens, transformers per sequence length")
    if kind == "yarn" and rope_params(config).get("truncate", True) is False:
        notes.append("yarn truncate false: llama.cpp rounds the YaRN correction range to whole dimensions, so its "
                     "rotation drifts slightly from transformers' as positions grow")
    return notes


def gguf_arch(config: dict) -> str:
    """llama.cpp's architecture name for this config, or a one-line ModelError saying what to do."""
    reason = architecture_support(config)
    if reason:
        raise ModelError(f"config.json: {reason}. `ducktune export RUN --to merged` writes the merged Hugging "
                         "Face folder, which llama.cpp's convert_hf_to_gguf.py may convert")
    return llama_cpp_arch(language_model_config(config))


# ---------------------------------------------------------------------- hyper-parameters


def add_hparams(writer, config: dict, arch: str) -> dict:
    """Write the `<arch>.*` keys llama.cpp reads for this architecture; returns them for reporting."""
    config = language_model_config(config)
    written = {}

    def put(method: str, value, key: str | None = None):  # key: a key gguf's writer has no method for
        if key:
            getattr(writer, method)(key, value)
        else:
            getattr(writer, method)(value)
        written[key.split(".", 1)[1] if key else method.removeprefix("add_")] = value

    hidden, heads, dim = hidden_size(config), n_heads(config), head_dim(config)
    put("add_context_length", context_length(config))
    put("add_embedding_length", hidden)
    put("add_block_count", n_layers(config))
    width, kv = _mlp_width_and_kv_heads(config, arch)
    put("add_feed_forward_length", width)
    put("add_head_count", heads)
    put("add_head_count_kv", kv)
    if arch in LAYER_NORM:
        put("add_layer_norm_eps", float(first_value(config, "layer_norm_epsilon", "layer_norm_eps", "norm_eps")))
    else:  # Nemotron-H's RMS norms read layer_norm_epsilon
        put("add_layer_norm_rms_eps", float(first_value(config, "rms_norm_eps", "norm_eps", "layernorm_epsilon",
                                                  "layer_norm_eps", "layer_norm_epsilon")))
    if arch == gguf_nemotronh.ARCH:
        gguf_nemotronh.add_nemotronh_hparams(put, config, dim)
    if arch == "bloom":
        put("add_max_alibi_bias", 8.0)  # Bloom's ALiBi slopes; llama.cpp hard-codes the same
    if arch in NO_ROPE:
        return written
    if arch == "gptneox":  # llama.cpp requires the key (GPTNeoXConfig's default: parallel)
        put("add_parallel_residual", bool(config.get("use_parallel_residual", True)))
    if arch == gguf_gemma4.ARCH:
        gguf_gemma4.add_gemma4_hparams(put, config)
        return written
    if arch == gguf_gemma3n.ARCH:
        gguf_gemma3n.add_gemma3n_hparams(put, config)
        return written
    if arch == gguf_minicpm3.ARCH:
        gguf_minicpm3.add_minicpm3_hparams(put, config, hidden, heads)
    elif arch == gguf_deepseek2.ARCH:
        gguf_deepseek2.add_deepseek2_hparams(put, config, rope_params(config))
    elif dim != hidden // heads or arch in GEMMA or arch in ("qwen3", gguf_qwen35.ARCH, "qwen3moe", gguf_gptoss.ARCH):
        put("add_key_length", dim)
        put("add_value_length", dim)
    _add_rope_hparams(put, config, arch)
    _add_family_hparams(put, config, arch)
    return written


def _add_family_hparams(put, config: dict, arch: str) -> None:
    """The keys of one architecture or family beside the common ones (windows, muP scalars, experts, SSM...)."""
    if arch == "llama":
        put("add_vocab_size", int(config["vocab_size"]))
    if arch in GEMMA:
        _add_gemma_hparams(put, config, arch)
    if arch == "olmo2":
        _add_sliding_window_hparams(put, config)
    if arch == "exaone4" and exaone4_window(config):
        # written even when no layer slides: llama.cpp's 64-layer default is 3 sliding : 1 full
        put("add_sliding_window", exaone4_window(config))
        put("add_sliding_window_pattern", [kind == "sliding_attention" for kind in exaone4_layer_kinds(config)])
    if arch == "phi3":
        put("add_sliding_window", int(config.get("sliding_window") or 0))  # llama.cpp runs Phi-3 without SWA
    if arch in COHERE:
        _add_cohere_hparams(put, config, arch)
    if arch in GRANITE_ARCHS:
        for key, method in GRANITE_SCALES.items():
            # transformers' defaults (1.0) when absent; llama.cpp requires the logit scale
            put(method, float(config.get(key) if config.get(key) is not None else 1.0))
    if arch == gguf_qwen35.ARCH:
        gguf_qwen35.add_qwen35_hparams(put, config, rope_params(config))
    if arch in gguf_lfm2.ARCHS:
        gguf_lfm2.add_lfm2_hparams(put, config)
    if arch == gguf_mamba2.ARCH:
        gguf_mamba2.add_granitehybrid_hparams(put, config)
    if arch == gguf_falconh1.ARCH:
        gguf_falconh1.add_falconh1_hparams(put, config)
    if gguf_moe.routed(config, arch):
        gguf_moe.add_moe_hparams(put, config, arch)
    if arch == gguf_gptoss.ARCH:
        gguf_gptoss.add_gptoss_hparams(put, config)
    if arch == "mistral3" and rope_params(config).get("llama_4_scaling_beta"):
        # Llama 4's query temperature; llama.cpp's period is the yarn original context written above
        put("add_attn_temperature_scale", float(rope_params(config)["llama_4_scaling_beta"]))


def _mlp_width_and_kv_heads(config: dict, arch: str) -> tuple:
    """feed_forward_length and head_count_kv as llama.cpp reads them for `arch` (a number, or one per layer)."""
    if arch in gguf_lfm2.ARCHS:  # the MLP width of the weights; no KV heads on the short-conv layers
        return (gguf_lfm2.feed_forward_length(config, arch),
                gguf_lfm2.head_count_kv(config, n_layers(config), n_kv_heads(config)))
    if arch == gguf_gemma4.ARCH:  # MLP widths and KV heads per layer
        return gguf_gemma4.feed_forward_lengths(config), gguf_gemma4.head_count_kv(config)
    if arch == gguf_gemma3n.ARCH:  # MLP widths per layer (transformers 5 saves a list)
        return gguf_gemma3n.feed_forward_lengths(config), n_kv_heads(config)
    if arch == gguf_mamba2.ARCH:  # no KV heads on the Mamba-2 layers; the experts' width with experts
        return gguf_mamba2.feed_forward_length(config), gguf_mamba2.head_count_kv(config, n_kv_heads(config))
    if arch == gguf_nemotronh.ARCH:  # zeros tell the Mamba-2 and MLP layers from attention
        return gguf_nemotronh.feed_forward_lengths(config), gguf_nemotronh.head_count_kv(config, n_kv_heads(config))
    # Granite 4's MLP is its shared_mlp (intermediate_size is the experts' width)
    width = int(first_value(config, "shared_intermediate_size", "intermediate_size", "ffn_hidden_size", "n_inner",
                       default=4 * hidden_size(config)))
    # MLA (MiniCPM3, DeepSeek-V2) expands keys and values to every head (num_key_value_heads unused)
    return width, n_heads(config) if arch in (gguf_minicpm3.ARCH, gguf_deepseek2.ARCH) else n_kv_heads(config)


def _add_rope_hparams(put, config: dict, arch: str) -> None:
    import gguf

    params = rope_params(config)
    put("add_rope_freq_base", float(ntk_alpha_base(config) or params["rope_theta"]))
    put("add_rope_dimension_count", rotary_dims(config))
    if params["rope_type"] == "linear":
        put("add_rope_scaling_type", gguf.RopeScalingType.LINEAR)
        put("add_rope_scaling_factor", float(params["factor"]))
    if arch == "phi3" or (arch == gguf_minicpm3.ARCH and params["rope_type"] == "longrope"):
        # llama.cpp switches to the long factors past this context (default: the trained one)
        original = int(params.get("original_max_position_embeddings") or context_length(config))
        put("add_rope_scaling_orig_ctx_len", original)
        if params["rope_type"] == "longrope":
            put("add_rope_scaling_attn_factors", longrope_attention_factor(config))
    if params["rope_type"] == "yarn" and arch == gguf_deepseek2.ARCH:
        _add_yarn_hparams(put, config, attn_factor=False)  # its cos/sin scale follows mscale_all_dim (gguf_deepseek2)
    elif params["rope_type"] == "yarn":
        _add_yarn_hparams(put, config)


def ntk_alpha_base(config: dict) -> float | None:
    """Hunyuan's "dynamic" rope with an NTK `alpha`: the fixed base transformers rotates with (rope_theta *
    alpha^(d/(d-2)), d = head_dim, whatever the sequence length), else None."""
    params = rope_params(config)
    if hf_architecture(config) != "HunYuanDenseV1ForCausalLM" or params["rope_type"] != "dynamic" or not params.get("alpha"):
        return None
    dim = head_dim(config)
    return float(params["rope_theta"]) * float(params["alpha"]) ** (dim / (dim - 2))


def yarn_refusal(params: dict, exact_ramp: bool = True) -> str | None:
    """Why llama.cpp's YaRN would rotate differently from transformers' for these rope settings, or None."""
    if not params.get("original_max_position_embeddings"):
        return "yarn rope scaling without original_max_position_embeddings"
    # llama.cpp reads no beta keys for these architectures (it uses 32 / 1) and always truncates the ramp
    if float(params.get("beta_fast") or 32) != 32 or float(params.get("beta_slow") or 1) != 1:
        return "yarn beta_fast/beta_slow other than 32/1, which llama.cpp assumes"
    if exact_ramp and params.get("truncate", True) is False:
        return "yarn with truncate false (llama.cpp rounds the correction range)"
    return None


def yarn_factor(config: dict) -> float:
    params = rope_params(config)
    return float(params.get("factor") or context_length(config) / int(params["original_max_position_embeddings"]))


def _yarn_mscale(factor: float, weight: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * weight * math.log(factor) + 1.0


def yarn_attention_factor(config: dict) -> float:
    """transformers' YaRN cos/sin scale: attention_factor, else from mscale / mscale_all_dim, else 0.1 ln(factor) + 1."""
    params, factor = rope_params(config), yarn_factor(config)
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])
    if params.get("mscale") and params.get("mscale_all_dim"):
        return _yarn_mscale(factor, float(params["mscale"])) / _yarn_mscale(factor, float(params["mscale_all_dim"]))
    return _yarn_mscale(factor)


def _add_yarn_hparams(put, config: dict, attn_factor: bool = True) -> None:
    import gguf

    factor = yarn_factor(config)
    put("add_rope_scaling_type", gguf.RopeScalingType.YARN)
    put("add_rope_scaling_factor", factor)
    put("add_rope_scaling_orig_ctx_len", int(rope_params(config)["original_max_position_embeddings"]))
    if not attn_factor:
        return
    # llama.cpp scales cos/sin by (0.1 ln(factor) + 1) times this key: write what is left of transformers' factor
    put("add_rope_scaling_attn_factors", yarn_attention_factor(config) / _yarn_mscale(factor))


def _add_gemma_hparams(put, config: dict, arch: str) -> None:
    if arch == "gemma":  # Gemma 1: no softcapping, no sliding windows
        return
    if arch == "gemma2":
        put("add_attn_logit_softcapping", float(config.get("attn_logit_softcapping") or 0.0))
    if config.get("final_logit_softcapping"):
        put("add_final_logit_softcapping", float(config["final_logit_softcapping"]))
    _add_sliding_window_hparams(put, config)


def _add_cohere_hparams(put, config: dict, arch: str) -> None:
    """Cohere's logit scale (llama.cpp's cohere2 requires it); Cohere2's window and per-layer pattern, which
    also decides the layers llama.cpp rotates (the sliding ones; the global ones have no rope, as in HF)."""
    scale = config.get("logit_scale")
    put("add_logit_scale", float(scale if scale is not None else COHERE_DEFAULT_LOGIT_SCALE))
    if arch == "cohere2":  # the pattern always: absent, llama.cpp would assume 3 sliding : 1 global
        put("add_sliding_window", cohere2_window(config))
        put("add_sliding_window_pattern", [kind == "sliding_attention" for kind in cohere2_layer_kinds(config)])


def _add_sliding_window_hparams(put, config: dict) -> None:
    """Window size, which layers slide and their rope base, when any layer slides."""
    kinds = layer_kinds(config)
    if config.get("sliding_window") and "sliding_attention" in kinds:
        put("add_sliding_window", int(config["sliding_window"]))
        # the exact per-layer pattern, not llama.cpp's default period (2 for Gemma 2, 6 for Gemma 3, 4 for OLMo 3)
        put("add_sliding_window_pattern", [kind == "sliding_attention" for kind in kinds])
        put("add_rope_freq_base_swa", float(rope_params(config, "sliding_attention")["rope_theta"]))


def longrope_attention_factor(config: dict) -> float:
    params = rope_params(config)
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])
    original = int(params.get("original_max_position_embeddings") or context_length(config))
    scale = context_length(config) / original
    return math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0


def llama3_rope_factors(config: dict) -> list[float]:
    """Per rotary pair, the divisor Llama 3.1's rope scaling applies to its frequency (Meta's
    published scheme: high frequencies kept, low ones divided by `factor`, a smooth ramp between)."""
    params = rope_params(config)
    dims = rotary_dims(config)
    factor = float(params["factor"])
    low, high = float(params.get("low_freq_factor", 1.0)), float(params.get("high_freq_factor", 4.0))
    original = float(params.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, dims, 2):
        wavelength = 2 * math.pi * float(params["rope_theta"]) ** (i / dims)
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return factors


# ---------------------------------------------------------------------- tensors


def rotary_interleave(weight, n_heads: int):
    """HF (halves) -> llama.cpp (interleaved) row order of a q/k projection or bias, per head."""
    rows = weight.shape[0]
    rest = weight.shape[1:]
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def _quant_type(shape: tuple[int, ...], quant: str):
    import gguf

    if len(shape) == 1:
        return gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def plan_from_shapes(shapes: dict[str, tuple[int, ...]], config: dict, quant: str, where: str = "model") -> list[TensorPlan]:
    """Every GGUF tensor to write: name, shape, type and how to get it from the HF weights."""
    import gguf

    config = language_model_config(config)
    arch = gguf_arch(config)
    # gguf-py's enum member by llama.cpp's name (granitemoe is GRANITE_MOE, hunyuan-dense HUNYUAN_DENSE)
    model_arch = next(member for member, text in gguf.MODEL_ARCH_NAMES.items() if text == arch)
    name_map = gguf.get_tensor_name_map(model_arch, n_layers(config))
    # transformers' defaults (LFM2's published configs name it tie_embedding, or nothing)
    tied_default = arch in GEMMA or arch in TIED_BY_DEFAULT
    tied = config.get("tie_word_embeddings", config.get("tie_embedding", tied_default))
    plans, names = [], language_model_names(shapes)
    if gguf_moe.routed(config, arch) or arch == gguf_gptoss.ARCH:  # one stacked tensor per layer and kind
        experts, consumed = (gguf_gptoss.expert_tensors(names, shapes) if arch == gguf_gptoss.ARCH
                             else gguf_moe.expert_tensors(names, shapes, config, where))
        # biases and attention sinks stay F32, as llama.cpp adds them to F32 activations
        plans += [TensorPlan(sources[0], gguf_name, shape, gguf.GGMLQuantizationType.F32 if gguf_name.endswith(
                      (".bias", "_sinks.weight")) else _quant_type(shape, quant), transform, stacked=sources)
                  for gguf_name, shape, sources, transform in experts]
        names = {lookup: hf_name for lookup, hf_name in names.items() if hf_name not in consumed}
    if arch == "stablelm":  # StableLM 2 12B: one q/k LayerNorm per head, stacked per layer
        norms, consumed = _stablelm_head_norm_plans(names, config, where)
        plans += norms
        names = {lookup: hf_name for lookup, hf_name in names.items() if hf_name not in consumed}
    if arch == gguf_gemma3n.ARCH:  # AltUp projections stacked; zero K/V for the KV-shared layers that have none
        extra, consumed = gguf_gemma3n.extra_tensors(names, shapes, config)
        plans += [TensorPlan(sources[0] if sources else None, gguf_name, shape,
                             gguf_gemma3n.tensor_qtype(gguf_name, _quant_type(shape, quant)), transform,
                             stacked=sources) for gguf_name, shape, sources, transform in extra]
        names = {lookup: hf_name for lookup, hf_name in names.items() if hf_name not in consumed}
    for lookup, hf_name in sorted(names.items()):
        shape = shapes[hf_name]
        if lookup.endswith("rotary_emb.inv_freq") or (lookup == "lm_head.weight" and (tied or arch in GEMMA)):
            continue
        if arch == gguf_qwen35.ARCH and gguf_qwen35.not_exported(hf_name):
            continue
        if arch == gguf_apertus.ARCH and gguf_apertus.xielu_scalar(hf_name):  # hyper-parameters in llama.cpp
            continue
        if arch == "internlm2" and ".attention.wqkv." in hf_name:  # llama.cpp has no fused name for it
            plans += _internlm2_qkv_plans(hf_name, shape, config, quant)
            continue
        if ".shared_mlp." in hf_name or (".block_sparse_moe." in hf_name and "_linear." in hf_name):  # Granite 4
            plans += _granite4_mlp_plans(hf_name, shape, quant, gguf_mamba2.expert_count(config) > 0)
            continue
        # Bloom's names are mapped without their "transformer." prefix (as in BloomModel's own)
        lookup = lookup.removeprefix("transformer.") if arch == "bloom" else lookup
        if arch == "gpt2" and lookup.endswith((".attn.bias", ".attn.masked_bias")):  # old checkpoints' mask buffers
            continue
        transform = _tensor_transform(hf_name, shape, config, arch)
        if arch == "gpt2" and hf_name.endswith(GPT2_CONV1D):  # Conv1D [in, out] -> [out, in]
            shape, transform = (shape[1], shape[0]), _transposed
        if arch == gguf_qwen35.ARCH:
            lookup, shape, transform = gguf_qwen35.qwen35_tensor(lookup, shape, config)
        if arch in gguf_lfm2.ARCHS and (kernel := gguf_lfm2.conv_kernel(hf_name, shape)):
            shape, transform = kernel
        if arch in MAMBA2_ARCHS and MAMBA2_ARCHS[arch] in hf_name:  # Nemotron-H's keys translated to Granite's
            mixer = gguf_nemotronh.mamba2_keys(config) if arch == gguf_nemotronh.ARCH else config
            lookup, shape, transform = gguf_mamba2.mamba_tensor(lookup, shape, mixer)
        if arch == gguf_falconh1.ARCH:  # its muP multipliers, folded into the (merged) weights
            transform = gguf_falconh1.folded(transform, gguf_falconh1.weight_scale(hf_name, config))
        if arch == gguf_gemma4.ARCH:
            lookup = gguf_gemma4.gemma4_lookup(lookup)
        if arch == gguf_gemma3n.ARCH:
            lookup = gguf_gemma3n.gemma3n_lookup(lookup)
            if ".embed_tokens_per_layer." in hf_name:
                shape, transform = gguf_gemma3n.per_layer_table(shape, config)
        gguf_name = name_map.get_name(lookup, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelError(f"{where}: weight {hf_name} has no GGUF name for architecture {arch}")
        # llama.cpp's converter keeps convolution kernels in F32 (its ssm_conv reads them so), MoE routers
        # (ffn_gate_inp: a rounded router flips near-tie expert choices) and Qwen2-MoE's shared-expert gate
        keep_f32 = (any(part in gguf_name for part in (".ssm_conv1d.", ".shortconv.conv.", ".ffn_gate_inp.",
                                                       ".ffn_gate_inp_shexp."))
                    or gguf_mamba2.keep_f32(gguf_name))
        qtype = gguf.GGMLQuantizationType.F32 if keep_f32 else _quant_type(shape, quant)
        if arch == gguf_gemma3n.ARCH:
            qtype = gguf_gemma3n.tensor_qtype(gguf_name, qtype)
        plans.append(TensorPlan(hf_name, gguf_name, tuple(shape), qtype, transform))
    return plans + _computed_tensors(config, arch)


def _tensor_transform(hf_name: str, shape, config: dict, arch: str) -> Callable | None:
    if arch in ROTARY_PERMUTED and (".q_proj." in hf_name or ".k_proj." in hf_name):
        heads = n_heads(config) if ".q_proj." in hf_name else n_kv_heads(config)
        return lambda array: rotary_interleave(array, heads)
    if (arch in GEMMA or arch in LAYER_NORM_1P) and hf_name.endswith("norm.weight"):
        return lambda array: array + 1.0
    if arch in ("bloom", "gptneox") and ".query_key_value." in hf_name:
        heads = n_heads(config)
        return lambda array: bloom_qkv_to_blocks(array, heads)
    return None


def _transposed(array):
    import numpy as np

    return np.ascontiguousarray(array.T)


def bloom_qkv_to_blocks(array, heads: int):
    """Bloom's (and GPT-NeoX's) fused qkv rows [q_h, k_h, v_h] per head -> [all q; all k; all v] (weight or bias)."""
    rest = array.shape[1:]
    per_head = array.reshape(heads, 3, array.shape[0] // heads // 3, *rest)
    return per_head.swapaxes(0, 1).reshape(array.shape)


def _block(hf_name: str) -> str:
    """llama.cpp's block prefix (blk.N) of a layer weight, for tensors written under names of their own."""
    return "blk." + hf_name.split(".layers.", 1)[1].split(".", 1)[0]


def _internlm2_qkv_plans(hf_name: str, shape, config: dict, quant: str) -> list[TensorPlan]:
    """InternLM2's wqkv rows are grouped per KV head: [q * (heads/kv), k, v] x kv groups."""
    heads, kv, dim = n_heads(config), n_kv_heads(config), head_dim(config)
    base = _block(hf_name)
    suffix = hf_name.rsplit(".", 1)[1]
    plans = []
    for part, rows, rotary_heads in (("attn_q", heads * dim, heads), ("attn_k", kv * dim, kv), ("attn_v", kv * dim, None)):
        out_shape = (rows, *shape[1:])

        def take(array, part=part, rotary_heads=rotary_heads):
            piece = internlm2_split_qkv(array, heads, kv, dim)[part]
            return piece if rotary_heads is None else rotary_interleave(piece, rotary_heads)  # q, k: llama rotary
        plans.append(TensorPlan(hf_name, f"{base}.{part}.{suffix}", out_shape, _quant_type(out_shape, quant), take))
    return plans


def _granite4_mlp_plans(hf_name: str, shape, quant: str, experts: bool = False) -> list[TensorPlan]:
    """Granite 4's MLPs: input_linear rows are [gate; up] (transformers chunks them in two, SiLU on the first;
    per expert in block_sparse_moe's stacked [E, 2I, H]) -> gate and up; output_linear -> down. The shared_mlp
    is the layer's MLP (ffn_*), or with routed experts (ffn_*_exps) their shared expert (ffn_*_shexp)."""
    base = _block(hf_name)
    kind = "_exps" if ".block_sparse_moe." in hf_name else "_shexp" if experts else ""
    if ".output_linear." in hf_name:
        return [TensorPlan(hf_name, f"{base}.ffn_down{kind}.weight", tuple(shape), _quant_type(shape, quant))]
    rows = len(shape) - 2  # the output rows' axis (after the expert axis of a stacked weight)
    half = shape[rows] // 2
    out_shape = (*shape[:rows], half, shape[-1])
    return [TensorPlan(hf_name, f"{base}.{part}{kind}.weight", out_shape, _quant_type(out_shape, quant),
                       lambda array, start=start: array[..., start:start + half, :])
            for part, start in (("ffn_gate", 0), ("ffn_up", half))]


# StableLM 2 12B's per-head norms: model.layers.N.self_attn.q_layernorm.norms.H.weight
STABLELM_HEAD_NORM = re.compile(r"\.layers\.(\d+)\.self_attn\.([qk])_layernorm\.norms\.(\d+)\.weight$")


def _stablelm_head_norm_plans(names: dict[str, str], config: dict, where: str) -> tuple[list[TensorPlan], set[str]]:
    """One F32 attn_q_norm / attn_k_norm [heads, head_dim] per layer from the per-head LayerNorm weights (in head
    order: llama.cpp normalizes each head of Qcur [head_dim, heads] and scales it by its row), and the names used."""
    import gguf

    found: dict[tuple[int, str], dict[int, str]] = {}
    for hf_name in names.values():
        if match := STABLELM_HEAD_NORM.search(hf_name):
            found.setdefault((int(match[1]), match[2]), {})[int(match[3])] = hf_name
    plans, dim = [], head_dim(config)
    for (layer, kind), by_head in sorted(found.items()):
        heads = n_heads(config) if kind == "q" else n_kv_heads(config)
        if missing := sorted(set(range(heads)) - set(by_head)):
            raise ModelError(f"{where}: layer {layer} has no {kind}_layernorm weight for head {missing[0]} "
                             f"(one per head, 0..{heads - 1}, expected)")
        sources = tuple(by_head[h] for h in range(heads))
        plans.append(TensorPlan(sources[0], f"blk.{layer}.attn_{kind}_norm.weight", (heads, dim),
                                gguf.GGMLQuantizationType.F32, lambda array, heads=heads: array.reshape(heads, dim),
                                stacked=sources))
    return plans, {name for by_head in found.values() for name in by_head.values()}


def internlm2_split_qkv(array, heads: int, kv: int, dim: int) -> dict:
    """Grouped wqkv -> {"attn_q", "attn_k", "attn_v"} in HF (rotate-half) row order."""
    per_group = heads // kv
    rest = array.shape[1:]
    grouped = array.reshape(kv, per_group + 2, dim, *rest)
    return {
        "attn_q": grouped[:, :per_group].reshape(heads * dim, *rest),
        "attn_k": grouped[:, -2].reshape(kv * dim, *rest),
        "attn_v": grouped[:, -1].reshape(kv * dim, *rest),
    }


def _computed_tensors(config: dict, arch: str) -> list[TensorPlan]:
    """Tensors llama.cpp wants that HF computes from the config: rope frequency tables."""
    import gguf
    import numpy as np

    params = rope_params(config)
    f32 = gguf.GGMLQuantizationType.F32

    def table(values):
        array = np.asarray(values, dtype=np.float32)
        return lambda _unused: array

    if arch == gguf_gemma4.ARCH:  # the full layers' proportional rope
        factors = gguf_gemma4.rope_freqs(config)
        return [TensorPlan(None, "rope_freqs.weight", (len(factors),), f32, table(factors))]
    if arch in ROPE_KINDS["llama3"] and params["rope_type"] == "llama3":
        factors = llama3_rope_factors(config)
        return [TensorPlan(None, "rope_freqs.weight", (len(factors),), f32, table(factors))]
    if arch in ROPE_KINDS["longrope"] and params["rope_type"] == "longrope":
        plans = []
        for key, name in (("long_factor", "rope_factors_long.weight"), ("short_factor", "rope_factors_short.weight")):
            values = params.get(key)
            if not values or len(values) != rotary_dims(config) // 2:
                raise ModelError(f"config.json: rope {key} must list {rotary_dims(config) // 2} factors")
            plans.append(TensorPlan(None, name, (len(values),), f32, table(values)))
        return plans
    return []
