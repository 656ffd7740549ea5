"""Detect a record's format and normalize it to a `Sample`.

Formats (what people's tutorials produce):
- alpaca:     {instruction, input?, output, system?, history?: [[q, a], ...]}
- sharegpt:   {conversations: [{from, value}], system?}      from: human/gpt/system (or user/assistant)
- messages:   {messages: [{role, content}]}                   OpenAI; content may be a list of text parts;
                                                              from/value items are accepted too
- firefly:    {conversation: [{human, assistant}], system?}
- text:       {text}                                          continued pre-training, every token trained
- preference: {prompt|messages, chosen, rejected}             parsed and validated for preference tuning

Normalizers never raise on odd input: every problem becomes an `Issue` naming the field.
"""

from __future__ import annotations

from typing import Callable

from ducktune.data.schema import Issue, Message, Record, Sample

FORMATS = ("alpaca", "sharegpt", "messages", "firefly", "text", "preference")

USER_ROLES = {"user", "human"}
ASSISTANT_ROLES = {"assistant", "gpt", "model", "bot", "chatgpt", "bard", "bing"}
SYSTEM_ROLES = {"system"}


def canonical_role(role: object) -> str | None:
    if not isinstance(role, str):
        return None
    key = role.strip().lower()
    if key in USER_ROLES:
        return "user"
    if key in ASSISTANT_ROLES:
        return "assistant"
    if key in SYSTEM_ROLES:
        return "system"
    return None


# ----------------------------------------------------------------------------- detection

def fits(fmt: str, value: object) -> str | None:
    """None when `value` looks like format `fmt`, else why not (for "no known format" errors)."""
    if not isinstance(value, dict):
        return f"a record is a {type(value).__name__}, not an object"
    keys = set(value)
    if fmt == "preference":
        return None if {"chosen", "rejected"} <= keys else "no 'chosen' and 'rejected' fields"
    if fmt == "sharegpt":
        return None if "conversations" in keys else "no 'conversations' field"
    if fmt == "messages":
        return None if "messages" in keys else "no 'messages' field"
    if fmt == "firefly":
        return None if "conversation" in keys else "no 'conversation' field"
    if fmt == "alpaca":
        if "output" in keys and ("instruction" in keys or "input" in keys):
            return None
        return "no 'instruction'/'input' and 'output' fields"
    if fmt == "text":
        return None if "text" in keys else "no 'text' field"
    raise ValueError(fmt)


# Order matters: preference records may also carry 'messages' or 'prompt'.
_DETECTION_ORDER = ("preference", "sharegpt", "messages", "firefly", "alpaca", "text")


def detect_record(value: object) -> str | None:
    for fmt in _DETECTION_ORDER:
        if fits(fmt, value) is None:
            return fmt
    return None


def detect_format(records: list[Record], sample_size: int = 200) -> tuple[str | None, str]:
    """The format most of the first records fit; else None and why each format was rejected."""
    counts: dict[str, int] = {}
    for record in records[:sample_size]:
        fmt = detect_record(record.value)
        if fmt:
            counts[fmt] = counts.get(fmt, 0) + 1
    if counts:
        return max(counts, key=lambda f: (counts[f], -_DETECTION_ORDER.index(f))), ""
    first = records[0].value if records else None
    reasons = "; ".join(f"{fmt}: {fits(fmt, first)}" for fmt in _DETECTION_ORDER)
    keys = f"fields {sorted(first)[:8]}" if isinstance(first, dict) else f"a {type(first).__name__}"
    return None, f"no known format fits (the first record has {keys}). Tried {reasons}"


# ----------------------------------------------------------------------------- normalizers

def _text(value: object, record: Record, field: str, issues: list[Issue], required: bool = True) -> str | None:
    """A string field; OpenAI-style lists of text parts are joined."""
    if value is None:
        if required:
            issues.append(record.issue(field, "missing"))
        return None
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                issues.append(record.issue(f"{field}[{i}]", f"only text parts are supported (got {kind!r})"))
                return None
        return "".join(parts)
    if not isinstance(value, str):
        issues.append(record.issue(field, f"must be a string, got {type(value).__name__}"))
        return None
    return value


def _finish_chat(messages: list[Message], record: Record, fmt: str, issues: list[Issue], field: str) -> Sample | None:
    """Common checks: a user turn exists, the last turn is a non-empty assistant answer."""
    if issues:
        return None
    turns = [m for m in messages if m.role != "system"]
    if not turns:
        issues.append(record.issue(field, "no user or assistant turns"))
        return None
    for i, message in enumerate(messages):
        if message.role == "system" and i != 0:
            issues.append(record.issue(field, f"system message at position {i}: it must come first"))
            return None
    if not any(m.role == "user" for m in turns):
        issues.append(record.issue(field, "no user turn"))
        return None
    last = turns[-1]
    if last.role != "assistant":
        issues.append(record.issue(field, "no assistant answer: the last turn is from the user"))
        return None
    for message in turns:
        if message.role == "assistant" and not message.content.strip():
            issues.append(record.issue(field, "empty assistant answer"))
            return None
    return Sample("chat", messages=messages, where=record.where, format=fmt)


def _system(value: dict, record: Record, issues: list[Issue], field: str = "system") -> list[Message]:
    system = _text(value.get(field), record, field, issues, required=False)
    return [Message("system", system)] if system and system.strip() else []


