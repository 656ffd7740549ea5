"""GGUF for every architecture id: tiny stand-ins with each family's real config keys, written as
f16 and q8_0, read back (every tensor, every shape, the architecture's keys), and run by llama.cpp:
teacher-forced next-token logits equal the fp32 HF model's (top-1 where the HF top-2 margin is
clearly above quantization error; max |Δlogit| small). InternLM2 (remote code) is checked on a
fake state dict built from a Llama's weights, so llama.cpp must reproduce the Llama's logits."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re

import numpy as np
import pytest
import torch

from ducktune.errors import ModelError
from ducktune.export import gguf_arch
from ducktune.export.gguf_apertus import xielu_values
from ducktune.export.gguf_arch import (
    architecture_support,
    llama3_rope_factors,
    plan_from_shapes,
)
from ducktune.export.gguf_file import read_back, write_gguf
from ducktune.models.families import wake_zero_scales
from ducktune.models.standin_configs import (
    ARCH_IDS,
    MIRRORS,
    internlm2_config,
    internlm2_weight_names,
    tiny_config,
)

PROMPTS = [
    "The quick brown fox jumps over the lazy dog, and the duck swims in the pond while it rains.",
    "What is the capital of France? Count: 1 2 3 12345.",
    "你好，小鸭！Duckling was made by the ducktune team to answer questions.",
]
EOT = "<|im_end|>"
INIT_RANGE = 0.1
# f16: compare top-1 where HF's top-2 margin exceeds 0.02; logits (spread ~3.5) within 0.02 (seen: <= 0.007)
F16_MARGIN, F16_MAX_DIFF = 0.02, 0.02
# Qwen3.5's Gated DeltaNet carries its state along the whole sequence, rounding and all: seen 0.021 (f16)
# and 0.36 (q8_0) at init range 0.1, where every other architecture stays under the default bounds.
# Gemma 4 attends with scale 1 (q and k RMS-normed, no 1/sqrt(head_dim)): llama.cpp's f16 KV cache rounding reaches
# the logits larger (0.077 f16, 0.05 with f32 weights, 0.014 with an f32 cache as well; Gemma 3: 0.002); its random
# stand-in is also sensitive to the q8_0 rounding of its embeddings themselves: transformers run on the q8_0-rounded
# embedding and llama.cpp agree within 0.05, transformers on the exact one moves by ~1.2 (top-1 holds)
# Nemotron's squared ReLU squares q8_0's rounding of the MLP input (its LayerNorm1P scales by 2 at init): seen 0.47
# MoE stand-ins route each token to 2 of 4 random experts: q8_0's rounding alone, run in transformers, flips
# near-tie expert choices and moves their logits (OLMoE: 2 of 206 token-layer choices, 0.52; Granite MoE: 4 of 206,
# 1.09), where transformers on the rounded weights and llama.cpp's q8_0 agree within 0.53 / 0.14 (f16: 0.004 / 0.003).
# Mixtral's flips come from llama.cpp's q8_0 rounding of the activations too: transformers with q8_0-rounded weights
# and linear inputs is 0.50 from exact and 0.08 from llama.cpp (f16: 0.006)
# Gemma 3n (22 layers of 4 AltUp streams, scale-1 attention) stays that sensitive with tempered attention: seen 0.038
# (f16) and 0.71 (q8_0: every matrix rounded; 0.3% noise on its attention weights alone moves transformers' own
# logits by 0.18)
# ERNIE 4.5 MoE and LFM2-MoE (experts chosen by probability + selection bias): transformers on q8_0-rounded weights
# and linear inputs is 0.77 / 1.01 from exact and flips one of LFM2-MoE's 40 clear top-1 positions itself (exact vs
# llama.cpp q8_0: 0.66 / 1.25, one flip; f16: <= 0.02), so one flip is allowed there
MAX_DIFF_FOR = {("qwen3.5", "f16"): 0.03, ("qwen3.5", "q8_0"): 0.5, ("gemma4", "f16"): 0.1, ("gemma4", "q8_0"): 1.5,
                ("olmoe", "q8_0"): 0.6, ("granite-moe", "q8_0"): 1.2, ("mixtral", "q8_0"): 0.6,
                ("nemotron-mini", "q8_0"): 0.6, ("gemma3n", "f16"): 0.06, ("gemma3n", "q8_0"): 1.0,
                # one position of 120 whose top-2 experts nearly tie flips its expert in q8_0 (~1.5); the rest ~0.1
                ("gpt-oss", "q8_0"): 2.0,
                ("ernie4.5-moe", "q8_0"): 0.8, ("lfm2-moe", "q8_0"): 1.4,
                ("deepseek-v2-lite", "q8_0"): 0.6}  # MoE: q8_0 noise moves router scores, as OLMoE's and Mixtral's
MIN_AGREEMENT_FOR = {("lfm2-moe", "q8_0"): 0.97}
NAME = "tiny stand-in"  # not the arch id: llama.cpp applies Phi-3 token rules to any name containing "phi3"


def _llama_cpp_missing() -> str | None:
    try:
        importlib.import_module("llama_cpp")
    except Exception as exc:  # noqa: BLE001 (an ImportError, or a wheel that fails to load its library)
        return f"llama-cpp-python is not importable ({exc.__class__.__name__}: {exc})"
    return None


requires_llama_cpp = [pytest.mark.requires_llama_cpp,
                      pytest.mark.skipif(_llama_cpp_missing() is not None, reason=str(_llama_cpp_missing()))]


def _mark(*marks):
    def apply(function):
        for mark in marks:
            function = mark(function)
        return function
    return apply


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny byte-level BPE (ChatML specials) from ducktune.models.tiny, shared by every stand-in."""
    from transformers import PreTrainedTokenizerFast

    from ducktune.models.families import template_text
    from ducktune.models.tiny import QWEN2_REGEX, TEMPLATES, train_tokenizer

    spec = TEMPLATES["chatml"]
    tok = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer("chatml", 512, QWEN2_REGEX), bos_token=spec["bos"],
                                  eos_token=spec["eos"], pad_token=spec["pad"], additional_special_tokens=["<|im_start|>"])
    tok.chat_template = template_text("chatml")
    return tok


@pytest.fixture(scope="session")
def prompt_ids(tokenizer):
    return [tokenizer(text)["input_ids"] for text in PROMPTS]


@pytest.fixture(scope="session")
def standin(tmp_path_factory, tokenizer):
    """arch id -> (model folder, fp32 HF model), each built once per session on first use."""
    from transformers import AutoModelForCausalLM

    from ducktune.models.loading import register_multimodal_lms

    register_multimodal_lms()  # Ministral 3's Mistral3ForConditionalGeneration, as ducktune loads it
    root = tmp_path_factory.mktemp("standins")
    built = {}

    def build(arch: str):
        if arch not in built:
            config = tiny_config(arch, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
            # Random init at 5x the usual spread: logits spread over a few units instead of ~0.2, so most
            # positions have a top-2 margin far above f16/q8_0 error (no near-ties to excuse).
            config.initializer_range = config.get_text_config().initializer_range = INIT_RANGE
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
            _undo_granite_damping(model, config)
            _vary_layer_scalars(model)
            wake_zero_scales(model)  # Gemma 3n's AltUp output scale, else its per-layer embedding path is off
            _temper_gemma_3n_attention(model)
            folder = root / arch
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            built[arch] = (folder, model)
        return built[arch]
    return build


# per-layer scalar -> the first layer's value in the stand-ins (each next layer's 0.25 more)
LAYER_SCALARS = {"layer_scalar": 0.5, "act_fn.alpha_p": 0.5, "act_fn.alpha_n": 0.25, "act_fn.beta": 0.25}


def _vary_layer_scalars(model) -> None:
    """Gemma 4 initialises its per-layer output scalars to 1, Apertus its xIELU scalars alike in every layer (the
    published ones are not): give each layer its own values so the logits comparison sees whether llama.cpp
    applies each layer's own."""
    tensors = dict(model.named_buffers()) | dict(model.named_parameters())
    with torch.no_grad():
        for suffix, first in LAYER_SCALARS.items():
            for index, name in enumerate(sorted(name for name in tensors if name.endswith(suffix))):
                tensors[name].fill_(first + 0.25 * index)


def _temper_gemma_3n_attention(model) -> None:
    """Gemma 3n attends with scale 1 on RMS-normed q and k: with q_norm at its initial 1 the random stand-in's softmax
    is so peaked that 0.3% noise on its attention weights moves transformers' own logits by ~5% of their spread
    (f16 rounding alone flips top-1 choices). q_norm at 1/sqrt(head_dim), the scale other attention applies, keeps
    the comparison about the export."""
    if model.config.model_type != "gemma3n_text":
        return
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("self_attn.q_norm.weight"):
                param.fill_(param.shape[0] ** -0.5)


def _undo_granite_damping(model, config) -> None:
    """Granite multiplies its (tied) embeddings by 12 and divides its logits by 8: with random weights the
    layers' share of the result and the logit spread are then too small for a left-out step to show.
    Shrink the embeddings by the multiplier and grow the final norm by both, so the layers matter as in
    the other stand-ins while every multiplier is still applied (and must be, for the logits to match).
    Cohere multiplies its logits by logit_scale (1/8, 1/4): its final norm grows by the inverse."""
    with torch.no_grad():
        if getattr(config, "embedding_multiplier", None) and getattr(config, "logits_scaling", None):
            model.get_input_embeddings().weight.div_(config.embedding_multiplier)
            model.model.norm.weight.mul_(config.embedding_multiplier * config.logits_scaling)
        elif getattr(config, "logit_scale", None):
            model.model.norm.weight.div_(config.logit_scale)


@pytest.fixture(scope="session")
def written(standin, tokenizer, tmp_path_factory):
    """(arch, quant) -> (GGUF path, writer summary), written once."""
    root = tmp_path_factory.mktemp("gguf")
    done = {}

    def write(arch: str, quant: str):
        if (arch, quant) not in done:
            folder, _ = standin(arch)
            path = root / f"{arch}-{quant}.gguf"
            done[arch, quant] = (path, write_gguf(folder, path, quant, NAME, tokenizer, EOT, log=lambda *a: None))
        return done[arch, quant]
    return write


def hf_logits(model, prompts) -> list[np.ndarray]:
    with torch.no_grad():
        return [model(torch.tensor([ids])).logits[0].float().numpy() for ids in prompts]


def llama_cpp_logits(path, prompts) -> list[np.ndarray]:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=256, n_threads=1, verbose=False)
    try:
        out = []
        for ids in prompts:
            llm.reset()
            llm.eval(ids)
            out.append(np.array(llm.scores[:len(ids)], dtype=np.float32))
        return out
    finally:
        llm.close()


