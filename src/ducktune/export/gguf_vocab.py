"""Tokenizer metadata for GGUF: the HF tokenizer folder -> llama.cpp's `tokenizer.ggml.*` keys.

llama.cpp re-implements each tokenizer kind; for its tokenization to equal the HF tokenizer's,
the GGUF must name the same algorithm (`tokenizer.ggml.model`), the same pre-tokenizer, the
same tokens with their types, merges or scores, and the same BOS/EOS behaviour. Two algorithms
cover the families ducktune exports:

* "gpt2": byte-level BPE. llama.cpp applies merges by rank after splitting with a regex it
  selects by `tokenizer.ggml.pre`; we choose the name from the regex the tokenizer.json really
  uses (and from `ignore_merges`, which some names imply).
* "llama": SentencePiece BPE ("▁" for spaces, `<0xXX>` byte fallback). llama.cpp merges the
  adjacent pair whose concatenation has the highest *score*. When the folder carries only a
  tokenizer.json (always, for what ducktune saves), the scores are derived from the merge
  ranks (score = -rank of the first merge producing the piece): with SentencePiece-complete
  merges (every split of a piece into two pieces is a merge, as transformers' converter
  writes them) that reproduces HF's rank order exactly.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.models.standin_tokenizers import (
    BLOOM_REGEX,
    CL100K_REGEX,
    DEEPSEEK_CODER_REGEXES,
    DEEPSEEK_LLM_REGEXES,
    HUNYUAN_DENSE_REGEXES,
    O200K_REGEX,
    QWEN2_REGEX,
    QWEN35_REGEX,
    TEKKEN_REGEX,
)

SPIECE_SPACE = "▁"
# Tokenizers on Llama 3's pipeline (cl100k regex, whole words kept) that llama.cpp's converter names for
# their model, told apart by a special token of theirs; llama.cpp runs each as Llama 3's.
LLAMA3_PIPELINE_NAMES = {"<|tool_list_start|>": "lfm2", ">>TITLE<<": "falcon3"}
# Architectures whose tokenizers on Llama 3's pipeline llama.cpp's converter names for the architecture (Falcon-H1's
# four tokenizers, told apart there by hash only); llama.cpp runs the name as Llama 3's.
LLAMA3_PIPELINE_ARCH_NAMES = {"falcon-h1": "falcon-h1"}
# Tokenizers on SmolLM's pipeline (digits one by one, then GPT-2's split) that llama.cpp's converter names for their
# model, told apart by a special token of theirs: Cohere's (Aya, Command R, R7B), EXAONE 3.x's; llama.cpp runs
# them as SmolLM's.
DIGITS_PIPELINE_NAMES = {"<|START_OF_TURN_TOKEN|>": "command-r", "[|endofturn|]": "exaone"}
# llama.cpp pre-tokenizers that split with several regexes in turn (one Split step each, then ByteLevel)
MULTI_SPLIT_NAMES = {HUNYUAN_DENSE_REGEXES: "hunyuan-dense"}
# ... and those whose Split steps are followed by Digits(individual) (DeepSeek's): llama.cpp ends them with a digit
# regex of its own, "\p{N}" (DeepSeek Coder: one digit per piece, as HF) or "\p{N}+" (DeepSeek LLM: digit runs,
# equal to HF only while no merge joins digits, which _digit_merge checks).
DIGIT_SPLIT_NAMES = {DEEPSEEK_CODER_REGEXES: "deepseek-coder", DEEPSEEK_LLM_REGEXES: "deepseek-llm"}
DIGIT_RUN_NAMES = {"deepseek-llm"}


def read_tokenizer_json(model_dir: Path, path: Path | None = None) -> dict:
    """The parsed `model_dir/tokenizer.json` (or `path`), or a one-line ModelError."""
    path = path or model_dir / "tokenizer.json"
    if not path.exists() and (path.parent / "tokenizer.model").exists():
        raise ModelError(f"{path}: missing; a folder with only a SentencePiece tokenizer.model (a slow or remote-code "
                         "tokenizer) cannot be written to GGUF by ducktune: save it as a fast tokenizer first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the tokenizer ({exc})") from None


def _steps(component: dict | None, key: str) -> list[dict]:
    if not component:
        return []
    return list(component.get(key, [])) if component.get("type") == "Sequence" else [component]


def _added_texts(tokenizer_json: dict) -> set[str]:
    return {t["content"] for t in tokenizer_json.get("added_tokens", [])}


# ---------------------------------------------------------------- which algorithm


def tokenizer_model_kind(tokenizer_json: dict) -> str:
    """llama.cpp's `tokenizer.ggml.model` for this tokenizer.json: "gpt2" or "llama", or ModelError."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ModelError(f"tokenizer.json: model {model.get('type')} has no llama.cpp equivalent that ducktune "
                         "writes (supported: byte-level BPE, SentencePiece-style BPE)")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise ModelError(f"tokenizer.json: model.{option} {model[option]!r} has no llama.cpp equivalent")
    decoder_types = [d.get("type") for d in _steps(tokenizer_json.get("decoder"), "decoders")]
    if model.get("byte_fallback"):
        if "ByteFallback" not in decoder_types:
            raise ModelError("tokenizer.json: byte_fallback BPE without a ByteFallback decoder has no llama.cpp "
                             "equivalent")
        return "llama"
    if decoder_types != ["ByteLevel"]:
        raise ModelError(f"tokenizer.json: BPE with decoder {decoder_types} (neither byte-level nor "
                         "SentencePiece-style) has no llama.cpp equivalent")
    return "gpt2"


