"""Tokenizer metadata for GGUF: every stand-in tokenizer kind, written as a vocabulary-only GGUF,
must tokenize in llama.cpp exactly as in transformers; plus unit tests of the pieces."""

from __future__ import annotations

import copy
import ctypes
import json
import unicodedata

import pytest

from ducktune.errors import ModelError
from ducktune.export.gguf_vocab import (
    add_tokenizer_metadata,
    pre_tokenizer_kind,
    spm_add_space_prefix,
    spm_scores,
    token_table,
    tokenizer_algorithm,
    tokenizer_support,
    whitespace_stripping,
)
from ducktune.models.standin_tokenizers import (
    KINDS,
    build_tokenizer,
    byte_level_pre_tokenizer,
    default_specials,
    spm_complete_merges,
)

# kind -> (tokenizer.ggml.model, tokenizer.ggml.pre, add_space_prefix) as llama.cpp's converter writes them
EXPECTED = {
    "qwen2": ("gpt2", "qwen2", None),
    "qwen35": ("gpt2", "qwen35", None),
    "deepseek-r1-qwen": ("gpt2", "deepseek-r1-qwen", None),
    "stablelm2-bpe": ("gpt2", "stablelm2", None),  # Qwen2's split; llama.cpp's own name for Arcade100k
    "llama-bpe": ("gpt2", "llama-bpe", None),
    "smollm": ("gpt2", "smollm", None),
    "command-r-bpe": ("gpt2", "command-r", None),  # SmolLM's split, named by Cohere's turn token
    "tekken": ("gpt2", "tekken", None),
    "phi4-bpe": ("gpt2", "dbrx", None),
    "o200k-bpe": ("gpt2", "gpt-4o", None),
    "glm4-bpe": ("gpt2", "glm4", None),
    "bloom": ("gpt2", "bloom", None),
    "hunyuan-bpe": ("gpt2", "hunyuan-dense", None),
    "deepseek-coder-bpe": ("gpt2", "deepseek-coder", None),
    "deepseek-llm-bpe": ("gpt2", "deepseek-llm", None),
    "falcon3-bpe": ("gpt2", "falcon3", None),
    "codegen-bpe": ("gpt2", "gpt-2", None),  # llama.cpp's "phi-2" is the same GPT-2 split
    "exaone4-bpe": ("gpt2", "gpt-2", None),  # llama.cpp runs its "exaone4" name with this same GPT-2 split
    "gptneox-bpe": ("gpt2", "gpt-2", None),  # llama.cpp's converter names it "mpt" / "olmo": the same GPT-2 split
    "llama-spm": ("llama", "default", True),
    "mistral-v3-spm": ("llama", "default", True),
    "gemma-spm": ("llama", "default", False),
    "phi3-spm": ("llama", "default", True),
    "internlm2-spm": ("llama", "default", True),
    "ernie45-spm": ("llama", "default", True),
}

PLAIN_PROBES = [
    "Hello world! How are you today?",
    "你好，世界。我是小鸭，由 ducktune 团队训练。",
    "emoji 🦆🎉👍🏽 and accents: café naïve Zürich",
    "def add(x, y):\n\treturn x  +  y  # sum\n\n\nprint(add(1, 2))",
    "   three leading spaces",
    " one leading space",
    "\t\ttabs\tand\n\nnewlines  \n",
    "trailing spaces   ",
    "numbers 1234567 and 3.14159 and 00042",
    "it's we're they'll I'd DON'T",
    "MixedCASE camelCase HTTPServer iPhone",
    "a  b   c    d     e",
    "x" * 40,
    "中英mixed文本 with 数字123，标点！？",
    " ",
    "\n",
]
SPECIAL_PROBES = [  # each kind's own special tokens inside text are added per kind below
    "plain <notspecial> text",
]


def _special_probes(tokenizer) -> list[str]:
    specials = [t for t in tokenizer.all_special_tokens if t]
    joined = "".join(f"{t}word {t} x{t}\n" for t in specials)
    return SPECIAL_PROBES + [joined, f"{specials[0]}Hello  世界 🦆{specials[-1]}  end"]


