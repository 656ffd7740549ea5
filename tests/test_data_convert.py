"""`ducktune data convert`: round trips give the same samples; what cannot fit is refused by name."""

from __future__ import annotations

import json

import pytest

from data_support import run_cli, write_json, write_jsonl
from ducktune.config import DataConfig
from ducktune.data.loader import read_datasets

SOURCES = {
    "alpaca": [
        {"instruction": "Translate", "input": "hello", "output": "bonjour", "system": "Be brief.",
         "history": [["Hi", "Hello!"], ["How are you?", "Fine."]]},
        {"instruction": "", "input": "What is 2+2?", "output": "4"},
    ],
    "sharegpt": [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " spaced answer \n"}],
         "system": "sys"},
    ],
    "messages": [
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                      {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                      {"role": "assistant", "content": "a2"}]},
    ],
    "firefly": [{"conversation": [{"human": "q", "assistant": "a"}], "category": "x"}],
}


def samples_in(path):
    files = read_datasets(DataConfig(datasets=[str(path)]))[0].files
    assert all(not f.issues for f in files), [str(i) for f in files for i in f.issues]
    return [(s.kind, [(m.role, m.content) for m in s.messages], s.chosen, s.rejected, s.text)
            for f in files for s in f.samples]


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("target", ["messages", "alpaca", "sharegpt"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_round_trip_keeps_the_samples(tmp_path, capsys, source, target, suffix):
    original = write_json(tmp_path / "in.json", SOURCES[source])
    out = tmp_path / f"out{suffix}"
    code, stdout, _ = run_cli(capsys, "data", "convert", original, out, "--to", target)
    assert code == 0, stdout
    assert samples_in(out) == samples_in(original)
    first = (json.loads(out.read_text()) if suffix == ".json" else
             [json.loads(line) for line in out.read_text().splitlines()])[0]
    expected_field = {"messages": "messages", "alpaca": "instruction", "sharegpt": "conversations"}[target]
    assert expected_field in first
    # And back again.
    back = tmp_path / "back.jsonl"
    assert run_cli(capsys, "data", "convert", out, back, "--to", source if source in SOURCES and source != "firefly"
                   else "messages")[0] == 0
    assert samples_in(back) == samples_in(original)


def test_multi_turn_with_system_to_alpaca_uses_history_and_system(tmp_path, capsys):
    original = write_json(tmp_path / "in.json", SOURCES["messages"])
    out = tmp_path / "out.json"
    assert run_cli(capsys, "data", "convert", original, out, "--to", "alpaca")[0] == 0
    assert json.loads(out.read_text()) == [
        {"instruction": "q2", "input": "", "output": "a2", "system": "s", "history": [["q1", "a1"]]}]


def test_preference_pairs_keep_chosen_and_rejected(tmp_path, capsys):
    original = write_jsonl(tmp_path / "in.jsonl", [
        {"prompt": "q", "chosen": "good", "rejected": "bad"},
        {"chosen": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                    {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                    {"role": "assistant", "content": "good"}],
         "rejected": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                      {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                      {"role": "assistant", "content": "bad"}]}])
    # alpaca: LLaMA-Factory's ranking shape, which ducktune reads (it was refused)
    assert run_cli(capsys, "data", "convert", original, tmp_path / "alpaca.json", "--to", "alpaca")[0] == 0
    assert json.loads((tmp_path / "alpaca.json").read_text())[1] == {
        "instruction": "q2", "input": "", "system": "s", "history": [["q1", "a1"]], "chosen": "good", "rejected": "bad"}
    for target in ("messages", "sharegpt", "alpaca"):
        out = tmp_path / f"{target}.jsonl"
        assert run_cli(capsys, "data", "convert", original, out, "--to", target)[0] == 0
        assert samples_in(out) == samples_in(original)


def test_refusals_name_every_record_and_write_nothing(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "chats.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
        '{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}, '
        '{"role": "assistant", "content": "a"}]}\n')
    (folder / "pairs.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}], "chosen": "good", '
        '"rejected": "bad"}\n')
    out = tmp_path / "out.json"
    code, _, err = run_cli(capsys, "data", "convert", folder, out, "--to", "alpaca")
    assert code == 2
    assert err.splitlines() == [
        f"error: {folder}/chats.jsonl:2: messages[1]: cannot be written as alpaca: turns do not alternate "
        "user/assistant here (user turn where an assistant turn belongs); alpaca holds only question/answer pairs, "
        "convert --to messages or --to sharegpt",
        f"error: {folder}/pairs.jsonl:1: messages[1]: cannot be written as alpaca: turns do not alternate "
        "user/assistant here (user turn where an assistant turn belongs); alpaca holds only question/answer pairs, "
        "convert --to messages or --to sharegpt",
        "error: 2 problems: 2 of 3 records cannot be written as alpaca; nothing was written",
    ]
    assert not out.exists()


def test_text_records_fit_no_chat_format(tmp_path, capsys):
    original = write_jsonl(tmp_path / "in.jsonl", [{"text": "plain"}])
    code, _, err = run_cli(capsys, "data", "convert", original, tmp_path / "out.jsonl", "--to", "messages")
    assert code == 2
    assert err.splitlines() == [f"error: {original}:1: text: cannot be written as messages: plain text "
                                "(continued pre-training) has no conversation turns (1 of 1 records cannot be "
                                "written as messages; nothing was written)"]


def test_bad_input_refused_unless_skip_bad(tmp_path, capsys):
    original = tmp_path / "in.jsonl"
    original.write_text('{"instruction": "q", "output": "a"}\nnot json\n')
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "data", "convert", original, out, "--to", "messages")
    assert code == 2 and err.splitlines() == [f"error: {original}:2:1: (json): invalid JSON: Expecting value (the "
                                              "input data has problems; fix them or pass --skip-bad to convert the "
                                              "good records)"]
    code, stdout, _ = run_cli(capsys, "data", "convert", original, out, "--to", "messages", "--skip-bad")
    assert code == 0 and "Wrote 1 records as messages" in stdout and "(1 bad records left out)" in stdout


def test_output_rules(tmp_path, capsys):
    original = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "q", "output": "a"}])
    code, _, err = run_cli(capsys, "data", "convert", original, tmp_path / "out.csv", "--to", "messages")
    assert code == 2 and "the output must end with .json" in err
    code, _, err = run_cli(capsys, "data", "convert", original, original, "--to", "messages", "--force")
    assert code == 2 and "the output would overwrite the input" in err
    (tmp_path / "exists.json").write_text("[]")
    code, _, err = run_cli(capsys, "data", "convert", original, tmp_path / "exists.json", "--to", "messages")
    assert code == 2 and "already exists; pass --force" in err


