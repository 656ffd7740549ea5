"""Offline stand-in tokenizers, one per tokenizer kind of the families ducktune exports.

Each stand-in has the published tokenizer's *pipeline* (normalizer, pre-tokenizer, model
options, decoder, whether BOS is added, special tokens that strip whitespace) with a small
vocabulary (1.4k-1.6k: the 2k target is capped by what the bundled English/Chinese corpus
supports) trained here, so tests exercise the code paths the real tokenizer takes in
transformers and in llama.cpp without any download. `KINDS[kind].mirrors` names the published
tokenizer each kind copies.

Load saved stand-ins (and real SentencePiece-family folders) with the folder's own
tokenizer.json (`PreTrainedTokenizerFast.from_pretrained`, i.e. transformers 5's
TokenizersBackend): transformers 5's LlamaTokenizer rebuilds the pipeline with
Metaspace(prepend_scheme="first"), which tokenizes differently from the published
tokenizer.json and from llama.cpp (ducktune's GGUF writer refuses it).

Two families:

* byte-level BPE (GPT-2 style, llama.cpp tokenizer model "gpt2"): the 256-symbol byte alphabet
  makes any text encodable; the regex/pre-tokenizer decides which llama.cpp `tokenizer.ggml.pre`
  matches. Trained with `tokenizers`' BpeTrainer.
* SentencePiece-style BPE (llama.cpp tokenizer model "llama"): "▁" for spaces, `<0xXX>` byte
  fallback tokens, no pre-tokenizer. We do not need the `sentencepiece` package: we train
  pieces with `tokenizers` (words split before each "▁", as SentencePiece's
  split_by_whitespace does), lay the vocabulary out like a SentencePiece model (specials,
  256 byte pieces, merged pieces in merge order, then single characters) and write the merges
  the way transformers' SentencePiece converter does: for every piece, every split of it into
  two pieces, ordered by the piece's rank. With such "complete" merges HF's rank-ordered BPE and
  llama.cpp's score-ordered SPM merging give the same tokens (ducktune's GGUF writer derives
  the scores from the merge ranks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ducktune.errors import ModelError

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen3.5's: Qwen2's with combining marks (\p{M}) kept inside words (llama.cpp pre "qwen35")
QWEN35_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
# Llama 3's regex is OpenAI's cl100k_base one, shared by Phi-4 and GLM-4 (and DBRX).
CL100K_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# OpenAI's o200k_base (GPT-4o) regex: words split at case changes, contractions kept on the word, digits in
# threes (Phi-4-mini's tokenizer, converted from tiktoken; llama.cpp pre "gpt-4o").
O200K_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Hunyuan dense's three Split steps, in order (llama.cpp pre "hunyuan-dense"): digits in threes, runs of CJK
# ideographs and kana, then words / punctuation / whitespace (ASCII punctuation glued to the letters after it).
HUNYUAN_DENSE_REGEXES = (
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r'[!"#$%&' r"'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+",
)
# DeepSeek LLM's and DeepSeek Coder's Split steps, in order (their tokenizer.json; llama.cpp pre "deepseek-llm" /
# "deepseek-coder"), each followed there by Digits(individual). DeepSeek LLM's letter class lists the cased scripts
# (Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, ...) by hand, so CJK letters fall to the CJK split.
DEEPSEEK_CJK_REGEX = "[一-龥ࠀ-一가-\ud7ff]+"
DEEPSEEK_LLM_LETTERS_REGEX = (
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ"
    r"-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ"
    r"-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
)
DEEPSEEK_LLM_REGEXES = ("[\r\n]", DEEPSEEK_LLM_LETTERS_REGEX, "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+", r"\s+$",
                        DEEPSEEK_CJK_REGEX)
DEEPSEEK_CODER_REGEXES = ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK_REGEX)
BLOOM_REGEX = r" ?[^(\s|[.,!?…。，、।۔،])]+"
# CodeGen's (and Phi-1.5/Phi-2's) added tokens 50257-50294: runs of 31..2 spaces, then 9..2 tabs.
CODEGEN_WHITESPACE = tuple(" " * n for n in range(31, 1, -1)) + tuple("\t" * n for n in range(9, 1, -1))
# GPT-NeoX-20B's (Pythia's) added tokens 50254-50276: runs of 24..2 spaces.
GPTNEOX_WHITESPACE = tuple(" " * n for n in range(24, 1, -1))


@dataclass(frozen=True)
class KindSpec:
    mirrors: str                 # the published tokenizer.json whose pipeline this kind copies
    spm: bool                    # SentencePiece-style (True) or byte-level BPE (False)
    adds_bos: bool               # HF tokenizer prepends BOS when encoding
    # byte-level: "nfc", "empty" (an empty normalizer Sequence, as DeepSeek's publish) or None;
    # spm: "prepend+replace" or "replace"
    normalizer: str | None = None
    # byte-level: "split", "splits", "splits+digits" (then Digits(individual)), "split-inverted", "digits+bytelevel",
    # "bytelevel"
    pre: str = "split"
    regex: str | None = None
    regexes: tuple[str, ...] = ()      # byte-level "splits": several Split steps, applied in order
    ignore_merges: bool = False
    front_specials: tuple[str, ...] = ("unk", "bos", "eos")   # spm: specials laid out before the bytes
    additional_in_front: bool = False  # spm: family's extra control tokens sit before the bytes
    # Special tokens that swallow the whitespace after them (Phi-3: every added special but
    # <unk> <s> <|endoftext|>, which llama.cpp reproduces for models named "phi3"/"phi-3").
    rstrip_except: tuple[str, ...] | None = None
    # Plain (non-special) added tokens: matched before the pre-tokenizer, in HF and in llama.cpp alike.
    plain_added: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)  # a typical `specials` for tests and demos


KINDS: dict[str, KindSpec] = {
    "qwen2": KindSpec(
        "Qwen/Qwen2.5-0.5B-Instruct (also Qwen3): NFC + Split(Qwen2 regex, isolated) + ByteLevel(use_regex=false)",
        spm=False, adds_bos=False, normalizer="nfc", regex=QWEN2_REGEX,
        defaults={"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "unk": None,
                  "additional": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}),
    "qwen35": KindSpec(
        "Qwen/Qwen3.5-9B (Qwen3_5Tokenizer): NFC + Split(Qwen3.5 regex, isolated) + ByteLevel(use_regex=false)",
        spm=False, adds_bos=False, normalizer="nfc", regex=QWEN35_REGEX,
        defaults={"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "unk": None,
                  "additional": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}),
    "stablelm2-bpe": KindSpec(
        "stabilityai/stablelm-2-1_6b-chat (Arcade100k: tiktoken cl100k extended, digits split one by one; also "
        "stablelm-2-zephyr-1_6b): NFC + Split(Qwen2's regex, isolated) + ByteLevel(use_regex=false), no BOS added; "
        "llama.cpp pre \"stablelm2\", told from Qwen2 by Arcade100k's <|pause|> / <|reg0|> specials",
        spm=False, adds_bos=False, normalizer="nfc", regex=QWEN2_REGEX,
        defaults={"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": None,
                  "additional": ["<|im_start|>", "<|im_end|>", "<|pause|>", "<|reg0|>"]}),
    "deepseek-r1-qwen": KindSpec(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B: Qwen2's pipeline, BOS <｜begin▁of▁sentence｜> added",
        spm=False, adds_bos=True, normalizer="nfc", regex=QWEN2_REGEX,
        defaults={"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>", "pad": "<｜end▁of▁sentence｜>",
                  "unk": None, "additional": ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]}),
    "llama-bpe": KindSpec(
        "meta-llama/Llama-3.2-1B-Instruct: no normalizer, Split(cl100k regex) + ByteLevel, ignore_merges, BOS added",
        spm=False, adds_bos=True, regex=CL100K_REGEX, ignore_merges=True,
        defaults={"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": "<|finetune_right_pad_id|>", "unk": None,
                  "additional": ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}),
    "smollm": KindSpec(
        "HuggingFaceTB/SmolLM2-135M-Instruct (also ibm-granite/granite-3.x, StarCoder's pipeline; LGAI-EXAONE's 3.0 / "
        "3.5 / Deep GPT2Tokenizer, which llama.cpp names \"exaone\"): "
        "Digits(individual) + ByteLevel(use_regex=true), no BOS",
        spm=False, adds_bos=False, pre="digits+bytelevel",
        defaults={"bos": "<|im_start|>", "eos": "<|im_end|>", "pad": "<|im_end|>", "unk": "<|endoftext|>",
                  "additional": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}),
    "command-r-bpe": KindSpec(
        "CohereForAI/aya-expanse-8b (also c4ai-command-r7b-12-2024, aya-23; CohereTokenizer): NFC + Digits(individual) "
        "+ ByteLevel(use_regex=true), BOS <BOS_TOKEN> added (llama.cpp pre \"command-r\")",
        spm=False, adds_bos=True, normalizer="nfc", pre="digits+bytelevel",
        defaults={"bos": "<BOS_TOKEN>", "eos": "<|END_OF_TURN_TOKEN|>", "pad": "<PAD>", "unk": "<UNK>",
                  "additional": ["<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
                                 "<|SYSTEM_TOKEN|>"]}),
    "tekken": KindSpec(
        "mistralai/Mistral-Nemo-Instruct-2407: Split(Tekken regex) + ByteLevel, ignore_merges, BOS <s> added",
        spm=False, adds_bos=True, regex=TEKKEN_REGEX, ignore_merges=True,
        defaults={"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>", "additional": ["[INST]", "[/INST]"]}),
    "phi4-bpe": KindSpec(
        "microsoft/phi-4 (also allenai/OLMo-2's dolma2 tokenizer): tiktoken cl100k converted: Split(cl100k regex, "
        "removed, invert) + ByteLevel, no BOS",
        spm=False, adds_bos=False, pre="split-inverted", regex=CL100K_REGEX,
        defaults={"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|dummy_85|>", "unk": "<|endoftext|>",
                  "additional": ["<|im_start|>", "<|im_sep|>", "<|im_end|>"]}),
    "o200k-bpe": KindSpec(
        "microsoft/Phi-4-mini-instruct (tiktoken o200k_base converted as Xenova/gpt-4o, its AutoTokenizer): "
        "Split(o200k regex, removed, invert) + ByteLevel, no BOS",
        spm=False, adds_bos=False, pre="split-inverted", regex=O200K_REGEX,
        defaults={"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": "<|endoftext|>",
                  "additional": ["<|endofprompt|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>"]}),
    "glm4-bpe": KindSpec(
        "THUDM/glm-4-9b-chat-hf: Split(cl100k regex) + ByteLevel, ignore_merges, [gMASK] specials; the chat "
        "template writes [gMASK]<sop>, plain encoding adds nothing here",
        spm=False, adds_bos=False, regex=CL100K_REGEX, ignore_merges=True,
        defaults={"bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": None,
                  "additional": ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                                 "<|assistant|>", "<|observation|>"]}),
    "falcon3-bpe": KindSpec(
        "tiiuae/Falcon3-1B/3B/7B/10B-Instruct: Split(cl100k regex) + ByteLevel, ignore_merges (the split and merge "
        "rule llama.cpp runs for its converter's \"falcon3\"), no BOS added (the template writes none); Falcon's "
        ">>TITLE<<-style specials in front, <|endoftext|> ends a turn",
        spm=False, adds_bos=False, regex=CL100K_REGEX, ignore_merges=True,
        defaults={"bos": None, "eos": "<|endoftext|>", "pad": "<|pad|>", "unk": None,
                  "additional": [">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<", ">>SUMMARY<<", "<|pad|>"]}),
    "hunyuan-bpe": KindSpec(
        "tencent/Hunyuan-0.5B/1.8B/4B-Instruct: Split(digits) + Split(CJK) + Split(word regex), each isolated, "
        "then ByteLevel(use_regex=false); no normalizer, BOS <｜hy_begin▁of▁sentence｜> written by the template",
        spm=False, adds_bos=False, pre="splits", regexes=HUNYUAN_DENSE_REGEXES,
        defaults={"bos": "<｜hy_begin▁of▁sentence｜>", "eos": "<｜hy_place▁holder▁no▁2｜>",
                  "pad": "<｜hy_place▁holder▁no▁2｜>", "unk": None,
                  "additional": ["<｜hy_User｜>", "<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"]}),
    "deepseek-coder-bpe": KindSpec(
        "deepseek-ai/deepseek-coder-6.7b-instruct (also 1.3b/33b, base and instruct): empty normalizer Sequence, "
        "Split x4 (newlines, letters, punctuation, CJK), Digits(individual), ByteLevel(use_regex=false), BOS "
        "<｜begin▁of▁sentence｜> added (llama.cpp pre \"deepseek-coder\")",
        spm=False, adds_bos=True, normalizer="empty", pre="splits+digits", regexes=DEEPSEEK_CODER_REGEXES,
        defaults={"bos": "<｜begin▁of▁sentence｜>", "eos": "<|EOT|>", "pad": "<｜end▁of▁sentence｜>", "unk": None,
                  "additional": ["<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>",
                                 "<pad>", "<|User|>", "<|Assistant|>", "<|EOT|>"]}),
    "deepseek-llm-bpe": KindSpec(
        "deepseek-ai/deepseek-llm-7b-chat (also 7b-base, 67b): empty normalizer Sequence, Split x5 (newlines, "
        "cased-script letters, ASCII/fullwidth punctuation, trailing whitespace, CJK), Digits(individual), "
        "ByteLevel(use_regex=false), BOS <｜begin▁of▁sentence｜> added (llama.cpp pre \"deepseek-llm\")",
        spm=False, adds_bos=True, normalizer="empty", pre="splits+digits", regexes=DEEPSEEK_LLM_REGEXES,
        defaults={"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>", "pad": None, "unk": None,
                  "additional": []}),
    "bloom": KindSpec(
        "bigscience/bloom (Firefly fine-tunes): Split(Bloom regex) + ByteLevel(use_regex=false), no BOS",
        spm=False, adds_bos=False, regex=BLOOM_REGEX,
        defaults={"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "additional": []}),
    "codegen-bpe": KindSpec(
        "microsoft/phi-2 (also phi-1_5; CodeGenTokenizer): ByteLevel(use_regex=true) alone (GPT-2's split), "
        "no normalizer, no BOS, CodeGen's whitespace-run tokens added as plain tokens",
        spm=False, adds_bos=False, pre="bytelevel", plain_added=CODEGEN_WHITESPACE,
        defaults={"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": None, "unk": "<|endoftext|>",
                  "additional": []}),
    "exaone4-bpe": KindSpec(
        "LGAI-EXAONE/EXAONE-4.0-1.2B (also 32B; GPT2Tokenizer): ByteLevel(use_regex=true) alone (GPT-2's split, "
        "llama.cpp pre \"exaone4\" = its gpt-2 pre-tokenizer), no normalizer, no BOS added; GPT-2's own pipeline "
        "(openai-community/gpt2, gpt2-medium, distilgpt2), which the gpt2 family uses with <|endoftext|>",
        spm=False, adds_bos=False, pre="bytelevel",
        defaults={"bos": "[BOS]", "eos": "[|endofturn|]", "pad": "[PAD]", "unk": "[UNK]",
                  "additional": ["[|system|]", "[|user|]", "[|assistant|]", "[|tool|]", "<think>", "</think>"]}),
    "gptneox-bpe": KindSpec(
        "EleutherAI/gpt-neox-20b (Pythia's, and OLMoE's with AI2's PII specials; GPTNeoXTokenizer): NFC + ByteLevel(use_regex=true) (GPT-2's split, "
        "llama.cpp's gpt-2 / mpt / olmo regex), no BOS added, its space-run tokens added as plain tokens",
        spm=False, adds_bos=False, normalizer="nfc", pre="bytelevel", plain_added=GPTNEOX_WHITESPACE,
        defaults={"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|padding|>", "unk": "<|endoftext|>",
                  "additional": []}),
    "llama-spm": KindSpec(
        "meta-llama/Llama-2-7b-chat-hf (also TinyLlama, Yi, Mistral v0.1/v0.2, MiniCPM3): Prepend(▁)+Replace(' ', ▁) "
        "normalizer, BPE byte_fallback, BOS <s> added",
        spm=True, adds_bos=True, normalizer="prepend+replace",
        defaults={"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>", "additional": []}),
    "mistral-v3-spm": KindSpec(
        "mistralai/Mistral-7B-Instruct-v0.3: the Llama-2 pipeline (legacy normalizer) with control tokens "
        "[INST] [/INST] ... laid out before the byte pieces",
        spm=True, adds_bos=True, normalizer="prepend+replace", additional_in_front=True,
        defaults={"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>",
                  "additional": ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                 "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]}),
    "gemma-spm": KindSpec(
        "google/gemma-2-2b-it (also Gemma 3 and 4): Replace(' ', ▁) normalizer without the dummy prefix, BPE "
        "byte_fallback, BOS <bos> added",
        spm=True, adds_bos=True, normalizer="replace", front_specials=("pad", "eos", "bos", "unk"),
        additional_in_front=True,
        defaults={"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>",
                  "additional": ["<mask>", "<start_of_turn>", "<end_of_turn>"]}),
    "phi3-spm": KindSpec(
        "microsoft/Phi-3.5-mini-instruct: the Llama-2 pipeline with chat tokens appended after 32000 "
        "(rstrip: they swallow the whitespace after them, as does </s>); add_bos_token false",
        spm=True, adds_bos=False, normalizer="prepend+replace", rstrip_except=("<unk>", "<s>", "<|endoftext|>"),
        defaults={"bos": "<s>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "unk": "<unk>",
                  "additional": ["</s>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]}),
    "internlm2-spm": KindSpec(
        "internlm/internlm2-chat-1_8b (InternLM2TokenizerFast, converted from its SentencePiece model; also "
        "internlm/internlm3-8b-instruct, whose tokenizer.model transformers 5 converts the same way): "
        "Llama-2 pipeline, BOS <s> added, chat tokens appended at the end",
        spm=True, adds_bos=True, normalizer="prepend+replace",
        defaults={"bos": "<s>", "eos": "</s>", "pad": "</s>", "unk": "<unk>",
                  "additional": ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>",
                                 "<|interpreter|>", "<|plugin|>"]}),
    "ernie45-spm": KindSpec(
        "baidu/ERNIE-4.5-0.3B-PT (its tokenizer.model, which transformers 5 reads with TokenizersBackend): the "
        "Llama-2 pipeline (dummy prefix), no BOS added (the template writes <|begin_of_sentence|>), chat "
        "tokens appended",
        spm=True, adds_bos=False, normalizer="prepend+replace",
        defaults={"bos": "<s>", "eos": "</s>", "pad": "<unk>", "unk": "<unk>",
                  "additional": ["<|begin_of_sentence|>", "<|end_of_sentence|>", "<mask:1>"]}),
}

BYTE_LEVEL_VOCAB = 2000
SPM_VOCAB = 2000


def default_specials(kind: str) -> dict:
    return json.loads(json.dumps(_spec(kind).defaults))


def _spec(kind: str) -> KindSpec:
    if kind not in KINDS:
        raise ModelError(f"tokenizer kind {kind!r}: unknown (known: {', '.join(KINDS)})")
    return KINDS[kind]


def _special_texts(specials: dict) -> list[str]:
    """Every special token text, first occurrence wins, in a stable order."""
    texts = [specials.get(k) for k in ("unk", "bos", "eos", "pad")] + list(specials.get("additional") or [])
    return list(dict.fromkeys(t for t in texts if t))


def build_tokenizer(kind: str, specials: dict, chat_template: str | None = None):
    """A transformers fast tokenizer of `kind` (see KINDS), trained on ducktune's bundled corpus."""
    spec = _spec(kind)
    if spec.adds_bos and not specials.get("bos"):
        raise ModelError(f"tokenizer kind {kind}: specials has no 'bos' but the family adds BOS")
    raw = _build_spm(spec, specials) if spec.spm else _build_byte_level(spec, specials)
    if spec.adds_bos:
        _add_bos_post_processor(raw, specials["bos"])
    return _wrap(raw, specials, chat_template)


