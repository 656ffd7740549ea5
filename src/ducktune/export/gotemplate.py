"""An Ollama TEMPLATE (Go text/template) that renders exactly what the training chat template renders.

The Jinja chat template is not translated statement by statement, and no list of family names
is consulted. The template is *measured*: probe conversations with marker texts are rendered,
and the text around the markers gives the pieces of a turn layout:

- a prefix printed once (the BOS text, GLM's `[gMASK]<sop>`, ChatGLM3's `[gMASK]sop`);
- what opens and closes user and assistant turns (Zephyr's `</s>\\n`, Phi-3's `<|end|>\\n`,
  Llama 2's ` </s><s>[INST] `), and the generation prompt (Qwen3/DeepSeek-R1 `<think>` included);
- where the system prompt goes: a block of its own (ChatML, Llama 3, Phi, GLM, DeepSeek), folded
  into the first user turn (Gemma 3, Llama 2's `<<SYS>>`), or into the last user turn (Mistral
  v0.3/Nemo) -- found by rendering a multi-turn conversation with a system message;
- a default system prompt the template injects when there is none (Qwen2/2.5, SmolLM2, Llama 3.1).

Templates that raise on a system message (Gemma 2, Mistral v0.1) have no system role: ducktune's
ChatFormat refuses a run with a system prompt for them (data with system messages too), so no
trained text exists; the TEMPLATE puts a system message Ollama receives in front of the first
user turn, separated by a blank line, as Ollama's own Gemma and Mistral templates do. This is
outside what the model was trained on and cannot be checked against the Jinja template.

The layout is then checked against the Jinja rendering of sample conversations (with and
without a system prompt, multi-turn); a template whose behaviour the layout does not reproduce
byte for byte is refused with a one-line reason rather than written wrong. The Go template is
emitted from the layout mechanically, and verification renders it with Go's real text/template
(`ducktune.export.gorender`).

Known limits, shared with Ollama's own templates: Jinja filters such as `| trim` on the content
and the removal of `<think>` reasoning from earlier answers (Qwen3, DeepSeek-R1) have no Go
equivalent; contents without surrounding whitespace or reasoning render identically. A template
that prints today's date (`strftime_now`: Llama 3.2, SmolLM3's system block) is measured on the day
of the export: Go's templates cannot format a date, so the TEMPLATE keeps that day's text, and the
export names it as a caveat (frozen_date).
"""

from __future__ import annotations

import copy

import unicodedata
from dataclasses import asdict, dataclass

from ducktune.errors import ModelError, UserError

_SYS, _U1, _A1, _U2 = "DUCKSYSPROBE", "DUCKUSERONE", "DUCKANSWERONE", "DUCKUSERTWO"
# Where the system prompt goes, as measured.
BLOCK, FIRST_USER, LAST_USER, NO_SYSTEM_ROLE = "block", "first-user", "last-user", "no-system-role"
STYLE_WORDS = {
    BLOCK: "system prompt in a block of its own",
    FIRST_USER: "system prompt inside the first user turn",
    LAST_USER: "system prompt inside the last user turn",
    NO_SYSTEM_ROLE: "no system role (a system message Ollama receives goes before the first user turn)",
}
# Ollama's own templates for system-less families put the system text before the first user message.
NO_ROLE_SEPARATOR = "\n\n"


def sample_conversations() -> list[list[dict]]:
    """Conversations the TEMPLATE must render exactly like the chat template (all end with a user turn)."""
    return [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "You are a terse assistant."},
         {"role": "user", "content": "Name three colours."}],
        [{"role": "user", "content": "Hi! Who are you?"},
         {"role": "assistant", "content": "I am a helpful assistant."},
         {"role": "user", "content": "What can you do?\nAnswer in one line."}],
        [{"role": "system", "content": "Answer in French."},
         {"role": "user", "content": "Hello"},
         {"role": "assistant", "content": "Bonjour !"},
         {"role": "user", "content": "How are you? 你好"},
         {"role": "assistant", "content": "Très bien, merci."},
         {"role": "user", "content": "Count to 3: 1, 2, 3 \"quoted\" {{ braces }}"}],
    ]


def renderable_samples(chat_format) -> list[list[dict]]:
    """The sample conversations the chat template accepts: without system messages when it has
    no system role (those raise in Jinja, so there is nothing to compare with)."""
    if template_rejects_system(chat_format.tokenizer):
        return [c for c in sample_conversations() if all(m["role"] != "system" for m in c)]
    return sample_conversations()