def _write_vocab_gguf(folder, tokenizer, path, name: str = "vocab") -> dict:
    """A vocabulary-only GGUF: the tokenizer keys plus the few architecture keys llama.cpp reads."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)  # llama.cpp picks Phi-3's whitespace stripping by name
    writer.add_block_count(1)
    writer.add_context_length(512)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(16)
    metadata = add_tokenizer_metadata(writer, folder, tokenizer, None, len(tokenizer))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return metadata


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    """kind -> (reloaded HF tokenizer, folder, GGUF path, written metadata); each built once, on demand."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("standin-tokenizers")
    built = {}

    def get(kind):
        if kind not in built:
            folder = root / kind
            build_tokenizer(kind, default_specials(kind), chat_template="{{ messages }}").save_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)  # what export sees: the saved folder
            metadata = _write_vocab_gguf(folder, tokenizer, folder / "vocab.gguf", name=f"standin-{kind}")
            built[kind] = (tokenizer, folder, folder / "vocab.gguf", metadata)
        return built[kind]

    return get


# ---------------------------------------------------------------- without llama.cpp


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gets_llama_cpps_names(standins, kind):
    _, folder, _, metadata = standins(kind)
    model, pre, space_prefix = EXPECTED[kind]
    assert (metadata["tokenizer.ggml.model"], metadata["tokenizer.ggml.pre"]) == (model, pre)
    assert metadata["add_space_prefix"] == space_prefix
    assert metadata["add_bos"] == KINDS[kind].adds_bos
    assert metadata["add_eos"] is False
    assert tokenizer_support(folder) is None
    assert tokenizer_support(folder / "tokenizer.json") is None


def test_stand_ins_encode_anything_and_decode_back(standins):
    for kind in ("qwen2", "llama-spm", "gemma-spm"):
        tokenizer = standins(kind)[0]
        for text in PLAIN_PROBES:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id is None, (kind, text)
            assert tokenizer.decode(ids) == unicodedata.normalize("NFC", text), (kind, text)


def test_bos_is_added_exactly_by_the_families_that_add_it(standins):
    assert standins("llama-spm")[0]("hi")["input_ids"][0] == standins("llama-spm")[0].bos_token_id
    assert standins("llama-bpe")[0]("hi")["input_ids"][0] == standins("llama-bpe")[0].bos_token_id
    qwen = standins("qwen2")[0]
    assert qwen("hi")["input_ids"] == qwen("hi", add_special_tokens=False)["input_ids"]


def test_names_with_the_same_regex_follow_ignore_merges_and_specials(standins):
    llama3 = json.loads((standins("llama-bpe")[1] / "tokenizer.json").read_text())
    glm = json.loads((standins("glm4-bpe")[1] / "tokenizer.json").read_text())
    assert pre_tokenizer_kind(llama3) == "llama-bpe" and pre_tokenizer_kind(glm) == "glm4"
    for data in (llama3, glm):
        data["model"]["ignore_merges"] = False  # llama.cpp's "llama-bpe" and "glm4" ignore merges
    assert pre_tokenizer_kind(llama3) == "dbrx" and pre_tokenizer_kind(glm) == "chatglm-bpe"


def test_lfm2_tokenizer_gets_llama_cpps_lfm2_name():
    """LFM2's tokenizer is Llama 3's pipeline with its own specials: llama.cpp's converter names it "lfm2"
    (run as Llama 3's, BOS added); without ignore_merges it would be DBRX's."""
    from ducktune.models.families import family

    spec = family("lfm2")
    data = json.loads(build_tokenizer(spec.tokenizer, spec.specials, chat_template="{{ messages }}")
                      .backend_tokenizer.to_str())
    assert pre_tokenizer_kind(data) == "lfm2"
    data["model"]["ignore_merges"] = False
    assert pre_tokenizer_kind(data) == "dbrx"
def test_exaone_3_tokenizer_gets_llama_cpps_exaone_name():
    """EXAONE 3.x's tokenizer is SmolLM's pipeline (digits one by one, then GPT-2's split) with EXAONE's turn
    tokens: llama.cpp's converter names it "exaone" (run with SmolLM's regexes), as ducktune now does; no BOS added."""
    from ducktune.models.families import family

    spec = family("exaone3.5")
    tokenizer = build_tokenizer(spec.tokenizer, spec.specials, chat_template="{{ messages }}")
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    assert tokenizer_algorithm(data) == ("gpt2", "exaone", None)
    assert tokenizer("hi")["input_ids"] == tokenizer("hi", add_special_tokens=False)["input_ids"]