def agreement(ours: list[np.ndarray], theirs: list[np.ndarray], margin: float) -> tuple[float, int, float]:
    """(top-1 agreement where our top-2 margin > `margin`, how many such positions, max |Δlogit|)."""
    ref, got = np.concatenate(ours), np.concatenate(theirs)
    top2 = np.sort(ref, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > margin
    same = ref.argmax(-1) == got.argmax(-1)
    return float(same[clear].mean()), int(clear.sum()), float(np.abs(ref - got).max())


def gguf_fields(path) -> tuple[dict, dict]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.")}
    tensors = {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}
    return fields, tensors


# ---------------------------------------------------------------------- what each architecture writes

# arch id -> (general.architecture, {key suffix: value}, {tensor: shape}, tensors that must be absent)
EXPECTED = {
    "llama": ("llama", {"rope.dimension_count": 16, "rope.freq_base": 10000.0, "attention.head_count_kv": 4},
              {"output.weight": (None, 64)}, {"rope_freqs.weight"}),
    "llama3": ("llama", {"rope.freq_base": 500000.0, "attention.head_count_kv": 2, "context_length": 131072},
               {"rope_freqs.weight": (8,)}, {"output.weight"}),
    # Llama 3.1 8B's shape (DeepSeek-R1-Distill-Llama-8B): llama3 scaling by 8, untied output
    "llama3.1": ("llama", {"rope.freq_base": 500000.0, "rope.dimension_count": 16, "context_length": 131072},
                 {"rope_freqs.weight": (8,), "output.weight": (None, 64)}, set()),
    # DeepSeek Coder: rope base 1e5, positions scaled linearly by 4 (16k context); DeepSeek LLM: Llama-2's rope
    "deepseek-coder": ("llama", {"rope.freq_base": 100000.0, "rope.scaling.factor": 4.0,
                                 "context_length": 16384, "attention.layer_norm_rms_epsilon": 1e-6},
                       {"output.weight": (None, 64)}, {"rope_freqs.weight"}),
    "deepseek-llm": ("llama", {"rope.freq_base": 10000.0, "context_length": 4096,
                               "attention.layer_norm_rms_epsilon": 1e-6}, {"output.weight": (None, 64)},
                     {"rope_freqs.weight"}),
    # DeepSeek-V2-Lite: MLA with one q_proj (q_lora_rank 0) and kv_b_proj whole; layer 0 dense, layer 1 routed
    # experts stacked beside the shared ones; YaRN with llama.cpp's softmax-scale key (no attn_factor key)
    "deepseek-v2-lite": ("deepseek2", {"attention.q_lora_rank": 0, "attention.kv_lora_rank": 64,
                                       "attention.key_length": 32, "attention.value_length": 16,
                                       "rope.dimension_count": 16, "attention.head_count_kv": 4,
                                       "leading_dense_block_count": 1, "expert_count": 4, "expert_used_count": 2,
                                       "expert_feed_forward_length": 64, "expert_shared_count": 2,
                                       "expert_weights_scale": 1.0, "rope.scaling.factor": 40.0,
                                       "rope.scaling.yarn_log_multiplier": 0.0707,
                                       "rope.scaling.original_context_length": 4096},
                         {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_kv_a_mqa.weight": (80, 64),
                          "blk.0.attn_kv_b.weight": (128, 64), "blk.0.ffn_gate.weight": (192, 64),
                          "blk.1.ffn_gate_exps.weight": (4, 64, 64), "blk.1.ffn_gate_inp.weight": (4, 64),
                          "blk.1.ffn_up_shexp.weight": (128, 64), "output.weight": (None, 64)},
                         {"blk.0.ffn_gate_exps.weight", "blk.1.ffn_gate.weight", "blk.0.attn_k_b.weight",
                          "rope_freqs.weight"}),
    "mistral": ("llama", {"attention.head_count_kv": 2, "context_length": 32768}, {}, {"rope_freqs.weight"}),
    "mistral-nemo": ("llama", {"attention.key_length": 32, "attention.value_length": 32, "rope.dimension_count": 32},
                     {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_output.weight": (64, 128)}, set()),
    # Ministral 3: Mistral3ForConditionalGeneration's text model: YaRN keys (cos/sin left unscaled, as transformers
    # with mscale = mscale_all_dim), Llama 4's query temperature, head_dim 32 on hidden 64, tied output
    "ministral3": ("mistral3", {"attention.key_length": 32, "rope.dimension_count": 32, "attention.head_count_kv": 1,
                                "attention.temperature_scale": 0.1, "rope.scaling.factor": 16.0,
                                "rope.scaling.original_context_length": 256, "context_length": 4096,
                                "rope.scaling.attn_factor": 1 / (1 + 0.1 * math.log(16))},
                   {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_k.weight": (32, 64), "blk.1.ffn_gate.weight": (192, 64)},
                   {"output.weight", "rope_freqs.weight"}),
    # Mistral Small 3.1/3.2: the same class with a plain mistral text model: rope base 1e9 unscaled, no temperature,
    # head_dim 32 on hidden 64, untied output
    "mistral-small3": ("mistral3", {"attention.key_length": 32, "attention.value_length": 32,
                                    "rope.dimension_count": 32, "rope.freq_base": 1e9, "attention.head_count_kv": 1},
                       {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_output.weight": (64, 128),
                        "output.weight": (None, 64)},
                       {"rope_freqs.weight"}),
    "qwen2": ("qwen2", {"rope.freq_base": 1000000.0}, {"blk.0.attn_q.bias": (64,)}, {"output.weight"}),
    "qwen3": ("qwen3", {"attention.key_length": 32}, {"blk.1.attn_q_norm.weight": (32,), "blk.1.attn_k_norm.weight": (32,)},
              {"blk.0.attn_q.bias"}),
    # Qwen2.5 / Qwen3 with their model cards' YaRN (factor 4 over the original context): llama.cpp's yarn keys,
    # cos/sin scaled by its own 0.1 ln(factor) + 1 as transformers' default attention factor (so 1.0 is left)
    "qwen2-yarn": ("qwen2", {"rope.scaling.factor": 4.0,
                             "rope.scaling.original_context_length": 64, "rope.scaling.attn_factor": 1.0},
                   {"blk.0.attn_q.bias": (64,), "output.weight": (None, 64)}, set()),
    "qwen3-yarn": ("qwen3", {"rope.scaling.factor": 4.0,
                             "rope.scaling.original_context_length": 64, "attention.key_length": 32},
                   {"blk.1.attn_q_norm.weight": (32,), "output.weight": (None, 64)}, {"blk.0.attn_q.bias"}),
    # Mixtral: llama with experts; per-expert w1/w3/w2 stacked into gate/up/down, experts intermediate_size wide
    "mixtral": ("llama", {"expert_count": 4, "expert_used_count": 2, "feed_forward_length": 256,
                          "attention.head_count_kv": 1, "rope.freq_base": 1e6},
                {"blk.0.ffn_gate_exps.weight": (4, 256, 64), "blk.1.ffn_up_exps.weight": (4, 256, 64),
                 "blk.1.ffn_down_exps.weight": (4, 64, 256), "blk.0.ffn_gate_inp.weight": (4, 64),
                 "output.weight": (None, 64)},
                {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "rope_freqs.weight"}),
    # Qwen2-MoE: routed experts stacked as Qwen3-MoE's, the shared expert's own tensors and its [1, hidden] gate
    "qwen2-moe": ("qwen2moe", {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 64,
                               "expert_shared_feed_forward_length": 192, "rope.freq_base": 1e6},
                  {"blk.0.ffn_gate_exps.weight": (4, 64, 64), "blk.1.ffn_down_exps.weight": (4, 64, 64),
                   "blk.0.ffn_gate_shexp.weight": (192, 64), "blk.1.ffn_down_shexp.weight": (64, 192),
                   "blk.0.ffn_gate_inp_shexp.weight": (1, 64), "blk.0.attn_q.bias": (64,), "output.weight": (None, 64)},
                  {"blk.0.ffn_gate.weight", "blk.0.attn_output.bias", "rope_freqs.weight"}),
    # Qwen3-MoE: per-expert weights stacked [experts, width, hidden] / [experts, hidden, width]; no dense MLP
    "qwen3-moe": ("qwen3moe", {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 64,
                               "feed_forward_length": 192, "attention.key_length": 32},
                  {"blk.0.ffn_gate_exps.weight": (4, 64, 64), "blk.1.ffn_up_exps.weight": (4, 64, 64),
                   "blk.1.ffn_down_exps.weight": (4, 64, 64), "blk.0.ffn_gate_inp.weight": (4, 64),
                   "output.weight": (None, 64)},
                  {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "rope_freqs.weight"}),
    # OLMoE: Qwen3-MoE's stacking with the experts intermediate_size wide (no expert width key), q/k norms over
    # the whole projection (hidden wide for q, kv heads x head_dim for k), no key_length (head_dim = hidden/heads)
    "olmoe": ("olmoe", {"expert_count": 4, "expert_used_count": 2, "feed_forward_length": 64,
                        "attention.head_count_kv": 4, "rope.freq_base": 10000.0},
              {"blk.0.ffn_gate_exps.weight": (4, 64, 64), "blk.1.ffn_up_exps.weight": (4, 64, 64),
               "blk.1.ffn_down_exps.weight": (4, 64, 64), "blk.0.ffn_gate_inp.weight": (4, 64),
               "blk.0.attn_q_norm.weight": (64,), "blk.0.attn_k_norm.weight": (64,), "output.weight": (None, 64)},
              {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "rope_freqs.weight", "blk.0.attn_q.bias"}),
    # gpt-oss: sinks per head, biased attention, experts split from the interleaved gate_up_proj with their
    # biases, the MLP norm as post_attention_norm, every other layer sliding (window 8), YaRN 32x from 4096
    "gpt-oss": ("gpt-oss", {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 128,
                            "attention.key_length": 32, "attention.sliding_window": 8, "rope.scaling.factor": 32.0,
                            "rope.scaling.original_context_length": 4096, "rope.freq_base": 150000.0},
                {"blk.0.attn_sinks.weight": (4,), "blk.0.attn_q.bias": (128,), "blk.1.attn_output.bias": (64,),
                 "blk.0.ffn_gate_exps.weight": (4, 128, 64), "blk.1.ffn_up_exps.weight": (4, 128, 64),
                 "blk.1.ffn_down_exps.weight": (4, 64, 128), "blk.0.ffn_gate_exps.bias": (4, 128),
                 "blk.0.ffn_up_exps.bias": (4, 128), "blk.0.ffn_down_exps.bias": (4, 64),
                 "blk.0.ffn_gate_inp.weight": (4, 64), "blk.0.ffn_gate_inp.bias": (4,),
                 "blk.1.post_attention_norm.weight": (64,), "output.weight": (None, 64)},
                {"blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight", "rope_freqs.weight"}),
    # ERNIE 4.5 MoE: layer 0 dense, layer 1 routed (4 experts of 64) with 2 shared experts fused (128 wide), the
    # selection bias [1, 4] written [4]; whole-head rope as the dense ERNIE's, tied output
    "ernie4.5-moe": ("ernie4_5-moe", {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 64,
                                      "expert_shared_feed_forward_length": 128, "leading_dense_block_count": 1,
                                      "interleave_moe_layer_step": 1, "feed_forward_length": 320,
                                      "rope.freq_base": 500000.0, "attention.head_count_kv": 2},
                     {"blk.0.ffn_gate.weight": (320, 64), "blk.1.ffn_gate_exps.weight": (4, 64, 64),
                      "blk.1.ffn_gate_shexp.weight": (128, 64), "blk.1.exp_probs_b.bias": (4,),
                      "blk.1.ffn_gate_inp.weight": (4, 64)},
                     {"output.weight", "blk.0.ffn_gate_inp.weight", "blk.1.ffn_gate.weight", "rope_freqs.weight"}),
    # LFM2-MoE: conv / attention / conv layers, layer 0's MLP dense (intermediate_size as given), then experts
    # under a sigmoid router (gating function 2) with the expert bias as exp_probs_b
    "lfm2-moe": ("lfm2moe", {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 64,
                             "leading_dense_block_count": 1, "expert_gating_func": 2, "feed_forward_length": 256,
                             "attention.head_count_kv": [0, 2, 0], "shortconv.l_cache": 3},
                 {"blk.0.ffn_gate.weight": (256, 64), "blk.1.ffn_up_exps.weight": (4, 64, 64),
                  "blk.2.ffn_down_exps.weight": (4, 64, 64), "blk.2.exp_probs_b.bias": (4,),
                  "blk.2.shortconv.conv.weight": (64, 3), "blk.1.attn_q_norm.weight": (16,)},
                 {"output.weight", "blk.0.ffn_gate_inp.weight", "blk.1.ffn_gate.weight"}),
    # Gemma 1: head_dim 32 with 4 heads on hidden 64 (the 7B's 16 x 256 on 3072), MQA as the 2B; the
    # embedding is the output layer; no window or softcapping keys
    "gemma": ("gemma", {"attention.key_length": 32, "attention.value_length": 32, "attention.head_count_kv": 1,
                        "rope.dimension_count": 32, "feed_forward_length": 512},
              {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_output.weight": (64, 128), "blk.0.attn_k.weight": (32, 64)},
              {"output.weight", "rope_freqs.weight", "blk.0.post_attention_norm.weight"}),
    # Qwen3.5: Gated DeltaNet (ssm.*) beside gated attention (q_proj rows x2), layer kinds explicit
    "qwen3.5": ("qwen35", {"attention.key_length": 32, "rope.dimension_count": 8, "rope.dimension_sections": [2, 1, 1, 0],
                           "ssm.conv_kernel": 4, "ssm.state_size": 16, "ssm.group_count": 2, "ssm.time_step_rank": 4,
                           "ssm.inner_size": 64, "attention.recurrent_layers": [True, False]},
                {"blk.0.attn_qkv.weight": (128, 64), "blk.0.attn_gate.weight": (64, 64), "blk.0.ssm_conv1d.weight": (128, 4),
                 "blk.0.ssm_a": (4,), "blk.0.ssm_dt.bias": (4,), "blk.0.ssm_beta.weight": (4, 64),
                 "blk.0.ssm_alpha.weight": (4, 64), "blk.0.ssm_norm.weight": (16,), "blk.0.ssm_out.weight": (64, 64),
                 "blk.1.attn_q.weight": (256, 64), "blk.1.attn_q_norm.weight": (32,), "blk.0.post_attention_norm.weight": (64,)},
                {"output.weight", "blk.1.ssm_a", "blk.0.attn_q.weight"}),
    "gemma2": ("gemma2", {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "attention.sliding_window": 8,
                          "attention.sliding_window_pattern": [True, False], "attention.key_length": 32},
               {"blk.0.post_attention_norm.weight": (64,), "blk.0.post_ffw_norm.weight": (64,)}, {"output.weight"}),
    "gemma3": ("gemma3", {"rope.freq_base": 1000000.0, "rope.freq_base_swa": 10000.0, "attention.sliding_window": 8,
                          "attention.sliding_window_pattern": [True, False], "attention.head_count_kv": 1},
               {"blk.0.attn_k_norm.weight": (32,), "blk.0.attn_q.weight": (128, 64)}, {"output.weight"}),
    # Gemma 3 4B+: the language model of Gemma3ForConditionalGeneration (its text_config, linear rope scaling
    # on the global layers); its vision tower has no gemma3 tensor names, so writing it would fail
    "gemma3-mm": ("gemma3", {"rope.scaling.factor": 8.0, "rope.freq_base_swa": 10000.0, "attention.head_count_kv": 2,
                             "attention.sliding_window_pattern": [True, False], "context_length": 131072},
                  {"blk.1.attn_q_norm.weight": (32,), "blk.1.ffn_up.weight": (256, 64), "token_embd.weight": (None, 64)},
                  {"output.weight"}),
    # Gemma 4 E2B/E4B: the language model of Gemma4ForConditionalGeneration; full layers' head size and
    # proportional rope (4 of 16 pairs turn), layers 2-3 reuse the KV of 0-1 (no k/v of their own) with twice the
    # MLP width, per-layer embeddings, layer output scalars, no output layer
    "gemma4": ("gemma4", {"attention.key_length": 32, "attention.key_length_swa": 16, "rope.dimension_count": 32,
                          "rope.dimension_count_swa": 16, "rope.freq_base": 1e6, "rope.freq_base_swa": 1e4,
                          "feed_forward_length": [256, 256, 512, 512], "attention.head_count_kv": 1,
                          "attention.shared_kv_layers": 2, "embedding_length_per_layer_input": 64,
                          "attention.sliding_window_pattern": [True, False, True, False], "final_logit_softcapping": 30.0},
               {"rope_freqs.weight": (16,), "per_layer_token_embd.weight": (None, 256), "per_layer_model_proj.weight": (256, 64),
                "blk.1.attn_q.weight": (128, 64), "blk.1.attn_k.weight": (32, 64), "blk.0.attn_k.weight": (16, 64),
                "blk.2.ffn_up.weight": (512, 64), "blk.0.inp_gate.weight": (64, 64), "blk.0.layer_output_scale.weight": (1,)},
               {"output.weight", "blk.2.attn_k.weight", "blk.2.attn_v.weight", "blk.3.attn_k_norm.weight"}),
    # Gemma 3n E2B's language model: AltUp projections stacked (3 x 64 x 64), per-layer embeddings 22 x 256 wide,
    # layers 20-21 reuse layer 18's KV (their k/v written as zeros, which llama.cpp loads but never reads)
    "gemma3n": ("gemma3n", {"attention.key_length": 16, "rope.dimension_count": 16, "rope.freq_base": 1e6,
                            "rope.freq_base_swa": 1e4, "feed_forward_length": 2048, "attention.head_count_kv": 2,
                            "attention.shared_kv_layers": 2, "embedding_length_per_layer_input": 256,
                            "attention.sliding_window": 8, "final_logit_softcapping": 30.0,
                            "attention.sliding_window_pattern": [(i + 1) % 5 != 0 for i in range(22)]},
                {"altup_proj.weight": (3, 64, 64), "altup_unembd_proj.weight": (3, 64, 64),
                 "per_layer_token_embd.weight": (None, 22 * 256), "per_layer_model_proj.weight": (22 * 256, 64),
                 "blk.21.attn_k.weight": (32, 64), "blk.21.attn_v.weight": (32, 64), "blk.21.attn_k_norm.weight": (16,),
                 "blk.0.altup_correct_scale.weight": (64,), "blk.0.altup_predict_coef.weight": (16, 4),
                 "blk.0.laurel_l.weight": (64, 64), "blk.0.inp_gate.weight": (256, 64)},
                {"output.weight", "rope_freqs.weight"}),
    "phi3": ("phi3", {"rope.scaling.original_context_length": 4096, "attention.sliding_window": 2047},
             {"blk.0.attn_qkv.weight": (192, 64), "blk.0.ffn_up.weight": (384, 64)},
             {"blk.0.attn_q.weight", "rope_factors_long.weight"}),
    "phi3-longrope": ("phi3", {"context_length": 131072, "rope.scaling.original_context_length": 4096,
                               "rope.scaling.attn_factor": math.sqrt(1 + math.log(32) / math.log(4096))},
                      {"rope_factors_long.weight": (8,), "rope_factors_short.weight": (8,)}, set()),
    # Phi-4-mini: 12 of 16 head dims rotated (one longrope factor per rotated pair), 2 KV heads in the fused
    # qkv (64 + 2 x 2 x 16 rows), output tied to the embedding
    "phi4-mini": ("phi3", {"rope.dimension_count": 12, "attention.head_count_kv": 2, "context_length": 131072,
                           "rope.scaling.original_context_length": 4096,
                           "rope.scaling.attn_factor": math.sqrt(1 + math.log(32) / math.log(4096))},
                  {"blk.0.attn_qkv.weight": (128, 64), "blk.0.ffn_up.weight": (384, 64), "token_embd.weight": (None, 64),
                   "rope_factors_long.weight": (6,), "rope_factors_short.weight": (6,)},
                  {"output.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"}),
    "glm": ("chatglm", {"rope.dimension_count": 8, "attention.layer_norm_rms_epsilon": 1.5625e-07},
            {"blk.0.ffn_up.weight": (384, 64), "blk.0.attn_k.bias": (32,)}, {"blk.0.ffn_gate.weight"}),
    # GLM-4-0414: GLM's layout plus a norm after attention and one after the MLP
    "glm4-0414": ("glm4", {"rope.dimension_count": 8, "attention.layer_norm_rms_epsilon": 1e-5},
                  {"blk.0.ffn_up.weight": (384, 64), "blk.0.attn_q.bias": (64,), "blk.0.post_attention_norm.weight": (64,),
                   "blk.0.post_ffw_norm.weight": (64,)}, {"blk.0.ffn_gate.weight", "rope_freqs.weight"}),
    # InternLM3: written as Llama (its dynamic NTK rope changes nothing within the context)
    "internlm3": ("llama", {"rope.freq_base": 50000000.0, "rope.dimension_count": 16, "attention.head_count_kv": 2,
                            "context_length": 32768}, {"output.weight": (None, 64)},
                  {"rope_freqs.weight", "blk.0.attn_q.bias", "blk.0.attn_output.bias"}),
    # SmolLM3: llama's layout under its own name (llama.cpp's NoPE every 4th layer), embeddings tied
    "smollm3": ("smollm3", {"rope.freq_base": 5000000.0, "block_count": 4, "attention.head_count_kv": 1,
                            "attention.layer_norm_rms_epsilon": 1e-6, "context_length": 65536},
                {"blk.3.attn_q.weight": (64, 64), "blk.3.attn_k.weight": (16, 64)}, {"output.weight", "rope_freqs.weight"}),
    # Granite 3.x: llama's layout (tied embeddings) plus its four muP scalars
    "granite": ("granite", {"embedding_scale": 12.0, "residual_scale": 0.22, "attention.scale": 1 / 16,
                            "logit_scale": 8.0, "rope.freq_base": 1e7, "rope.dimension_count": 16},
                {"blk.0.attn_k.weight": (32, 64), "blk.0.ffn_gate.weight": (256, 64)}, {"output.weight", "rope_freqs.weight"}),
    # Granite 4.0 dense (GraniteMoeHybrid, all attention): Granite 3's graph and scalars, shared_mlp split in two
    "granite4": ("granite", {"embedding_scale": 12.0, "residual_scale": 0.22, "attention.scale": 1 / 16,
                             "logit_scale": 10.0, "rope.freq_base": 1e7, "feed_forward_length": 256},
                 {"blk.0.ffn_gate.weight": (256, 64), "blk.0.ffn_up.weight": (256, 64), "blk.1.ffn_down.weight": (64, 256)},
                 {"output.weight", "rope_freqs.weight"}),
    # Granite 4.0-H (GraniteMoeHybrid, Mamba-2 around NoPE attention): head_count_kv 0 marks the Mamba-2 layers,
    # the ssm keys, A as -exp(A_log) and D as [heads, 1], the conv kernel squeezed, the gated norm per group
    "granite4h": ("granitehybrid", {"attention.head_count_kv": [0, 2, 0], "ssm.conv_kernel": 4, "ssm.inner_size": 128,
                                    "ssm.state_size": 16, "ssm.time_step_rank": 8, "ssm.group_count": 1,
                                    "rope.scaling.finetuned": False, "embedding_scale": 12.0, "logit_scale": 8.0,
                                    "residual_scale": 0.22, "attention.scale": 1 / 16, "feed_forward_length": 256},
                  {"blk.0.ssm_in.weight": (296, 64), "blk.0.ssm_conv1d.weight": (160, 4), "blk.0.ssm_a": (8, 1),
                   "blk.0.ssm_d": (8, 1), "blk.0.ssm_dt.bias": (8,), "blk.0.ssm_norm.weight": (1, 128),
                   "blk.0.ssm_out.weight": (64, 128), "blk.1.attn_q.weight": (64, 64), "blk.2.ffn_gate.weight": (256, 64)},
                  {"output.weight", "rope_freqs.weight", "blk.0.attn_q.weight", "blk.1.ssm_in.weight"}),
    # Granite 3.1 MoE: the dense granite's scalars and rotary; the fused input_linear split into stacked gate and up,
    # the experts intermediate_size wide; tied output
    "granite-moe": ("granitemoe", {"embedding_scale": 12.0, "residual_scale": 0.22, "attention.scale": 1 / 16,
                                   "logit_scale": 6.0, "rope.freq_base": 1e7, "expert_count": 4, "expert_used_count": 2,
                                   "feed_forward_length": 64, "attention.head_count_kv": 2},
                    {"blk.0.ffn_gate_exps.weight": (4, 64, 64), "blk.1.ffn_up_exps.weight": (4, 64, 64),
                     "blk.1.ffn_down_exps.weight": (4, 64, 64), "blk.0.ffn_gate_inp.weight": (4, 64)},
                    {"output.weight", "rope_freqs.weight", "blk.0.ffn_gate.weight"}),
    # Falcon-H1: Mamba-2 beside attention in every layer (ssm keys, one KV head count), head_dim apart from
    # hidden/heads, the ffn norm named without .weight (as llama.cpp loads it), no gated norm, untied output
    "falcon-h1": ("falcon-h1", {"attention.head_count_kv": 2, "attention.key_length": 8, "ssm.conv_kernel": 4,
                                "ssm.inner_size": 96, "ssm.state_size": 16, "ssm.time_step_rank": 6,
                                "ssm.group_count": 1, "rope.freq_base": 1e11, "context_length": 16384,
                                "feed_forward_length": 128},
                  {"blk.1.ssm_in.weight": (230, 64), "blk.1.ssm_conv1d.weight": (128, 4), "blk.1.ssm_a": (6, 1),
                   "blk.1.ssm_d": (6, 1), "blk.1.ssm_dt.bias": (6,), "blk.1.ssm_out.weight": (64, 96),
                   "blk.1.attn_q.weight": (32, 64), "blk.1.ffn_norm": (64,), "output.weight": (None, 64)},
                  {"blk.0.ssm_norm.weight", "blk.0.ffn_norm.weight", "rope_freqs.weight"}),
    # Nemotron-H: one kind per layer (M-MM*-), told apart by head_count_kv / feed_forward_length zeros; the ssm keys
    # with the inner size heads x head dim, the gated norm over 2 groups, attention without rope (no rope keys) and a
    # head_dim apart from hidden/heads, both LayerNorm epsilons (llama.cpp requires the plain one), untied output
    "nemotron-h": ("nemotron_h", {"attention.head_count_kv": [0, 0, 0, 0, 1, 0], "attention.head_count": 4,
                                  "feed_forward_length": [0, 256, 0, 0, 0, 256], "attention.key_length": 32,
                                  "attention.value_length": 32, "ssm.conv_kernel": 4, "ssm.inner_size": 128,
                                  "ssm.state_size": 16, "ssm.time_step_rank": 8, "ssm.group_count": 2,
                                  "attention.layer_norm_epsilon": 1e-5, "attention.layer_norm_rms_epsilon": 1e-5,
                                  "block_count": 6, "context_length": 131072},
                   {"blk.0.ssm_in.weight": (328, 64), "blk.0.ssm_conv1d.weight": (192, 4), "blk.0.ssm_a": (8, 1),
                    "blk.0.ssm_d": (8, 1), "blk.0.ssm_dt.bias": (8,), "blk.0.ssm_norm.weight": (2, 64),
                    "blk.0.ssm_out.weight": (64, 128), "blk.0.attn_norm.weight": (64,), "blk.1.ffn_up.weight": (256, 64),
                    "blk.1.ffn_down.weight": (64, 256), "blk.4.attn_q.weight": (128, 64),
                    "blk.4.attn_k.weight": (32, 64), "blk.4.attn_output.weight": (64, 128), "output.weight": (None, 64)},
                   {"rope_freqs.weight", "blk.1.ffn_gate.weight", "blk.1.ssm_in.weight", "blk.0.attn_q.weight"}),
    # OLMo 2: norms after attention and MLP (none before), q/k norms over the whole projection, no tied output
    "olmo2": ("olmo2", {"rope.freq_base": 500000.0, "attention.layer_norm_rms_epsilon": 1e-6, "context_length": 4096},
              {"blk.0.attn_q_norm.weight": (64,), "blk.0.attn_k_norm.weight": (64,), "blk.0.post_attention_norm.weight": (64,),
               "blk.0.post_ffw_norm.weight": (64,), "output.weight": (None, 64)},
              {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "rope_freqs.weight"}),
    # OLMo 3: OLMo 2's graph with sliding-window layers named one by one, YaRN on the full-attention ones
    "olmo3": ("olmo2", {"attention.sliding_window": 8, "attention.sliding_window_pattern": [True, False],
                        "rope.freq_base_swa": 500000.0, "context_length": 65536,
                        "rope.scaling.factor": 8.0, "rope.scaling.original_context_length": 8192,
                        "rope.scaling.attn_factor": 1.0},
              {"blk.1.post_ffw_norm.weight": (64,), "output.weight": (None, 64)}, {"blk.0.attn_norm.weight"}),
    # LFM2: a short-conv layer (head_count_kv 0) then an attention layer; MLP width 2/3 of 384 rounded up to 256
    # Falcon3: Llama with rope_theta 1000042 and 4-times-wide MLP, no rope table (no rope_scaling)
    "falcon3": ("llama", {"rope.freq_base": 1000042.0, "attention.layer_norm_rms_epsilon": 1e-6,
                          "attention.head_count_kv": 2, "context_length": 8192, "feed_forward_length": 256},
                {"blk.0.ffn_gate.weight": (256, 64), "blk.0.attn_k.weight": (32, 64), "output.weight": (None, 64)},
                {"rope_freqs.weight", "blk.0.attn_q.bias"}),
    "lfm2": ("lfm2", {"feed_forward_length": 256, "attention.head_count_kv": [0, 2], "shortconv.l_cache": 3,
                      "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 1e6, "context_length": 128000},
             {"blk.0.shortconv.conv.weight": (64, 3), "blk.0.shortconv.in_proj.weight": (192, 64),
              "blk.0.shortconv.out_proj.weight": (64, 64), "blk.1.attn_q_norm.weight": (16,),
              "blk.1.attn_output.weight": (64, 64), "blk.0.ffn_gate.weight": (256, 64), "token_embd_norm.weight": (64,)},
             {"output.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.1.shortconv.conv.weight"}),
    # Hunyuan dense: head_dim 32 on hidden 64 / 4 heads, q/k norms per head, tied output, NTK-alpha base written as
    # the base itself (10000 * 1000^(32/30)), no alpha key (llama.cpp would scale the base again)
    "hunyuan": ("hunyuan-dense", {"rope.freq_base": 10000.0 * 1000.0 ** (32 / 30), "attention.key_length": 32,
                                  "rope.dimension_count": 32, "attention.head_count_kv": 2, "context_length": 32768},
                {"blk.0.attn_q_norm.weight": (32,), "blk.0.attn_k_norm.weight": (32,), "blk.0.attn_q.weight": (128, 64),
                 "blk.0.attn_output.weight": (64, 128)}, {"output.weight", "rope_freqs.weight"}),
    # EXAONE 3.5 2.4B: saved by transformers as LlamaForCausalLM under EXAONE's weight names, written as exaone:
    # rotate-half rope as stored, the llama3 table, tied output
    "exaone": ("exaone", {"rope.freq_base": 1000000.0, "rope.dimension_count": 16, "attention.head_count_kv": 2,
                          "context_length": 32768, "block_count": 2, "attention.layer_norm_rms_epsilon": 1e-5},
               {"blk.0.attn_q.weight": (64, 64), "blk.0.ffn_gate.weight": (192, 64), "blk.0.ffn_down.weight": (64, 192),
                "rope_freqs.weight": (8,)}, {"output.weight", "blk.0.attn_q.bias"}),
    # EXAONE 4.0 1.2B: norms after attention and the MLP only, per-head q/k norms, rotate-half rope on every layer
    # (sliding_window null) with the llama3 table, tied output; no window keys
    "exaone4": ("exaone4", {"rope.freq_base": 1000000.0, "rope.dimension_count": 16,
                            "attention.head_count_kv": 2, "context_length": 65536, "feed_forward_length": 128},
                {"blk.0.post_attention_norm.weight": (64,), "blk.0.post_ffw_norm.weight": (64,),
                 "blk.0.attn_q_norm.weight": (16,), "blk.0.attn_k_norm.weight": (16,), "rope_freqs.weight": (8,)},
                {"output.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"}),
    # Aya Expanse: LayerNorm without bias (no bias tensors), logit scale, interleaved rope as stored, tied output
    "cohere": ("command-r", {"logit_scale": 0.125, "attention.layer_norm_epsilon": 1e-5, "rope.dimension_count": 16,
                             "rope.freq_base": 10000.0, "attention.head_count_kv": 2, "feed_forward_length": 256},
               {"blk.0.attn_norm.weight": (64,), "blk.0.ffn_gate.weight": (256, 64), "output_norm.weight": (64,)},
               {"output.weight", "blk.0.attn_norm.bias", "blk.0.ffn_norm.weight", "blk.0.attn_q_norm.weight",
                "rope_freqs.weight"}),
    # Command R7B: the same block; which layers slide (and rotate), the window and the logit scale written
    "cohere2": ("cohere2", {"logit_scale": 0.25, "attention.layer_norm_epsilon": 1e-5, "rope.freq_base": 50000.0,
                            "attention.sliding_window": 8, "attention.sliding_window_pattern": [True, False]},
                {"blk.1.attn_q.weight": (64, 64), "blk.0.attn_k.weight": (32, 64)},
                {"output.weight", "blk.0.ffn_norm.weight", "rope_freqs.weight"}),
    "bloom": ("bloom", {"attention.layer_norm_epsilon": 1e-5, "attention.max_alibi_bias": 8.0, "feed_forward_length": 256},
              {"token_embd_norm.bias": (64,), "blk.0.attn_qkv.bias": (192,)}, {"output.weight", "rope_freqs.weight"}),
    # Apertus: no gate, per-head q/k norms, llama3 table, untied output; xIELU's scalars as per-layer keys, not tensors
    "apertus": ("apertus", {"rope.freq_base": 12000000.0, "rope.dimension_count": 16, "attention.head_count_kv": 1,
                            "feed_forward_length": 384},
                {"blk.0.ffn_up.weight": (384, 64), "blk.0.ffn_down.weight": (64, 384), "blk.0.attn_q_norm.weight": (16,),
                 "blk.0.attn_norm.weight": (64,), "blk.0.ffn_norm.weight": (64,), "rope_freqs.weight": (8,),
                 "output.weight": (None, 64)},
                {"blk.0.ffn_gate.weight", "blk.0.attn_post_norm.weight"}),
    # Arcee AFM: no gate, YaRN keys (no rope table), untied output
    "afm": ("arcee", {"rope.dimension_count": 16, "rope.scaling.factor": 20.0,
                      "rope.scaling.original_context_length": 4096, "attention.head_count_kv": 1},
            {"blk.0.ffn_up.weight": (512, 64), "blk.0.ffn_down.weight": (64, 512), "blk.0.attn_q.weight": (64, 64),
             "output.weight": (None, 64)}, {"blk.0.ffn_gate.weight", "rope_freqs.weight", "blk.0.attn_q_norm.weight"}),
    # MiniCPM3: MLA (q_a 64 -> q_b 4 x 32, kv_a 64 latent + 16 shared rope dims, kv_b 4 x (16 key + 16 value)), the
    # ranks and key / value head sizes as keys, rope on 16 of each 32-dim key head, LongRoPE tables, tied output
    "minicpm3": ("minicpm3", {"attention.q_lora_rank": 64, "attention.kv_lora_rank": 64, "attention.key_length": 32,
                              "attention.value_length": 16, "rope.dimension_count": 16, "attention.head_count_kv": 4,
                              "rope.scaling.original_context_length": 32768, "rope.scaling.attn_factor": 1.0,
                              "context_length": 32768},
                 {"blk.0.attn_q_a.weight": (64, 64), "blk.0.attn_q_a_norm.weight": (64,), "blk.0.attn_q_b.weight": (128, 64),
                  "blk.0.attn_kv_a_mqa.weight": (80, 64), "blk.0.attn_kv_a_norm.weight": (64,),
                  "blk.0.attn_kv_b.weight": (128, 64), "blk.0.attn_output.weight": (64, 64),
                  "rope_factors_long.weight": (8,), "rope_factors_short.weight": (8,)},
                 {"output.weight", "blk.0.attn_q.weight", "rope_freqs.weight"}),
    # ERNIE 4.5: llama's layout with head_dim twice hidden/heads (key/value lengths written), tied embeddings
    "ernie4.5": ("ernie4_5", {"attention.key_length": 32, "attention.value_length": 32, "rope.dimension_count": 32,
                              "rope.freq_base": 500000.0, "attention.head_count_kv": 2, "context_length": 131072},
                 {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_k.weight": (64, 64), "blk.0.attn_output.weight": (64, 128)},
                 {"output.weight", "rope_freqs.weight", "blk.0.attn_q.bias"}),
    # StableLM 2: LayerNorms with biases, q/k/v biases (no output or MLP bias), SwiGLU, 4 of 16 dims rotated in halves
    "stablelm2": ("stablelm", {"rope.dimension_count": 4, "attention.layer_norm_epsilon": 1e-5, "feed_forward_length": 192,
                               "context_length": 4096},
                  {"blk.0.attn_norm.bias": (64,), "blk.0.ffn_norm.bias": (64,), "output_norm.bias": (64,),
                   "blk.0.attn_q.bias": (64,), "blk.0.attn_v.bias": (64,), "blk.0.ffn_gate.weight": (192, 64),
                   "output.weight": (None, 64)},
                  {"blk.0.attn_output.bias", "blk.0.ffn_up.bias", "blk.0.attn_q_norm.weight", "rope_freqs.weight"}),
    # Nemotron-Mini: LayerNorm1P (written +1) with biases, squared-ReLU MLP without gate, 8 of 16 dims rotated, GQA
    "nemotron-mini": ("nemotron", {"rope.dimension_count": 8, "attention.layer_norm_epsilon": 1e-5,
                                   "feed_forward_length": 192, "attention.head_count_kv": 2},
                      {"blk.0.attn_norm.bias": (64,), "blk.0.ffn_norm.weight": (64,), "blk.0.ffn_up.weight": (192, 64),
                       "blk.0.ffn_down.weight": (64, 192), "blk.0.attn_k.weight": (32, 64), "output.weight": (None, 64)},
                      {"blk.0.ffn_gate.weight", "blk.0.attn_q.bias", "rope_freqs.weight"}),
    # Phi-2: LayerNorms with biases, biased q/k/v/dense/fc1/fc2 and output head, 6 of 16 dims rotated
    "phi2": ("phi2", {"rope.dimension_count": 6, "attention.layer_norm_epsilon": 1e-5, "feed_forward_length": 256},
             {"output.bias": (None,), "output_norm.bias": (64,), "blk.0.attn_norm.bias": (64,), "blk.0.attn_q.bias": (64,),
              "blk.0.attn_output.bias": (64,), "blk.0.ffn_up.bias": (256,), "blk.0.ffn_down.bias": (64,)},
             {"blk.0.ffn_gate.weight", "blk.0.ffn_norm.weight", "blk.0.attn_qkv.weight", "rope_freqs.weight"}),
    # GPT-2: learned positions (n_positions rows), fused qkv and Conv1D weights written [out, in], MLP 4x hidden
    # (n_inner null), LayerNorms with biases, output tied to the embedding, no rope at all
    "gpt2": ("gpt2", {"context_length": 1024, "attention.layer_norm_epsilon": 1e-5, "feed_forward_length": 256,
                      "attention.head_count": 4},
             {"position_embd.weight": (1024, 64), "blk.0.attn_qkv.weight": (192, 64), "blk.0.attn_qkv.bias": (192,),
              "blk.0.attn_output.weight": (64, 64), "blk.0.ffn_up.weight": (256, 64), "blk.0.ffn_down.weight": (64, 256),
              "blk.0.ffn_norm.bias": (64,), "output_norm.bias": (64,)},
             {"output.weight", "rope_freqs.weight", "blk.0.attn_q.weight"}),
    # Pythia: fused qkv (re-ordered to q, k, v blocks), 4 of 16 dims rotated, parallel residual, untied embed_out
    "pythia": ("gptneox", {"rope.dimension_count": 4, "use_parallel_residual": True, "attention.layer_norm_epsilon": 1e-5,
                           "feed_forward_length": 256, "rope.freq_base": 10000.0},
               {"blk.0.attn_qkv.weight": (192, 64), "blk.0.attn_qkv.bias": (192,), "blk.0.attn_output.bias": (64,),
                "blk.0.ffn_norm.bias": (64,), "blk.0.ffn_up.bias": (256,), "output.weight": (None, 64)},
               {"blk.0.ffn_gate.weight", "rope_freqs.weight", "position_embd.weight"}),
}


def test_every_arch_id_has_a_standin_and_expectations():
    assert set(EXPECTED) == set(ARCH_IDS) == set(MIRRORS)


@pytest.mark.parametrize("arch", ARCH_IDS)
def test_standin_is_supported_and_written_with_its_keys(arch, written):
    path, summary = written(arch, "f16")
    assert read_back(path, summary)["problems"] == []
    fields, tensors = gguf_fields(path)
    name, keys, shapes, absent = EXPECTED[arch]
    assert fields["general.architecture"] == name
    for key, value in keys.items():
        found = fields.get(f"{name}.{key}")
        assert found == pytest.approx(value, rel=1e-6), f"{name}.{key} = {found}, expected {value}"
    for tensor, shape in shapes.items():
        assert tensor in tensors, f"{tensor} not written"
        assert all(want is None or want == got for want, got in zip(shape, tensors[tensor])), (tensor, tensors[tensor])
    assert not absent & set(tensors)


def test_apertus_xielu_scalars_are_llama_cpps_per_layer_keys(written, standin):
    """xIELU's learned scalars are weights in the checkpoint and per-layer arrays of unprefixed keys (xielu.*) in
    llama.cpp, written as stored (llama.cpp applies the softplus itself); no tensor is written for them."""
    path, _ = written("apertus", "f16")
    fields, tensors = gguf_fields(path)
    _, model = standin("apertus")
    for scalar in ("alpha_p", "alpha_n", "beta", "eps"):
        stored = [float(getattr(layer.mlp.act_fn, scalar).detach().reshape(-1)[0]) for layer in model.model.layers]
        assert fields[f"xielu.{scalar}"] == pytest.approx(stored, rel=1e-6), scalar
    assert fields["xielu.alpha_p"] == pytest.approx([0.5, 0.75])  # each layer its own (the stand-in's)
    assert not [name for name in tensors if "act_fn" in name or "xielu" in name]


@pytest.mark.parametrize("arch", ARCH_IDS)
def test_standin_config_is_exportable(arch, standin):
    _, model = standin(arch)
    assert architecture_support(model.config.to_dict()) is None


# ---------------------------------------------------------------------- llama.cpp runs them


@_mark(*requires_llama_cpp)
@pytest.mark.parametrize("arch", ARCH_IDS)
@pytest.mark.parametrize("quant, margin, max_diff", [("f16", F16_MARGIN, F16_MAX_DIFF), ("q8_0", 0.25, 0.25)])
def test_llama_cpp_logits_match_hf(arch, quant, margin, max_diff, standin, written, prompt_ids):
    _, model = standin(arch)
    path, _ = written(arch, quant)
    agree, positions, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), margin)
    assert positions >= 20, f"only {positions} positions with a clear top-2 margin"
    assert agree >= MIN_AGREEMENT_FOR.get((arch, quant), 1.0), (
        f"{arch} {quant}: top-1 agreement {agree:.3f} over {positions} positions (max |Δ| {diff:.4f})")
    max_diff = MAX_DIFF_FOR.get((arch, quant), max_diff)
    assert diff < max_diff, f"{arch} {quant}: max |Δlogit| {diff:.4f}"


def _without_hparam(key):
    """_add_gemma_hparams that skips writing one key."""
    original = gguf_arch._add_gemma_hparams
    return lambda put, config, arch: original(lambda k, v: None if k == key else put(k, v), config, arch)


def _tensor_transform_except(skipped_arch):
    original = gguf_arch._tensor_transform
    return lambda hf_name, shape, config, arch: None if arch == skipped_arch else original(hf_name, shape, config, arch)


def _qwen35_transform_except(suffix):
    """gguf_qwen35.qwen35_tensor that leaves tensors ending in `suffix` as HF stores them."""
    original = gguf_arch.gguf_qwen35.qwen35_tensor

    def tensor(hf_name, shape, config):
        lookup, shape, transform = original(hf_name, shape, config)
        return lookup, shape, None if hf_name.endswith(suffix) else transform
    return tensor


def _gate_up_swapped(original):
    """_granite4_mlp_plans writing input_linear's first half (SiLU's input) as ffn_up and the second as ffn_gate."""
    swap = {"gate": "up", "up": "gate"}

    def plans(hf_name, shape, quant, *experts):
        written = original(hf_name, shape, quant, *experts)
        for plan in written:
            plan.gguf_name = re.sub(r"\.ffn_(gate|up)", lambda match: f".ffn_{swap[match[1]]}", plan.gguf_name)
        return written
    return plans


def _halves(which: int):
    """gguf_gptoss._interleaved as for Qwen3-MoE's fused gate_up (gate the first half of the columns, up the rest)."""
    def take(array):
        width = array.shape[-1] // 2
        part = array[..., which * width:(which + 1) * width]
        return part.transpose(0, 2, 1) if part.ndim == 3 else part
    return take


_YARN = gguf_arch._add_yarn_hparams


def _deepseek2_hparams_with(method, value):
    """gguf_deepseek2.add_deepseek2_hparams writing `value` for `method` (None: not writing it)."""
    original = gguf_arch.gguf_deepseek2.add_deepseek2_hparams

    def put_changed(put):
        return lambda m, v, *key: None if m == method and value is None else put(m, value if m == method else v, *key)
    return lambda put, config, rope: original(put_changed(put), config, rope)


def _cohere_hparams_without(key):
    """_add_cohere_hparams that skips writing one key."""
    original = gguf_arch._add_cohere_hparams
    return lambda put, config, arch: original(lambda k, v: None if k == key else put(k, v), config, arch)


def _mamba_tensor_except(suffix):
    """gguf_mamba2.mamba_tensor that writes tensors ending in `suffix` as HF stores them (shape kept)."""
    original = gguf_arch.gguf_mamba2.mamba_tensor

    def tensor(lookup, shape, config):
        name, written, transform = original(lookup, shape, config)
        if not lookup.endswith(suffix):
            return name, written, transform
        return name, written, lambda array: array.reshape(written)
    return tensor


def _granitehybrid_rotating(original):
    """gguf_mamba2.add_granitehybrid_hparams telling llama.cpp to rotate Granite 4.0-H's NoPE attention."""
    return lambda put, config: original(
        lambda method, value: put(method, True if method == "add_rope_scaling_finetuned" else value), config)


def _zeroed(selection_bias):
    """gguf_moe.selection_bias writing zeros: experts chosen by the router's probabilities alone."""
    def plan(lookup, shape):
        found = selection_bias(lookup, shape)
        return found and (*found[:2], lambda array: np.zeros(found[1], dtype=array.dtype))
    return plan


def _fused_halves_swapped(original):
    """gguf_moe._fused_tensors writing each expert's first half of input_linear (SiLU's input) as ffn_up_exps."""
    swap = {"ffn_gate_exps.weight": "ffn_up_exps.weight", "ffn_up_exps.weight": "ffn_gate_exps.weight"}

    def tensors(layer, kind, hf_name, shape):
        written = original(layer, kind, hf_name, shape)
        return [(f"blk.{layer}.{swap.get(name.split('.', 2)[2], name.split('.', 2)[2])}", *rest) for name, *rest in written]
    return tensors


def _altup_stacked_in_reverse(original):
    """gguf_gemma3n.extra_tensors stacking the AltUp projections last to first."""
    def extra(names, shapes, config):
        tensors, consumed = original(names, shapes, config)
        return [(name, shape, sources[::-1] if name.startswith("altup") else sources, transform)
                for name, shape, sources, transform in tensors], consumed
    return extra


def _rope_params_without(key):
    """gguf_arch.rope_params that drops one key (as if the config had none)."""
    original = gguf_arch.rope_params
    return lambda config, layer_kind="full_attention": {k: v for k, v in original(config, layer_kind).items() if k != key}


def _first_layer_xielu(names, read, n_layers, where):
    """gguf_apertus.xielu_values giving every layer the first layer's xIELU scalars."""
    values = xielu_values(names, read, n_layers, where)
    return {method: [per_layer[0]] * n_layers for method, per_layer in values.items()}


BREAKAGES = {  # the architecture-specific step left out -> (arch, attribute of gguf_arch or its modules, replacement)
    "q/k rows not re-ordered": ("llama", "ROTARY_PERMUTED", lambda: set()),
    "no llama3 rope_freqs": ("llama3", "_computed_tensors", lambda: lambda config, arch: []),
    "gemma norms without +1, no softcapping": ("gemma2", "GEMMA", lambda: set()),
    "gemma 1 norms without +1": ("gemma", "GEMMA", lambda: {"gemma2", "gemma3"}),
    "gemma3 local/global layers not written": ("gemma3", "_add_gemma_hparams", lambda: _without_hparam("add_sliding_window_pattern")),
    "no longrope factor tables": ("phi3-longrope", "_computed_tensors", lambda: lambda config, arch: []),
    "no longrope attention factor": ("phi3-longrope", "longrope_attention_factor", lambda: lambda config: 1.0),
    "phi4-mini longrope factor tables left out": ("phi4-mini", "_computed_tensors", lambda: lambda config, arch: []),
    "phi4-mini longrope attention factor left out": ("phi4-mini", "longrope_attention_factor", lambda: lambda config: 1.0),
    "glm rotary over the whole head": ("glm", "rotary_dims", lambda: gguf_arch.head_dim),
    "bloom qkv left interleaved per head": ("bloom", "_tensor_transform", lambda: _tensor_transform_except("bloom")),
    "smollm3 q/k rows not re-ordered": ("smollm3", "ROTARY_PERMUTED", lambda: {"llama", "internlm2"}),
    "phi2 rotary over the whole head": ("phi2", "rotary_dims", lambda: gguf_arch.head_dim),
    "phi2 q/k rows re-ordered as for llama": ("phi2", "ROTARY_PERMUTED", lambda: {"phi2"}),
    "granite attention_multiplier not written": (
        "granite", "GRANITE_SCALES", lambda: {k: v for k, v in gguf_arch.GRANITE_SCALES.items() if k != "attention_multiplier"}),
    "granite q/k rows not re-ordered": ("granite", "ROTARY_PERMUTED", lambda: {"llama", "internlm2"}),
    "granite4 shared_mlp gate and up halves swapped": ("granite4", "_granite4_mlp_plans", lambda: _gate_up_swapped(gguf_arch._granite4_mlp_plans)),
    "granite4h A_log written as is (not -exp)": ("granite4h", "gguf_mamba2.mamba_tensor", lambda: _mamba_tensor_except(".A_log")),
    "granite4h NoPE attention rotated": ("granite4h", "gguf_mamba2.add_granitehybrid_hparams", lambda: _granitehybrid_rotating(
        gguf_arch.gguf_mamba2.add_granitehybrid_hparams)),
    "olmo2 q/k rows re-ordered as for llama": ("olmo2", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "olmo2"}),
    "olmo3 sliding-window layers not written": ("olmo3", "_add_sliding_window_hparams", lambda: lambda put, config: None),
    "olmo3 yarn not written": ("olmo3", "_add_yarn_hparams", lambda: lambda put, config: None),
    "qwen2 yarn not written": ("qwen2-yarn", "_add_yarn_hparams", lambda: lambda put, config: None),
    "qwen3 yarn not written": ("qwen3-yarn", "_add_yarn_hparams", lambda: lambda put, config: None),
    "olmo3 yarn attention factor left out": ("olmo3", "yarn_attention_factor", lambda: lambda config: 1.0),
    "hunyuan ntk alpha base not written": ("hunyuan", "ntk_alpha_base", lambda: lambda config: None),
    "hunyuan q/k rows re-ordered as for llama": ("hunyuan", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "hunyuan-dense"}),
    "exaone q/k rows re-ordered as for llama": ("exaone", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "exaone"}),
    "exaone no llama3 rope_freqs": ("exaone", "_computed_tensors", lambda: lambda config, arch: []),
    "exaone4 q/k rows re-ordered as for llama": ("exaone4", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "exaone4"}),
    "cohere q/k rows re-ordered as for llama": ("cohere", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "command-r"}),
    "cohere logit scale not written": ("cohere", "_add_cohere_hparams", lambda: _cohere_hparams_without("add_logit_scale")),
    # (an all-global pattern aborts llama.cpp's cohere2, whose cache needs sliding layers)
    "cohere2 global layer written as sliding (rotated)": (
        "cohere2", "cohere2_layer_kinds", lambda: lambda config: ["sliding_attention"] * gguf_arch.n_layers(config)),
    "stablelm2 rotary over the whole head": ("stablelm2", "rotary_dims", lambda: gguf_arch.head_dim),
    "stablelm2 q/k rows re-ordered as for llama": ("stablelm2", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "stablelm"}),
    "nemotron norms without +1": ("nemotron-mini", "LAYER_NORM_1P", lambda: set()),
    "nemotron rotary over the whole head": ("nemotron-mini", "rotary_dims", lambda: gguf_arch.head_dim),
    "ministral3 q/k rows not re-ordered": ("ministral3", "ROTARY_PERMUTED", lambda: {"llama", "internlm2"}),
    "qwen3.5 value heads left grouped by key head": ("qwen3.5", "gguf_qwen35._value_head_reorder", lambda: lambda *a: None),
    "qwen3.5 A_log written as is": ("qwen3.5", "gguf_qwen35.qwen35_tensor", lambda: _qwen35_transform_except(".A_log")),
    "qwen3.5 norms without +1": ("qwen3.5", "gguf_qwen35.qwen35_tensor", lambda: _qwen35_transform_except("layernorm.weight")),
    "qwen3-moe expert gate and up swapped": ("qwen3-moe", "gguf_moe.GGUF_KIND", lambda: {
        "gate_proj": "ffn_up_exps", "up_proj": "ffn_gate_exps", "down_proj": "ffn_down_exps"}),
    "gpt-oss gate_up_proj split in halves, not interleaved": ("gpt-oss", "gguf_gptoss._interleaved", lambda: _halves),
    "gpt-oss yarn not written": ("gpt-oss", "_add_yarn_hparams", lambda: lambda put, config: None),
    "apertus xielu scalars of layer 0 in every layer": ("apertus", "gguf_apertus.xielu_values", lambda: _first_layer_xielu),
    "apertus q/k rows re-ordered as for llama": ("apertus", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "apertus"}),
    "apertus no llama3 rope_freqs": ("apertus", "_computed_tensors", lambda: lambda config, arch: []),
    "afm q/k rows not re-ordered": ("afm", "ROTARY_PERMUTED", lambda: {"llama", "internlm2"}),
    "afm yarn not written": ("afm", "_add_yarn_hparams", lambda: lambda put, config: None),
    "olmoe q/k rows re-ordered as for llama": ("olmoe", "ROTARY_PERMUTED", lambda: gguf_arch.ROTARY_PERMUTED | {"olmoe"}),
    "olmoe expert gate and up swapped": ("olmoe", "gguf_moe.GGUF_KIND", lambda: {
        "gate_proj": "ffn_up_exps", "up_proj": "ffn_gate_exps", "down_proj": "ffn_down_exps"}),
    "granite-moe input_linear halves swapped": ("granite-moe", "gguf_moe._fused_tensors",
                                                lambda: _fused_halves_swapped(gguf_arch.gguf_moe._fused_tensors)),
    "granite-moe q/k rows not re-ordered": ("granite-moe", "ROTARY_PERMUTED", lambda: gguf_arch.ROTARY_PERMUTED - {"granitemoe"}),
    "granite-moe attention_multiplier not written": (
        "granite-moe", "GRANITE_SCALES", lambda: {k: v for k, v in gguf_arch.GRANITE_SCALES.items() if k != "attention_multiplier"}),
    "qwen2-moe expert gate and up swapped": ("qwen2-moe", "gguf_moe.GGUF_KIND", lambda: {
        "gate_proj": "ffn_up_exps", "up_proj": "ffn_gate_exps", "down_proj": "ffn_down_exps"}),
    "mixtral w1 and w3 swapped": ("mixtral", "gguf_moe.PUBLISHED_NAMES", lambda: {
        **gguf_arch.gguf_moe.PUBLISHED_NAMES, "w1": "up_proj", "w3": "gate_proj"}),
    "mixtral q/k rows not re-ordered": ("mixtral", "ROTARY_PERMUTED", lambda: gguf_arch.ROTARY_PERMUTED - {"llama"}),
    "ernie4.5-moe selection bias written as zeros": ("ernie4.5-moe", "gguf_moe.selection_bias",
                                                     lambda: _zeroed(gguf_arch.gguf_moe.selection_bias)),
    "lfm2-moe expert bias written as zeros": ("lfm2-moe", "gguf_moe.selection_bias",
                                              lambda: _zeroed(gguf_arch.gguf_moe.selection_bias)),
    "lfm2-moe router written as a softmax": ("lfm2-moe", "gguf_moe.ARCHES", lambda: {
        **gguf_arch.gguf_moe.ARCHES,
        "lfm2moe": dataclasses.replace(gguf_arch.gguf_moe.ARCHES["lfm2moe"], gating="SOFTMAX")}),
    "gemma3n AltUp projections stacked in reverse": ("gemma3n", "gguf_gemma3n.extra_tensors",
                                                     lambda: _altup_stacked_in_reverse(gguf_arch.gguf_gemma3n.extra_tensors)),
    "deepseek-v2-lite yarn softmax scale left out": (
        "deepseek-v2-lite", "gguf_deepseek2.add_deepseek2_hparams",
        lambda: _deepseek2_hparams_with("add_rope_scaling_yarn_log_mul", None)),
    "deepseek-v2-lite top-k expert weights renormalized": (
        "deepseek-v2-lite", "gguf_deepseek2.add_deepseek2_hparams",
        lambda: _deepseek2_hparams_with("add_expert_weights_norm", True)),
    "deepseek-v2-lite q rows re-ordered as for llama": ("deepseek-v2-lite", "ROTARY_PERMUTED",
                                                        lambda: gguf_arch.ROTARY_PERMUTED | {"deepseek2"}),
    "deepseek-v2-lite yarn cos/sin factor written as for qwen": (
        "deepseek-v2-lite", "_add_yarn_hparams", lambda: lambda put, config, attn_factor=True: _YARN(put, config)),
    "minicpm3 longrope factor tables left out": ("minicpm3", "_computed_tensors", lambda: lambda config, arch: []),
    # attn.c_proj is square: left [in, out] it still loads, and runs transposed
    "gpt2 attention c_proj written untransposed": ("gpt2", "GPT2_CONV1D", lambda: tuple(
        suffix for suffix in gguf_arch.GPT2_CONV1D if suffix != ".attn.c_proj.weight")),
    "pythia qkv left interleaved per head": ("pythia", "_tensor_transform", lambda: _tensor_transform_except("gptneox")),
    "pythia rotary over the whole head": ("pythia", "rotary_dims", lambda: gguf_arch.head_dim),
    "nemotron-h A_log written as is (not -exp)": ("nemotron-h", "gguf_mamba2.mamba_tensor",
                                                  lambda: _mamba_tensor_except(".A_log")),
    "falcon-h1 multipliers not folded": ("falcon-h1", "gguf_falconh1.weight_scale", lambda: lambda hf_name, config: None),
    "falcon-h1 in_proj muP vector left out": ("falcon-h1", "gguf_falconh1.mup_vector", lambda: lambda config: 1.0),
    "falcon-h1 q/k rows re-ordered as for llama": ("falcon-h1", "ROTARY_PERMUTED", lambda: {"llama", "internlm2", "falcon-h1"}),
    "gemma4 proportional rope turning every pair": ("gemma4", "gguf_gemma4.rope_freqs",
                                                    lambda: lambda config: [1.0] * (gguf_arch.gguf_gemma4.head_dims(config)[0] // 2)),
}


@_mark(*requires_llama_cpp)
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_comparison_catches_a_missing_step(breakage, standin, tokenizer, prompt_ids, tmp_path, monkeypatch):
    """The f16 logits check fails when any one architecture-specific step is left out."""
    arch, attribute, replacement = BREAKAGES[breakage]
    folder, model = standin(arch)
    *modules, name = attribute.split(".")
    monkeypatch.setattr(getattr(gguf_arch, modules[0]) if modules else gguf_arch, name, replacement())
    path = tmp_path / "broken.gguf"
    write_gguf(folder, path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    agree, _, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN)
    assert agree < 1.0 or diff >= MAX_DIFF_FOR.get((arch, "f16"), F16_MAX_DIFF), f"{breakage}: still agree {agree}, max |Δ| {diff:.4f}"


@_mark(*requires_llama_cpp)
def test_ministral_3_query_temperature_is_what_llama_cpp_needs(tokenizer, prompt_ids, tmp_path, monkeypatch):
    """Llama 4's query temperature steps every original_max_position_embeddings positions (16384 published,
    256 in the stand-in): at 4 the test prompts cross several steps, and llama.cpp matches transformers
    with the temperature key written, and not without it."""
    from transformers import Mistral3ForConditionalGeneration

    config = tiny_config("ministral3", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    config.text_config.rope_parameters["original_max_position_embeddings"] = 4
    config.text_config.max_position_embeddings = 64  # factor 16, as published
    config.text_config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    model = Mistral3ForConditionalGeneration(config).float().eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    results = []
    for broken in (False, True):
        if broken:
            monkeypatch.setattr(gguf_arch, "rope_params", _rope_params_without("llama_4_scaling_beta"))
        path = tmp_path / f"{broken}.gguf"
        write_gguf(tmp_path / "model", path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
        results.append(agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN))
    (agree, positions, diff), (broken_agree, _, broken_diff) = results
    assert positions >= 20 and agree == 1.0 and diff < F16_MAX_DIFF, results
    assert broken_agree < 1.0 or broken_diff >= F16_MAX_DIFF, results


@_mark(*requires_llama_cpp)
def test_gemma_4_dense_31b_shape_runs_in_llama_cpp(tokenizer, prompt_ids, tmp_path):
    """Gemma 4 31B's shape: full layers take V from the K projection (attention_k_eq_v) with KV heads of their own
    (num_global_key_value_heads), no per-layer embeddings or shared KV: llama.cpp uses K as V when no attn_v is
    written and reads the KV heads per layer."""
    from transformers import Gemma4ForConditionalGeneration, Gemma4TextConfig

    config = tiny_config("gemma4", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    text = {k: v for k, v in config.text_config.to_dict().items() if k not in ("per_layer_config", "transformers_version")}
    config.text_config = Gemma4TextConfig(**{**text, "attention_k_eq_v": True, "num_global_key_value_heads": 2,
                                             "global_head_dim": 32, "hidden_size_per_layer_input": 0,
                                             "num_kv_shared_layers": 0, "use_double_wide_mlp": False,
                                             "initializer_range": INIT_RANGE})
    torch.manual_seed(0)
    model = Gemma4ForConditionalGeneration(config).float().eval()
    assert model.model.language_model.layers[1].self_attn.v_proj is None
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    path = tmp_path / "k_eq_v.gguf"
    summary = write_gguf(tmp_path / "model", path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    fields, tensors = gguf_fields(path)
    assert fields["gemma4.attention.head_count_kv"] == [1, 2, 1, 2] and "blk.1.attn_v.weight" not in tensors
    agree, positions, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN)
    assert positions >= 20 and agree == 1.0 and diff < MAX_DIFF_FOR[("gemma4", "f16")], (agree, positions, diff, summary)


@_mark(*requires_llama_cpp)
def test_granite_4_h_moe_runs_in_llama_cpp_as_in_transformers(tokenizer, prompt_ids, tmp_path):
    """Granite 4.0-H tiny / small's shape (top-k routed experts beside the shared_mlp as a shared expert, Mamba-2
    around NoPE attention) is written with granitehybrid's expert tensors, and llama.cpp's logits match."""
    from transformers import AutoModelForCausalLM

    config = tiny_config("granite4h", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    config.num_local_experts, config.num_experts_per_tok, config.intermediate_size = 4, 2, 32
    config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    _undo_granite_damping(model, config)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    path = tmp_path / "moe.gguf"
    summary = write_gguf(tmp_path / "model", path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    fields, tensors = gguf_fields(path)
    assert [fields[f"granitehybrid.{key}"] for key in (
        "expert_count", "expert_used_count", "feed_forward_length", "expert_shared_feed_forward_length")] == [4, 2, 32, 256]
    assert {name: tensors[name] for name in ("blk.1.ffn_gate_inp.weight", "blk.1.ffn_gate_exps.weight",
                                             "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight",
                                             "blk.1.ffn_gate_shexp.weight", "blk.1.ffn_down_shexp.weight")} == {
        "blk.1.ffn_gate_inp.weight": (4, 64), "blk.1.ffn_gate_exps.weight": (4, 32, 64),
        "blk.1.ffn_up_exps.weight": (4, 32, 64), "blk.1.ffn_down_exps.weight": (4, 64, 32),
        "blk.1.ffn_gate_shexp.weight": (256, 64), "blk.1.ffn_down_shexp.weight": (64, 256)}
    assert "blk.1.ffn_gate.weight" not in tensors
    agree, positions, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN)
    assert positions >= 20 and agree == 1.0 and diff < F16_MAX_DIFF, (agree, positions, diff, summary)


@_mark(*requires_llama_cpp)
def test_falcon_h1_multipliers_fold_into_the_weights_llama_cpp_runs(tokenizer, prompt_ids, tmp_path):
    """Every Falcon-H1 muP multiplier away from 1 (the stand-in keeps the published attention_in 1.0 and a trainable
    lm_head 1.0), with the gated norm per group on (as llama.cpp applies it: after the gate) and two groups: llama.cpp's
    logits match transformers'."""
    from transformers import AutoModelForCausalLM

    config = tiny_config("falcon-h1", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    config.attention_in_multiplier, config.lm_head_multiplier, config.mamba_n_groups = 0.75, 4.0, 2
    config.mamba_rms_norm, config.mamba_norm_before_gate, config.initializer_range = True, False, INIT_RANGE
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # the gated norm's weights away from 1, so reshaping it per group matters
        for layer in model.model.layers:
            layer.mamba.norm.weight.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    path = tmp_path / "falcon-h1.gguf"
    summary = write_gguf(tmp_path / "model", path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    fields, tensors = gguf_fields(path)
    assert fields["falcon-h1.ssm.group_count"] == 2 and tensors["blk.0.ssm_norm.weight"] == (2, 48)
    agree, positions, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN)
    assert positions >= 20 and agree == 1.0 and diff < F16_MAX_DIFF, (agree, positions, diff, summary)


# ---------------------------------------------------------------------- rope tables against transformers


def test_llama3_rope_freqs_equal_transformers_scaling(standin):
    """rope_freqs divides llama.cpp's default frequencies; it must turn them into transformers' llama3 ones."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    _, model = standin("llama3")
    config = model.config
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    dims = config.head_dim
    theta = config.to_dict()["rope_parameters"]["rope_theta"]
    default = 1.0 / theta ** (np.arange(0, dims, 2) / dims)
    factors = np.asarray(llama3_rope_factors(config.to_dict()))
    assert factors.min() == 1.0 and factors.max() == 32.0  # the table covers kept, ramped and divided frequencies
    np.testing.assert_allclose(default / factors, scaled.numpy(), rtol=1e-5)


def test_longrope_attention_factor_equals_transformers(standin, written):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    _, model = standin("phi3-longrope")
    _, attention_factor = ROPE_INIT_FUNCTIONS["longrope"](model.config, "cpu")
    fields, _ = gguf_fields(written("phi3-longrope", "f16")[0])
    assert fields["phi3.rope.scaling.attn_factor"] == pytest.approx(attention_factor, rel=1e-6)


# ---------------------------------------------------------------------- fused / split tensors, unit level


def test_bloom_qkv_rows_become_q_then_k_then_v():
    heads, dim, hidden = 2, 3, 4
    rows = np.arange(heads * 3 * dim)[:, None] * np.ones((1, hidden))  # row r holds r
    blocks = gguf_arch.bloom_qkv_to_blocks(rows, heads)[:, 0]
    # per head h: rows [h*9 .. h*9+2] are q, +3..+5 k, +6..+8 v
    assert blocks.tolist() == [0, 1, 2, 9, 10, 11, 3, 4, 5, 12, 13, 14, 6, 7, 8, 15, 16, 17]


def test_rotary_interleave_pairs_each_heads_halves():
    rows = np.arange(8)[:, None].astype(float)  # one head of 8 rows: halves [0..3] [4..7]
    assert gguf_arch.rotary_interleave(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert gguf_arch.rotary_interleave(np.arange(8.0), 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]  # biases too


# ---------------------------------------------------------------------- InternLM2 on fake weights


def internlm2_state_dict(llama_model) -> dict:
    """A Llama's weights under InternLM2's real names and layout (q/k/v grouped into one wqkv)."""
    config = llama_model.config
    heads, kv, dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    per_group = heads // kv
    weights = {k: v.detach().clone() for k, v in llama_model.state_dict().items()}
    out = {"model.tok_embeddings.weight": weights["model.embed_tokens.weight"],
           "model.norm.weight": weights["model.norm.weight"], "output.weight": weights["lm_head.weight"]}
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        q = weights[layer + "self_attn.q_proj.weight"].reshape(kv, per_group, dim, -1)
        k = weights[layer + "self_attn.k_proj.weight"].reshape(kv, 1, dim, -1)
        v = weights[layer + "self_attn.v_proj.weight"].reshape(kv, 1, dim, -1)
        out[layer + "attention.wqkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, q.shape[-1])
        for ours, theirs in (("attention.wo", "self_attn.o_proj"), ("attention_norm", "input_layernorm"),
                             ("ffn_norm", "post_attention_layernorm"), ("feed_forward.w1", "mlp.gate_proj"),
                             ("feed_forward.w2", "mlp.down_proj"), ("feed_forward.w3", "mlp.up_proj")):
            out[f"{layer}{ours}.weight"] = weights[f"{layer}{theirs}.weight"]
    return out


@pytest.fixture(scope="session")
def internlm2_pair(tmp_path_factory, tokenizer):
    """(fake InternLM2 folder, the Llama model whose weights it holds)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = internlm2_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    llama_config = LlamaConfig(**{k: config[k] for k in (
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "max_position_embeddings", "rms_norm_eps", "rope_theta", "vocab_size", "tie_word_embeddings")})
    torch.manual_seed(1)
    llama = AutoModelForCausalLM.from_config(llama_config, dtype=torch.float32).eval()
    folder = tmp_path_factory.mktemp("internlm2")
    save_file({k: v.contiguous() for k, v in internlm2_state_dict(llama).items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    return folder, llama


def test_internlm2_tensor_names_and_split(internlm2_pair, tokenizer, tmp_path):
    folder, llama = internlm2_pair
    config = json.loads((folder / "config.json").read_text())
    assert architecture_support(config) is None
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(internlm2_weight_names())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    assert shapes["model.layers.0.attention.wqkv.weight"] == ((4 + 2 * 2) * 16, 64)
    names = {p.gguf_name: p.shape for p in plan_from_shapes(shapes, config, "f16")}
    assert names["blk.0.attn_q.weight"] == (64, 64) and names["blk.0.attn_k.weight"] == (32, 64)
    assert names["blk.0.attn_v.weight"] == (32, 64) and "blk.0.attn_qkv.weight" not in names
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.ffn_gate.weight",
            "blk.1.ffn_up.weight", "blk.1.ffn_down.weight", "blk.1.attn_output.weight"} <= set(names)
    # the split pieces are the Llama's own projections, q/k re-ordered for llama.cpp's rotary
    path = tmp_path / "internlm2.gguf"
    write_gguf(folder, path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    import gguf

    written_tensors = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(path)).tensors}
    state = llama.state_dict()
    for part, hf, heads in (("attn_q", "q_proj", 4), ("attn_k", "k_proj", 2), ("attn_v", "v_proj", None)):
        want = state[f"model.layers.1.self_attn.{hf}.weight"].numpy()
        want = gguf_arch.rotary_interleave(want, heads) if heads else want
        np.testing.assert_allclose(written_tensors[f"blk.1.{part}.weight"], want, atol=1e-3)


@_mark(*requires_llama_cpp)
def test_internlm2_gguf_runs_like_the_llama_it_was_made_from(internlm2_pair, tokenizer, prompt_ids, tmp_path):
    folder, llama = internlm2_pair
    path = tmp_path / "internlm2.gguf"
    write_gguf(folder, path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    agree, positions, diff = agreement(hf_logits(llama, prompt_ids), llama_cpp_logits(path, prompt_ids), 0.01)
    assert positions >= 20 and agree == 1.0 and diff < 5e-3, (agree, positions, diff)


# ---------------------------------------------------------------------- refusals


def test_unknown_architecture_is_one_line_with_what_to_do(tmp_path):
    config = {"architectures": ["FalconForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}
    reason = architecture_support(config)
    assert "FalconForCausalLM" in reason and "LlamaForCausalLM" in reason and "\n" not in reason
    with pytest.raises(ModelError) as caught:
        plan_from_shapes({"transformer.word_embeddings.weight": (10, 64)}, config, "f16")
    message = str(caught.value)
    assert "\n" not in message and "FalconForCausalLM" in message and "convert_hf_to_gguf" in message


@pytest.mark.parametrize("change, fragment", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}, "yarn"),
    ({"architectures": ["Qwen2ForCausalLM"], "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "llama3"),
])
def test_unsupported_rope_scaling_is_named(change, fragment, standin):
    _, model = standin("llama")
    config = {**model.config.to_dict(), "rope_parameters": None, **change}
    reason = architecture_support(config)
    assert reason and fragment in reason
    # Beside a default rope_parameters (a hand-edited config), transformers takes rope_scaling: so does
    # the check (it said exportable, and the export refused the merged config after merging).
    both = {**model.config.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}, **change}
    reason = architecture_support(both)
    assert reason and fragment in reason


def test_gemma_query_scale_llama_cpp_cannot_express_is_refused(standin):
    _, model = standin("gemma2")
    config = {**model.config.to_dict(), "query_pre_attn_scalar": 99}
    assert "query_pre_attn_scalar" in architecture_support(config)


# ---------------------------------------------------------------------- published configs, as published


class RecordingWriter:
    """Stands in for gguf.GGUFWriter: records every add_* call."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, method):
        def record(*args):  # (value) or, for a key the writer has no method for, (key, value)
            self.calls[args[0].split(".", 1)[1] if len(args) == 2 else method.removeprefix("add_")] = args[-1]
        return record


def written_hparams(config: dict, arch: str) -> dict:
    """The keys add_hparams writes for `config`, once it is known to map to llama.cpp's `arch`."""
    assert gguf_arch.gguf_arch(config) == arch
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, config, arch)
    return writer.calls


LLAMA_3_2_1B = {  # meta-llama/Llama-3.2-1B-Instruct config.json (rope_scaling as published, transformers 4 form)
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "num_hidden_layers": 16, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
R1_DISTILL_LLAMA_8B = {  # deepseek-ai/DeepSeek-R1-Distill-Llama-8B config.json (Llama-3.1-8B's)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "vocab_size": 128256,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
DEEPSEEK_CODER_1_3B = {  # deepseek-ai/deepseek-coder-1.3b-instruct config.json (as transformers 4.48 prints it: its
    # rope_scaling {"factor": 4.0, "type": "linear"} gains "rope_type"; 6.7b: hidden 4096, 32 layers and heads)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 32013, "eos_token_id": 32021, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 5504, "max_position_embeddings": 16384, "mlp_bias": False, "num_attention_heads": 16,
    "num_hidden_layers": 24, "num_key_value_heads": 16, "pad_token_id": 32014, "pretraining_tp": 1,
    "rms_norm_eps": 1e-06, "rope_scaling": {"factor": 4.0, "rope_type": "linear", "type": "linear"},
    "rope_theta": 100000, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 32256}


def test_published_deepseek_coder_config_keeps_its_linear_rope_scaling():
    import gguf

    calls = written_hparams(DEEPSEEK_CODER_1_3B, "llama")
    assert (calls["block_count"], calls["embedding_length"], calls["head_count"], calls["context_length"]) == \
        (24, 2048, 16, 16384)
    assert calls["rope_freq_base"] == 100000.0 and calls["layer_norm_rms_eps"] == 1e-6
    assert calls["rope_scaling_type"] == gguf.RopeScalingType.LINEAR and calls["rope_scaling_factor"] == 4.0
    # the published transformers-4 form ({"type": "linear"} alone) reads the same
    legacy = {**DEEPSEEK_CODER_1_3B, "rope_scaling": {"factor": 4.0, "type": "linear"}}
    assert written_hparams(legacy, "llama")["rope_scaling_factor"] == 4.0
    assert architecture_support(DEEPSEEK_CODER_1_3B) is None


DEEPSEEK_V2_LITE_CHAT = {  # deepseek-ai/DeepSeek-V2-Lite-Chat config.json's keys (its auto_map and dtype left out)
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "attention_bias": False,
    "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001,
    "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 10944, "kv_lora_rank": 512, "max_position_embeddings": 163840, "moe_intermediate_size": 1408,
    "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2, "norm_topk_prob": False,
    "num_attention_heads": 16, "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
    "pretraining_tp": 1, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": True,
    "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy", "use_cache": True, "v_head_dim": 128,
    "vocab_size": 102400}


def test_published_deepseek_v2_lite_config_is_written_as_deepseek2():
    import gguf

    calls = written_hparams(DEEPSEEK_V2_LITE_CHAT, "deepseek2")
    assert (calls["block_count"], calls["head_count"], calls["head_count_kv"], calls["feed_forward_length"]) == \
        (27, 16, 16, 10944)
    assert (calls["q_lora_rank"], calls["kv_lora_rank"], calls["key_length"], calls["value_length"]) == \
        (0, 512, 192, 128)
    assert (calls["rope_dimension_count"], calls["leading_dense_block_count"]) == (64, 1)
    assert (calls["expert_count"], calls["expert_used_count"], calls["expert_feed_forward_length"],
            calls["expert_shared_count"]) == (64, 6, 1408, 2)
    assert calls["expert_weights_norm"] is False and calls["expert_gating_func"] == gguf.ExpertGatingFuncType.SOFTMAX
    assert calls["rope_scaling_type"] == gguf.RopeScalingType.YARN and calls["rope_scaling_factor"] == 40.0
    assert calls["rope_scaling_yarn_log_mul"] == pytest.approx(0.0707) and "rope_scaling_attn_factors" not in calls
    from ducktune.models.loading import training_support

    assert architecture_support(DEEPSEEK_V2_LITE_CHAT) is None and training_support(DEEPSEEK_V2_LITE_CHAT) is None


@pytest.mark.parametrize("change, fragment", [
    ({"topk_method": "group_limited_greedy", "n_group": 8, "topk_group": 3}, "topk_method 'group_limited_greedy'"),
    ({"q_lora_rank": 1536}, "q_lora_rank 1536 with 27 layers"),
    ({"rope_scaling": {**DEEPSEEK_V2_LITE_CHAT["rope_scaling"], "mscale": 1.0}}, "mscale != mscale_all_dim"),
    ({"n_shared_experts": 0}, "n_shared_experts must be set"),
    ({"norm_topk_prob": True}, "norm_topk_prob true"),
])
def test_deepseek_v2_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**DEEPSEEK_V2_LITE_CHAT, **change})
    assert reason and fragment in reason and "DeepseekV2ForCausalLM" in reason and "\n" not in reason


GEMMA_3_1B = {  # google/gemma-3-1b-it config.json
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 1152, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 256, "num_hidden_layers": 26, "intermediate_size": 6912,
    "max_position_embeddings": 32768, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
    "rope_theta": 1000000, "rope_scaling": None, "sliding_window": 512, "sliding_window_pattern": 6,
    "final_logit_softcapping": None, "attn_logit_softcapping": None, "vocab_size": 262144}
PHI_3_5_MINI = {  # microsoft/Phi-3.5-mini-instruct config.json (factor lists shortened to their length, 48)
    "architectures": ["Phi3ForCausalLM"], "hidden_size": 3072, "num_attention_heads": 32, "num_key_value_heads": 32,
    "num_hidden_layers": 32, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 262144,
    "rope_scaling": {"type": "longrope", "long_factor": [1.0] * 48, "short_factor": [1.0] * 48}, "vocab_size": 32064}
GEMMA_7B_IT = {  # google/gemma-7b-it config.json (gemma-1.1-7b-it adds "hidden_activation": "gelu_pytorch_tanh")
    "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 2,
    "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_size": 3072, "initializer_range": 0.02,
    "intermediate_size": 24576, "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 16,
    "num_hidden_layers": 28, "num_key_value_heads": 16, "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 10000.0, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 256000}
GLM_4_9B = {  # THUDM/glm-4-9b-chat-hf config.json
    "architectures": ["GlmForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 2,
    "head_dim": 128, "num_hidden_layers": 40, "intermediate_size": 13696, "max_position_embeddings": 131072,
    "partial_rotary_factor": 0.5, "rms_norm_eps": 1.5625e-07, "rope_theta": 10000.0, "attention_bias": True,
    "vocab_size": 151552}
GRANITE_3_3_2B = {  # ibm-granite/granite-3.3-2b-instruct config.json
    "architectures": ["GraniteForCausalLM"], "model_type": "granite", "hidden_size": 2048, "num_attention_heads": 32,
    "num_key_value_heads": 8, "num_hidden_layers": 40, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "rope_theta": 10000000.0, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
    "attention_dropout": 0.1, "embedding_multiplier": 12.0, "residual_multiplier": 0.22,
    "attention_multiplier": 0.015625, "logits_scaling": 8.0, "tie_word_embeddings": True, "vocab_size": 49159,
    "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}

GRANITE_4_MICRO = {  # ibm-granite/granite-4.0-micro config.json (dtype / version and the unused mamba_* keys left out)
    "architectures": ["GraniteMoeHybridForCausalLM"], "model_type": "granitemoehybrid", "attention_bias": False,
    "attention_dropout": 0.0, "attention_multiplier": 0.015625, "bos_token_id": 100257, "embedding_multiplier": 12,
    "eos_token_id": 100257, "hidden_act": "silu", "hidden_size": 2560, "initializer_range": 0.1,
    "intermediate_size": 8192, "layer_types": ["attention"] * 40, "logits_scaling": 10,
    "max_position_embeddings": 131072, "num_attention_heads": 40, "num_experts_per_tok": 0, "num_hidden_layers": 40,
    "num_key_value_heads": 8, "num_local_experts": 0, "output_router_logits": False, "pad_token_id": 100256,
    "position_embedding_type": "rope", "residual_multiplier": 0.22, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "rope_theta": 10000000, "router_aux_loss_coef": 0.01, "shared_intermediate_size": 8192,
    "tie_word_embeddings": True, "use_cache": True, "vocab_size": 100352}
# ibm-granite/granite-4.0-h-micro: 4 attention layers (5, 15, 25, 35) among 36 Mamba-2 layers, no rope
GRANITE_4_H_MICRO = {**GRANITE_4_MICRO, "hidden_size": 2048, "num_attention_heads": 32, "mamba_n_heads": 64,
                     "mamba_d_head": 64, "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4,
                     "mamba_expand": 2, "mamba_chunk_size": 256, "mamba_conv_bias": True, "mamba_proj_bias": False,
                     "position_embedding_type": "nope", "logits_scaling": 8, "rope_theta": 10000,
                     "layer_types": [("attention" if i % 10 == 5 else "mamba") for i in range(40)]}

INTERNLM3_8B = {  # internlm/internlm3-8b-instruct config.json (auto_map and dtype left out)
    "architectures": ["InternLM3ForCausalLM"], "model_type": "internlm3", "bias": False, "qkv_bias": False,
    "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 10240,
    "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 48, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 6.0, "rope_type": "dynamic"}, "rope_theta": 50000000,
    "tie_word_embeddings": False, "vocab_size": 128512, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def test_published_internlm3_config_is_written_as_llama():
    writer = RecordingWriter()
    assert architecture_support(INTERNLM3_8B) is None and gguf_arch.gguf_arch(INTERNLM3_8B) == "llama"
    gguf_arch.add_hparams(writer, INTERNLM3_8B, "llama")
    calls = writer.calls
    assert calls["rope_freq_base"] == 50000000.0 and calls["rope_dimension_count"] == 128
    assert calls["head_count_kv"] == 2 and calls["vocab_size"] == 128512 and "key_length" not in calls
    assert "dynamic rope" in " ".join(gguf_arch.gguf_caveats(INTERNLM3_8B))


def test_biased_internlm3_keeps_every_bias_and_rotates_q_k_biases():
    """qkv_bias / bias true: llama.cpp's llama graph adds q/k/v, output and MLP biases when present."""
    config = {**INTERNLM3_8B, "qkv_bias": True, "bias": True, "num_hidden_layers": 1}
    shapes = {f"model.layers.0.{name}.bias": (rows,) for name, rows in (
        ("self_attn.q_proj", 4096), ("self_attn.k_proj", 256), ("self_attn.v_proj", 256), ("self_attn.o_proj", 4096),
        ("mlp.gate_proj", 10240), ("mlp.up_proj", 10240), ("mlp.down_proj", 4096))}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, config, "f16")}
    assert set(plans) == {f"blk.0.{name}.bias" for name in
                          ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
    rows = np.arange(256, dtype=np.float32)
    assert np.array_equal(plans["blk.0.attn_k.bias"].transform(rows), gguf_arch.rotary_interleave(rows, 2))
    assert plans["blk.0.attn_v.bias"].transform is None and plans["blk.0.attn_output.bias"].transform is None


def test_internlm3_rope_scaling_llama_cpp_lacks_is_refused():
    config = {**INTERNLM3_8B, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    reason = architecture_support(config)
    assert reason and "InternLM3ForCausalLM" in reason and "'yarn'" in reason
SMOLLM3_3B = {  # HuggingFaceTB/SmolLM3-3B config.json
    "architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": None, "eos_token_id": 128012, "pad_token_id": 128004, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 65536, "max_window_layers": 28,
    "mlp_bias": False, "no_rope_layer_interval": 4, "no_rope_layers": [1, 1, 1, 0] * 9, "num_attention_heads": 16,
    "num_hidden_layers": 36, "num_key_value_heads": 4, "pretraining_tp": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 5000000.0, "sliding_window": None, "use_sliding_window": False,
    "tie_word_embeddings": True, "vocab_size": 128256}


# tencent/Hunyuan-7B-Instruct config.json: its architecture keys (the published file also carries keys of
# Tencent's own modelling code that neither transformers nor llama.cpp read, left out here)
HUNYUAN_7B = {
    "architectures": ["HunYuanDenseV1ForCausalLM"], "model_type": "hunyuan_v1_dense", "num_hidden_layers": 32,
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128167, "max_position_embeddings": 262144, "rms_norm_eps": 1e-5, "use_qk_norm": True,
    "use_cla": False, "rope_theta": 10000, "rope_scaling": {"type": "dynamic", "alpha": 1000, "factor": 1},
    "bos_token_id": 127958, "eos_token_id": 127960, "pad_token_id": 127961}


PHI_2 = {  # microsoft/phi-2 config.json
    "architectures": ["PhiForCausalLM"], "model_type": "phi", "attention_dropout": 0.0, "bos_token_id": 50256,
    "embd_pdrop": 0.0, "eos_token_id": 50256, "hidden_act": "gelu_new", "hidden_size": 2560, "initializer_range": 0.02,
    "intermediate_size": 10240, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "partial_rotary_factor": 0.4, "qk_layernorm": False,
    "resid_pdrop": 0.1, "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False, "vocab_size": 51200}
PHI_1_5 = {**PHI_2, "bos_token_id": None, "eos_token_id": None, "hidden_size": 2048, "intermediate_size": 8192,  # microsoft/phi-1_5
           "num_hidden_layers": 24, "partial_rotary_factor": 0.5, "resid_pdrop": 0.0}


@pytest.mark.parametrize("config", [PHI_2, PHI_1_5], ids=["phi-2", "phi-1_5"])
def test_published_phi_2_and_1_5_configs_rotate_32_dims_with_layer_norm(config):
    calls = written_hparams(config, "phi2")
    assert calls["rope_dimension_count"] == 32 and calls["layer_norm_eps"] == 1e-5 and "layer_norm_rms_eps" not in calls
    assert calls["feed_forward_length"] == config["intermediate_size"] and calls["head_count_kv"] == 32
    assert calls["context_length"] == 2048 and "key_length" not in calls


@pytest.mark.parametrize("change, fragment", [
    ({"qk_layernorm": True}, "qk_layernorm"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"model_type": "phi-msft"}, "phi-msft"),
    ({"tie_word_embeddings": True}, "tied embeddings"),
])
def test_phi_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**PHI_2, **change})
    assert reason and fragment in reason and "PhiForCausalLM" in reason and "\n" not in reason


GEMMA_3_4B = {  # google/gemma-3-4b-it config.json: its text_config names 6 keys, transformers' defaults the rest
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
    "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
                    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
                      "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}}
GEMMA_3_27B_TEXT = {  # google/gemma-3-27b-it config.json's text_config (its other keys are 4B's)
    "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504, "model_type": "gemma3_text",
    "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16, "query_pre_attn_scalar": 168,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024}


def test_published_gemma_3_4b_config_is_written_as_its_language_model():
    """The multimodal checkpoint's GGUF is its text model: text_config's keys, transformers' defaults for the
    ones it leaves out (8 heads, 4 KV heads, head_dim 256, 131072 context, rope bases), linear rope scaling."""
    import gguf

    calls = written_hparams(GEMMA_3_4B, "gemma3")
    assert (calls["block_count"], calls["embedding_length"], calls["feed_forward_length"]) == (34, 2560, 10240)
    assert (calls["head_count"], calls["head_count_kv"], calls["key_length"], calls["context_length"]) == (8, 4, 256, 131072)
    assert calls["rope_freq_base"] == 1000000.0 and calls["rope_freq_base_swa"] == 10000.0
    assert calls["rope_scaling_type"] == gguf.RopeScalingType.LINEAR and calls["rope_scaling_factor"] == 8.0
    assert calls["sliding_window"] == 1024 and calls["layer_norm_rms_eps"] == 1e-6
    assert calls["sliding_window_pattern"] == ([True] * 5 + [False]) * 5 + [True] * 4


@pytest.mark.parametrize("prefix", ["language_model.model.", "model.language_model."])  # as published; transformers 5
def test_multimodal_checkpoint_gguf_holds_the_language_model_only(prefix):
    shapes = {f"{prefix}embed_tokens.weight": (262208, 2560), f"{prefix}norm.weight": (2560,),
              f"{prefix}layers.0.self_attn.q_proj.weight": (2048, 2560), f"{prefix}layers.0.input_layernorm.weight": (2560,),
              "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight": (4304, 1152),
              "vision_tower.vision_model.embeddings.patch_embedding.weight": (1152, 3, 14, 14),
              "multi_modal_projector.mm_input_projection_weight": (1152, 2560),
              "multi_modal_projector.mm_soft_emb_norm.weight": (1152,)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, GEMMA_3_4B, "f16")}
    assert set(plans) == {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"}
    assert plans["blk.0.attn_q.weight"].hf_name == f"{prefix}layers.0.self_attn.q_proj.weight"
    assert plans["output_norm.weight"].transform(np.zeros(2)).tolist() == [1.0, 1.0]  # Gemma's (1 + w) norms


def test_gemma_3_multimodal_query_scale_is_checked_on_its_text_config():
    gemma_27b = {**GEMMA_3_4B, "text_config": GEMMA_3_27B_TEXT}
    assert architecture_support(gemma_27b) is None  # 168 = 5376 / 32: llama.cpp's 27B scale
    off = {**GEMMA_3_4B, "text_config": {**GEMMA_3_4B["text_config"], "query_pre_attn_scalar": 128}}
    reason = architecture_support(off)
    assert "Gemma3ForConditionalGeneration" in reason and "query_pre_attn_scalar 128" in reason and "\n" not in reason

QWEN3_5_0_8B = {  # Qwen/Qwen3.5-0.8B config.json: the language model in text_config (vision_config shortened)
    "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5", "tie_word_embeddings": True,
    "image_token_id": 248056, "video_token_id": 248057, "vision_config": {"depth": 12, "hidden_size": 768},
    "text_config": {
        "model_type": "qwen3_5_text", "vocab_size": 248320, "hidden_size": 1024, "intermediate_size": 3584,
        "num_hidden_layers": 24, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256,
        "attention_bias": False, "attn_output_gate": True, "linear_num_key_heads": 16, "linear_num_value_heads": 16,
        "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "rms_norm_eps": 1e-6,
        "full_attention_interval": 4, "max_position_embeddings": 262144, "tie_word_embeddings": True,
        "mtp_num_hidden_layers": 1, "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "rope_parameters": {"mrope_interleaved": True, "mrope_section": [11, 11, 10], "rope_type": "default",
                            "rope_theta": 10000000, "partial_rotary_factor": 0.25}, "eos_token_id": 248044}}
QWEN3_5_0_8B["text_config"]["layer_types"] *= 6


def test_published_qwen3_5_config_writes_its_text_model():
    calls = written_hparams(QWEN3_5_0_8B, "qwen35")
    assert calls["block_count"] == 24 and calls["embedding_length"] == 1024 and calls["context_length"] == 262144
    assert calls["key_length"] == 256 and calls["rope_dimension_count"] == 64 and calls["rope_freq_base"] == 1e7
    assert calls["rope_dimension_sections"] == [11, 11, 10, 0]
    assert (calls["ssm_conv_kernel"], calls["ssm_state_size"], calls["ssm_group_count"], calls["ssm_time_step_rank"],
            calls["ssm_inner_size"]) == (4, 128, 16, 16, 2048)
    assert calls["attention.recurrent_layers"] == [True, True, True, False] * 6
    text = QWEN3_5_0_8B["text_config"]
    assert "linear_value_head_dim" in architecture_support({**QWEN3_5_0_8B, "text_config": {**text, "linear_value_head_dim": 64}})


def test_qwen3_5_value_heads_are_tiled_across_key_heads():
    """HF [k0: v0 v1][k1: v0 v1] -> llama.cpp [v0 of k0, v0 of k1, v1 of k0, v1 of k1] (rows or columns)."""
    from ducktune.export.gguf_qwen35 import tile_value_heads

    rows = np.arange(8).reshape(8, 1)  # 2 key heads x 2 value heads x width 2
    assert tile_value_heads(rows, 0, 2, 2, 2)[:, 0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    assert tile_value_heads(rows.T, 1, 2, 2, 2)[0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    names = {p.hf_name: p.gguf_name for p in plan_from_shapes(
        {"model.language_model.layers.0.linear_attn.A_log": (16,), "model.visual.blocks.0.attn.qkv.weight": (8, 8),
         "model.language_model.layers.0.linear_attn.dt_bias": (16,)}, QWEN3_5_0_8B, "f16")}
    assert names == {"model.language_model.layers.0.linear_attn.A_log": "blk.0.ssm_a",
                     "model.language_model.layers.0.linear_attn.dt_bias": "blk.0.ssm_dt.bias"}


GPT2 = {  # openai-community/gpt2 config.json
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 50256,
    "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
    "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
    "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257}
GPT2_MEDIUM = {**GPT2, "n_embd": 1024, "n_head": 16, "n_layer": 24, "n_special": 0,  # openai-community/gpt2-medium
               "predict_special_tokens": True}
DISTILGPT2 = {**GPT2, "_num_labels": 1, "n_layer": 6}  # distilbert/distilgpt2
PYTHIA_160M = {  # EleutherAI/pythia-160m config.json
    "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu", "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
    "model_type": "gpt_neox", "num_attention_heads": 12, "num_hidden_layers": 12, "rotary_emb_base": 10000,
    "rotary_pct": 0.25, "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.24.0",
    "use_cache": True, "use_parallel_residual": True, "vocab_size": 50304}
PYTHIA_2_8B = {**PYTHIA_160M, "hidden_size": 2560, "intermediate_size": 10240, "num_attention_heads": 32,  # pythia-2.8b
               "num_hidden_layers": 32}


@pytest.mark.parametrize("config", [GPT2, GPT2_MEDIUM, DISTILGPT2], ids=["gpt2", "gpt2-medium", "distilgpt2"])
def test_published_gpt2_configs_write_learned_positions_without_rope(config):
    calls = written_hparams(config, "gpt2")
    hidden = config["n_embd"]
    assert (calls["context_length"], calls["embedding_length"], calls["block_count"]) == (1024, hidden, config["n_layer"])
    assert calls["feed_forward_length"] == 4 * hidden and calls["head_count"] == calls["head_count_kv"] == config["n_head"]
    assert calls["layer_norm_eps"] == 1e-5 and not [key for key in calls if "rope" in key or "rms" in key]


def test_gpt2_conv1d_weights_are_written_transposed_and_the_output_tied():
    """HF's Conv1D stores [in, out]; llama.cpp wants [out, in] (c_attn: [3 x hidden, hidden]). The tied lm_head and
    the causal-mask buffers older checkpoints carry (h.N.attn.bias) are not written."""
    shapes = {"transformer.wte.weight": (50257, 768), "transformer.wpe.weight": (1024, 768),
              "transformer.h.0.attn.c_attn.weight": (768, 2304), "transformer.h.0.attn.c_attn.bias": (2304,),
              "transformer.h.0.attn.c_proj.weight": (768, 768), "transformer.h.0.mlp.c_fc.weight": (768, 3072),
              "transformer.h.0.mlp.c_proj.weight": (3072, 768), "transformer.h.0.attn.bias": (1, 1, 1024, 1024),
              "lm_head.weight": (50257, 768)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, {**GPT2, "n_layer": 1}, "q8_0")}
    assert set(plans) == {"token_embd.weight", "position_embd.weight", "blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias",
                          "blk.0.attn_output.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"}
    assert plans["blk.0.attn_qkv.weight"].shape == (2304, 768) and plans["blk.0.ffn_down.weight"].shape == (768, 3072)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(plans["blk.0.ffn_up.weight"].transform(weight), weight.T)
    assert plans["blk.0.attn_qkv.bias"].transform is None and plans["token_embd.weight"].transform is None


@pytest.mark.parametrize("change, fragment", [
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"add_cross_attention": True}, "add_cross_attention"),
])
def test_gpt2_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**GPT2, **change})
    assert reason and fragment in reason and "GPT2LMHeadModel" in reason and "\n" not in reason


@pytest.mark.parametrize("config, rotated", [(PYTHIA_160M, 16), (PYTHIA_2_8B, 20)], ids=["pythia-160m", "pythia-2.8b"])
def test_published_pythia_configs_rotate_a_quarter_of_each_head_with_parallel_residual(config, rotated):
    calls = written_hparams(config, "gptneox")
    assert calls["rope_dimension_count"] == rotated and calls["rope_freq_base"] == 10000.0
    assert calls["parallel_residual"] is True and calls["layer_norm_eps"] == 1e-5 and "layer_norm_rms_eps" not in calls
    assert calls["feed_forward_length"] == config["intermediate_size"] and calls["context_length"] == 2048
    sequential = written_hparams({**config, "use_parallel_residual": False}, "gptneox")
    assert sequential["parallel_residual"] is False


def test_pythia_fused_qkv_becomes_q_then_k_then_v_blocks():
    shapes = {"gpt_neox.layers.0.attention.query_key_value.weight": (2304, 768),
              "gpt_neox.layers.0.attention.query_key_value.bias": (2304,), "embed_out.weight": (50304, 768)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, {**PYTHIA_160M, "num_hidden_layers": 1}, "f16")}
    assert set(plans) == {"blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias", "output.weight"}
    heads, dim = 2, 3
    per_head = np.arange(heads * 3 * dim, dtype=np.float32)  # rows [q_h, k_h, v_h] for each head
    blocks = gguf_arch._tensor_transform("gpt_neox.layers.0.attention.query_key_value.bias", (18,),
                                         {**PYTHIA_160M, "num_attention_heads": heads}, "gptneox")(per_head)
    assert blocks.tolist() == [0, 1, 2, 9, 10, 11, 3, 4, 5, 12, 13, 14, 6, 7, 8, 15, 16, 17]


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "relu"}, "hidden_act 'relu'"),
    ({"attention_bias": False}, "attention_bias false"),
    ({"tie_word_embeddings": True}, "tied embeddings"),
])
def test_pythia_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**PYTHIA_160M, **change})
    assert reason and fragment in reason and "GPTNeoXForCausalLM" in reason and "\n" not in reason


