"""LLaMA-Factory's dataset_info.json accepted as is: file_name, formatting, ranking, columns, tags."""

from __future__ import annotations

import pytest

from data_support import problem_lines, run_cli, write_json, write_jsonl
from ducktune.config import DataConfig, load_config
from ducktune.data.loader import load_data, read_datasets


def turns(sample):
    return [(m.role, m.content) for m in sample.messages]


def load(name, folder, **spec):
    files = read_datasets(DataConfig(datasets=[{"path": name, **spec}], dataset_dir=str(folder)))[0].files
    return [s for f in files for s in f.samples], [str(i) for f in files for i in f.issues]


@pytest.fixture
def lf_dir(tmp_path):
    """A LLaMA-Factory style data folder using each mapping feature."""
    d = tmp_path / "data"
    d.mkdir()
    write_json(d / "alpaca_custom.json", [
        {"question": "Translate", "context": "hello", "answer": "bonjour", "sys": "Be brief.",
         "past": [["Hi", "Hello!"]]}])
    write_jsonl(d / "sharegpt_plain.jsonl", [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "s"}])
    write_json(d / "openai_style.json", [
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}]}])
    write_json(d / "tagged.json", [
        {"dialog": [{"speaker": "SYS", "text": "s"}, {"speaker": "USER", "text": "q"}, {"speaker": "BOT", "text": "a"}]}])
    write_json(d / "dpo_en.json", [{"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"}])
    write_json(d / "dpo_sharegpt.json", [
        {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
         "rejected": {"from": "gpt", "value": "bad"}}])
    write_jsonl(d / "c4_demo.jsonl", [{"text": "Plain text for pre-training."}])
    write_json(d / "dataset_info.json", {
        "alpaca_custom": {"file_name": "alpaca_custom.json",
                          "columns": {"prompt": "question", "query": "context", "response": "answer",
                                      "system": "sys", "history": "past"}},
        "sharegpt_plain": {"file_name": "sharegpt_plain.jsonl", "formatting": "sharegpt",
                           "columns": {"messages": "conversations", "system": "system"}},
        "openai_style": {"file_name": "openai_style.json", "formatting": "sharegpt",
                         "columns": {"messages": "messages"},
                         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                  "assistant_tag": "assistant", "system_tag": "system"}},
        "tagged": {"file_name": "tagged.json", "formatting": "sharegpt", "columns": {"messages": "dialog"},
                   "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "USER",
                            "assistant_tag": "BOT", "system_tag": "SYS"}},
        "dpo_en": {"file_name": "dpo_en.json", "ranking": True,
                   "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "dpo_sharegpt": {"file_name": "dpo_sharegpt.json", "formatting": "sharegpt", "ranking": True,
                         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "c4_demo": {"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}},
        "first_two": {"file_name": "alpaca_custom.json", "num_samples": 1,
                      "columns": {"prompt": "question", "response": "answer"}},
        "from_script": {"script_url": "my_script"},
        "from_modelscope": {"ms_hub_url": "org/name"},
        "odd_format": {"file_name": "x.json", "formatting": "markdown"},
    })
    return d


def test_alpaca_columns_prompt_query_response_system_history(lf_dir):
    samples, issues = load("alpaca_custom", lf_dir)
    assert issues == []
    assert turns(samples[0]) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                                 ("user", "Translate\nhello"), ("assistant", "bonjour")]


@pytest.mark.parametrize("name", ["sharegpt_plain", "openai_style", "tagged"])
def test_sharegpt_formatting_with_messages_column_and_tags(lf_dir, name):
    samples, issues = load(name, lf_dir)
    assert issues == []
    assert turns(samples[0]) == [("system", "s"), ("user", "q"), ("assistant", "a")]


@pytest.mark.parametrize("name", ["dpo_en", "dpo_sharegpt"])
def test_ranking_entries_are_preference_pairs(lf_dir, name):
    samples, issues = load(name, lf_dir)
    assert issues == []
    assert samples[0].kind == "preference" and (samples[0].chosen, samples[0].rejected) == ("good", "bad")