def test_csv_with_column_mapping_converts(tmp_path, capsys):
    original = tmp_path / "in.csv"
    original.write_text("question,answer\nq,a\n")
    out = tmp_path / "out.json"
    code, _, _ = run_cli(capsys, "data", "convert", original, out, "--to", "sharegpt",
                         "--column", "instruction=question", "--column", "output=answer")
    assert code == 0
    assert json.loads(out.read_text()) == [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]


def test_a_mapping_to_a_missing_column_is_not_silently_ignored(tmp_path, capsys):
    """--column output=answr (a typo) on a file that also has an `output` column must not train on
    `output`: the mapped column is missing, and the problem names it."""
    original = tmp_path / "in.json"
    original.write_text(json.dumps([{"instruction": "q", "output": "wrong", "answer": "right"}]))
    code, out, _ = run_cli(capsys, "data", "check", original, "--column", "output=answr")
    assert code == 2 and "answr" in out
    code, _, _ = run_cli(capsys, "data", "convert", original, tmp_path / "o.json", "--to", "sharegpt",
                         "--column", "output=answer")
    assert code == 0 and json.loads((tmp_path / "o.json").read_text())[0]["conversations"][1]["value"] == "right"


TOOL_CHATS = [
    {"messages": [{"role": "user", "content": "Weather and time in Oslo?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "a1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
                      {"id": "a2", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "a1", "content": "3C"},
                  {"role": "tool", "tool_call_id": "a2", "content": "noon"},
                  {"role": "assistant", "content": "3C at noon."}],
     "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
               {"type": "function", "function": {"name": "clock", "parameters": {}}}]},
]


