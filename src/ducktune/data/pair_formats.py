"""Preference records -> `Sample`s: pairs (chosen/rejected) and unpaired KTO samples.

Pair shapes (format "preference"):
- TRL explicit prompt:   {prompt, chosen, rejected}; prompt a string or a message list, each
                         answer a string, a message or [{"role": "assistant", ...}]
- TRL implicit prompt / UltraFeedback: chosen and rejected are whole conversations sharing
                         their prompt ([user, assistant] ...); the prompt is their common
                         part, every turn but the last (a `prompt` string beside them is ignored)
- LLaMA-Factory ranking: alpaca {instruction, input?, system?, history?, chosen, rejected};
                         sharegpt {conversations, chosen: {from, value}, rejected: {...}}
- Anthropic HH-RLHF:     {chosen, rejected} as "\n\nHuman: ...\n\nAssistant: ..." transcripts
                         sharing every turn but the last
Unpaired shapes (format "unpaired", KTO):
- TRL:                   {prompt, completion, label}; strings or message lists
- LLaMA-Factory kto_tag: {messages|conversations: [..., assistant], label} (the last
                         assistant turn is the completion); alpaca {instruction, output, label}

Tool calling: a prompt may hold calls and their results and a record its `tools` (as chat records do);
an answer given as an assistant message may be calls (OpenAI's `tool_calls`, LLaMA-Factory's
function_call turn) and carry reasoning (`reasoning_content`), kept in `Sample.turns`. Answers are
checked as chat records are: the template writes the tool parts used, calls name defined functions.

Every problem is an `Issue` naming the field: a missing or empty answer, identical chosen
and rejected, prompts that differ between the two conversations, wrong types.
"""

from __future__ import annotations

import re

from ducktune.data import formats
from ducktune.data.columns import file_field_names
from ducktune.data.formats import NormalizeOptions
from ducktune.data.schema import Issue, Message, Record, Sample

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_PROMPT_HINT = ("missing: add the question as 'prompt' (TRL), 'instruction' (alpaca), 'question' or 'conversations', "
                "or give the answers as whole conversations")


