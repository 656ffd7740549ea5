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
    pairs: list[ChatSet] = field(default_factory=list)  # preference pairs: scored by eval/preference.py


def _is_empty(path: Path) -> bool:
    return path.is_file() and not path.read_text(encoding="utf-8-sig", errors="replace").strip()


def read_data_file(path: Path) -> tuple[ChatSet | None, ChatSet | None]:
    """(its chat and text samples, its preference pairs) as sets; None where it holds none."""
    from ducktune.data.loader import data_error, load_file

    data = load_file(path)
    if data.issues:
        raise data_error(data.issues, "fix the evaluation file")
    if not data.samples:
        raise UserError(f"{path}: no samples")
    chats = [s for s in data.samples if s.kind not in PREFERENCE_KINDS]
    pairs = [s for s in data.samples if s.kind == "preference"]
    if not chats and not pairs:  # evaluated as chats they would count as zero samples and silently vanish
        first = data.samples[0]
        raise UserError(f"{first.where}: KTO samples (unpaired record) hold no chosen/rejected pair to compare; "
                        "evaluation takes chat data (answers to score), preference pairs or multiple-choice files")
    return (ChatSet(str(path), chats) if chats else None), (ChatSet(str(path), pairs) if pairs else None)


def read_eval_inputs(paths: list[str]) -> EvalInputs:
    """Chat data (any format ducktune trains on), preference pairs and multiple-choice files (MMLU / C-Eval / CMMLU
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
            chats, pairs = read_data_file(path)
            inputs.chat += [chats] if chats else []
            inputs.pairs += [pairs] if pairs else []
    return inputs