def full_keys(path):
    files = read_datasets(DataConfig(datasets=[str(path)]))[0].files
    assert all(not f.issues for f in files), [str(i) for f in files for i in f.issues]
    return [s.key() for f in files for s in f.samples]


@pytest.mark.parametrize("target", ["messages", "sharegpt"])
def test_tool_calls_round_trip_and_alpaca_refuses_them(tmp_path, capsys, target):
    """Calls, ids, results and tool definitions survive messages and LLaMA-Factory's sharegpt; alpaca has no field."""
    original = write_json(tmp_path / "in.json", TOOL_CHATS)
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "data", "convert", original, out, "--to", target)[0] == 0
    assert full_keys(out) == full_keys(original)
    record = json.loads(out.read_text().splitlines()[0])
    if target == "sharegpt":
        assert [t["from"] for t in record["conversations"]] == ["human", "function_call", "observation", "observation", "gpt"]
        assert isinstance(record["tools"], str)  # LLaMA-Factory's tools column: JSON text
    code, _, err = run_cli(capsys, "data", "convert", original, tmp_path / "a.json", "--to", "alpaca")
    assert code == 2 and "tools: cannot be written as alpaca: tool definitions, calls and results have no alpaca field" in err


def test_an_answer_with_text_and_calls_has_no_sharegpt_turn(tmp_path, capsys):
    chat = json.loads(json.dumps(TOOL_CHATS[0]))
    chat["messages"][1]["content"] = "Let me look."
    original = write_json(tmp_path / "in.json", [chat])
    code, _, err = run_cli(capsys, "data", "convert", original, tmp_path / "out.json", "--to", "sharegpt")
    assert code == 2 and "messages[1]: cannot be written as sharegpt: an answer with both text and tool calls" in err


TOOL_PAIRS = [  # DPO on calls: the prompt calls and gets a result; chosen calls again, rejected answers in text
    {"prompt": TOOL_CHATS[0]["messages"][:4],
     "chosen": [{"role": "assistant", "content": "", "tool_calls": [
         {"id": "a3", "type": "function", "function": {"name": "weather", "arguments": {"city": "Bergen"}}}]}],
     "rejected": [{"role": "assistant", "content": "3C at noon."}],
     "tools": TOOL_CHATS[0]["tools"]},
    {"prompt": [{"role": "user", "content": "Time?"}], "completion": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "b1", "type": "function", "function": {"name": "clock", "arguments": {}}}]}], "label": True,
     "tools": TOOL_CHATS[0]["tools"]},
]


@pytest.mark.parametrize("target", ["messages", "sharegpt"])
def test_preference_answers_that_call_tools_round_trip(tmp_path, capsys, target):
    """A chosen answer that calls (and a KTO completion that calls) keeps its calls through messages and
    LLaMA-Factory's sharegpt (a function_call answer); alpaca has no field for them."""
    for i, record in enumerate(TOOL_PAIRS):
        original = write_json(tmp_path / f"in{i}.json", [record])
        out = tmp_path / f"out{i}.jsonl"
        assert run_cli(capsys, "data", "convert", original, out, "--to", target)[0] == 0
        assert full_keys(out) == full_keys(original)
    pair = json.loads((tmp_path / "out0.jsonl").read_text().splitlines()[0])
    if target == "sharegpt":
        assert pair["chosen"]["from"] == "function_call" and pair["rejected"] == {"from": "gpt", "value": "3C at noon."}
    else:
        assert pair["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "Bergen"}
    code, _, err = run_cli(capsys, "data", "convert", tmp_path / "in0.json", tmp_path / "a.json", "--to", "alpaca")
    assert code == 2 and "tools: cannot be written as alpaca" in err
