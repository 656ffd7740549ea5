"""What a chat template accepts, found by asking the template itself (no list of models).

Some templates (Llama 2, Mistral, Gemma...) raise on turns that do not alternate
user/assistant, or on a system message. Probing them with tiny conversations once lets
`ducktune data check` and training report such records precisely (file:line: field),
instead of failing inside the template.
"""

from __future__ import annotations

from dataclasses import dataclass

from ducktune.data.formats import NormalizeOptions
from ducktune.data.schema import THINK_CLOSE, THINK_OPEN

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


@dataclass(frozen=True)
class AnswerFrame:
    """What a template writes around an answer's own words, which the model generates before them: gpt-oss's
    `<|channel|>final<|message|>` (`lead`), and the reasoning's opening and closing (`<think>` ... `</think>`;
    gpt-oss's analysis message, closed by `<|end|><|start|>assistant<|channel|>final<|message|>`). Readers
    (chat, serve, eval) show the answer; the reasoning is returned apart."""

    lead: str = ""
    reasoning_open: str = THINK_OPEN  # "": the prompt opens the reasoning (Qwen3.5's generation prompt ends <think>)
    reasoning_close: str = THINK_CLOSE

    def split(self, raw: str) -> tuple[str | None, int | None]:
        """(the reasoning or None, where the answer's own text starts in `raw`: generated text with its special
        tokens); the start is None while `raw` may still become a frame (a partial opening, open reasoning)."""
        # The frame opens the answer, as the model generates it: no text (nor whitespace) before it.
        opening, closing = self.reasoning_open.strip(), self.reasoning_close.strip()
        if (not opening or raw.startswith(opening)) and closing:
            begin = len(opening)
            end = raw.find(closing, begin)
            if end < 0:  # still reasoning: what may be the closing's beginning is held back
                thought = raw[begin:]
                partial = next((k for k in range(min(len(closing) - 1, len(thought)), 0, -1)
                                if thought.endswith(closing[:k])), 0)
                return thought[:len(thought) - partial].strip(), None
            after = end + len(closing)
            answer = after + len(raw[after:]) - len(raw[after:].lstrip())
            # The whitespace after the closing is the frame's, but more of it may follow: wait for a word.
            return raw[begin: end].strip(), answer if answer < len(raw) else None
        lead = self.lead if self.lead.strip() else ""  # Llama 2's " " before an answer stays the answer's
        if lead and raw.startswith(lead):
            return None, len(lead)
        if any(marker and marker.startswith(raw) for marker in (opening, lead)):
            return None, None  # nothing yet, or a partial opening: wait for the next token
        return None, 0

    def answer(self, raw: str) -> tuple[str | None, str]:
        """(reasoning or None, the answer's text with special tokens) of a finished generation: all of `raw`
        when it ended inside a partial opening, none of it when it ended inside the reasoning."""
        reasoning, start = self.split(raw)
        if start is None:
            return reasoning, "" if reasoning is not None else raw
        return reasoning, raw[start:]


def reasoning_closed(chat_format) -> bool:
    """Whether the template's prompts close the reasoning block before every answer (Qwen3 and SmolLM3 with
    model.enable_thinking false): the model generates no reasoning, and reasoning in data is never trained."""
    return THINK_CLOSE in chat_format.generation_prompt


def answer_frame(chat_format) -> AnswerFrame:
    """The template's AnswerFrame, measured: a probe answer with reasoning, trained as the template writes
    it, shows what opens the reasoning and what lies between it and the answer's text (the `<think>` form
    where the template has no reasoning field, or its prompts close the reasoning block)."""
    lead = chat_format.answer_lead
    if writes_reasoning(chat_format.tokenizer) and not reasoning_closed(chat_format):
        answer = {"role": "assistant", "content": "DUCKANSWERTEXT", "reasoning_content": "DUCKREASONING"}
        try:
            text, spans = chat_format.assistant_spans([_USER, answer])
            span = text[slice(*spans[-1])]
        except Exception:  # a template that refuses the probe: the text form
            return AnswerFrame(lead)
        reason, words = span.find("DUCKREASONING"), span.find("DUCKANSWERTEXT")
        closing = span[reason + len("DUCKREASONING"): words]
        if 0 <= reason < words and closing.strip():
            return AnswerFrame(lead, span[:reason], closing)
    return AnswerFrame(lead)


def template_options(chat_format, tags=None) -> NormalizeOptions:
    """Normalize options that match `chat_format`'s template."""
    tokenizer = chat_format.tokenizer
    return NormalizeOptions(tags=tags, require_alternation=needs_alternation(tokenizer),
                            allow_system=accepts_system(tokenizer), tool_parts=tool_parts(chat_format),
                            writes_reasoning=writes_reasoning(tokenizer),
                            reasoning_closed=reasoning_closed(chat_format),
                            other_templates=getattr(tokenizer, "ducktune_other_templates", ()))
