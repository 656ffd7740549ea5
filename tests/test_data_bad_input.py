"""Every bad-input case is reported as the exact `file:line: field: what` line, all in one pass,
by `ducktune data check` (exit 2) and by training (which refuses with the same lines)."""

from __future__ import annotations

import pytest

from data_support import ALTERNATING_TEMPLATE, problem_lines, run_cli
from ducktune.config import DataConfig
from ducktune.data.loader import load_data
from ducktune.errors import DataError

GOOD = '{"instruction": "q", "output": "a"}'

CASES = {
    "invalid JSON (line and column)": (
        "d.jsonl", f'{GOOD}\n{{"instruction": "q" "output": "a"}}\n',
        ["d.jsonl:2:21: (json): invalid JSON: Expecting ',' delimiter"]),
    "invalid JSON inside an array": (
        "d.json", f'[\n{GOOD},\n{{"instruction": "q", "output": }}\n]\n',
        ["d.json:3:32: (json): invalid JSON: Expecting value"]),
    "trailing comma": (
        "d.json", f"[\n{GOOD},\n{GOOD},\n]\n",
        ["d.json:4:1: (json): invalid JSON: trailing comma before ']'"]),
    "record not an object": (
        "d.jsonl", f'{GOOD}\n["q", "a"]\n',
        ["d.jsonl:2: (record): must be a JSON object, got list"]),
    "missing assistant answer (alpaca)": (
        "d.jsonl", f'{GOOD}\n{{"instruction": "q", "input": ""}}\n',
        ["d.jsonl:2: (record): does not fit the alpaca format: no 'output' field (the answer; response, completion, "
         "answer or solution also work)"]),
    "missing assistant answer (messages)": (
        "d.jsonl", '{"messages": [{"role": "user", "content": "q"}]}\n',
        ["d.jsonl:1: messages: no assistant answer: the last turn is from the user"]),
    "empty assistant answer": (
        "d.jsonl", f'{GOOD}\n{{"instruction": "q", "output": "  "}}\n',
        ["d.jsonl:2: output: empty assistant answer"]),
    "empty assistant answer (messages)": (
        "d.jsonl", '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}\n',
        ["d.jsonl:1: messages[1]: empty assistant answer"]),
    "unknown role": (
        "d.jsonl", '{"messages": [{"role": "narrator", "content": "q"}, {"role": "assistant", "content": "a"}]}\n',
        ["d.jsonl:1: messages[0].role: unknown role 'narrator' (use system, user, assistant or tool)"]),
    "non-string content": (
        "d.jsonl", '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 42}]}\n',
        ["d.jsonl:1: messages[1].content: must be a string, got int"]),
    "lone surrogate (half an emoji)": (
        "d.jsonl", '{"messages": [{"role": "user", "content": "Hi \\ud83d"}, {"role": "assistant", "content": "Yo"}]}\n',
        ["d.jsonl:1: messages[0].content: invalid Unicode (a lone surrogate \\ud83d, e.g. half of an emoji); "
         "fix or remove it"]),
    "a key twice in one record (JSON Lines)": (
        "d.jsonl", f'{GOOD}\n{{"instruction": "q", "output": "A", "output": "B"}}\n',
        ["d.jsonl:2: output: the key appears twice in one object (only the last would be read); keep one"]),
    "a key twice in one record (JSON array)": (
        "d.json", f'[\n{GOOD},\n{{"messages": [{{"role": "user", "content": "q", "content": "r"}}, '
                  '{"role": "assistant", "content": "a"}]}\n]\n',
        ["d.json:3: content: the key appears twice in one object (only the last would be read); keep one"]),
    "a key twice in the one record of a JSON file": (
        "d.json", '{"instruction": "q", "instruction": "r", "output": "a"}',
        ["d.json:1: instruction: the key appears twice in one object (only the last would be read); keep one"]),
    "empty file": ("d.json", "  \n", ["d.json: (file): the file is empty"]),
    "file in no known format": (
        "d.json", '[{"q": "q", "a": "a"}]',
        ["d.json: (format): no known format fits (the first record has fields ['a', 'q']). Tried "
         "preference: no 'chosen' and 'rejected' fields; unpaired: no 'label' field with a 'completion' "
         "(or 'messages'); sharegpt: no 'conversations' field; messages: no "
         "'messages' field; firefly: no 'conversation' field; xlam: no 'query' and 'answers' fields; glaive: no 'chat' "
         "text of 'USER:' / 'ASSISTANT:' turns; alpaca: no 'instruction'/'input' and 'output' "
         "fields; transcript: no 'text' that is a chat transcript (Llama 2 [INST], ChatML, ### Human:, ...); "
         "text: no 'text' field"]),
}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_input_is_one_exact_line(case, in_tmp, capsys):
    name, text, expected = CASES[case]
    (in_tmp / name).write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "data", "check", name, "--no-tokens")
    assert code == 2
    assert problem_lines(out) == expected
    assert "Traceback" not in out + err


@pytest.mark.parametrize("case", ["invalid JSON (line and column)", "unknown role", "empty file"])
def test_training_refuses_with_the_same_lines(case, in_tmp):
    name, text, expected = CASES[case]
    (in_tmp / name).write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_data(DataConfig(datasets=[name]))
    # One problem: one line, the advice in brackets after it (several: one line each, then a summary).
    assert [line.split(" (the training data")[0] for line in str(raised.value).splitlines()] == expected
    assert "fix" in str(raised.value)


