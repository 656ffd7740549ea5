"""Every shipped chat template (the models' published Jinja) gets an Ollama TEMPLATE derived from
its own rendering, and Go's real text/template renders it byte for byte like Jinja on
conversations with and without a system prompt, multi-turn. Bad input gets one-line errors."""

from __future__ import annotations

import shutil
from importlib import resources

import pytest
from export_support import ALPACA_TEMPLATE, tokenizer_with

from ducktune.data.template import ChatFormat
from ducktune.errors import ModelError
from ducktune.export.gotemplate import (BLOCK, FIRST_USER, LAST_USER, NO_SYSTEM_ROLE, TemplateError, derive_layout,
                                        frozen_date, ollama_messages, renderable_samples, template_support)
from ducktune.models.families import template_text
from ducktune.models.loading import bundled_template_names as shipped_template_ids
from ducktune.models.loading import load_tokenizer

LLAMA_SPM = {"bos_token": "<s>", "eos_token": "</s>"}
COHERE = {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>", "pad_token": "<PAD>", "unk_token": "<UNK>"}
COHERE_TURNS = ["<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"]
# template id -> (special tokens as the model's tokenizer has them, extra special tokens)
FAMILIES = {
    "qwen2": ({"eos_token": "<|im_end|>"}, ["<|im_start|>"]),
    "qwen2.5": ({"eos_token": "<|im_end|>"}, ["<|im_start|>"]),
    "qwen3": ({"eos_token": "<|im_end|>"}, ["<|im_start|>", "<think>", "</think>"]),
    "qwen3.5": ({"eos_token": "<|im_end|>"}, ["<|im_start|>", "<think>", "</think>"]),
    "chatml": ({"eos_token": "<|im_end|>"}, ["<|im_start|>"]),
    "chatml-smollm2": ({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, []),
    "yi": ({"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"}, ["<|im_start|>"]),
    "internlm2": (LLAMA_SPM, ["<|im_start|>", "<|im_end|>"]),
    "deepseek-r1": ({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
                    ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]),
    "deepseek-r1-llama": ({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
                          ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]),
    "deepseek-v2": ({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}, []),
    "deepseek-coder": ({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<|EOT|>"}, ["<|EOT|>"]),
    "deepseek-v2.5": ({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
                      ["<｜User｜>", "<｜Assistant｜>"]),
    "llama3": ({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
               ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "llama3.1": ({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                 ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"]),
    "llama2": (LLAMA_SPM, []),
    "zephyr": (LLAMA_SPM, []),
    "mistral-v1": (LLAMA_SPM, []),
    "mixtral": (LLAMA_SPM, []),
    "mistral-v3": (LLAMA_SPM, ["[INST]", "[/INST]"]),
    "mistral-nemo": (LLAMA_SPM, ["[INST]", "[/INST]"]),
    "ministral3": (LLAMA_SPM, ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]),
    "mistral-small3.2": (LLAMA_SPM, ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]),
    "gemma": ({"bos_token": "<bos>", "eos_token": "<eos>"}, ["<start_of_turn>", "<end_of_turn>"]),
    "gemma2": ({"bos_token": "<bos>", "eos_token": "<eos>"}, ["<start_of_turn>", "<end_of_turn>"]),
    "gemma3": ({"bos_token": "<bos>", "eos_token": "<eos>"}, ["<start_of_turn>", "<end_of_turn>"]),
    "gemma3n": ({"bos_token": "<bos>", "eos_token": "<eos>"}, ["<start_of_turn>", "<end_of_turn>"]),
    "gemma4": ({"bos_token": "<bos>", "eos_token": "<turn|>"}, ["<|turn>", "<|channel>", "<channel|>", "<|think|>"]),
    "phi3": ({"bos_token": "<s>", "eos_token": "<|endoftext|>"},
             ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
    "phi4": ({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}, ["<|im_start|>", "<|im_sep|>"]),
    "phi4-mini": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
                  ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
    "gpt-oss": ({"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"},
                ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|call|>"]),
    "glm4": ({"eos_token": "<|endoftext|>"}, ["[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"]),
    "glm4-0414": ({"eos_token": "<|endoftext|>"}, ["[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"]),
    "smollm3": ({"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}, ["<|im_start|>", "<think>", "</think>"]),
    "olmo2": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, []),  # its chat markers are plain text
    "olmo3": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, ["<|im_start|>", "<|im_end|>"]),
    "ernie4.5": ({"bos_token": "<s>", "eos_token": "</s>"}, ["<|begin_of_sentence|>", "<|end_of_sentence|>"]),
    "chatglm3": ({"eos_token": "</s>"}, ["[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>"]),
    "lfm2": ({"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"},
             ["<|im_start|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_response_start|>",
              "<|tool_response_end|>"]),
    "exaone3.5": ({"bos_token": "[BOS]", "eos_token": "[|endofturn|]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
                  ["[|system|]", "[|user|]", "[|assistant|]"]),
    "exaone4": ({"bos_token": "[BOS]", "eos_token": "[|endofturn|]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
                ["[|system|]", "[|user|]", "[|assistant|]", "[|tool|]", "<think>", "</think>"]),
    "apertus": ({"bos_token": "<s>", "eos_token": "<|assistant_end|>"},
                ["<|system_start|>", "<|system_end|>", "<|developer_start|>", "<|developer_end|>", "<|user_start|>",
                 "<|user_end|>", "<|assistant_start|>", "<|inner_prefix|>", "<|inner_suffix|>", "<|tools_prefix|>",
                 "<|tools_suffix|>"]),
    "firefly": (LLAMA_SPM, []),
    "aya-expanse": (COHERE, COHERE_TURNS),
    "command-r7b": (COHERE, COHERE_TURNS + ["<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_THINKING|>",
                                            "<|END_THINKING|>", "<|START_ACTION|>", "<|END_ACTION|>",
                                            "<|START_TOOL_RESULT|>", "<|END_TOOL_RESULT|>"]),
    "falcon3": ({"eos_token": "<|endoftext|>"}, []),  # its <|user|> lines are plain text
    "falcon-h1": ({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, ["<|im_start|>", "<|im_end|>"]),
    "nemotron-h": ({"bos_token": "<s>", "eos_token": "<SPECIAL_12>"}, ["<SPECIAL_10>", "<SPECIAL_11>"]),
    "stablelm2": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, ["<|im_start|>", "<|im_end|>"]),
    # Nemotron-Mini: the generation prompt is written after every conversation (published without add_generation_prompt)
    "nemotron-mini": (LLAMA_SPM, ["<extra_id_0>", "<extra_id_1>"]),
    "hunyuan": ({"bos_token": "<｜hy_begin▁of▁sentence｜>", "eos_token": "<｜hy_place▁holder▁no▁2｜>"},
                ["<｜hy_User｜>", "<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"]),
    "phi2-qa": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, []),
    "alpaca": ({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, []),
    "granite3.3": ({"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"},
                   ["<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"]),
    "granite3.1-moe": ({"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"},
                       ["<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"]),
    "granite4": ({"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"},
                 ["<|start_of_role|>", "<|end_of_role|>", "<tool_call>", "</tool_call>"]),
    "minicpm3": ({"bos_token": "<s>", "eos_token": "<|im_end|>"}, ["<|im_start|>", "<|tool_call|>"]),
}
# How each published template places the system prompt (measured, not looked up).
EXPECTED_STYLE = {"gemma": NO_SYSTEM_ROLE, "gemma2": NO_SYSTEM_ROLE, "mistral-v1": NO_SYSTEM_ROLE, "gemma3": FIRST_USER,
                  "gemma3n": FIRST_USER, "llama2": FIRST_USER,
                  "mistral-v3": LAST_USER, "mistral-nemo": LAST_USER, "mixtral": FIRST_USER}

requires_go = pytest.mark.requires_go
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (apt-get install golang-go)")





@pytest.fixture(scope="module")
def family_formats(tiny_qwen) -> dict:
    formats = {}
    for template_id, (specials, extra) in FAMILIES.items():
        formats[template_id] = ChatFormat(tokenizer_with(tiny_qwen, specials, extra, template_text(template_id)))
    return formats


def test_every_shipped_template_is_covered_and_documented():
    sources = resources.files("ducktune.resources").joinpath("templates", "SOURCES.md").read_text("utf-8")
    assert sorted(FAMILIES) == shipped_template_ids()
    missing = [t for t in shipped_template_ids() if f"`{t}.jinja`" not in sources]
    assert not missing, f"not in SOURCES.md: {missing}"


@pytest.mark.parametrize("template_id", sorted(FAMILIES))
def test_layout_is_derived_and_matches_jinja(family_formats, template_id):
    chat_format = family_formats[template_id]
    layout = derive_layout(chat_format)  # includes check_layout: the Python rendering equals Jinja
    assert layout.system_style == EXPECTED_STYLE.get(template_id, BLOCK)
    assert template_support(chat_format.tokenizer) is None


def test_measured_pieces_of_typical_templates(family_formats):
    zephyr = derive_layout(family_formats["zephyr"])
    assert (zephyr.assistant_close, zephyr.user_open, zephyr.generation_prompt) == ("</s>\n", "<|user|>\n",
                                                                                    "<|assistant|>\n")
    llama2 = derive_layout(family_formats["llama2"])
    # BOS opens every user turn: printed once as the prefix (llama.cpp adds it), then after each answer.
    assert (llama2.prefix, llama2.user_open, llama2.assistant_close) == ("<s>", "[INST] ", " </s><s>")
    assert llama2.system_prefix == "<<SYS>>\n" and llama2.system_separator == "\n<</SYS>>\n\n"
    assert derive_layout(family_formats["glm4"]).prefix == "[gMASK]<sop>"
    assert derive_layout(family_formats["chatglm3"]).prefix == "[gMASK]sop"
    phi3 = derive_layout(family_formats["phi3"])
    assert phi3.generation_prompt == "<|assistant|>\n" and phi3.assistant_close == "<|end|>\n"
    qwen2 = derive_layout(family_formats["qwen2"])
    assert qwen2.prefix == "" and qwen2.default_system == "You are a helpful assistant."
    llama31 = derive_layout(family_formats["llama3.1"])
    assert llama31.prefix == "<|begin_of_text|>" and llama31.default_system == ""
    assert "Cutting Knowledge Date" in llama31.system_open
    gemma3 = derive_layout(family_formats["gemma3"])
    assert gemma3.system_prefix == "" and gemma3.system_separator == "\n\n"
    # ducktune's Phi-2 QA format: the answer follows "Output:" and ends with EOS, which opens the next turn
    phi2 = derive_layout(family_formats["phi2-qa"])
    assert (phi2.user_open, phi2.generation_prompt, phi2.assistant_close) == ("Instruct: ", "Output:", "<|endoftext|>")
    # ducktune's GPT-2 / Pythia format: Alpaca's markers, the answer ended by EOS, which opens the next turn
    alpaca = derive_layout(family_formats["alpaca"])
    assert (alpaca.user_open, alpaca.generation_prompt, alpaca.assistant_close) == (
        "### Instruction:\n", "### Response:\n", "<|endoftext|>")
    # Granite 3.3's default system prompt prints today's date (strftime_now): measured as rendered today
    granite = derive_layout(family_formats["granite3.3"])
    assert granite.default_system.startswith("Knowledge Cutoff Date: April 2024. Today's Date: ")
    assert granite.default_system.endswith(". You are Granite, developed by IBM. You are a helpful AI assistant.")
    assert (granite.user_open, granite.generation_prompt) == ("<|start_of_role|>user<|end_of_role|>",
                                                              "<|start_of_role|>assistant<|end_of_role|>")
    # Granite 4.0: a fixed default system prompt (no date), Granite 3.3's role markers, a newline after each turn
    granite4 = derive_layout(family_formats["granite4"])
    assert granite4.default_system == "You are a helpful assistant. Please ensure responses are professional, accurate, and safe."
    assert (granite4.user_open, granite4.generation_prompt, granite4.assistant_close) == (
        "<|start_of_role|>user<|end_of_role|>", "<|start_of_role|>assistant<|end_of_role|>", "<|end_of_text|>\n")
    # Cohere: Aya prints BOS, no default system; Command R7B prints an empty system turn when none is given and
    # wraps each answer in <|START_RESPONSE|>...<|END_RESPONSE|> (then <|END_OF_TURN_TOKEN|>, before the next turn)
    aya = derive_layout(family_formats["aya-expanse"])
    assert (aya.prefix, aya.default_system, aya.generation_prompt, aya.assistant_close) == (
        "<BOS_TOKEN>", None, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", "<|END_OF_TURN_TOKEN|>")
    r7b = derive_layout(family_formats["command-r7b"])
    assert (r7b.prefix, r7b.default_system, r7b.generation_prompt, r7b.assistant_close) == (
        "", "", "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_RESPONSE|>", "<|END_RESPONSE|>")


@requires_go
@needs_go
def test_go_renders_every_template_like_jinja(family_formats):
    """One Go call per template renders all its sample conversations, with and without the
    leading BOS (llama.cpp adds BOS itself when the GGUF says add_bos_token)."""
    from ducktune.export.gorender import render_with_go

    compared = 0
    for template_id, chat_format in sorted(family_formats.items()):
        layout = derive_layout(chat_format)
        conversations = renderable_samples(chat_format)
        for include_bos in (True, False):
            rendered = render_with_go(layout.go_template(include_bos=include_bos), conversations)
            for messages, got in zip(conversations, rendered):
                expected = chat_format.render(messages, add_generation_prompt=True)
                if not include_bos:
                    assert expected.startswith(layout.bos)
                    expected = expected[len(layout.bos):]
                assert got == expected, f"{template_id} ({'with' if include_bos else 'without'} BOS)"
                compared += 1
    assert compared >= 2 * 4 * (len(FAMILIES) - 2)


@requires_go
@needs_go
def test_go_renders_a_run_system_prompt_like_training(tiny_qwen):
    """The run's system prompt becomes the Modelfile SYSTEM: Ollama prepends it as ChatFormat did."""
    from ducktune.export.gorender import render_with_go

    system = "You are Duckling.\nBe brief."
    for template_id in ("gemma3", "llama2", "mistral-v3", "llama3.1", "glm4"):
        specials, extra = FAMILIES[template_id]
        chat_format = ChatFormat(tokenizer_with(tiny_qwen, specials, extra, template_text(template_id)),
                                 system_prompt=system)
        layout = derive_layout(chat_format)
        conversations = [c for c in renderable_samples(chat_format) if c[0]["role"] != "system"]
        rendered = render_with_go(layout.go_template(), conversations, system)
        for messages, got in zip(conversations, rendered):
            assert got == chat_format.render(messages, add_generation_prompt=True), template_id


@requires_go
@needs_go
def test_system_message_for_a_template_without_system_role_goes_before_the_first_user_turn(family_formats):
    from ducktune.export.gorender import render_with_go

    layout = derive_layout(family_formats["gemma2"])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    [got] = render_with_go(layout.go_template(), [messages])
    assert got == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert got == layout.render(messages)


# ---------------------------------------------------------------------- bad input


def test_template_without_turn_markers_gets_a_reason_not_a_family_list(tiny_qwen):
    tokenizer = tokenizer_with(tiny_qwen, {}, [], ALPACA_TEMPLATE)
    reason = template_support(tokenizer)
    assert reason is not None and "\n" not in reason and "write the Modelfile TEMPLATE by hand" in reason
    assert "supported families" not in reason


def test_tokenizer_without_chat_template_is_refused_in_one_line(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = None
    reason = template_support(tokenizer)
    assert reason is not None and "\n" not in reason and "model.chat_template" in reason


def test_run_system_prompt_with_a_template_that_rejects_system_is_refused(tiny_qwen):
    specials, extra = FAMILIES["gemma2"]
    tokenizer = tokenizer_with(tiny_qwen, specials, extra, template_text("gemma2"))
    with pytest.raises(ModelError, match="model.system_prompt") as caught:
        ChatFormat(tokenizer, system_prompt="You are Duckling.")
    message = str(caught.value)
    assert "\n" not in message and "System role not supported" in message


def test_template_that_renders_later_turns_differently_is_refused_with_the_construct(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "'<|im_start|>' + message['role'] + '\\n'",
        "'<|im_start|>' + message['role'] + ('\\n\\n' if loop.index > 3 else '\\n')")
    with pytest.raises(TemplateError, match="cannot express") as caught:
        derive_layout(ChatFormat(tokenizer))
    assert "\n" not in str(caught.value)


def test_ollama_messages_prepend_system_like_the_server():
    messages = [{"role": "user", "content": "hi"}]
    assert ollama_messages(messages, "S")[0] == {"role": "system", "content": "S"}


def test_qwen3_limits_are_the_documented_ones(family_formats):
    """Qwen3: the generation prompt is the plain assistant header (thinking on by default), and
    reasoning in an earlier answer is removed by Jinja but not by the TEMPLATE -- Ollama passes
    reasoning separately from the content, so its history carries none."""
    chat_format = family_formats["qwen3"]
    layout = derive_layout(chat_format)
    assert layout.generation_prompt == "<|im_start|>assistant\n"
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello"},
               {"role": "user", "content": "Bye"}]
    jinja = chat_format.render(history, add_generation_prompt=True)
    assert "hm" not in jinja and "hm" in layout.render(history)
    plain = [history[0], {"role": "assistant", "content": "Hello"}, history[2]]
    assert layout.render(plain) == jinja


def test_smollm3_date_is_the_export_days_and_named(family_formats):
    """SmolLM3's system block prints strftime_now's date: the TEMPLATE, measured today, keeps today's
    text; frozen_date names it (the export's caveat), and is None for templates without a date."""
    import datetime

    from ducktune.export.pipeline import template_caveats

    chat_format = family_formats["smollm3"]
    layout = derive_layout(chat_format)
    today = datetime.date.today().strftime("%d %B %Y")
    assert frozen_date(chat_format.tokenizer) == today
    assert f"Today Date: {today}" in layout.system_open and "Reasoning Mode: /think" in layout.system_open
    assert today in template_caveats(chat_format, ["gguf", "ollama"])[0]
    assert template_caveats(chat_format, ["gguf"]) == []
    assert frozen_date(family_formats["qwen3"].tokenizer) is None
    assert frozen_date(family_formats["llama3.1"].tokenizer) is None  # its date_string is fixed, not today's