def test_prompt_only_entry_is_pretraining_text(lf_dir):
    samples, issues = load("c4_demo", lf_dir)
    assert issues == [] and samples[0].kind == "text" and samples[0].text == "Plain text for pre-training."


def test_num_samples_limits_records(lf_dir):
    write_json(lf_dir / "alpaca_custom.json", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)])
    loaded = load_data(DataConfig(datasets=["first_two"], dataset_dir=str(lf_dir)))
    assert [s.messages[-1].content for s in loaded.train] == ["a0"]


def test_problems_name_the_files_own_columns_and_tags(lf_dir):
    (lf_dir / "tagged.json").write_text(
        '[\n{"dialog": [{"speaker": "USER", "text": "q"}, {"speaker": "BOT", "text": ""}]},\n'
        '{"dialog": [{"speaker": "ALIEN", "text": "q"}]}\n]\n')
    (lf_dir / "alpaca_custom.json").write_text('[{"question": "q", "answer": 7}]')
    _, issues = load("tagged", lf_dir)
    assert issues == [f"{lf_dir}/tagged.json:2: dialog[1]: empty assistant answer",
                      f"{lf_dir}/tagged.json:3: dialog[0].speaker: unknown role 'ALIEN' (use system, user, assistant or tool)"]
    _, issues = load("alpaca_custom", lf_dir)
    assert issues == [f"{lf_dir}/alpaca_custom.json:1: answer: must be a string, got int"]


@pytest.mark.parametrize("name,message", [
    ("from_script", "from_script.script_url: dataset loading scripts run arbitrary code and are not supported; "
                    "save the data as files and set file_name"),
    ("from_modelscope", "from_modelscope.ms_hub_url: ModelScope datasets are not supported; download the files and "
                        "set file_name"),
    ("odd_format", "odd_format.formatting: unknown formatting 'markdown' (use alpaca or sharegpt)"),
])
def test_unsupported_entries_are_refused_with_one_line(lf_dir, name, message):
    _, issues = load(name, lf_dir)
    assert issues == [f"{lf_dir}/dataset_info.json: {message}"]


def test_unknown_name_suggests_a_registered_one(lf_dir):
    _, issues = load("alpaca_custon", lf_dir)
    assert issues == [f"alpaca_custon: (file): not found: no such file or folder, and no dataset named "
                      f"'alpaca_custon' in {lf_dir}/dataset_info.json (did you mean 'alpaca_custom'?)"]


def test_cli_check_by_name_with_dataset_dir(lf_dir, capsys):
    code, out, _ = run_cli(capsys, "data", "check", "sharegpt_plain", "--dataset-dir", lf_dir, "--no-tokens")
    assert code == 0, out
    assert "sharegpt_plain.jsonl  (sharegpt, 1 record)" in out and "Checked 1 file: 1 record\n" in out
    code, out, _ = run_cli(capsys, "data", "check", "nope", "--dataset-dir", lf_dir, "--no-tokens")
    assert code == 2
    assert problem_lines(out)[0].startswith("nope: (file): not found")


def test_config_names_a_registered_dataset_relative_to_the_yaml(lf_dir):
    config_file = lf_dir.parent / "run.yaml"
    config_file.write_text("data:\n  dataset_dir: data\n  datasets:\n    - path: tagged\n      repeat: 3\n")
    config = load_config(config_file)
    loaded = load_data(config.data)
    assert len(loaded.train) == 3
    assert turns(loaded.train[0]) == [("system", "s"), ("user", "q"), ("assistant", "a")]


def test_explicit_config_options_win_over_the_entry(lf_dir):
    write_json(lf_dir / "alpaca_custom.json", [{"question": "q", "answer": "a", "other": "b"}])
    samples, issues = load("first_two", lf_dir, columns={"output": "other"})
    assert issues == [] and samples[0].messages[-1].content == "b"


