"""Proof that an export answers like the trained model.

Every export ends with these checks; `ducktune verify EXPORT_DIR` runs them again:

1. GGUF read back with the `gguf` reader (every tensor, its shape, tokenizer metadata), and
   loaded with transformers' own GGUF loader: its logits against the merged model's on the
   run's probe prompts (f16: max |Δ| small and next-token top-1 identical).
2. GGUF run in llama.cpp (llama-cpp-python, the optional `verify` extra): prompt token ids
   identical to the HF tokenizer's (tokenized the way Ollama does: the rendered prompt,
   BOS added per the GGUF's add_bos_token, special tokens parsed); f16 greedy answers
   identical to the merged HF model's; q8_0 teacher-forced top-1 agreement >= 0.95 (a pick
   within the quant's error of the merged model's top-1, a near-tie, is not a disagreement);
   other quants' agreement reported.
3. Modelfile parsed with Ollama's grammar; its TEMPLATE rendered by Go's text/template on
   sample conversations and compared byte for byte with the chat template's rendering.
4. The chat template inside merged/ and every GGUF rendered (transformers; llama-cpp-python's
   jinja2 formatter for the GGUFs) on the same conversations and compared byte for byte with the
   trained format recorded at export (the run's default system prompt and inserted EOS included).

Results are a list of `Check`s; `render_table` prints them as a Markdown table.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"
DEFAULT_PROMPT_LIMIT = 12  # probe prompts the checks run on (0 = all); evenly spread over the run's list
F16_LOGIT_TOLERANCE = 0.02   # max |Δlogit| f16 GGUF vs merged, relative to the largest |logit|
Q8_AGREEMENT = 0.95
# A greedy answer of the f16 GGUF may part from the merged model's where the merged model's two best
# tokens are this close (logits): f16 weights move SmolLM2's logits by up to ~0.05 (the transformers
# GGUF check measures it), so such a flip says nothing about the export. A wider margin that
# llama.cpp overturns is a real difference and fails.
GREEDY_TIE_LOGITS = 0.1
# The same for top-1 agreement, per quant: a position where the export picks a token the merged model put
# within this many logits of its own top-1 is a near-tie, not a disagreement. q8_0 rounds every weight to
# 8 bits: on SmolLM2 adapters it moved the gap between the merged model's two best tokens by up to
# 0.27-0.38 (the slow test's 4-step adapters) and 0.60 (the quickstart's) logits at 95 % of answer
# positions (the check reports this number on every export), so a merged-model margin below 1 logit
# can flip without any fault; a token preferred by more is a real difference. A faulty export
# overturns most positions, by several logits (a stale logits buffer: 2 of 3, by 1.2-26).
QUANT_TIE_LOGITS = {"f16": GREEDY_TIE_LOGITS, "q8_0": 1.0}
# Texts llama.cpp must tokenize exactly like the HF tokenizer: scripts, emoji, code, and the
# whitespace runs where pre-tokenizers (and SentencePiece's space prefix) differ most.
TOKENIZER_PROBES = [
    "Hello world! How are you today?",
    " leading space, then  two   spaces and a trailing one ",
    "你好，世界！今天天气怎么样？我是小鸭。",
    "日本語のテキストと한국어 텍스트, Ünïcödé àccents, Ελληνικά, русский текст",
    "Emoji: 🦆🦆 👍🏽 ❤️ 🇫🇷 ✨",
    "def add(a, b):\n    return a + b  # sum\n\n\tif x:\n\t\tpass",
    "Numbers 1234567890 3.14159 1,000,000 and 2nd, 3rd, 42nd; ids: a1b2c3",
    "line one\n\nline three\r\n   \n\n\n    indented after blank lines",
    "\n\n\n",
    "   ",
    "Mixed: The 小鸭 says 'quack' — “quoted” … (ok?) [1] {x} <tag> & | ~ ^ `code`",
    "don't won't it's we're I'm they've you'll he'd DON'T",
]


@dataclass
class Check:
    name: str
    status: str
    detail: str
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def spread_indices(count: int, limit: int = DEFAULT_PROMPT_LIMIT) -> list[int]:
    """The positions of at most `limit` of `count` prompts, evenly spread (first and last included), so long
    probe lists (e.g. trained questions followed by general ones) are covered from end to end."""
    if limit <= 0 or count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


def render_table(checks: list[Check]) -> str:
    """Markdown, for report.md."""
    lines = ["| check | result | detail |", "|---|---|---|"]
    for check in checks:
        cells = [text.replace("|", "\\|").replace("\n", " ") for text in (check.name, check.status, check.detail)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_text(checks: list[Check]) -> str:
    """Plain text, for the terminal."""
    return "\n".join(f"{check.status:<4}  {check.name}\n      {check.detail}" for check in checks)


def passed(checks: list[Check]) -> bool:
    return all(check.status != FAIL for check in checks)


# ---------------------------------------------------------------------- the reference model


class Reference:
    """The merged HF model (fp32) and what it does on the probe prompts, computed once."""

    def __init__(self, model, tokenizer, chat_format, prompts: list[str], max_new_tokens: int = 64,
                 tools: list | None = None):
        """`tools[i]`: the tools prompt i is offered (None: none), as the run's probes were asked."""
        from ducktune.export.merge import prompt_ids

        self.model = model
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.prompts = prompts
        self.tools = tools or [None] * len(prompts)
        self.max_new_tokens = max_new_tokens
        self.prompt_ids = prompt_ids(chat_format, prompts, self.tools)
        self._prompt_logits = None
        self._answers = None
        self._forced = None

    @property
    def stop_ids(self) -> set[int]:
        return set(self.chat_format.stop_token_ids)

    def prompt_logits(self) -> list:
        from ducktune.export.merge import logits_of

        if self._prompt_logits is None:
            self._prompt_logits = logits_of(self.model, self.prompt_ids)
        return self._prompt_logits

    def answers(self) -> list[list[int]]:
        """Greedy answer token ids (ending with the stop token when one was produced).

        Generated in one left-padded batch (a dozen answers cost little more than one on a CPU),
        then each is checked against the model's own single-sequence forward: an answer whose every
        token is the argmax of the unpadded logits is the greedy answer; one that parts from them
        (padding moved a near-tie) is generated again alone, as an unbatched `generate` would.
        """
        if self._answers is None:
            answers = self._generate(self.prompt_ids)
            forced = self._forced_of(answers)
            for i, (answer, logits) in enumerate(zip(answers, forced)):
                if [int(t) for t in logits.argmax(-1)] != answer:
                    answers[i] = self._generate([self.prompt_ids[i]])[0]
                    forced[i] = self._forced_of([answers[i]], [self.prompt_ids[i]])[0]
            self._answers, self._forced = answers, forced
        return self._answers

    def _generate(self, id_lists: list[list[int]]) -> list[list[int]]:
        """Greedy answers of the merged model, decoded together with a KV cache (a row leaves the
        batch at its stop token), as `ducktune chat` and the quickstart's comparison decode."""
        from ducktune.chat.engine import ChatEngine

        engine = ChatEngine(self.model, self.tokenizer, self.chat_format, name="merged")
        return engine.greedy_ids(id_lists, self.max_new_tokens)

    def _forced_of(self, answers: list[list[int]], prompts: list[list[int]] | None = None) -> list:
        """Logits over prompt + answer at the positions that predict the answer tokens (unpadded)."""
        from ducktune.export.merge import logits_of

        prompts = self.prompt_ids if prompts is None else prompts
        sequences = [p + a for p, a in zip(prompts, answers)]
        return [logits[len(p) - 1: len(p) - 1 + len(a)]
                for logits, p, a in zip(logits_of(self.model, sequences), prompts, answers)]

    def forced_logits(self) -> list:
        """Logits over prompt + greedy answer, at the positions that predict the answer tokens."""
        self.answers()
        return self._forced

    def answer_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode([t for t in ids if t not in self.stop_ids], skip_special_tokens=True)