class TemplateError(ModelError):
    """The chat template cannot be translated to an Ollama TEMPLATE that renders identically."""


@dataclass
class TurnLayout:
    prefix: str                 # printed once, first (the BOS text, [gMASK]<sop>, ...)
    system_style: str           # BLOCK, FIRST_USER, LAST_USER or NO_SYSTEM_ROLE
    system_open: str            # BLOCK: around the system text
    system_close: str
    default_system: str | None  # BLOCK: system text injected when a conversation has none
    no_system_text: str         # BLOCK: printed instead of a system block when there is none (a default
                                # system block, or DeepSeek-V2.5's BOS, which follows 8 spaces when there is one)
    system_prefix: str          # other styles: user_open + system_prefix + system + system_separator + content
    system_separator: str
    user_open: str
    user_close: str
    assistant_open: str
    assistant_close: str        # after an answer that is not the last message
    generation_prompt: str
    bos: str = ""               # the BOS text the prefix starts with, left out when llama.cpp adds BOS itself

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return STYLE_WORDS[self.system_style] + (", default system prompt" if self.default_system is not None else "")

    # ------------------------------------------------------------------ Python rendering

    def render(self, messages: list[dict], include_bos: bool = True) -> str:
        """What the emitted Go template renders for `messages` as Ollama passes them (system
        first, if any; roles alternating). Mirrors go_template() step by step."""
        out = [self.prefix if include_bos else self.prefix[len(self.bos):]]
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")  # Ollama's .System
        if self.no_system_text and (not messages or messages[0]["role"] != "system"):
            out.append(self.no_system_text)
        first_user = True
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            if m["role"] == "system" and self.system_style == BLOCK:
                out.append(self.system_open + m["content"] + self.system_close)
            elif m["role"] == "user":
                inner = m["content"]
                if system and (first_user if self.system_style in (FIRST_USER, NO_SYSTEM_ROLE)
                               else last and self.system_style == LAST_USER):
                    inner = self.system_prefix + system + self.system_separator + inner
                first_user = False
                out.append(self.user_open + inner + self.user_close)
            elif m["role"] == "assistant":
                out.append(self.assistant_open + m["content"] + ("" if last else self.assistant_close))
            if last and m["role"] != "assistant":
                out.append(self.generation_prompt)
        return "".join(out)

    # ------------------------------------------------------------------ Go template

    def go_template(self, include_bos: bool = True) -> str:
        """The Ollama TEMPLATE. Every literal is a quoted Go string, so whitespace trimming
        markers ({{- -}}) used for readability never eat template text."""
        lines = []
        prefix = self.prefix if include_bos else self.prefix[len(self.bos):]
        if prefix:
            lines.append("{{- " + go_string(prefix) + " }}")
        if self.no_system_text:
            lines.append("{{- if or (not .Messages) (ne (index .Messages 0).Role \"system\") }}"
                         + _lit(self.no_system_text) + "{{ end }}")
        content = "{{ .Content }}"
        system_text = _lit(self.system_prefix) + "{{ $.System }}" + _lit(self.system_separator)
        if self.system_style in (FIRST_USER, NO_SYSTEM_ROLE):
            lines.append("{{- $first := true }}")
            user = ("{{ if and $first $.System }}" + system_text + "{{ end }}{{ $first = false }}" + content)
        elif self.system_style == LAST_USER:
            user = "{{ if and $last $.System }}" + system_text + "{{ end }}" + content
        else:
            user = content
        close = "{{ if not $last }}" + _lit(self.assistant_close) + "{{ end }}" if self.assistant_close else ""
        branches = [("user", _lit(self.user_open) + user + _lit(self.user_close)),
                    ("assistant", _lit(self.assistant_open) + content + close)]
        if self.system_style == BLOCK:
            branches.insert(0, ("system", _lit(self.system_open) + content + _lit(self.system_close)))
        lines += ["{{- range $i, $m := .Messages }}", "{{- $last := eq (len (slice $.Messages $i)) 1 }}"]
        for i, (role, body) in enumerate(branches):
            lines.append(("{{- if" if i == 0 else "{{- else if") + f' eq .Role "{role}" ' + "}}" + body)
        lines.append("{{- end }}")
        if self.generation_prompt:
            lines.append("{{- if and $last (ne .Role \"assistant\") }}" + _lit(self.generation_prompt) + "{{ end }}")
        lines.append("{{- end }}")
        return "\n".join(lines)


