"""Tiny, locally built chat models for tests, demos and benchmarks (no hub needed).

A tiny model is a real Hugging Face folder: a Qwen2- or Llama-shaped config with random
weights, a byte-level BPE tokenizer trained here on a bundled corpus, and a real chat
template (ChatML or Llama 3). Everything downstream (templating, training, export to GGUF,
llama.cpp) treats it exactly like a downloaded model.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

from ducktune.io import atomic_dir

# Pre-tokenizer regexes of the real families, so GGUF export can name the matching
# llama.cpp pre-tokenizer ("qwen2", "llama-bpe").
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TEMPLATES = {
    "chatml": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
    },
    "llama3": {
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        # Like Llama 3 base tokenizers: EOS differs from the end-of-turn token <|eot_id|>,
        # so stop-token handling must use the template's marker, not only EOS.
        "eos": "<|end_of_text|>",
        "pad": "<|end_of_text|>",
    },
}


def resource_text(name: str) -> str:
    return resources.files("ducktune.resources").joinpath(name).read_text(encoding="utf-8")


def corpus_lines() -> list[str]:
    lines = [line for line in resource_text("tiny_corpus.txt").splitlines() if line.strip()]
    identity = json.loads(resource_text("identity_template.json"))
    for item in identity:
        for name, author in (("Duckling", "the ducktune team"), ("小鸭", "ducktune 团队")):
            lines.append(item["instruction"] + " " + item["output"].format(name=name, author=author))
    return lines


def train_tokenizer(template: str, vocab_size: int, regex: str):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    spec = TEMPLATES[template]
    tokenizer = Tokenizer(models.BPE())
    # The Qwen2/Llama 3 pipeline, so transformers' tokenizer classes that rebuild the
    # pre-tokenizer (Qwen2Tokenizer under transformers 5) tokenize identically.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_lines() * 4, trainer)
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    arch: Literal["qwen2", "llama"] = "qwen2",
    template: Literal["chatml", "llama3"] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    tokenizer_vocab: int = 1024,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny random-init model folder (config, safetensors, tokenizer, template) atomically.

    `vocab_size` may exceed the tokenizer's vocabulary (rows beyond it are never used), so a
    benchmark can keep a real model's 151,936-row embedding and LM head.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

    template = template or ("chatml" if arch == "qwen2" else "llama3")
    spec = TEMPLATES[template]
    regex = QWEN2_REGEX if arch == "qwen2" else LLAMA3_REGEX
    raw = train_tokenizer(template, tokenizer_vocab, regex)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        additional_special_tokens=[t for t in spec["specials"] if t not in (spec["bos"], spec["eos"], spec["pad"])],
    )
    from ducktune.models.families import template_text

    tokenizer.chat_template = template_text(template)
    n_vocab = max(vocab_size or 0, len(tokenizer))

    common = dict(
        vocab_size=n_vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-6,
    )
    config = Qwen2Config(**common, rope_theta=1000000.0) if arch == "qwen2" else LlamaConfig(**common, rope_theta=500000.0)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in (spec["eos"], "<|eot_id|>", "<|im_end|>") if t in tokenizer.get_vocab()]
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=sorted(set(stop_ids)),
        pad_token_id=tokenizer.pad_token_id,
    )
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out