# ---------------------------------------------------------------------- 1. GGUF read-back and transformers


def check_read_back(path: Path, expected=None, model_dir: Path | None = None) -> Check:
    from ducktune.export.gguf_file import read_back

    label = f"GGUF {path.name}: read back (gguf reader)"
    try:
        result = read_back(path, expected, model_dir)
    except Exception as exc:  # a damaged file: report it, do not crash the table
        return Check(label, FAIL, f"unreadable: {exc}")
    meta = result["metadata"]
    detail = (f"{result['tensors']} tensors with expected names and shapes; {meta['n_tokens']} tokens, "
              f"{meta['n_merges']} merges, pre-tokenizer {meta['tokenizer.ggml.pre']}, "
              f"add_bos {meta['tokenizer.ggml.add_bos_token']}, chat template present")
    if result["problems"]:
        return Check(label, FAIL, "; ".join(result["problems"][:5]), {"problems": result["problems"]})
    return Check(label, PASS, detail, {"tensors": result["tensors"], "n_tokens": meta["n_tokens"],
                                       "n_merges": meta["n_merges"]})


# Architectures transformers' GGUF loader reads, but not faithfully: measured on the family stand-ins
# (bench/families.py), where llama.cpp's greedy answers were identical to the merged model's.
TRANSFORMERS_GGUF_INEXACT = {"gemma2": "max |Δlogit| 1.2 of 9.8 on the Gemma 2 stand-in",
                             "gemma3": "max |Δlogit| 6.4 of 8.8 on the Gemma 3 stand-in"}
