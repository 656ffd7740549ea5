"""Ollama TEMPLATE derivation: Go's real text/template must render byte for byte what the
Hugging Face chat template renders; templates that cannot be matched are refused."""

from __future__ import annotations


import pytest
from export_support import (ALPACA_TEMPLATE, DEEPSEEK_R1_TEMPLATE, MISTRAL_TEMPLATE, smollm2_chat_template,
                            tokenizer_with)

from ducktune.data.template import ChatFormat
from ducktune.export.gotemplate import (BLOCK, LAST_USER, TemplateError, derive_layout, ollama_messages,
                                        sample_conversations)
from ducktune.models.loading import load_tokenizer

needs_go = pytest.mark.requires_go

def assert_go_renders_like_hf(chat_format: ChatFormat, system: str | None = None, include_bos: bool = True):
    from ducktune.export.gorender import render_with_go

    layout = derive_layout(chat_format)
    conversations = sample_conversations()
    rendered = render_with_go(layout.go_template(include_bos=include_bos), conversations, system)
    for messages, got in zip(conversations, rendered):
        expected = chat_format.render(messages, add_generation_prompt=True)
        if not include_bos:
            expected = expected[len(layout.bos):]
        assert got == expected
    return layout


@needs_go
def test_chatml_template_renders_identically_in_go(tiny_qwen):
    layout = assert_go_renders_like_hf(ChatFormat(load_tokenizer(tiny_qwen)))
    assert layout.system_style == BLOCK and layout.prefix == ""
    assert layout.default_system == "You are a helpful assistant."


@needs_go
def test_llama3_template_renders_identically_in_go(tiny_llama):
    layout = assert_go_renders_like_hf(ChatFormat(load_tokenizer(tiny_llama)))
    assert layout.system_style == BLOCK
    assert layout.prefix == "<|begin_of_text|>"
    # When llama.cpp adds BOS itself (add_bos_token), the TEMPLATE leaves it out.
    assert_go_renders_like_hf(ChatFormat(load_tokenizer(tiny_llama)), include_bos=False)


@needs_go
def test_smollm2_builtin_template_injects_its_default_system_prompt_byte_for_byte(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = smollm2_chat_template()
    layout = assert_go_renders_like_hf(ChatFormat(tokenizer))
    assert layout.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@needs_go
def test_run_system_prompt_is_rendered_like_training(tiny_qwen):
    """A run's system prompt becomes SYSTEM; Ollama prepends it as training did (ChatFormat.with_system)."""
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = smollm2_chat_template()
    assert_go_renders_like_hf(ChatFormat(tokenizer, system_prompt="You are Duckling.\nBe brief."),
                              system="You are Duckling.\nBe brief.")


@needs_go
def test_mistral_template_puts_the_system_prompt_in_the_last_user_turn(tiny_llama):
    tokenizer = tokenizer_with(tiny_llama, {"bos_token": "<s>", "eos_token": "</s>"}, ["[INST]", "[/INST]"],
                               MISTRAL_TEMPLATE)
    layout = assert_go_renders_like_hf(ChatFormat(tokenizer))
    assert layout.system_style == LAST_USER and layout.system_separator == "\n\n"


@needs_go
def test_deepseek_r1_template_renders_identically_in_go(tiny_qwen):
    tokenizer = tokenizer_with(tiny_qwen, {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
                               ["<｜User｜>", "<｜Assistant｜>"], DEEPSEEK_R1_TEMPLATE)
    layout = assert_go_renders_like_hf(ChatFormat(tokenizer))
    assert layout.system_style == BLOCK and layout.system_open == ""
    # Answers are rendered right after <｜Assistant｜>, so the prompt ends there, as trained (the
    # template's own generation prompt adds <think>\n, which training never shows).
    assert layout.generation_prompt == "<｜Assistant｜>"


def test_template_that_drops_the_system_message_is_refused(tiny_qwen):
    tokenizer = tokenizer_with(tiny_qwen, {}, [], ALPACA_TEMPLATE)
    with pytest.raises(TemplateError, match="drops the system message"):
        derive_layout(ChatFormat(tokenizer))


def test_template_that_rewrites_content_is_refused(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "message['content']", "(message['content'] | lower if message['role'] == 'user' else message['content'])")
    with pytest.raises(TemplateError, match="changes the message text"):
        derive_layout(ChatFormat(tokenizer))


def test_template_with_behaviour_outside_the_layout_is_refused(tiny_qwen):
    """A ChatML template that renders the second user turn differently cannot be matched: refused, not written wrong."""
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "'<|im_start|>' + message['role'] + '\\n'",
        "'<|im_start|>' + message['role'] + ('\\n\\n' if loop.index > 3 else '\\n')")
    with pytest.raises(TemplateError, match="cannot express"):
        derive_layout(ChatFormat(tokenizer))


def test_ollama_messages_prepend_system_like_the_server():
    messages = [{"role": "user", "content": "hi"}]
    assert ollama_messages(messages, "S")[0] == {"role": "system", "content": "S"}
    with_system = [{"role": "system", "content": "mine"}] + messages
    assert ollama_messages(with_system, "S") == with_system
