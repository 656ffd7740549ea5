"""Streaming an answer that may call tools: its text goes out as it is generated, up to where its calls
begin; the calls are read once the answer is whole, from its raw text in the template's call syntax, as
a non-streamed answer's are (`ducktune serve` sends them as OpenAI's indexed tool_calls deltas,
`ducktune chat --tools` shows them).

Where the calls begin is seen in the streamed (visible) text only where the syntax's opening is text
the stream shows: Qwen's `<tool_call>`, Qwen3.5's `<tool_call>\\n<function=`, Llama 3.1's answer that
is a JSON object. An opening made of special tokens the stream leaves out (Mistral's [TOOL_CALLS],
gpt-oss's channels) cannot be seen there: such answers are sent when whole (`CallGate.for_format`
returns None).
"""

from __future__ import annotations

from ducktune.chat.engine import held_back


class CallGate:
    """The text of a streamed answer that is safe to send before its calls: nothing from the opening on,
    nor what may begin it, nor whitespace that may come before it (held until text follows)."""

    def __init__(self, opening: str | None):
        # "": the answer is a call when it is a JSON object (Llama 3.1); None: the template writes no calls
        # ducktune reads, so all of the answer is its text
        self.opening = opening
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
        if syntax.style == "named":  # gpt-oss's channels, Mistral's [TOOL_CALLS]: special tokens
            return None
        opening = syntax.opening.strip()
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
        """What was held, sent when the answer turns out to make no call."""
        rest, self.held = self.held, ""
        return rest
