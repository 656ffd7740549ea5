"""Read raw records from files, remembering where each record came from.

Every reader returns `(records, issues)`: it never stops at the first bad record, so
`ducktune data check` can report every problem in one pass. Line numbers are 1-based
and exact for JSON arrays too (records are decoded one at a time from the text).
"""

from __future__ import annotations

import json
from pathlib import Path

from ducktune.data.schema import Issue, Record

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt")

_decoder = json.JSONDecoder()


def read_text(path: Path) -> str:
    """UTF-8 with or without BOM; CRLF and CR line ends become LF."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _FileIssue(Issue(str(path), line, "(file)", f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8")) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class _FileIssue(Exception):
    def __init__(self, issue: Issue):
        super().__init__(str(issue))
        self.issue = issue


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _json_error(path: str, text: str, exc: json.JSONDecodeError, offset: int = 0) -> Issue:
    line, col = _line_col(text, offset + exc.pos) if offset else (exc.lineno, exc.colno)
    return Issue(path, f"{line}:{col}", "(json)", f"invalid JSON: {exc.msg}")


def read_json(path: Path) -> tuple[list[Record], list[Issue]]:
    """A JSON array of records (or one object). Records keep the line they start on."""
    name = str(path)
    text = read_text(path)
    pos = _skip_ws(text, 0)
    if pos == len(text):
        return [], [Issue(name, None, "(file)", "the file is empty")]
    if text[pos] != "[":
        try:
            value, end = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return [], [_json_error(name, text, exc)]
        end = _skip_ws(text, end)
        if end != len(text):
            # Several objects one per line: that is JSON Lines saved with a .json name.
            return read_jsonl_text(name, text)
        return [Record(value, name, _line_col(text, pos)[0])], []

    records: list[Record] = []
    pos = _skip_ws(text, pos + 1)
    line = 1
    line_pos = 0
    if pos < len(text) and text[pos] == "]":
        return [], [Issue(name, None, "(file)", "the JSON array is empty: no records")]
    while True:
        try:
            value, end = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if text[pos : pos + 1] == "]" and records:
                l, c = _line_col(text, pos)
                return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: trailing comma before ']'")]
            if pos >= len(text):
                l, c = _line_col(text, pos)
                return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: the array is not closed with ']'")]
            return records, [_json_error(name, text, exc)]
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        records.append(Record(value, name, line))
        pos = _skip_ws(text, end)
        if pos >= len(text):
            l, c = _line_col(text, pos)
            return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: the array is not closed with ']'")]
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            if pos < len(text) and text[pos] == "]":
                l, c = _line_col(text, pos)
                return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: trailing comma before ']'")]
            continue
        if text[pos] == "]":
            rest = _skip_ws(text, pos + 1)
            if rest != len(text):
                l, c = _line_col(text, rest)
                return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: extra data after the closing ']'")]
            return records, []
        l, c = _line_col(text, pos)
        return records, [Issue(name, f"{l}:{c}", "(json)", "invalid JSON: expected ',' or ']' between records")]


def read_jsonl(path: Path) -> tuple[list[Record], list[Issue]]:
    return read_jsonl_text(str(path), read_text(path))


def read_jsonl_text(name: str, text: str) -> tuple[list[Record], list[Issue]]:
    records: list[Record] = []
    issues: list[Issue] = []
    loads = json.loads
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = loads(line)
        except json.JSONDecodeError as exc:
            issues.append(Issue(name, f"{number}:{exc.colno}", "(json)", f"invalid JSON: {exc.msg}"))
            continue
        records.append(Record(value, name, number))
    if not records and not issues:
        issues.append(Issue(name, None, "(file)", "the file is empty"))
    return records, issues


def read_file(path: Path) -> tuple[list[Record], list[Issue]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return read_json(path)
        if suffix in (".jsonl", ".ndjson"):
            return read_jsonl(path)
    except _FileIssue as exc:
        return [], [exc.issue]
    raise ValueError(f"no reader for {suffix}")
