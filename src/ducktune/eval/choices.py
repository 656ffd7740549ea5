"""Multiple-choice files in the MMLU / C-Eval / CMMLU layout, and their prompts.

Accepted layouts (one subject per file; a folder of them is one benchmark):
- MMLU (`data/test/<subject>_test.csv`): no header, six columns: question, A, B, C, D, answer;
- C-Eval (`val/<subject>_val.csv`): header `id,question,A,B,C,D,answer,explanation`;
- CMMLU (`test/<subject>.csv`): header `,Question,A,B,C,D,Answer`;
- JSON Lines: `{"question": ..., "A": ..., "B": ..., "C": ..., "D": ..., "answer": "B"}` or
  `{"question": ..., "choices": [four strings], "answer": "B" | 1}`, optional `subject`.

The subject is the file name without `_test`/`_val`/`_dev` (or a record's `subject`).
Every problem is one line `file:line: field: what` (a UserError: exit code 2).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ducktune.errors import UserError

LETTERS = ("A", "B", "C", "D")
SUFFIXES = ("_test", "_val", "_dev", "_validation")
EXTENSIONS = (".csv", ".tsv", ".jsonl")


@dataclass
class ChoiceItem:
    question: str
    choices: list[str]
    answer: str  # "A".."D"
    subject: str
    where: str


def choice_prompt(item: ChoiceItem) -> str:
    """The user message a multiple-choice question is asked with (zero-shot); the answer is one letter."""
    lines = [item.question.strip()] + [f"{letter}. {text.strip()}" for letter, text in zip(LETTERS, item.choices)]
    return "\n".join(lines) + "\nAnswer with the letter of the correct choice."


def subject_of(path: Path) -> str:
    stem = path.stem
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _error(where: str, field: str, message: str) -> UserError:
    return UserError(f"{where}: {field}: {message}")


def _header_columns(row: list[str]) -> dict[str, int] | None:
    """Column index of question, A-D, answer when `row` is a header (None when it is data)."""
    names = [c.strip().lower() for c in row]
    # A data row may hold choices spelled a-d too; a header also names the question or the answer.
    if not {"a", "b", "c", "d"} <= set(names) or not {"question", "answer"} & set(names):
        return None
    return {name: names.index(name) for name in ("question", "a", "b", "c", "d", "answer", "e", "subject")
            if name in names}


def _extra_choices(keys, where: str) -> None:
    extra = [k for k in keys if len(k) == 1 and k.upper() in "EFGH"]
    if extra:
        n = 4 + len(extra)
        raise _error(where, extra[0].upper(), f"{n} choices (A-{chr(ord('A') + n - 1)}); "
                                              "MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)")


def _answer_letter(value, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 4:
        return LETTERS[value]
    text = str(value).strip().upper() if value is not None else ""
    if text not in LETTERS:
        raise _error(where, "answer", f"{value!r} is not one of A, B, C, D")
    return text


def _item(question, choices: list, answer, subject: str, where: str) -> ChoiceItem:
    if not isinstance(question, str) or not question.strip():
        raise _error(where, "question", "missing or empty")
    for letter, text in zip(LETTERS, choices):
        if text is None or not str(text).strip():
            raise _error(where, letter, "missing or empty choice")
    return ChoiceItem(question, [str(c) for c in choices], _answer_letter(answer, where), subject, where)


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(first line of the record, fields) for every non-blank CSV/TSV record."""
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ",")
    rows, line = [], 1
    for fields in reader:
        if any(f.strip() for f in fields):
            rows.append((line, fields))
        line = reader.line_num + 1
    return rows