# ---------------------------------------------------------------- byte-level BPE: the pre-tokenizer name


def _split_regex(step: dict) -> str | None:
    """The regex of a Split step that keeps every match as its own piece, else None."""
    behaviour, invert = step.get("behavior"), step.get("invert", False)
    if (behaviour, invert) not in (("Isolated", False), ("Removed", True)):
        return None
    return (step.get("pattern") or {}).get("Regex")


def _name_for_regex(regex: str, tokenizer_json: dict) -> str | None:
    """llama.cpp's pre-tokenizer name for a Split regex; names with the same regex differ in
    `ignore_merges` and in special-token handling, which the tokenizer.json tells apart."""
    ignore_merges = bool((tokenizer_json.get("model") or {}).get("ignore_merges"))
    added = _added_texts(tokenizer_json)
    if regex == QWEN2_REGEX:
        if "<|pause|>" in added:  # Arcade100k (StableLM 2): Qwen2's split, llama.cpp's own name for it
            return "stablelm2"
        return "deepseek-r1-qwen" if "<｜begin▁of▁sentence｜>" in added else "qwen2"
    if regex == QWEN35_REGEX:
        return "qwen35"
    if regex == CL100K_REGEX:
        if "[gMASK]" in added:
            return "glm4" if ignore_merges else "chatglm-bpe"
        # Llama 3 ignores merges for whole words in the vocabulary; DBRX (and Phi-4's tiktoken
        # conversion) with the same regex does not.
        if not ignore_merges:
            return "dbrx"
        return next((name for token, name in LLAMA3_PIPELINE_NAMES.items() if token in added), "llama-bpe")
    if regex == O200K_REGEX:
        # llama.cpp's "gpt-4o" (Phi-4-mini) applies merges; no name with this regex ignores them
        return None if ignore_merges else "gpt-4o"
    if regex == TEKKEN_REGEX:
        return "tekken"
    if regex == BLOOM_REGEX:
        return "bloom"
    return None


def pre_tokenizer_kind(tokenizer_json: dict) -> str:
    """The llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) that splits text exactly like this
    byte-level tokenizer.json, or ModelError."""
    normalizer = tokenizer_json.get("normalizer")
    # llama.cpp does not normalize; Qwen's NFC is accepted as llama.cpp's converter does (the
    # two differ only on text that is not already NFC, e.g. decomposed accents). DeepSeek's empty
    # Sequence normalizes nothing.
    if normalizer and normalizer.get("type") != "NFC" and _steps(normalizer, "normalizers"):
        raise ModelError(f"tokenizer.json: normalizer {normalizer.get('type')} has no llama.cpp equivalent")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = _steps(pre, "pretokenizers")
    kinds = [step.get("type") for step in steps]
    if any(s.get("type") == "ByteLevel" and s.get("add_prefix_space") for s in steps):
        raise ModelError("tokenizer.json: ByteLevel pre-tokenizer with add_prefix_space has no llama.cpp equivalent")
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        added = _added_texts(tokenizer_json)
        return next((name for token, name in DIGITS_PIPELINE_NAMES.items() if token in added), "smollm")
    if len(kinds) >= 2 and set(kinds[:-1]) == {"Split"} and kinds[-1] == "ByteLevel" \
            and not steps[-1].get("use_regex", True):
        regexes = tuple(_split_regex(step) for step in steps[:-1])
        if len(regexes) == 1 and regexes[0]:
            name = _name_for_regex(regexes[0], tokenizer_json)
        else:
            name = MULTI_SPLIT_NAMES.get(regexes)
        if name:
            return name
    name = _digit_split_name(steps, tokenizer_json)
    if name:
        return name
    raise ModelError(f"tokenizer.json: pre-tokenizer {json.dumps(pre, ensure_ascii=False)[:160]} has no llama.cpp "
                     "equivalent (supported: GPT-2, SmolLM, Command R, Qwen2, StableLM 2, Qwen3.5, Llama 3/DBRX/Phi-4/LFM2/Falcon3, "
                     "GPT-4o/Phi-4-mini, GLM-4, Tekken, Bloom, Hunyuan dense, DeepSeek LLM / Coder)")