def test_falcon_h1_gguf_names_its_llama_3_pipeline_tokenizer_falcon_h1(tmp_path):
    """llama.cpp's converter names every Falcon-H1 tokenizer (Llama 3's pipeline; its four differ by hash only)
    "falcon-h1", which llama.cpp runs as Llama 3's: a falcon-h1 GGUF says so, a llama one keeps "llama-bpe"."""
    import gguf

    from ducktune.models.families import family

    spec = family("falcon-h1")
    tokenizer = build_tokenizer(spec.tokenizer, spec.specials, chat_template="{{ messages }}")
    tokenizer.save_pretrained(tmp_path)
    assert pre_tokenizer_kind(json.loads((tmp_path / "tokenizer.json").read_text())) == "llama-bpe"
    for arch, name in (("falcon-h1", "falcon-h1"), ("llama", "llama-bpe")):
        writer = gguf.GGUFWriter(str(tmp_path / f"{arch}.gguf"), arch)
        add_tokenizer_metadata(writer, tmp_path, tokenizer, None, len(tokenizer))
        assert writer.kv_data[0]["tokenizer.ggml.pre"].value == name, arch


def test_deepseek_r1_distill_llama_tokenizer_is_llama_bpe_adding_its_bos():
    """R1-Distill-Llama-8B keeps Llama 3's pipeline with DeepSeek's specials: llama.cpp's converter hashes its
    splits to "llama-bpe" (not "deepseek-r1-qwen", whose regex is Qwen2's), and BOS is <｜begin▁of▁sentence｜>."""
    from ducktune.models.families import family

    spec = family("deepseek-r1-distill-llama")
    tokenizer = build_tokenizer(spec.tokenizer, spec.specials, chat_template="{{ messages }}")
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    assert tokenizer_algorithm(data) == ("gpt2", "llama-bpe", None)
    assert tokenizer("hi")["input_ids"][0] == tokenizer.convert_tokens_to_ids("<｜begin▁of▁sentence｜>")


def test_falcon3_tokenizer_gets_llama_cpps_falcon3_name():
    """Falcon3's tokenizer splits like Llama 3's (cl100k regex, whole words kept) with Falcon's >>TITLE<<-style
    specials: llama.cpp's converter names it "falcon3" (run as Llama 3's); it adds no BOS, which the GGUF says."""
    from ducktune.models.families import family

    spec = family("falcon3")
    tokenizer = build_tokenizer(spec.tokenizer, spec.specials, chat_template="{{ messages }}")
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    assert pre_tokenizer_kind(data) == "falcon3"
    assert tokenizer("hi")["input_ids"] == tokenizer("hi", add_special_tokens=False)["input_ids"]
    data["model"]["ignore_merges"] = False
    assert pre_tokenizer_kind(data) == "dbrx"


def test_o200k_is_gpt_4o_only_when_merges_apply(standins):
    """Phi-4-mini's o200k split is llama.cpp's "gpt-4o", which applies merges: no llama.cpp name splits
    with that regex and ignores merges, so such a tokenizer is refused rather than named wrongly."""
    data = json.loads((standins("o200k-bpe")[1] / "tokenizer.json").read_text())
    assert pre_tokenizer_kind(data) == "gpt-4o"
    data["model"]["ignore_merges"] = True
    with pytest.raises(ModelError, match="GPT-4o/Phi-4-mini") as caught:
        pre_tokenizer_kind(data)
    assert "\n" not in str(caught.value)


def test_spm_scores_follow_merge_ranks():
    tokenizer_json = {"model": {"type": "BPE", "merges": [["▁", "a"], "a b", ["ab", "c"], ["a", "bc"], ["b", "c"]]}}
    scores = spm_scores(tokenizer_json, ["<unk>", "a", "▁a", "ab", "abc", "bc"])
    # A piece scores -rank of the first merge building it; higher score = merged first in llama.cpp.
    assert scores[2] == 0.0 and scores[3] == -1.0 and scores[4] == -2.0 and scores[5] == -4.0
    assert scores[0] == scores[1] < min(scores[2:])


