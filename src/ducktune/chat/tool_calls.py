"""Tool calls in a generated answer, read in the syntax the model's chat template writes them.

No parser per family: the template is *measured*. A probe conversation whose answer calls one
function (`duckprobefunction`, arguments {"duckkey": "duckvalue"}) is rendered and the call is located
as training locates it (ChatFormat.assistant_spans); what surrounds the name and the arguments there
is the syntax a tuned model generates:

- "json": the call is a JSON object with the name and its arguments ("arguments" or "parameters")
  after an opening marker: Qwen2.5/3's and Granite 4's `<tool_call>`, Mistral's `[TOOL_CALLS]`,
  EXAONE 4's; Llama 3.1's has no marker (the whole answer is the JSON object);
- "named": the name, then fixed text, then the arguments as JSON: gpt-oss's
  ` to=functions.NAME<|channel|>commentary json<|message|>{...}`. A second probe with two calls measures
  what opens each later call, where the template writes one opening for all of them (Apertus'
  `<|tools_prefix|>[{"NAME": {...}}, {"NAME": {...}}]`, DeepSeek's `<｜tool▁calls▁begin｜>` before the
  `<｜tool▁call▁begin｜>` of every call).

- "keyed": the name, then each argument as a key and its value in fixed text (chat.keyed_calls): Qwen3.5's
  `<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>`, OLMo 3's and MiniCPM3's `NAME(KEY="VALUE")`,
  Gemma 4's `call:NAME{KEY:<|"|>VALUE<|"|>}`.

A template whose calls fit none of these has no syntax here: its answers are returned as text, calls
included.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass

from ducktune.chat.keyed_calls import KeyedSyntax, keyed_syntax, parameter_types
from ducktune.data.schema import ToolCall

PROBE_NAME = "duckprobefunction"
PROBE_ARGUMENTS = {"duckkey": "duckvalue"}
_PROBE_ID = "call00001"
_PROBE_TOOLS = [{"type": "function", "function": {"name": PROBE_NAME, "description": "A probe.", "parameters": {
    "type": "object", "properties": {"duckkey": {"type": "string"}}}}}]
_PROBE = [{"role": "user", "content": "Call the probe."},
          {"role": "assistant", "content": "", "tool_calls": [{"id": _PROBE_ID, "type": "function", "function": {
              "name": PROBE_NAME, "arguments": PROBE_ARGUMENTS}}]}]
_SECOND_NAME = "duckprobesecond"
_EMPTY_THINK = re.compile(r"<think>\s*</think>")
_NAME = r"[A-Za-z0-9_.\-]+"
_JSON_START = re.compile(r"[\[{]")


@dataclass(frozen=True)
class CallSyntax:
    style: str  # "json", "named" or "keyed"
    opening: str  # "json": the marker before the calls ("" for none); "named": the text before the name
    between: str = ""  # "named": the text between the name and its arguments
    each: str = ""  # "named": the text before each later call's name ("" = the opening, repeated)
    keyed: KeyedSyntax | None = None  # "keyed": the measured syntax


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
        opening = call[:name_at].lstrip()
        return CallSyntax("named", opening, call[name_at + len(PROBE_NAME):args_at], _each_opening(chat_format, opening))
    keyed = keyed_syntax(chat_format, functools.partial(_rendered_call, chat_format))
    return None if keyed is None else CallSyntax("keyed", keyed.opening, keyed=keyed)


def _generated_turn(chat_format, calls: list[tuple[str, dict]]) -> str | None:
    """What a model trained on `chat_format`'s template generates for an assistant turn making `calls`
    (name, arguments): the turn's trained text without the stop token (its frame, such as an empty
    reasoning block, included); None when the template refuses the turn."""
    tools = [{"type": "function", "function": {"name": name, "description": "A probe.", "parameters": {
        "type": "object", "properties": {key: {"type": "string"} for key in arguments}}}} for name, arguments in calls]
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call{i:05d}", "type": "function", "function": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(calls, start=1)]}
    try:
        text, spans = chat_format.assistant_spans([_PROBE[0], turn], tools)
    except Exception:  # DataError, ModelError or the template's own
        return None
    if not spans:
        return None
    call = text[slice(*spans[-1])]
    for token in chat_format.stop_tokens:
        call = call.removesuffix(token)
    return call


def _rendered_call(chat_format, calls: list[tuple[str, dict]]) -> str | None:
    """The calls of `_generated_turn`: without the reasoning block the template adds."""
    call = _generated_turn(chat_format, calls)
    if call is None:
        return None
    reasoning, answer = chat_format.answer_frame.answer(call)
    return answer if reasoning is not None else _EMPTY_THINK.sub("", call).lstrip()


@functools.lru_cache(maxsize=64)
def forced_call_prefix(chat_format, name: str) -> str | None:
    """The start of an answer that calls a function, as the template writes it, for a request that forces a
    call (tool_choice): up to the function's name ("" for "required": up to where any name goes), so the
    model continues with the name or the arguments (gpt-oss's: its header's `to=functions.NAME`). None
    where the template writes no calls ducktune reads."""
    if call_syntax(chat_format) is None:
        return None
    rendered = _generated_turn(chat_format, [(name or PROBE_NAME, {"duckkey": "v"})])
    at = rendered.find(name or PROBE_NAME) if rendered else -1
    if at < 0:
        return None
    return rendered[:at + len(name)]


def _each_opening(chat_format, opening: str) -> str:
    """What a named-syntax template writes before the name of a call after the first: the end of the first
    call's opening that the template writes again between two calls ("" where it writes none of it
    again, or writes one call per turn)."""
    # None: the template refuses two calls in one turn (Llama 3.1)
    answer = _rendered_call(chat_format, [(PROBE_NAME, PROBE_ARGUMENTS), (_SECOND_NAME, PROBE_ARGUMENTS)]) or ""
    first = answer.find('{"duckkey"')
    second = answer.find(_SECOND_NAME, first)
    if first < 0 or second < 0:  # one call per turn (gpt-oss writes the first)
        return ""
    _, end = json.JSONDecoder().raw_decode(answer, first)
    gap = answer[end:second]
    shared = len(os.path.commonprefix([gap[::-1], opening[::-1]]))  # the end both share
    each = gap[len(gap) - shared:].strip()
    return "" if each == opening.strip() else each


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


def parse_tool_calls(text: str, syntax: CallSyntax | None, frame=None,
                     tools: list[dict] | None = None) -> tuple[str, list[ToolCall]] | None:
    """(the answer's text before its calls, the calls) when `text` (an answer with special tokens kept)
    calls tools in `syntax`; None when it calls none. `frame` (the template's AnswerFrame): calls are read
    after the model's reasoning when it closed it, and the reasoning is not part of the text. `tools` (the
    offered tools): the parameter types of values a "keyed" syntax writes as they are (Qwen3.5's `2` is
    the string "2" for a string parameter)."""
    after_reasoning = None
    if frame is not None:
        reasoning, answer = frame.answer(text)
        after_reasoning = answer if reasoning is not None and answer.strip() else None
    parsed = _parsed_calls(text if after_reasoning is None else after_reasoning, syntax, tools)
    if parsed is not None and frame is not None and after_reasoning is None:
        # calls inside what the frame reads as reasoning (gpt-oss's commentary): the text before them is
        # read by the frame
        parsed = (frame.answer(parsed[0])[1].strip(), parsed[1])
    return parsed


def _parsed_calls(text: str, syntax: CallSyntax | None, tools) -> tuple[str, list[ToolCall]] | None:
    if syntax is None:
        return None
    if syntax.keyed is not None:
        read = syntax.keyed.read(text, parameter_types(tools))
        return None if read is None else (_content(text[:read[0]]), read[1])
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
    later = re.compile(re.escape(syntax.each) + f"({_NAME})" + between) if syntax.each else pattern
    calls, first, at = [], None, 0
    # Read on from each call's end: a later call's opening may be as short as `{"`, which its arguments
    # could hold too.
    while (match := (later if calls else pattern).search(text, at)) is not None:
        try:
            arguments, end = decoder.raw_decode(text, match.end())
        except ValueError:
            at = match.start() + 1
            continue
        at = end
        if isinstance(arguments, dict):
            calls.append(ToolCall(match.group(1), arguments))
            first = match.start() if first is None else first
    return (_content(text[:first]), calls) if calls else None


def _content(text: str) -> str:
    """The text an answer has before its calls, as a client shows it: an empty reasoning block dropped."""
    return _EMPTY_THINK.sub("", text).strip()