# Architectures it lists but fails to load, whatever the file (transformers 5.23)
TRANSFORMERS_GGUF_UNREADABLE = {"gemma4": "it expects one intermediate_size, Gemma 4 has one per layer"}


def gguf_string_field(path: Path, key: str) -> str | None:
    """A string field of a GGUF file's header (None: absent or not a string), from
    gguf_file.read_gguf_header: gguf's GGUFReader decodes every array item, the 49k-token vocabulary
    included (~7 s of CPU for SmolLM2), to answer which architecture a file holds. ValueError on a
    header it does not know."""
    from ducktune.export.gguf_file import read_gguf_header

    return string_field(read_gguf_header(path).metadata, key)


def string_field(metadata: dict, key: str) -> str | None:
    value = metadata.get(key)
    return value if isinstance(value, str) else None


def _has_experts(path: Path) -> bool:
    """Whether a llama GGUF holds routed experts (Mixtral is written as llama with llama.expert_count)."""
    from ducktune.export.gguf_file import read_gguf_header

    try:
        return int(read_gguf_header(path).metadata.get("llama.expert_count") or 0) > 0
    except (ValueError, OSError, UnicodeDecodeError, TypeError):
        return False


def transformers_gguf_gap(path: Path) -> str | None:
    """Why transformers' own GGUF reader cannot be the independent check for this file (None: it can).
    It reads only some architectures; llama.cpp, the runtime that matters, checks all of them."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        arch = gguf_string_field(path, "general.architecture") or "unknown"
    except (ValueError, OSError, UnicodeDecodeError):  # not a header this reader knows: gguf's own reader
        field = gguf.GGUFReader(str(path)).get_field("general.architecture")
        arch = field.contents() if field is not None else "unknown"
    if arch in TRANSFORMERS_GGUF_UNREADABLE:
        return (f"transformers' GGUF loader cannot read {arch} files ({TRANSFORMERS_GGUF_UNREADABLE[arch]}); "
                "llama.cpp checks this file")
    if arch == "llama" and _has_experts(path):
        return ("transformers' GGUF loader reads llama files as a dense Llama, without this file's experts "
                "(Mixtral); llama.cpp checks this file")
    if arch in TRANSFORMERS_GGUF_INEXACT:
        return (f"transformers' GGUF loader reads {arch} files with other logits than llama.cpp and the merged "
                f"model ({TRANSFORMERS_GGUF_INEXACT[arch]}); llama.cpp checks this file")
    if arch in GGUF_SUPPORTED_ARCHITECTURES:
        return None
    return f"transformers' GGUF loader does not read architecture {arch!r}; llama.cpp checks this file"


def _rope_read_differently(ours, theirs) -> str | None:
    """Why the loaded GGUF's logits cannot match: its config's rope scaling is not the model's (the
    loader drops Llama 3's, which the GGUF holds as a rope_freqs tensor it does not read; the
    difference grows with the position, past the tolerance on long prompts). None: the same."""
    from ducktune.export.gguf_arch import rope_params

    kinds = [rope_params(config.to_dict())["rope_type"] for config in (ours, theirs)]
    if kinds[0] == kinds[1]:
        return None
    return (f"transformers' GGUF loader reads this file with {kinds[1]} rope where the model has {kinds[0]} "
            "rope scaling (its logits drift with the position); llama.cpp checks this file")


def check_transformers_loader(path: Path, quant: str, reference: Reference) -> Check:
    import torch
    from transformers import AutoModelForCausalLM

    from ducktune.export.merge import logits_of
    from ducktune.models.loading import register_multimodal_lms

    register_multimodal_lms()

    label = f"GGUF {path.name}: transformers' GGUF loader vs merged"
    config = reference.model.config
    unreadable = transformers_gguf_gap(path)
    if unreadable:
        return Check(label, INFO, unreadable)
    if config.model_type == "qwen3" and config.head_dim != type(config)().head_dim:
        return Check(label, SKIP, "transformers' GGUF loader ignores qwen3.attention.key_length and assumes "
                                  f"head_dim {type(config)().head_dim} (this model: {config.head_dim}); llama.cpp reads it")
    try:
        # Its de-quantizing progress bar cannot be turned off otherwise.
        with contextlib.redirect_stderr(io.StringIO()):
            loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:  # transformers raises many kinds for files it cannot read
        return Check(label, FAIL, f"transformers cannot load it: {exc}")
    if gap := _rope_read_differently(config, loaded.config):
        return Check(label, INFO, gap)
    loaded.eval()
    theirs = logits_of(loaded, reference.prompt_ids)
    del loaded
    ours = reference.prompt_logits()
    max_diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    scale = max(float(a.abs().max()) for a in ours)
    tie_margin = QUANT_TIE_LOGITS.get(quant, 0.0)
    next_token = Top1Counts()
    for a, b in zip(ours, theirs):
        next_token.add(b[-1:], a[-1:], tie_margin)
    next_same = next_token.identical
    positions = sum(len(a) for a in ours)
    all_same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(ours, theirs))
    numbers = {"max_abs_diff": max_diff, "max_abs_logit": scale, "next_token_top1_same": next_same,
               "next_token_near_ties": next_token.near_ties, "prompts": len(ours),
               "top1_agreement_all_positions": all_same / positions}
    detail = (f"max |Δlogit| {max_diff:.3g} (largest |logit| {scale:.3g}); next-token top-1 identical "
              f"{next_same}/{len(ours)}; top-1 agreement over all {positions} prompt positions {all_same / positions:.3f}")
    if quant == "f16":
        ok = max_diff <= F16_LOGIT_TOLERANCE * max(scale, 1.0) and next_same == len(ours)
    else:
        # Near-ties of the merged model (within the quant's tie margin) count as agreeing, as in llama.cpp's check.
        ok = next_token.agreement >= Q8_AGREEMENT
        if next_token.near_ties:
            detail += f"; next token: {next_token.describe(tie_margin)}"
    return Check(label, PASS if ok else FAIL, detail, numbers)


# ---------------------------------------------------------------------- 2. llama.cpp


def llama_cpp_missing() -> str | None:
    from ducktune.export.quantize import INSTALL_HINT, llama_cpp_available

    return None if llama_cpp_available() else f"llama-cpp-python is not installed: {INSTALL_HINT.split(';')[0]}"


def ollama_prompt_text(chat_format, messages: list[dict], add_bos: bool, tools: list | None = None) -> str:
    """The text Ollama hands llama.cpp for a conversation (offered `tools`): the chat template's rendering,
    minus the BOS text when llama.cpp adds BOS itself (add_bos_token)."""
    text = chat_format.render(messages, add_generation_prompt=True, tools=tools)
    bos = chat_format.tokenizer.bos_token
    if add_bos and bos and text.startswith(bos):
        text = text[len(bos):]
    return text


def llama_threads() -> int:
    """llama.cpp's worker threads spin while they wait: on a busy machine, one thread per core is
    far slower than leaving a core free (measured on 2 shared cores: 3 greedy answers took 217 s
    with 2 threads, 3.4 s with 1)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _open_llama(path: Path, n_ctx: int, logits_all: bool = True, n_threads: int | None = None):
    """`logits_all`: keep every position's logits (the checks read them; generation does not need them)."""
    import llama_cpp

    threads = n_threads or llama_threads()
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx), n_threads=threads,
                           n_threads_batch=threads, logits_all=logits_all, verbose=False, seed=0)