def test_complete_merges_list_every_split_in_piece_order():
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}
    assert spm_complete_merges(vocab, ["ab", "bc", "abc"]) == [("a", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]


def test_token_types_of_bytes_specials_and_unknown(standins):
    import gguf

    tokenizer, folder, _, _ = standins("llama-spm")
    data = json.loads((folder / "tokenizer.json").read_text())
    tokens, types = token_table(data, len(tokenizer))
    kind_of = dict(zip(tokens, types))
    assert kind_of["<unk>"] == gguf.TokenType.UNKNOWN
    assert kind_of["<s>"] == kind_of["</s>"] == gguf.TokenType.CONTROL
    assert kind_of["<0x0A>"] == kind_of["<0xFF>"] == gguf.TokenType.BYTE
    assert kind_of["▁the"] == gguf.TokenType.NORMAL
    assert sum(t == gguf.TokenType.BYTE for t in types) == 256
    byte_level = json.loads((standins("qwen2")[1] / "tokenizer.json").read_text())
    tokens, types = token_table(byte_level, len(standins("qwen2")[0]) + 3)
    kind_of = dict(zip(tokens, types))
    assert kind_of["<|im_end|>"] == gguf.TokenType.CONTROL
    assert gguf.TokenType.BYTE not in types  # byte-level BPE has no <0xXX> pieces
    assert tokens[-1].startswith("[PAD") and types[-1] == gguf.TokenType.UNUSED


def test_unknown_pipelines_are_refused_with_one_line_reasons(standins, tmp_path):
    qwen = json.loads((standins("qwen2")[1] / "tokenizer.json").read_text())
    other_regex = copy.deepcopy(qwen)
    other_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    with pytest.raises(ModelError, match="pre-tokenizer .* no llama.cpp equivalent"):
        pre_tokenizer_kind(other_regex)
    reason = tokenizer_support(other_regex)
    assert reason and "\n" not in reason and "pre-tokenizer" in reason
    wordpiece = {"model": {"type": "WordPiece", "vocab": {}}}
    assert "WordPiece" in tokenizer_support(wordpiece)
    slow_only = tmp_path / "slow-only"
    slow_only.mkdir()
    (slow_only / "tokenizer.model").write_bytes(b"")
    assert "tokenizer.model" in tokenizer_support(slow_only)
    lowercase = copy.deepcopy(qwen)
    lowercase["normalizer"] = {"type": "Lowercase"}
    assert "Lowercase" in tokenizer_support(lowercase)


def test_spm_space_prefix_follows_the_normalizer(standins):
    llama = json.loads((standins("llama-spm")[1] / "tokenizer.json").read_text())
    assert spm_add_space_prefix(llama) is True
    metaspace = copy.deepcopy(llama)
    metaspace["normalizer"] = None
    metaspace["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    assert spm_add_space_prefix(metaspace) is True
    metaspace["pre_tokenizer"]["prepend_scheme"] = "never"
    assert spm_add_space_prefix(metaspace) is False
    # transformers 5 rebuilds Llama/Mistral SentencePiece tokenizers with prepend_scheme "first":
    # "▁" only before the first fragment, while llama.cpp prefixes text after every special token.
    metaspace["pre_tokenizer"]["prepend_scheme"] = "first"
    assert "'first'" in tokenizer_support(metaspace)


def test_phi3_whitespace_stripping_needs_a_phi3_name(standins, tmp_path):
    tokenizer, folder, _, metadata = standins("phi3-spm")
    assert metadata["whitespace_stripping"] == "phi3"
    # <|end|> swallows the newline after it, in transformers as in llama.cpp for "phi3" models
    assert tokenizer("<|end|>\nhi")["input_ids"] == tokenizer("<|end|>hi")["input_ids"]
    with pytest.raises(ModelError, match="must contain 'phi3'"):
        _write_vocab_gguf(folder, tokenizer, tmp_path / "a.gguf", name="my-bot")
    llama = standins("llama-spm")
    with pytest.raises(ModelError, match="contains 'phi3'"):
        _write_vocab_gguf(llama[1], llama[0], tmp_path / "b.gguf", name="phi3-lookalike")
    data = json.loads((folder / "tokenizer.json").read_text())
    odd = copy.deepcopy(data)
    next(t for t in odd["added_tokens"] if t["content"] == "<s>")["rstrip"] = True
    with pytest.raises(ModelError, match="rstrip"):
        whitespace_stripping(odd)
    next(t for t in data["added_tokens"] if t["content"] == "<|end|>")["lstrip"] = True
    assert "lstrip" in tokenizer_support(data)


def test_incomplete_spm_merges_are_refused(standins):
    data = json.loads((standins("llama-spm")[1] / "tokenizer.json").read_text())
    merges = data["model"]["merges"]
    victim = next(i for i, m in enumerate(merges) if len((m if isinstance(m, list) else m.split(" "))[0]) > 1)
    del merges[victim]
    assert "incomplete" in tokenizer_support(data)


def test_read_back_checks_scores_for_sentencepiece(standins):
    from ducktune.export.gguf_file import read_back

    for kind in ("llama-spm", "qwen2"):
        _, _, path, metadata = standins(kind)
        report = read_back(path)
        problems = [p for p in report["problems"] if "chat_template" not in p]
        assert problems == [], (kind, problems)
        assert report["metadata"]["tokenizer.ggml.model"] == metadata["tokenizer.ggml.model"]
    assert read_back(standins("llama-spm")[2])["metadata"]["n_scores"] == len(standins("llama-spm")[0])


# ---------------------------------------------------------------- against llama.cpp


@pytest.fixture(scope="session")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama_cpp (llama-cpp-python) is not installed: cannot compare "
                               "with llama.cpp's tokenizer")


def _llama_detokenize(llama_cpp, llm, ids: list[int]) -> str:
    """llama.cpp's own detokenizer (llama-cpp-python's Llama.detokenize is a per-token loop)."""
    array = (llama_cpp.llama_token * len(ids))(*ids)
    size = 16 * len(ids) + 64
    buffer = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(llm._model.vocab, array, len(ids), buffer, size, False, True)
    assert n >= 0
    return buffer.raw[:n].decode("utf-8")


@pytest.mark.requires_llama_cpp
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_llama_cpp_tokenizes_like_transformers(standins, llama_cpp, kind):
    tokenizer, _, path, metadata = standins(kind)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    mismatches = []
    for text in PLAIN_PROBES + _special_probes(tokenizer):
        hf = tokenizer(text)["input_ids"]
        ours = llm.tokenize(text.encode("utf-8"), add_bos=metadata["add_bos"], special=True)
        if hf != ours:
            mismatches.append((text, tokenizer.convert_ids_to_tokens(hf), tokenizer.convert_ids_to_tokens(ours)))
        # Decoding: llama.cpp's detokenizer renders the same text as transformers.
        assert _llama_detokenize(llama_cpp, llm, hf) == tokenizer.decode(hf), (kind, text)
    assert mismatches == [], mismatches[:2]


@pytest.mark.requires_llama_cpp
@pytest.mark.parametrize("kind", ["llama-spm", "gemma-spm", "qwen2", "tekken", "bloom", "codegen-bpe", "gptneox-bpe"])
def test_llama_cpp_round_trip_of_plain_text(standins, llama_cpp, kind):
    _, _, path, _ = standins(kind)
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    for text in PLAIN_PROBES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert _llama_detokenize(llama_cpp, llm, ids) == text, (kind, text)


# ---------------------------------------------------------------- real vocabularies (opt-in)

# llama.cpp's own tokenizer test vocabularies (models/ggml-vocab-<name>.gguf + .inp probes + .out ids
# from the original HF tokenizers) ship in the llama.cpp source tree, e.g. inside the
# llama-cpp-python sdist: `make verify-extra` unpacks them into ~/.cache/ducktune/llama.cpp-vocabs
# (DUCKTUNE_LLAMA_CPP_SOURCE may name another llama.cpp tree).
REAL_VOCABS = ["gpt-2", "qwen2", "llama-bpe", "phi-3", "llama-spm"]


def _real_vocab_dir():
    from conftest import llama_cpp_vocabs

    return llama_cpp_vocabs() / "models"


def _hf_tokenizer_from_vocab_gguf(models_dir, name, folder):
    """The HF tokenizer transformers builds from a llama.cpp vocabulary GGUF, saved to `folder`.
    For SentencePiece vocabularies it builds the Metaspace("first") shape; the published
    Llama-2 / Phi-3 tokenizer.json has the legacy Prepend+Replace normalizer, restored here."""
    import shutil

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    shutil.copy(models_dir / f"ggml-vocab-{name}.gguf", folder / "vocab.gguf")
    AutoTokenizer.from_pretrained(folder, gguf_file="vocab.gguf").save_pretrained(folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if (data.get("pre_tokenizer") or {}).get("type") == "Metaspace":
        data["pre_tokenizer"] = None
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return PreTrainedTokenizerFast.from_pretrained(folder)


@pytest.mark.slow
@pytest.mark.requires_llama_cpp
@pytest.mark.requires_llama_cpp_vocabs
@pytest.mark.parametrize("name", REAL_VOCABS)
def test_real_vocabularies_round_trip_through_our_gguf(llama_cpp, tmp_path, name):
    models_dir = _real_vocab_dir()
    tokenizer = _hf_tokenizer_from_vocab_gguf(models_dir, name, tmp_path)
    # transformers' GGUF loader drops Phi-3's rstrip flags, so the name must not say phi-3 here
    metadata = _write_vocab_gguf(tmp_path, tokenizer, tmp_path / "ours.gguf", name="vocab-check")
    llm = llama_cpp.Llama(str(tmp_path / "ours.gguf"), vocab_only=True, verbose=False)
    texts = (models_dir / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    originals = (models_dir / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").strip().split("\n")
    differ_from_hf, differ_from_original = [], []
    for text, original in zip(texts, originals):
        ours = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if ours != tokenizer(text, add_special_tokens=False)["input_ids"]:
            differ_from_hf.append(text)
        if ours != [int(i) for i in original.split()]:
            differ_from_original.append(text)
    assert differ_from_hf == []
    # transformers' GGUF loader drops Llama 3's ignore_merges, so that tokenizer (named "dbrx" by
    # us, correctly) differs from the original on the one probe llama.cpp marks "llama-bpe fails".
    assert differ_from_original == ([] if name != "llama-bpe" else ["Cửa Việt"]), metadata["tokenizer.ggml.pre"]


# llama.cpp's DeepSeek vocabularies (deepseek-coder-6.7b-base, deepseek-llm-7b-base) -> the stand-in kind whose
# pipeline is theirs. transformers' GGUF loader knows no DeepSeek pre-tokenizer, so the HF tokenizer is rebuilt from
# the GGUF's tokens and merges with the kind's pipeline: its ids equal the .out file (written by the published HF
# tokenizer) only if that pipeline is the published one.
REAL_DEEPSEEK_VOCABS = {"deepseek-coder": "deepseek-coder-bpe", "deepseek-llm": "deepseek-llm-bpe"}


def _hf_tokenizer_with_kind_pipeline(models_dir, name, kind, folder):
    """The HF tokenizer of llama.cpp's vocabulary GGUF `name` (tokens, merges, control and user-defined tokens)
    with tokenizer kind `kind`'s normalizer, pre-tokenizer and decoder, saved to `folder`."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    reader = gguf.GGUFReader(str(models_dir / f"ggml-vocab-{name}.gguf"))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    added = {i: t for i, t in enumerate(tokens) if types[i] in (3, 4)}  # control, user-defined
    vocab = {t: i for i, t in enumerate(tokens) if i not in added}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    raw.normalizer = normalizers.Sequence([])
    raw.pre_tokenizer = byte_level_pre_tokenizer(KINDS[kind])
    raw.decoder = decoders.ByteLevel()
    for i in sorted(added):  # ids in order, so each lands on its GGUF id
        raw.add_tokens([AddedToken(added[i], special=types[i] == 3, normalized=types[i] != 3)])
    assert all(raw.token_to_id(t) == i for i, t in added.items())
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos, clean_up_tokenization_spaces=False)
    hf.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


@pytest.mark.requires_llama_cpp
@pytest.mark.requires_llama_cpp_vocabs
@pytest.mark.parametrize("name", sorted(REAL_DEEPSEEK_VOCABS))
def test_deepseek_vocabularies_tokenize_as_published(llama_cpp, tmp_path, name):
    """The published DeepSeek tokenizers' ids (llama.cpp's .out probes: digits, CJK, code, whitespace runs) from
    our pipeline in transformers, and from our GGUF in llama.cpp."""
    models_dir = _real_vocab_dir()
    tokenizer = _hf_tokenizer_with_kind_pipeline(models_dir, name, REAL_DEEPSEEK_VOCABS[name], tmp_path)
    metadata = _write_vocab_gguf(tmp_path, tokenizer, tmp_path / "ours.gguf", name="vocab-check")
    assert metadata["tokenizer.ggml.pre"] == name
    llm = llama_cpp.Llama(str(tmp_path / "ours.gguf"), vocab_only=True, verbose=False)
    texts = (models_dir / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    # one line per probe, the empty probe's empty; the file ends with the separator and a newline
    originals = (models_dir / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    differ_in_hf, differ_in_llama_cpp = [], []
    for text, original in zip(texts, originals, strict=True):
        expected = [int(i) for i in original.split()]
        if tokenizer(text, add_special_tokens=False)["input_ids"] != expected:
            differ_in_hf.append(text)
        if llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) != expected:
            differ_in_llama_cpp.append(text)
    assert (differ_in_hf, differ_in_llama_cpp) == ([], [])


def test_deepseek_llm_refused_when_a_merge_joins_digits():
    """llama.cpp's deepseek-llm keeps digit runs together ("\\p{N}+") where HF splits them one by one: equal only
    while no merge joins two digits."""
    data = _tokenizer_json_of("deepseek-llm-bpe")
    assert pre_tokenizer_kind(data) == "deepseek-llm"
    data["model"]["merges"].append(["4", "2"])
    with pytest.raises(ModelError, match="merge '4 2' joins digits"):
        pre_tokenizer_kind(data)
    coder = _tokenizer_json_of("deepseek-coder-bpe")  # llama.cpp splits Coder's digits one by one, as HF
    coder["model"]["merges"].append(["4", "2"])
    assert pre_tokenizer_kind(coder) == "deepseek-coder"


def _tokenizer_json_of(kind: str) -> dict:
    return json.loads(build_tokenizer(kind, default_specials(kind)).backend_tokenizer.to_str())


@pytest.mark.slow
@pytest.mark.requires_llama_cpp
@pytest.mark.parametrize("kind", ["llama-spm", "gemma-spm"])
def test_tiny_model_with_sentencepiece_tokenizer_exports_and_runs(llama_cpp, tmp_path, kind):
    """write_gguf + read_back for a whole (tiny, Llama-shaped) model with a SentencePiece tokenizer."""
    from transformers import PreTrainedTokenizerFast

    from ducktune.export.gguf_file import read_back, write_gguf
    from ducktune.models.tiny import build_tiny_model

    folder = tmp_path / "model"
    build_tiny_model(folder, arch="llama", template="llama3", vocab_size=2048)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    build_tokenizer(kind, default_specials(kind), chat_template="{{ messages[0]['content'] }}").save_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    summary = write_gguf(folder, tmp_path / "m.gguf", "f16", f"tiny-{kind}", tokenizer, log=lambda *a: None)
    back = read_back(tmp_path / "m.gguf", summary)
    assert back["problems"] == []
    assert back["metadata"]["tokenizer.ggml.model"] == "llama" and back["metadata"]["n_scores"] == 2048
    llm = llama_cpp.Llama(str(tmp_path / "m.gguf"), n_ctx=64, verbose=False)
    text = "Hello 你好 🦆  x"
    ids = tokenizer(text)["input_ids"]
    assert llm.tokenize(text.encode(), add_bos=True, special=True) == ids
    # the weights load and run: a completion over exactly the HF prompt tokens
    assert llm.create_completion(text, max_tokens=2, temperature=0)["usage"]["prompt_tokens"] == len(ids)
