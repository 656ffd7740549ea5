"""Hermes tool markup (NousResearch/hermes-function-calling-v1 and the datasets made like it) -> tool calls.

Such a record is an ordinary sharegpt (or messages) chat whose tool use is written as text:
- the system message lists the functions between `<tools>` and `</tools>` (a JSON list, or a Python
  literal: single quotes, True/None), between prose about the markup ("You are provided with function
  signatures within <tools></tools> XML tags ... return ... within <tool_call></tool_call> tags");
- an answer that calls holds one `<tool_call>{'arguments': {...}, 'name': ...}</tool_call>` per call;
- a tool turn holds one `<tool_response>{"name": ..., "content": ...}</tool_response>` per result.

Read as text, these would teach every model Hermes' markup instead of its own (Llama 3.1's JSON, Mistral's
[TOOL_CALLS], ...), and ducktune's serve and Ollama would not read the calls back. So a chat whose system
message lists functions this way becomes a tool-calling chat: the functions its `tools`, each `<tool_call>`
a call, each `<tool_response>` a result, and the system prose keeps only the sentences that do not
describe the markup. The model's own chat template then writes them. A record that has its own `tools`
has its <tool_call> and <tool_response> text read the same way (Qwen's markup written out as text). What
cannot be read is an Issue naming the turn. A chat with neither (Hermes' json-mode records) is left as it is,
and so is every chat for a template that writes no tool calls: the markup is then the text to train, as
Hermes models were trained on ChatML.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re

from ducktune.data import formats
from ducktune.data.schema import Issue, Message, Record

_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_RESPONSE = re.compile(r"<tool_response>(.*?)(?:</tool_response>|$)", re.DOTALL)
# A sentence of the system prose that describes the markup, which the model's own template replaces.
_MARKUP_WORDS = re.compile(r"</?tools>|</?tool_call>|</?tool_response>|XML tags|json schema for each tool call"
                           r"|\{'arguments'|here are the available tools", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
FORMAT_SUFFIX = "+hermes"  # Sample.format of a chat read this way: "sharegpt+hermes"


def literal(text: str) -> object:
    """A JSON value, or the Python literal Hermes data writes in its place (single quotes, True, None);
    ValueError when it is neither. ast.literal_eval evaluates literals only, never code."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def _tools_block(text: str) -> re.Match | None:
    """The <tools>...</tools> that holds the list (the prose before it names the tags with nothing between)."""
    return next((m for m in _TOOLS.finditer(text) if m.group(1).strip()), None)


def uses_hermes_markup(messages: list[Message], tools: list[dict] | None, writes: frozenset[str]) -> bool:
    """A system message that lists functions between <tools> tags (without the record's own `tools`); or,
    beside the record's `tools`, an answer holding a <tool_call> block (Qwen's markup written as text).
    Read only where the chat template writes what it becomes (`writes`: its tool parts): for a template
    without tools (ChatML's SmolLM2) the markup stays the text, as Hermes models were trained on ChatML."""
    if tools is None:
        return {"definitions", "calls"} <= writes and bool(messages) and messages[0].role == "system" \
            and _tools_block(messages[0].content) is not None
    return "calls" in writes and any(m.role == "assistant" and "<tool_call>" in m.content and not m.tool_calls
                                     for m in messages)


def read_hermes(messages: list[Message], fields: list[str], tools: list[dict] | None, record: Record,
                issues: list[Issue]) -> tuple[list[Message], list[str], list[dict]] | None:
    """(the messages with calls and results read, their fields, the tools: the record's, else those its
    system message lists, which leave the system text); None after an issue."""
    out: list[Message] = []
    out_fields: list[str] = []
    block = _tools_block(messages[0].content) if messages and messages[0].role == "system" else None
    if block is not None:  # the template writes the tools: the list and the sentences about it leave the text
        system = messages[0]
        tools = tools if tools is not None else _tools(block.group(1), record, fields[0], issues)
        if tools is None:
            return None
        prose = _prose(system.content[:block.start()] + "\n" + system.content[block.end():])
        out, out_fields = ([dataclasses.replace(system, content=prose)], [fields[0]]) if prose else ([], [])
        messages, fields = messages[1:], fields[1:]
    for message, field in zip(messages, fields):
        read = _answer(message, record, field, issues) if message.role == "assistant" else \
            _results(message) if message.role == "tool" else [message]
        if read is None:
            return None
        out += read
        out_fields += [field] * len(read)
    return out, out_fields, tools


def _tools(text: str, record: Record, field: str, issues: list[Issue]) -> list[dict] | None:
    text = text.strip()
    try:
        value = literal(text)
    except ValueError:
        try:  # functions one after another, without the list's brackets and commas
            value = literal("[" + re.sub(r"\}\s*\{", "},{", text) + "]")
        except ValueError as exc:
            issues.append(record.issue(field, f"the functions between <tools> and </tools> are neither JSON nor a "
                                              f"Python literal ({exc})"))
            return None
    entries = value if isinstance(value, list) else [value]
    for n, entry in enumerate(entries, start=1):
        function = entry.get("function", entry) if isinstance(entry, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"].strip():
            issues.append(record.issue(field, f"function {n} between <tools> and </tools> must describe a function: "
                                              '{"name": ..., "description": ..., "parameters": {...}}'))
            return None
    if not entries:
        issues.append(record.issue(field, "lists no functions between <tools> and </tools>"))
        return None
    return formats._tools({"tools": entries}, record, issues)


def _prose(text: str) -> str:
    """The system text around the function list without the sentences about the markup."""
    kept = [s for s in _SENTENCE.split(text) if s.strip() and not _MARKUP_WORDS.search(s)]
    # After the list comes only the format instruction and its schema: a leftover brace is part of it.
    return " ".join(s.strip() for s in kept if not s.strip().startswith(("{", "}"))).strip()


def _answer(message: Message, record: Record, field: str, issues: list[Issue]) -> list[Message] | None:
    content = message.content
    first = content.find("<tool_call>")
    if first < 0:
        return [message]
    calls = list(message.tool_calls)
    for n, match in enumerate(_CALL.finditer(content, first), start=1):
        where = f"{field} <tool_call> {n}"
        if not match.group(0).endswith("</tool_call>"):
            issues.append(record.issue(where, "has no </tool_call>"))
            return None
        try:
            value = literal(match.group(1).strip())
        except ValueError:
            issues.append(record.issue(where, "is not a call {'name': ..., 'arguments': {...}} (neither JSON nor a "
                                              "Python literal)"))
            return None
        read = formats._tool_calls(value, record, where, issues)
        if read is None:
            return None
        calls += read
    after = _CALL.sub("", content[first:]).strip()
    if after:
        issues.append(record.issue(field, f"has text between or after its <tool_call>s ({after[:40]!r}); a chat "
                                          "template writes an answer's text before its calls only"))
        return None
    return [dataclasses.replace(message, content=content[:first].strip(), tool_calls=tuple(calls))]


def _results(message: Message) -> list[Message]:
    """One tool message per <tool_response>; {"name": ..., "content": ...} gives the result's function
    name and its content (as JSON text where it is no text)."""
    blocks = [m.group(1).strip() for m in _RESPONSE.finditer(message.content)]
    if not blocks:
        return [message]
    results = []
    for block in blocks:
        name, content = message.name, block
        try:
            value = literal(block)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("name"), str) and "content" in value:
            name, result = value["name"], value["content"]
            content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        results.append(dataclasses.replace(message, content=content, name=name))
    return results
