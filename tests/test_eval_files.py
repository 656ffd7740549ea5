"""Evaluation files: MMLU / C-Eval / CMMLU layouts read; bad files are one line, exit 2, nothing written."""

import json
from importlib import resources
from pathlib import Path

import pytest

from ducktune.cli import main
from ducktune.config import dump_config, load_config
from ducktune.errors import UserError
from ducktune.eval.choices import choice_prompt, looks_like_choices, read_choices
from ducktune.eval.inputs import read_eval_inputs


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_three_layouts_and_jsonl(tmp_path):
    mmlu = write(tmp_path / "astronomy_test.csv", 'What orbits the Earth?,The Sun,The Moon,Mars,"Venus, maybe",B\n')
    ceval = write(tmp_path / "computer_network_val.csv",
                  "id,question,A,B,C,D,answer,explanation\n0,TCP is?,a protocol,a cable,a chip,a port,A,\n")
    cmmlu = write(tmp_path / "agronomy.csv", ",Question,A,B,C,D,Answer\n0,水稻是?,粮食,水果,蔬菜,花,A\n")
    jsonl = write(tmp_path / "quiz.jsonl", json.dumps({"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1,
                                                      "subject": "math"}) + "\n")
    items = [i for f in (mmlu, ceval, cmmlu, jsonl) for i in read_choices(f)]
    assert [(i.subject, i.answer) for i in items] == [("astronomy", "B"), ("computer_network", "A"),
                                                       ("agronomy", "A"), ("math", "B")]
    assert items[0].choices[3] == "Venus, maybe" and items[0].where == f"{mmlu}:1"
    assert choice_prompt(items[0]).splitlines()[:3] == ["What orbits the Earth?", "A. The Sun", "B. The Moon"]
    assert all(looks_like_choices(f) for f in (mmlu, ceval, cmmlu, jsonl, tmp_path))
    chat = write(tmp_path / "chat.jsonl", json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    assert not looks_like_choices(chat)


def test_the_bundled_sample_reads():
    folder = Path(str(resources.files("ducktune.resources").joinpath("choices_sample")))
    items = read_choices(folder)
    assert len(items) == 12
    assert {i.subject for i in items} == {"general_knowledge", "chinese_common_sense"}


@pytest.mark.parametrize("name, text, expected", [
    ("no_answer.csv", "question,A,B,C,D\nQ?,a,b,c,d\n",
     "{f}:1: answer: missing column (multiple-choice files need question, A, B, C, D, answer)"),
    ("five.csv", "question,A,B,C,D,E,answer\nQ?,a,b,c,d,e,B\n",
     "{f}:1: E: 5 choices (A-E); MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)"),
    ("five_test.csv", "Q?,a,b,c,d,e,E\n", "{f}:1: E: 5 choices (A-E); MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)"),
    ("five.jsonl", json.dumps({"question": "Q?", "choices": list("abcde"), "answer": "B"}) + "\n",
     "{f}:1: choices: 5 choices; MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)"),
    ("bad_answer.csv", "question,A,B,C,D,answer\nQ?,a,b,c,d,B\nR?,a,b,c,d,F\n", "{f}:3: answer: 'F' is not one of A, B, C, D"),
    # Headerless MMLU rows whose choices are spelled a-d are data, not a header: the short row is named.
    ("mmlu_short.csv", "What?,a,b,c,d,A\nWho?,a,b\n", "{f}:2: columns: 3 columns; MMLU rows have 6 (question, A, B, C, D, answer)"),
    ("empty.csv", "", "{f}: empty file (no samples or questions)"),
    ("empty.jsonl", "\n\n", "{f}: empty file (no samples or questions)"),
])
def test_bad_files_are_one_line(tmp_path, name, text, expected):
    f = write(tmp_path / name, text)
    with pytest.raises(UserError) as err:
        read_eval_inputs([str(f)])
    assert str(err.value) == expected.format(f=f)


def fake_run(tmp_path) -> Path:
    """A run directory complete enough for `ducktune eval` to reach its file checks."""
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "completed", "method": "lora"}), encoding="utf-8")
    (run / "config.yaml").write_text(dump_config(load_config(None, [])), encoding="utf-8")
    return run


@pytest.mark.parametrize("name, text, field", [
    ("no_answer.csv", "question,A,B,C,D\nQ?,a,b,c,d\n", ":1: answer: missing column"),
    ("five.csv", "question,A,B,C,D,E,answer\nQ?,a,b,c,d,e,B\n", ":1: E: 5 choices"),
    ("empty.csv", "", ": empty file"),
    # A chat file with one bad record: one line (the problem and the advice), not the problem then a summary.
    ("chat.jsonl", '{"instruction": "hi", "output": "x"}\n{"instruction": 5\n', ":2:18: (json): invalid JSON"),
    # KTO samples hold no pair to compare (pairs are scored as preference data): refused, not an empty set.
    ("kto.jsonl", '{"prompt": "hi", "completion": "a", "label": true}\n', ":1: KTO samples (unpaired record) hold no"),
])
def test_cli_bad_eval_file_exit_2_and_nothing_written(tmp_path, capsys, name, text, field):
    run = fake_run(tmp_path)
    before = sorted(p.name for p in run.rglob("*"))
    f = write(tmp_path / name, text)
    code = main(["eval", str(run), "--data", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: {f}{field}")
    assert sorted(p.name for p in run.rglob("*")) == before


def test_the_summary_says_why_there_is_no_held_out_loss():
    """A run without a validation split (the quickstart's) evaluated without --data: no loss row, and
    the README promises a held-out loss, so the summary says why and what to pass."""
    from ducktune.eval.report import print_summary

    lines: list[str] = []
    print_summary({"loss": {"base": None, "tuned": None}}, "runs/x/eval", log=lines.append)
    assert [line for line in lines if line.startswith("Held-out loss: none (the run has no validation split")]
    lines.clear()
    print_summary({"loss": {"base": 2.5, "tuned": 1.25}}, "runs/x/eval", log=lines.append)
    assert not [line for line in lines if line.startswith("Held-out loss: none")]
    assert any("1.25" in line for line in lines)