def _digit_split_name(steps: list[dict], tokenizer_json: dict) -> str | None:
    """llama.cpp's name for Split steps, then Digits(individual), then ByteLevel(use_regex=false) (DeepSeek LLM and
    Coder), or None; ModelError when llama.cpp would keep together digits that HF splits and a merge joins."""
    kinds = [step.get("type") for step in steps]
    if len(kinds) < 3 or set(kinds[:-2]) != {"Split"} or kinds[-2:] != ["Digits", "ByteLevel"] \
            or not steps[-2].get("individual_digits") or steps[-1].get("use_regex", True):
        return None
    name = DIGIT_SPLIT_NAMES.get(tuple(_split_regex(step) for step in steps[:-2]))
    if name in DIGIT_RUN_NAMES:
        joined = _digit_merge(tokenizer_json)
        if joined:
            raise ModelError(f"tokenizer.json: merge {joined!r} joins digits, which HF splits one by one but "
                             f"llama.cpp's {name} pre-tokenizer keeps together: it would tokenize numbers differently")
    return name


def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: printable Latin-1 bytes stand for themselves, the others
    for 256, 257, ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(b for b in range(256) if chr(b) not in table)})
    return table


_BYTE_OF_CHAR = _byte_of_char()


def _byte_level_text(piece: str) -> str | None:
    """The text a byte-level BPE piece stands for (GPT-2's byte-to-character map undone), or None when its bytes
    are not whole UTF-8 characters."""
    try:
        return bytes(_BYTE_OF_CHAR[c] for c in piece).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def _is_number(text: str | None) -> bool:
    return bool(text) and all(unicodedata.category(c).startswith("N") for c in text)  # \p{N}, as both split


def _digit_merge(tokenizer_json: dict) -> str | None:
    """The first merge whose two sides are both numbers (\p{N}), or None."""
    for left, right in _merge_pairs(tokenizer_json.get("model") or {}):
        if _is_number(_byte_level_text(left)) and _is_number(_byte_level_text(right)):
            return f"{left} {right}"
    return None


# ---------------------------------------------------------------- SentencePiece: the space prefix


def _is_replace_space(step: dict) -> bool:
    return (step.get("type") == "Replace" and (step.get("pattern") or {}).get("String") == " "
            and step.get("content") == SPIECE_SPACE)


def spm_add_space_prefix(tokenizer_json: dict) -> bool:
    """Whether this SentencePiece-style tokenizer.json prefixes each text with "▁" the way
    llama.cpp's `add_space_prefix` does (start of text and after every special token), or ModelError."""
    normalizers = _steps(tokenizer_json.get("normalizer"), "normalizers")
    pre_steps = _steps(tokenizer_json.get("pre_tokenizer"), "pretokenizers")
    norm = [s.get("type") for s in normalizers]
    # Gemma's Split(" ") pre-tokenizer is a no-op after its normalizer replaced every space.
    pre_noop = pre_steps == [] or (len(pre_steps) == 1 and pre_steps[0].get("type") == "Split"
                                   and (pre_steps[0].get("pattern") or {}).get("String") == " ")
    if norm == ["Prepend", "Replace"] and normalizers[0].get("prepend") == SPIECE_SPACE \
            and _is_replace_space(normalizers[1]) and pre_noop:
        return True   # Llama 2 / Mistral / Phi-3 legacy shape: every fragment gets "▁"
    if norm == ["Replace"] and _is_replace_space(normalizers[0]) and pre_noop:
        return False  # Gemma: spaces escaped, no dummy prefix
    if not norm and len(pre_steps) == 1 and pre_steps[0].get("type") == "Metaspace" \
            and pre_steps[0].get("replacement") == SPIECE_SPACE and not pre_steps[0].get("split", True):
        scheme = pre_steps[0].get("prepend_scheme", "always")
        if scheme in ("always", "never"):
            return scheme == "always"
        raise ModelError(f"tokenizer.json: Metaspace prepend_scheme {scheme!r} (\"▁\" only before the first "
                         "fragment) has no llama.cpp equivalent: llama.cpp also prefixes text after special tokens")
    raise ModelError(f"tokenizer.json: SentencePiece normalizer {norm} with pre-tokenizer "
                     f"{[s.get('type') for s in pre_steps]} has no llama.cpp equivalent")