def test_pythia_exact_gelu_is_a_caveat_not_a_refusal():
    assert any("tanh approximation" in note for note in gguf_arch.gguf_caveats(PYTHIA_160M))
    assert not gguf_arch.gguf_caveats({**PYTHIA_160M, "hidden_act": "gelu_new"})


def test_published_llama_3_2_config_gets_its_rope_table():
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, LLAMA_3_2_1B, gguf_arch.gguf_arch(LLAMA_3_2_1B))
    assert writer.calls["rope_freq_base"] == 500000.0 and writer.calls["rope_dimension_count"] == 64
    plans = gguf_arch._computed_tensors(LLAMA_3_2_1B, "llama")
    assert [(p.gguf_name, p.shape) for p in plans] == [("rope_freqs.weight", (32,))]
    factors = plans[0].transform(None)
    assert factors[0] == 1.0 and factors[-1] == 32.0 and any(1.0 < f < 32.0 for f in factors)  # kept, ramped, divided


def test_published_r1_distill_llama_8b_config_gets_llama_3_1s_rope_table_and_output():
    """DeepSeek-R1-Distill-Llama-8B is Llama 3.1 8B: llama3 scaling by 8 (not Llama 3.2's 32), untied output."""
    assert gguf_arch.architecture_support(R1_DISTILL_LLAMA_8B) is None
    hparams = written_hparams(R1_DISTILL_LLAMA_8B, "llama")
    assert hparams["rope_freq_base"] == 500000.0 and hparams["rope_dimension_count"] == 128
    assert hparams["head_count_kv"] == 8 and hparams["context_length"] == 131072
    plans = gguf_arch._computed_tensors(R1_DISTILL_LLAMA_8B, "llama")
    assert [(p.gguf_name, p.shape) for p in plans] == [("rope_freqs.weight", (64,))]
    factors = plans[0].transform(None)
    assert factors[0] == 1.0 and factors[-1] == 8.0 and any(1.0 < f < 8.0 for f in factors)
    assert MIRRORS["llama3.1"].startswith("deepseek-ai/DeepSeek-R1-Distill-Llama-8B")