def check_llama_cpp(path: Path, quant: str, reference: Reference, add_bos: bool) -> list[Check]:
    import numpy as np

    prefix = f"llama.cpp {path.name}"
    missing = llama_cpp_missing()
    if missing:
        return [Check(f"{prefix}: runs like the merged model", SKIP, missing)]
    answers = reference.answers()
    longest = max(len(p) + len(a) for p, a in zip(reference.prompt_ids, answers))
    n_ctx = max(256, longest + reference.max_new_tokens + 8)
    try:
        llm = _open_llama(path, n_ctx)
    except Exception as exc:  # llama.cpp refuses the file
        return [Check(f"{prefix}: loads", FAIL, f"llama.cpp cannot load it: {exc}")]
    checks = []
    try:
        # Prompt token ids, tokenized as Ollama does.
        same_ids = 0
        first_diff = None
        for prompt, tools, hf_ids in zip(reference.prompts, reference.tools, reference.prompt_ids):
            text = ollama_prompt_text(reference.chat_format, [{"role": "user", "content": prompt}], add_bos, tools)
            cpp_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            if list(cpp_ids) == list(hf_ids):
                same_ids += 1
            elif first_diff is None:
                first_diff = f"{prompt!r}: HF {hf_ids[:12]}... llama.cpp {list(cpp_ids)[:12]}..."
        n = len(reference.prompts)
        checks.append(Check(f"{prefix}: prompt token ids = HF", PASS if same_ids == n else FAIL,
                            f"{same_ids}/{n} prompts tokenized identically" + (f"; first difference {first_diff}" if first_diff else ""),
                            {"identical": same_ids, "prompts": n}))
        if quant == "f16":
            checks.append(check_tokenizer_probes(llm, reference.chat_format.tokenizer, prefix))

        # Teacher-forced top-1 agreement on the HF greedy answers.
        cpp_rows, hf_rows = [], []
        for hf_ids, answer, hf_logits in zip(reference.prompt_ids, answers, reference.forced_logits()):
            if not answer:
                continue
            llm.reset()
            llm.eval(hf_ids + answer)
            # A copy: llm.scores is a view of a buffer the next eval overwrites.
            cpp_rows.append(np.array(llm.scores[len(hf_ids) - 1: len(hf_ids) - 1 + len(answer)]))
            hf_rows.append(hf_logits.numpy())
        checks.append(agreement_check(prefix, quant, cpp_rows, hf_rows))

        if quant == "f16":
            checks.append(check_greedy_answers(llm, reference, answers, prefix))
    finally:
        if hasattr(llm, "close"):
            llm.close()
    return checks


