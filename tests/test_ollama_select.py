"""Which template Ollama prompts an export with (export/ollama_select.py, after Ollama's server/images.go),
and the tool conversation the export checks in the GGUF's own chat template: what Ollama 0.30+ uses."""

from __future__ import annotations

import copy
import functools

import pytest

from ducktune.data.template import ChatFormat
from ducktune.export.gotemplate import derive_layout
from ducktune.export.ollama_select import (gguf_template_capabilities, go_template_capabilities,
                                           prefers_gguf_template, template_choice)
from ducktune.export.verify import FAIL, PASS, check_embedded_templates, template_renderings
from ducktune.models.families import family, template_text
from ducktune.models.standin_tokenizers import build_tokenizer


@functools.lru_cache(maxsize=None)
def chat_format(family_id: str) -> ChatFormat:
    spec = family(family_id)
    return ChatFormat(build_tokenizer(spec.tokenizer, spec.specials, template_text(spec.template)))


@pytest.mark.parametrize("family_id, caps", [
    ("qwen2.5", ["tools"]), ("llama3", ["tools"]), ("mistral-v0.3", ["tools"]),
    ("qwen3", ["tools", "thinking"]), ("deepseek-r1-distill-qwen", ["tools", "thinking"]),
    ("smollm2", []), ("gemma3", []), ("phi3", []), ("llama2-chat", [])])
def test_the_gguf_template_declares_what_its_text_mentions(family_id, caps):
    fmt = chat_format(family_id)
    assert gguf_template_capabilities(fmt.trained_template()) == caps
    # ducktune's TEMPLATE names neither tools nor thinking: Ollama 0.30+ takes the GGUF's template exactly
    # when that one declares something.
    go = derive_layout(fmt).go_template()
    assert go_template_capabilities(go) == []
    assert prefers_gguf_template(fmt.trained_template(), go) is bool(caps)


def test_go_template_capabilities_are_identifiers_not_text():
    assert go_template_capabilities("{{ if .Tools }}x{{ end }}") == ["tools"]
    assert go_template_capabilities("{{ range $t := $.Tools }}{{ $t }}{{ end }}") == ["tools"]
    assert go_template_capabilities("{{ range .Messages }}{{ .Thinking }}{{ end }}") == ["thinking"]
    assert go_template_capabilities("Tools are described here: {{ .Content }}") == []
    assert go_template_capabilities('{{ "Tools" }}{{ .Content }}') == []


# A TEMPLATE with a tool round trip (definitions, calls and results), shaped like Ollama's own qwen2.5 one.
ROUND_TRIP = ('{{ if .Tools }}<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}{{ range .Messages }}'
              '{{ if .ToolCalls }}<tool_call>{{ range .ToolCalls }}{{ .Function.Name }}{{ end }}{{ end }}'
              '{{ if eq .Role "tool" }}<tool_response>{{ .Content }}</tool_response>{{ end }}{{ end }}')


def test_a_template_with_the_same_capabilities_and_a_round_trip_keeps_precedence():
    jinja = chat_format("qwen2.5").trained_template()
    assert go_template_capabilities(ROUND_TRIP) == ["tools"]
    assert prefers_gguf_template(jinja, ROUND_TRIP) is False
    # The same capabilities without results: the GGUF's template, which has them, is preferred.
    assert prefers_gguf_template(jinja, ROUND_TRIP.replace('eq .Role "tool"', 'eq .Role "x"')
                                 .replace("tool_response", "r")) is True
    # More capabilities in the GGUF's template (Qwen3 thinks) win over a round trip, when it has one too.
    assert prefers_gguf_template(chat_format("qwen3").trained_template(), ROUND_TRIP) is True
    assert prefers_gguf_template(None, ROUND_TRIP) is False


def test_template_choice_names_the_version_that_switches():
    fmt = chat_format("qwen2.5")
    go = derive_layout(fmt).go_template()
    line = template_choice(fmt.trained_template(), go)
    assert line.startswith("Ollama 0.30 and later prompt with the GGUF's chat template, which declares tools")
    assert "OLLAMA_GO_TEMPLATE=1" in line
    smol = chat_format("smollm2")
    assert template_choice(smol.trained_template(), derive_layout(smol).go_template()).startswith(
        "every Ollama prompts with the TEMPLATE")
    assert template_choice(fmt.trained_template(), None).startswith("no TEMPLATE")


def test_the_export_checks_a_tool_conversation_in_the_embedded_template():
    fmt = chat_format("qwen2.5")
    rows = template_renderings(fmt)
    (tool_row,) = [row for row in rows if row.get("tools")]
    assert "get_weather" in tool_row["text"] and "4 degrees, light rain" in tool_row["text"]
    assert tool_row["text"] == fmt.render(tool_row["messages"], add_generation_prompt=True, tools=tool_row["tools"])
    assert not any(row.get("tools") for row in template_renderings(chat_format("smollm2")))  # writes no calls
    tokenizer = copy.copy(fmt.tokenizer)
    tokenizer.chat_template = fmt.trained_template()
    check = check_embedded_templates(rows, tokenizer, [])
    assert check.status == PASS and "tool calls" in check.detail, check.detail
    # A template that prints the conversation but drops the tool definitions fails on that conversation only.
    tokenizer.chat_template = fmt.trained_template().replace("tool | tojson", "tool.function.name")
    assert tokenizer.chat_template != fmt.trained_template()
    check = check_embedded_templates(rows, tokenizer, [])
    assert check.status == FAIL and f"conversation {len(rows)} differs" in check.detail, check.detail


def test_ollama_renders_gpt_oss_through_the_template_with_its_harmony_parser():
    from ducktune.export.pipeline import template_caveats

    fmt = chat_format("gpt-oss")
    go = derive_layout(fmt).go_template()
    jinja = fmt.trained_template()
    assert gguf_template_capabilities(jinja) == ["tools"]
    # The GGUF's template declares tools, yet gpt-oss goes through the TEMPLATE (it writes harmony's tags).
    assert prefers_gguf_template(jinja, go, "gpt-oss") is False and prefers_gguf_template(jinja, go) is True
    assert template_choice(jinja, go, "gpt-oss").startswith("every Ollama prompts with the TEMPLATE (gpt-oss")
    *_, caveat = template_caveats(fmt, ["gguf", "ollama"], tool_samples=2, architecture="gpt-oss", go_template=go)
    assert "never shows the model the tools" in caveat  # (the first caveat: harmony's date line is frozen)
    *_, caveat = template_caveats(fmt, ["gguf", "ollama"], tool_samples=2, architecture="llama", go_template=go)
    assert "Ollama 0.30 and later prompt this model with the GGUF's chat template" in caveat
