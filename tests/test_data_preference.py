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


# ----------------------------------------------------------------------------- record shapes

from data_support import problem_lines, run_cli, write_json, write_jsonl  # noqa: E402
from ducktune.config import DataConfig, load_config  # noqa: E402
from ducktune.data.check import check_data, render_report, report_json  # noqa: E402
from ducktune.data.loader import load_data, read_datasets  # noqa: E402
from ducktune.data.preview import preview_samples, render_item  # noqa: E402


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def read(path, **spec):
    files = read_datasets(DataConfig(datasets=[{"path": str(path), **spec}]))[0].files
    return [s for f in files for s in f.samples], [str(i) for f in files for i in f.issues]


def shape(sample):
    return (sample.kind, [(m.role, m.content) for m in sample.messages], sample.chosen, sample.rejected,
            sample.completion, sample.label)


PAIR_SHAPES = {
    "trl strings": {"prompt": "q", "chosen": "good", "rejected": "bad"},
    "trl conversational": {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")]},
    "trl implicit prompt": {"chosen": [U("q"), A("good")], "rejected": [U("q"), A("bad")]},
    "ultrafeedback": {"prompt": "q", "prompt_id": "x1", "chosen": [U("q"), A("good")],
                      "rejected": [U("q"), A("bad")], "messages": [U("q"), A("good")],
                      "score_chosen": 8.0, "score_rejected": 3.0},
    "alpaca ranking": {"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"},
    "sharegpt ranking": {"conversations": [{"from": "human", "value": "q"}],
                         "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}},
    "openai message answers": {"messages": [U("q")], "chosen": A("good"), "rejected": A("bad")},
}


@pytest.mark.parametrize("name", list(PAIR_SHAPES))
def test_every_pair_shape_is_one_prompt_and_two_answers(tmp_path, name):
    samples, issues = read(write_jsonl(tmp_path / "p.jsonl", [PAIR_SHAPES[name]]))
    assert issues == []
    assert [shape(s) for s in samples] == [("preference", [("user", "q")], "good", "bad", None, None)]


def test_multi_turn_conversations_share_every_turn_but_the_last(tmp_path):
    history = [{"role": "system", "content": "s"}, U("q1"), A("a1"), U("q2")]
    samples, issues = read(write_jsonl(tmp_path / "p.jsonl", [
        {"chosen": history + [A("good")], "rejected": history + [A("bad")]}]))
    assert issues == []
    assert shape(samples[0])[1] == [("system", "s"), ("user", "q1"), ("assistant", "a1"), ("user", "q2")]


UNPAIRED_SHAPES = {
    "trl strings": {"prompt": "q", "completion": "good", "label": True},
    "trl conversational": {"prompt": [U("q")], "completion": [A("good")], "label": True},
    "llama-factory messages": {"messages": [U("q"), A("good")], "label": True},
    "sharegpt": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "good"}],
                 "label": "true"},
    "alpaca": {"instruction": "q", "output": "good", "label": True},
}


@pytest.mark.parametrize("name", list(UNPAIRED_SHAPES))
def test_every_unpaired_shape_is_a_prompt_a_completion_and_a_label(tmp_path, name):
    samples, issues = read(write_jsonl(tmp_path / "k.jsonl", [UNPAIRED_SHAPES[name]]))
    assert issues == []
    assert [shape(s) for s in samples] == [("unpaired", [("user", "q")], None, None, "good", True)]