def go_string(text: str) -> str:
    """A Go interpreted string literal that survives Ollama's Modelfile parser, which drops
    unprintable characters: those are written as \\u / \\U escapes."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == " " or unicodedata.category(ch)[0] in "LMNPS":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _lit(text: str) -> str:
    return "{{ " + go_string(text) + " }}" if text else ""


# ---------------------------------------------------------------------- measuring


class _Probe:
    """Renders probe conversations with the tokenizer's chat template."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.bos = tokenizer.bos_token or ""
        self.specials = _special_tokens(tokenizer)

    def render(self, messages: list[dict], generation_prompt: bool = True) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as exc:  # jinja errors, e.g. raise_exception on a role order
            raise TemplateError(f"the chat template cannot render a plain user/assistant conversation "
                                f"({_first_line(exc)}); write the Modelfile TEMPLATE by hand") from None

    def render_or_none(self, messages: list[dict]) -> str | None:
        """None when the template raises on this conversation (a system message it does not support)."""
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            return None


def _special_tokens(tokenizer) -> list[str]:
    tokens = set(tokenizer.all_special_tokens)
    for token in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if token.special:
            tokens.add(token.content)
    return sorted((t for t in tokens if t), key=len, reverse=True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def template_rejects_system(tokenizer) -> bool:
    """True when the chat template raises on a system message it would otherwise accept without one."""
    user = [{"role": "user", "content": _U1}]
    probe = _Probe(tokenizer)
    return probe.render_or_none(user) is not None and probe.render_or_none(
        [{"role": "system", "content": _SYS}] + user) is None


def _between(text: str, first: str, second: str) -> str:
    start = text.find(first)
    end = text.find(second, start + len(first)) if start >= 0 else -1
    if end < 0:
        raise TemplateError("the chat template drops or reorders message text; write the Modelfile TEMPLATE by hand")
    return text[start + len(first): end]


def _generation_prompt(probe: _Probe, messages: list[dict]) -> str:
    """The text add_generation_prompt adds. Phi-3 ends a prompt without it with EOS instead, so
    this is what follows the longest common prefix, cut back to a whole special token."""
    with_prompt = probe.render(messages, True)
    without = probe.render(messages, False)
    k = 0
    while k < min(len(with_prompt), len(without)) and with_prompt[k] == without[k]:
        k += 1
    for token in probe.specials:  # do not split "<|assistant|>" vs "<|endoftext|>" at "<|"
        for j in range(1, len(token)):
            if k - j >= 0 and with_prompt.startswith(token, k - j):
                k -= j
                break
    return with_prompt[k:]


def derive_layout(chat_format) -> TurnLayout:
    """Measure the chat template of `chat_format` (a ducktune ChatFormat) and return its turn layout.

    Raises TemplateError with a one-line reason naming the construct that does not fit.
    """
    tokenizer = chat_format.tokenizer
    if chat_format.dropped_prompt_text:  # measure the prompt as training opened answers (DeepSeek-R1)
        tokenizer = copy.copy(tokenizer)
        tokenizer.chat_template = chat_format.prompting_template()
    probe = _Probe(tokenizer)
    user = [{"role": "user", "content": _U1}]
    user_only = probe.render(user)
    if _U1 not in user_only:
        raise TemplateError("the chat template changes the message text (it does not print the user's words as "
                            "they are, e.g. a case filter); write the Modelfile TEMPLATE by hand")
    turns = _measure_turns(probe, chat_format, user_only)
    layout = _measure_system(probe, user_only, turns)
    layout.bos = probe.bos if probe.bos and layout.prefix.startswith(probe.bos) else ""
    # Training inserts EOS after answers whose turn ends with no special token (ChatFormat.assistant_spans),
    # so earlier answers carry it in the prompt too (ChatFormat.render), unless the template writes it there.
    if not chat_format.eos_closes_earlier:
        layout.assistant_close = (chat_format.inserted_eos or "") + layout.assistant_close
    check_layout(layout, chat_format)
    return layout


def _measure_turns(probe: _Probe, chat_format, user_only: str) -> dict:
    generation_prompt = _generation_prompt(probe, [{"role": "user", "content": _U1}])
    tail = user_only[user_only.index(_U1) + len(_U1):]
    if not tail.endswith(generation_prompt):
        raise TemplateError("the chat template's generation prompt does not come last; write the Modelfile TEMPLATE "
                            "by hand")
    user_close = tail[: len(tail) - len(generation_prompt)]
    multi = probe.render([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                          {"role": "user", "content": _U2}])
    between_user_answer = _between(multi, _U1, _A1)
    if not between_user_answer.startswith(user_close):
        raise TemplateError("the chat template closes a user turn differently before an answer than before the "
                            "generation prompt; write the Modelfile TEMPLATE by hand")
    after_answer = _between(multi, _A1, _U2)
    head = user_only[: user_only.index(_U1)]
    assistant_close, user_open = _split_after_answer(after_answer, chat_format, probe.bos)
    if not head.endswith(user_open):
        assistant_close, user_open = _split_by_first_turn(after_answer, head, probe.specials)
    if not head.endswith(user_open):
        raise TemplateError(f"the chat template opens the first user turn differently from later ones "
                            f"({head[-30:]!r} vs {user_open!r}); write the Modelfile TEMPLATE by hand")
    return {"generation_prompt": generation_prompt, "user_close": user_close, "user_open": user_open,
            "assistant_open": between_user_answer[len(user_close):], "assistant_close": assistant_close,
            "before_user": head[: len(head) - len(user_open)], "multi": multi}


def _split_after_answer(text: str, chat_format, bos: str) -> tuple[str, str]:
    """Split what lies between an answer and the next user's words into the answer's close and the
    user turn's open. The close is the template's end-of-turn marker and the whitespace after it
    (none for GLM, whose next role tag ends the answer)."""
    suffix = chat_format.turn_suffix if chat_format.eot_token else ""
    end = 0
    if suffix and text.startswith(suffix):
        end = len(suffix)
        while end < len(text) and text[end] in " \n":
            end += 1
    close, user_open = text[:end], text[end:]
    # Llama 2 and Firefly open every user turn with BOS: it belongs to the previous answer's close,
    # and for the first turn to the prefix, which llama.cpp then adds itself (add_bos_token).
    if bos and user_open.startswith(bos):
        close, user_open = close + bos, user_open[len(bos):]
    return close, user_open


def _split_by_first_turn(after_answer: str, head: str, specials: list[str]) -> tuple[str, str]:
    """The fallback when the end-of-turn marker is not a special token ducktune knows: the user
    turn's open is what the text after an answer shares with the first user turn's head (their
    common end, starting on a whole special token)."""
    n = 0
    while n < min(len(after_answer), len(head)) and after_answer[-1 - n] == head[-1 - n]:
        n += 1
    start = len(after_answer) - n
    for token in specials:  # do not start inside a token such as "<|assistant_end|>"
        for j in range(1, len(token)):
            if start - j >= 0 and after_answer.startswith(token, start - j):
                start += len(token) - j
                break
    return after_answer[:start], after_answer[start:]


def _measure_system(probe: _Probe, user_only: str, turns: dict) -> TurnLayout:
    pieces = {k: turns[k] for k in ("user_open", "user_close", "assistant_open", "assistant_close",
                                    "generation_prompt")}
    system = [{"role": "system", "content": _SYS}]
    with_system = probe.render_or_none(system + [{"role": "user", "content": _U1}])
    before_user = turns["before_user"]
    if with_system is None:
        return TurnLayout(before_user, NO_SYSTEM_ROLE, "", "", None, "", "", NO_ROLE_SEPARATOR, **pieces)
    multi_system = probe.render_or_none(system + [{"role": "user", "content": _U1},
                                                  {"role": "assistant", "content": _A1},
                                                  {"role": "user", "content": _U2}])
    if _SYS not in with_system or multi_system is None or _SYS not in multi_system:
        raise TemplateError("the chat template drops the system message (or refuses it in a multi-turn "
                            "conversation); write the Modelfile TEMPLATE by hand")
    head_user = user_only[: user_only.index(_U1)]
    head_system = with_system[: with_system.index(_SYS)]
    if multi_system.index(_SYS) > multi_system.index(_A1):
        # Mistral v0.3/Nemo: the system prompt opens the last user turn.
        opened = _between(multi_system, _A1, _SYS)
        lead = turns["assistant_close"] + turns["user_open"]
        if not opened.startswith(lead):
            raise TemplateError("the chat template puts the system prompt in a later turn in a way ducktune "
                                "cannot place; write the Modelfile TEMPLATE by hand")
        return TurnLayout(before_user, LAST_USER, "", "", None, "", opened[len(lead):],
                          _between(multi_system, _SYS, _U2), **pieces)
    if turns["user_open"] and head_system.startswith(head_user):
        # Gemma 3, Llama 2: the system prompt is folded into the first user turn.
        return TurnLayout(before_user, FIRST_USER, "", "", None, "", head_system[len(head_user):],
                          _between(with_system, _SYS, _U1), **pieces)
    return _block_layout(probe, with_system, head_system, before_user, turns, pieces)


def _block_layout(probe: _Probe, with_system: str, head_system: str, before_user: str, turns: dict,
                  pieces: dict) -> TurnLayout:
    between = _between(with_system, _SYS, _U1)
    if not between.endswith(turns["user_open"]):
        raise TemplateError("the chat template opens a user turn after a system message differently from other "
                            "user turns; write the Modelfile TEMPLATE by hand")
    system_close = between[: len(between) - len(turns["user_open"])]
    prefix = _shared_prefix(probe, head_system, before_user, turns["multi"])
    system_open = head_system[len(prefix):]
    injected = before_user[len(prefix):]
    default_system = None
    if injected and (injected.startswith(system_open) and injected.endswith(system_close)
                     and len(injected) >= len(system_open) + len(system_close)):
        default_system = injected[len(system_open): len(injected) - len(system_close)]
    return TurnLayout(prefix, BLOCK, system_open, system_close, default_system, injected, "", "", **pieces)


def _shared_prefix(probe: _Probe, head_system: str, before_user: str, multi: str) -> str:
    """What both kinds of conversation start with and the template prints only once: BOS, then
    special tokens that never recur (GLM's [gMASK]<sop>) -- never a role tag such as <|im_start|>."""
    common = 0
    while common < min(len(head_system), len(before_user)) and head_system[common] == before_user[common]:
        common += 1
    prefix = ""
    while len(prefix) < common:
        token = next((s for s in probe.specials if head_system.startswith(s, len(prefix))), None)
        if token is None or len(prefix) + len(token) > common:
            break
        if not (prefix == "" and token == probe.bos) and multi.count(token) != 1:
            break
        prefix += token
    return prefix


def check_layout(layout: TurnLayout, chat_format, system_prompt: str | None = None) -> None:
    """Refuse a layout that does not reproduce the chat template on the sample conversations."""
    for messages in renderable_samples(chat_format):
        try:
            expected = chat_format.render(messages, add_generation_prompt=True)
        except UserError as exc:  # the template refuses a plain sample conversation
            raise TemplateError(f"the chat template refuses a sample conversation ({exc}); write the Modelfile "
                                "TEMPLATE by hand") from None
        got = layout.render(ollama_messages(messages, system_prompt or chat_format.system_prompt))
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            raise TemplateError(
                f"the chat template does something the turn layout ({layout.describe()}) cannot express: on a "
                f"sample conversation it renders {expected[at:at + 40]!r} where the translation gives "
                f"{got[at:at + 40]!r} (character {at}); write the Modelfile TEMPLATE by hand")


def ollama_messages(messages: list[dict], system: str | None) -> list[dict]:
    """Messages as Ollama hands them to the template: the Modelfile SYSTEM is prepended when
    the conversation does not start with a system message."""
    if system and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}] + list(messages)
    return list(messages)


