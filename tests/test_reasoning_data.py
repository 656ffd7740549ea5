"""Answers whose reasoning comes apart from their text (`reasoning_content`, DeepSeek's API and Qwen3's
shape): written by templates that have the field, folded into the text as <think>...</think> for the
others, trained either way, and refused where prompts would close the reasoning block before the answer."""

from __future__ import annotations

import functools

import pytest

from ducktune.data.formats import NormalizeOptions, normalize
from ducktune.data.schema import Record
from ducktune.data.template import ChatFormat
from ducktune.data.template_rules import template_options, writes_reasoning
from ducktune.models.families import FAMILIES, family, template_text
from ducktune.models.loading import pin_thinking
from ducktune.models.standin_tokenizers import build_tokenizer

ANSWER = {"role": "assistant", "reasoning_content": "Two plus two makes four.", "content": "4"}
RECORD = {"messages": [{"role": "user", "content": "2+2?"}, ANSWER]}


def norm(record, options=NormalizeOptions()):
    issues = []
    sample = normalize(Record(record, "r.json", 1), "messages", issues, options)
    return sample, [str(i) for i in issues]


@functools.lru_cache(maxsize=None)
def tokenizer(family_id: str, thinking: bool | None = None):
    spec = family(family_id)
    tok = build_tokenizer(spec.tokenizer, spec.specials, template_text(spec.template))
    if thinking is not None:
        tok.chat_template = pin_thinking(tok.chat_template, thinking)
    return tok


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning", "thinking"])
def test_separate_reasoning_is_kept_never_dropped(key):
    answer = {"role": "assistant", key: "Two plus two makes four.", "content": "4"}
    sample, issues = norm({"messages": [RECORD["messages"][0], answer]})
    assert issues == [] and sample.messages[1].reasoning == "Two plus two makes four."
    assert sample.message_dicts()[1] == {"role": "assistant", "content": "4", "reasoning_content": "Two plus two makes four."}
    plain, _ = norm({"messages": [RECORD["messages"][0], {"role": "assistant", "content": "4"}]})
    assert plain.key() != sample.key()  # not a duplicate of the same answer without its reasoning


def test_templates_without_the_field_get_it_folded_into_the_text_and_closed_prompts_refuse_it():
    sample, issues = norm(RECORD, NormalizeOptions(writes_reasoning=False))
    assert issues == [] and sample.messages[1].reasoning is None
    assert sample.messages[1].content == "<think>\nTwo plus two makes four.\n</think>\n\n4"
    for record in (RECORD, {"messages": [RECORD["messages"][0], {"role": "assistant", "content": "<think>r</think>4"}]}):
        _, issues = norm(record, NormalizeOptions(reasoning_closed=True))
        assert len(issues) == 1 and issues[0].startswith(
            "r.json:1: messages[1]: this answer carries reasoning, but the chat template's prompts open every answer "
            "with an empty <think></think> (model.enable_thinking: false)")


def test_which_families_templates_write_separate_reasoning():
    found = sorted(spec.id for spec in FAMILIES if writes_reasoning(tokenizer(spec.id)))
    assert found == ["gemma4", "gpt-oss", "qwen3", "qwen3-moe", "qwen3.5"]


@pytest.mark.parametrize("family_id, thinking", [("qwen3", True), ("llama3", None), ("gpt-oss", None)])
def test_the_reasoning_is_trained_with_the_answer(family_id, thinking):
    """Qwen3 (thinking mode) and gpt-oss write the field; Llama 3 has none, so it is folded into the text:
    either way the reasoning and the answer are the trained text, the question is not."""
    fmt = ChatFormat(tokenizer(family_id, thinking))
    sample, issues = norm(RECORD, template_options(fmt))
    assert issues == []
    encoded = fmt.encode(sample, 4096)
    trained = "".join(text for text, is_trained in fmt.decode_spans(encoded) if is_trained)
    untrained = "".join(text for text, is_trained in fmt.decode_spans(encoded) if not is_trained)
    assert "Two plus two makes four." in trained and "4" in trained and "2+2?" in untrained
    assert trained.index("Two plus two") < trained.rindex("4")


def test_qwen3_in_non_thinking_mode_refuses_reasoning_data():
    fmt = ChatFormat(tokenizer("qwen3", False))
    _, issues = norm(RECORD, template_options(fmt))
    assert len(issues) == 1 and "set model.enable_thinking: true" in issues[0]
