"""What a chat template accepts, found by asking the template itself (no list of models).

Some templates (Llama 2, Mistral, Gemma...) raise on turns that do not alternate
user/assistant, or on a system message. Probing them with tiny conversations once lets
`ducktune data check` and training report such records precisely (file:line: field),
instead of failing inside the template.
"""

from __future__ import annotations

from ducktune.data.formats import NormalizeOptions

_USER = {"role": "user", "content": "Hello"}
_ASSISTANT = {"role": "assistant", "content": "Hi"}
_SYSTEM = {"role": "system", "content": "Be brief."}


def _renders(tokenizer, messages: list[dict]) -> bool:
    try:
        tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # jinja2 raise_exception(...) and template errors of any kind
        return False
    return True


def needs_alternation(tokenizer) -> bool:
    """True when the template refuses two user (or two assistant) turns in a row."""
    if not _renders(tokenizer, [_USER, _ASSISTANT]):
        return False
    return not (_renders(tokenizer, [_USER, _USER, _ASSISTANT])
                and _renders(tokenizer, [_USER, _ASSISTANT, _ASSISTANT]))


def accepts_system(tokenizer) -> bool:
    if not _renders(tokenizer, [_USER, _ASSISTANT]):
        return True
    return _renders(tokenizer, [_SYSTEM, _USER, _ASSISTANT])


# A call id of nine letters and digits: Mistral's templates refuse any other.
_TOOLS = [{"type": "function", "function": {"name": "duck_lookup", "description": "DUCKTOOLDEFINITION", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
_TOOL_TURNS = [
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function", "function": {
        "name": "duck_lookup", "arguments": {"query": "DUCKTOOLARGUMENT"}}}]},
    {"role": "tool", "content": "DUCKTOOLRESULT", "name": "duck_lookup", "tool_call_id": "call00001"},
]


def tool_conversation() -> tuple[list[dict], list[dict]]:
    """(messages, tools): a conversation using every part of tool calling -- definitions, a call, its
    result, the answer -- that ends with a user turn, as the data layer writes them (for export checks)."""
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]}}}]
    messages = [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "4 degrees, light rain", "name": "get_weather", "tool_call_id": "call00001"},
        {"role": "assistant", "content": "It is 4 degrees with light rain in Oslo."},
        {"role": "user", "content": "Thanks! And tomorrow?"},
    ]
    return messages, tools


def tool_parts(chat_format) -> frozenset[str]:
    """Which parts of tool calling the template writes: "definitions" (a record's tools), "calls" (an
    assistant turn's tool_calls, found where the assistant's turn opens, so the loss mask trains them) and
    "results" (tool turns). Most templates of models not trained for tools write none and raise on the tool
    role; Granite 3 and LFM2 write definitions and results but expect calls as the answer's text; Falcon 3
    writes calls into the user's turn."""
    parts = set()
    try:
        text, spans = chat_format.assistant_spans([_USER, *_TOOL_TURNS, _ASSISTANT], _TOOLS)
        if len(spans) == 2 and "DUCKTOOLARGUMENT" in text[slice(*spans[0])]:
            parts.add("calls")
    except Exception:  # DataError, ModelError or the template's own: calls as text, then
        try:
            text = chat_format.conversation_text([_USER, {"role": "assistant", "content": "Checking."}, _TOOL_TURNS[1],
                                                  _ASSISTANT], _TOOLS)
        except Exception:
            return frozenset()
    parts.update(part for part, mark in (("definitions", "DUCKTOOLDEFINITION"), ("results", "DUCKTOOLRESULT"))
                 if mark in text)
    return frozenset(parts)


def writes_reasoning(tokenizer) -> bool:
    """True when the template writes an answer's separate reasoning (`reasoning_content`: Qwen3, gpt-oss,
    Gemma 4); most write the answer's text alone."""
    answer = {**_ASSISTANT, "reasoning_content": "DUCKREASONING"}
    try:
        return "DUCKREASONING" in tokenizer.apply_chat_template([_USER, answer], tokenize=False)
    except Exception:
        return False


def template_options(chat_format, tags=None) -> NormalizeOptions:
    """Normalize options that match `chat_format`'s template."""
    tokenizer = chat_format.tokenizer
    return NormalizeOptions(tags=tags, require_alternation=needs_alternation(tokenizer),
                            allow_system=accepts_system(tokenizer), tool_parts=tool_parts(chat_format),
                            writes_reasoning=writes_reasoning(tokenizer),
                            reasoning_closed="</think>" in chat_format.generation_prompt)