def test_all_problems_in_one_pass_up_to_a_limit(in_tmp, capsys):
    lines = [GOOD] + [f'{{"instruction": "q{i}", "output": ""}}' for i in range(30)]
    (in_tmp / "d.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--no-tokens", "--max-problems", "25")
    assert code == 2
    shown = problem_lines(out)
    assert shown == [f"d.jsonl:{n}: output: empty assistant answer" for n in range(2, 27)]
    assert "Problems (30):" in out and "... and 5 more (--max-problems 0 shows all)" in out
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--no-tokens", "--max-problems", "0")
    assert len(problem_lines(out)) == 30


def test_problems_across_files_and_formats_in_one_report(in_tmp, capsys):
    (in_tmp / "a.jsonl").write_text('{"messages": [{"role": "user", "content": 1}]}\nnot json\n')
    (in_tmp / "b.csv").write_text("instruction,output\nq,\nq2,a2\n")
    code, out, _ = run_cli(capsys, "data", "check", "a.jsonl", "b.csv", "--no-tokens")
    assert code == 2
    assert problem_lines(out) == [
        "a.jsonl:1: messages[0].content: must be a string, got int",
        "a.jsonl:2:1: (json): invalid JSON: Expecting value",
        "b.csv:2: output: empty assistant answer",
    ]


def test_two_user_turns_when_the_template_needs_alternation(in_tmp, capsys, tiny_qwen):
    (in_tmp / "strict.jinja").write_text(ALTERNATING_TEMPLATE)
    (in_tmp / "d.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
        '{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "again"}, '
        '{"role": "assistant", "content": "a"}]}\n'
        '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a"}]}\n')
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--model", tiny_qwen, "--chat-template", "strict.jinja")
    assert code == 2
    assert problem_lines(out) == [
        "d.jsonl:2: messages[1]: two user turns in a row (messages[0] and messages[1]) with no assistant answer "
        "between them; this model's chat template requires alternating user and assistant turns",
        "d.jsonl:3: messages[0]: this model's chat template does not accept a system message",
    ]
    # The same conversation is fine for a template that does not need alternation (ChatML).
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--model", tiny_qwen)
    assert code == 0 and problem_lines(out) == []


def test_a_conversation_the_template_refuses_is_one_bad_sample_said_once(in_tmp, capsys, tiny_qwen):
    (in_tmp / "strict.jinja").write_text(
        "{%- if messages | length > 3 %}{{ raise_exception('Only one answer at once!') }}{% endif %}"
        + ALTERNATING_TEMPLATE)
    (in_tmp / "d.jsonl").write_text(GOOD + "\n" + '{"instruction": "q", "output": "a", "history": [["q0", "a0"]]}\n')
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--model", tiny_qwen, "--chat-template", "strict.jinja")
    assert code == 2
    assert problem_lines(out) == ["d.jsonl:2: (template): the chat template refused this conversation: "
                                  "Only one answer at once!"]
    assert "Samples: 1 usable, 1 bad" in out.splitlines()


def test_unreadable_file_is_not_skipped_by_skip_bad(in_tmp, capsys):
    (in_tmp / "a.json").write_text(f'[\n{GOOD},\n{{"instruction": "q", "output": }}\n]\n')
    code, out, _ = run_cli(capsys, "data", "check", "a.json", "--no-tokens", "--skip-bad")
    assert code == 2
    assert "make a whole file or dataset unreadable" in out


def test_a_lone_surrogate_is_skipped_by_skip_bad_and_never_written(in_tmp, capsys):
    """It was a TypeError in the tokenizer (check, preview, train) and a UnicodeEncodeError in convert."""
    (in_tmp / "d.jsonl").write_text('{"instruction": "Hi \\ud83d", "output": "Yo"}\n' + GOOD + "\n")
    code, out, err = run_cli(capsys, "data", "convert", "d.jsonl", "out.jsonl", "--to", "sharegpt")
    assert code == 2 and not (in_tmp / "out.jsonl").exists()
    assert "d.jsonl:1: instruction: invalid Unicode (a lone surrogate \\ud83d" in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--no-tokens", "--skip-bad")
    assert code == 0
    code, out, _ = run_cli(capsys, "data", "convert", "d.jsonl", "out.jsonl", "--to", "sharegpt", "--skip-bad")
    assert code == 0 and len((in_tmp / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    # A CSV cell holding a conversation as JSON text carries the same escape.
    (in_tmp / "d.csv").write_text('conversations\n"[{""from"": ""human"", ""value"": ""Hi \\ud83d""}, '
                                  '{""from"": ""gpt"", ""value"": ""Yo""}]"\n')
    code, out, _ = run_cli(capsys, "data", "check", "d.csv", "--no-tokens")
    assert code == 2 and problem_lines(out) == [
        "d.csv:2: conversations[0].value: invalid Unicode (a lone surrogate \\ud83d, e.g. half of an emoji); "
        "fix or remove it"]


def test_a_record_with_a_key_twice_is_skipped_by_skip_bad(in_tmp, capsys):
    """{"messages": A, "messages": B} trained B, silently."""
    (in_tmp / "d.jsonl").write_text(f'{{"instruction": "q", "output": "A", "output": "B"}}\n{GOOD}\n')
    code, out, _ = run_cli(capsys, "data", "check", "d.jsonl", "--no-tokens", "--skip-bad")
    assert code == 0 and "Samples: 1 usable, 1 bad" in out