@dataclass
class Top1Counts:
    """Top-1 comparison of an export's logits with the merged model's, position by position."""
    positions: int = 0
    identical: int = 0
    near_ties: int = 0  # another pick, within the tie margin of the merged model's top-1
    widest_tie: float = 0.0
    overturned: list[float] = field(default_factory=list)  # the merged model's margins where it was sure
    gap_errors: list[float] = field(default_factory=list)  # |change| of the merged model's top-two gap

    @property
    def agreement(self) -> float:
        """Identical picks and near-ties over all positions."""
        return (self.identical + self.near_ties) / self.positions if self.positions else 1.0

    def add(self, theirs, ours, tie_margin: float) -> None:
        """`theirs` / `ours`: [positions x vocab] logits of the export and of the merged model."""
        import numpy as np

        theirs, ours = np.asarray(theirs), np.asarray(ours)
        best, picked = ours.argmax(-1), theirs.argmax(-1)
        rows = np.arange(len(ours))
        # How far the export moved the gap between the merged model's two best tokens: the error a
        # near-tie has to be within to flip. The runner-up: the larger of the two best after the best.
        top2 = np.argpartition(ours, -2, axis=-1)[:, -2:]
        runner = np.where(top2[:, 0] == best, top2[:, 1], top2[:, 0])
        gaps = (ours[rows, best] - ours[rows, runner]).astype(np.float64)
        export_gaps = (theirs[rows, best] - theirs[rows, runner]).astype(np.float64)
        self.gap_errors.extend(np.abs(export_gaps - gaps).tolist())
        self.positions += len(ours)
        self.identical += int((best == picked).sum())
        for i in np.flatnonzero(best != picked):
            margin = float(ours[i, best[i]] - ours[i, picked[i]])
            if margin <= tie_margin:
                self.near_ties, self.widest_tie = self.near_ties + 1, max(self.widest_tie, margin)
            else:
                self.overturned.append(margin)

    def gap_error_p95(self) -> float:
        import numpy as np

        return float(np.percentile(self.gap_errors, 95)) if self.gap_errors else 0.0

    def describe(self, tie_margin: float) -> str:
        text = f"top-two gap moved by <= {self.gap_error_p95():.3f} logits at 95 % of positions"
        if self.near_ties:
            text += (f"; {self.identical} identical, {self.near_ties} near-ties (the other pick within "
                     f"{self.widest_tie:.3f} <= {tie_margin} logits of the merged model's)")
        if self.overturned:
            text += (f"; {len(self.overturned)} overturn the merged model's choice by "
                     f"{min(self.overturned):.3f}-{max(self.overturned):.3f} logits")
        return text

    def numbers(self) -> dict:
        return {"agreement": self.agreement, "identical": self.identical, "near_ties": self.near_ties,
                "overturned": len(self.overturned), "positions": self.positions,
                "gap_error_p95": self.gap_error_p95()}