def _merge_pairs(model: dict) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model.get("merges", [])]


def spm_merge_gaps(tokenizer_json: dict, limit: int = 3) -> list[str]:
    """Pieces llama.cpp's score-ordered SPM merging could build from two pieces but that the
    tokenizer's merges do not build that way (so the two would tokenize differently); at most `limit`."""
    model = tokenizer_json.get("model") or {}
    vocab = model.get("vocab") or {}
    merges = set(_merge_pairs(model))
    gaps = []
    for piece in vocab:
        if len(piece) < 2 or (piece.startswith("<0x") and piece.endswith(">")):
            continue
        for i in range(1, len(piece)):
            if piece[:i] in vocab and piece[i:] in vocab and (piece[:i], piece[i:]) not in merges:
                gaps.append(piece)
                break
        if len(gaps) >= limit:
            break
    return gaps


def spm_scores(tokenizer_json: dict, tokens: list[str]) -> list[float]:
    """SentencePiece scores for `tokens` derived from the BPE merge ranks: a merged piece scores
    -rank of its first merge, so llama.cpp's highest-score-first merging follows HF's rank order.
    Pieces no merge builds (characters, bytes, specials) score below every merged piece."""
    rank: dict[str, int] = {}
    for i, (left, right) in enumerate(_merge_pairs(tokenizer_json.get("model") or {})):
        rank.setdefault(left + right, i)
    floor = -float(len(rank) + 1)
    return [-float(rank[t]) if t in rank else floor for t in tokens]


# ---------------------------------------------------------------- special tokens that eat whitespace

# llama.cpp strips the whitespace after special tokens only for models whose general.name
# contains one of these, and then after every special token but these three (Phi-3's tokenizer).
PHI3_NAME_PARTS = ("phi-3", "phi3")
PHI3_LOOKED_UP = ("</s>", "<unk>", "<s>", "<|endoftext|>")  # by llama.cpp, for models named phi3
_PHI3_KEEPS_WHITESPACE = {"<unk>", "<s>", "<|endoftext|>"}


def whitespace_stripping(tokenizer_json: dict) -> str | None:
    """None when no added token strips whitespace; "phi3" when they strip exactly as llama.cpp
    does for Phi-3 models (which then need "phi3" in general.name); otherwise ModelError."""
    added = tokenizer_json.get("added_tokens", [])
    lstrip = [t["content"] for t in added if t.get("lstrip")]
    rstrip = {t["content"] for t in added if t.get("rstrip")}
    if lstrip:
        raise ModelError(f"tokenizer.json: token {lstrip[0]!r} strips the whitespace before it (lstrip), which "
                         "llama.cpp does not do for these models")
    if not rstrip:
        return None
    unk = (tokenizer_json.get("model") or {}).get("unk_token")
    phi3 = {t["content"] for t in added} | ({unk} if unk else set())
    if rstrip == phi3 - _PHI3_KEEPS_WHITESPACE:
        return "phi3"
    raise ModelError(f"tokenizer.json: tokens {sorted(rstrip)[:3]} strip the whitespace after them (rstrip); "
                     "llama.cpp does that only Phi-3's way (after every special token but <unk> <s> <|endoftext|>)")


def _named_phi3(name: str) -> bool:
    """llama.cpp's test: a general.name containing phi3/phi-3 gets Phi-3's token handling."""
    return any(part in name.lower() for part in PHI3_NAME_PARTS)


