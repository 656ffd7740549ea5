"""Tokenizer metadata for GGUF: the HF tokenizer folder -> llama.cpp's `tokenizer.ggml.*` keys.

llama.cpp re-implements each tokenizer kind; for its tokenization to equal the HF tokenizer's,
the GGUF must name the same algorithm (`tokenizer.ggml.model`), the same pre-tokenizer
(`tokenizer.ggml.pre`, chosen by the regex the tokenizer really uses), the same tokens with
their types, merges or scores, and the same BOS/EOS behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path

from ducktune.errors import ModelError


def read_tokenizer_json(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{model_dir / 'tokenizer.json'}: cannot read the tokenizer ({exc})") from None


# llama.cpp pre-tokenizer names for the regexes of the families ducktune exports (the
# regexes are the tokenizers' own; the names are llama.cpp's).
_SPLIT_REGEX_KINDS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}


def pre_tokenizer_kind(tokenizer_json: dict) -> str:
    """The llama.cpp pre-tokenizer that splits text exactly like this tokenizer.json, or ModelError."""
    normalizer = tokenizer_json.get("normalizer")
    if normalizer and normalizer.get("type") != "NFC":
        raise ModelError(f"tokenizer.json: normalizer {normalizer.get('type')} has no llama.cpp equivalent")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        kind = _SPLIT_REGEX_KINDS.get((steps[0].get("pattern") or {}).get("Regex"))
        if kind and steps[0].get("behavior") == "Isolated":
            return kind
    raise ModelError(f"tokenizer.json: pre-tokenizer {json.dumps(pre)[:200]} is not one ducktune can name for "
                     "llama.cpp (supported: GPT-2 byte-level, SmolLM, Qwen2, Llama 3)")


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or (text.startswith("<｜") and text.endswith("｜>"))


def token_table(tokenizer_json: dict, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token texts and GGUF token types for ids 0..n_vocab-1 (ids without a token become [PADi], unused)."""
    import gguf

    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise ModelError("tokenizer.json: only byte-level BPE tokenizers (GPT-2 style: Llama 3, Qwen, SmolLM) "
                         "can be written to GGUF by ducktune so far")
    texts: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: gguf.TokenType.NORMAL for i in texts}
    for added in tokenizer_json.get("added_tokens", []):
        i, text = added["id"], added["content"]
        texts[i] = text
        types[i] = gguf.TokenType.CONTROL if added.get("special") or _looks_special(text) else gguf.TokenType.USER_DEFINED
    if texts and max(texts) >= n_vocab:
        raise ModelError(f"tokenizer.json has token id {max(texts)} but the model has only {n_vocab} embedding rows")
    tokens, token_types = [], []
    for i in range(n_vocab):
        if i in texts:
            tokens.append(texts[i])
            token_types.append(int(types[i]))
        else:
            tokens.append(f"[PAD{i}]")
            token_types.append(int(gguf.TokenType.UNUSED))
    return tokens, token_types


def adds_special(tokenizer, which: str) -> bool:
    """Whether the HF tokenizer adds BOS (or EOS) itself when encoding text."""
    token_id = getattr(tokenizer, f"{which}_token_id", None)
    if token_id is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(with_special) == len(without):
        return False
    return (with_special[0] if which == "bos" else with_special[-1]) == token_id



def add_tokenizer_metadata(writer, model_dir: Path, tokenizer, eot_token: str | None, n_vocab: int) -> dict:
    """Write the tokenizer keys of `model_dir` (an HF folder whose tokenizer is `tokenizer`, carrying
    the run's chat template) to `writer`; return what was written, for the read-back check."""
    import gguf

    tokenizer_json = read_tokenizer_json(model_dir)
    tokens, token_types = token_table(tokenizer_json, n_vocab)
    pre = pre_tokenizer_kind(tokenizer_json)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise ModelError(f"{model_dir / 'tokenizer.json'}: no BPE merges")
    # BOS/EOS are added exactly when the HF tokenizer adds them, and the chat template is the
    # run's (saved with the merged model), not whatever tokenizer_config.json happens to hold.
    special.add_special_token = {"bos": adds_special(tokenizer, "bos"), "eos": adds_special(tokenizer, "eos")}
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
    ids = dict(special.special_token_ids)
    if eot_token:
        eot_id = tokenizer.convert_tokens_to_ids(eot_token)
        if isinstance(eot_id, int) and eot_id >= 0:
            writer.add_eot_token_id(eot_id)
            ids["eot"] = eot_id
    return {"tokenizer.ggml.pre": pre, "n_tokens": len(tokens), "n_merges": len(special.merges),
            "special_ids": ids, "add_bos": special.add_special_token["bos"],
            "add_eos": special.add_special_token["eos"], "chat_template": tokenizer.chat_template}