_DATE_MARK = "DUCKDATEPROBE"
# A macro defined in the template hides the strftime_now that transformers provides as a global.
_FIXED_DATE = "{%- macro strftime_now(format) %}" + _DATE_MARK + "{%- endmacro %}"


def frozen_date(tokenizer) -> str | None:
    """The date text the chat template prints today through strftime_now, which a TEMPLATE measured
    today keeps for good; None when the rendering does not depend on the day."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if "strftime_now" not in template:
        return None
    messages = [{"role": "user", "content": _U1}]
    try:
        today = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        fixed = tokenizer.apply_chat_template(messages, chat_template=_FIXED_DATE + template, tokenize=False,
                                              add_generation_prompt=True)
    except Exception:  # a template that refuses the probe: derive_layout reports it
        return None
    at = fixed.find(_DATE_MARK)
    if at < 0 or fixed == today:
        return None
    return today[at: at + len(today) - len(fixed) + len(_DATE_MARK)]


def template_support(tokenizer) -> str | None:
    """None when an exact Ollama TEMPLATE can be derived from the tokenizer's chat template, else
    the one-line reason (for `ducktune models`)."""
    from ducktune.data.template import ChatFormat

    try:
        derive_layout(ChatFormat(tokenizer))
    except UserError as exc:  # no chat template, or a template without an exact TEMPLATE
        return str(exc)
    return None