def general_name(name: str, tokenizer_json: dict) -> str:
    """The GGUF general.name for an export called `name`. llama.cpp gives Phi-3's whitespace
    stripping (and looks up Phi-3's tokens) exactly when the name contains phi3/phi-3, so the name
    says so when the tokenizer strips that way, and is spelled phi_3 when it does not."""
    import re

    stripping = whitespace_stripping(tokenizer_json)
    named_phi3 = _named_phi3(name)
    if stripping == "phi3":
        texts = {t["content"] for t in tokenizer_json.get("added_tokens", [])} | set(
            (tokenizer_json.get("model") or {}).get("vocab") or {})
        missing = [t for t in PHI3_LOOKED_UP if t not in texts]
        if missing:
            raise ModelError(f"tokenizer.json: a Phi-3 tokenizer without {', '.join(missing)}, which llama.cpp "
                             "looks up by text for Phi-3 models (it would fail to load the GGUF)")
    if stripping == "phi3" and not named_phi3:
        return f"{name} (phi3)"
    if stripping is None and named_phi3:
        return re.sub(r"(?i)(phi)-?(3)", r"\1_\2", name)
    return name


def _check_name_for_stripping(writer, stripping: str | None) -> None:
    """llama.cpp picks Phi-3's whitespace stripping by general.name: the name must say phi3 exactly
    when the tokenizer strips that way."""
    field = writer.kv_data[0].get("general.name") if getattr(writer, "kv_data", None) else None
    name = str(field.value) if field is not None else ""
    named_phi3 = _named_phi3(name)
    if stripping == "phi3" and not named_phi3:
        raise ModelError(f"GGUF general.name {name!r}: must contain 'phi3' so that llama.cpp strips the whitespace "
                         "after special tokens as this (Phi-3) tokenizer does")
    if stripping is None and named_phi3:
        raise ModelError(f"GGUF general.name {name!r}: contains 'phi3', so llama.cpp would strip whitespace after "
                         "special tokens, which this tokenizer does not do")


# ---------------------------------------------------------------- tokens and their types


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or (text.startswith("<｜") and text.endswith("｜>"))


def _is_byte_piece(text: str) -> bool:
    return len(text) == 6 and text.startswith("<0x") and text.endswith(">")


def token_table(tokenizer_json: dict, n_vocab: int) -> tuple[list[str], list[int]]:
    """Token texts and GGUF token types for ids 0..n_vocab-1 (ids without a token become [PADi], unused)."""
    import gguf

    spm = tokenizer_model_kind(tokenizer_json) == "llama"
    model = tokenizer_json["model"]
    texts: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {}
    for i, text in texts.items():
        byte = spm and _is_byte_piece(text)
        types[i] = gguf.TokenType.BYTE if byte else gguf.TokenType.NORMAL
    if spm and model.get("unk_token") in model["vocab"]:
        types[model["vocab"][model["unk_token"]]] = gguf.TokenType.UNKNOWN
    for added in tokenizer_json.get("added_tokens", []):
        i, text = added["id"], added["content"]
        texts[i] = text
        if spm and text == model.get("unk_token"):
            continue
        control = added.get("special") or (not spm and _looks_special(text))
        types[i] = gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED
    if texts and max(texts) >= n_vocab:
        raise ModelError(f"tokenizer.json has token id {max(texts)} but the model has only {n_vocab} embedding rows")
    tokens = [texts.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    token_types = [int(types[i]) if i in texts else int(gguf.TokenType.UNUSED) for i in range(n_vocab)]
    return tokens, token_types


def prompt_starts_with_bos(tokenizer) -> bool:
    """Whether llama.cpp (and Ollama) must add BOS to a prompt to reproduce ducktune's prompts.

    ducktune trains and prompts on the chat template's rendering tokenized without added special
    tokens, so llama.cpp adds BOS when the template prints it and the tokenizer is one that adds
    BOS (Llama 2/3, Gemma); the TEMPLATE then leaves it to llama.cpp. A tokenizer that would add BOS
    to plain text (TinyLlama with the Zephyr template) does not make the trained prompts start with
    it; a template that merely starts with the token that happens to be BOS (SmolLM2's <|im_start|>)
    prints it itself, so runners that render the embedded Jinja template do not get it twice. EOS is
    never added to a prompt. Without a chat template, the tokenizer's own behaviour is kept."""
    bos = tokenizer.bos_token
    if not getattr(tokenizer, "chat_template", None):
        return adds_special(tokenizer, "bos")
    if not bos:
        return False
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                             add_generation_prompt=True)
    except Exception:  # a template that refuses the probe: fall back to the tokenizer's behaviour
        return adds_special(tokenizer, "bos")
    return text.startswith(bos) and adds_special(tokenizer, "bos")


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


