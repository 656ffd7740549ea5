"""Token length of every sample, as training would build it, fast enough for 100,000 records.

Conversations are rendered by their shape (see ShapeRenderer) and tokenized in large
batches with the fast tokenizer's batch encoder on every core. Samples near or over the
cutoff are then encoded exactly as training encodes them, so the truncation counts (and
the samples that lose every trained token) match what training does.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field

from ducktune.data.schema import Issue, Sample
from ducktune.data.template import IGNORE_INDEX, REFUSED, marks_a_trained_answer
from ducktune.errors import DataError

BATCH = 8192
# Samples whose fast length is this close to the cutoff are encoded exactly (EOS insertion
# and token merges at the inserted EOS can move a length by a token or two).
EXACT_MARGIN = 8
# Batches at least this large are tokenized on every core.
PARALLEL_FROM = 4096


@dataclass
class TokenStats:
    samples: int
    min: int
    median: int
    p95: int
    max: int
    cutoff: int
    truncated: int  # longer than the cutoff: cut to it in training
    dropped: int  # truncated so far that no trained token is left: dropped in training
    untrained: int = 0  # no answer marked trained ("weight": 0 on all): dropped in training whatever the cutoff
    # Those samples' Sample.key() (content, so a repeated or duplicated copy counts too): what the
    # training mix loses, for data check's Mix line. Not part of the JSON report.
    dropped_keys: set = field(default_factory=set, repr=False, compare=False)

    def as_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "dropped_keys"}


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class ShapeRenderer:
    """Renders conversations fast by their shape (the sequence of roles).

    The template is rendered once per shape with placeholder contents; each conversation of
    that shape is then the skeleton with its contents filled in. That is exact only for
    templates that copy contents verbatim, so each shape is first verified against real
    renderings of probe contents (whitespace, empty text, reasoning tags, Jinja syntax) and
    of its first conversation; a shape that fails (a template that trims or inspects
    contents) is rendered conversation by conversation with the template.
    """

    PROBES = ("Hello there", "  padded \n", "", "<think>a</think>b", "{{ x }} {% y %}", "line\n\nbreak")

    def __init__(self, chat_format):
        self.chat_format = chat_format
        self.tokenizer = chat_format.tokenizer
        self.skeletons: dict[tuple, list[str] | None] = {}

    def _render(self, messages: list[dict]) -> str:
        return self.chat_format.conversation_text(messages)  # as training renders it (ChatFormat)

    def _skeleton(self, roles: tuple, first: list[dict]) -> list[str] | None:
        marks = [f"\ue000{i}\ue001" for i in range(len(roles))]
        try:
            text = self._render([{"role": r, "content": m} for r, m in zip(roles, marks)])
        except Exception:
            return None
        pieces = []
        for mark in marks:
            before, found, text = text.partition(mark)
            if not found or mark in text:
                return None
            pieces.append(before)
        pieces.append(text)
        try:
            for probe in self.PROBES:
                messages = [{"role": r, "content": probe} for r in roles]
                if self._render(messages) != self._fill(pieces, messages):
                    return None
            if self._render(first) != self._fill(pieces, first):
                return None
        except Exception:
            return None
        return pieces

    @staticmethod
    def _fill(pieces: list[str], messages: list[dict]) -> str:
        out = [pieces[0]]
        for message, piece in zip(messages, pieces[1:]):
            out.append(message["content"])
            out.append(piece)
        return "".join(out)

    def render(self, sample: Sample) -> str:
        messages = self.chat_format.with_system(sample.message_dicts())
        # The template writes definitions, calls and reasoning in its own syntax: no skeleton of contents.
        if sample.uses_tools or any(m.reasoning is not None for m in sample.messages):
            return self.chat_format.conversation_text(messages, sample.tools)
        roles = tuple(m["role"] for m in messages)
        if roles not in self.skeletons:
            self.skeletons[roles] = self._skeleton(roles, messages)
        pieces = self.skeletons[roles]
        if pieces is None:
            return self._render(messages)
        return self._fill(pieces, messages)


def _count_tokens(tokenizer, texts: list[str], add_special_tokens: bool) -> list[int]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]
    with _tokenizer_threads(len(texts) >= PARALLEL_FROM):
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=add_special_tokens)]


@contextlib.contextmanager
def _tokenizer_threads(enabled: bool):
    """Let the fast tokenizer use every core for one large batch.

    The CLI turns tokenizers' thread pool off (it would deadlock in forked processes);
    `ducktune data check` forks nothing, so big batches may use it. tokenizers reads
    TOKENIZERS_PARALLELISM on every call.
    """
    if not enabled:
        yield
        return
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def token_stats(samples: list[Sample], chat_format, cutoff: int, train_on: str) -> tuple[TokenStats | None, list[Issue]]:
    """Token length of every sample as training would build it, and what the template refuses."""
    tokenizer = chat_format.tokenizer
    eos_bonus = 1 if tokenizer.eos_token_id is not None else 0
    lengths: list[int] = []
    measured: list[Sample] = []
    issues: list[Issue] = []
    chats = [s for s in samples if s.kind == "chat"]
    texts = [s for s in samples if s.kind == "text"]
    renderer = ShapeRenderer(chat_format)
    for start in range(0, len(chats), BATCH):
        batch = chats[start:start + BATCH]
        good: list[tuple[Sample, str]] = []
        for sample in batch:
            try:
                good.append((sample, renderer.render(sample)))
            except Exception as exc:  # the template refuses this conversation (jinja raise_exception)
                first = str(exc).strip().removeprefix(REFUSED).strip().splitlines()  # ChatFormat's DataError says it
                # Llama 3.1/3.2's template raises on parallel calls ("only supports single tool-calls at once").
                parallel = next((i for i, m in enumerate(sample.messages) if len(m.tool_calls) > 1), None)
                advice = "" if parallel is None or "call" not in (first[0] if first else "").lower() else (
                    f" ({sample.fields[parallel] if parallel < len(sample.fields) else 'an answer'} makes "
                    f"{len(sample.messages[parallel].tool_calls)} calls at once: where the template writes one call "
                    "per answer, give each call its own assistant turn, followed by its result)")
                issues.append(Issue(sample.where, None, "(template)",
                                    f"{REFUSED} {first[0] if first else type(exc).__name__}{advice}"))
        counts = _count_tokens(tokenizer, [r for _, r in good], add_special_tokens=False)
        for (sample, _), n in zip(good, counts):
            if chat_format.inserted_eos:  # after each answer, or the last alone where the template closes the others
                n += 1 if chat_format.eos_closes_earlier else sum(1 for m in sample.messages if m.role == "assistant")
            lengths.append(n)
            measured.append(sample)
    for start in range(0, len(texts), BATCH):
        batch = texts[start:start + BATCH]
        for n in _count_tokens(tokenizer, [s.text for s in batch], add_special_tokens=True):
            lengths.append(n + eos_bonus)
        measured += batch
    if not lengths:
        return None, issues

    truncated = dropped = 0
    # Samples whose every answer the data marks untrained: training leaves them out at any cutoff.
    untrained_samples = [s for s in measured if not marks_a_trained_answer(s, train_on)]
    dropped_keys = {s.key() for s in untrained_samples}
    untrained = len(untrained_samples)
    for i, (sample, n) in enumerate(zip(measured, lengths)):
        if n <= cutoff - EXACT_MARGIN or sample.key() in dropped_keys:
            continue
        try:
            encoded = chat_format.encode(sample, 1 << 30, train_on)
        except DataError as exc:
            issues.append(Issue(sample.where, None, "(template)", exc.message))
            continue
        lengths[i] = n = len(encoded.input_ids)
        if n > cutoff:
            truncated += 1
            if all(label == IGNORE_INDEX for label in encoded.labels[:cutoff]):
                dropped += 1
                dropped_keys.add(sample.key())
    ordered = sorted(lengths)
    stats = TokenStats(len(ordered), ordered[0], percentile(ordered, 0.5), percentile(ordered, 0.95), ordered[-1],
                       cutoff, truncated, dropped, untrained, dropped_keys)
    return stats, issues
