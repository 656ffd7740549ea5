"""Tool calls written as a name and then each argument as a key and its value in fixed text (no JSON
object around them), read in the syntax a chat template writes them, measured as chat.tool_calls measures
the others:

- Qwen3.5 (and Qwen3-Coder's template): `<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n
  ...</function>\\n</tool_call>`, a string value as it is, any other as JSON or Python's `str`;
- OLMo 3, MiniCPM3: Python-like `NAME(KEY="VALUE", KEY=2)`, every value JSON;
- Gemma 4: `<|tool_call>call:NAME{KEY:<|"|>VALUE<|"|>,KEY:2}`, its own notation: strings between its quote
  token, numbers, booleans, lists and objects (bare keys) as written.

Probe calls are rendered (two arguments; none; two calls) and the text around the probe's name, keys and
values is the syntax. A last probe with a string holding quotes and a newline, a number, a list, a bool
and an object must read back exactly, or the template has no keyed syntax here (Gemma 4's notation, whose
strings are quoted and whose numbers are not, is read by its own notation).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ducktune.data.schema import ToolCall

_FIRST, _SECOND = "duckprobefunction", "duckprobesecond"
_PAIR_ARGS = {"duckkey": "duckvalue", "duckother": "duckmore"}
_TYPED_ARGS = {"duckkey": 'duck "value"\nline two', "ducknum": 2, "ducklist": [1, "a"], "duckflag": True,
               "duckobj": {"a": 1}}
_TYPES = {"duckkey": "string", "duckother": "string", "ducknum": "integer", "ducklist": "array", "duckflag": "boolean",
          "duckobj": "object"}
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


@dataclass(frozen=True)
class KeyedSyntax:
    opening: str  # before the first call's name
    head: str  # between a name and its first key
    key_end: str  # between a key and its value
    value_end: str  # what ends a value written as it is ("" when values are JSON, which end themselves)
    sep: str  # after a value, before the next key (value_end included)
    call_end: str  # after a call's last value (value_end included)
    empty: str | None  # after the name of a call without arguments (None: not measured)
    each: str | None  # before a later call's name ("" right after the call before; None: the opening again)
    quote: str  # what wraps a string value: '"' (every value JSON), another marker (the template's own
    # notation: Gemma 4's <|"|>), or "" (values written as they are)

    def read(self, text: str, types: dict[str, dict[str, str]] | None = None) -> tuple[int, list[ToolCall]] | None:
        """(where the calls start, the calls) in `text`, or None when it holds none or breaks the syntax.
        `types`: each function's parameter types (from the request's tools) for values written as they are."""
        start = text.find(self.opening)
        if start < 0:
            return None
        at, calls = start + len(self.opening), []
        while True:
            read = self._call(text, at, (types or {}))
            if read is None:
                return None
            at, call = read
            calls.append(call)
            at = self._next_call(text, at)
            if at is None:
                return start, calls

    def _call(self, text: str, at: int, types: dict) -> tuple[int, ToolCall] | None:
        name = _NAME.match(text, at)
        if name is None:
            return None
        at, arguments = name.end(), {}
        if self.empty is not None and text.startswith(self.empty, at):
            return at + len(self.empty), ToolCall(name.group(), arguments)
        if not text.startswith(self.head, at):
            return None
        at += len(self.head)
        while True:
            key_end = text.find(self.key_end, at)
            if key_end < 0 or not _NAME.fullmatch(text[at:key_end]):
                return None
            key, at = text[at:key_end], key_end + len(self.key_end)
            value = self._value(text, at, types.get(name.group(), {}).get(key))
            if value is None:
                return None
            arguments[key], at = value
            if text.startswith(self.sep, at):
                at += len(self.sep)
            elif text.startswith(self.call_end, at):
                return at + len(self.call_end), ToolCall(name.group(), arguments)
            else:
                return None

    def _value(self, text: str, at: int, declared: str | None) -> tuple[object, int] | None:
        if self.quote == '"':
            try:
                return json.JSONDecoder().raw_decode(text, at)
            except ValueError:
                return None
        if self.quote:
            return notation_value(text, at, self.quote)
        end = text.find(self.value_end, at)
        return None if end < 0 else (typed_value(text[at:end], declared), end)

    def _next_call(self, text: str, at: int) -> int | None:
        """Where the next call's name starts, or None after the last call."""
        if self.each is None:
            found = text.find(self.opening, at)
            return None if found < 0 else found + len(self.opening)
        rest = len(text[at:]) - len(text[at:].lstrip())
        at += rest
        if self.each:
            return at + len(self.each) if text.startswith(self.each, at) else None
        name = _NAME.match(text, at)  # right after the call before (OLMo 3's calls, one per line)
        if name is None:
            return None
        after = name.end()
        opens = text.startswith(self.head, after) or (self.empty is not None and text.startswith(self.empty, after))
        return at if opens else None


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_WORDS = {"true": True, "false": False, "null": None}