def test_kto_labels_from_csv_text_and_detection_leaves_other_formats_alone(tmp_path):
    csv = tmp_path / "k.csv"
    csv.write_text("prompt,completion,label\nq,good,true\nq,bad,False\n")
    samples, issues = read(csv)
    assert issues == [] and [s.label for s in samples] == [True, False]
    # A chat with a non-boolean label, an SFT prompt/completion record, a text record with a label: not KTO.
    samples, issues = read(write_jsonl(tmp_path / "c.jsonl", [{"messages": [U("q"), A("a")], "label": "positive"}]))
    assert issues == [] and samples[0].kind == "chat"
    samples, _ = read(write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": True}]))
    assert samples[0].kind == "text"


PAIR_ERRORS = [
    ({"chosen": [U("q"), A("good")], "rejected": [U("other q"), A("bad")]},
     "rejected[0]: prompt differs from chosen's (the two conversations must share every turn but the last)"),
    ({"chosen": [U("q"), A("good")], "rejected": [U("q"), A("x"), U("y"), A("bad")]},
     "rejected[1]: prompt differs from chosen's (the two conversations must share every turn but the last)"),
    ({"prompt": "q", "chosen": "good", "rejected": "  "}, "rejected: empty answer"),
    ({"prompt": "q", "chosen": [A("")], "rejected": "bad"}, "chosen: empty answer"),
    ({"prompt": "q", "chosen": "same", "rejected": "same\n"},
     "rejected: identical to chosen: a pair needs two different answers"),
    ({"prompt": "q", "chosen": "good"}, "rejected: missing"),
    ({"chosen": "good", "rejected": "bad"},
     "prompt: missing: add the question as 'prompt' (TRL), 'instruction' (alpaca) or 'conversations', "
     "or give the answers as whole conversations"),
    ({"prompt": "q", "chosen": 3, "rejected": "bad"}, "chosen: must be a string or an assistant message, got int"),
    ({"prompt": "q", "chosen": U("good"), "rejected": "bad"}, "chosen: must be the assistant's answer, got role 'user'"),
    ({"prompt": "q", "chosen": [A("a"), A("b")], "rejected": "bad"},
     "chosen: must hold one assistant message, got 2 messages"),
    ({"prompt": 5, "chosen": "good", "rejected": "bad"}, "prompt: must be a string, got int"),
    ({"messages": [U("q"), A("a")], "chosen": "good", "rejected": "bad"},
     "messages[1]: the prompt must end with a non-empty user turn"),
    ({"chosen": [U("q"), A("good")], "rejected": [U("q"), U("bad")]},
     "rejected[1]: the conversation must end with the assistant's answer"),
]


@pytest.mark.parametrize("record,problem", PAIR_ERRORS)
def test_pair_problems_are_one_line_naming_file_line_and_field(tmp_path, record, problem):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIR_SHAPES["trl strings"]] * 6 + [record])
    samples, issues = read(path)
    assert len(samples) == 6
    assert issues == [f"{path}:7: {problem}"]


@pytest.mark.parametrize("record,problem", [
    ({"prompt": "q", "completion": "", "label": True}, "completion: empty answer"),
    ({"prompt": "q", "completion": "a", "label": "maybe"}, "label: must be true or false, got 'maybe'"),
    ({"prompt": "q", "completion": "a", "label": None}, "label: missing"),
    ({"messages": [U("q")], "label": False}, "messages[0]: the conversation must end with the assistant's answer"),
    ({"prompt": "q", "completion": [A("a"), A("b")], "label": True},
     "completion: must hold one assistant message, got 2 messages"),
])
def test_unpaired_problems(tmp_path, record, problem):
    path = write_jsonl(tmp_path / "k.jsonl", [UNPAIRED_SHAPES["trl strings"], record])
    _, issues = read(path, format="unpaired")
    assert issues == [f"{path}:2: {problem}"]


def test_template_limits_apply_to_the_prompt(tmp_path):
    from ducktune.data.formats import NormalizeOptions

    path = write_jsonl(tmp_path / "p.jsonl", [
        {"messages": [{"role": "system", "content": "s"}, U("q")], "chosen": "a", "rejected": "b"},
        {"messages": [U("q"), U("q again")], "chosen": "a", "rejected": "b"}])
    options = NormalizeOptions(require_alternation=True, allow_system=False)
    files = read_datasets(DataConfig(datasets=[str(path)]), options)[0].files
    assert [str(i) for f in files for i in f.issues] == [
        f"{path}:1: messages[0]: this model's chat template does not accept a system message",
        f"{path}:2: messages[1]: two user turns in a row (messages[0] and messages[1]) with no assistant answer "
        "between them; this model's chat template requires alternating user and assistant turns"]