def _training_text() -> list[str]:
    from ducktune.models.tiny import corpus_lines

    return corpus_lines() * 4


def byte_level_pre_tokenizer(spec: KindSpec):
    """The pre-tokenizer of a byte-level kind, as its published tokenizer.json has it."""
    from tokenizers import Regex, pre_tokenizers

    if spec.pre == "digits+bytelevel":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    if spec.pre == "bytelevel":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if spec.pre == "split-inverted":
        splits = [pre_tokenizers.Split(Regex(spec.regex), behavior="removed", invert=True)]
    else:
        splits = [pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)
                  for regex in (spec.regexes if spec.pre.startswith("splits") else (spec.regex,))]
    if spec.pre == "splits+digits":  # DeepSeek's: digits one by one after the splits, ByteLevel as published
        return pre_tokenizers.Sequence([*splits, pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                                 use_regex=False)])
    return pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                                      use_regex=False)])


def _build_byte_level(spec: KindSpec, specials: dict):
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    if spec.normalizer == "nfc":
        tokenizer.normalizer = normalizers.NFC()
    elif spec.normalizer == "empty":
        tokenizer.normalizer = normalizers.Sequence([])
    tokenizer.pre_tokenizer = byte_level_pre_tokenizer(spec)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=BYTE_LEVEL_VOCAB, special_tokens=_special_texts(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_training_text(), trainer)
    if spec.ignore_merges:
        # The trainer rebuilds the model; set the published option on the trained one.
        data = json.loads(tokenizer.to_str())
        data["model"]["ignore_merges"] = True
        tokenizer = Tokenizer.from_str(json.dumps(data))
    if spec.plain_added:
        tokenizer.add_tokens([AddedToken(text, special=False, normalized=True) for text in spec.plain_added])
    return tokenizer


