"""Tool calls in a generated answer, read in the syntax the model's chat template writes them.

No parser per family: the template is *measured*. A probe conversation whose answer calls one
function (`duckprobefunction`, arguments {"duckkey": "duckvalue"}) is rendered and the call is located
as training locates it (ChatFormat.assistant_spans); what surrounds the name and the arguments there
is the syntax a tuned model generates:

- "json": the call is a JSON object with the name and its arguments ("arguments" or "parameters")
  after an opening marker: Qwen2.5/3's and Granite 4's `<tool_call>`, Mistral's `[TOOL_CALLS]`,
  EXAONE 4's; Llama 3.1's has no marker (the whole answer is the JSON object);
- "named": the name, then fixed text, then the arguments as JSON: gpt-oss's
  ` to=functions.NAME<|channel|>commentary json<|message|>{...}`.

Templates that write calls in other syntaxes (Python-like calls: OLMo 3, MiniCPM3; Gemma 4's own
notation) have no syntax here: their answers are returned as text, calls included.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from ducktune.data.schema import ToolCall

PROBE_NAME = "duckprobefunction"
PROBE_ARGUMENTS = {"duckkey": "duckvalue"}
_PROBE_ID = "call00001"
_PROBE_TOOLS = [{"type": "function", "function": {"name": PROBE_NAME, "description": "A probe.", "parameters": {
    "type": "object", "properties": {"duckkey": {"type": "string"}}}}}]
_PROBE = [{"role": "user", "content": "Call the probe."},
          {"role": "assistant", "content": "", "tool_calls": [{"id": _PROBE_ID, "type": "function", "function": {
              "name": PROBE_NAME, "arguments": PROBE_ARGUMENTS}}]}]
_EMPTY_THINK = re.compile(r"<think>\s*</think>")
_NAME = r"[A-Za-z0-9_.\-]+"
_JSON_START = re.compile(r"[\[{]")


@dataclass(frozen=True)
class CallSyntax:
    style: str  # "json" or "named"
    opening: str  # "json": the marker before the calls ("" for none); "named": the text before the name
    between: str = ""  # "named": the text between the name and its arguments


@functools.lru_cache(maxsize=16)
def template_tool_parts(chat_format) -> frozenset[str]:
    """data.template_rules.tool_parts, measured once per chat format (the server asks for every request)."""
    from ducktune.data.template_rules import tool_parts

    return tool_parts(chat_format)


@functools.lru_cache(maxsize=16)
def call_syntax(chat_format) -> CallSyntax | None:
    """The syntax `chat_format`'s template writes a call in, or None when it writes none ducktune reads."""
    try:
        text, spans = chat_format.assistant_spans(_PROBE, _PROBE_TOOLS)
    except Exception:  # DataError, ModelError or the template's own: no calls in this template
        return None
    if not spans:
        return None
    call = text[slice(*spans[-1])]
    for token in chat_format.stop_tokens:  # the end-of-turn marker is the stop token, never generated text
        call = call.removesuffix(token) if call.endswith(token) else call
    at = _json_call_at(call)
    if at is not None:  # the marker nearest the JSON (Qwen3 writes an empty reasoning block before it)
        return CallSyntax("json", _EMPTY_THINK.sub("", call[:at]).rstrip(" \n[").strip())
    name_at, args_at = call.find(PROBE_NAME), call.find('{"duckkey"')
    if 0 <= name_at < args_at:
        return CallSyntax("named", call[:name_at].lstrip(), call[name_at + len(PROBE_NAME):args_at])
    return None


def _json_call_at(text: str) -> int | None:
    """Where the JSON object of the probe call (name and arguments) starts in `text`."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("name") == PROBE_NAME and \
                PROBE_ARGUMENTS in (value.get("arguments"), value.get("parameters")):
            return match.start()
    return None


def parse_tool_calls(text: str, syntax: CallSyntax | None, frame=None) -> tuple[str, list[ToolCall]] | None:
    """(the answer's text before its calls, the calls) when `text` (an answer with special tokens kept)
    calls tools in `syntax`; None when it calls none. `frame` (the template's AnswerFrame): calls are read
    after the model's reasoning when it closed it, and the reasoning is not part of the text."""
    if frame is not None:
        reasoning, answer = frame.answer(text)
        if reasoning is not None and answer.strip():
            text = answer
    parsed = _parsed_calls(text, syntax)
    if parsed is not None and frame is not None:
        parsed = (frame.answer(parsed[0])[1].strip(), parsed[1])
    return parsed


def _parsed_calls(text: str, syntax: CallSyntax | None) -> tuple[str, list[ToolCall]] | None:
    if syntax is None:
        return None
    if syntax.style == "named":
        return _named_calls(text, syntax)
    if syntax.opening:
        start = text.find(syntax.opening)
        body = text[start + len(syntax.opening):] if start >= 0 else ""
    else:  # no marker (Llama 3.1): a call is an answer that is the JSON object alone
        start = 0 if text.lstrip().startswith("{") else -1
        body = text if start == 0 else ""
    calls = _json_calls(body)
    if start < 0 or not calls:
        return None
    return _content(text[:start]), calls


def _json_calls(body: str) -> list[ToolCall]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    at = 0
    while (match := _JSON_START.search(body, at)) is not None:
        try:
            value, at = decoder.raw_decode(body, match.start())
        except ValueError:
            at = match.start() + 1
            continue
        for item in value if isinstance(value, list) else [value]:
            call = _call(item)
            if call is not None:
                calls.append(call)
    return calls


def _call(item: object) -> ToolCall | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return ToolCall(item["name"], arguments) if isinstance(arguments, dict) else None


def _named_calls(text: str, syntax: CallSyntax) -> tuple[str, list[ToolCall]] | None:
    decoder = json.JSONDecoder()
    # The probe's call id is the model's own in a generated answer (Mistral Small 3.2's [CALL_ID]...).
    between = re.escape(syntax.between).replace(_PROBE_ID, "[A-Za-z0-9_\\-]+")
    pattern = re.compile(re.escape(syntax.opening.strip()) + f"({_NAME})" + between)
    calls, first = [], None
    for match in pattern.finditer(text):
        try:
            arguments, _ = decoder.raw_decode(text, match.end())
        except ValueError:
            continue
        if isinstance(arguments, dict):
            calls.append(ToolCall(match.group(1), arguments))
            first = match.start() if first is None else first
    return (_content(text[:first]), calls) if calls else None


def _content(text: str) -> str:
    """The text an answer has before its calls, as a client shows it: an empty reasoning block dropped."""
    return _EMPTY_THINK.sub("", text).strip()
