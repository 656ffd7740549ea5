"""`ducktune data preview`: samples exactly as the model sees them, trained tokens marked.

Each sample is encoded the way training encodes it (chat template, loss mask, EOS, cutoff)
and decoded back run by run: tokens that carry the loss are shown in colour on a terminal,
or between « and » in plain output, so a user can see the loss lands on the answers and
the end-of-turn token, and nowhere else.

A preference pair is shown as preference training encodes it (data/preference.py): its
prompt once, then the chosen and the rejected answer, each with its trained tokens; an
unpaired KTO sample shows its prompt and its completion, labelled desirable or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ducktune.data.preference import answers, encode_preference, row_sequences
from ducktune.data.schema import PREFERENCE_KINDS, Sample
from ducktune.data.template import Encoded

TRAINED_OPEN, TRAINED_CLOSE = "«", "»"
_COLOUR_ON, _COLOUR_OFF = "\x1b[1;32m", "\x1b[0m"  # bold green


@dataclass
class AnswerPreview:
    """One answer of a preference sample, after its prompt."""

    name: str  # chosen, rejected or completion
    runs: list[tuple[str, bool]]  # (text, trained)
    tokens: int  # the answer's own tokens (the prompt not counted)
    trained: int
    truncated: bool


@dataclass
class PreviewItem:
    sample: Sample
    runs: list[tuple[str, bool]]  # (text, trained); for preference samples, the prompt only
    tokens: int
    trained: int
    truncated: bool
    note: str = ""
    answers: list[AnswerPreview] = field(default_factory=list)  # preference samples: each answer


def preview_preference(sample: Sample, chat_format, cutoff: int) -> PreviewItem:
    """The prompt once, then each answer with its trained tokens, cut at `cutoff` as training cuts them."""
    row = encode_preference(chat_format, sample, 1 << 30)
    n = row["prompt_len"]
    dropped = n >= cutoff  # training drops it (encode_preference returns None): shown whole
    previews = []
    for (name, _), (ids, labels) in zip(answers(sample), row_sequences(row)):
        end = len(ids) if dropped else min(len(ids), cutoff)
        encoded = Encoded(ids[n:end], labels[n:end], False)
        previews.append(AnswerPreview(name, chat_format.decode_spans(encoded), len(encoded.input_ids),
                                      encoded.n_trained, not dropped and len(ids) > cutoff))
    first_ids, first_labels = row_sequences(row)[0]
    prompt = Encoded(first_ids[:n], first_labels[:n], False)
    notes = [] if sample.kind == "preference" else ["desirable" if sample.label else "undesirable"]
    if dropped:
        notes.append(f"the prompt alone fills the cutoff ({cutoff}): dropped in training")
    return PreviewItem(sample, chat_format.decode_spans(prompt), n, sum(a.trained for a in previews),
                       any(a.truncated for a in previews), "; ".join(notes), previews)


def preview_samples(samples: list[Sample], chat_format, cutoff: int, train_on: str = "assistant") -> list[PreviewItem]:
    items = []
    for sample in samples:
        if sample.kind in PREFERENCE_KINDS:
            items.append(preview_preference(sample, chat_format, cutoff))
            continue
        encoded = chat_format.encode(sample, cutoff, train_on)
        items.append(PreviewItem(sample, chat_format.decode_spans(encoded), len(encoded.input_ids),
                                 encoded.n_trained, encoded.truncated))
    return items


def item_json(item: PreviewItem) -> dict:
    """A preview as plain data (for the web UI): spans are [text, trained] pairs; a preference
    sample's `spans` are its prompt and `answers` hold each answer's spans."""
    out = {"where": item.sample.where, "kind": item.sample.kind, "tokens": item.tokens, "trained": item.trained,
           "truncated": item.truncated, "note": item.note, "spans": [[text, trained] for text, trained in item.runs]}
    if item.answers:
        out["answers"] = [{"name": a.name, "tokens": a.tokens, "trained": a.trained, "truncated": a.truncated,
                           "spans": [[text, trained] for text, trained in a.runs]} for a in item.answers]
    if item.sample.kind == "unpaired":
        out["label"] = bool(item.sample.label)
    return out


def _render_runs(runs: list[tuple[str, bool]], colour: bool) -> str:
    body = []
    for text, trained in runs:
        if not trained:
            body.append(text)
        elif colour:
            # Colour each line separately so a pager or a narrow terminal never bleeds it.
            body.append("\n".join(f"{_COLOUR_ON}{line}{_COLOUR_OFF}" if line else line for line in text.split("\n")))
        else:
            body.append(f"{TRAINED_OPEN}{text}{TRAINED_CLOSE}")
    return "".join(body).rstrip("\n")


def render_item(item: PreviewItem, colour: bool) -> str:
    note = f" · {item.note}" if item.note else ""
    if item.answers:
        header = f"── {item.sample.where} · {item.sample.format} · prompt {item.tokens} tokens{note} ──"
        parts = [header, _render_runs(item.runs, colour)]
        for answer in item.answers:
            cut = " · truncated at the cutoff" if answer.truncated else ""
            parts.append(f"── {answer.name}: {answer.tokens} tokens, {answer.trained} trained{cut} ──")
            parts.append(_render_runs(answer.runs, colour))
        return "\n".join(parts)
    share = f"{item.trained / item.tokens:.0%}" if item.tokens else "0%"
    header = (f"── {item.sample.where} · {item.sample.format} · {item.tokens} tokens, {item.trained} trained ({share})"
              + (" · truncated at the cutoff" if item.truncated else "") + note + " ──")
    return header + "\n" + _render_runs(item.runs, colour)


def legend(colour: bool) -> str:
    if colour:
        return f"Trained tokens (the loss) are shown in {_COLOUR_ON}bold green{_COLOUR_OFF}; the rest is context."
    return f"Trained tokens (the loss) are marked {TRAINED_OPEN}like this{TRAINED_CLOSE}; the rest is context."
