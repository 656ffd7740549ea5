"""GGUF for every architecture id: tiny stand-ins with each family's real config keys, written as
f16 and q8_0, read back (every tensor, every shape, the architecture's keys), and run by llama.cpp:
teacher-forced next-token logits equal the fp32 HF model's (top-1 where the HF top-2 margin is
clearly above quantization error; max |Δlogit| small). InternLM2 (remote code) is checked on a
fake state dict built from a Llama's weights, so llama.cpp must reproduce the Llama's logits."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch

from ducktune.errors import ModelError
from ducktune.export import gguf_arch
from ducktune.export.gguf_arch import (
    architecture_support,
    llama3_rope_factors,
    plan_from_shapes,
)
from ducktune.export.gguf_file import read_back, write_gguf
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

    root = tmp_path_factory.mktemp("standins")
    built = {}

    def build(arch: str):
        if arch not in built:
            config = tiny_config(arch, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
            # Random init at 5x the usual spread: logits spread over a few units instead of ~0.2, so most
            # positions have a top-2 margin far above f16/q8_0 error (no near-ties to excuse).
            config.initializer_range = INIT_RANGE
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
            folder = root / arch
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            built[arch] = (folder, model)
        return built[arch]
    return build


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
    "mistral": ("llama", {"attention.head_count_kv": 2, "context_length": 32768}, {}, {"rope_freqs.weight"}),
    "mistral-nemo": ("llama", {"attention.key_length": 32, "attention.value_length": 32, "rope.dimension_count": 32},
                     {"blk.0.attn_q.weight": (128, 64), "blk.0.attn_output.weight": (64, 128)}, set()),
    "qwen2": ("qwen2", {"rope.freq_base": 1000000.0}, {"blk.0.attn_q.bias": (64,)}, {"output.weight"}),
    "qwen3": ("qwen3", {"attention.key_length": 32}, {"blk.1.attn_q_norm.weight": (32,), "blk.1.attn_k_norm.weight": (32,)},
              {"blk.0.attn_q.bias"}),
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
    "phi3": ("phi3", {"rope.scaling.original_context_length": 4096, "attention.sliding_window": 2047},
             {"blk.0.attn_qkv.weight": (192, 64), "blk.0.ffn_up.weight": (384, 64)},
             {"blk.0.attn_q.weight", "rope_factors_long.weight"}),
    "phi3-longrope": ("phi3", {"context_length": 131072, "rope.scaling.original_context_length": 4096,
                               "rope.scaling.attn_factor": math.sqrt(1 + math.log(32) / math.log(4096))},
                      {"rope_factors_long.weight": (8,), "rope_factors_short.weight": (8,)}, set()),
    "glm": ("chatglm", {"rope.dimension_count": 8, "attention.layer_norm_rms_epsilon": 1.5625e-07},
            {"blk.0.ffn_up.weight": (384, 64), "blk.0.attn_k.bias": (32,)}, {"blk.0.ffn_gate.weight"}),
    # GLM-4-0414: GLM's layout plus a norm after attention and one after the MLP
    "glm4-0414": ("glm4", {"rope.dimension_count": 8, "attention.layer_norm_rms_epsilon": 1e-5},
                  {"blk.0.ffn_up.weight": (384, 64), "blk.0.attn_q.bias": (64,), "blk.0.post_attention_norm.weight": (64,),
                   "blk.0.post_ffw_norm.weight": (64,)}, {"blk.0.ffn_gate.weight", "rope_freqs.weight"}),
    "bloom": ("bloom", {"attention.layer_norm_epsilon": 1e-5, "attention.max_alibi_bias": 8.0, "feed_forward_length": 256},
              {"token_embd_norm.bias": (64,), "blk.0.attn_qkv.bias": (192,)}, {"output.weight", "rope_freqs.weight"}),
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
    assert agree == 1.0, f"{arch} {quant}: top-1 agreement {agree:.3f} over {positions} positions (max |Δ| {diff:.4f})"
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


BREAKAGES = {  # the architecture-specific step left out -> (arch, attribute of gguf_arch or its modules, replacement)
    "q/k rows not re-ordered": ("llama", "ROTARY_PERMUTED", lambda: set()),
    "no llama3 rope_freqs": ("llama3", "_computed_tensors", lambda: lambda config, arch: []),
    "gemma norms without +1, no softcapping": ("gemma2", "GEMMA", lambda: set()),
    "gemma3 local/global layers not written": ("gemma3", "_add_gemma_hparams", lambda: _without_hparam("add_sliding_window_pattern")),
    "no longrope factor tables": ("phi3-longrope", "_computed_tensors", lambda: lambda config, arch: []),
    "no longrope attention factor": ("phi3-longrope", "longrope_attention_factor", lambda: lambda config: 1.0),
    "glm rotary over the whole head": ("glm", "rotary_dims", lambda: gguf_arch.head_dim),
    "bloom qkv left interleaved per head": ("bloom", "_tensor_transform", lambda: _tensor_transform_except("bloom")),
    "qwen3.5 value heads left grouped by key head": ("qwen3.5", "gguf_qwen35._value_head_reorder", lambda: lambda *a: None),
    "qwen3.5 A_log written as is": ("qwen3.5", "gguf_qwen35.qwen35_tensor", lambda: _qwen35_transform_except(".A_log")),
    "qwen3.5 norms without +1": ("qwen3.5", "gguf_qwen35.qwen35_tensor", lambda: _qwen35_transform_except("layernorm.weight")),
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
    assert agree < 1.0 or diff >= F16_MAX_DIFF, f"{breakage}: still agree {agree}, max |Δ| {diff:.4f}"


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


LLAMA_3_2_1B = {  # meta-llama/Llama-3.2-1B-Instruct config.json (rope_scaling as published, transformers 4 form)
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "num_hidden_layers": 16, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
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
GLM_4_9B = {  # THUDM/glm-4-9b-chat-hf config.json
    "architectures": ["GlmForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 2,
    "head_dim": 128, "num_hidden_layers": 40, "intermediate_size": 13696, "max_position_embeddings": 131072,
    "partial_rotary_factor": 0.5, "rms_norm_eps": 1.5625e-07, "rope_theta": 10000.0, "attention_bias": True,
    "vocab_size": 151552}

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
    writer = RecordingWriter()
    assert gguf_arch.gguf_arch(QWEN3_5_0_8B) == "qwen35"
    gguf_arch.add_hparams(writer, QWEN3_5_0_8B, "qwen35")
    calls = writer.calls
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


def test_published_llama_3_2_config_gets_its_rope_table():
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, LLAMA_3_2_1B, gguf_arch.gguf_arch(LLAMA_3_2_1B))
    assert writer.calls["rope_freq_base"] == 500000.0 and writer.calls["rope_dimension_count"] == 64
    plans = gguf_arch._computed_tensors(LLAMA_3_2_1B, "llama")
    assert [(p.gguf_name, p.shape) for p in plans] == [("rope_freqs.weight", (32,))]
    factors = plans[0].transform(None)
    assert factors[0] == 1.0 and factors[-1] == 32.0 and any(1.0 < f < 32.0 for f in factors)  # kept, ramped, divided


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


def test_published_glm_4_config_rotates_half_of_each_head():
    writer = RecordingWriter()
    assert gguf_arch.gguf_arch(GLM_4_9B) == "chatglm"
    gguf_arch.add_hparams(writer, GLM_4_9B, "chatglm")
    assert writer.calls["rope_dimension_count"] == 64 and writer.calls["head_count_kv"] == 2


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
