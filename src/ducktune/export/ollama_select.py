"""Which chat template Ollama prompts an export with: the Modelfile TEMPLATE, or the GGUF's own.

Since Ollama 0.30 (June 2026) models run on llama-server, and Ollama picks, per model, between the
Modelfile's Go TEMPLATE and the Jinja chat template in the GGUF (`tokenizer.chat_template`): when the
GGUF's template declares more capabilities -- tools, thinking -- than the TEMPLATE, the GGUF's template
is used (llama-server renders it and parses tool calls itself), unless the environment variable
OLLAMA_GO_TEMPLATE is set (1: the TEMPLATE, 0: the GGUF's template). Ollama before 0.30 always uses the
TEMPLATE. This mirrors that choice (Ollama's server/images.go: chatTemplateCapabilities,
goTemplateCapabilities, shouldPreferChatTemplate), so the export can say which of its two checked
templates a user's Ollama meets, and what a request with tools gets.

The capabilities are read the way Ollama reads them: substrings of the Jinja text, identifiers of the
Go template. The Go side is read from ducktune's own TEMPLATEs, which name `.Tools` / `.Thinking`
only where a tool or thinking section is written (none is today).
"""

from __future__ import annotations

import re

OLLAMA_NATIVE_SINCE = "0.30"
TOOLS, THINKING = "tools", "thinking"

# Ollama: a tool round trip in a Jinja template is calls and results it prints.
_JINJA_RESULT_MARKS = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"",
                       "role\"] == 'tool'", "role\"] == \"tool\"", "message.role == 'tool'",
                       "message.role == \"tool\"", "ipython")
_GO_RESULT_MARKS = ('eq .Role "tool"', "tool_response", "TOOL_RESULTS")
_GO_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_GO_FIELD = re.compile(r"(?:^|[\s($])[$]?\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def gguf_template_capabilities(jinja: str | None) -> list[str]:
    """What Ollama reads off a GGUF's chat template: tools when it mentions them, thinking when it
    writes <think> ... </think> (or splits earlier answers at </think>)."""
    if not jinja:
        return []
    caps = []
    if "tools" in jinja or "tool_call" in jinja:
        caps.append(TOOLS)
    splits = "content.split('</think>')" in jinja or 'content.split("</think>")' in jinja
    if ("<think>" in jinja and "</think>" in jinja) or (
            splits and "reasoning_content" not in jinja and "<SPECIAL_12>" not in jinja):
        caps.append(THINKING)
    return caps


def _go_identifiers(go_template: str) -> set[str]:
    """The field names the template's actions use, lower-cased (Ollama's Template.Vars)."""
    names = set()
    for action in _GO_ACTION.findall(go_template):
        for path in _GO_FIELD.findall(action):
            names.update(part.lower() for part in path.split("."))
    return names


def go_template_capabilities(go_template: str | None) -> list[str]:
    """Tools when the TEMPLATE names .Tools; thinking when it prints .Thinking (Ollama infers the tags
    around it; ducktune's TEMPLATEs print none)."""
    names = _go_identifiers(go_template or "")
    return [cap for cap, name in ((TOOLS, "tools"), (THINKING, "thinking")) if name in names]


def _jinja_round_trip(jinja: str) -> bool:
    return (TOOLS in gguf_template_capabilities(jinja) and ("tool_calls" in jinja or "assistant_tool_call" in jinja)
            and any(mark in jinja for mark in _JINJA_RESULT_MARKS))


def _go_round_trip(go_template: str) -> bool:
    names = _go_identifiers(go_template)
    return {"tools", "toolcalls"} <= names and any(mark in go_template for mark in _GO_RESULT_MARKS)


def uses_harmony(architecture: str | None, go_template: str | None) -> bool:
    """Ollama renders gpt-oss through the TEMPLATE and reads its answers with its own harmony parser (channels,
    tool calls) when the TEMPLATE writes harmony's tags (server/routes.go: shouldUseHarmony)."""
    return (architecture in ("gptoss", "gpt-oss") and go_template is not None
            and "<|start|>" in go_template and "<|end|>" in go_template)


def prefers_gguf_template(jinja: str | None, go_template: str | None, architecture: str | None = None) -> bool:
    """True when Ollama 0.30 and later prompt with the GGUF's chat template instead of the TEMPLATE
    (OLLAMA_GO_TEMPLATE unset). `architecture`: the GGUF's general.architecture."""
    if uses_harmony(architecture, go_template):
        return False
    if not jinja or go_template is None:
        return bool(jinja)  # no TEMPLATE: the GGUF's template in any case
    gguf_caps, go_caps = gguf_template_capabilities(jinja), go_template_capabilities(go_template)
    if len(gguf_caps) > len(go_caps):
        return not _go_round_trip(go_template) or _jinja_round_trip(jinja)
    if sorted(gguf_caps) != sorted(go_caps) or TOOLS not in gguf_caps:
        return False
    return _jinja_round_trip(jinja) and not _go_round_trip(go_template)


def template_choice(jinja: str | None, go_template: str | None, architecture: str | None = None) -> str:
    """One line: which template Ollama prompts the model with, by version."""
    if go_template is None:
        return "no TEMPLATE: every Ollama prompts with the GGUF's chat template"
    if uses_harmony(architecture, go_template):
        return "every Ollama prompts with the TEMPLATE (gpt-oss: Ollama reads its answers with its harmony parser)"
    if not prefers_gguf_template(jinja, go_template):
        return "every Ollama prompts with the TEMPLATE (the GGUF's chat template declares no tools or thinking)"
    caps = " and ".join(gguf_template_capabilities(jinja))
    return (f"Ollama {OLLAMA_NATIVE_SINCE} and later prompt with the GGUF's chat template, which declares {caps} "
            f"the TEMPLATE lacks; earlier Ollama (or OLLAMA_GO_TEMPLATE=1) with the TEMPLATE")