def test_published_gemma_3_config_names_each_layers_window_and_rope_base():
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, GEMMA_3_1B, gguf_arch.gguf_arch(GEMMA_3_1B))
    calls = writer.calls
    assert calls["sliding_window_pattern"] == ([True] * 5 + [False]) * 4 + [True, True]
    assert calls["rope_freq_base"] == 1000000.0 and calls["rope_freq_base_swa"] == 10000.0
    assert calls["sliding_window"] == 512 and calls["key_length"] == 256 and "final_logit_softcapping" not in calls


def test_published_phi_3_5_config_gets_longrope_keys_and_tables():
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, PHI_3_5_MINI, gguf_arch.gguf_arch(PHI_3_5_MINI))
    assert writer.calls["rope_scaling_orig_ctx_len"] == 4096 and writer.calls["rope_dimension_count"] == 96
    assert writer.calls["rope_scaling_attn_factors"] == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    names = [(p.gguf_name, p.shape) for p in gguf_arch._computed_tensors(PHI_3_5_MINI, "phi3")]
    assert names == [("rope_factors_long.weight", (48,)), ("rope_factors_short.weight", (48,))]


PHI_4_MINI = {  # microsoft/Phi-4-mini-instruct config.json (remote-code keys and auto_map left out)
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 199999, "eos_token_id": 200020, "pad_token_id": 199999, "embd_pdrop": 0.0, "hidden_act": "silu",
    "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "num_attention_heads": 24, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05,
    "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [
        1, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649, 2.446418898,
        2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845, 5.351743533, 5.984965424,
        6.693110555, 7.485043894, 8.370679318, 9.36110372, 10.4687158, 11.70738129, 13.09260651, 14.64173252,
        16.37415215, 18.31155283, 20.47818807, 22.90118105, 25.61086418, 28.64115884, 32.03, 32.1, 32.13, 32.23,
        32.6, 32.61, 32.64, 32.66, 32.7, 32.71, 32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77]},
    "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "use_cache": True, "vocab_size": 200064}


def test_published_phi_4_mini_config_rotates_96_of_128_dims_with_a_tied_output():
    writer = RecordingWriter()
    assert architecture_support(PHI_4_MINI) is None and gguf_arch.gguf_arch(PHI_4_MINI) == "phi3"
    gguf_arch.add_hparams(writer, PHI_4_MINI, "phi3")
    calls = writer.calls
    assert calls["rope_dimension_count"] == 96 and calls["head_count_kv"] == 8 and "key_length" not in calls
    assert calls["context_length"] == 131072 and calls["rope_scaling_orig_ctx_len"] == 4096
    assert calls["rope_scaling_attn_factors"] == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    tables = {p.gguf_name: p.transform(None).tolist() for p in gguf_arch._computed_tensors(PHI_4_MINI, "phi3")}
    assert tables["rope_factors_long.weight"] == pytest.approx(PHI_4_MINI["rope_scaling"]["long_factor"])
    assert tables["rope_factors_short.weight"] == [1.0] * 48
    # fused grouped-query qkv as published (24 x 128 + 2 x 8 x 128 rows); no output tensor: llama.cpp reuses token_embd
    plans = {p.gguf_name: p for p in plan_from_shapes({
        "model.embed_tokens.weight": (200064, 3072), "model.layers.0.self_attn.qkv_proj.weight": (5120, 3072),
        "lm_head.weight": (200064, 3072)}, PHI_4_MINI, "f16")}
    assert set(plans) == {"token_embd.weight", "blk.0.attn_qkv.weight", "rope_factors_long.weight",
                          "rope_factors_short.weight"}
    assert plans["blk.0.attn_qkv.weight"].shape == (5120, 3072) and plans["blk.0.attn_qkv.weight"].transform is None


def test_phi_4_mini_factor_tables_must_cover_the_rotated_pairs_only():
    """48 factors for 96 rotated dims: a table sized for the whole head (64) is refused, not written."""
    scaling = {**PHI_4_MINI["rope_scaling"], "short_factor": [1.0] * 64, "long_factor": [1.0] * 64}
    with pytest.raises(ModelError, match="long_factor must list 48 factors"):
        gguf_arch._computed_tensors({**PHI_4_MINI, "rope_scaling": scaling}, "phi3")


def test_published_glm_4_config_rotates_half_of_each_head():
    writer = RecordingWriter()
    assert gguf_arch.gguf_arch(GLM_4_9B) == "chatglm"
    gguf_arch.add_hparams(writer, GLM_4_9B, "chatglm")
    assert writer.calls["rope_dimension_count"] == 64 and writer.calls["head_count_kv"] == 2

OLMO_2_7B = {  # allenai/OLMo-2-1124-7B-Instruct config.json
    "architectures": ["Olmo2ForCausalLM"], "model_type": "olmo2", "attention_bias": False, "attention_dropout": 0.0,
    "eos_token_id": 100257, "pad_token_id": 100277, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 500000, "tie_word_embeddings": False, "vocab_size": 100352}
OLMO_3_7B = {  # allenai/Olmo-3-7B-Instruct config.json, the keys read here (layer_types: 3 sliding, 1 full, 8 times)
    "architectures": ["Olmo3ForCausalLM"], "model_type": "olmo3", "attention_bias": False, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 65536, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-06, "rope_theta": 500000,
    "sliding_window": 4096, "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * 8,
    "rope_scaling": {"attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0, "factor": 8.0,
                     "original_max_position_embeddings": 8192, "rope_type": "yarn"},
    "tie_word_embeddings": False}


def test_published_olmo_2_config_is_olmo2_without_windows():
    calls = written_hparams(OLMO_2_7B, "olmo2")
    assert calls["rope_freq_base"] == 500000.0 and calls["rope_dimension_count"] == 128
    assert calls["layer_norm_rms_eps"] == 1e-6 and calls["context_length"] == 4096
    assert "sliding_window" not in calls and "key_length" not in calls
    plans = plan_from_shapes({"model.layers.0.self_attn.q_proj.weight": (4096, 4096),
                              "model.layers.0.self_attn.q_norm.weight": (4096,),
                              "model.layers.0.post_feedforward_layernorm.weight": (4096,),
                              "lm_head.weight": (100352, 4096)}, OLMO_2_7B, "f16")
    assert {p.gguf_name: p.transform for p in plans} == {  # rotate-half as HF stores it: nothing re-ordered
        "blk.0.attn_q.weight": None, "blk.0.attn_q_norm.weight": None, "blk.0.post_ffw_norm.weight": None,
        "output.weight": None}


def test_published_olmo_3_config_gets_its_window_layers_and_yarn():
    assert architecture_support(OLMO_3_7B) is None
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, OLMO_3_7B, gguf_arch.gguf_arch(OLMO_3_7B))
    calls = writer.calls
    assert calls["sliding_window"] == 4096 and calls["rope_freq_base_swa"] == 500000.0
    assert calls["sliding_window_pattern"] == [True, True, True, False] * 8
    assert calls["rope_scaling_factor"] == 8.0 and calls["rope_scaling_orig_ctx_len"] == 8192
    assert calls["rope_scaling_attn_factors"] == pytest.approx(1.0)  # 1.2079 is llama.cpp's own 0.1 ln 8 + 1
    # Olmo3Config's default when a config lists no layer_types: every 4th layer full
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, {k: v for k, v in OLMO_3_7B.items() if k != "layer_types"}, "olmo2")
    assert writer.calls["sliding_window_pattern"] == [True, True, True, False] * 8


def test_yarn_attention_factor_equals_transformers(standin):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    _, model = standin("olmo3")
    config = {**model.config.to_dict(), "rope_parameters": {**model.config.rope_parameters, "full_attention": {
        **model.config.rope_parameters["full_attention"], "attention_factor": None, "mscale": 2.0, "mscale_all_dim": 1.0}}}
    _, expected = ROPE_INIT_FUNCTIONS["yarn"](type(model.config)(**config), "cpu", layer_type="full_attention")
    assert gguf_arch.yarn_attention_factor(config) == pytest.approx(expected) and expected != pytest.approx(1.2079, abs=1e-3)


@pytest.mark.parametrize("change, fragment", [
    ({"beta_fast": 16.0}, "beta_fast"),
    ({"truncate": False}, "truncate"),
])
def test_yarn_llama_cpp_would_rotate_differently_is_refused(change, fragment):
    reason = architecture_support({**OLMO_3_7B, "rope_scaling": {**OLMO_3_7B["rope_scaling"], **change}})
    assert reason and fragment in reason


@pytest.mark.parametrize("change, fragment", [
    ({"attention_bias": True}, "attention_bias"),
    ({"head_dim": 64}, "head_dim"),
])
def test_olmo_shapes_llama_cpp_does_not_load_are_refused(change, fragment):
    reason = architecture_support({**OLMO_2_7B, **change})
    assert reason and fragment in reason and "\n" not in reason


def test_olmo_3_sliding_layers_with_scaled_rope_are_refused():
    scaled = {**OLMO_3_7B, "rope_scaling": None, "rope_parameters": {
        "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0},
        "full_attention": {"rope_type": "default", "rope_theta": 500000.0}}}
    assert "sliding-window layers" in architecture_support(scaled)


EXAONE_3_5_2_4B = {  # LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct config.json, the keys read here, spelled as published
    "architectures": ["ExaoneForCausalLM"], "model_type": "exaone", "activation_function": "silu", "hidden_size": 2560,
    "intermediate_size": 7168, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 80, "num_layers": 30,
    "layer_norm_epsilon": 1e-05, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "vocab_size": 102400, "bos_token_id": 1, "eos_token_id": 361, "pad_token_id": 0,
    "auto_map": {"AutoConfig": "configuration_exaone.ExaoneConfig",
                 "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM"}}