def _spm_normalizer(spec: KindSpec):
    from tokenizers import normalizers

    replace = normalizers.Replace(" ", "▁")
    if spec.normalizer == "replace":
        return replace
    return normalizers.Sequence([normalizers.Prepend("▁"), replace])


def _train_pieces(spec: KindSpec) -> tuple[list[str], list[str]]:
    """(merged pieces in merge order, single characters) learnt SentencePiece-style on the corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = _spm_normalizer(spec)
    # SentencePiece's split_by_whitespace: pieces never cross the start of a word ("▁").
    trainer_tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    n_specials = len(spec.front_specials) + 8
    trainer = trainers.BpeTrainer(vocab_size=SPM_VOCAB - 256 - n_specials, show_progress=False)
    trainer_tok.train_from_iterator(_training_text(), trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    merged = [a + b for a, b in (m if isinstance(m, list) else m.split(" ", 1) for m in model["merges"])]
    merged = list(dict.fromkeys(merged))
    merged_set = set(merged)
    chars = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if t not in merged_set]
    return merged, chars


def spm_complete_merges(vocab: dict[str, int], pieces: list[str]) -> list[tuple[str, str]]:
    """Every split of every piece into two vocabulary pieces, ordered by the piece's rank then by
    the parts' ids — what transformers' SentencePiece converter writes."""
    merges = []
    for piece in pieces:
        splits = [(piece[:i], piece[i:]) for i in range(1, len(piece))]
        splits = [s for s in splits if s[0] in vocab and s[1] in vocab]
        merges.extend(sorted(splits, key=lambda s: (vocab[s[0]], vocab[s[1]])))
    return merges


def _build_spm(spec: KindSpec, specials: dict):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    merged, chars = _train_pieces(spec)
    front = [specials.get(k) for k in spec.front_specials if specials.get(k)]
    additional = [t for t in _special_texts(specials) if t not in front]
    layout = front + (additional if spec.additional_in_front else [])
    layout += [f"<0x{b:02X}>" for b in range(256)] + merged + chars
    if not spec.additional_in_front:
        layout += additional
    vocab = {}
    for text in layout:
        vocab.setdefault(text, len(vocab))
    merges = spm_complete_merges(vocab, merged)
    unk = specials.get("unk")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = _spm_normalizer(spec)
    if spec.normalizer == "replace":
        # Gemma's published pre-tokenizer: a no-op after the normalizer replaced every space.
        tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    decode_steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.normalizer == "prepend+replace":
        decode_steps.append(decoders.Strip(" ", 1, 0))   # drop the dummy prefix again
    tokenizer.decoder = decoders.Sequence(decode_steps)
    strip_exempt = spec.rstrip_except
    tokenizer.add_special_tokens([
        AddedToken(t, special=True, normalized=False, rstrip=strip_exempt is not None and t not in strip_exempt)
        for t in _special_texts(specials)])
    return tokenizer


def _add_bos_post_processor(tokenizer, bos: str) -> None:
    from tokenizers import processors

    bos_id = tokenizer.token_to_id(bos)
    template = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                             special_tokens=[(bos, bos_id)])
    if tokenizer.decoder is not None and type(tokenizer.decoder).__name__ == "ByteLevel":
        tokenizer.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), template])
    else:
        tokenizer.post_processor = template


def _wrap(raw, specials: dict, chat_template: str | None):
    from transformers import PreTrainedTokenizerFast

    kwargs = {k + "_token": specials[k] for k in ("bos", "eos", "pad", "unk") if specials.get(k)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, clean_up_tokenization_spaces=False, **kwargs)
    # Re-registering specials by text would reset their attributes (rstrip): pass the raw ones.
    by_text = {t.content: t for t in raw.get_added_tokens_decoder().values()}
    extra = [by_text.get(t, t) for t in specials.get("additional") or [] if t not in kwargs.values()]
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer
