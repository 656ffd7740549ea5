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
from ducktune.data.preview import item_json, preview_samples, render_item  # noqa: E402


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
    "anthropic hh-rlhf": {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"},
    "orca dpo pairs (question)": {"system": "", "question": "q", "chosen": "good", "rejected": "bad"},
    "pku saferlhf (better response)": {"prompt": "q", "response_0": "bad", "response_1": "good",
                                       "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True},
}


def test_pku_saferlhf_prefers_what_columns_say_and_names_the_response(tmp_path):
    record = {"prompt": "q", "response_0": "safe", "response_1": "helpful", "better_response_id": 1,
              "safer_response_id": 0}
    path = write_jsonl(tmp_path / "pku.jsonl", [record])
    samples, issues = read(path, columns={"better_response_id": "safer_response_id"})
    assert issues == [] and (samples[0].chosen, samples[0].rejected) == ("safe", "helpful")
    samples, issues = read(write_jsonl(tmp_path / "same.jsonl", [dict(record, response_0="helpful")]))
    assert issues == [f"{tmp_path / 'same.jsonl'}:1: response_0: identical to chosen: a pair needs two different answers"]
    samples, issues = read(write_jsonl(tmp_path / "id.jsonl", [dict(record, better_response_id=2)]))
    assert issues == [f"{tmp_path / 'id.jsonl'}:1: better_response_id: must be 0 or 1 (which response is chosen), got 2"]


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


def test_hh_rlhf_transcripts_share_every_turn_but_the_last(tmp_path):
    """Anthropic's HH-RLHF (the most used DPO set) gives two whole transcripts; they were refused
    ("prompt: missing") on every record."""
    history = "\n\nHuman: Hi, duck.\n\nAssistant: Hello! \n\nHuman: What is 2+2?\nBe brief."
    samples, issues = read(write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": history + "\n\nAssistant: 4.", "rejected": history + "\n\nAssistant: Five, I think."},
        {"chosen": history + "\n\nAssistant: 4.", "rejected": history.replace("Hi,", "Hey,") + "\n\nAssistant: 5."},
        {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant:"}]))
    assert [shape(s) for s in samples] == [("preference", [("user", "Hi, duck."), ("assistant", "Hello!"),
                                                           ("user", "What is 2+2?\nBe brief.")], "4.", "Five, I think.",
                                            None, None)]
    assert issues == [f"{tmp_path / 'hh.jsonl'}:2: rejected[0]: prompt differs from chosen's (the two conversations "
                      "must share every turn but the last)", f"{tmp_path / 'hh.jsonl'}:3: rejected: empty answer"]


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
     "prompt: missing: add the question as 'prompt' (TRL), 'instruction' (alpaca), 'question' or 'conversations', "
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


# ----------------------------------------------------------------------------- loader, check, preview, convert

def pairs_file(tmp_path, n=10):
    return write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
                                                  for i in range(n)])


def test_loader_objective_switch(tmp_path):
    pairs = pairs_file(tmp_path)
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [U("q"), A("a")]}])
    loaded = load_data(DataConfig(datasets=[str(pairs), str(chats)], val_ratio=0.2), objective="preference")
    assert (len(loaded.train), len(loaded.val), loaded.unused) == (8, 2, 1)
    assert {s.kind for s in loaded.train + loaded.val} == {"preference"}
    assert not {s.where for s in loaded.train} & {s.where for s in loaded.val}
    sft = load_data(DataConfig(datasets=[str(pairs), str(chats)]))
    assert [s.kind for s in sft.train] == ["chat"] and sft.preference_pairs == 10
    # Training says which files it leaves out, per file, instead of dropping them silently.
    from ducktune.data.loader import unused_note

    assert unused_note(sft) == (f"not used: {pairs}: 10 preference pairs / KTO samples, which supervised "
                                "fine-tuning does not train")
    assert unused_note(loaded) == f"not used: {chats}: 1 chat / text samples, which preference tuning does not train"
    assert unused_note(load_data(DataConfig(datasets=[str(chats)]))) is None
    with pytest.raises(Exception, match="only preference pairs or KTO samples"):
        load_data(DataConfig(datasets=[str(pairs)]))


def test_loader_refuses_chat_only_data_for_preference_tuning_in_one_line(tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [U("q"), A("a")]}])
    with pytest.raises(DataError) as caught:
        load_data(DataConfig(datasets=[str(chats)]), objective="preference")
    assert str(caught.value) == (
        "no preference data (it holds 1 chat/text samples, which supervised fine-tuning trains on): preference "
        "tuning needs pairs such as {prompt, chosen, rejected} (TRL), chosen and rejected conversations sharing a "
        "prompt (UltraFeedback) or LLaMA-Factory ranking datasets; for KTO, {prompt, completion, label: true/false}")


def test_loader_keeps_unpaired_samples_and_validation_file(tmp_path):
    kto = write_jsonl(tmp_path / "k.jsonl", [{"prompt": f"q{i}", "completion": "a", "label": i % 2 == 0}
                                             for i in range(4)])
    val = write_jsonl(tmp_path / "v.jsonl", [{"prompt": "vq", "chosen": "g", "rejected": "b"}])
    loaded = load_data(DataConfig(datasets=[str(kto)], val_file=str(val), val_ratio=0), objective="preference")
    assert [s.label for s in loaded.train if s.kind == "unpaired"].count(True) == 2
    assert [s.kind for s in loaded.val] == ["preference"]


def test_check_with_a_config_counts_what_its_objective_trains(tmp_path, capsys):
    """`data check --config` is what `train` would use: a DPO config's mix of pairs and chats keeps the
    pairs (without a config the data decides)."""
    pairs = pairs_file(tmp_path, 4)
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [U(f"q{i}"), A("a")]} for i in range(6)])
    config = tmp_path / "dpo.yaml"
    config.write_text(f"data: {{datasets: [{pairs}, {chats}]}}\ntrain: {{objective: dpo}}\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 0 and out.splitlines()[-1] == "Usable: yes, for preference tuning", out
    config.write_text(f"data: {{datasets: [{pairs}, {chats}]}}\ntrain: {{objective: sft}}\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 0 and out.splitlines()[-1] != "Usable: yes, for preference tuning", out


def test_check_reports_pairs_and_is_usable_for_preference_tuning(tmp_path, tiny_qwen, capsys):
    path = pairs_file(tmp_path, 3)
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_qwen)
    lines = out.splitlines()
    assert code == 0, out
    assert "  kinds:   preference 3" in lines
    assert "Preference data: 3 pairs · 0 unpaired (KTO)" in lines
    assert any(line.startswith("Tokens (") and line.endswith("over 6 answers  (each answer with its prompt)")
               for line in lines)
    assert lines[-1] == "Usable: yes, for preference tuning"


def test_check_counts_truncated_answers_like_preference_training(tmp_path, tiny_qwen):
    from ducktune.data.template import ChatFormat

    chat_format = ChatFormat(load_tokenizer(tiny_qwen))
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q", "chosen": "long answer " * 40, "rejected": "short"},
        {"prompt": "word " * 300, "chosen": "a", "rejected": "b"},
        {"prompt": "q", "completion": "fine", "label": False}])
    config = load_config(None, [f"data.datasets=[{path}]", "data.cutoff_len=64", f"model.name_or_path={tiny_qwen}"])
    report = check_data(config, chat_format, skip_bad=True)
    _, stats, _ = tokenize_preference([s for f in report.files for s in f.samples], chat_format, 64, True)
    assert report.objective == "preference"
    # Sequences: the long chosen answer is truncated; both answers of the long-prompt pair lose everything.
    assert (report.tokens.samples, report.tokens.truncated, report.tokens.dropped) == (4, 3, 2)
    assert (stats["truncated"], stats["dropped"]) == (1, 1)
    data = report_json(report)
    assert data["objective"] == "preference" and data["preference"] == {"pairs": 2, "unpaired": 0, "desirable": 0}


def test_check_of_chat_data_is_unchanged_and_names_left_out_pairs(tmp_path, tiny_qwen):
    chats = write_jsonl(tmp_path / "c.jsonl", [{"messages": [U("q"), A("a")]}])
    pairs = pairs_file(tmp_path, 2)
    config = load_config(None, [f"data.datasets=[{chats}, {pairs}]"])
    report = check_data(config)
    out = render_report(report)
    assert report.objective == "sft" and report.usable
    assert "  2 preference pairs and KTO samples are checked but not trained by supervised fine-tuning" in out
    report = check_data(config, objective="preference")
    assert report.usable and len(report.loaded.train) == 2
    assert "  1 chat/text samples are checked but not trained by preference tuning" in render_report(report)


def test_check_problems_of_pairs_make_the_data_unusable(tmp_path, capsys):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                              {"prompt": "q", "chosen": "a", "rejected": "a"}])
    code, out, _ = run_cli(capsys, "data", "check", path, "--no-tokens")
    assert code == 2
    assert problem_lines(out) == [f"{path}:2: rejected: identical to chosen: a pair needs two different answers"]


def test_preview_shows_the_prompt_once_then_both_answers_trained(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen)
    assert code == 0
    body = out.split("\n", 2)[2]
    assert body.count("<|im_start|>user\nHi<|im_end|>") == 1
    lines = body.splitlines()
    chosen = lines.index(next(line for line in lines if line.startswith("── chosen: ")))
    assert lines[chosen + 1] == "«Hello!<|im_end|>»"
    assert lines[chosen + 2].startswith("── rejected: ") and lines[chosen + 3] == "«Go away.<|im_end|>»"
    assert lines[0].startswith(f"── {path}:1 · preference · prompt ") and "«" not in body.split("── chosen")[0]


def test_preview_items_match_the_training_rows(tiny_qwen):
    from ducktune.data.template import ChatFormat

    chat_format = ChatFormat(load_tokenizer(tiny_qwen))
    sample = pair(chosen="A long answer " * 20, rejected="No.")
    row = encode_preference(chat_format, sample, 50)
    item = preview_samples([sample, unpaired(label=False)], chat_format, 50)
    chosen, rejected = item[0].answers
    assert item[0].tokens == row["prompt_len"]
    assert chosen.tokens == 50 - row["prompt_len"] and chosen.truncated and not rejected.truncated
    assert chosen.trained + rejected.trained == item[0].trained == sum(
        1 for key in ("chosen_labels", "rejected_labels") for x in row[key] if x != IGNORE_INDEX)
    assert [a.name for a in item[1].answers] == ["completion"] and item[1].note == "undesirable"
    assert "── completion: " in render_item(item[1], colour=False)
    data = item_json(item[0])
    assert [a["name"] for a in data["answers"]] == ["chosen", "rejected"] and data["tokens"] == row["prompt_len"]
    assert "".join(text for text, trained in data["answers"][1]["spans"] if trained).startswith("No.")
    assert item_json(item[1])["label"] is False
    dropped = preview_samples([pair(prompt="word " * 100)], chat_format, 40)[0]
    assert "dropped in training" in dropped.note


def test_convert_keeps_pairs_and_kto_labels(tmp_path, capsys):
    source = write_jsonl(tmp_path / "k.jsonl", [UNPAIRED_SHAPES["trl conversational"],
                                                {"prompt": "q2", "completion": "meh", "label": False}])
    for target in ("messages", "sharegpt", "alpaca"):
        out = tmp_path / f"out-{target}.jsonl"
        code, _, err = run_cli(capsys, "data", "convert", source, out, "--to", target)
        assert code == 0, err
        assert [shape(s) for s in read(out)[0]] == [shape(s) for s in read(source)[0]]