# ---------------------------------------------------------------- support check and writing


def tokenizer_algorithm(tokenizer_json: dict) -> tuple[str, str, bool | None]:
    """(tokenizer.ggml.model, tokenizer.ggml.pre, add_space_prefix or None) for this
    tokenizer.json, or ModelError naming the part that has no llama.cpp equivalent."""
    model_kind = tokenizer_model_kind(tokenizer_json)
    whitespace_stripping(tokenizer_json)
    if model_kind == "gpt2":
        return model_kind, pre_tokenizer_kind(tokenizer_json), None
    space_prefix = spm_add_space_prefix(tokenizer_json)
    gaps = spm_merge_gaps(tokenizer_json)
    if gaps:
        raise ModelError(f"tokenizer.json: SentencePiece-style merges are incomplete (piece {gaps[0]!r} splits into two "
                         "pieces with no merge between them), which llama.cpp's score-based merging cannot reproduce")
    return model_kind, "default", space_prefix


def tokenizer_support(model_dir_or_tokenizer_json) -> str | None:
    """None when ducktune can write this tokenizer to GGUF so that llama.cpp tokenizes exactly
    like transformers; otherwise the one-line reason. Accepts a model folder, a tokenizer.json
    path, or its parsed dict."""
    try:
        if isinstance(model_dir_or_tokenizer_json, dict):
            data = model_dir_or_tokenizer_json
        else:
            path = Path(model_dir_or_tokenizer_json)
            data = read_tokenizer_json(path, path / "tokenizer.json" if path.is_dir() else path)
        tokenizer_algorithm(data)
    except ModelError as exc:
        return str(exc)
    return None


def add_tokenizer_metadata(writer, model_dir: Path, tokenizer, eot_token: str | None, n_vocab: int,
                           add_bos: bool | None = None) -> dict:
    """Write the tokenizer keys of `model_dir` (an HF folder whose tokenizer is `tokenizer`, carrying
    the run's chat template) to `writer`; return what was written, for the read-back check."""
    import gguf

    tokenizer_json = read_tokenizer_json(model_dir)
    model_kind, pre, space_prefix = tokenizer_algorithm(tokenizer_json)
    if pre in {"llama-bpe", *LLAMA3_PIPELINE_NAMES.values()}:
        pre = LLAMA3_PIPELINE_ARCH_NAMES.get(writer.arch, pre)
    stripping = whitespace_stripping(tokenizer_json)
    _check_name_for_stripping(writer, stripping)
    tokens, token_types = token_table(tokenizer_json, n_vocab)
    writer.add_tokenizer_model(model_kind)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if model_kind == "llama":
        writer.add_token_scores(spm_scores(tokenizer_json, tokens))
    writer.add_token_types(token_types)
    if space_prefix is not None:
        writer.add_add_space_prefix(space_prefix)
    special = gguf.SpecialVocab(model_dir, load_merges=model_kind == "gpt2", n_vocab=len(tokens))
    if model_kind == "gpt2" and not special.merges:
        raise ModelError(f"{model_dir / 'tokenizer.json'}: no BPE merges")
    # An export says how its prompts start (`add_bos`, see prompt_starts_with_bos; EOS is never added
    # to a prompt); otherwise BOS/EOS are added as the HF tokenizer adds them. The chat template is
    # the run's (saved with the merged model), not whatever tokenizer_config.json holds.
    special.add_special_token = ({"bos": adds_special(tokenizer, "bos"), "eos": adds_special(tokenizer, "eos")}
                                 if add_bos is None else {"bos": add_bos, "eos": False})
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
    ids = dict(special.special_token_ids)
    if eot_token:
        eot_id = tokenizer.convert_tokens_to_ids(eot_token)
        if isinstance(eot_id, int) and eot_id >= 0:
            writer.add_eot_token_id(eot_id)
            ids["eot"] = eot_id
    return {"tokenizer.ggml.model": model_kind, "tokenizer.ggml.pre": pre, "n_tokens": len(tokens),
            "n_merges": len(special.merges), "special_ids": ids, "add_bos": special.add_special_token["bos"],
            "add_eos": special.add_special_token["eos"], "add_space_prefix": space_prefix,
            "whitespace_stripping": stripping,
            "chat_template": tokenizer.chat_template}
