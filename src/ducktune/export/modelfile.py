"""Ollama Modelfiles: written by ducktune, and read back by a parser that follows Ollama's grammar.

Grammar (Ollama's parser/parser.go): one command per line, `#` comments; commands are
FROM (required), PARAMETER name value, TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE role
text, and the newer DRAFT, RENDERER, PARSER, REQUIRES, case-insensitive. A value runs to
the end of the line, is trimmed, and may be quoted "..." or triple-quoted \"\"\"...\"\"\" to
span lines; a value ends at the first newline where its quotes are complete. Characters
that are not printable (Go's strconv.IsPrint) are dropped outside that path. PARAMETER
values are typed by Ollama's options (integers, floats, booleans, lists for `stop`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter",
            "message", "requires"}
DEPRECATED_PARAMETERS = {"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
                         "mirostat", "mirostat_tau", "mirostat_eta"}
NON_PARAMETER_COMMANDS = {"model", "license", "template", "system", "adapter", "draft", "renderer", "parser",
                          "requires", "message"}
# Ollama's api.Options / api.Runner fields (JSON names) and their types.
PARAMETER_TYPES = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "use_mmap": bool, "num_thread": int,
    "num_keep": int, "seed": int, "num_predict": int, "top_k": int, "top_p": float, "min_p": float,
    "typical_p": float, "repeat_last_n": int, "temperature": float, "repeat_penalty": float,
    "presence_penalty": float, "frequency_penalty": float, "stop": list,
    **{name: str for name in DEPRECATED_PARAMETERS},
}


class ModelfileError(ValueError):
    """A Modelfile Ollama would reject; the message names the line."""


@dataclass
class Modelfile:
    commands: list[tuple[str, str]] = field(default_factory=list)  # (name, value); PARAMETER -> (param name, value)

    def first(self, name: str) -> str | None:
        return next((value for key, value in self.commands if key == name), None)

    @property
    def from_(self) -> str:
        return self.first("model") or ""

    @property
    def template(self) -> str | None:
        return self.first("template")

    @property
    def system(self) -> str | None:
        return self.first("system")

    def parameters(self) -> dict:
        """Typed parameters, as `ollama create` would store them (repeated `stop` builds a list)."""
        params: dict = {}
        for name, value in self.commands:
            if name in NON_PARAMETER_COMMANDS or name in DEPRECATED_PARAMETERS:
                continue
            kind = PARAMETER_TYPES.get(name)
            if kind is None:
                raise ModelfileError(f"PARAMETER {name}: unknown parameter")
            if kind is list:
                params.setdefault(name, []).append(value)
            else:
                params[name] = _typed(name, value, kind)
        return params


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def _typed(name: str, value: str, kind):
    """Parse a value the way Go's strconv does for Ollama's option types."""
    if kind is int and _INT.fullmatch(value):
        return int(value)
    if kind is float and _FLOAT.fullmatch(value):
        return float(value)
    if kind is bool and value in _BOOLS:
        return _BOOLS[value]
    if kind is str:
        return value
    raise ModelfileError(f"PARAMETER {name}: invalid {kind.__name__} value {value!r}")


def _is_print(ch: str) -> bool:
    """Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def _unquote(text: str) -> tuple[str, bool]:
    if text.startswith('"""'):
        if len(text) >= 6 and text.endswith('"""'):
            return text[3:-3], True
        return "", False
    if text.startswith('"'):
        if len(text) >= 2 and text.endswith('"'):
            return text[1:-1], True
        return "", False
    return text, True


# Go's unicode.IsSpace, which strings.TrimSpace trims.
_GO_SPACE = " \t\n\v\f\r\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _go_trim(text: str) -> str:
    return text.strip(_GO_SPACE)


_NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT = range(6)


def _next_state(state: int, ch: str, space: bool, newline: bool, error) -> tuple[int, bool]:
    """Ollama's parser: the state after character `ch`, and whether `ch` is kept in the buffer."""
    NIL, NAME, VALUE, PARAM, MESSAGE, COMMENT = _NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT
    if state == NIL:
        nxt = COMMENT if ch == "#" else NIL if (space or newline) else NAME
        keep = nxt == NAME
    elif state == NAME:
        if ch.isascii() and ch.isalpha():
            nxt, keep = NAME, True
        elif space:
            nxt, keep = VALUE, False
        else:
            raise error("command must be one of " + ", ".join(sorted(COMMANDS)))
    elif state == VALUE:
        nxt, keep = (NIL, True) if (newline or space) else (VALUE, True)
    elif state in (PARAM, MESSAGE):
        ok = ch.isascii() and (ch.isalnum() or ch == "_") if state == PARAM else ch.isascii() and ch.isalpha()
        if ok:
            nxt, keep = state, True
        elif space:
            nxt, keep = VALUE, False
        else:
            raise error("unexpected end of a PARAMETER or MESSAGE name")
    else:  # COMMENT
        nxt, keep = (NIL, False) if newline else (COMMENT, False)

    return nxt, keep


