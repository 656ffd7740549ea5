"""Preference data: pairs and unpaired (KTO) samples -> token rows masked as SFT masks them."""

from __future__ import annotations

import pytest

from ducktune.data.preference import PAIR_KEYS, UNPAIRED_KEYS, encode_preference, tokenize_preference
from ducktune.data.schema import Message, Sample
from ducktune.data.template import IGNORE_INDEX, ChatFormat
from ducktune.errors import DataError
from ducktune.models.loading import load_tokenizer


@pytest.fixture(params=["tiny_qwen", "tiny_llama"])
def chat_format(request):
    return ChatFormat(load_tokenizer(request.getfixturevalue(request.param)))


def pair(prompt="What is the capital of France?", chosen="Paris.", rejected="I think it is Lyon, probably.",
         where="p.jsonl:1", system=None):
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    return Sample("preference", messages=messages, chosen=chosen, rejected=rejected, where=where)


def unpaired(completion="Paris.", label=True, where="k.jsonl:1"):
    return Sample("unpaired", messages=[Message("user", "Capital of France?")], completion=completion,
                  label=label, where=where)


def trained(ids, labels):
    return [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]


def sft_row(chat_format, sample, answer):
    """The row supervised fine-tuning builds for the conversation, training its last answer."""
    chat = Sample("chat", messages=list(sample.messages) + [Message("assistant", answer)])
    encoded = chat_format.encode(chat, 10_000, "last_assistant")
    return encoded.input_ids, [IGNORE_INDEX] + encoded.labels[1:]


def test_pair_rows_train_exactly_what_sft_trains_for_each_answer(chat_format):
    sample = pair(system="Be brief.")
    row = encode_preference(chat_format, sample, 512)
    assert set(row) == set(PAIR_KEYS)
    for name in ("chosen", "rejected"):
        ids, labels = row[f"{name}_input_ids"], row[f"{name}_labels"]
        assert len(ids) == len(labels)
        assert labels[0] == IGNORE_INDEX
        assert all(label == IGNORE_INDEX for label in labels[: row["prompt_len"]])
        assert (ids, labels) == sft_row(chat_format, sample, getattr(sample, name))
        text = chat_format.tokenizer.decode(trained(ids, labels))
        assert text.strip().startswith(getattr(sample, name).strip())
        assert text.endswith(chat_format.eot_token or chat_format.inserted_eos)


def test_prompt_is_the_rendered_prompt_once_and_shared(chat_format):
    sample = pair()
    row = encode_preference(chat_format, sample, 512)
    n = row["prompt_len"]
    assert row["chosen_input_ids"][:n] == row["rejected_input_ids"][:n]
    assert row["chosen_input_ids"][:n] == chat_format.prompt_ids(sample.message_dicts())
    assert row["chosen_input_ids"] != row["rejected_input_ids"]


def test_multi_turn_prompt_history_is_not_trained(chat_format):
    sample = Sample("preference", where="p:3", chosen="Blue.", rejected="Green!",
                    messages=[Message("user", "Hi"), Message("assistant", "Hello there, friend"),
                              Message("user", "Sky colour?")])
    row = encode_preference(chat_format, sample, 512)
    decoded = chat_format.tokenizer.decode(trained(row["chosen_input_ids"], row["chosen_labels"]))
    assert "Hello there" not in decoded and "Blue." in decoded


def test_unpaired_row(chat_format):
    row = encode_preference(chat_format, unpaired(label=False), 512)
    assert set(row) == set(UNPAIRED_KEYS)
    assert row["label"] is False
    assert chat_format.tokenizer.decode(trained(row["completion_input_ids"], row["completion_labels"])).startswith("Paris.")
    assert encode_preference(chat_format, unpaired(label=True), 512)["label"] is True


def test_too_long_keeps_the_prompt_and_cuts_the_answers(chat_format):
    sample = pair(chosen="A long answer " * 20, rejected="short")
    full = encode_preference(chat_format, sample, 10_000)
    n = full["prompt_len"]
    counts = {}
    row = encode_preference(chat_format, sample, n + 3, counts)
    assert counts == {"truncated": 1}
    assert row["prompt_len"] == n
    assert row["chosen_input_ids"] == full["chosen_input_ids"][: n + 3]
    assert len(trained(row["chosen_input_ids"], row["chosen_labels"])) == 3
    assert row["rejected_input_ids"] == full["rejected_input_ids"][: n + 3]
    # No room for one answer token: dropped.
    assert encode_preference(chat_format, sample, n) is None


def test_template_that_renders_the_prompt_per_answer_is_an_error_naming_the_record(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = ("{%- if messages[-1]['content']|length > 20 %}LONG {% endif %}"
                               + tokenizer.chat_template)
    chat_format = ChatFormat(tokenizer)
    with pytest.raises(DataError, match=r"^p.jsonl:7: rejected: the chat template renders the prompt differently"):
        encode_preference(chat_format, pair(where="p.jsonl:7"), 512)


def test_tokenize_preference_stats_and_problems(tiny_qwen):
    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = ("{%- if messages[-1]['content'] == 'boom' %}{{ raise_exception('no') }}{% endif %}"
                               + tokenizer.chat_template)
    chat_format = ChatFormat(tokenizer)
    samples = [pair(where="a:1"), pair(chosen="A long answer " * 30, where="a:2"), unpaired(label=False),
               pair(rejected="boom", where="a:4"), pair(prompt="word " * 200, where="a:5")]
    with pytest.raises(DataError, match=r"a:4: rejected: .*\n1 samples cannot be rendered"):
        tokenize_preference(samples, chat_format, 64, skip_bad=False)
    rows, stats, problems = tokenize_preference(samples, chat_format, 64, skip_bad=True)
    assert len(problems) == 1 and problems[0].startswith("a:4: rejected: the chat template refused")
    assert stats["samples"] == len(rows) == 3
    assert (stats["pairs"], stats["unpaired"], stats["desirable"]) == (2, 1, 0)
    assert (stats["truncated"], stats["dropped"], stats["template_errors"]) == (1, 1, 1)
    lengths = [len(row[k]) for row in rows for k in ("chosen_input_ids", "rejected_input_ids", "completion_input_ids")
               if k in row]
    assert stats["tokens"] == sum(lengths) and stats["max_len"] == 64
    assert stats["trained_tokens"] == sum(
        1 for row in rows for k in ("chosen_labels", "rejected_labels", "completion_labels") if k in row
        for x in row[k] if x != IGNORE_INDEX)


def test_chat_sample_is_not_a_preference_sample(chat_format):
    chat = Sample("chat", messages=[Message("user", "a"), Message("assistant", "b")])
    with pytest.raises(ValueError):
        encode_preference(chat_format, chat, 64)


def test_answer_whose_first_token_merges_with_the_prompt_still_shares_the_prompt(chat_format):
    # ChatML's "assistant\n" + "\nSure" can tokenize as one "\n\n": the prompt is what precedes both.
    sample = pair(chosen="\n\nSure, it is Paris.", rejected="Lyon.")
    row = encode_preference(chat_format, sample, 512)
    n = row["prompt_len"]
    assert row["chosen_input_ids"][:n] == row["rejected_input_ids"][:n]
    assert all(label == IGNORE_INDEX for key in ("chosen_labels", "rejected_labels") for label in row[key][:n])
    for name in ("chosen", "rejected"):
        assert (row[f"{name}_input_ids"], row[f"{name}_labels"]) == sft_row(chat_format, sample, getattr(sample, name))