def test_published_exaone_3_5_config_is_exaone_with_its_own_key_names_and_weight_names():
    assert architecture_support(EXAONE_3_5_2_4B) is None
    calls = written_hparams(EXAONE_3_5_2_4B, "exaone")
    assert calls["block_count"] == 30 and calls["layer_norm_rms_eps"] == 1e-05  # num_layers, layer_norm_epsilon
    assert calls["rope_freq_base"] == 1000000.0 and calls["rope_dimension_count"] == 80
    assert calls["context_length"] == 32768 and calls["head_count_kv"] == 8
    plans = {p.gguf_name: p for p in plan_from_shapes({  # the checkpoint's own names, as published and as saved
        "transformer.h.0.attn.attention.q_proj.weight": (2560, 2560), "transformer.h.0.attn.attention.out_proj.weight":
        (2560, 2560), "transformer.h.0.ln_1.weight": (2560,), "transformer.h.0.ln_2.weight": (2560,),
        "transformer.h.0.mlp.c_fc_0.weight": (7168, 2560), "transformer.h.0.mlp.c_fc_1.weight": (7168, 2560),
        "transformer.h.0.mlp.c_proj.weight": (2560, 7168), "transformer.wte.weight": (102400, 2560),
        "transformer.ln_f.weight": (2560,)}, EXAONE_3_5_2_4B, "f16")}
    assert set(plans) == {"blk.0.attn_q.weight", "blk.0.attn_output.weight", "blk.0.attn_norm.weight",
                          "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
                          "token_embd.weight", "output_norm.weight", "rope_freqs.weight"}  # tied: no output
    assert plans["blk.0.attn_q.weight"].transform is None  # rotate-half, as llama.cpp's NEOX rope reads it
    assert plans["blk.0.ffn_down.weight"].shape == (2560, 7168)  # c_proj is a Linear here, not GPT-2's Conv1D
    table = plans["rope_freqs.weight"].transform(None)
    assert table.shape == (40,) and table[0] == 1.0 and table[-1] == 8.0


def test_merged_exaone_saved_as_llama_is_still_written_as_exaone():
    """transformers 5 saves a loaded EXAONE as LlamaForCausalLM (model_type exaone, its own key names): the GGUF is
    still llama.cpp's exaone, the architecture of EXAONE's published GGUFs, not the llama one the class names."""
    renamed = {"num_layers": "num_hidden_layers", "layer_norm_epsilon": "rms_norm_eps", "activation_function": "hidden_act"}
    merged = {renamed.get(key, key): value for key, value in EXAONE_3_5_2_4B.items()}
    merged["architectures"] = ["LlamaForCausalLM"]
    assert architecture_support(merged) is None
    assert written_hparams(merged, "exaone")["block_count"] == 30
    assert gguf_arch.gguf_arch({**merged, "model_type": "llama"}) == "llama"


def test_exaone_without_a_rope_theta_gets_exaone_configs_default_not_llamas():
    unnamed = {key: value for key, value in EXAONE_3_5_2_4B.items() if key not in ("rope_theta", "rope_scaling")}
    assert written_hparams(unnamed, "exaone")["rope_freq_base"] == 500000.0  # ExaoneConfig.default_theta


@pytest.mark.parametrize("change, fragment", [
    ({"attention_bias": True}, "attention_bias true"),
    ({"mlp_bias": True}, "mlp_bias true"),
    ({"activation_function": "gelu"}, "activation_function 'gelu'"),
])
def test_exaone_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**EXAONE_3_5_2_4B, **change})
    assert reason and fragment in reason and "\n" not in reason


EXAONE_4_1_2B = {  # LGAI-EXAONE/EXAONE-4.0-1.2B config.json, the keys read here (30 global layers, no window)
    "architectures": ["Exaone4ForCausalLM"], "model_type": "exaone4", "hidden_size": 2048, "intermediate_size": 4096,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "num_hidden_layers": 30,
    "max_position_embeddings": 65536, "rms_norm_eps": 1e-05, "rope_theta": 1000000, "sliding_window": None,
    "sliding_window_pattern": "LLLG", "layer_types": ["full_attention"] * 30, "tie_word_embeddings": True,
    "rope_scaling": {"factor": 16.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "vocab_size": 102400, "bos_token_id": 1, "eos_token_id": 361, "pad_token_id": 0}
EXAONE_4_32B = {  # LGAI-EXAONE/EXAONE-4.0-32B config.json, the keys read here (3 sliding : 1 global, 16 times)
    **EXAONE_4_1_2B, "hidden_size": 5120, "intermediate_size": 27392, "num_attention_heads": 40, "head_dim": 128,
    "num_hidden_layers": 64, "max_position_embeddings": 131072, "sliding_window": 4096,
    "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * 16, "tie_word_embeddings": False}


def test_published_exaone_4_1_2b_config_rotates_every_layer_with_its_llama3_table():
    assert architecture_support(EXAONE_4_1_2B) is None
    calls = written_hparams(EXAONE_4_1_2B, "exaone4")
    assert calls["rope_freq_base"] == 1000000.0 and calls["rope_dimension_count"] == 64
    assert calls["context_length"] == 65536 and calls["head_count_kv"] == 8
    assert "sliding_window" not in calls and "sliding_window_pattern" not in calls  # llama.cpp rotates all 30 layers
    plans = {p.gguf_name: p for p in plan_from_shapes({
        "model.layers.0.self_attn.q_proj.weight": (2048, 2048), "model.layers.0.self_attn.k_norm.weight": (64,),
        "model.layers.0.post_attention_layernorm.weight": (2048,), "model.layers.0.post_feedforward_layernorm.weight": (2048,),
        "model.embed_tokens.weight": (102400, 2048), "lm_head.weight": (102400, 2048)}, EXAONE_4_1_2B, "f16")}
    assert set(plans) == {"blk.0.attn_q.weight", "blk.0.attn_k_norm.weight", "blk.0.post_attention_norm.weight",
                          "blk.0.post_ffw_norm.weight", "token_embd.weight", "rope_freqs.weight"}  # tied: no output
    assert plans["blk.0.attn_q.weight"].transform is None  # rotate-half, as llama.cpp's NEOX rope reads it
    table = plans["rope_freqs.weight"].transform(None)
    assert table.shape == (32,) and table[0] == 1.0 and table[-1] == 16.0


def test_published_exaone_4_32b_config_names_its_sliding_layers():
    assert architecture_support(EXAONE_4_32B) is None
    calls = written_hparams(EXAONE_4_32B, "exaone4")
    assert calls["sliding_window"] == 4096 and calls["sliding_window_pattern"] == [True, True, True, False] * 16
    # without layer_types, the "LLLG" string spells the same layers (Exaone4Config's documented pattern)
    spelled = {key: value for key, value in EXAONE_4_32B.items() if key != "layer_types"}
    assert written_hparams(spelled, "exaone4")["sliding_window_pattern"] == [True, True, True, False] * 16
    # a 64-layer model whose layers are all global still has the pattern written: llama.cpp's default slides 3 of 4
    global_only = {**EXAONE_4_32B, "layer_types": ["full_attention"] * 64}
    assert written_hparams(global_only, "exaone4")["sliding_window_pattern"] == [False] * 64


@pytest.mark.parametrize("config, fragment", [
    ({**EXAONE_4_1_2B, "sliding_window": 4096}, "only for 64-layer models"),
    ({**EXAONE_4_1_2B, "sliding_window": 4096, "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * 7
      + ["sliding_attention", "full_attention"]}, "sliding_window 4096 with 30 layers"),
    ({k: v for k, v in EXAONE_4_1_2B.items() if k != "sliding_window"}, "sliding_window 4096"),  # transformers' default
    ({**EXAONE_4_32B, "sliding_window": None}, "sliding_window null with 64 layers"),
])
def test_exaone_4_configs_llama_cpp_would_rotate_or_slide_differently_are_refused(config, fragment):
    reason = architecture_support(config)
    assert reason and fragment in reason and "\n" not in reason


AYA_EXPANSE_8B = {  # CohereForAI/aya-expanse-8b config.json, the keys read here (dtype / version left out)
    "architectures": ["CohereForCausalLM"], "model_type": "cohere", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32, "max_position_embeddings": 8192,
    "layer_norm_eps": 1e-05, "logit_scale": 0.125, "rope_theta": 10000, "attention_bias": False, "hidden_act": "silu",
    "use_qk_norm": False, "vocab_size": 256000, "bos_token_id": 5, "eos_token_id": 255001, "pad_token_id": 0}
COMMAND_R7B = {  # CohereForAI/c4ai-command-r7b-12-2024 config.json, the keys read here: no layer_types, the pattern
    "architectures": ["Cohere2ForCausalLM"], "model_type": "cohere2", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 32,
    "max_position_embeddings": 132096, "layer_norm_eps": 1e-05, "logit_scale": 0.25, "rope_theta": 50000,
    "rope_scaling": None, "sliding_window": 4096, "sliding_window_pattern": 4, "attention_bias": False,
    "hidden_act": "silu", "position_embedding_type": "rope_gptj", "rotary_pct": 1.0, "use_embedding_sharing": True,
    "order_of_interleaved_layers": "local_attn_first", "vocab_size": 256000, "bos_token_id": 5, "eos_token_id": 255001,
    "pad_token_id": 0}


def test_published_aya_expanse_config_is_command_r_with_its_logit_scale_and_tied_output():
    assert architecture_support(AYA_EXPANSE_8B) is None
    calls = written_hparams(AYA_EXPANSE_8B, "command-r")
    assert calls["logit_scale"] == 0.125 and calls["layer_norm_eps"] == 1e-05 and "layer_norm_rms_eps" not in calls
    assert calls["rope_dimension_count"] == 128 and calls["rope_freq_base"] == 10000.0 and calls["head_count_kv"] == 8
    plans = {p.gguf_name: p for p in plan_from_shapes({
        "model.layers.0.self_attn.q_proj.weight": (4096, 4096), "model.layers.0.self_attn.k_proj.weight": (1024, 4096),
        "model.layers.0.input_layernorm.weight": (4096,), "model.norm.weight": (4096,),
        "model.embed_tokens.weight": (256000, 4096)}, AYA_EXPANSE_8B, "f16")}
    assert set(plans) == {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight", "output_norm.weight",
                          "token_embd.weight"}  # tied: llama.cpp reuses the embedding
    # Cohere's rotate_half already pairs neighbouring dims, as llama.cpp's NORM rope: rows kept as stored
    assert plans["blk.0.attn_q.weight"].transform is None and plans["blk.0.attn_k.weight"].transform is None


def test_command_r_plus_shape_keeps_its_per_head_q_k_norms():
    """llama.cpp's command-r creates q/k LayerNorms (one weight per head) for 64 layers or more: Command R+."""
    plus = {**AYA_EXPANSE_8B, "num_hidden_layers": 64, "use_qk_norm": True}
    assert architecture_support(plus) is None
    plans = {p.gguf_name: p.shape for p in plan_from_shapes({
        "model.layers.0.self_attn.q_norm.weight": (32, 128), "model.layers.0.self_attn.k_norm.weight": (8, 128)},
        plus, "f16")}
    assert plans == {"blk.0.attn_q_norm.weight": (32, 128), "blk.0.attn_k_norm.weight": (8, 128)}


def test_published_command_r7b_config_slides_three_layers_of_four():
    assert architecture_support(COMMAND_R7B) is None
    calls = written_hparams(COMMAND_R7B, "cohere2")
    assert calls["sliding_window"] == 4096 and calls["sliding_window_pattern"] == [True, True, True, False] * 8
    assert calls["logit_scale"] == 0.25 and calls["rope_freq_base"] == 50000.0 and calls["layer_norm_eps"] == 1e-05
    # transformers' defaults for the keys left out: a 4096 window, every 4th layer global
    bare = {k: v for k, v in COMMAND_R7B.items() if k not in ("sliding_window", "sliding_window_pattern")}
    assert written_hparams(bare, "cohere2")["sliding_window_pattern"] == [True, True, True, False] * 8
    assert written_hparams(bare, "cohere2")["sliding_window"] == 4096
    listed = {**COMMAND_R7B, "layer_types": ["sliding_attention", "full_attention"] * 16}
    assert written_hparams(listed, "cohere2")["sliding_window_pattern"] == [True, False] * 16


@pytest.mark.parametrize("config, fragment", [
    ({**AYA_EXPANSE_8B, "tie_word_embeddings": False}, "always uses the embedding as output layer"),
    ({**AYA_EXPANSE_8B, "attention_bias": True}, "attention_bias true"),
    ({**AYA_EXPANSE_8B, "hidden_act": "gelu"}, "runs SiLU only"),
    ({**AYA_EXPANSE_8B, "use_qk_norm": True}, "use_qk_norm True with 32 layers"),
    ({**AYA_EXPANSE_8B, "num_hidden_layers": 64}, "use_qk_norm False with 64 layers"),
    ({**COMMAND_R7B, "use_qk_norm": True}, "no q/k norms"),
    ({**COMMAND_R7B, "sliding_window": None}, "sliding_window null"),
    ({**COMMAND_R7B, "layer_types": ["full_attention"] * 32}, "no sliding-window layer"),
    ({**COMMAND_R7B, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope scaling 'yarn'"),
])
def test_cohere_configs_llama_cpp_would_run_differently_are_refused(config, fragment):
    reason = architecture_support(config)
    assert reason and fragment in reason and "\n" not in reason, reason


def test_published_gemma_7b_config_is_llama_cpps_gemma_with_its_head_size():
    """16 heads x 256 = 4096 != 3072: the key/value lengths must be written (llama.cpp would take 192)."""
    calls = written_hparams(GEMMA_7B_IT, "gemma")
    assert calls["key_length"] == calls["value_length"] == 256 and calls["rope_dimension_count"] == 256
    assert calls["embedding_length"] == 3072 and calls["head_count_kv"] == 16 and calls["feed_forward_length"] == 24576
    assert not {"sliding_window", "final_logit_softcapping", "attn_logit_softcapping"} & set(calls)


def test_published_gemma_weights_get_norms_plus_one_and_no_output_layer():
    shapes = {"model.embed_tokens.weight": (256000, 3072), "model.norm.weight": (3072,), "lm_head.weight": (256000, 3072),
              "model.layers.0.input_layernorm.weight": (3072,), "model.layers.0.post_attention_layernorm.weight": (3072,),
              "model.layers.0.self_attn.q_proj.weight": (4096, 3072)}
    plans = {plan.gguf_name: plan for plan in plan_from_shapes(shapes, GEMMA_7B_IT, "f16")}
    assert set(plans) == {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight",
                          "blk.0.attn_q.weight"}
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        np.testing.assert_array_equal(plans[name].transform(np.zeros(3, np.float32)), np.ones(3, np.float32))
    assert plans["blk.0.attn_q.weight"].transform is None  # llama.cpp's gemma rotates halves, as HF stores them


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "gelu_pytorch_tanh"}, None),
    ({"hidden_activation": "gelu"}, None),  # transformers 5 ignores it for Gemma 1 and runs hidden_act
    ({"hidden_act": "silu"}, "activation silu"),
    ({"hidden_act": "gelu_python"}, "activation gelu_python"),
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ({"attention_bias": True}, "attention_bias"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
])
def test_gemma_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**GEMMA_7B_IT, **change})
    assert reason is None if fragment is None else (fragment in reason and "\n" not in reason), reason


def test_gemma_2_activation_is_read_from_hidden_activation():
    gemma_2 = {"architectures": ["Gemma2ForCausalLM"], "hidden_size": 2304, "num_attention_heads": 8, "head_dim": 256,
               "num_hidden_layers": 26, "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh"}
    assert architecture_support(gemma_2) is None
    assert "activation gelu" in architecture_support({**gemma_2, "hidden_activation": "gelu"})
def test_published_granite_3_3_config_gets_its_scales_and_llama_rotary():
    calls = written_hparams(GRANITE_3_3_2B, "granite")
    assert (calls["embedding_scale"], calls["residual_scale"], calls["attention_scale"], calls["logit_scale"]) == (
        12.0, 0.22, 0.015625, 8.0)
    assert calls["rope_freq_base"] == 1e7 and calls["rope_dimension_count"] == 64 and "key_length" not in calls
    plans = {p.gguf_name: p for p in plan_from_shapes(
        {"model.embed_tokens.weight": (49159, 2048), "model.layers.0.self_attn.q_proj.weight": (2048, 2048),
         "lm_head.weight": (49159, 2048)}, GRANITE_3_3_2B, "f16")}
    assert set(plans) == {"token_embd.weight", "blk.0.attn_q.weight"}  # tied: no output.weight
    assert plans["blk.0.attn_q.weight"].transform is not None  # HF rotate-half rows -> llama.cpp pairs


def test_granite_configs_llama_cpp_would_run_differently_are_refused():
    head_dim = architecture_support({**GRANITE_3_3_2B, "head_dim": 128})
    assert "head_dim 128" in head_dim and "\n" not in head_dim
    assert "attention_multiplier 0" in architecture_support({**GRANITE_3_3_2B, "attention_multiplier": 0.0})
    # absent multipliers are transformers' 1.0, written as such (llama.cpp would take 1/sqrt(head_dim))
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, {k: v for k, v in GRANITE_3_3_2B.items() if k != "attention_multiplier"}, "granite")
    assert writer.calls["attention_scale"] == 1.0


def test_published_granite_4_micro_is_written_as_granite_with_its_mlp_split():
    writer = RecordingWriter()
    assert gguf_arch.gguf_arch(GRANITE_4_MICRO) == "granite"  # as llama.cpp's converter writes an all-attention one
    gguf_arch.add_hparams(writer, GRANITE_4_MICRO, "granite")
    calls = writer.calls
    assert (calls["embedding_scale"], calls["residual_scale"], calls["attention_scale"], calls["logit_scale"]) == (
        12.0, 0.22, 0.015625, 10.0)
    assert (calls["feed_forward_length"], calls["head_count_kv"], calls["rope_dimension_count"]) == (8192, 8, 64)
    plans = {p.gguf_name: p for p in plan_from_shapes(
        {"model.layers.3.shared_mlp.input_linear.weight": (16384, 2560),
         "model.layers.3.shared_mlp.output_linear.weight": (2560, 8192)}, GRANITE_4_MICRO, "f16")}
    assert {name: plan.shape for name, plan in plans.items()} == {
        "blk.3.ffn_gate.weight": (8192, 2560), "blk.3.ffn_up.weight": (8192, 2560), "blk.3.ffn_down.weight": (2560, 8192)}
    fused = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)  # rows [gate; up], as transformers chunks them
    small = {p.gguf_name: p for p in gguf_arch._granite4_mlp_plans("model.layers.0.shared_mlp.input_linear.weight", (6, 2), "f16")}
    assert (small["blk.0.ffn_gate.weight"].transform(fused) == fused[:3]).all()
    assert (small["blk.0.ffn_up.weight"].transform(fused) == fused[3:]).all()


def test_granite_4_moe_and_nope_configs_are_refused_with_a_reason():
    # transformers 5 saves the layer kinds under its own names: all attention stays llama.cpp's granite
    saved = {**GRANITE_4_MICRO, "layer_types": ["full_attention"] * 40}
    assert architecture_support(saved) is None and gguf_arch.gguf_arch(saved) == "granite"
    assert "num_local_experts 64" in architecture_support({**GRANITE_4_MICRO, "num_local_experts": 64})
    assert "'nope'" in architecture_support({**GRANITE_4_MICRO, "position_embedding_type": "nope"})


def test_gemma_2_27b_query_scale_is_the_one_llama_cpp_uses_for_it():
    gemma_27b = {"architectures": ["Gemma2ForCausalLM"], "hidden_size": 4608, "num_attention_heads": 32, "head_dim": 128,
                 "num_hidden_layers": 46, "query_pre_attn_scalar": 144}
    assert architecture_support(gemma_27b) is None
    assert "query_pre_attn_scalar" in architecture_support({**gemma_27b, "num_hidden_layers": 42})


@_mark(*requires_llama_cpp)
def test_phi3_in_the_name_does_not_break_loading_another_vocabulary(written, standin, tokenizer, tmp_path):
    """llama.cpp looks up Phi-3's </s> <unk> <s> in any model named "...phi3..."; this vocabulary has none."""
    import gguf

    folder, _ = standin("phi3")
    path = tmp_path / "named.gguf"
    write_gguf(folder, path, "f16", "My-Phi3-tune", tokenizer, EOT, log=lambda *a: None)
    assert gguf.GGUFReader(str(path)).get_field("general.name").contents() == "My-Phi_3-tune"
    llama_cpp_logits(path, [[1, 2, 3]])  # loads


def test_caveats_name_where_llama_cpp_differs(standin):
    from ducktune.export.gguf_arch import gguf_caveats

    def caveats(arch):
        return " ".join(gguf_caveats(standin(arch)[1].config.to_dict()))

    assert "sliding_window 4096" in caveats("mistral")  # v0.1: window 4096 < 32768 context
    assert "sliding_window 2047" in caveats("phi3")
    assert "longrope" in caveats("phi3-longrope")
    assert caveats("qwen2") == "" and caveats("mistral-nemo") == "" and caveats("gemma2") == ""  # Gemma's windows are written
    assert "dynamic rope" in " ".join(gguf_caveats(internlm2_config(100)))


def test_published_smollm3_config_is_llama_with_nope_and_tied_embeddings():
    calls = written_hparams(SMOLLM3_3B, "smollm3")
    assert calls["rope_freq_base"] == 5000000.0 and calls["rope_dimension_count"] == 128
    assert (calls["block_count"], calls["head_count_kv"], calls["context_length"]) == (36, 4, 65536)
    shapes = {"model.embed_tokens.weight": (128256, 2048), "model.layers.0.self_attn.q_proj.weight": (2048, 2048),
              "model.layers.0.self_attn.k_proj.weight": (512, 2048), "model.layers.0.self_attn.v_proj.weight": (512, 2048),
              "lm_head.weight": (128256, 2048)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, {k: v for k, v in SMOLLM3_3B.items() if k != "tie_word_embeddings"}, "f16")}
    assert "output.weight" not in plans  # tied by default, as transformers' SmolLM3Config
    # llama.cpp rotates interleaved pairs (rope type NORM): q/k rows re-ordered, v not
    assert plans["blk.0.attn_q.weight"].transform and plans["blk.0.attn_k.weight"].transform
    assert plans["blk.0.attn_v.weight"].transform is None


@pytest.mark.parametrize("change, fragment", [
    ({"no_rope_layers": [1, 1, 0, 1] * 9}, "no_rope_layers 1101"),      # NoPE on other layers
    ({"no_rope_layers": [1] * 36}, "no_rope_layers 1111"),              # rope everywhere
    ({"no_rope_layers": None, "no_rope_layer_interval": 3}, "no_rope_layer_interval"),
    ({"no_rope_layers": [1, 1, 1, 0] * 8}, "no_rope_layers"),            # fewer entries than layers
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
])
def test_smollm3_shapes_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**SMOLLM3_3B, **change})
    assert reason and fragment in reason and "\n" not in reason
    # the interval alone (no list) gives llama.cpp's own pattern: exportable
    assert architecture_support({**SMOLLM3_3B, "no_rope_layers": None}) is None


ERNIE_4_5_0_3B = {  # baidu/ERNIE-4.5-0.3B-PT config.json (dtype left out)
    "architectures": ["Ernie4_5ForCausalLM"], "model_type": "ernie4_5", "bos_token_id": 1, "eos_token_id": 2,
    "pad_token_id": 0, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "intermediate_size": 3072,
    "max_position_embeddings": 131072, "num_attention_heads": 16, "num_hidden_layers": 18, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05, "rope_theta": 500000, "tie_word_embeddings": True, "use_bias": False, "use_cache": False,
    "vocab_size": 103424}


def test_published_ernie_4_5_config_keeps_its_interleaved_rotary_and_head_size():
    """transformers rotates ERNIE's q/k in interleaved pairs, as llama.cpp's ernie4_5 does: rows are written
    as they are (a Llama-style re-ordering would scramble every head); head_dim 128 is not 1024/16."""
    writer = RecordingWriter()
    assert architecture_support(ERNIE_4_5_0_3B) is None and gguf_arch.gguf_arch(ERNIE_4_5_0_3B) == "ernie4_5"
    gguf_arch.add_hparams(writer, ERNIE_4_5_0_3B, "ernie4_5")
    calls = writer.calls
    assert calls["key_length"] == calls["value_length"] == calls["rope_dimension_count"] == 128
    assert calls["rope_freq_base"] == 500000.0 and calls["head_count_kv"] == 2 and calls["context_length"] == 131072
    shapes = {"model.embed_tokens.weight": (103424, 1024), "model.layers.0.self_attn.q_proj.weight": (2048, 1024),
              "model.layers.0.self_attn.k_proj.weight": (256, 1024), "lm_head.weight": (103424, 1024)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, ERNIE_4_5_0_3B, "f16")}
    assert set(plans) == {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"}  # tied: no output
    assert plans["blk.0.attn_q.weight"].transform is None and plans["blk.0.attn_k.weight"].transform is None
    # tie_word_embeddings absent: Ernie4_5Config's default (tied) holds
    untied = {k: v for k, v in ERNIE_4_5_0_3B.items() if k != "tie_word_embeddings"}
    assert "output.weight" not in {p.gguf_name for p in plan_from_shapes(shapes, untied, "f16")}


@pytest.mark.parametrize("change, fragment", [
    ({"use_bias": True}, "use_bias true"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0, "partial_rotary_factor": 0.5}},
     "rope over 64 of 128"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
])
def test_ernie_4_5_shapes_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**ERNIE_4_5_0_3B, **change})
    assert reason and fragment in reason and "Ernie4_5ForCausalLM" in reason and "\n" not in reason
LFM2_1_2B = {  # LiquidAI/LFM2-1.2B config.json (init-scale keys left out): attention layers by index, MLP as block_ff_dim
    "architectures": ["Lfm2ForCausalLM"], "block_auto_adjust_ff_dim": True, "block_dim": 2048, "block_ff_dim": 12288,
    "block_ffn_dim_multiplier": 1.0, "block_multiple_of": 256, "block_norm_eps": 1e-05, "block_use_swiglu": True,
    "bos_token_id": 1, "conv_L_cache": 3, "conv_bias": False, "conv_dim": 2048, "conv_dim_out": 2048, "eos_token_id": 7,
    "full_attn_idxs": [2, 5, 8, 10, 12, 14], "hidden_size": 2048, "initializer_range": 0.02,
    "max_position_embeddings": 128000, "model_type": "lfm2", "norm_eps": 1e-05, "num_attention_heads": 32,
    "num_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pad_token_id": 0, "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16", "use_cache": True, "use_pos_enc": True, "vocab_size": 65536}


def test_published_lfm2_config_marks_its_conv_layers_and_mlp_width():
    """llama.cpp tells LFM2's short-conv layers by head_count_kv 0 and sizes the MLP from feed_forward_length:
    8192 for the 1.2B (2/3 of block_ff_dim 12288), the width llama.cpp's loader names LLM_TYPE_1_2B."""
    calls = written_hparams(LFM2_1_2B, "lfm2")
    attention = {2, 5, 8, 10, 12, 14}
    assert calls["head_count_kv"] == [8 if i in attention else 0 for i in range(16)]
    assert calls["feed_forward_length"] == 8192 and calls["shortconv_l_cache"] == 3 and calls["vocab_size"] == 65536
    assert calls["layer_norm_rms_eps"] == 1e-5 and calls["rope_freq_base"] == 1e6 and calls["rope_dimension_count"] == 64
    assert "key_length" not in calls  # head_dim is hidden / heads
    from ducktune.export.gguf_lfm2 import feed_forward_length
    assert feed_forward_length({**LFM2_1_2B, "block_ff_dim": 6656}) == 4608  # LFM2-350M's (LLM_TYPE_350M)
    assert feed_forward_length({**LFM2_1_2B, "block_auto_adjust_ff_dim": False}) == 12288


def test_published_lfm2_weights_squeeze_the_conv_kernel_and_tie_the_output():
    shapes = {"model.embed_tokens.weight": (65536, 2048), "model.layers.0.conv.conv.weight": (2048, 1, 3),
              "model.layers.0.conv.in_proj.weight": (6144, 2048), "model.layers.2.self_attn.out_proj.weight": (2048, 2048),
              "model.embedding_norm.weight": (2048,)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, LFM2_1_2B, "q8_0")}
    assert set(plans) == {"token_embd.weight", "blk.0.shortconv.conv.weight", "blk.0.shortconv.in_proj.weight",
                          "blk.2.attn_output.weight", "token_embd_norm.weight"}  # tied: no output.weight
    conv = plans["blk.0.shortconv.conv.weight"]
    assert conv.shape == (2048, 3) and conv.qtype.name == "F32"
    assert conv.transform(np.zeros((2048, 1, 3), dtype=np.float32)).shape == (2048, 3)
    assert plans["blk.0.shortconv.in_proj.weight"].qtype.name == "Q8_0"


@pytest.mark.parametrize("change, fragment", [
    ({"conv_bias": True}, "conv_bias"),
    ({"head_dim": 128}, "heads x head_dim (32 x 128)"),
    ({"layer_types": ["conv", "sliding_attention"] * 8}, "layer_types"),
    ({"conv_L_cache": 1}, "conv_L_cache 1"),
])
def test_lfm2_shapes_llama_cpp_does_not_load_are_refused(change, fragment):
    reason = architecture_support({**LFM2_1_2B, **change})
def test_published_hunyuan_7b_config_gets_its_ntk_alpha_base_and_neox_rope():
    calls = written_hparams(HUNYUAN_7B, "hunyuan-dense")
    # transformers' ntk_alpha: a fixed base 10000 * 1000^(128/126), llama.cpp's converter writes the same
    assert calls["rope_freq_base"] == pytest.approx(11158839.9251, rel=1e-9)
    assert (calls["rope_dimension_count"], calls["head_count_kv"], calls["context_length"]) == (128, 8, 262144)
    assert "rope_scaling_type" not in calls and "key_length" not in calls  # head_dim = hidden / heads
    assert gguf_arch.gguf_caveats(HUNYUAN_7B) == []  # alpha makes the "dynamic" rope static: nothing differs past the context
    shapes = {"model.embed_tokens.weight": (128167, 4096), "model.layers.0.self_attn.q_proj.weight": (4096, 4096),
              "model.layers.0.self_attn.k_proj.weight": (1024, 4096),
              "model.layers.0.self_attn.query_layernorm.weight": (128,),
              "model.layers.0.self_attn.key_layernorm.weight": (128,), "lm_head.weight": (128167, 4096)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, {**HUNYUAN_7B, "tie_word_embeddings": True}, "f16")}
    assert "output.weight" not in plans and plans["blk.0.attn_q_norm.weight"].shape == (128,)
    # llama.cpp's hunyuan-dense rotates halves (NEOX) as transformers does: no q/k re-ordering
    assert plans["blk.0.attn_q.weight"].transform is None and plans["blk.0.attn_k.weight"].transform is None
    # without an alpha, "dynamic" is transformers' length-dependent NTK: base kept, the usual caveat
    plain = {**HUNYUAN_7B, "rope_scaling": {"type": "dynamic", "factor": 2.0}}
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, plain, "hunyuan-dense")
    assert writer.calls["rope_freq_base"] == 10000.0 and "dynamic rope" in " ".join(gguf_arch.gguf_caveats(plain))


@pytest.mark.parametrize("change, fragment", [
    ({"use_qk_norm": False}, "use_qk_norm"),
    ({"use_cla": True, "cla_share_factor": 2}, "use_cla"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"partial_rotary_factor": 0.5}, "rope over 64 of 128"),
    ({"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}, "rope scaling 'yarn'"),
])
def test_hunyuan_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**HUNYUAN_7B, **change})
GEMMA_4_E2B = {  # google/gemma-4-E2B-it config.json: the language model in text_config (vision/audio shortened)
    "architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "tie_word_embeddings": True,
    "image_token_id": 258880, "audio_token_id": 258881, "boi_token_id": 255999, "eoi_token_id": 258882,
    "eos_token_id": [1, 106], "vision_config": {"model_type": "gemma4_vision", "hidden_size": 768},
    "audio_config": {"model_type": "gemma4_audio", "hidden_size": 1024},
    "text_config": {
        "model_type": "gemma4_text", "hidden_size": 1536, "num_hidden_layers": 35, "num_attention_heads": 8,
        "num_key_value_heads": 1, "head_dim": 256, "global_head_dim": 512, "num_global_key_value_heads": None,
        "attention_k_eq_v": False, "sliding_window": 512, "vocab_size": 262144, "vocab_size_per_layer_input": 262144,
        "hidden_size_per_layer_input": 256, "num_kv_shared_layers": 20, "use_double_wide_mlp": True,
        "intermediate_size": 6144, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": 30.0, "pad_token_id": 0, "bos_token_id": 2,
        "eos_token_id": 1, "enable_moe_block": False, "tie_word_embeddings": True,
        "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 7,
        "rope_parameters": {"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                                               "rope_type": "proportional"},
                            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}}}


def _gemma_4_text(**changes) -> dict:
    return {**GEMMA_4_E2B, "text_config": {**GEMMA_4_E2B["text_config"], **changes}}


def test_published_gemma_4_e2b_config_writes_its_language_model():
    """Layers 15-34 share KV (double-wide MLPs), full layers have head_dim 512 with a quarter of it rotating."""
    calls = written_hparams(GEMMA_4_E2B, "gemma4")
    assert calls["block_count"] == 35 and calls["embedding_length"] == 1536 and calls["head_count_kv"] == 1
    assert calls["feed_forward_length"] == [6144] * 15 + [12288] * 20
    assert (calls["key_length"], calls["key_length_swa"], calls["rope_dimension_count"], calls["rope_dimension_count_swa"]) \
        == (512, 256, 512, 256)
    assert (calls["rope_freq_base"], calls["rope_freq_base_swa"]) == (1e6, 1e4)
    assert calls["shared_kv_layers"] == 20 and calls["embedding_length_per_layer_input"] == 256
    assert calls["sliding_window"] == 512 and calls["sliding_window_pattern"] == ([True] * 4 + [False]) * 7
    assert calls["final_logit_softcapping"] == 30.0
    factors = gguf_arch.gguf_gemma4.rope_freqs(gguf_arch.language_model_config(GEMMA_4_E2B))
    assert factors == [1.0] * 64 + [1e30] * 192


def test_published_gemma_4_e2b_norms_are_written_as_stored():
    """Gemma 4's RMSNorm multiplies by w (Gemma 1-3: 1 + w); the layer scalar gets its `.weight` name."""
    shapes = {"model.language_model.layers.0.input_layernorm.weight": (1536,),
              "model.language_model.layers.0.layer_scalar": (1,),
              "model.vision_tower.encoder.layers.0.mlp.up_proj.linear.weight": (3072, 768)}
    plans = {plan.gguf_name: plan for plan in gguf_arch.plan_from_shapes(shapes, GEMMA_4_E2B, "f16")}
    assert plans["blk.0.attn_norm.weight"].transform is None
    assert "blk.0.layer_output_scale.weight" in plans and "rope_freqs.weight" in plans
    assert len(plans) == 3  # the vision tower is not written


@pytest.mark.parametrize("changes, fragment", [
    ({"enable_moe_block": True}, "MoE"),
    ({"use_bidirectional_attention": "all"}, "bidirectional"),
    # the last unshared layers full then sliding: llama.cpp would reuse the wrong layers' KV
    ({"layer_types": ["sliding_attention"] * 13 + ["full_attention", "sliding_attention"] + ["sliding_attention"] * 19
      + ["full_attention"]}, "num_kv_shared_layers"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, "proportional"),
])
def test_gemma_4_configs_llama_cpp_would_run_differently_are_refused(changes, fragment):
    reason = architecture_support(_gemma_4_text(**changes))
    assert reason and fragment in reason and "\n" not in reason
MINISTRAL_3_3B = {  # mistralai/Ministral-3-3B-Instruct-2512-BF16 config.json (vision_config shortened)
    "architectures": ["Mistral3ForConditionalGeneration"], "dtype": "bfloat16", "image_token_index": 10,
    "model_type": "mistral3", "multimodal_projector_bias": False, "projector_hidden_act": "gelu",
    "spatial_merge_size": 2, "tie_word_embeddings": True, "vision_feature_layer": -1,
    "text_config": {
        "attention_dropout": 0.0, "head_dim": 128, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02,
        "intermediate_size": 9216, "max_position_embeddings": 262144, "model_type": "ministral3",
        "num_attention_heads": 32, "num_hidden_layers": 26, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_parameters": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 16.0, "llama_4_scaling_beta": 0.1,
                            "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 16384,
                            "rope_theta": 1000000.0, "rope_type": "yarn", "type": "yarn"},
        "sliding_window": None, "tie_word_embeddings": True, "use_cache": True, "vocab_size": 131072},
    "vision_config": {"head_dim": 64, "hidden_size": 1024, "model_type": "pixtral", "num_hidden_layers": 24,
                      "patch_size": 14, "image_size": 1540}}


def _ministral_3(**rope_or_text):
    text = MINISTRAL_3_3B["text_config"]
    rope = {**text["rope_parameters"], **{k: v for k, v in rope_or_text.items() if k in text["rope_parameters"]
                                          or k == "partial_rotary_factor"}}
    changed = {k: v for k, v in rope_or_text.items() if k not in rope}
    return {**MINISTRAL_3_3B, "text_config": {**text, **changed, "rope_parameters": rope}}


def test_published_ministral_3_config_writes_its_text_model_with_yarn_and_query_temperature():
    """YaRN factor 16 over 16384 positions with cos/sin unscaled (mscale = mscale_all_dim: llama.cpp's own
    0.1 ln 16 + 1 is cancelled), Llama 4's beta as the temperature key, head_dim 128 != 3072 / 32."""
    import gguf

    assert architecture_support(MINISTRAL_3_3B) is None and gguf_arch.gguf_arch(MINISTRAL_3_3B) == "mistral3"
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, MINISTRAL_3_3B, "mistral3")
    calls = writer.calls
    assert (calls["block_count"], calls["embedding_length"], calls["feed_forward_length"]) == (26, 3072, 9216)
    assert (calls["head_count"], calls["head_count_kv"], calls["key_length"], calls["rope_dimension_count"]) == (32, 8, 128, 128)
    assert calls["context_length"] == 262144 and calls["rope_freq_base"] == 1e6 and calls["layer_norm_rms_eps"] == 1e-5
    assert calls["rope_scaling_type"] == gguf.RopeScalingType.YARN and calls["rope_scaling_factor"] == 16.0
    assert calls["rope_scaling_orig_ctx_len"] == 16384
    assert calls["rope_scaling_attn_factors"] * (1 + 0.1 * math.log(16)) == pytest.approx(1.0)
    assert calls["attn_temperature_scale"] == 0.1 and "sliding_window" not in calls


def test_ministral_3_checkpoint_gguf_is_its_language_model_with_llama_rotary_order():
    shapes = {"language_model.model.embed_tokens.weight": (131072, 3072),
              "language_model.model.layers.0.self_attn.q_proj.weight": (4096, 3072),
              "language_model.model.layers.0.self_attn.k_proj.weight": (1024, 3072),
              "language_model.model.layers.0.self_attn.o_proj.weight": (3072, 4096),
              "language_model.lm_head.weight": (131072, 3072),  # tied: llama.cpp reuses token_embd
              "vision_tower.transformer.layers.0.attention.q_proj.weight": (1024, 1024),
              "multi_modal_projector.linear_1.weight": (3072, 1024)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, MINISTRAL_3_3B, "f16")}
    assert set(plans) == {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight"}
    rows = np.arange(4 * 8).reshape(4, 8)  # one head of 4 rows: halves [0 1 | 2 3] -> pairs [0 2 1 3]
    config = {**MINISTRAL_3_3B, "text_config": {**MINISTRAL_3_3B["text_config"], "num_attention_heads": 1}}
    q = plan_from_shapes({"language_model.model.layers.0.self_attn.q_proj.weight": (4, 8)}, config, "f16")[0]
    assert q.transform(rows)[:, 0].tolist() == [0, 16, 8, 24]
    assert plans["blk.0.attn_output.weight"].transform is None


@pytest.mark.parametrize("change, fragment", [
    ({"sliding_window": 4096}, "sliding_window 4096"),
    ({"rope_type": "default", "type": "default"}, "llama_4_scaling_beta with rope 'default'"),
    ({"partial_rotary_factor": 0.5}, "rope over 64 of 128"),
    ({"beta_fast": 16.0}, "beta_fast"),
])
def test_ministral_3_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support(_ministral_3(**change))
    assert reason and fragment in reason and "Mistral3ForConditionalGeneration" in reason and "\n" not in reason



# mistralai/Mistral-Small-3.1-24B-Instruct-2503 config.json, its keys as public code quotes them (a transformers
# 4.57 re-save has the same text_config and vision_config; 3.2-2506's text_config has the same values)
MISTRAL_SMALL_3_1 = {
    "architectures": ["Mistral3ForConditionalGeneration"], "image_token_index": 10, "model_type": "mistral3",
    "multimodal_projector_bias": False, "projector_hidden_act": "gelu", "spatial_merge_size": 2,
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "vision_feature_layer": -1,
    "text_config": {
        "attention_dropout": 0.0, "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120, "initializer_range": 0.02,
        "intermediate_size": 32768, "max_position_embeddings": 131072, "model_type": "mistral",
        "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_theta": 1000000000.0, "sliding_window": None, "use_cache": True, "vocab_size": 131072},
    "vision_config": {"attention_dropout": 0.0, "head_dim": 64, "hidden_act": "silu", "hidden_size": 1024,
                      "image_size": 1540, "initializer_range": 0.02, "intermediate_size": 4096, "model_type": "pixtral",
                      "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24, "patch_size": 14,
                      "rope_theta": 10000.0}}


def test_published_mistral_small_3_1_config_is_mistral3_without_yarn_and_the_standin_copies_it():
    """A plain mistral text_config: llama.cpp's converter writes it as mistral3 with Llama's keys only (no
    YaRN, no query temperature: those it writes for ministral3 text models). head_dim 128 != 5120 / 32 is
    the key/value length; rope base 1e9 unscaled; untied output; no window. The stand-in keeps every
    published text key that is not a size, and a sliding window (which llama.cpp's mistral3 lacks) is refused."""
    calls = written_hparams(MISTRAL_SMALL_3_1, "mistral3")
    assert (calls["block_count"], calls["embedding_length"], calls["feed_forward_length"]) == (40, 5120, 32768)
    assert (calls["head_count"], calls["head_count_kv"], calls["key_length"], calls["value_length"]) == (32, 8, 128, 128)
    assert calls["rope_dimension_count"] == 128 and calls["rope_freq_base"] == 1e9 and calls["context_length"] == 131072
    assert not {"rope_scaling_type", "attn_temperature_scale", "sliding_window"} & set(calls)
    tiny = tiny_config("mistral-small3", 100, 1, 2, 11).to_dict()
    text, published = tiny["text_config"], MISTRAL_SMALL_3_1["text_config"]
    same = ("model_type", "rms_norm_eps", "hidden_act", "sliding_window", "max_position_embeddings", "attention_dropout")
    assert {k: text.get(k) for k in same} == {k: published[k] for k in same}
    assert gguf_arch.rope_params(text) == gguf_arch.rope_params(published) and not text["tie_word_embeddings"]
    assert text["head_dim"] * text["num_attention_heads"] != text["hidden_size"]  # as 128 x 32 != 5120
    assert tiny["architectures"] == MISTRAL_SMALL_3_1["architectures"] and tiny["vision_config"]["num_hidden_layers"] == 1
    windowed = architecture_support({**MISTRAL_SMALL_3_1, "text_config": {**published, "sliding_window": 4096}})
    assert windowed and "sliding_window 4096; llama.cpp's mistral3 attends to the whole context" in windowed


def test_mistral_small_3_with_another_activation_is_refused():
    """llama.cpp's mistral3 graph computes SiLU whatever the config says; transformers' Mistral follows hidden_act."""
    reason = architecture_support({**MISTRAL_SMALL_3_1, "text_config": {**MISTRAL_SMALL_3_1["text_config"],
                                                                        "hidden_act": "gelu"}})
    assert reason and "Mistral3ForConditionalGeneration: hidden_act 'gelu'; llama.cpp's mistral3 runs SiLU only" in reason
    assert "\n" not in reason


FALCON3_1B = {  # tiiuae/Falcon3-1B-Instruct config.json
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 11,
    "eos_token_id": 11, "head_dim": 256, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 8192, "max_position_embeddings": 8192, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 8, "num_hidden_layers": 18, "num_key_value_heads": 4, "pretraining_tp": 1,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000042, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 131072}


def test_published_falcon3_config_is_llama_with_its_wide_heads_and_the_standin_copies_it():
    """Falcon3's 256-wide heads (8 x 256 = 2048) rotate whole, at base 1000042; the stand-in keeps every
    published key that is not a size."""
    calls = written_hparams(FALCON3_1B, "llama")
    assert calls["rope_freq_base"] == 1000042.0 and calls["rope_dimension_count"] == 256
    assert calls["head_count"] == 8 and calls["head_count_kv"] == 4 and calls["layer_norm_rms_eps"] == 1e-6
    assert calls["context_length"] == 8192 and calls["vocab_size"] == 131072 and "key_length" not in calls
    assert gguf_arch._computed_tensors(FALCON3_1B, "llama") == []  # no rope_scaling: no rope table
    tiny = tiny_config("falcon3", 100, None, 11, 12).to_dict()
    same = ("architectures", "rms_norm_eps", "attention_bias", "mlp_bias", "hidden_act", "tie_word_embeddings",
            "max_position_embeddings")
    assert {k: tiny.get(k) for k in same} == {k: FALCON3_1B[k] for k in same}
    assert gguf_arch.rope_params(tiny) == gguf_arch.rope_params(FALCON3_1B)  # transformers 5 keeps rope_parameters
    assert tiny["head_dim"] * tiny["num_attention_heads"] == tiny["hidden_size"]  # as in every Falcon3 size


def test_falcon3_with_rope_scaling_llama_cpp_runs_differently_is_refused():
    """A Falcon3 fine-tune stretched with YaRN: llama.cpp's llama graph would rotate it differently."""
    reason = architecture_support({**FALCON3_1B, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                                  "original_max_position_embeddings": 8192}})
    assert reason and "'yarn'" in reason and "\n" not in reason


# Qwen/Qwen3-30B-A3B config.json as published (Qwen3-235B-A22B differs in sizes only)
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
    "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
    "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": True,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "output_router_logits": False, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 151936,
}


def test_published_qwen3_30b_a3b_config_writes_llama_cpps_expert_keys():
    calls = written_hparams(QWEN3_30B_A3B, "qwen3moe")
    assert calls["expert_count"] == 128 and calls["expert_used_count"] == 8
    assert calls["expert_feed_forward_length"] == 768 and calls["feed_forward_length"] == 6144
    assert calls["key_length"] == 128 and calls["head_count_kv"] == 4 and calls["rope_freq_base"] == 1e6
    # transformers 5 saves the expert count as num_local_experts
    saved = {k: v for k, v in QWEN3_30B_A3B.items() if k != "num_experts"} | {"num_local_experts": 128}
    assert gguf_arch.gguf_moe.expert_count(saved) == 128


def _qwen3_moe_layer0(per_expert: bool) -> dict:
    shapes = {"model.embed_tokens.weight": (151936, 2048), "lm_head.weight": (151936, 2048),
              "model.layers.0.mlp.gate.weight": (128, 2048)}
    if per_expert:
        for e in range(128):
            shapes |= {f"model.layers.0.mlp.experts.{e}.gate_proj.weight": (768, 2048),
                       f"model.layers.0.mlp.experts.{e}.up_proj.weight": (768, 2048),
                       f"model.layers.0.mlp.experts.{e}.down_proj.weight": (2048, 768)}
    else:
        shapes |= {"model.layers.0.mlp.experts.gate_up_proj": (128, 1536, 2048),
                   "model.layers.0.mlp.experts.down_proj": (128, 2048, 768)}
    return shapes


@pytest.mark.parametrize("per_expert", [True, False])
def test_qwen3_moe_experts_become_stacked_gate_up_down(per_expert):
    plans = {p.gguf_name: p for p in plan_from_shapes(_qwen3_moe_layer0(per_expert), QWEN3_30B_A3B, "q8_0")}
    assert plans["blk.0.ffn_gate_inp.weight"].shape == (128, 2048)
    assert plans["blk.0.ffn_gate_exps.weight"].shape == plans["blk.0.ffn_up_exps.weight"].shape == (128, 768, 2048)
    assert plans["blk.0.ffn_down_exps.weight"].shape == (128, 2048, 768)
    assert not any("experts" in name for name in plans)
    gate, up = plans["blk.0.ffn_gate_exps.weight"], plans["blk.0.ffn_up_exps.weight"]
    if per_expert:  # expert e's weight is row e of the stack
        assert gate.stacked[5] == "model.layers.0.mlp.experts.5.gate_proj.weight"
        assert up.stacked[0] == "model.layers.0.mlp.experts.0.up_proj.weight" and len(up.stacked) == 128
    else:  # the fused weight's first half of each expert's rows is the gate
        fused = np.arange(2 * 1536 * 3, dtype=np.float32).reshape(2, 1536, 3)
        assert (gate.transform(fused) == fused[:, :768]).all() and (up.transform(fused) == fused[:, 768:]).all()


def test_qwen3_moe_with_an_expert_missing_is_one_line():
    shapes = _qwen3_moe_layer0(True)
    del shapes["model.layers.0.mlp.experts.7.up_proj.weight"]
    with pytest.raises(ModelError, match="layer 0 up_proj: weights for 127 experts, config.json says 128"):
        plan_from_shapes(shapes, QWEN3_30B_A3B, "f16")


@pytest.mark.parametrize("change, fragment", [
    ({"norm_topk_prob": False}, "norm_topk_prob false"),
    ({"mlp_only_layers": [0]}, "mlp_only_layers"),
    ({"decoder_sparse_step": 2}, "decoder_sparse_step"),
    ({"attention_bias": True}, "attention_bias"),
])
def test_qwen3_moe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**QWEN3_30B_A3B, **change})
    assert reason and fragment in reason and "\n" not in reason


# openai/gpt-oss-20b config.json as published (as public test code quotes it, e.g. circuit-tracer's gpt-oss test;
# gpt-oss-120b's differs in num_hidden_layers 36 and num_local_experts 128): MXFP4 experts, YaRN with truncate false
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0, "eos_token_id": 200002,
    "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096,
    "initializer_range": 0.02, "intermediate_size": 2880, "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4,
    "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": False,
    "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05, "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                                            "original_max_position_embeddings": 4096, "rope_type": "yarn",
                                            "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088,
}


def test_published_gpt_oss_20b_writes_llama_cpps_gpt_oss_keys():
    """llama.cpp's gpt-oss: the expert keys (expert width = intermediate_size), the window of its sliding
    layers (even ones, llama.cpp's default pattern), head_dim 64 apart from hidden/heads (45), YaRN 32x from 4096
    with llama.cpp's own 0.1 ln(32) + 1 cos/sin scale (transformers' default, so 1.0 is left); truncate false is
    written as it is (llama.cpp's converter does the same) and named as a caveat."""
    assert architecture_support(GPT_OSS_20B) is None
    calls = written_hparams(GPT_OSS_20B, "gpt-oss")
    assert (calls["expert_count"], calls["expert_used_count"], calls["expert_feed_forward_length"]) == (32, 4, 2880)
    assert (calls["sliding_window"], calls["key_length"], calls["value_length"], calls["head_count_kv"]) == (128, 64, 64, 8)
    assert (calls["rope_freq_base"], calls["rope_scaling_factor"], calls["rope_scaling_orig_ctx_len"]) == (150000.0, 32.0, 4096)
    assert calls["rope_scaling_attn_factors"] == pytest.approx(1.0) and calls["context_length"] == 131072
    assert [note for note in gguf_arch.gguf_caveats(GPT_OSS_20B) if "truncate false" in note]
    # other architectures' YaRN with truncate false is still refused (their converters do not write it)
    qwen3 = {**QWEN3_30B_A3B, "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
             "rope_scaling": {**GPT_OSS_20B["rope_scaling"], "factor": 4.0}}
    assert "truncate false" in architecture_support(qwen3)


def test_gpt_oss_fused_experts_are_split_at_the_interleave_and_transposed():
    """transformers' gate_up_proj [E, H, 2I] holds gate in the even columns and up in the odd ones (so does its
    bias [E, 2I]); llama.cpp wants ffn_gate_exps / ffn_up_exps [E, I, H] and ffn_down_exps [E, H, I] from
    down_proj [E, I, H]. Sinks become attn_sinks.weight; biases and sinks stay F32 in q8_0."""
    import gguf

    layer = "model.layers.0."
    shapes = {"model.embed_tokens.weight": (201088, 2880), "lm_head.weight": (201088, 2880),
              layer + "self_attn.sinks": (64,), layer + "mlp.router.weight": (32, 2880), layer + "mlp.router.bias": (32,),
              layer + "mlp.experts.gate_up_proj": (32, 2880, 5760), layer + "mlp.experts.gate_up_proj_bias": (32, 5760),
              layer + "mlp.experts.down_proj": (32, 2880, 2880), layer + "mlp.experts.down_proj_bias": (32, 2880),
              layer + "post_attention_layernorm.weight": (2880,)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, GPT_OSS_20B, "q8_0")}
    assert plans["blk.0.ffn_gate_exps.weight"].shape == plans["blk.0.ffn_up_exps.weight"].shape == (32, 2880, 2880)
    assert plans["blk.0.ffn_gate_exps.bias"].shape == (32, 2880) and plans["blk.0.ffn_down_exps.bias"].shape == (32, 2880)
    assert plans["blk.0.attn_sinks.weight"].shape == (64,) and "blk.0.post_attention_norm.weight" in plans
    assert plans["blk.0.ffn_gate_inp.weight"].qtype == plans["blk.0.ffn_up_exps.bias"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.0.ffn_down_exps.weight"].qtype == gguf.GGMLQuantizationType.Q8_0
    assert not any("experts" in name or "sinks" == name[-5:] for name in plans)
    fused = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # 2 experts, H 3, 2I 4: columns g u g u
    gate, up = plans["blk.0.ffn_gate_exps.weight"].transform(fused), plans["blk.0.ffn_up_exps.weight"].transform(fused)
    assert (gate == fused[:, :, 0::2].transpose(0, 2, 1)).all() and (up == fused[:, :, 1::2].transpose(0, 2, 1)).all()
    bias = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert (plans["blk.0.ffn_up_exps.bias"].transform(bias) == bias[:, 1::2]).all()
    down = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    assert (plans["blk.0.ffn_down_exps.weight"].transform(down) == down.transpose(0, 2, 1)).all()


@pytest.mark.parametrize("change, fragment", [
    ({"swiglu_limit": 10.0}, "swiglu_limit 10.0"),
    ({"swiglu_alpha": 1.5}, "swiglu_alpha"),
    ({"attention_bias": False}, "attention_bias false"),
    ({"sliding_window": None}, "no sliding_window"),
    ({"layer_types": ["full_attention", "sliding_attention"] * 12}, "layer_types"),
    ({"rope_scaling": {**GPT_OSS_20B["rope_scaling"], "beta_fast": 16.0}}, "beta_fast"),
])
def test_gpt_oss_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**GPT_OSS_20B, **change})
    assert reason and fragment in reason and "\n" not in reason


def test_published_granite_4_h_micro_is_granitehybrid_with_its_mamba_keys():
    assert architecture_support(GRANITE_4_H_MICRO) is None
    assert gguf_arch.gguf_arch(GRANITE_4_H_MICRO) == "granitehybrid"
    # transformers 5's names for the layer kinds (a merged model's config.json), its infinity as saved
    saved = {**GRANITE_4_H_MICRO, "time_step_limit": [0.0, {"__float__": "Infinity"}], "layer_types": [
        "full_attention" if kind == "attention" else "linear_attention" for kind in GRANITE_4_H_MICRO["layer_types"]]}
    assert gguf_arch.gguf_arch(saved) == "granitehybrid"
    calls = written_hparams(saved, "granitehybrid")
    assert calls["head_count_kv"] == [8 if i in (5, 15, 25, 35) else 0 for i in range(40)]
    assert (calls["ssm_conv_kernel"], calls["ssm_inner_size"], calls["ssm_state_size"], calls["ssm_time_step_rank"],
            calls["ssm_group_count"]) == (4, 4096, 128, 64, 1)
    assert calls["rope_scaling_finetuned"] is False  # NoPE: llama.cpp's granitehybrid reads it as "rotate"
    assert (calls["embedding_scale"], calls["residual_scale"], calls["attention_scale"], calls["logit_scale"],
            calls["feed_forward_length"]) == (12.0, 0.22, 0.015625, 8.0, 8192)
    # a Granite-4.0-H with rope on its attention layers rotates in llama.cpp too
    assert written_hparams({**saved, "position_embedding_type": "rope"}, "granitehybrid")["rope_scaling_finetuned"] is True



# ibm-granite/granite-4.0-h-tiny: 64 routed experts (6 per token, 512 wide) beside a 1024-wide shared_mlp
GRANITE_4_H_TINY = {**GRANITE_4_H_MICRO, "hidden_size": 1536, "num_attention_heads": 12, "num_key_value_heads": 4,
                    "intermediate_size": 512, "shared_intermediate_size": 1024, "num_local_experts": 64,
                    "num_experts_per_tok": 6, "mamba_n_heads": 48}


def test_published_granite_4_h_tiny_writes_its_experts_and_shared_expert():
    calls = written_hparams(GRANITE_4_H_TINY, "granitehybrid")
    assert (calls["expert_count"], calls["expert_used_count"], calls["feed_forward_length"],
            calls["expert_shared_feed_forward_length"], calls["ssm_inner_size"], calls["ssm_time_step_rank"]) == (
        64, 6, 512, 1024, 3072, 48)
    plans = {p.gguf_name: p.shape for p in plan_from_shapes(
        {"model.layers.0.block_sparse_moe.input_linear.weight": (64, 1024, 1536),
         "model.layers.0.block_sparse_moe.output_linear.weight": (64, 1536, 512),
         "model.layers.0.block_sparse_moe.router.layer.weight": (64, 1536),
         "model.layers.0.shared_mlp.input_linear.weight": (2048, 1536),
         "model.layers.0.shared_mlp.output_linear.weight": (1536, 1024)}, GRANITE_4_H_TINY, "f16")}
    assert plans == {"blk.0.ffn_gate_exps.weight": (64, 512, 1536), "blk.0.ffn_up_exps.weight": (64, 512, 1536),
                     "blk.0.ffn_down_exps.weight": (64, 1536, 512), "blk.0.ffn_gate_inp.weight": (64, 1536),
                     "blk.0.ffn_gate_shexp.weight": (1024, 1536), "blk.0.ffn_up_shexp.weight": (1024, 1536),
                     "blk.0.ffn_down_shexp.weight": (1536, 1024)}
    stacked = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)  # per expert, rows [gate; up]
    split = {p.gguf_name: p for p in gguf_arch._granite4_mlp_plans(
        "model.layers.0.block_sparse_moe.input_linear.weight", (2, 4, 3), "f16", True)}
    assert (split["blk.0.ffn_gate_exps.weight"].transform(stacked) == stacked[:, :2]).all()
    assert (split["blk.0.ffn_up_exps.weight"].transform(stacked) == stacked[:, 2:]).all()


def test_granite_4_h_mamba_weights_become_llama_cpps_ssm_tensors():
    config = {**GRANITE_4_H_MICRO, "hidden_size": 8, "mamba_n_heads": 4, "mamba_d_head": 4, "mamba_n_groups": 2,
              "mamba_d_state": 2, "num_attention_heads": 2, "num_key_value_heads": 1}
    shapes = {"model.layers.0.mamba.A_log": (4,), "model.layers.0.mamba.D": (4,), "model.layers.0.mamba.dt_bias": (4,),
              "model.layers.0.mamba.conv1d.weight": (24, 1, 4), "model.layers.0.mamba.norm.weight": (16,),
              "model.layers.0.mamba.in_proj.weight": (44, 8), "model.layers.0.mamba.out_proj.weight": (8, 16)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, config, "q8_0")}
    assert {name: (plan.shape, plan.qtype.name) for name, plan in plans.items()} == {
        "blk.0.ssm_a": ((4, 1), "F32"), "blk.0.ssm_d": ((4, 1), "F32"), "blk.0.ssm_dt.bias": ((4,), "F32"),
        "blk.0.ssm_conv1d.weight": ((24, 4), "F32"), "blk.0.ssm_norm.weight": ((2, 8), "F32"),
        "blk.0.ssm_in.weight": ((44, 8), "F16"), "blk.0.ssm_out.weight": ((8, 16), "F16")}
    a_log = np.log(np.arange(1, 5, dtype=np.float32))
    assert np.allclose(plans["blk.0.ssm_a"].transform(a_log), -np.arange(1, 5).reshape(4, 1))
    norm = np.arange(16, dtype=np.float32)  # group g normalises channels g*8 .. g*8+7
    assert (plans["blk.0.ssm_norm.weight"].transform(norm) == norm.reshape(2, 8)).all()
    kernel = np.arange(24 * 4, dtype=np.float32).reshape(24, 1, 4)
    assert (plans["blk.0.ssm_conv1d.weight"].transform(kernel) == kernel[:, 0]).all()


# tiiuae/Falcon-H1-0.5B-Instruct's config values as NVIDIA Megatron-Bridge's Falcon-H1 bridge test lists them
# (tests/unit_tests/models/falcon_h1/, FALCON_H1_500M_CONFIG); mamba_d_ssm (1536 = 24 heads x 64), which that list
# leaves out and the published config.json sets, added (transformers' default 1024 fails its own heads check)
FALCON_H1_0_5B = {
    "architectures": ["FalconH1ForCausalLM"], "model_type": "falcon_h1", "attention_bias": False,
    "attention_in_multiplier": 1.0, "attention_out_multiplier": 0.9375, "embedding_multiplier": 5.656854249492381,
    "head_dim": 64, "hidden_act": "silu", "hidden_size": 1024, "intermediate_size": 2048,
    "key_multiplier": 0.39062499999999994, "lm_head_multiplier": 0.0390625, "mamba_chunk_size": 128,
    "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_head": 64, "mamba_d_ssm": 1536, "mamba_d_state": 128,
    "mamba_expand": 2, "mamba_n_groups": 1, "mamba_n_heads": 24, "mamba_norm_before_gate": False,
    "mamba_proj_bias": False, "mamba_rms_norm": False, "max_position_embeddings": 16384, "mlp_bias": False,
    "mlp_multipliers": [0.8838834764831844, 0.5859375], "num_attention_heads": 8, "num_hidden_layers": 36,
    "num_key_value_heads": 2, "projectors_bias": False, "rms_norm_eps": 1e-5, "rope_scaling": None,
    "rope_theta": 100000000000.0, "ssm_in_multiplier": 1.25,
    "ssm_multipliers": [0.3535533905932738, 0.25, 0.3535533905932738, 0.5, 0.3535533905932738],
    "ssm_out_multiplier": 0.23570226039551587, "tie_word_embeddings": False, "vocab_size": 32784,
}


def test_falcon_h1_0_5b_is_falcon_h1_with_its_mamba_keys_and_folded_multipliers():
    calls = written_hparams(FALCON_H1_0_5B, "falcon-h1")
    assert (calls["ssm_conv_kernel"], calls["ssm_inner_size"], calls["ssm_state_size"], calls["ssm_time_step_rank"],
            calls["ssm_group_count"]) == (4, 1536, 128, 24, 1)  # inner size mamba_d_ssm, not expand x hidden
    assert (calls["head_count"], calls["head_count_kv"], calls["key_length"], calls["rope_dimension_count"],
            calls["feed_forward_length"], calls["rope_freq_base"]) == (8, 2, 64, 64, 2048, 1e11)
    shapes = {"model.embed_tokens.weight": (32784, 1024), "lm_head.weight": (32784, 1024),
              "model.layers.0.self_attn.k_proj.weight": (128, 1024), "model.layers.0.self_attn.q_proj.weight": (512, 1024),
              "model.layers.0.self_attn.o_proj.weight": (1024, 512),
              "model.layers.0.feed_forward.gate_proj.weight": (2048, 1024),
              "model.layers.0.feed_forward.up_proj.weight": (2048, 1024),
              "model.layers.0.feed_forward.down_proj.weight": (1024, 2048),
              "model.layers.0.mamba.in_proj.weight": (3352, 1024), "model.layers.0.mamba.out_proj.weight": (1024, 1536)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, FALCON_H1_0_5B, "f16")}
    factors = {name: float(plan.transform(np.ones((2, 2), dtype=np.float32))[0, 0]) if plan.transform else 1.0
               for name, plan in plans.items() if name != "blk.0.ssm_in.weight"}
    assert factors == pytest.approx({
        "token_embd.weight": 5.656854249492381, "output.weight": 0.0390625, "blk.0.attn_k.weight": 0.39062499999999994,
        "blk.0.attn_q.weight": 1.0, "blk.0.attn_output.weight": 0.9375, "blk.0.ffn_gate.weight": 0.8838834764831844,
        "blk.0.ffn_up.weight": 1.0, "blk.0.ffn_down.weight": 0.5859375, "blk.0.ssm_out.weight": 0.23570226039551587})
    # in_proj rows [z 1536; x 1536; B 128; C 128; dt 24], each block x ssm_in_multiplier x its ssm_multiplier
    rows = plans["blk.0.ssm_in.weight"].transform(np.ones((3352, 1), dtype=np.float32))[:, 0]
    starts = (0, 1536, 3072, 3200, 3328)
    assert [float(rows[start]) for start in starts] == pytest.approx(
        [1.25 * m for m in FALCON_H1_0_5B["ssm_multipliers"]])
    assert all((rows[a:b] == rows[a]).all() for a, b in zip(starts, (*starts[1:], 3352)))


@pytest.mark.parametrize("change, fragment", [
    ({"mamba_rms_norm": True, "mamba_norm_before_gate": True}, "normalizes before the gate"),
    ({"attention_bias": True, "projectors_bias": True}, "attention_bias, projectors_bias true"),
    ({"tie_word_embeddings": True}, "tie_word_embeddings true"),
    ({"mamba_d_ssm": 1024}, "mamba_n_heads 24 x mamba_d_head 64 must equal the Mamba-2 inner size (1024)"),
    ({"time_step_limit": [0.0, 10.0]}, "time_step_limit [0.0, 10.0]"),
    ({"hidden_act": "gelu"}, "llama.cpp's falcon-h1 runs SiLU only"),
    ({"ssm_multipliers": [1.0, 1.0]}, "ssm_multipliers must list 5 values"),
    ({"head_dim": 64, "partial_rotary_factor": 0.5}, "rope over 32 of 64 head dims"),
])
def test_falcon_h1_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**FALCON_H1_0_5B, **change})
    assert reason and fragment in reason and "\n" not in reason, reason


def test_falcon_h1_with_the_gated_norm_after_the_gate_is_supported():
    assert architecture_support({**FALCON_H1_0_5B, "mamba_rms_norm": True, "mamba_norm_before_gate": False}) is None


# nvidia/NVIDIA-Nemotron-Nano-9B-v2's config values as public code quoting its config.json lists them (sizes, the
# 56-layer hybrid_override_pattern, the Mamba-2 keys); the others as published or NemotronHConfig's defaults
NEMOTRON_NANO_9B_V2 = {
    "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "hidden_size": 4480,
    "intermediate_size": 15680, "num_hidden_layers": 56, "num_attention_heads": 40, "num_key_value_heads": 8,
    "head_dim": 128, "vocab_size": 131072, "max_position_embeddings": 131072,
    "hybrid_override_pattern": "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
    "ssm_state_size": 128, "conv_kernel": 4, "n_groups": 8, "mamba_num_heads": 128, "mamba_head_dim": 80,
    "mamba_hidden_act": "silu", "mlp_hidden_act": "relu2", "layer_norm_epsilon": 1e-5, "use_bias": False,
    "use_conv_bias": True, "mlp_bias": False, "attention_bias": False, "time_step_limit": [0.0, float("inf")],
    "tie_word_embeddings": False, "bos_token_id": 1, "pad_token_id": 0,
}


def test_nemotron_nano_9b_v2_is_nemotron_h_with_its_layer_kinds_and_mamba_keys():
    pattern = NEMOTRON_NANO_9B_V2["hybrid_override_pattern"]
    # transformers 5's saved form: the kinds as layers_block_type, no num_hidden_layers, infinity as saved
    saved = {key: value for key, value in NEMOTRON_NANO_9B_V2.items()
             if key not in ("hybrid_override_pattern", "num_hidden_layers")}
    saved.update(time_step_limit=[0.0, {"__float__": "Infinity"}], layers_block_type=[
        {"M": "linear_attention", "*": "full_attention", "-": "mlp"}[letter] for letter in pattern])
    for config in (NEMOTRON_NANO_9B_V2, saved):
        calls = written_hparams(config, "nemotron_h")
        assert calls["block_count"] == 56
        assert calls["head_count_kv"] == [8 if letter == "*" else 0 for letter in pattern]
        assert calls["feed_forward_length"] == [15680 if letter == "-" else 0 for letter in pattern]
        assert (calls["ssm_conv_kernel"], calls["ssm_inner_size"], calls["ssm_state_size"], calls["ssm_time_step_rank"],
                calls["ssm_group_count"]) == (4, 10240, 128, 128, 8)  # inner 128 heads x 80, not expand x hidden
        assert (calls["head_count"], calls["key_length"], calls["value_length"]) == (40, 128, 128)
        assert calls["layer_norm_eps"] == calls["layer_norm_rms_eps"] == 1e-5
        assert not [key for key in calls if key.startswith("rope")]  # its attention is not rotated
    assert sum(kv > 0 for kv in calls["head_count_kv"]) == 4


def test_nemotron_h_config_saved_without_a_layer_count_gets_it_from_its_layer_kinds(tmp_path):
    """NemotronHConfig derives num_hidden_layers from layers_block_type and saves none; ducktune's config reader
    (the training plan, export) counts the kinds."""
    from ducktune.models.loading import model_config

    tiny_config("nemotron-h", 300, 1, 2, 0).save_pretrained(tmp_path)
    assert "num_hidden_layers" not in json.loads((tmp_path / "config.json").read_text())
    assert model_config(tmp_path)["num_hidden_layers"] == 6


def test_nemotron_h_block_norm_stays_whole_and_the_mixer_tensors_become_ssm_tensors():
    """The block's RMS norm (`.norm.`) is one vector; only the Mamba-2 mixer's gated norm is grouped."""
    shapes = {"backbone.layers.0.norm.weight": (4480,), "backbone.layers.0.mixer.norm.weight": (10240,),
              "backbone.layers.0.mixer.A_log": (128,), "backbone.layers.0.mixer.dt_bias": (128,),
              "backbone.layers.0.mixer.conv1d.weight": (12288, 1, 4), "backbone.layers.0.mixer.in_proj.weight": (22656, 4480),
              "backbone.layers.1.mixer.up_proj.weight": (15680, 4480), "backbone.layers.14.mixer.q_proj.weight": (5120, 4480)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, NEMOTRON_NANO_9B_V2, "q8_0")}
    assert {name: (plan.shape, plan.qtype.name) for name, plan in plans.items()} == {
        "blk.0.attn_norm.weight": ((4480,), "F32"), "blk.0.ssm_norm.weight": ((8, 1280), "F32"),
        "blk.0.ssm_a": ((128, 1), "F32"), "blk.0.ssm_dt.bias": ((128,), "F32"),
        "blk.0.ssm_conv1d.weight": ((12288, 4), "F32"), "blk.0.ssm_in.weight": ((22656, 4480), "Q8_0"),
        "blk.1.ffn_up.weight": ((15680, 4480), "Q8_0"), "blk.14.attn_q.weight": ((5120, 4480), "Q8_0")}
    assert plans["blk.0.attn_norm.weight"].transform is None
    assert plans["blk.14.attn_q.weight"].transform is None  # no rope: rows as stored


@pytest.mark.parametrize("change, fragment", [
    ({"hybrid_override_pattern": "M*E" * 18 + "M-", "num_hidden_layers": 56}, "nemotron_h_moe"),
    ({"hybrid_override_pattern": "M*-X"}, "must list M, *, - or E layers"),
    ({"num_hidden_layers": 52}, "num_hidden_layers 52 but 56 layer kinds"),
    ({"mlp_hidden_act": "silu"}, "mlp_hidden_act 'silu'"),
    ({"use_bias": True}, "use_bias true"),
    ({"mamba_hidden_act": "gelu"}, "mamba_hidden_act 'gelu'"),
    ({"time_step_limit": [0.0, 10.0]}, "time_step_limit [0.0, 10.0]"),
    ({"n_groups": 3}, "n_groups 3 does not divide mamba_num_heads x mamba_head_dim (10240)"),
])
def test_nemotron_h_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**NEMOTRON_NANO_9B_V2, **change})
    assert reason and fragment in reason and "\n" not in reason, reason


@pytest.mark.parametrize("change, fragment", [
    ({"num_local_experts": 1, "num_experts_per_tok": 1}, "num_local_experts 1 with num_experts_per_tok 1"),
    ({"num_local_experts": 64, "num_experts_per_tok": 0}, "needs 2+ experts and a top-k"),
    ({"mamba_proj_bias": True}, "mamba_proj_bias"),
    ({"mamba_expand": 1, "mamba_d_head": 32}, "mamba_expand 1"),
    ({"mamba_d_head": 32}, "mamba_n_heads 64 x mamba_d_head 32"),
    ({"time_step_limit": [0.001, 0.1]}, "time_step_limit [0.001, 0.1]"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"layer_types": ["mamba"] * 39}, "layer_types must list 40"),
])
def test_granite_4_h_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**GRANITE_4_H_MICRO, **change})
    assert reason and fragment in reason and "\n" not in reason and reason.startswith("GGUF export of Granite"), reason
# stabilityai/stablelm-2-1_6b-chat config.json: its keys and values (no copy of the file was reachable offline; the
# transformers-native StableLmForCausalLM form, as the repository has published it since transformers 4.38)
STABLELM_2_1_6B_CHAT = {
    "architectures": ["StableLmForCausalLM"], "model_type": "stablelm", "bos_token_id": 100257, "eos_token_id": 100257,
    "hidden_act": "silu", "hidden_dropout": 0.0, "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 5632, "layer_norm_eps": 1e-05, "max_position_embeddings": 4096, "num_attention_heads": 32,
    "num_hidden_layers": 24, "num_key_value_heads": 32, "partial_rotary_factor": 0.25, "qk_layernorm": False,
    "rope_scaling": None, "rope_theta": 10000, "tie_word_embeddings": False, "torch_dtype": "float16",
    "use_cache": True, "use_parallel_residual": False, "use_qkv_bias": True, "vocab_size": 100352}
# stabilityai/stablelm-zephyr-3b (StableLM 3B 4E1T): GPT-NeoX's vocabulary, no q/k/v biases
STABLELM_ZEPHYR_3B = {**STABLELM_2_1_6B_CHAT, "bos_token_id": 0, "eos_token_id": 0, "hidden_size": 2560,
                      "intermediate_size": 6912, "num_hidden_layers": 32, "use_qkv_bias": False, "vocab_size": 50304}
# stabilityai/stablelm-2-12b: grouped-query attention, per-head q/k LayerNorms and the parallel residual
STABLELM_2_12B = {**STABLELM_2_1_6B_CHAT, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                  "num_key_value_heads": 8, "qk_layernorm": True, "use_parallel_residual": True, "use_qkv_bias": False}
# nvidia/Nemotron-Mini-4B-Instruct config.json: its keys and values (no copy of the file was reachable offline)
NEMOTRON_MINI_4B = {
    "architectures": ["NemotronForCausalLM"], "model_type": "nemotron", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 2, "eos_token_id": 3, "head_dim": 128, "hidden_act": "relu2", "hidden_size": 3072,
    "initializer_range": 0.0134, "intermediate_size": 9216, "max_position_embeddings": 4096, "mlp_bias": False,
    "norm_eps": 1e-05, "num_attention_heads": 24, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "partial_rotary_factor": 0.5, "rope_scaling": None, "rope_theta": 10000, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 256000}


@pytest.mark.parametrize("config, rotated", [(STABLELM_2_1_6B_CHAT, 16), (STABLELM_ZEPHYR_3B, 20), (STABLELM_2_12B, 40)],
                         ids=["stablelm-2-1_6b-chat", "stablelm-zephyr-3b", "stablelm-2-12b"])
def test_published_stablelm_configs_rotate_a_quarter_of_each_head_with_layer_norm(config, rotated):
    calls = written_hparams(config, "stablelm")
    assert calls["rope_dimension_count"] == rotated and calls["layer_norm_eps"] == 1e-5
    assert "layer_norm_rms_eps" not in calls and "key_length" not in calls
    assert calls["feed_forward_length"] == config["intermediate_size"]
    assert calls["head_count_kv"] == config["num_key_value_heads"] and calls["context_length"] == 4096


def test_stablelm_standin_copies_the_published_keys():
    tiny = tiny_config("stablelm2", 100, 1, 1, 1).to_dict()
    same = ("architectures", "layer_norm_eps", "use_qkv_bias", "qk_layernorm", "use_parallel_residual", "hidden_act",
            "tie_word_embeddings", "max_position_embeddings")
    assert {k: tiny.get(k) for k in same} == {k: STABLELM_2_1_6B_CHAT[k] for k in same}
    assert gguf_arch.rope_params(tiny) == gguf_arch.rope_params(STABLELM_2_1_6B_CHAT)


def test_stablelm_2_12b_head_norms_are_stacked_per_layer_in_head_order():
    shapes = {f"model.layers.0.self_attn.{kind}_layernorm.norms.{h}.weight": (160,)  # head_dim 5120 / 32
              for kind, heads in (("q", 32), ("k", 8)) for h in range(heads)}
    shapes |= {"model.layers.0.self_attn.q_proj.weight": (5120, 5120), "model.layers.0.input_layernorm.weight": (5120,),
               "model.layers.0.input_layernorm.bias": (5120,)}
    plans = {plan.gguf_name: plan for plan in plan_from_shapes(shapes, {**STABLELM_2_12B, "num_hidden_layers": 1}, "q8_0")}
    assert set(plans) == {"blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight", "blk.0.attn_q.weight",
                          "blk.0.attn_norm.weight", "blk.0.attn_norm.bias"}
    q_norm, k_norm = plans["blk.0.attn_q_norm.weight"], plans["blk.0.attn_k_norm.weight"]
    assert q_norm.shape == (32, 160) and k_norm.shape == (8, 160) and q_norm.qtype.name == "F32"
    assert q_norm.stacked == tuple(f"model.layers.0.self_attn.q_layernorm.norms.{h}.weight" for h in range(32))
    with pytest.raises(ModelError, match="model: layer 0 has no k_layernorm weight for head 3"):
        plan_from_shapes({k: v for k, v in shapes.items() if not k.endswith("k_layernorm.norms.3.weight")},
                         {**STABLELM_2_12B, "num_hidden_layers": 1}, "f16")


@_mark(*requires_llama_cpp)
def test_stablelm_2_12b_shape_runs_in_llama_cpp(tokenizer, prompt_ids, tmp_path):
    """StableLM 2 12B's shape: per-head q/k LayerNorms (each head its own weights) and the parallel residual (no
    post_attention_layernorm: llama.cpp then feeds the MLP the attention's input norm), with grouped-query heads."""
    from transformers import StableLmConfig, StableLmForCausalLM

    config = tiny_config("stablelm2", len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id).to_dict()
    config = StableLmConfig(**{**config, "qk_layernorm": True, "use_parallel_residual": True, "use_qkv_bias": False,
                               "num_key_value_heads": 2, "initializer_range": INIT_RANGE})
    torch.manual_seed(0)
    model = StableLmForCausalLM(config).float().eval()
    with torch.no_grad():  # per-head weights initialised to 1: make each head's differ, so their order shows
        for name, weight in model.named_parameters():
            if "_layernorm.norms." in name:
                weight.uniform_(0.5, 1.5)
    assert model.model.layers[0].post_attention_layernorm is None
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    path = tmp_path / "stablelm-12b-shape.gguf"
    summary = write_gguf(tmp_path / "model", path, "f16", NAME, tokenizer, EOT, log=lambda *a: None)
    _, tensors = gguf_fields(path)
    assert "blk.0.ffn_norm.weight" not in tensors and tensors["blk.1.attn_k_norm.weight"] == (2, 16)
    agree, positions, diff = agreement(hf_logits(model, prompt_ids), llama_cpp_logits(path, prompt_ids), F16_MARGIN)
    assert positions >= 20 and agree == 1.0 and diff < F16_MAX_DIFF, (agree, positions, diff, summary)


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"tie_word_embeddings": True}, "tied embeddings"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}}, "'yarn'"),
])
def test_stablelm_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**STABLELM_2_1_6B_CHAT, **change})
    assert reason and fragment in reason and "StableLmForCausalLM" in reason and "\n" not in reason


def test_published_nemotron_mini_config_rotates_half_of_each_head_with_layer_norm():
    calls = written_hparams(NEMOTRON_MINI_4B, "nemotron")
    assert calls["rope_dimension_count"] == 64 and calls["layer_norm_eps"] == 1e-5 and "layer_norm_rms_eps" not in calls
    assert calls["head_count"] == 24 and calls["head_count_kv"] == 8 and calls["feed_forward_length"] == 9216
    assert calls["context_length"] == 4096 and "key_length" not in calls
    tiny = tiny_config("nemotron-mini", 100, 2, 3, 0).to_dict()
    same = ("architectures", "norm_eps", "hidden_act", "attention_bias", "mlp_bias", "tie_word_embeddings",
            "max_position_embeddings")
    assert {k: tiny.get(k) for k in same} == {k: NEMOTRON_MINI_4B[k] for k in same}
    assert gguf_arch.rope_params(tiny) == gguf_arch.rope_params(NEMOTRON_MINI_4B)


def test_published_nemotron_weights_get_layer_norm_weights_plus_one_and_no_gate():
    shapes = {"model.embed_tokens.weight": (256000, 3072), "model.norm.weight": (3072,), "model.norm.bias": (3072,),
              "lm_head.weight": (256000, 3072), "model.layers.0.input_layernorm.weight": (3072,),
              "model.layers.0.input_layernorm.bias": (3072,), "model.layers.0.post_attention_layernorm.weight": (3072,),
              "model.layers.0.mlp.up_proj.weight": (9216, 3072), "model.layers.0.mlp.down_proj.weight": (3072, 9216),
              "model.layers.0.self_attn.q_proj.weight": (3072, 3072)}
    plans = {plan.gguf_name: plan for plan in plan_from_shapes(shapes, {**NEMOTRON_MINI_4B, "num_hidden_layers": 1}, "f16")}
    assert set(plans) == {"token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight",
                          "blk.0.attn_norm.weight", "blk.0.attn_norm.bias", "blk.0.ffn_norm.weight", "blk.0.ffn_up.weight",
                          "blk.0.ffn_down.weight", "blk.0.attn_q.weight"}
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        np.testing.assert_array_equal(plans[name].transform(np.zeros(3, np.float32)), np.ones(3, np.float32))
    for name in ("output_norm.bias", "blk.0.attn_norm.bias", "blk.0.attn_q.weight", "blk.0.ffn_up.weight"):
        assert plans[name].transform is None  # biases as stored; q/k rotate in halves, as HF stores them


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "silu"}, "hidden_act 'silu'"),
    ({"tie_word_embeddings": True}, "tied embeddings"),
    ({"head_dim": 64}, "heads x head_dim (24 x 64)"),
])
def test_nemotron_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**NEMOTRON_MINI_4B, **change})
    assert reason and fragment in reason and "NemotronForCausalLM" in reason and "\n" not in reason
APERTUS_8B = {  # swiss-ai/Apertus-8B-Instruct-2509 config.json, its keys as public loaders quote it (ollama's mlxrunner
    # apertus tests; the published file was not reachable from here)
    "architectures": ["ApertusForCausalLM"], "model_type": "apertus", "attention_bias": False, "attention_dropout": 0.0,
    "hidden_act": "xielu", "hidden_dropout": 0.0, "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 21504, "max_position_embeddings": 65536, "mlp_bias": False, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "post_norm": False, "qk_norm": True, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3", "type": "llama3"},
    "rope_theta": 12000000, "tie_word_embeddings": False, "vocab_size": 131072, "dtype": "bfloat16"}


def test_published_apertus_8b_config_is_apertus_with_its_llama3_table_and_no_gate():
    assert architecture_support(APERTUS_8B) is None
    calls = written_hparams(APERTUS_8B, "apertus")
    assert calls["rope_freq_base"] == 12000000.0 and calls["rope_dimension_count"] == 128
    assert calls["feed_forward_length"] == 21504 and calls["head_count_kv"] == 8 and calls["context_length"] == 65536
    assert "key_length" not in calls and "rope_scaling_type" not in calls  # llama3 scaling is the table alone
    layer = "model.layers.0."
    plans = {p.gguf_name: p for p in plan_from_shapes({
        layer + "self_attn.q_proj.weight": (4096, 4096), layer + "self_attn.q_norm.weight": (128,),
        layer + "attention_layernorm.weight": (4096,), layer + "feedforward_layernorm.weight": (4096,),
        layer + "mlp.up_proj.weight": (21504, 4096), layer + "mlp.down_proj.weight": (4096, 21504),
        layer + "mlp.act_fn.alpha_p": (1,), layer + "mlp.act_fn.alpha_n": (1,), layer + "mlp.act_fn.beta": (),
        layer + "mlp.act_fn.eps": (), "model.embed_tokens.weight": (131072, 4096), "lm_head.weight": (131072, 4096)},
        APERTUS_8B, "f16")}
    assert set(plans) == {"blk.0.attn_q.weight", "blk.0.attn_q_norm.weight", "blk.0.attn_norm.weight",
                          "blk.0.ffn_norm.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "token_embd.weight",
                          "output.weight", "rope_freqs.weight"}  # xIELU's scalars are keys, not tensors
    assert plans["blk.0.attn_q.weight"].transform is None  # rotate-half, as llama.cpp's NEOX rope reads it
    assert plans["rope_freqs.weight"].shape == (64,)


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "silu"}, "hidden_act 'silu': llama.cpp's apertus runs xIELU only"),
    ({"qk_norm": False}, "qk_norm false"),
    ({"post_norm": True}, "post_norm true"),
    ({"attention_bias": True}, "attention_bias true"),
    ({"tie_word_embeddings": True}, "loads an output head of its own"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192}},
     "does not support rope scaling 'yarn'"),
])
def test_apertus_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**APERTUS_8B, **change})
    assert reason and fragment in reason and "\n" not in reason


def test_xielu_scalars_missing_for_a_layer_are_named():
    names = [f"model.layers.{i}.mlp.act_fn.{s}" for i in range(2) for s in ("alpha_p", "alpha_n", "beta", "eps")]
    with pytest.raises(ModelError, match=r"xIELU beta found for 1 of 2 layers"):
        xielu_values([n for n in names if n != "model.layers.1.mlp.act_fn.beta"], lambda name: 0.5, 2, "model")


AFM_4_5B = {  # arcee-ai/AFM-4.5B config.json, its values as a public audit of the published snapshots lists them (the
    # file itself was not reachable from here)
    "architectures": ["ArceeForCausalLM"], "model_type": "arcee", "attention_bias": False, "hidden_act": "relu2",
    "hidden_size": 2560, "head_dim": 128, "intermediate_size": 18432, "max_position_embeddings": 65536,
    "mlp_bias": False, "num_attention_heads": 20, "num_hidden_layers": 36, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False, "vocab_size": 128005,
    "bos_token_id": 128000, "eos_token_id": 128003, "use_cache": False,
    "rope_scaling": {"rope_type": "yarn", "factor": 20.0, "original_max_position_embeddings": 4096,
                     "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0}}


def test_afm_config_is_arcee_with_yarn_keys_and_rotary_reordering():
    assert architecture_support(AFM_4_5B) is None
    calls = written_hparams(AFM_4_5B, "arcee")
    assert calls["rope_dimension_count"] == 128 and calls["feed_forward_length"] == 18432 and calls["head_count_kv"] == 4
    assert calls["rope_scaling_factor"] == 20.0 and calls["rope_scaling_orig_ctx_len"] == 4096  # the explicit factor
    assert calls["rope_scaling_attn_factors"] == pytest.approx(1.0)  # transformers' 0.1 ln 20 + 1 is llama.cpp's own
    plans = {p.gguf_name: p for p in plan_from_shapes({
        "model.layers.0.self_attn.q_proj.weight": (2560, 2560), "model.layers.0.mlp.up_proj.weight": (18432, 2560),
        "model.embed_tokens.weight": (128005, 2560), "lm_head.weight": (128005, 2560)}, AFM_4_5B, "f16")}
    assert set(plans) == {"blk.0.attn_q.weight", "blk.0.ffn_up.weight", "token_embd.weight", "output.weight"}
    assert plans["blk.0.attn_q.weight"].transform is not None  # halves -> pairs: llama.cpp's arcee rotates pairs


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_act": "silu"}, "hidden_act 'silu'; llama.cpp's arcee runs ReLU^2"),
    ({"mlp_bias": True}, "mlp_bias true"),
    ({"rope_scaling": {**AFM_4_5B["rope_scaling"], "beta_fast": 64.0}}, "beta_fast/beta_slow"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}},
     "does not support rope scaling 'llama3'"),
    ({"partial_rotary_factor": 0.5}, "llama.cpp's arcee rotates whole heads"),
])
def test_afm_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**AFM_4_5B, **change})
    assert reason and fragment in reason and "\n" not in reason


# allenai/OLMoE-1B-7B-0125-Instruct config.json: its keys and values as the model card and public copies of it
# give them (no verbatim file was reachable here, so it is not in tests/data/published_configs)
OLMOE_1B_7B_0125 = {
    "architectures": ["OlmoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "clip_qkv": None,
    "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 1024, "max_position_embeddings": 4096, "model_type": "olmoe", "norm_topk_prob": False,
    "num_attention_heads": 16, "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 16,
    "num_key_value_heads": 16, "output_router_logits": False, "pad_token_id": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "rope_theta": 10000.0, "router_aux_loss_coef": 0.01, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 50304,
}


def test_published_olmoe_config_writes_llama_cpps_olmoe_keys():
    calls = written_hparams(OLMOE_1B_7B_0125, "olmoe")
    assert calls["expert_count"] == 64 and calls["expert_used_count"] == 8
    # llama.cpp's olmoe sizes its experts by feed_forward_length: the experts' intermediate_size
    assert calls["feed_forward_length"] == 1024 and "expert_feed_forward_length" not in calls
    assert calls["head_count"] == calls["head_count_kv"] == 16 and calls["rope_freq_base"] == 10000.0
    assert calls["layer_norm_rms_eps"] == 1e-5 and "key_length" not in calls


def test_olmoe_experts_and_router_become_llama_cpps_tensors():
    import gguf

    shapes = {"model.embed_tokens.weight": (50304, 2048), "lm_head.weight": (50304, 2048),
              "model.layers.0.mlp.gate.weight": (64, 2048), "model.layers.0.self_attn.q_norm.weight": (2048,),
              "model.layers.0.self_attn.k_norm.weight": (2048,)}
    for e in range(64):
        shapes |= {f"model.layers.0.mlp.experts.{e}.{kind}.weight": (1024, 2048) for kind in ("gate_proj", "up_proj")}
        shapes[f"model.layers.0.mlp.experts.{e}.down_proj.weight"] = (2048, 1024)
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, OLMOE_1B_7B_0125, "q8_0")}
    assert plans["blk.0.ffn_gate_exps.weight"].shape == (64, 1024, 2048)
    assert plans["blk.0.ffn_down_exps.weight"].stacked[3] == "model.layers.0.mlp.experts.3.down_proj.weight"
    assert plans["blk.0.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32  # near-tie routing kept
    assert plans["blk.0.attn_q_norm.weight"].shape == (2048,) and plans["output.weight"].shape == (50304, 2048)


@pytest.mark.parametrize("change, fragment", [
    ({"norm_topk_prob": True}, "norm_topk_prob true; llama.cpp's olmoe never renormalizes"),
    ({"clip_qkv": 8.0}, "clip_qkv 8.0"),
    ({"tie_word_embeddings": True}, "tie_word_embeddings"),
    ({"attention_bias": True}, "attention_bias"),
    ({"head_dim": 256}, "heads x head_dim (16 x 256)"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
])
def test_olmoe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**OLMOE_1B_7B_0125, **change})
    assert reason and fragment in reason and "\n" not in reason


