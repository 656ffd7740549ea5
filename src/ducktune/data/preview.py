"""`ducktune data preview`: samples exactly as the model sees them, trained tokens marked.

Each sample is encoded the way training encodes it (chat template, loss mask, EOS, cutoff)
and decoded back run by run: tokens that carry the loss are shown in colour on a terminal,
or between « and » in plain output, so a user can see the loss lands on the answers and
the end-of-turn token, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ducktune.data.schema import Message, Sample

TRAINED_OPEN, TRAINED_CLOSE = "«", "»"
_COLOUR_ON, _COLOUR_OFF = "\x1b[1;32m", "\x1b[0m"  # bold green


@dataclass
class PreviewItem:
    sample: Sample
    runs: list[tuple[str, bool]]  # (text, trained)
    tokens: int
    trained: int
    truncated: bool
    note: str = ""


def as_trainable(sample: Sample) -> tuple[Sample, str]:
    """Preference pairs are previewed as their prompt with the chosen answer."""
    if sample.kind != "preference":
        return sample, ""
    chat = Sample("chat", messages=list(sample.messages) + [Message("assistant", sample.chosen or "")],
                  where=sample.where, format=sample.format)
    return chat, "preference pair: the prompt with the chosen answer"


def preview_samples(samples: list[Sample], chat_format, cutoff: int, train_on: str = "assistant") -> list[PreviewItem]:
    items = []
    for original in samples:
        sample, note = as_trainable(original)
        encoded = chat_format.encode(sample, cutoff, train_on)
        items.append(PreviewItem(original, chat_format.decode_spans(encoded), len(encoded.input_ids),
                                 encoded.n_trained, encoded.truncated, note))
    return items


def render_item(item: PreviewItem, colour: bool) -> str:
    share = f"{item.trained / item.tokens:.0%}" if item.tokens else "0%"
    header = (f"── {item.sample.where} · {item.sample.format} · {item.tokens} tokens, {item.trained} trained ({share})"
              + (" · truncated at the cutoff" if item.truncated else "")
              + (f" · {item.note}" if item.note else "") + " ──")
    body = []
    for text, trained in item.runs:
        if not trained:
            body.append(text)
        elif colour:
            # Colour each line separately so a pager or a narrow terminal never bleeds it.
            body.append("\n".join(f"{_COLOUR_ON}{line}{_COLOUR_OFF}" if line else line for line in text.split("\n")))
        else:
            body.append(f"{TRAINED_OPEN}{text}{TRAINED_CLOSE}")
    return header + "\n" + "".join(body).rstrip("\n")


def legend(colour: bool) -> str:
    if colour:
        return f"Trained tokens (the loss) are shown in {_COLOUR_ON}bold green{_COLOUR_OFF}; the rest is context."
    return f"Trained tokens (the loss) are marked {TRAINED_OPEN}like this{TRAINED_CLOSE}; the rest is context."