def test_a_mapped_column_no_record_has_is_named_with_the_files_columns(lf_dir, tmp_path, capsys):
    """--column output=answr ended in 'no known format fits'; the same from dataset_info.json too."""
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    code, out, _ = run_cli(capsys, "data", "check", path, "--no-tokens", "--column", "instruction=question",
                           "--column", "output=answr")
    assert code == 2 and problem_lines(out) == [
        f"{path}: answr: the column mapped to 'output' is in no record (the records' fields: answer, question)"]
    write_json(lf_dir / "dataset_info.json", {"qa": {"file_name": str(path), "columns": {
        "prompt": "question", "response": "answr", "system": "sys", "history": "past"}}})
    samples, issues = load("qa", lf_dir)  # the optional system and history columns may be absent
    assert issues == [f"{path}: answr: the column mapped to 'output' is in no record "
                      "(the records' fields: answer, question)"]


def test_an_unknown_field_in_columns_is_refused_with_a_suggestion(lf_dir, tmp_path, capsys):
    """--column instrucion=question was accepted and never read."""
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    code, _, err = run_cli(capsys, "data", "check", path, "--no-tokens", "--column", "instrucion=question")
    assert code == 2 and err.strip() == ("error: --column instrucion=question: unknown field 'instrucion', did you "
                                         "mean 'instruction'? (FIELD=COLUMN: ducktune's field, then the file's column)")
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  datasets:\n    - {{path: {path}, columns: {{instrucion: question}}}}\n")
    code, _, err = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 2 and err.strip() == (f"error: {config}: data.datasets.0.columns: unknown field 'instrucion', did "
                                         "you mean 'instruction'? (columns map ducktune's field name to the file's)")
    write_json(lf_dir / "dataset_info.json", {"qa": {"file_name": str(path), "columns": {"promt": "question"}}})
    _, issues = load("qa", lf_dir)
    assert issues == [f"{lf_dir / 'dataset_info.json'}: qa.columns.promt: unknown field 'promt', did you mean 'prompt'?"]


def test_glaive_style_tool_call_entry_reads_tools_and_tool_turns(tmp_path):
    """LLaMA-Factory's glaive_toolcall entries: a renamed tools column holds JSON text of bare function
    descriptions; function_call / observation turns (renamed by tags) are the call and its result."""
    import json

    d = tmp_path / "data"
    d.mkdir()
    tools = json.dumps([{"name": "convert", "description": "Convert money", "parameters": {"type": "object"}}])
    write_json(d / "glaive.json", [{"chat": [
        {"who": "human", "says": "100 USD in EUR?"},
        {"who": "call", "says": '{"name": "convert", "arguments": {"amount": 100}}'},
        {"who": "result", "says": '{"eur": 92}'},
        {"who": "gpt", "says": "92 EUR."}], "fns": tools}])
    write_json(d / "dataset_info.json", {"glaive": {
        "file_name": "glaive.json", "formatting": "sharegpt", "columns": {"messages": "chat", "tools": "fns"},
        "tags": {"role_tag": "who", "content_tag": "says", "user_tag": "human", "assistant_tag": "gpt",
                 "function_tag": "call", "observation_tag": "result"}}})
    samples, issues = load("glaive", d)
    assert issues == []
    (sample,) = samples
    assert turns(sample) == [("user", "100 USD in EUR?"), ("assistant", ""), ("tool", '{"eur": 92}'),
                             ("assistant", "92 EUR.")]
    assert sample.messages[1].tool_calls[0].arguments == {"amount": 100}
    assert sample.tools == [{"type": "function", "function": json.loads(tools)[0]}]
    # A call to a function the renamed column does not define is named by the file's own field names.
    write_json(d / "glaive.json", [{"chat": [
        {"who": "human", "says": "q"}, {"who": "call", "says": '{"name": "other", "arguments": {}}'},
        {"who": "result", "says": "r"}, {"who": "gpt", "says": "a"}], "fns": tools}])
    _, issues = load("glaive", d)
    assert issues == [f"{d}/glaive.json:2: chat[1]: calls 'other', which the record's tools do not define "
                      "(defined: convert)"]