# ----------------------------------------------------------------------------- LLaMA-Factory registry

@pytest.fixture
def lf_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_json(d / "dpo_en.json", [{"instruction": "q", "input": "ctx", "chosen": "good", "rejected": "bad"}])
    write_json(d / "dpo_sg.json", [{"conversations": [{"from": "human", "value": "q"}], "system": "s",
                                    "chosen": {"from": "gpt", "value": "good"},
                                    "rejected": {"from": "gpt", "value": "bad"}}])
    write_json(d / "dpo_tagged.json", [{"dialog": [{"speaker": "USER", "text": "q"}],
                                        "better": {"speaker": "BOT", "text": "good"},
                                        "worse": {"speaker": "BOT", "text": "bad"}}])
    write_json(d / "kto_en.json", [{"messages": [U("q"), A("good")], "label": True},
                                   {"messages": [U("q"), A("bad")], "label": False}])
    write_json(d / "kto_alpaca.json", [{"instruction": "q", "output": "good", "tag": False}])
    write_json(d / "dataset_info.json", {
        "dpo_en": {"file_name": "dpo_en.json", "ranking": True,
                   "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "dpo_sg": {"file_name": "dpo_sg.json", "formatting": "sharegpt", "ranking": True,
                   "columns": {"messages": "conversations", "system": "system", "chosen": "chosen",
                               "rejected": "rejected"}},
        "dpo_tagged": {"file_name": "dpo_tagged.json", "formatting": "sharegpt", "ranking": True,
                       "columns": {"messages": "dialog", "chosen": "better", "rejected": "worse"},
                       "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "USER",
                                "assistant_tag": "BOT"}},
        "kto_en": {"file_name": "kto_en.json", "formatting": "sharegpt",
                   "columns": {"messages": "messages", "kto_tag": "label"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant"}},
        "kto_alpaca": {"file_name": "kto_alpaca.json",
                       "columns": {"prompt": "instruction", "response": "output", "kto_tag": "tag"}},
    })
    return d


def lf(name, folder):
    files = read_datasets(DataConfig(datasets=[name], dataset_dir=str(folder)))[0].files
    return [shape(s) for f in files for s in f.samples], [str(i) for f in files for i in f.issues]


def test_llama_factory_ranking_datasets(lf_dir):
    assert lf("dpo_en", lf_dir) == ([("preference", [("user", "q\nctx")], "good", "bad", None, None)], [])
    assert lf("dpo_sg", lf_dir) == ([("preference", [("system", "s"), ("user", "q")], "good", "bad", None, None)], [])
    assert lf("dpo_tagged", lf_dir) == ([("preference", [("user", "q")], "good", "bad", None, None)], [])


def test_llama_factory_kto_tag_datasets(lf_dir):
    assert lf("kto_en", lf_dir) == ([("unpaired", [("user", "q")], None, None, "good", True),
                                     ("unpaired", [("user", "q")], None, None, "bad", False)], [])
    assert lf("kto_alpaca", lf_dir) == ([("unpaired", [("user", "q")], None, None, "good", False)], [])


def test_ranking_problems_use_the_files_own_names(lf_dir):
    write_json(lf_dir / "dpo_tagged.json", [{"dialog": [{"speaker": "USER", "text": "q"}],
                                             "better": {"speaker": "BOT", "text": "same"},
                                             "worse": {"speaker": "BOT", "text": "same"}}])
    _, issues = lf("dpo_tagged", lf_dir)
    assert issues == [f"{lf_dir}/dpo_tagged.json:2: worse: identical to chosen: a pair needs two different answers"]