def read_csv_choices(path: Path) -> list[ChoiceItem]:
    rows = _csv_rows(path)
    if not rows:
        raise UserError(f"{path}: empty file (no questions)")
    subject = subject_of(path)
    columns = _header_columns(rows[0][1])
    if columns is None:  # MMLU: no header, question, A, B, C, D, answer
        first_line, first = rows[0]
        if len(first) == 7 and first[-1].strip().upper() in "ABCDE":
            raise _error(f"{path}:{first_line}", "E", "5 choices (A-E); MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)")
        if len(first) != 6:
            raise _error(f"{path}:{first_line}", "header",
                         "not a multiple-choice file: expected a header with question, A, B, C, D, answer "
                         f"or MMLU's six columns, got {len(first)} columns")
        items = []
        for line, f in rows:
            if len(f) != 6:
                raise _error(f"{path}:{line}", "columns", f"{len(f)} columns; MMLU rows have 6 (question, A, B, C, D, answer)")
            items.append(_item(f[0], f[1:5], f[5], subject, f"{path}:{line}"))
        return items
    _extra_choices([name for name in columns if name == "e"], f"{path}:{rows[0][0]}")
    for needed in ("question", "answer"):
        if needed not in columns:
            raise _error(f"{path}:{rows[0][0]}", needed,
                         "missing column (multiple-choice files need question, A, B, C, D, answer)")
    items = []
    for line, fields in rows[1:]:
        cell = lambda name: fields[columns[name]] if columns[name] < len(fields) else None  # noqa: E731
        items.append(_item(cell("question"), [cell(x) for x in "abcd"], cell("answer"),
                           (cell("subject") if "subject" in columns else None) or subject, f"{path}:{line}"))
    if not items:
        raise UserError(f"{path}: no questions (only a header)")
    return items


def read_jsonl_choices(path: Path) -> list[ChoiceItem]:
    items = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(where, "(json)", f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise _error(where, "(record)", "must be a JSON object")
        if "choices" in record:
            choices = record["choices"]
            if not isinstance(choices, list) or len(choices) != 4:
                count = len(choices) if isinstance(choices, list) else "no"
                raise _error(where, "choices", f"{count} choices; MMLU / C-Eval / CMMLU questions have exactly 4 (A-D)")
        else:
            _extra_choices([k for k in record if k.upper() == k], where)
            choices = [record.get(letter) for letter in LETTERS]
        if "answer" not in record:
            raise _error(where, "answer", "missing (the letter of the correct choice, A-D)")
        items.append(_item(record.get("question"), choices, record["answer"],
                           str(record.get("subject") or subject_of(path)), where))
    if not items:
        raise UserError(f"{path}: empty file (no questions)")
    return items


def choice_files(path: Path) -> list[Path]:
    """The multiple-choice files a path names: itself, or the CSV/JSONL files in a folder (recursively)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in EXTENSIONS and p.is_file())
    return [path]


def read_choices(path: str | Path) -> list[ChoiceItem]:
    """Every question in a file or folder; raises a one-line UserError on the first problem."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    files = choice_files(path)
    if not files:
        raise UserError(f"{path}: no .csv, .tsv or .jsonl files in this folder")
    items: list[ChoiceItem] = []
    for file in files:
        items += read_jsonl_choices(file) if file.suffix == ".jsonl" else read_csv_choices(file)
    return items


def looks_like_choices(path: str | Path) -> bool:
    """True when a file (or a folder's first file) is in a multiple-choice layout: an A-D header,
    MMLU's headerless six (or seven) columns ending in a letter, or JSON Lines with choices / A-D."""
    files = [f for f in choice_files(Path(path)) if f.suffix in EXTENSIONS] if Path(path).exists() else []
    if not files:
        return False
    file = files[0]
    try:
        if file.suffix == ".jsonl":
            first = next((line for line in file.read_text(encoding="utf-8-sig").splitlines() if line.strip()), "")
            record = json.loads(first) if first else {}
            return isinstance(record, dict) and ("choices" in record or {"A", "B", "C", "D"} <= set(record))
        rows = _csv_rows(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error):
        return False
    if not rows:
        return False
    head = rows[0][1]
    return _header_columns(head) is not None or (len(head) in (6, 7) and head[-1].strip().upper() in "ABCDE")