def parse_modelfile(text: str) -> Modelfile:
    """Parse like Ollama's state machine (parser.ParseFile)."""
    NIL, NAME, VALUE, PARAM, MESSAGE, COMMENT = _NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT
    state, line, buf = NIL, 1, []
    name, role = "", ""
    result = Modelfile()
    if text.startswith("\ufeff"):
        text = text[1:]

    def error(msg):
        return ModelfileError(f"Modelfile line {line}: {msg}")

    for ch in text:
        if ch in "\r\n":
            line += 1
        space, newline = ch in " \t", ch in "\r\n"
        nxt, keep = _next_state(state, ch, space, newline, error)
        if nxt != state:
            word = "".join(buf)
            if state == NAME:
                if word.lower() not in COMMANDS:
                    raise error(f"unknown command {word!r}; must be one of " + ", ".join(sorted(COMMANDS)))
                lower = word.lower()
                if lower == "from":
                    name = "model"
                elif lower == "parameter":
                    nxt = PARAM
                elif lower == "message":
                    nxt = MESSAGE
                    name = lower
                else:
                    name = lower
            elif state == PARAM:
                name = word
            elif state == MESSAGE:
                if word not in ("system", "user", "assistant"):
                    raise error('message role must be one of "system", "user", or "assistant"')
                role = word
            elif state == VALUE:
                value, complete = _unquote(_go_trim(word))
                if not complete or space:
                    buf.append(ch)  # inside quotes (or a space inside a value): keep going
                    continue
                if role:
                    value, role = f"{role}: {value}", ""
                result.commands.append((name, value))
            buf = []
            state = nxt
        if keep and ch != "\0" and _is_print(ch):
            buf.append(ch)

    if state == VALUE:
        value, complete = _unquote(_go_trim("".join(buf)))
        if not complete:
            raise ModelfileError("Modelfile: unexpected end of file inside a quoted value")
        if role:
            value = f"{role}: {value}"
        result.commands.append((name, value))
    elif state not in (NIL, COMMENT):
        raise ModelfileError("Modelfile: unexpected end of file")
    if not any(key == "model" for key, _ in result.commands):
        raise ModelfileError("Modelfile: no FROM line")
    return result


# ---------------------------------------------------------------------- writing


def quote_value(value: str, what: str) -> str:
    """Quote a value so Ollama's parser reads it back exactly, or refuse."""
    if '"""' in value:
        raise ModelfileError(f'{what} contains """, which a Modelfile cannot quote')
    bad = [ch for ch in value if not _is_print(ch) and ch not in "\n\r\t"]
    if bad:
        raise ModelfileError(f"{what} contains the unprintable character {bad[0]!r}, which Ollama's parser drops")
    if "\n" in value or '"' in value or value != value.strip() or not value:
        return f'"""{value}"""'
    return value


def unquotable(value: str, what: str) -> str | None:
    """Why `value` cannot be a Modelfile value (quote_value's refusal), or None: asked before training
    and before an export's merge, not after the GGUF is written."""
    try:
        quote_value(value, what)
    except ModelfileError as exc:
        return str(exc)
    return None


@dataclass
class ModelfileSpec:
    gguf_name: str            # relative to the Modelfile's folder
    template: str | None      # None: no TEMPLATE line (export --allow-default-template)
    stop: list[str]
    num_ctx: int
    system: str | None = None
    license: str | None = None


def render_modelfile(spec: ModelfileSpec, header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append(f"FROM ./{spec.gguf_name}")
    if spec.template is not None:
        lines.append(f"TEMPLATE {quote_value(spec.template, 'TEMPLATE')}")
    if spec.system:
        lines.append(f"SYSTEM {quote_value(spec.system, 'SYSTEM')}")
    for token in spec.stop:
        lines.append(f"PARAMETER stop {quote_value(token, 'a stop token')}")
    lines.append(f"PARAMETER num_ctx {spec.num_ctx}")
    if spec.license:
        lines.append(f"LICENSE {quote_value(spec.license, 'LICENSE')}")
    return "\n".join(lines) + "\n"


def resolve_from(modelfile_path: Path, value: str) -> Path:
    """Where Ollama looks for FROM: relative paths are relative to the Modelfile's folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (modelfile_path.parent / path)