def notation_value(text: str, at: int, quote: str) -> tuple[object, int] | None:
    """(value, where it ends) of a template's own value notation at `at` (Gemma 4's): a string between
    `quote` markers, a number, true/false/null, a [list] or an {object} whose keys are bare or quoted;
    None where none starts."""
    if text.startswith(quote, at):
        end = text.find(quote, at + len(quote))
        return None if end < 0 else (text[at + len(quote):end], end + len(quote))
    if number := _NUMBER.match(text, at):
        try:
            return json.loads(number.group()), number.end()
        except ValueError:  # a leading zero (a model's "007"): no JSON number
            return float(number.group()), number.end()
    word = _NAME.match(text, at)
    if word and word.group() in _WORDS:
        return _WORDS[word.group()], word.end()
    if text.startswith("[", at):
        return _notation_items(text, at + 1, "]", lambda at: notation_value(text, at, quote), list)
    if text.startswith("{", at):
        return _notation_items(text, at + 1, "}", lambda at: _notation_pair(text, at, quote), dict)
    return None


def _notation_pair(text: str, at: int, quote: str) -> tuple[tuple[str, object], int] | None:
    key = notation_value(text, at, quote) if text.startswith(quote, at) else None
    key = key or ((name.group(), name.end()) if (name := _NAME.match(text, at)) else None)
    if key is None or not isinstance(key[0], str) or not text.startswith(":", key[1]):
        return None
    value = notation_value(text, key[1] + 1, quote)
    return None if value is None else ((key[0], value[0]), value[1])


def _notation_items(text: str, at: int, close: str, item, kind) -> tuple[object, int] | None:
    items = []
    if text.startswith(close, at):
        return kind(items), at + 1
    while (read := item(at)) is not None:
        items.append(read[0])
        at = read[1]
        if text.startswith(close, at):
            return kind(items), at + 1
        if not text.startswith(",", at):
            return None
        at += 1
    return None


def typed_value(value: str, declared: str | None):
    """A value written as it is, read as the type the tool declares; undeclared, as JSON where it is JSON
    (numbers, lists, objects, true/false/null) or a Python literal the template's `str` wrote (True, None),
    else the string."""
    if declared == "string":
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return _PYTHON_LITERALS.get(value, value)
    return value if isinstance(parsed, str) else parsed


def parameter_types(tools: list[dict] | None) -> dict[str, dict[str, str]]:
    """{function name: {parameter: declared JSON type}} of an OpenAI tools list."""
    found = {}
    for tool in tools or []:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(properties, dict):
            found[function["name"]] = {k: v.get("type") for k, v in properties.items()
                                       if isinstance(v, dict) and isinstance(v.get("type"), str)}
    return found


