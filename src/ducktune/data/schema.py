"""The normalized form every input format is turned into.

A `Sample` is either a chat (a list of system/user/assistant messages), plain text (for
continued pre-training, every token trained), a preference pair (a prompt conversation
with a chosen and a rejected answer) or an unpaired preference sample for KTO (a prompt
conversation with one completion labelled desirable or not). `where` points back to the record ("file:line")
so later problems (too long, no trainable tokens) can still be reported precisely.
"""

from __future__ import annotations

import re

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

ROLES = ("system", "user", "assistant")
PREFERENCE_KINDS = ("preference", "unpaired")  # the sample kinds preference tuning trains on


@dataclass(slots=True)
class Message:
    role: str
    content: str
    # False for an assistant turn the data marks untrained (OpenAI's per-message "weight": 0): it stays
    # in the conversation as context, with no loss on it.
    trained: bool = True

    def as_dict(self) -> dict:
        return {"role": self.role, "content": self.content} if self.trained else \
            {"role": self.role, "content": self.content, "weight": 0}


@dataclass(slots=True)
class Sample:
    kind: Literal["chat", "text", "preference", "unpaired"]
    messages: list[Message] = field(default_factory=list)
    text: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    completion: str | None = None  # kind "unpaired": the answer to `messages` (the prompt)
    label: bool | None = None  # kind "unpaired": True when the completion is desirable
    where: str = ""
    format: str = ""
    # The record field each message came from ("conversations[2]", "instruction", "system"),
    # so checks made after normalizing (turn order, template limits) can name the field.
    fields: list[str] = field(default_factory=list)

    def message_dicts(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]

    def key(self) -> tuple:
        """Identity for exact-duplicate removal."""
        return (self.kind, tuple((m.role, m.content, m.trained) for m in self.messages), self.text, self.chosen, self.rejected,
                self.completion, self.label)


@dataclass(frozen=True)
class Issue:
    """One problem with one record: rendered as `file:line: field: what is wrong`.

    `line` is None for problems with a whole file. `fatal` problems make a file or dataset
    unreadable as a whole (not found, broken JSON array): --skip-bad cannot skip those,
    because the number of records lost would be unknown.
    """

    file: str
    line: int | str | None
    field: str
    message: str
    fatal: bool = dataclasses.field(default=False, compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"

    def sort_key(self) -> tuple:
        """File order, then line order: whole-file problems first; "12:5" and "row 12" sort as 12."""
        line = self.line
        if line is None:
            return (self.file, -1, 0)
        if isinstance(line, int):
            return (self.file, line, 0)
        numbers = [int(number) for number in re.findall(r"\d+", line)]  # "12:5", "row 12", "1, record 5"
        return (self.file, numbers[0] if numbers else 0, numbers[1] if len(numbers) > 1 else 0)


@dataclass
class Record:
    """A raw record as read from a file, with where it came from."""

    value: object
    file: str
    line: int | str  # 1-based line (JSON, JSONL, CSV/TSV, .txt); "row N" (0-based) for Parquet and hub datasets

    def issue(self, field: str, message: str) -> Issue:
        return Issue(self.file, self.line, field, message)

    def key(self) -> tuple:
        return (self.file, self.line)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"