def agreement_check(prefix: str, quant: str, cpp_rows: list, hf_rows: list) -> Check:
    """Teacher-forced top-1 agreement of llama.cpp's logits (`cpp_rows`, one [answer x vocab] array per
    answer) with the merged model's (`hf_rows`). A position where llama.cpp picks another token than
    the merged model counts as a near-tie, not a disagreement, when the merged model put that token
    within the quant's tie margin (QUANT_TIE_LOGITS) of its own: the pick then says nothing about
    the export. f16 and q8_0 must agree on >= Q8_AGREEMENT of the positions, near-ties counted as
    agreeing; other quants are reported."""
    tie_margin = QUANT_TIE_LOGITS.get(quant, 0.0)
    counts = Top1Counts()
    for cpp, hf in zip(cpp_rows, hf_rows):
        counts.add(cpp, hf, tie_margin)
    detail = f"{counts.agreement:.3f} over {counts.positions} answer tokens; {counts.describe(tie_margin)}"
    if quant in QUANT_TIE_LOGITS:
        status = PASS if counts.agreement >= Q8_AGREEMENT else FAIL
        detail += f" (required >= {Q8_AGREEMENT})"
    else:
        status, detail = INFO, detail + " (reported)"
    return Check(f"{prefix}: top-1 agreement with merged", status, detail, counts.numbers())


def check_tokenizer_probes(llm, tokenizer, prefix: str, texts: list[str] = TOKENIZER_PROBES) -> Check:
    """llama.cpp's tokenizer vs the HF tokenizer on multilingual, emoji, code and whitespace texts
    (special tokens in the text parsed, none added: BOS handling is the prompt check's)."""
    same, first = 0, None
    for text in texts:
        hf = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        cpp = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if hf == cpp:
            same += 1
        elif first is None:
            at = next((i for i, (a, b) in enumerate(zip(hf, cpp)) if a != b), min(len(hf), len(cpp)))
            first = f"{text[:30]!r} at token {at}: HF {hf[at:at + 4]} vs llama.cpp {cpp[at:at + 4]}"
    detail = f"{same}/{len(texts)} probe texts (English, Chinese, emoji, code, whitespace runs) tokenized identically"
    return Check(f"{prefix}: tokenizer = HF on probe texts", PASS if same == len(texts) else FAIL,
                 detail + (f"; first difference {first}" if first else ""), {"identical": same, "texts": len(texts)})


def check_greedy_answers(llm, reference: Reference, answers: list[list[int]], prefix: str) -> Check:
    """f16: llama.cpp's greedy answers equal the merged model's, or part from them only at a near-tie
    of the merged model (its two candidates within GREEDY_TIE_LOGITS; both answers agree up to there)."""
    identical, ties, diverged = 0, [], []
    for prompt, hf_ids, answer, hf_logits in zip(reference.prompts, reference.prompt_ids, answers,
                                                 reference.forced_logits()):
        got = _greedy(llm, hf_ids, reference.stop_ids, reference.max_new_tokens)
        if got == answer:
            identical += 1
            continue
        at = next((i for i, (a, b) in enumerate(zip(got, answer)) if a != b), min(len(got), len(answer)))
        row = {"prompt": prompt, "at_token": at, "hf": reference.answer_text(answer),
               "llama_cpp": reference.answer_text(got), "hf_margin": None}
        if at < min(len(got), len(answer)):  # both went on, with another token: how close was the merged model?
            row["hf_margin"] = float(hf_logits[at][answer[at]] - hf_logits[at][got[at]])
        near_tie = row["hf_margin"] is not None and row["hf_margin"] <= GREEDY_TIE_LOGITS
        (ties if near_tie else diverged).append(row)
    n = len(reference.prompts)
    detail = f"{identical}/{n} greedy answers identical (up to {reference.max_new_tokens} tokens)"
    stopping = sum(1 for answer in answers if len(answer) <= 1)
    if stopping * 2 >= n:  # agreeing on "stop at once" says little about the exported weights
        detail += (f"; {stopping}/{n} of the merged model's answers end within one token, so identical answers "
                   f"show little: see what the run answers with `ducktune compare`")
    if ties:
        detail += (f"; {len(ties)} part at a near-tie of the merged model (its top two within "
                   f"{max(t['hf_margin'] for t in ties):.3f} <= {GREEDY_TIE_LOGITS} logits), e.g. {ties[0]['prompt']!r} "
                   f"at token {ties[0]['at_token']}: HF {ties[0]['hf']!r} vs llama.cpp {ties[0]['llama_cpp']!r}")
    if diverged:
        d = diverged[0]
        margin = "" if d["hf_margin"] is None else f" (merged model's margin {d['hf_margin']:.3f} logits)"
        detail += f"; first difference {d['prompt']!r} at token {d['at_token']}{margin}: HF {d['hf']!r} vs llama.cpp {d['llama_cpp']!r}"
    return Check(f"{prefix}: greedy answers = merged", FAIL if diverged else PASS, detail,
                 {"identical": identical, "prompts": n, "near_ties": ties, "diverged": diverged})