# ibm-granite/granite-3.1-3b-a800m-instruct config.json: sizes as public copies quote them (hidden 1536, 32 layers,
# 24 heads / 8 KV, 40 experts top-8 of width 512, rope_theta 1e7, tied, vocab 49155); the muP scalars and other keys
# are Granite 3.1's (no verbatim file was reachable here, so it is not in tests/data/published_configs)
GRANITE_31_3B_A800M = {
    "architectures": ["GraniteMoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.1,
    "attention_multiplier": 0.015625, "bos_token_id": 0, "embedding_multiplier": 12.0, "eos_token_id": 0,
    "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02, "intermediate_size": 512,
    "logits_scaling": 6.0, "max_position_embeddings": 131072, "model_type": "granitemoe", "num_attention_heads": 24,
    "num_experts_per_tok": 8, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 40,
    "output_router_logits": False, "pad_token_id": 0, "residual_multiplier": 0.22, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 10000000.0, "router_aux_loss_coef": 0.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 49155,
}


def test_granite_31_moe_config_writes_granites_scalars_and_expert_keys():
    calls = written_hparams(GRANITE_31_3B_A800M, "granitemoe")
    assert (calls["embedding_scale"], calls["residual_scale"], calls["attention_scale"], calls["logit_scale"]) == (
        12.0, 0.22, 0.015625, 6.0)
    assert (calls["expert_count"], calls["expert_used_count"], calls["feed_forward_length"]) == (40, 8, 512)
    assert calls["head_count_kv"] == 8 and calls["rope_freq_base"] == 1e7 and "expert_feed_forward_length" not in calls


def test_granite_moe_fused_experts_split_into_llama_cpps_stacked_tensors():
    import gguf

    shapes = {"model.embed_tokens.weight": (49155, 1536), "lm_head.weight": (49155, 1536),
              "model.layers.0.self_attn.q_proj.weight": (1536, 1536),
              "model.layers.0.block_sparse_moe.router.layer.weight": (40, 1536),
              "model.layers.0.block_sparse_moe.input_linear.weight": (40, 1024, 1536),
              "model.layers.0.block_sparse_moe.output_linear.weight": (40, 1536, 512)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, GRANITE_31_3B_A800M, "q8_0")}
    assert {name: plan.shape for name, plan in plans.items() if "_exps" in name} == {
        "blk.0.ffn_gate_exps.weight": (40, 512, 1536), "blk.0.ffn_up_exps.weight": (40, 512, 1536),
        "blk.0.ffn_down_exps.weight": (40, 1536, 512)}
    assert plans["blk.0.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in plans and plans["blk.0.attn_q.weight"].transform is not None  # tied; llama rotary
    fused = np.arange(2 * 1024 * 3, dtype=np.float32).reshape(2, 1024, 3)  # each expert's rows [gate; up] (transformers' chunk)
    gate, up = plans["blk.0.ffn_gate_exps.weight"], plans["blk.0.ffn_up_exps.weight"]
    assert (gate.transform(fused) == fused[:, :512]).all() and (up.transform(fused) == fused[:, 512:]).all()


@pytest.mark.parametrize("change, fragment", [
    ({"shared_intermediate_size": 1024}, "shared_intermediate_size"),
    ({"attention_multiplier": 0.0}, "attention_multiplier 0"),
    ({"head_dim": 128}, "head_dim 128"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"num_experts_per_tok": 0}, "num_experts_per_tok must be set"),
])
def test_granite_moe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**GRANITE_31_3B_A800M, **change})
    assert reason and fragment in reason and "\n" not in reason


# Qwen/Qwen1.5-MoE-A2.7B-Chat config.json: the keys a public copy quotes (sizes, experts, windows, tying) with the
# rest as Qwen2MoeConfig publishes them for it (no verbatim file was reachable here)
QWEN1_5_MOE_A2_7B = {
    "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "decoder_sparse_step": 1,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 5632, "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2_moe",
    "moe_intermediate_size": 1408, "norm_topk_prob": False, "num_attention_heads": 16, "num_experts": 60,
    "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 16, "output_router_logits": False,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}


def test_qwen1_5_moe_config_writes_llama_cpps_expert_and_shared_expert_keys():
    calls = written_hparams(QWEN1_5_MOE_A2_7B, "qwen2moe")
    assert (calls["expert_count"], calls["expert_used_count"], calls["expert_feed_forward_length"]) == (60, 4, 1408)
    assert calls["expert_shared_feed_forward_length"] == 5632 and calls["feed_forward_length"] == 5632
    assert calls["head_count_kv"] == 16 and calls["rope_freq_base"] == 1e6 and "key_length" not in calls
    assert gguf_arch.gguf_caveats(QWEN1_5_MOE_A2_7B) == []  # use_sliding_window false


def test_qwen2_moe_shared_expert_and_its_gate_become_llama_cpps_shexp_tensors():
    import gguf

    shapes = {"model.embed_tokens.weight": (151936, 2048), "lm_head.weight": (151936, 2048),
              "model.layers.0.self_attn.q_proj.bias": (2048,), "model.layers.0.mlp.gate.weight": (60, 2048),
              "model.layers.0.mlp.shared_expert_gate.weight": (1, 2048),
              "model.layers.0.mlp.shared_expert.gate_proj.weight": (5632, 2048),
              "model.layers.0.mlp.shared_expert.down_proj.weight": (2048, 5632),
              "model.layers.0.mlp.experts.gate_up_proj": (60, 2816, 2048),
              "model.layers.0.mlp.experts.down_proj": (60, 2048, 1408)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, QWEN1_5_MOE_A2_7B, "q8_0")}
    assert plans["blk.0.ffn_gate_exps.weight"].shape == (60, 1408, 2048) and "blk.0.ffn_up_exps.weight" in plans
    assert plans["blk.0.ffn_gate_shexp.weight"].shape == (5632, 2048) and plans["blk.0.ffn_down_shexp.weight"].shape == (2048, 5632)
    shared_gate = plans["blk.0.ffn_gate_inp_shexp.weight"]
    assert shared_gate.shape == (1, 2048) and shared_gate.qtype == gguf.GGMLQuantizationType.F32  # as the converter
    assert plans["blk.0.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.0.attn_q.bias"].shape == (2048,) and plans["output.weight"].shape == (151936, 2048)


@pytest.mark.parametrize("change, fragment", [
    ({"norm_topk_prob": True}, "norm_topk_prob true; llama.cpp's qwen2moe never renormalizes"),
    ({"mlp_only_layers": [3]}, "llama.cpp's qwen2moe is all-MoE"),
    ({"decoder_sparse_step": 2}, "decoder_sparse_step"),
    ({"shared_expert_intermediate_size": 0}, "shared_expert_intermediate_size must be set"),
    ({"tie_word_embeddings": True}, "tie_word_embeddings true; llama.cpp's qwen2moe"),
    ({"head_dim": 256}, "heads x head_dim (16 x 256)"),
])
def test_qwen2_moe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**QWEN1_5_MOE_A2_7B, **change})
    assert reason and fragment in reason and "\n" not in reason


# baidu/ERNIE-4.5-21B-A3B-PT config.json: its keys and values as public copies quote them (no verbatim file was
# reachable here, so it is not in tests/data/published_configs); no moe_layer_end_index (-1: the last layer)
ERNIE_45_21B_A3B_PT = {
    "architectures": ["Ernie4_5_MoeForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 2560, "intermediate_size": 12288, "max_position_embeddings": 131072, "model_type": "ernie4_5_moe",
    "num_attention_heads": 20, "num_key_value_heads": 4, "num_hidden_layers": 28, "pad_token_id": 0,
    "rms_norm_eps": 1e-05, "use_cache": False, "vocab_size": 103424, "rope_theta": 500000, "use_bias": False,
    "moe_num_experts": 64, "moe_num_shared_experts": 2, "moe_layer_start_index": 1, "moe_intermediate_size": 1536,
    "moe_capacity": [64, 64, 64], "moe_gate": "topk", "moe_k": 6, "moe_layer_interval": 1, "moe_use_aux_free": True,
    "num_nextn_predict_layers": 1, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}


def test_published_ernie_4_5_moe_config_writes_llama_cpps_expert_keys():
    calls = written_hparams(ERNIE_45_21B_A3B_PT, "ernie4_5-moe")
    assert (calls["expert_count"], calls["expert_used_count"], calls["expert_feed_forward_length"]) == (64, 6, 1536)
    # the two shared experts run as one MLP twice as wide (transformers' Ernie4_5_MoeMLP of 2 x 1536)
    assert calls["expert_shared_feed_forward_length"] == 3072 and calls["feed_forward_length"] == 12288
    assert calls["leading_dense_block_count"] == 1 and calls["interleave_moe_layer_step"] == 1
    assert calls["head_count_kv"] == 4 and calls["rope_freq_base"] == 500000 and "key_length" not in calls
    assert "expert_gating_func" not in calls  # llama.cpp's ernie4_5-moe graph softmaxes by itself


def test_ernie_4_5_moe_selection_bias_shared_experts_and_dense_layer_become_llama_cpps_tensors():
    import gguf

    shapes = {"model.embed_tokens.weight": (103424, 2560), "model.layers.0.mlp.gate_proj.weight": (12288, 2560),
              "model.layers.1.mlp.gate.weight": (64, 2560),
              "model.layers.1.mlp.moe_statics.e_score_correction_bias": (1, 64),
              "model.layers.1.mlp.shared_experts.up_proj.weight": (3072, 2560),
              "model.layers.1.mlp.experts.gate_up_proj": (64, 3072, 2560),
              "model.layers.1.mlp.experts.down_proj": (64, 2560, 1536)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, ERNIE_45_21B_A3B_PT, "q8_0")}
    bias = plans["blk.1.exp_probs_b.bias"]
    assert bias.shape == (64,) and bias.qtype == gguf.GGMLQuantizationType.F32
    assert bias.transform(np.arange(64, dtype=np.float32).reshape(1, 64)).shape == (64,)
    assert plans["blk.1.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.1.ffn_up_shexp.weight"].shape == (3072, 2560)
    assert plans["blk.0.ffn_gate.weight"].shape == (12288, 2560)
    assert plans["blk.1.ffn_gate_exps.weight"].shape == (64, 1536, 2560) and "output.weight" not in plans  # tied
    assert plans["blk.1.ffn_down_exps.weight"].shape == (64, 2560, 1536)
    # transformers 5 keeps the bias under the router in memory
    moved = {name.replace("mlp.moe_statics", "mlp.gate.moe_statics"): shape for name, shape in shapes.items()}
    assert "blk.1.exp_probs_b.bias" in {p.gguf_name for p in plan_from_shapes(moved, ERNIE_45_21B_A3B_PT, "f16")}


@pytest.mark.parametrize("change, fragment", [
    ({"moe_layer_interval": 2}, "moe_layer_interval 2 puts dense layers between"),
    ({"moe_layer_end_index": 20}, "moe_layer_end_index 20 leaves dense layers at the end"),
    ({"moe_norm_min": 0.5}, "moe_norm_min 0.5"),
    ({"use_bias": True}, "use_bias true"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"moe_k": 0}, "num_experts_per_tok must be set"),
])
def test_ernie_4_5_moe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**ERNIE_45_21B_A3B_PT, **change})
    assert reason and fragment in reason and "\n" not in reason


def test_ernie_4_5_moe_end_index_as_transformers_saves_it_is_the_last_layer():
    assert architecture_support({**ERNIE_45_21B_A3B_PT, "moe_layer_end_index": 27}) is None


# LiquidAI/LFM2-8B-A1B config.json: its keys and values as public copies quote them (no verbatim file was reachable
# here); 24 layers, 6 of them attention, the first 2 dense
LFM2_8B_A1B = {
    "architectures": ["Lfm2MoeForCausalLM"], "model_type": "lfm2_moe", "vocab_size": 65536, "hidden_size": 2048,
    "intermediate_size": 7168, "moe_intermediate_size": 1792, "num_hidden_layers": 24, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 128000, "norm_eps": 1e-05, "conv_bias": False,
    "conv_L_cache": 3, "rope_theta": 1000000.0, "num_dense_layers": 2, "num_experts": 32, "num_experts_per_tok": 4,
    "norm_topk_prob": True, "use_expert_bias": True, "routed_scaling_factor": 1.0, "bos_token_id": 1,
    "eos_token_id": 7, "pad_token_id": 0, "tie_embedding": True, "torch_dtype": "bfloat16",
    "layer_types": ["conv", "conv", "full_attention", "conv", "conv", "conv", "full_attention", "conv", "conv", "conv",
                    "full_attention", "conv", "conv", "conv", "full_attention", "conv", "conv", "conv",
                    "full_attention", "conv", "conv", "full_attention", "conv", "conv"],
}


def test_published_lfm2_moe_config_writes_sigmoid_routing_and_its_dense_layers():
    import gguf

    calls = written_hparams(LFM2_8B_A1B, "lfm2moe")
    assert (calls["expert_count"], calls["expert_used_count"], calls["expert_feed_forward_length"]) == (32, 4, 1792)
    assert calls["expert_gating_func"] == gguf.ExpertGatingFuncType.SIGMOID and calls["leading_dense_block_count"] == 2
    # the dense layers' MLP is intermediate_size wide as given (LFM2's block_ff_dim arithmetic is not applied)
    assert calls["feed_forward_length"] == 7168 and calls["shortconv_l_cache"] == 3
    assert calls["head_count_kv"][:3] == [0, 0, 8] and calls["head_count_kv"].count(8) == 6
    assert "expert_shared_feed_forward_length" not in calls and "interleave_moe_layer_step" not in calls


def test_lfm2_moe_experts_bias_and_conv_become_llama_cpps_tensors():
    import gguf

    shapes = {"model.embed_tokens.weight": (65536, 2048), "model.embedding_norm.weight": (2048,),
              "model.layers.0.feed_forward.w1.weight": (7168, 2048), "model.layers.0.conv.conv.weight": (2048, 1, 3),
              "model.layers.2.feed_forward.gate.weight": (32, 2048), "model.layers.2.feed_forward.expert_bias": (32,)}
    for e in range(32):
        shapes |= {f"model.layers.2.feed_forward.experts.{e}.{w}.weight": (1792, 2048) for w in ("w1", "w3")}
        shapes[f"model.layers.2.feed_forward.experts.{e}.w2.weight"] = (2048, 1792)
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, LFM2_8B_A1B, "q8_0")}
    assert plans["blk.2.ffn_gate_exps.weight"].stacked[5] == "model.layers.2.feed_forward.experts.5.w1.weight"
    assert plans["blk.2.ffn_up_exps.weight"].stacked[5] == "model.layers.2.feed_forward.experts.5.w3.weight"
    assert plans["blk.2.ffn_down_exps.weight"].shape == (32, 2048, 1792)
    assert plans["blk.2.exp_probs_b.bias"].shape == (32,) and plans["blk.2.exp_probs_b.bias"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.2.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.0.ffn_gate.weight"].shape == (7168, 2048) and plans["blk.0.shortconv.conv.weight"].shape == (2048, 3)
    assert "token_embd_norm.weight" in plans and "output.weight" not in plans


@pytest.mark.parametrize("change, fragment", [
    ({"norm_topk_prob": False}, "norm_topk_prob false; llama.cpp's lfm2moe always renormalizes"),
    ({"routed_scaling_factor": 2.5}, "routed_scaling_factor 2.5"),
    ({"use_expert_bias": False}, "use_expert_bias false"),
    ({"conv_bias": True}, "conv_bias"),
    ({"num_experts_per_tok": 0}, "num_experts_per_tok must be set"),
])
def test_lfm2_moe_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**LFM2_8B_A1B, **change})
    assert reason and fragment in reason and "\n" not in reason


# mistralai/Mixtral-8x7B-Instruct-v0.1 config.json (Mixtral-8x22B differs in sizes and rope_theta)
MIXTRAL_8X7B_INSTRUCT = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000,
}


def test_mixtral_config_writes_llamas_keys_with_experts():
    calls = written_hparams(MIXTRAL_8X7B_INSTRUCT, "llama")
    assert (calls["expert_count"], calls["expert_used_count"], calls["feed_forward_length"]) == (8, 2, 14336)
    assert calls["head_count_kv"] == 8 and calls["vocab_size"] == 32000 and "expert_feed_forward_length" not in calls
    assert "expert_count" not in written_hparams(LLAMA_3_2_1B, "llama")  # dense llama: no expert keys


def test_mixtral_per_expert_w1_w3_w2_become_stacked_gate_up_down():
    import gguf

    shapes = {"model.layers.0.self_attn.q_proj.weight": (4096, 4096),
              "model.layers.0.block_sparse_moe.gate.weight": (8, 4096)}
    for e in range(8):
        shapes |= {f"model.layers.0.block_sparse_moe.experts.{e}.{w}.weight": (14336, 4096) for w in ("w1", "w3")}
        shapes[f"model.layers.0.block_sparse_moe.experts.{e}.w2.weight"] = (4096, 14336)
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, MIXTRAL_8X7B_INSTRUCT, "q8_0")}
    assert plans["blk.0.ffn_gate_exps.weight"].stacked[2] == "model.layers.0.block_sparse_moe.experts.2.w1.weight"
    assert plans["blk.0.ffn_up_exps.weight"].stacked[0] == "model.layers.0.block_sparse_moe.experts.0.w3.weight"
    assert plans["blk.0.ffn_down_exps.weight"].shape == (8, 4096, 14336)
    assert plans["blk.0.ffn_gate_inp.weight"].qtype == gguf.GGMLQuantizationType.F32
    assert plans["blk.0.attn_q.weight"].transform is not None  # llama's rotary re-ordering


@pytest.mark.parametrize("change, fragment", [
    ({"num_experts_per_tok": 0}, "num_experts_per_tok must be set"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'; llama.cpp's llama runs SiLU experts"),
])
def test_mixtral_configs_llama_cpp_runs_differently_are_refused(change, fragment):
    reason = architecture_support({**MIXTRAL_8X7B_INSTRUCT, **change})
    assert reason and fragment in reason and "\n" not in reason


# google/gemma-3n-E2B-it's language model: Gemma3nTextConfig's defaults (the E4B shape) with the E2B variant of
# transformers' convert_gemma3n_weights.py (30 layers, MLP 8192, sparsity on 10 layers, the last 10 sharing KV)
# and the keys of the published config.json (vision/audio configs shortened)
GEMMA_3N_E2B = {
    "architectures": ["Gemma3nForConditionalGeneration"], "model_type": "gemma3n",
    "audio_config": {"model_type": "gemma3n_audio"}, "vision_config": {"model_type": "gemma3n_vision"},
    "text_config": {
        "model_type": "gemma3n_text", "hidden_size": 2048, "num_hidden_layers": 30, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 256, "intermediate_size": [8192] * 30, "vocab_size": 262400,
        "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 256, "altup_num_inputs": 4,
        "altup_active_idx": 0, "altup_coef_clip": 120.0, "altup_correct_scale": True, "laurel_rank": 64,
        "num_kv_shared_layers": 10, "activation_sparsity_pattern": [0.95] * 10 + [0.0] * 20,
        "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 6, "sliding_window": 512,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": None,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": 30.0, "attention_bias": False, "pad_token_id": 0, "bos_token_id": 2,
        "eos_token_id": 1}}


def _gemma_3n_text(**changes) -> dict:
    return {**GEMMA_3N_E2B, "text_config": {**GEMMA_3N_E2B["text_config"], **changes}}


def test_published_gemma_3n_e2b_config_writes_its_language_model():
    """Layers 20-29 reuse the KV of layers 18/19; per-layer inputs 256 wide; the first 10 layers' MLP gates
    sparsified at 0.95 (std multiplier 1.645, as llama.cpp's converter writes it)."""
    calls = written_hparams(GEMMA_3N_E2B, "gemma3n")
    assert calls["block_count"] == 30 and calls["embedding_length"] == 2048 and calls["head_count_kv"] == 2
    assert calls["feed_forward_length"] == 8192 and calls["key_length"] == 256 and calls["rope_dimension_count"] == 256
    assert (calls["rope_freq_base"], calls["rope_freq_base_swa"]) == (1e6, 1e4)
    assert calls["shared_kv_layers"] == 10 and calls["embedding_length_per_layer_input"] == 256
    assert calls["sliding_window"] == 512 and calls["sliding_window_pattern"] == ([True] * 4 + [False]) * 6
    assert calls["altup_num_inputs"] == 4 and calls["altup_active_idx"] == 0
    scales = calls["activation_sparsity_scale"]
    assert scales[:10] == pytest.approx([1.6448536] * 10) and scales[10:] == [-math.inf] * 20


def test_published_gemma_3n_e2b_tensors():
    """AltUp projections stacked into one tensor each, the per-layer table padded to the model's 262400 tokens
    with row 0 (transformers' lookup for ids past 262144), norms as stored, the published (unused) k/v of shared
    layers written as they are, the towers left out."""
    import numpy as np

    prefix = "model.language_model."
    shapes = {f"{prefix}altup_projections.{i}.weight": (2048, 2048) for i in range(3)}
    shapes |= {f"{prefix}altup_unembed_projections.{i}.weight": (2048, 2048) for i in range(3)}
    shapes |= {f"{prefix}embed_tokens_per_layer.weight": (262144, 30 * 256),
               f"{prefix}layers.0.altup.correct_output_scale": (2048,), f"{prefix}layers.0.input_layernorm.weight": (2048,),
               "model.vision_tower.timm_model.conv_stem.conv.weight": (64, 3, 3, 3), "model.embed_audio.embedding.weight": (128, 2048)}
    shapes |= {f"{prefix}layers.{i}.self_attn.{part}.weight": shape for i in range(30)
               for part, shape in (("k_proj", (512, 2048)), ("v_proj", (512, 2048)), ("k_norm", (256,)))}
    plans = {plan.gguf_name: plan for plan in gguf_arch.plan_from_shapes(shapes, GEMMA_3N_E2B, "f16")}
    assert plans["altup_proj.weight"].shape == (3, 2048, 2048)
    assert plans["altup_proj.weight"].stacked == tuple(f"{prefix}altup_projections.{i}.weight" for i in range(3))
    assert plans["blk.0.attn_norm.weight"].transform is None and "blk.0.altup_correct_scale.weight" in plans
    assert plans["blk.25.attn_k.weight"].hf_name == f"{prefix}layers.25.self_attn.k_proj.weight"
    table = plans["per_layer_token_embd.weight"]
    assert table.shape == (262400, 30 * 256)
    padded = table.transform(np.arange(6, dtype=np.float32).reshape(3, 2))
    assert padded.shape == (262400, 2) and (padded[3:] == padded[0]).all()
    assert len(plans) == 2 + 1 + 2 + 90  # the towers and the audio/vision embedders are not written


@pytest.mark.parametrize("changes, fragment", [
    ({"laurel_rank": 32}, "laurel_rank"),
    ({"hidden_size_per_layer_input": 128}, "hidden_size_per_layer_input"),
    ({"altup_num_inputs": 2}, "altup_num_inputs"),
    ({"altup_correct_scale": False}, "altup_correct_scale"),
    ({"activation_sparsity_pattern": [0.95] * 12 + [0.0] * 18}, "activation_sparsity_pattern"),
    ({"num_kv_shared_layers": 5}, "num_kv_shared_layers"),
    # the last unshared layers full then sliding: llama.cpp would reuse the wrong layers' KV
    ({"layer_types": ["sliding_attention"] * 18 + ["full_attention", "sliding_attention"] + ["sliding_attention"] * 9
      + ["full_attention"]}, "num_kv_shared_layers"),
    ({"final_logit_softcapping": None}, "final_logit_softcapping"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope"),
    ({"hidden_activation": "gelu"}, "activation"),
])
def test_gemma_3n_configs_llama_cpp_would_run_differently_are_refused(changes, fragment):
    reason = architecture_support(_gemma_3n_text(**changes))
    assert reason and fragment in reason and "\n" not in reason


def test_gemma_3n_default_sparsity_on_a_short_model_is_refused():
    """transformers sparsifies no layer of a model of 10 layers or fewer by default; llama.cpp always the first 10."""
    text = {k: v for k, v in _gemma_3n_text(num_hidden_layers=8, num_kv_shared_layers=0, intermediate_size=8192,
                                             layer_types=["sliding_attention"] * 8)["text_config"].items()
            if k != "activation_sparsity_pattern"}
    reason = architecture_support({**GEMMA_3N_E2B, "text_config": text})
    assert reason and "activation_sparsity_pattern" in reason


def test_gemma_3n_without_timm_is_refused_for_training_in_one_line(monkeypatch):
    """transformers builds Gemma 3n's MobileNetV5 vision tower with timm: without it, one line says what to install."""
    import importlib.util

    from ducktune.models.loading import training_support

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else find_spec(name, *a))
    reason = training_support(GEMMA_3N_E2B)
    assert reason and "pip install timm" in reason and "\n" not in reason


def test_gemma_3n_causal_lm_config_of_transformers_4_keeps_its_rope_bases():
    """A text-only Gemma3nForCausalLM config.json saved by transformers 4 names its rope bases at the top level."""
    text = {k: v for k, v in GEMMA_3N_E2B["text_config"].items() if k != "model_type"}
    config = {**text, "architectures": ["Gemma3nForCausalLM"], "model_type": "gemma3n_text",
              "rope_theta": 500000.0, "rope_local_base_freq": 20000.0}
    calls = written_hparams(config, "gemma3n")
    assert (calls["rope_freq_base"], calls["rope_freq_base_swa"]) == (500000.0, 20000.0)
MINICPM3_4B = {  # openbmb/MiniCPM3-4B config.json's model keys (auto_map to its remote code, dtype and version left out)
    "architectures": ["MiniCPM3ForCausalLM"], "model_type": "minicpm3", "bos_token_id": 1, "eos_token_id": [2, 73440], "hidden_act": "silu",
    "initializer_range": 0.1, "hidden_size": 2560, "num_hidden_layers": 62, "intermediate_size": 6400,
    "max_position_embeddings": 32768, "num_attention_heads": 40, "num_key_value_heads": 40, "qk_nope_head_dim": 64,
    "qk_rope_head_dim": 32, "q_lora_rank": 768, "kv_lora_rank": 256, "rms_norm_eps": 1e-05,
    "rope_scaling": {"type": "longrope", "long_factor": [1.0591234137867171, 1.1241891283591912, 1.2596935748670968,
                                                         1.5380380402321725, 2.093982484148734, 3.1446935121267696,
                                                         4.937952647693647, 7.524541999994549, 10.475458000005451,
                                                         13.062047352306353, 14.85530648787323, 15.906017515851266,
                                                         16.461961959767827, 16.740306425132907, 16.87581087164081,
                                                         16.940876586213285],
                     "original_max_position_embeddings": 32768},
    "use_cache": True, "vocab_size": 73448, "scale_emb": 12, "dim_model_base": 256, "scale_depth": 1.4}
MINICPM3_4B["rope_scaling"]["short_factor"] = MINICPM3_4B["rope_scaling"]["long_factor"]  # the same table, as published


def test_published_minicpm3_config_writes_its_mla_sizes_and_longrope_tables():
    """MiniCPM3-4B: query/key heads of 64 + 32 dims (rope on the 32), value heads of hidden / heads = 64, the two
    latent ranks, every head its own KV head, LongRoPE over the trained context (attention factor 1)."""
    assert architecture_support(MINICPM3_4B) is None
    calls = written_hparams(MINICPM3_4B, "minicpm3")
    assert (calls["q_lora_rank"], calls["kv_lora_rank"], calls["key_length"], calls["value_length"]) == (768, 256, 96, 64)
    assert calls["rope_dimension_count"] == 32 and calls["head_count_kv"] == 40 and calls["feed_forward_length"] == 6400
    assert calls["rope_scaling_orig_ctx_len"] == 32768 and calls["rope_scaling_attn_factors"] == 1.0
    tables = [(p.gguf_name, p.shape) for p in gguf_arch._computed_tensors(MINICPM3_4B, "minicpm3")]
    assert tables == [("rope_factors_long.weight", (16,)), ("rope_factors_short.weight", (16,))]


def test_published_minicpm3_weights_are_written_as_they_are_with_a_tied_output():
    """The MLA projections keep their shapes and row order (rope in NEOX halves, as llama.cpp's minicpm3 reads
    them); no output layer (tied embeddings, transformers' default for MiniCPM3)."""
    layer = "model.layers.0.self_attn."
    shapes = {f"{layer}q_a_proj.weight": (768, 2560), f"{layer}q_b_proj.weight": (3840, 768),
              f"{layer}kv_a_proj_with_mqa.weight": (288, 2560), f"{layer}kv_b_proj.weight": (5120, 256),
              f"{layer}o_proj.weight": (2560, 2560), f"{layer}q_a_layernorm.weight": (768,),
              f"{layer}kv_a_layernorm.weight": (256,), "model.embed_tokens.weight": (73448, 2560),
              "lm_head.weight": (73448, 2560)}
    plans = {p.gguf_name: p for p in plan_from_shapes(shapes, MINICPM3_4B, "f16") if p.hf_name}
    assert {name: (p.shape, p.transform) for name, p in plans.items()} == {
        "blk.0.attn_q_a.weight": ((768, 2560), None), "blk.0.attn_q_b.weight": ((3840, 768), None),
        "blk.0.attn_kv_a_mqa.weight": ((288, 2560), None), "blk.0.attn_kv_b.weight": ((5120, 256), None),
        "blk.0.attn_output.weight": ((2560, 2560), None), "blk.0.attn_q_a_norm.weight": ((768,), None),
        "blk.0.attn_kv_a_norm.weight": ((256,), None), "token_embd.weight": ((73448, 2560), None)}


@pytest.mark.parametrize("change, fragment", [
    ({"scale_emb": 10}, "scale_emb 10"),
    ({"scale_depth": None}, "scale_depth None"),
    ({"dim_model_base": 128}, "dim_model_base 128"),
    ({"q_lora_rank": None}, "q_lora_rank null"),
    ({"attention_bias": True}, "attention_bias true"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}},
     "does not support rope scaling 'yarn'"),
])
def test_minicpm3_configs_llama_cpp_would_run_differently_are_refused(change, fragment):
    reason = architecture_support({**MINICPM3_4B, **change})
    assert reason and fragment in reason and "MiniCPM3ForCausalLM" in reason and "\n" not in reason
