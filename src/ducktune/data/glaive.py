"""Glaive function-calling records (glaiveai/glaive-function-calling-v2) -> tool-calling chats.

A record is two texts:
- `system`: "SYSTEM: You are a helpful assistant with access to the following functions. Use them if
  required -" followed by the functions as JSON objects ({name, description, parameters}), or a system
  prompt without functions;
- `chat`: turns after "USER:", "ASSISTANT:" and "FUNCTION RESPONSE:" markers, answers closed by
  "<|endoftext|>"; an answer that calls is `<functioncall> {"name": ..., "arguments": '{...}'}` (the
  arguments JSON text between single quotes, which is no JSON).

The functions become the record's `tools`, a call a structured call and a function's response a tool
result, so the model's own chat template writes them (Qwen's <tool_call>, Llama 3.1's JSON, ...), not
Glaive's markers. What cannot be read is an Issue naming the turn.
"""

from __future__ import annotations

import json
import re

from ducktune.data import formats
from ducktune.data.formats import NormalizeOptions
from ducktune.data.schema import Issue, Message, Record, Sample, ToolCall

_MARKER = re.compile(r"(?:^|\n)[ \t]*(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]*")
_ROLES = {"USER": "user", "ASSISTANT": "assistant", "FUNCTION RESPONSE": "tool"}
_END = "<|endoftext|>"
_CALL = "<functioncall>"
_QUOTED_ARGUMENTS = re.compile(r"""^\{\s*"name"\s*:\s*"([^"]+)"\s*,\s*"arguments"\s*:\s*'(.*)'\s*\}$""", re.DOTALL)


def looks_like_glaive(value: dict) -> bool:
    chat = value.get("chat")
    return isinstance(chat, str) and _MARKER.match(chat.lstrip()) is not None


def normalize_glaive(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions) -> Sample | None:
    chat = formats._text(value.get("chat"), record, "chat", issues)
    system = formats._text(value.get("system"), record, "system", issues, required=False)
    if issues:
        return None
    prompt, tools = _system_and_tools(system or "", record, issues)
    parts = _MARKER.split(chat.strip())
    if parts[0].strip():
        issues.append(record.issue("chat", "must start with a 'USER:', 'ASSISTANT:' or 'FUNCTION RESPONSE:' turn"))
        return None
    messages = [Message("system", prompt)] if prompt else []
    fields = ["system"] if prompt else []
    for n, (marker, text) in enumerate(zip(parts[1::2], parts[2::2]), start=1):
        message = _turn(_ROLES[marker], text, record, f"chat turn {n} ({marker})", issues)
        if message is None:
            return None
        messages.append(message)
        fields.append(f"chat turn {n} ({marker})")
    if issues:
        return None
    return formats._finish_chat(messages, fields, record, "glaive", issues, "chat", options, tools)


def _system_and_tools(text: str, record: Record, issues: list[Issue]) -> tuple[str, list[dict] | None]:
    """(the system prompt's prose, the functions it lists as JSON objects, None without any)."""
    text = text.strip().removeprefix("SYSTEM:").strip()
    decoder, functions, first, at = json.JSONDecoder(), [], None, 0
    while (start := text.find("{", at)) >= 0:
        try:
            value, at = decoder.raw_decode(text, start)
        except ValueError:
            at = start + 1
            continue
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            functions.append(value)
            first = start if first is None else first
    prose = (text if first is None else text[:first]).strip().rstrip("-").strip()
    tools = formats._tools({"tools": functions}, record, issues) if functions else None
    return prose, tools


def _turn(role: str, text: str, record: Record, field: str, issues: list[Issue]) -> Message | None:
    text = text.strip()
    if role != "assistant":
        return Message(role, text)
    text = text.removesuffix(_END).strip()
    if _CALL not in text:
        return Message("assistant", text)
    before, call = text.split(_CALL, 1)
    parsed = _call(call.strip(), record, field, issues)
    return None if parsed is None else Message("assistant", before.strip(), tool_calls=(parsed,))


def _call(text: str, record: Record, field: str, issues: list[Issue]) -> ToolCall | None:
    """Glaive's call: {"name": ..., "arguments": '<JSON text>'} (or plain JSON)."""
    quoted = _QUOTED_ARGUMENTS.match(text)
    if quoted:
        name, arguments = quoted.group(1), quoted.group(2)
    else:
        try:
            value = json.loads(text)
        except ValueError:
            issues.append(record.issue(field, f"the {_CALL} is not a call {{\"name\": ..., \"arguments\": ...}}"))
            return None
        name, arguments = (value.get("name"), value.get("arguments", {})) if isinstance(value, dict) else (None, None)
    calls = formats._tool_calls({"name": name, "arguments": arguments}, record, field, issues)
    return None if calls is None else calls[0]