def _greedy(llm, prompt_ids: list[int], stop_ids: set[int], max_new_tokens: int) -> list[int]:
    llm.reset()
    llm.eval(prompt_ids)
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        out.append(token)
        if token in stop_ids:
            break
        llm.eval([token])
    return out


# ---------------------------------------------------------------------- 3. Modelfile


def first_difference(got: str, want: str) -> int:
    """The index of the first character where two renderings part (the shorter one's length if one is a prefix)."""
    return next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))


def check_modelfile(path: Path, chat_format, add_bos: bool, context_length: int | None = None,
                    template_omitted: str | None = None, gguf_names: list[str] | None = None) -> list[Check]:
    """`template_omitted`: why the export wrote no TEMPLATE (--allow-default-template), shown as a
    SKIP row instead of comparing renderings. `gguf_names`: the export's GGUF files, one of which
    FROM must name (another file was never checked)."""
    from ducktune.export.gorender import GoUnavailable, render_with_go
    from ducktune.export.gotemplate import renderable_samples
    from ducktune.export.modelfile import ModelfileError, parse_modelfile, resolve_from

    label = "Modelfile: Ollama grammar"
    try:
        parsed = parse_modelfile(path.read_text(encoding="utf-8"))
        params = parsed.parameters()
    except (OSError, ModelfileError) as exc:
        return [Check(label, FAIL, str(exc))]
    problems = []
    target = resolve_from(path, parsed.from_)
    if not target.is_file():
        problems.append(f"FROM {parsed.from_} does not exist (Ollama would take it as a model name)")
    elif gguf_names is not None and (target.parent != path.parent or target.name not in gguf_names):
        problems.append(f"FROM {parsed.from_} is not one of this export's checked GGUF files ({', '.join(gguf_names)})")
    if not parsed.template and not template_omitted:
        problems.append("no TEMPLATE")
    stops = params.get("stop", [])
    missing = [t for t in chat_format.stop_tokens if t not in stops]
    if missing:
        problems.append(f"no PARAMETER stop for {', '.join(missing)}")
    extra = [t for t in stops if t not in chat_format.stop_tokens]
    if extra:  # an added stop cuts every answer at that text
        problems.append(f"PARAMETER stop {', '.join(map(repr, extra))} is not an end-of-turn token of the run")
    num_ctx = params.get("num_ctx")
    if context_length and num_ctx and num_ctx > context_length:
        problems.append(f"num_ctx {num_ctx} exceeds the model's context length {context_length}")
    if (parsed.system or None) != (chat_format.system_prompt or None):
        problems.append("SYSTEM differs from the run's system prompt")
    detail = (f"FROM {parsed.from_} (exists), {'TEMPLATE' if parsed.template else 'no TEMPLATE'}, {len(stops)} stop token(s) {', '.join(stops)}, "
              f"num_ctx {num_ctx}" + (", SYSTEM" if parsed.system else ""))
    checks = [Check(label, FAIL if problems else PASS, "; ".join(problems) if problems else detail)]
    if target.is_file():
        checks.append(template_choice_check(target, parsed.template))

    label = "Modelfile: TEMPLATE via Go text/template = chat template"
    if template_omitted:
        checks.append(Check(label, SKIP, "no TEMPLATE written (--allow-default-template): Ollama prompts the model "
                                         f"in its default format, not the trained one; {template_omitted}"))
        return checks
    conversations = renderable_samples(chat_format)
    try:
        rendered = render_with_go(parsed.template or "", conversations, parsed.system)
    except GoUnavailable as exc:
        checks.append(Check(label, SKIP, str(exc)))
        return checks
    except ValueError as exc:
        checks.append(Check(label, FAIL, f"Go rejects the TEMPLATE: {exc}"))
        return checks
    same, first = 0, None
    for messages, got in zip(conversations, rendered):
        expected = ollama_prompt_text(chat_format, messages, add_bos)
        if got == expected:
            same += 1
        elif first is None:
            at = first_difference(got, expected)
            first = f"character {at}: chat template {expected[at:at + 30]!r}, Go {got[at:at + 30]!r}"
    n = len(conversations)
    detail = (f"{same}/{n} sample conversations (with/without system, multi-turn) byte-identical"
              + (" (BOS added by llama.cpp)" if add_bos else "") + (f"; first difference at {first}" if first else ""))
    checks.append(Check(label, PASS if same == n else FAIL, detail, {"identical": same, "conversations": n}))
    return checks


