"""What `ducktune eval` reads before loading any model: every file checked first, so a bad
file is one line and nothing is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ducktune.data.schema import PREFERENCE_KINDS
from ducktune.errors import UserError
from ducktune.eval.choices import ChoiceItem, looks_like_choices, read_choices


@dataclass
class ChatSet:
    name: str
    samples: list  # data.schema.Sample


@dataclass
class ChoiceSet:
    name: str
    items: list[ChoiceItem]


@dataclass
class EvalInputs:
    chat: list[ChatSet] = field(default_factory=list)
    choices: list[ChoiceSet] = field(default_factory=list)


def _is_empty(path: Path) -> bool:
    return path.is_file() and not path.read_text(encoding="utf-8-sig", errors="replace").strip()


def read_chat_file(path: Path) -> ChatSet:
    from ducktune.data.loader import data_error, load_file

    data = load_file(path)
    if data.issues:
        raise data_error(data.issues, "fix the evaluation file")
    if not data.samples:
        raise UserError(f"{path}: no samples")
    paired = [s for s in data.samples if s.kind in PREFERENCE_KINDS]
    if paired:  # evaluated as chats they would count as zero samples and silently vanish from the report
        raise UserError(f"{paired[0].where}: preference data ({paired[0].kind} record); evaluation takes chat data "
                        "(answers to score) or multiple-choice files")
    return ChatSet(str(path), data.samples)


def read_eval_inputs(paths: list[str]) -> EvalInputs:
    """Chat data (any format ducktune trains on) and multiple-choice files (MMLU / C-Eval / CMMLU
    layout, detected by their A-D columns). Raises UserError on the first bad file."""
    inputs = EvalInputs()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{raw}: file not found")
        if _is_empty(path):
            raise UserError(f"{raw}: empty file (no samples or questions)")
        if looks_like_choices(path):
            inputs.choices.append(ChoiceSet(str(path), read_choices(path)))
        else:
            inputs.chat.append(read_chat_file(path))
    return inputs