def boolean_label(value: object) -> bool | None:
    """A KTO label: true/false (also "true"/"false" text from CSV files, and 1/0); None when not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    return None


def _role_key(turn: dict, options: NormalizeOptions) -> object:
    tags = options.tags
    for key in ((tags.role_tag,) if tags and tags.role_tag else ()) + ("role", "from"):
        if key in turn:
            return turn[key]
    return None


def _role(turn: object, options: NormalizeOptions) -> str | None:
    if not isinstance(turn, dict):
        return None
    raw = _role_key(turn, options)
    return options.tags.role(raw) if options.tags is not None else formats.canonical_role(raw)


def is_conversation(raw: object, options: NormalizeOptions) -> bool:
    """A whole conversation (its first non-system turn is the user's), not just an answer."""
    raw = formats._json_list(raw)
    if not isinstance(raw, list):
        return False
    roles = [_role(turn, options) for turn in raw]
    return any(r == "user" for r in roles) and next((r for r in roles if r != "system"), None) == "user"


def _message_list(raw: object, options: NormalizeOptions) -> bool:
    """A non-empty list of turns with roles (not a list of text parts)."""
    raw = formats._json_list(raw)
    return isinstance(raw, list) and bool(raw) and all(isinstance(t, dict) and _role_key(t, options) is not None
                                                       for t in raw)


def _answer(value: dict, key: str, record: Record, issues: list[Issue], options: NormalizeOptions
            ) -> Message | None:
    """One answer turn: a string, text parts, one message ({role, content} / {from, value}, with its calls
    and reasoning) or a list holding one assistant message (TRL's conversational answers)."""
    raw = formats._json_list(value.get(key))
    if _message_list(raw, options):
        if len(raw) != 1:
            issues.append(record.issue(key, f"must hold one assistant message, got {len(raw)} messages"))
            return None
        raw, key = raw[0], f"{key}[0]"
    if isinstance(raw, dict):
        return _answer_message(raw, key, record, issues, options)
    if raw is not None and not isinstance(raw, (str, list)):
        issues.append(record.issue(key, f"must be a string or an assistant message, got {type(raw).__name__}"))
        return None
    text = formats._text(raw, record, key, issues)
    return None if text is None else Message("assistant", text)


def _answer_message(raw: dict, key: str, record: Record, issues: list[Issue], options: NormalizeOptions
                    ) -> Message | None:
    """An answer given as one message: its text, or its calls (OpenAI's tool_calls, a function_call turn)."""
    content_keys = ((options.tags.content_tag,) if options.tags and options.tags.content_tag else ()) \
        + ("content", "value")
    content_key = next((k for k in content_keys if k in raw), content_keys[0])
    role = _role(raw, options)
    tool = formats._tool_turn(raw, _role_key(raw, options), options.tags)
    if tool is not None and tool[0] != "result":
        return formats._tool_message(raw, tool[0], role, content_key, True, record, key, issues)
    if role != "assistant":
        issues.append(record.issue(key, f"must be the assistant's answer, got role {_role_key(raw, options)!r}"))
        return None
    text = formats._text(raw.get(content_key), record, f"{key}.{content_key}", issues)
    message = None if text is None else Message("assistant", text)
    return message if message is not None and formats._read_reasoning(raw, message, record, key, issues) else None


def _text_prompt(value: dict, key: str, record: Record, issues: list[Issue]) -> tuple[list[Message], list[str]] | None:
    """A string prompt (`prompt`, or alpaca's instruction + input) with system and history."""
    first = formats._text(value.get(key), record, key, issues, required=key == "prompt" or "input" not in value)
    extra = formats._text(value.get("input"), record, "input", issues, required=False) if key == "instruction" else None
    if issues:
        return None
    text = "\n".join(part for part in (first or "", extra or "") if part.strip())
    messages, fields = formats._system(value, record, issues)
    history = formats._history(value, record, issues)
    if history is None:
        return None
    field = key if (first or "").strip() or not (extra or "").strip() else "input"
    return messages + [m for m, _ in history] + [Message("user", text)], fields + [f for _, f in history] + [field]


def _prompt(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions
            ) -> tuple[list[Message], list[str]] | None:
    """The prompt conversation of a record whose answers are separate fields."""
    for key in ("messages", "conversations"):
        if key in value:
            return formats._chat_turns(value, record, issues, key, options)
    # Intel/orca_dpo_pairs and others name it 'question' (with 'system'); Swift 'query'.
    for key in ("prompt", "instruction", "question", "query"):
        if key in value:
            if _message_list(value[key], options):
                return formats._chat_turns(value, record, issues, key, options)
            return _text_prompt(value, key, record, issues)
    if "input" in value:
        return _text_prompt(value, "instruction", record, issues)
    issues.append(record.issue("prompt", _PROMPT_HINT))
    return None


def _split_conversation(value: dict, key: str, record: Record, issues: list[Issue], options: NormalizeOptions
                        ) -> tuple[list[Message], list[str], Message, str] | None:
    """(prompt, its fields, answer turn, the answer's field) of a whole conversation whose last turn is the
    answer; a top-level `system` field is its system message unless it has one."""
    parsed = formats._chat_turns(value, record, issues, key, options)
    if parsed is None:
        return None
    messages, fields = parsed
    if not messages or messages[-1].role != "assistant":
        issues.append(record.issue(fields[-1] if fields else key, "the conversation must end with the assistant's answer"))
        return None
    return messages[:-1], fields[:-1], messages[-1], fields[-1]


def _check_prompt(prompt: list[Message], fields: list[str], answer_field: str, record: Record,
                  issues: list[Issue], options: NormalizeOptions) -> bool:
    """The prompt ends with a user turn (or a tool's result); system first and allowed; turns alternate if
    the template needs it (calls and results aside)."""
    turns = [i for i, m in enumerate(prompt) if m.role != "system"]
    ends_with_result = bool(turns) and prompt[turns[-1]].role == "tool"
    if not turns or not ends_with_result and (prompt[turns[-1]].role != "user" or not prompt[turns[-1]].content.strip()):
        issues.append(record.issue(fields[-1] if fields else "prompt", "the prompt must end with a non-empty user turn"))
        return False
    for i, message in enumerate(prompt):
        if message.role == "system" and i:
            issues.append(record.issue(fields[i], f"a system message must come first (it is at position {i})"))
            return False
        before = max((j for j in turns if j < i), default=None)  # results of parallel calls follow each other
        if message.role == "tool" and (before is None or prompt[before].role == "user"):
            issues.append(record.issue(fields[i], "a tool result must follow the assistant turn that called the tool"))
            return False
    if prompt[0].role == "system" and not options.allow_system:
        issues.append(record.issue(fields[0], "this model's chat template does not accept a system message"))
        return False
    if options.require_alternation:
        messages = prompt + [Message("assistant", "")]
        turns = [i for i in turns if prompt[i].role in ("user", "assistant") and not prompt[i].tool_calls]
        return formats._alternates(messages, fields + [answer_field], turns + [len(prompt)], record, issues)
    return True


def _nonempty(answer: Message | None, field: str, record: Record, issues: list[Issue]) -> bool:
    if answer is not None and not answer.content.strip() and not answer.tool_calls:
        issues.append(record.issue(field, "empty answer"))
        return False
    return answer is not None


def _answers_fit(prompt: list[Message], fields: list[str], answers: dict[str, Message], record: Record,
                 issues: list[Issue], options: NormalizeOptions, tools: list[dict] | None,
                 answer_fields: dict[str, str] | None = None) -> bool:
    """Each answer after the prompt, checked as a chat record's last answer: the template writes the tool
    parts used and every call names a defined function; reasoning trainable; calls and results linked, and
    reasoning folded into the text where the template has no field for it. `answer_fields`: the record
    field of an answer not named by its key."""
    for name, answer in answers.items():
        messages, where = prompt + [answer], fields + [(answer_fields or {}).get(name, name)]
        if (tools or any(m.role == "tool" or m.tool_calls for m in messages)) and \
                not formats._tools_fit(messages, where, tools, record, issues, options):
            return False
        if options.reasoning_closed and not formats._reasoning_trainable(messages, where, record, issues):
            return False
    for answer in answers.values():
        formats._link_tool_turns(prompt + [answer])
    if not options.writes_reasoning:
        formats._fold_reasoning(prompt + list(answers.values()))
    return True


def _answer_fields(answers: dict[str, Message]) -> dict:
    """Sample fields of the answers: their text, and the turns of those that are more than text."""
    turns = {name: m for name, m in answers.items() if m.tool_calls or m.reasoning is not None}
    return {**{name: m.content for name, m in answers.items()}, "turns": turns or None}


# ----------------------------------------------------------------------------- pairs

def _shared_prompt(value: dict, conversations: list[str], record: Record, issues: list[Issue],
                   options: NormalizeOptions) -> tuple[list[Message], list[str], Message | None, Message | None] | None:
    """Chosen and/or rejected given as whole conversations: the prompt is every turn but the last,
    and must be the same in both."""
    parts = {}
    for key in conversations:
        parts[key] = _split_conversation(value, key, record, issues, options)
        if parts[key] is None:
            return None
    prompt, fields = parts[conversations[0]][:2]
    answers = {key: parts[key][2] if key in parts else _answer(value, key, record, issues, options)
               for key in ("chosen", "rejected")}
    if len(parts) == 2:
        other, other_fields = parts["rejected"][:2]
        for i in range(max(len(prompt), len(other))):
            if i >= len(prompt) or i >= len(other) or prompt[i] != other[i]:
                field = other_fields[i] if i < len(other_fields) else parts["rejected"][3]
                issues.append(record.issue(field, "prompt differs from chosen's (the two conversations must share "
                                                  "every turn but the last)"))
                return None
    return prompt, fields, answers["chosen"], answers["rejected"]


# Anthropic HH-RLHF: chosen and rejected are whole transcripts, "\n\nHuman: ...\n\nAssistant: ...".
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def hh_transcript(text: object) -> list[dict] | None:
    """An HH-RLHF transcript as [{role, content}] turns (None: not one). Its text starts with the
    first "Human:" marker; every turn's text is kept as written, trailing whitespace aside."""
    if not isinstance(text, str) or not text.lstrip("\n").startswith("Human:"):
        return None
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n"))
    if parts[0].strip() or len(parts) < 5:
        return None
    return [{"role": _HH_ROLES[role], "content": content.rstrip()} for role, content in zip(parts[1::2], parts[2::2])]


def _hh_as_conversations(value: dict) -> dict:
    """A record of two HH-RLHF transcripts (and nothing saying where the prompt is) with both as
    conversations, read then like TRL's implicit-prompt pairs; any other record unchanged."""
    if any(key in value for key in ("prompt", "instruction", "input", "messages", "conversations")):
        return value
    turns = {key: hh_transcript(value.get(key)) for key in ("chosen", "rejected")}
    return value | turns if all(turns.values()) else value


def ranked_pair(value: dict, record: Record, issues: list[Issue]) -> tuple[dict, dict[str, str]] | None:
    """PKU-Alignment/PKU-SafeRLHF's record (prompt, response_0, response_1, better_response_id and
    safer_response_id) as chosen/rejected: the better response is chosen (map better_response_id to
    safer_response_id with `columns` to prefer the safer); and which response each answer is, to name it."""
    key = "better_response_id" if "better_response_id" in value else "safer_response_id"
    at = value[key]
    at = int(at) if isinstance(at, str) and at.strip() in ("0", "1") else at
    if isinstance(at, bool) or at not in (0, 1):
        issues.append(record.issue(key, f"must be 0 or 1 (which response is chosen), got {value[key]!r}"))
        return None
    names = {"chosen": f"response_{at}", "rejected": f"response_{1 - at}"}
    return {**value, "chosen": value[names["chosen"]], "rejected": value[names["rejected"]]}, names


def normalize_pair(value: dict, record: Record, issues: list[Issue],
                   options: NormalizeOptions = formats.DEFAULT_OPTIONS) -> Sample | None:
    if "chosen" not in value and "rejected" not in value and "response_0" in value:
        own: list[Issue] = []
        ranked = ranked_pair(value, record, own)
        sample = None if ranked is None else _normalize_pair(ranked[0], record, own, options)
        issues += file_field_names(own, ranked[1]) if ranked else own
        return sample
    return _normalize_pair(value, record, issues, options)


def _normalize_pair(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions) -> Sample | None:
    value = _hh_as_conversations(value)
    conversations = [key for key in ("chosen", "rejected") if is_conversation(value.get(key), options)]
    if conversations:
        parsed = _shared_prompt(value, conversations, record, issues, options)
    else:
        prompt = _prompt(value, record, issues, options)
        answers = [_answer(value, key, record, issues, options) for key in ("chosen", "rejected")]
        parsed = None if prompt is None else (*prompt, *answers)
    if parsed is None or issues:
        return None
    prompt, fields, chosen, rejected = parsed
    if not (_nonempty(chosen, "chosen", record, issues) and _nonempty(rejected, "rejected", record, issues)):
        return None
    if _answer_key(chosen) == _answer_key(rejected):
        issues.append(record.issue("rejected", "identical to chosen: a pair needs two different answers"))
        return None
    tools = formats._tools(value, record, issues)
    answers = {"chosen": chosen, "rejected": rejected}
    if issues or not _check_prompt(prompt, fields, "chosen", record, issues, options) or \
            not _answers_fit(prompt, fields, answers, record, issues, options, tools):
        return None
    return Sample("preference", messages=prompt, where=record.where, format="preference", fields=fields, tools=tools,
                  **_answer_fields(answers))


def _answer_key(answer: Message) -> tuple:
    """What makes two answers the same: their text (outer whitespace aside), calls (ids aside) and reasoning."""
    return answer.content.strip(), [call.key()[:2] for call in answer.tool_calls], answer.reasoning


# ----------------------------------------------------------------------------- prompt-completion (SFT)

def normalize_prompt_completion(value: dict, prompt_key: str, answer_key: str, record: Record, issues: list[Issue],
                                options: NormalizeOptions = formats.DEFAULT_OPTIONS) -> Sample | None:
    """TRL's conversational prompt-completion record, trained as SFT: the prompt a conversation (its
    `system` field first unless it has one), the completion the assistant's answer (one message, a list
    holding one, or text), the record's `tools` offered."""
    parsed = formats._chat_turns(value, record, issues, prompt_key, options)
    answer = _answer(value, answer_key, record, issues, options) if parsed is not None else None
    tools = formats._tools(value, record, issues)
    if parsed is None or answer is None or issues:
        return None
    prompt, fields = parsed
    if not _check_prompt(prompt, fields, answer_key, record, issues, options):
        return None
    return formats._finish_chat(prompt + [answer], fields + [answer_key], record, "prompt-completion", issues,
                                answer_key, options, tools)


# ----------------------------------------------------------------------------- unpaired (KTO)

def _unpaired_parts(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions
                    ) -> tuple[list[Message], list[str], Message | None, str] | None:
    """(prompt, its fields, completion, the completion's field) of each unpaired shape."""
    if "completion" in value and is_conversation(value["completion"], options):
        return _split_conversation(value, "completion", record, issues, options)
    if "completion" not in value and ("messages" in value or "conversations" in value):
        return _split_conversation(value, "messages" if "messages" in value else "conversations", record, issues,
                                   options)
    key = "completion" if "completion" in value else "output"
    prompt = _prompt(value, record, issues, options)
    completion = _answer(value, key, record, issues, options)
    return None if prompt is None else (*prompt, completion, key)


def normalize_unpaired(value: dict, record: Record, issues: list[Issue],
                       options: NormalizeOptions = formats.DEFAULT_OPTIONS) -> Sample | None:
    label = boolean_label(value.get("label"))
    if label is None:
        issues.append(record.issue("label", "missing" if value.get("label") is None
                                   else f"must be true or false, got {value['label']!r}"))
        return None
    parsed = _unpaired_parts(value, record, issues, options)
    if parsed is None or issues:
        return None
    prompt, fields, completion, field = parsed
    if not _nonempty(completion, field, record, issues):
        return None
    tools = formats._tools(value, record, issues)
    answers = {"completion": completion}
    if issues or not _check_prompt(prompt, fields, field, record, issues, options) or \
            not _answers_fit(prompt, fields, answers, record, issues, options, tools, {"completion": field}):
        return None
    return Sample("unpaired", messages=prompt, label=label, where=record.where, format="unpaired", fields=fields,
                  tools=tools, **_answer_fields(answers))
