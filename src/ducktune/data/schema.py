"""The normalized form every input format is turned into.

A `Sample` is either a chat (a list of system/user/assistant messages), plain text (for
continued pre-training, every token trained) or a preference pair (a prompt conversation
with a chosen and a rejected answer). `where` points back to the record ("file:line")
so later problems (too long, no trainable tokens) can still be reported precisely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    role: str
    content: str

    def as_dict(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass
class Sample:
    kind: Literal["chat", "text", "preference"]
    messages: list[Message] = field(default_factory=list)
    text: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    where: str = ""
    format: str = ""

    def message_dicts(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]

    def key(self) -> tuple:
        """Identity for exact-duplicate removal."""
        return (self.kind, tuple((m.role, m.content) for m in self.messages), self.text, self.chosen, self.rejected)


@dataclass(frozen=True)
class Issue:
    """One problem with one record: rendered as `file:line: field: what is wrong`."""

    file: str
    line: int | str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


@dataclass
class Record:
    """A raw record as read from a file, with where it came from."""

    value: object
    file: str
    line: int | str  # 1-based line for JSON/JSONL, "row N" for CSV/Parquet, "record N" otherwise

    def issue(self, field: str, message: str) -> Issue:
        return Issue(self.file, self.line, field, message)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"
