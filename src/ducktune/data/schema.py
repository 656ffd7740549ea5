"""The normalized form every input format is turned into.

A `Sample` is either a chat (a list of system/user/assistant/tool messages, and the tools it may
call), plain text (for
continued pre-training, every token trained), a preference pair (a prompt conversation
with a chosen and a rejected answer) or an unpaired preference sample for KTO (a prompt
conversation with one completion labelled desirable or not). `where` points back to the record ("file:line")
so later problems (too long, no trainable tokens) can still be reported precisely.
"""

from __future__ import annotations

import json
import re

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

ROLES = ("system", "user", "assistant", "tool")

# How reasoning models write their thinking in an answer's text: the form ducktune folds separate reasoning
# into for templates without the field (formats._fold_reasoning), and reads back out of answers (AnswerFrame).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call an assistant turn makes: the function's name and its arguments (a JSON object,
    parsed: chat templates print it with `| tojson`, so a JSON string would be printed quoted)."""

    name: str
    arguments: dict
    id: str | None = None

    def as_dict(self) -> dict:
        """OpenAI's form, which transformers' chat templates read (`tool_call.function.name`)."""
        call = {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return {**({"id": self.id} if self.id else {}), **call}

    def key(self) -> tuple:
        return (self.name, json.dumps(self.arguments, sort_keys=True, ensure_ascii=False), self.id)
PREFERENCE_KINDS = ("preference", "unpaired")  # the sample kinds preference tuning trains on


@dataclass(slots=True)
class Message:
    role: str
    content: str
    # False for an assistant turn the data marks untrained (OpenAI's per-message "weight": 0): it stays
    # in the conversation as context, with no loss on it.
    trained: bool = True
    # An assistant turn's function calls (its content may then be empty); trained like its text.
    tool_calls: tuple[ToolCall, ...] = ()
    # A tool turn (a function's result): the function's name and the call it answers, where the data says.
    name: str | None = None
    tool_call_id: str | None = None
    # An answer's reasoning given apart from its text ("reasoning_content"): templates that write it (Qwen3,
    # gpt-oss, Gemma 4) put it before the answer; for others the data layer folds it into the text.
    reasoning: str | None = None

    def as_dict(self) -> dict:
        message = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        if self.name is not None:
            message["name"] = self.name
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if not self.trained:
            message["weight"] = 0
        return message

    @property
    def carries_reasoning(self) -> bool:
        """An answer with reasoning: apart from its text, or in it as a leading <think> block."""
        return self.role == "assistant" and (self.reasoning is not None or self.content.lstrip().startswith(THINK_OPEN))

    def key(self) -> tuple:
        return (self.role, self.content, self.trained, tuple(call.key() for call in self.tool_calls), self.name,
                self.tool_call_id, self.reasoning)


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
    # The functions a chat may call, as OpenAI's tools list ({"type": "function", "function": {name,
    # description, parameters}}): the chat template writes them where the model reads them (Qwen2.5's
    # system block, Llama 3.1's first user turn). None: a chat without tools.
    tools: list[dict] | None = None
    # Kinds "preference" / "unpaired": an answer that is more than its text (`chosen`, `rejected`,
    # `completion`), as its assistant turn by name: its tool calls, its reasoning apart from the text.
    turns: dict[str, Message] | None = None

    def message_dicts(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]

    @property
    def uses_tools(self) -> bool:
        """Whether the sample has tool definitions, tool calls or tool results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages) or \
            any(m.tool_calls for m in (self.turns or {}).values())

    def key(self) -> tuple:
        """Identity for exact-duplicate removal."""
        tools = json.dumps(self.tools, sort_keys=True, ensure_ascii=False) if self.tools else None
        turns = tuple((name, m.key()) for name, m in sorted(self.turns.items())) if self.turns else None
        return (self.kind, tuple(m.key() for m in self.messages), self.text, self.chosen, self.rejected,
                self.completion, self.label, tools, turns)


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
