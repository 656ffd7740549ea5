"""Streaming an answer that may call tools: its text goes out as it is generated, up to where its calls
begin; the calls are read once the answer is whole, from its raw text in the template's call syntax, as
a non-streamed answer's are (`ducktune serve` sends them as OpenAI's indexed tool_calls deltas,
`ducktune chat --tools` shows them).

Where the calls begin is seen in the streamed (visible) text where the syntax's opening is text the
stream shows: Qwen's `<tool_call>`, Qwen3.5's `<tool_call>\\n<function=`, Llama 3.1's answer that is a
JSON object. An opening that begins with a special token the text leaves out (Mistral Small 3's
[TOOL_CALLS], Granite 4's <tool_call>, Gemma 4's <|tool_call>) is shown in the pieces of an answer to a
request with tools (engine.AnswerText's shown_tokens), so the gate sees it there too. gpt-oss opens calls
in a channel header, never in the answer's text: its answers are sent when whole (`CallGate.for_format`
returns None).
"""

from __future__ import annotations

import functools

from ducktune.chat.engine import held_back


class CallGate:
    """The text of a streamed answer that is safe to send before its calls: nothing from the opening on,
    nor what may begin it, nor whitespace that may come before it (held until text follows)."""

    def __init__(self, opening: str | None, marker: str = ""):
        # "": the answer is a call when it is a JSON object (Llama 3.1); None: the template writes no calls
        # ducktune reads, so all of the answer is its text
        self.opening = opening
        self.marker = marker  # the opening's special token as the pieces show it (not the answer's text)
        self.held = ""
        self.calling = False  # the opening was seen: the rest is the calls
        self.text_only = False  # Llama 3.1: the answer began with text, so it is no call

    @classmethod
    def for_format(cls, chat_format) -> "CallGate | None":
        """A gate for answers in `chat_format`'s call syntax; None when its opening is not visible text."""
        from ducktune.chat.tool_calls import call_syntax

        syntax = call_syntax(chat_format)
        if syntax is None:
            return cls(None)
        opening = syntax.opening.strip()
        hidden = hidden_opening(chat_format)
        if hidden is not None:
            return cls(opening, hidden[1])
        if syntax.style == "named" and chat_format.answer_frame.lead:  # gpt-oss: calls open in a channel
            return None                                                 # header, outside the answer's text
        tokenizer = chat_format.tokenizer
        shown = tokenizer.decode(tokenizer(opening, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
        return cls(opening) if shown == opening else None

    def feed(self, piece: str) -> str:
        """The text of `piece` (and of what was held before it) that is safe to send now."""
        self.held += piece
        if self.calling:
            return ""
        if self.opening is None:
            return self.rest()
        if not self.opening and not self.text_only:
            start = self.held.lstrip()
            if not start:
                return ""
            if start[0] in "{[":
                self.calling = True
                return ""
            self.text_only = True
        at = self.held.find(self.opening) if self.opening else -1
        if at >= 0:
            self.calling = True
            safe, self.held = self.held[:at].rstrip(), self.held[at:]
            return safe
        keep = held_back(self.held, [self.opening]) if self.opening else 0
        safe = self.held[:len(self.held) - keep].rstrip()
        self.held = self.held[len(safe):]
        return safe

    def rest(self) -> str:
        """What was held, sent when the answer turns out to make no call (without the shown special token)."""
        rest, self.held = self.held, ""
        return rest.replace(self.marker, "") if self.marker else rest


@functools.lru_cache(maxsize=16)
def hidden_opening(chat_format) -> tuple[int, str] | None:
    """(id, text) of the special token a call's opening begins with where decoded text leaves it out
    (Mistral Small 3's [TOOL_CALLS]); None where the opening is shown text, or there are no calls."""
    from ducktune.chat.tool_calls import call_syntax

    syntax = call_syntax(chat_format)
    opening = syntax.opening.strip() if syntax is not None else ""
    if not opening:
        return None
    tokenizer = chat_format.tokenizer
    ids = tokenizer(opening, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids[:1], skip_special_tokens=False) if ids else ""
    if not text or not opening.startswith(text) or tokenizer.decode(ids[:1], skip_special_tokens=True):
        return None
    return ids[0], text
