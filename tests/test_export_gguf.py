"""GGUF written with the `gguf` package: read back with its reader, loaded with transformers' own
GGUF loader (logits equal the source model's), complete tokenizer metadata; and k-quants that
fail leave nothing behind."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ducktune.data.template import ChatFormat
from ducktune.errors import ModelError, UserError
from ducktune.export.gguf_file import read_back, write_gguf
from ducktune.export.gguf_vocab import pre_tokenizer_kind
from ducktune.export.merge import logits_of, prompt_ids
from ducktune.export.quantize import quantize_gguf
from ducktune.models.loading import load_tokenizer

PROMPTS = ["What is the capital of France?", "Count: 1 2 3 12345", "你好，小鸭！"]


def roundtrip(model_dir, out_dir, quant):
    """Write a GGUF, read it back, load it with transformers, return (summary, read_back, max|Δ|, top-1 agreement)."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    chat_format = ChatFormat(tokenizer)
    path = out_dir / f"tiny-{quant}.gguf"
    summary = write_gguf(model_dir, path, quant, "tiny", tokenizer, chat_format.eot_token)
    back = read_back(path, summary)
    ids = prompt_ids(chat_format, PROMPTS)
    source = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    loaded = AutoModelForCausalLM.from_pretrained(str(out_dir), gguf_file=path.name, dtype=torch.float32)
    ours, theirs = logits_of(source, ids), logits_of(loaded, ids)
    max_diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(ours, theirs)) / sum(len(a) for a in ours)
    return summary, back, max_diff, agree, tokenizer


def test_llama_gguf_roundtrip_f16(tiny_llama, tmp_path):
    summary, back, max_diff, agree, tokenizer = roundtrip(tiny_llama, tmp_path, "f16")
    assert back["problems"] == []
    meta = back["metadata"]
    assert meta["general.architecture"] == "llama" and meta["general.file_type"] == 1
    # The tiny Llama-3-regex tokenizer does not set ignore_merges (real Llama 3 does): llama.cpp's
    # exact equivalent is "dbrx" (same regex, merges applied), not "llama-bpe" (ignores merges).
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "dbrx"
    assert meta["n_tokens"] == len(tokenizer) and meta["n_merges"] > 0
    assert meta["tokenizer.ggml.bos_token_id"] == tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    assert meta["tokenizer.ggml.eot_token_id"] == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert meta["tokenizer.ggml.add_bos_token"] is False  # the tiny tokenizer does not add BOS; its template prints it
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    # Every weight, under its GGUF name, with its shape (tied embeddings: no output.weight).
    assert "blk.1.attn_q.weight" in summary.tensors and "output.weight" not in summary.tensors
    assert back["tensors"] == len(summary.tensors)
    # transformers' own loader undoes the rotary permutation: logits equal up to f16 rounding.
    assert max_diff < 5e-3
    assert agree == 1.0


def test_qwen2_gguf_roundtrip_q8_0(tiny_qwen, tmp_path):
    summary, back, max_diff, agree, tokenizer = roundtrip(tiny_qwen, tmp_path, "q8_0")
    assert back["problems"] == []
    meta = back["metadata"]
    assert meta["general.architecture"] == "qwen2" and meta["general.file_type"] == 7
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.bos_token_id"] is None
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.ggml.padding_token_id"] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert "blk.0.attn_q.bias" in summary.tensors  # Qwen2's q/k/v biases
    assert max_diff < 0.1
    assert agree >= 0.95


def test_qwen3_gguf_roundtrip(tiny_qwen, tmp_path):
    """Qwen3: per-head q/k norms, head_dim independent of hidden/heads (written as attention.key_length;
    transformers' GGUF loader ignores that key and uses Qwen3's default head_dim, 128, as real Qwen3 has)."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    model_dir = tmp_path / "qwen3"
    tokenizer = load_tokenizer(tiny_qwen)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=128, tie_word_embeddings=True,
                         max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    summary, back, max_diff, agree, _ = roundtrip(model_dir, tmp_path, "f16")
    assert back["problems"] == []
    assert back["metadata"]["general.architecture"] == "qwen3"
    assert "blk.0.attn_q_norm.weight" in summary.tensors
    assert max_diff < 5e-3 and agree == 1.0


def test_read_back_reports_a_missing_tensor(tiny_qwen, tmp_path):
    tokenizer = load_tokenizer(tiny_qwen)
    summary = write_gguf(tiny_qwen, tmp_path / "t.gguf", "f16", "tiny", tokenizer)
    summary.tensors["blk.9.attn_q.weight"] = (64, 64)
    assert "tensor blk.9.attn_q.weight missing" in read_back(tmp_path / "t.gguf", summary)["problems"]


def test_unsupported_architecture_is_refused_and_nothing_written(tiny_qwen, tmp_path):
    model_dir = tmp_path / "other"
    shutil.copytree(tiny_qwen, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["BioGptForCausalLM"]  # a transformers class llama.cpp has no graph for
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="BioGptForCausalLM"):
        write_gguf(model_dir, tmp_path / "out" / "x.gguf", "f16", "x", load_tokenizer(tiny_qwen))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pre_tokenizer_kinds():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_kind({"pre_tokenizer": byte_level}) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_kind({"pre_tokenizer": smollm}) == "smollm"
    with pytest.raises(ModelError, match="pre-tokenizer"):
        pre_tokenizer_kind({"pre_tokenizer": {"type": "Metaspace"}})


def _half_writing_quantizer(code):
    def quantize(src, dst, quant):
        dst.write_bytes(b"GGUF partial")  # like llama.cpp dying half way
        return code
    return quantize


def test_failed_quantization_leaves_no_file(tmp_path):
    src = tmp_path / "m-f16.gguf"
    src.write_bytes(b"not a gguf")
    with pytest.raises(ModelError, match="could not quantize"):
        quantize_gguf(src, tmp_path / "m-q4_k_m.gguf", "q4_k_m", quantizer=_half_writing_quantizer(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-f16.gguf"]


def test_interrupted_quantization_leaves_no_file(tmp_path):
    def interrupted(src, dst, quant):
        dst.write_bytes(b"GGUF partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize_gguf(tmp_path / "m-f16.gguf", tmp_path / "m-q4_k_m.gguf", "q4_k_m", quantizer=interrupted)
    assert list(tmp_path.iterdir()) == []


def test_successful_quantization_is_renamed_into_place(tmp_path):
    quantize_gguf(tmp_path / "m-f16.gguf", tmp_path / "m-q4_k_m.gguf", "q4_k_m", quantizer=_half_writing_quantizer(0))
    assert [p.name for p in tmp_path.iterdir()] == ["m-q4_k_m.gguf"]


def test_k_quant_without_llama_cpp_says_how_to_get_it(tmp_path, monkeypatch):
    """As on a machine without llama-cpp-python (where it is installed, its absence is simulated)."""
    from ducktune.export import quantize

    monkeypatch.setattr(quantize, "llama_cpp_available", lambda: False)
    with pytest.raises(UserError, match=r"ducktune\[verify\]"):
        quantize_gguf(tmp_path / "m-f16.gguf", tmp_path / "m-q4_k_m.gguf", "q4_k_m")
    assert list(tmp_path.iterdir()) == []