def template_choice_check(gguf_path: Path, go_template: str | None) -> Check:
    """Which of the two checked templates Ollama prompts with (ollama_select), as an INFO row."""
    from ducktune.export.gguf_file import read_gguf_header
    from ducktune.export.ollama_select import gguf_template_capabilities, template_choice

    metadata = read_gguf_header(gguf_path).metadata  # read once for both fields
    jinja = string_field(metadata, "tokenizer.chat_template")
    architecture = string_field(metadata, "general.architecture")
    return Check("Modelfile: template Ollama prompts with", INFO, template_choice(jinja, go_template, architecture),
                 {"gguf_template_capabilities": gguf_template_capabilities(jinja)})


def template_renderings(chat_format) -> list[dict]:
    """The sample conversations (see gotemplate.sample_conversations) as training prompted them, ready
    for the next answer, and one with tool calls where the template writes them all (what Ollama 0.30+,
    llama-server --jinja and `ducktune serve` prompt with): recorded in export.json, so `ducktune verify`
    compares the exported chat templates with the trained format without the run."""
    from ducktune.data.template_rules import tool_conversation, tool_parts
    from ducktune.export.gotemplate import renderable_samples

    samples = [(messages, None) for messages in renderable_samples(chat_format)]
    if tool_parts(chat_format) == {"definitions", "calls", "results"}:
        samples.append(tool_conversation())
    rows = []
    for messages, tools in samples:
        try:
            text = chat_format.render(messages, add_generation_prompt=True, tools=tools)
        except Exception:  # a conversation this template refuses: nothing to compare
            continue
        rows.append({"messages": messages, "text": text, **({"tools": tools} if tools else {})})
    return rows


def _jinja_renderer(template: str, tokenizer):
    """render(messages) with the engine a GGUF's template meets in llama-cpp-python (its jinja2
    chat formatter, which reads tokenizer.chat_template from the file), else transformers'."""
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter, guess_chat_format_from_gguf_metadata
    except ImportError:
        return "transformers", lambda messages, tools=None: tokenizer.apply_chat_template(
            messages, chat_template=template, tools=tools, tokenize=False, add_generation_prompt=True)
    formatter = Jinja2ChatFormatter(template, eos_token=tokenizer.eos_token or "", bos_token=tokenizer.bos_token or "")
    engine = "llama-cpp-python's jinja2"
    # create_chat_completion swaps a few exact templates for its own formatter, which this does not check
    if builtin := guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": template}):
        engine += f"; its create_chat_completion uses its built-in {builtin!r} format instead, not checked"
    return engine, lambda messages, tools=None: formatter(messages=messages, tools=tools).prompt


def check_embedded_templates(renderings: list[dict] | None, tokenizer, gguf_paths: list[Path]) -> Check:
    """The chat template merged/ and each GGUF carry renders the recorded conversations exactly as
    training did (the run's default system prompt and inserted EOS included): what llama-server,
    LM Studio or transformers users get, who never see the Modelfile."""
    label = "Chat template in merged/ and the GGUFs = trained format"
    if not renderings:
        return Check(label, SKIP, "export.json records no trained renderings (an export from before this "
                                  "check): export again to check it")
    sources = [("merged/ (transformers)", lambda m, tools=None: tokenizer.apply_chat_template(
        m, tools=tools, tokenize=False, add_generation_prompt=True))]
    for path in gguf_paths:
        template = gguf_string_field(path, "tokenizer.chat_template")
        if template is None:
            return Check(label, FAIL, f"{path.name}: no tokenizer.chat_template")
        engine, render = _jinja_renderer(template, tokenizer)
        sources.append((f"{path.name} ({engine})", render))
    for where, render in sources:
        for i, row in enumerate(renderings):
            try:
                got = render(row["messages"], row.get("tools"))
            except Exception as exc:  # the template raises where training rendered
                return Check(label, FAIL, f"{where}: conversation {i + 1} raises: {str(exc)[:120]}")
            want = row["text"]
            if got != want:
                at = first_difference(got, want)
                return Check(label, FAIL, f"{where}: conversation {i + 1} differs at character {at}: trained "
                                          f"{want[at:at + 30]!r}, template {got[at:at + 30]!r}")
    kinds = "with/without system, multi-turn" + (", tool calls" if any(r.get("tools") for r in renderings) else "")
    return Check(label, PASS, f"{len(renderings)} conversations ({kinds}) byte-identical "
                              f"in {', '.join(where for where, _ in sources)}",
                 {"conversations": len(renderings), "templates": len(sources)})