def normalize_alpaca(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    instruction = _text(value.get("instruction"), record, "instruction", issues, required=False) or ""
    extra = _text(value.get("input"), record, "input", issues, required=False) or ""
    output = _text(value.get("output"), record, "output", issues)
    if issues:
        return None
    # Colab notebooks often leave instruction empty and put the question in input.
    prompt = "\n".join(part for part in (instruction, extra) if part.strip())
    if not prompt.strip():
        issues.append(record.issue("instruction", "empty: neither instruction nor input has text"))
        return None
    if not output.strip():
        issues.append(record.issue("output", "empty assistant answer"))
        return None
    messages = _system(value, record, issues)
    history = value.get("history")
    if history is not None:
        if not isinstance(history, list):
            issues.append(record.issue("history", f"must be a list of [question, answer] pairs, got {type(history).__name__}"))
            return None
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                issues.append(record.issue(f"history[{i}]", "must be a [question, answer] pair"))
                return None
            q = _text(pair[0], record, f"history[{i}][0]", issues)
            a = _text(pair[1], record, f"history[{i}][1]", issues)
            if issues:
                return None
            messages += [Message("user", q), Message("assistant", a)]
    messages += [Message("user", prompt), Message("assistant", output)]
    return _finish_chat(messages, record, "alpaca", issues, "output")


def _turn_list(value: dict, record: Record, issues: list[Issue], field: str, role_key: str, content_key: str,
               alt_keys: tuple[str, str] | None = None) -> list[Message] | None:
    turns = value.get(field)
    if not isinstance(turns, list):
        issues.append(record.issue(field, f"must be a list of turns, got {type(turns).__name__}"))
        return None
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            issues.append(record.issue(where, f"must be an object, got {type(turn).__name__}"))
            return None
        rk, ck = role_key, content_key
        if rk not in turn and alt_keys and alt_keys[0] in turn:
            rk, ck = alt_keys
        if rk not in turn:
            issues.append(record.issue(f"{where}.{role_key}", "missing"))
            return None
        role = canonical_role(turn[rk])
        if role is None:
            issues.append(record.issue(f"{where}.{rk}", f"unknown role {turn[rk]!r} (use system, user or assistant)"))
            return None
        content = _text(turn.get(ck), record, f"{where}.{ck}", issues)
        if content is None:
            return None
        messages.append(Message(role, content))
    return messages


def normalize_sharegpt(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    turns = _turn_list(value, record, issues, "conversations", "from", "value", alt_keys=("role", "content"))
    if turns is None:
        return None
    messages = _system(value, record, issues) if not (turns and turns[0].role == "system") else []
    return _finish_chat(messages + turns, record, "sharegpt", issues, "conversations")


def normalize_messages(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    turns = _turn_list(value, record, issues, "messages", "role", "content", alt_keys=("from", "value"))
    if turns is None:
        return None
    messages = _system(value, record, issues) if not (turns and turns[0].role == "system") else []
    return _finish_chat(messages + turns, record, "messages", issues, "messages")


def normalize_firefly(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    turns = value.get("conversation")
    if not isinstance(turns, list) or not turns:
        issues.append(record.issue("conversation", "must be a non-empty list of {human, assistant} turns"))
        return None
    messages = _system(value, record, issues)
    for i, turn in enumerate(turns):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            issues.append(record.issue(where, f"must be an object, got {type(turn).__name__}"))
            return None
        human = _text(turn.get("human"), record, f"{where}.human", issues)
        answer = _text(turn.get("assistant"), record, f"{where}.assistant", issues)
        if issues:
            return None
        messages += [Message("user", human), Message("assistant", answer)]
    return _finish_chat(messages, record, "firefly", issues, "conversation")


def normalize_text(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    text = _text(value.get("text"), record, "text", issues)
    if text is None:
        return None
    if not text.strip():
        issues.append(record.issue("text", "empty"))
        return None
    return Sample("text", text=text, where=record.where, format="text")


def normalize_preference(value: dict, record: Record, issues: list[Issue]) -> Sample | None:
    if "messages" in value:
        prompt = _turn_list(value, record, issues, "messages", "role", "content", alt_keys=("from", "value"))
    elif "conversations" in value:
        prompt = _turn_list(value, record, issues, "conversations", "from", "value", alt_keys=("role", "content"))
    else:
        text = _text(value.get("prompt", value.get("instruction")), record, "prompt", issues)
        prompt = [Message("user", text)] if text is not None else None
    if prompt is None:
        return None
    answers = {}
    for key in ("chosen", "rejected"):
        raw = value.get(key)
        if isinstance(raw, dict):  # {"from": "gpt", "value": ...} as in LLaMA-Factory's sharegpt pairs
            raw = raw.get("value", raw.get("content"))
        answers[key] = _text(raw, record, key, issues)
    if issues:
        return None
    for key, answer in answers.items():
        if not answer.strip():
            issues.append(record.issue(key, "empty answer"))
            return None
    if not prompt or prompt[-1].role != "user":
        issues.append(record.issue("prompt", "the prompt must end with a user turn"))
        return None
    return Sample("preference", messages=prompt, chosen=answers["chosen"], rejected=answers["rejected"],
                  where=record.where, format="preference")


NORMALIZERS: dict[str, Callable[[dict, Record, list[Issue]], Sample | None]] = {
    "alpaca": normalize_alpaca,
    "sharegpt": normalize_sharegpt,
    "messages": normalize_messages,
    "firefly": normalize_firefly,
    "text": normalize_text,
    "preference": normalize_preference,
}


def normalize(record: Record, fmt: str, issues: list[Issue]) -> Sample | None:
    """Normalize one record as `fmt`; problems are appended to `issues`."""
    value = record.value
    if not isinstance(value, dict):
        issues.append(record.issue("(record)", f"must be a JSON object, got {type(value).__name__}"))
        return None
    reason = fits(fmt, value)
    if reason is not None:
        other = detect_record(value)
        hint = f"; it looks like {other}" if other else ""
        issues.append(record.issue("(record)", f"does not fit the {fmt} format: {reason}{hint}"))
        return None
    return NORMALIZERS[fmt](value, record, issues)
