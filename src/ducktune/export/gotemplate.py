"""An Ollama TEMPLATE (Go text/template) that renders exactly what the training chat template renders.

The Jinja chat template is not translated statement by statement. It is *measured*: a few
probe conversations with marker texts are rendered, and the text around the markers gives
the pieces of a turn layout (what comes before and after each role's content, the
generation prompt, a default system prompt the template injects when there is none).
The layout is then checked against the Jinja rendering of sample conversations (with and
without a system prompt, multi-turn); a template whose behaviour the layout does not
reproduce byte for byte is refused rather than written wrong. The Go template is emitted
from the layout mechanically, and verification renders it with Go's real text/template
(`ducktune.export.gorender`).

Families recognised: ChatML (Qwen, SmolLM), Llama 3, Mistral ([INST], system prompt in
the last user turn), DeepSeek-R1 distills. Known limits, shared with Ollama's own
templates: Jinja filters such as `| trim` on the content and DeepSeek's removal of
`<think>` reasoning from earlier answers have no Go equivalent; contents without
surrounding whitespace or reasoning render identically.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

from ducktune.errors import ModelError

_SYS, _U1, _A1, _U2 = "DUCKSYSPROBE", "DUCKUSERONE", "DUCKANSWERONE", "DUCKUSERTWO"

# Marker text -> family name. A template with none of these is refused.
FAMILIES = [
    ("<|im_start|>", "chatml"),
    ("<|start_header_id|>", "llama3"),
    ("[INST]", "mistral"),
    ("<｜User｜>", "deepseek-r1"),
]


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


class TemplateError(ModelError):
    """The chat template cannot be translated to an Ollama TEMPLATE that renders identically."""


@dataclass
class TurnLayout:
    family: str
    prefix: str                 # before everything (the BOS text when the template prints bos_token)
    system_open: str
    system_close: str
    default_system: str | None  # system text injected when a conversation has no system message
    user_open: str
    user_close: str
    assistant_open: str
    assistant_close: str
    generation_prompt: str
    system_in_last_user: bool = False  # Mistral: the system prompt is put inside the last user turn
    system_separator: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ Python rendering

    def render(self, messages: list[dict], include_prefix: bool = True) -> str:
        """What the emitted Go template renders for a conversation ending with a user turn.

        `messages` are as Ollama passes them (system first, if any; roles alternating).
        """
        out = [self.prefix if include_prefix else ""]
        if self.system_in_last_user:
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            for i, m in enumerate(messages):
                last = i == len(messages) - 1
                if m["role"] == "user":
                    inner = (system + self.system_separator if last and system else "") + m["content"]
                    out.append(self.user_open + inner + self.user_close)
                elif m["role"] == "assistant":
                    out.append(self.assistant_open + m["content"] + ("" if last else self.assistant_close))
            if messages and messages[-1]["role"] != "assistant":
                out.append(self.generation_prompt)
            return "".join(out)
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            out.append(self.system_open + self.default_system + self.system_close)
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            if m["role"] == "system":
                out.append(self.system_open + m["content"] + self.system_close)
            elif m["role"] == "user":
                out.append(self.user_open + m["content"] + self.user_close)
            elif m["role"] == "assistant":
                out.append(self.assistant_open + m["content"] + ("" if last else self.assistant_close))
            if last and m["role"] != "assistant":
                out.append(self.generation_prompt)
        return "".join(out)

    # ------------------------------------------------------------------ Go template

    def go_template(self, include_prefix: bool = True) -> str:
        """The Ollama TEMPLATE. Every literal is a quoted Go string, so whitespace trimming
        markers ({{- -}}) used for readability never eat template text."""
        lines = []
        if include_prefix and self.prefix:
            lines.append("{{- " + go_string(self.prefix) + " }}")
        content = "{{ .Content }}"
        if self.system_in_last_user:
            system = "{{ if and $last $.System }}{{ $.System }}" + _lit(self.system_separator) + "{{ end }}"
            branches = [("user", _lit(self.user_open) + system + content + _lit(self.user_close))]
        else:
            if self.default_system is not None:
                lines.append("{{- if or (not .Messages) (ne (index .Messages 0).Role \"system\") }}"
                             + _lit(self.system_open + self.default_system + self.system_close) + "{{ end }}")
            branches = [("system", _lit(self.system_open) + content + _lit(self.system_close)),
                        ("user", _lit(self.user_open) + content + _lit(self.user_close))]
        branches.append(("assistant", _lit(self.assistant_open) + content
                         + "{{ if not $last }}" + _lit(self.assistant_close) + "{{ end }}"))
        lines += ["{{- range $i, $m := .Messages }}", "{{- $last := eq (len (slice $.Messages $i)) 1 }}"]
        for i, (role, body) in enumerate(branches):
            lines.append(("{{- if" if i == 0 else "{{- else if") + f' eq .Role "{role}" ' + "}}" + body)
        lines += ["{{- end }}",
                  "{{- if and $last (ne .Role \"assistant\") }}" + _lit(self.generation_prompt) + "{{ end }}",
                  "{{- end }}"]
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


# ---------------------------------------------------------------------- derivation


def derive_layout(chat_format) -> TurnLayout:
    """Measure the chat template of `chat_format` (a ducktune ChatFormat) and return its turn layout.

    Raises TemplateError naming what does not fit.
    """
    tokenizer = chat_format.tokenizer
    template = tokenizer.chat_template or ""

    def render(messages, generation_prompt=True):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except Exception as exc:  # jinja errors: e.g. templates that reject a system message
            raise TemplateError(f"the chat template cannot render a probe conversation ({exc})") from None

    user_only = render([{"role": "user", "content": _U1}])
    if _U1 not in user_only:
        raise TemplateError("the chat template changes the message text (it does not print the user's words as "
                            "they are); cannot translate it")
    family = next((name for marker, name in FAMILIES if marker in user_only), None)
    if family is None:
        raise TemplateError(
            "cannot translate this chat template to an Ollama TEMPLATE: it is not one of the supported families "
            f"({', '.join(name for _, name in FAMILIES)}); write the Modelfile TEMPLATE by hand "
            "(or export with --to merged,gguf)")
    bos = tokenizer.bos_token or ""
    prefix = bos if bos and "bos_token" in template and user_only.startswith(bos) else ""
    generation_prompt = chat_format.generation_prompt

    with_system = render([{"role": "system", "content": _SYS}, {"role": "user", "content": _U1}])
    multi = render([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                    {"role": "user", "content": _U2}])
    between_user_answer = _between(multi, _U1, _A1)
    between_answer_user = _between(multi, _A1, _U2)
    tail = user_only[user_only.index(_U1) + len(_U1):]
    if not tail.endswith(generation_prompt):
        raise TemplateError("the chat template's generation prompt does not come last; cannot translate it")
    user_close = tail[: len(tail) - len(generation_prompt)]
    if not between_user_answer.startswith(user_close):
        raise TemplateError("the chat template closes user turns differently before answers; cannot translate it")
    assistant_open = between_user_answer[len(user_close):]
    # The answer's turn ends with the template's end-of-turn marker (and the whitespace after it).
    suffix = chat_format.turn_suffix if chat_format.eot_token else ""
    if suffix and between_answer_user.startswith(suffix):
        end = len(suffix)
        while end < len(between_answer_user) and between_answer_user[end] in " \n":
            end += 1
        assistant_close = between_answer_user[:end]
    else:
        assistant_close = ""
    user_open = between_answer_user[len(assistant_close):]

    if family == "mistral" and (user_open + _SYS) in with_system:
        layout = _mistral_layout(with_system, prefix, user_open, user_close, assistant_open, assistant_close,
                                 generation_prompt)
    else:
        layout = _system_block_layout(family, with_system, user_only, prefix, user_open, user_close,
                                      assistant_open, assistant_close, generation_prompt)
    check_layout(layout, chat_format)
    return layout


def _between(text: str, first: str, second: str) -> str:
    start = text.find(first)
    end = text.find(second, start + len(first)) if start >= 0 else -1
    if end < 0:
        raise TemplateError("the chat template drops or reorders message text; cannot translate it")
    return text[start + len(first): end]


def _system_block_layout(family, with_system, user_only, prefix, user_open, user_close, assistant_open,
                         assistant_close, generation_prompt) -> TurnLayout:
    if _SYS not in with_system:
        raise TemplateError("the chat template drops the system message; cannot translate it")
    head = with_system[: with_system.index(_SYS)]
    system_open = head[len(prefix):]
    between = _between(with_system, _SYS, _U1)
    if not between.endswith(user_open):
        raise TemplateError("the chat template opens a user turn after a system message differently; cannot translate it")
    system_close = between[: len(between) - len(user_open)]
    # Without a system message: prefix + (a default system block or nothing) + user_open + ...
    no_system_head = user_only[len(prefix): user_only.index(_U1)]
    if not no_system_head.endswith(user_open):
        raise TemplateError("the chat template starts a conversation without a system message in a way "
                            "ducktune cannot translate")
    injected = no_system_head[: len(no_system_head) - len(user_open)]
    default_system = None
    if injected:
        if not (injected.startswith(system_open) and injected.endswith(system_close)
                and len(injected) >= len(system_open) + len(system_close)):
            raise TemplateError("the chat template adds text before the first user turn that is not a system block; "
                                "cannot translate it")
        default_system = injected[len(system_open): len(injected) - len(system_close)]
    return TurnLayout(family, prefix, system_open, system_close, default_system, user_open, user_close,
                      assistant_open, assistant_close, generation_prompt)


def _mistral_layout(with_system, prefix, user_open, user_close, assistant_open, assistant_close,
                    generation_prompt) -> TurnLayout:
    """[INST] templates that put the system prompt inside the last user turn."""
    if _SYS not in with_system:
        raise TemplateError("this [INST] chat template drops the system message; cannot translate it")
    inner = _between(with_system, _SYS, _U1)
    return TurnLayout("mistral", prefix, "", "", None, user_open, user_close, assistant_open, assistant_close,
                      generation_prompt, system_in_last_user=True, system_separator=inner)


def check_layout(layout: TurnLayout, chat_format, system_prompt: str | None = None) -> None:
    """Refuse a layout that does not reproduce the chat template on the sample conversations."""
    for messages in sample_conversations():
        expected = chat_format.render(messages, add_generation_prompt=True)
        got = layout.render(ollama_messages(messages, system_prompt or chat_format.system_prompt))
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            raise TemplateError(
                f"cannot translate this {layout.family} chat template faithfully: on a sample conversation it renders "
                f"{expected[at:at + 40]!r} where the translation gives {got[at:at + 40]!r} (character {at})")


def ollama_messages(messages: list[dict], system: str | None) -> list[dict]:
    """Messages as Ollama hands them to the template: the Modelfile SYSTEM is prepended when
    the conversation does not start with a system message."""
    if system and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}] + list(messages)
    return list(messages)