def keyed_syntax(chat_format, rendered_call) -> KeyedSyntax | None:
    """The keyed syntax `chat_format` writes calls in, measured; None where it writes calls another way.
    `rendered_call(calls)`: the answer the template writes for an assistant turn with these calls (its
    reasoning and stop token removed), or None when the template refuses it."""
    one = rendered_call([(_FIRST, _PAIR_ARGS)])
    if one is None:
        return None
    spots = _in_order(one, [_FIRST, "duckkey", "duckvalue", "duckother", "duckmore"])
    if spots is None:
        return None
    name, key1, value1, key2, value2 = spots
    key_end, between, tail = (one[key1 + len("duckkey"):value1], one[value1 + len("duckvalue"):key2],
                              one[value2 + len("duckmore"):])
    quote = _string_quote(key_end, between, tail)
    key_end, between, tail = key_end[:len(key_end) - len(quote)], between[len(quote):], tail[len(quote):]
    value_end = "" if quote else os.path.commonprefix([between, tail])
    if not quote and not value_end.strip():
        return None  # nothing ends a value written as it is
    markers = list(chat_format.tokenizer.get_added_vocab())
    call_end, each = _call_end_and_each(rendered_call, tail, len(quote), markers)
    empty = rendered_call([(_FIRST, {})])
    empty_at = -1 if empty is None else empty.find(_FIRST)
    syntax = KeyedSyntax(one[:name].lstrip(), one[name + len(_FIRST):key1], key_end, value_end, between, call_end,
                         None if empty_at < 0 else empty[empty_at + len(_FIRST):].removesuffix(tail[len(call_end):]),
                         each, quote)
    return syntax if _reads_back(syntax, rendered_call) else None


def _string_quote(key_end: str, between: str, tail: str) -> str:
    """The marker around the probe's string values: the longest end of `key_end` that `between` and `tail`
    start with; "" when it is only whitespace (Qwen3.5's values on lines of their own)."""
    for size in range(len(key_end), 0, -1):
        quote = key_end[-size:]
        if between.startswith(quote) and tail.startswith(quote):
            return quote if quote.strip() else ""
    return ""


def _call_end_and_each(rendered_call, tail: str, quote_size: int, markers: list[str]) -> tuple[str, str | None]:
    """(what ends a call, what opens a later one) from a turn with two calls; (tail, None) where the
    template writes one call per turn. The end is the text the gap between two calls shares with the end
    of a last call, never part of a token `markers` holds (Gemma 4's <|tool_call> after a call, its
    <|tool_response> after the last one)."""
    two = rendered_call([(_FIRST, {"duckkey": "duckvalue"}), (_SECOND, {"duckkey": "duckvalue"})])
    spots = None if two is None else _in_order(two, [_FIRST, "duckvalue", _SECOND])
    if spots is None:
        return tail, None
    gap = two[spots[1] + len("duckvalue") + quote_size:spots[2]]
    call_end = tail[:_marker_boundary(tail, len(os.path.commonprefix([gap, tail])), markers)]
    return call_end, gap[len(call_end):].strip()


def _marker_boundary(text: str, cut: int, markers: list[str]) -> int:
    """`cut`, moved back to the start of any of `markers` it falls inside in `text`."""
    moved = True
    while moved:
        moved = False
        for marker in markers:
            start = text.find(marker)
            while 0 <= start < cut:
                if start + len(marker) > cut:
                    cut, moved = start, True
                    break
                start = text.find(marker, start + 1)
    return cut


def _reads_back(syntax: KeyedSyntax, rendered_call) -> bool:
    calls = [(_FIRST, _TYPED_ARGS), (_SECOND, {} if syntax.empty is not None else {"duckkey": "duckvalue"})]
    text = rendered_call(calls) if syntax.each is not None else None
    if text is None:
        calls = calls[:1]
        text = rendered_call(calls)
    read = None if text is None else syntax.read(text, {_FIRST: _TYPES})
    return read is not None and [(c.name, c.arguments) for c in read[1]] == calls


def _in_order(text: str, parts: list[str]) -> list[int] | None:
    spots, at = [], 0
    for part in parts:
        found = text.find(part, at)
        if found < 0:
            return None
        spots.append(found)
        at = found + len(part)
    return spots
