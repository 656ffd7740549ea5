"""Preference samples -> token rows for DPO/ORPO/SimPO (pairs) and KTO (unpaired).

Each answer is templated and masked exactly as supervised fine-tuning masks the last
assistant turn: the prompt conversation plus one assistant answer is rendered with the
chat template and tokenized once (`ChatFormat.encode(..., "last_assistant")`), so the
trained tokens are the answer and its end-of-turn marker, the same tokens SFT trains.

The prompt is the same token prefix in every row of a sample (checked: a template that
renders the prompt differently depending on the answer is an error naming the record).
`prompt_len`: the tokens before it are identical in every row of the sample and untrained;
the trained answer starts there (or one token later in a row whose answer's first token
did not merge with the prompt's last one). Like SFT rows, a row keeps what the template
prints after the end-of-turn marker (ChatML's newline), untrained, so lengths, truncation
counts and `ducktune data check` agree with supervised fine-tuning.

Too long: the prompt is kept and the answers are cut at `cutoff_len`; when the prompt
leaves no room for a single answer token the sample is dropped.

Row keys:
    pair:     chosen_input_ids, chosen_labels, rejected_input_ids, rejected_labels, prompt_len
    unpaired: completion_input_ids, completion_labels, label (bool), prompt_len
Labels are aligned with input_ids (the trainer shifts them), IGNORE_INDEX on the prompt
and on position 0, as in train/tokenize.py.
"""

from __future__ import annotations

from ducktune.data.schema import Message, Sample
from ducktune.data.template import IGNORE_INDEX
from ducktune.errors import DataError

PAIR_KEYS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels", "prompt_len")
UNPAIRED_KEYS = ("completion_input_ids", "completion_labels", "label", "prompt_len")


def answers(sample: Sample) -> list[tuple[str, Message]]:
    """(name, answer turn) of a preference sample: chosen and rejected, or its completion; an answer's turn
    carries its tool calls and separate reasoning where it has them (Sample.turns)."""
    if sample.kind == "preference":
        named = [("chosen", sample.chosen), ("rejected", sample.rejected)]
    elif sample.kind == "unpaired":
        named = [("completion", sample.completion)]
    else:
        raise ValueError(f"not a preference sample: {sample.kind}")
    turns = sample.turns or {}
    return [(name, turns.get(name) or Message("assistant", text)) for name, text in named]


def answer_chat(sample: Sample, answer: Message, field: str = "") -> Sample:
    """The prompt conversation (and its tools) with one answer as its last turn: what SFT would train for it."""
    fields = list(sample.fields) + [field] if sample.fields else []
    return Sample("chat", messages=list(sample.messages) + [answer], where=sample.where, format=sample.format,
                  fields=fields, tools=sample.tools)


def _answer_row(chat_format, sample: Sample, answer: Message, name: str) -> tuple[list[int], list[int], int]:
    """(ids, labels, where the trained answer starts) of the prompt plus one answer, uncut."""
    chat = answer_chat(sample, answer, name)
    try:
        encoded = chat_format.encode(chat, 1 << 30, "last_assistant")
    except DataError as exc:
        raise DataError(f"{sample.where}: {name}: {exc.message}") from None
    labels = [IGNORE_INDEX] + list(encoded.labels[1:])  # no position predicts the first token
    trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    if not trained:
        raise DataError(f"{sample.where}: {name}: the chat template leaves no trained token in this answer")
    return list(encoded.input_ids), labels, trained[0]


def _cut(ids: list[int], labels: list[int], cutoff_len: int) -> tuple[list[int], list[int], bool]:
    return ids[:cutoff_len], labels[:cutoff_len], len(ids) > cutoff_len


def encode_preference(chat_format, sample: Sample, cutoff_len: int, counts: dict | None = None) -> dict | None:
    """The token row of one preference sample (keys: PAIR_KEYS or UNPAIRED_KEYS); None when the
    prompt leaves no room for an answer within `cutoff_len`. Raises DataError naming the record
    when the chat template cannot render it or renders its prompt differently per answer.
    `counts`, when given, gets "truncated" incremented for a sample whose answers were cut."""
    named = answers(sample)
    names = [name for name, _ in named]
    rows = [_answer_row(chat_format, sample, answer, name) for name, answer in named]
    # A BPE merge across the prompt/answer boundary (an answer starting with a newline) moves
    # one row's first trained token earlier: the shared prompt is what comes before both.
    prompt_len = min(start for _, _, start in rows)
    for (ids, _, _), name in zip(rows[1:], names[1:]):
        if ids[:prompt_len] != rows[0][0][:prompt_len]:
            raise DataError(f"{sample.where}: {name}: the chat template renders the prompt differently for the "
                            f"{name} answer than for the {names[0]} one; ducktune needs one shared prompt")
    if max(start for _, _, start in rows) >= cutoff_len:  # some answer would keep no trained token
        return None
    out: dict = {"prompt_len": prompt_len}
    truncated = False
    for (ids, labels, _), name in zip(rows, names):
        ids, labels, cut = _cut(ids, labels, cutoff_len)
        truncated |= cut
        out[f"{name}_input_ids"], out[f"{name}_labels"] = ids, labels
    if sample.kind == "unpaired":
        out["label"] = bool(sample.label)
    if counts is not None and truncated:
        counts["truncated"] = counts.get("truncated", 0) + 1
    return out


def row_sequences(row: dict) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each sequence in a row: chosen and rejected, or the completion."""
    if "completion_input_ids" in row:
        return [(row["completion_input_ids"], row["completion_labels"])]
    return [(row["chosen_input_ids"], row["chosen_labels"]), (row["rejected_input_ids"], row["rejected_labels"])]


def tokenize_preference(samples, chat_format, cutoff: int, skip_bad: bool) -> tuple[list[dict], dict, list[str]]:
    """(rows, stats, template problems), like train/tokenize.py's tokenize_samples. Raises DataError
    listing the samples the chat template cannot render unless skip_bad. Stats count sequences
    (a pair is two) for tokens and lengths, samples for the rest."""
    rows, problems = [], []
    counts = {"truncated": 0}
    dropped = 0
    for sample in samples:
        try:
            row = encode_preference(chat_format, sample, cutoff, counts)
        except DataError as exc:
            message = exc.message
            problems.append(message if message.startswith(sample.where) else f"{sample.where}: messages: {message}")
            continue
        if row is None:
            dropped += 1
            continue
        rows.append(row)
    if problems and not skip_bad:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError("\n".join(shown + [f"{len(problems)} samples cannot be rendered with the chat template; "
                                          "fix them or pass --skip-bad"]))
    return rows, preference_stats(rows, counts["truncated"], dropped, len(problems)), problems


def preference_stats(rows: list[dict], truncated: int, dropped: int, template_errors: int) -> dict:
    sequences = [seq for row in rows for seq in row_sequences(row)]
    lengths = sorted(len(ids) for ids, _ in sequences)
    pairs = sum(1 for row in rows if "chosen_input_ids" in row)
    return {
        "samples": len(rows),
        "pairs": pairs,
        "unpaired": len(rows) - pairs,
        "desirable": sum(1 for row in rows if row.get("label") is True),
        "truncated": truncated,
        "dropped": dropped,
        "template_errors": template_errors,
        "tokens": sum(lengths),
        "trained_tokens": sum(1 for _, labels in sequences for x in labels if x != IGNORE_INDEX),
        "max_len": lengths[-1] if lengths else 0,
        "median_len": lengths[len(lengths) // 2] if lengths else 0,
    }
