"""Read raw records from files, remembering where each record came from.

Every reader returns a `ReadResult`: it never stops at the first bad record, so
`ducktune data check` can report every problem in one pass. Line numbers are 1-based and
exact for JSON arrays (records are decoded one at a time from the text) and CSV (a quoted
cell may span lines; the record keeps the line it starts on). Parquet rows are "row N",
0-based as pandas and `datasets` count them.

Text files may be UTF-8 with or without a BOM, with LF, CRLF or CR line ends.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.data.schema import Issue, Record

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt")
TEXT_UNITS = ("paragraph", "line", "file")

TOO_DEEP = "nested too deeply to read"  # Python's JSON decoder recurses: thousands of '[' exhaust the stack


@dataclass
class ReadResult:
    records: list[Record] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    lost: int = 0  # records that could not be read at all (bad JSON lines, ragged CSV rows)


class _FileIssue(Exception):
    def __init__(self, issue: Issue):
        super().__init__(str(issue))
        self.issue = issue


# Byte order marks of the wide encodings Windows tools save as "Unicode" (UTF-32's first: it starts like UTF-16's).
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def read_text(path: Path) -> str:
    """UTF-8 with or without BOM; CRLF and CR line ends become LF."""
    raw = path.read_bytes()
    wide = next((encoding for bom, encoding in _WIDE_BOMS if raw.startswith(bom)), None)
    if wide:  # as UTF-8 it fails on its first byte, and "not valid UTF-8 at 1:1" does not say why
        raise _FileIssue(Issue(str(path), 1, "(file)", f"the file is {wide} (it starts with a {wide} byte order "
                               "mark), not UTF-8; save it as UTF-8", fatal=True))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _FileIssue(Issue(str(path), f"{line}:{col}", "(file)", "not valid UTF-8; save the file as UTF-8",
                               fatal=True)) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _empty(name: str) -> Issue:
    return Issue(name, None, "(file)", "the file is empty")


def _broken(name: str, text: str, pos: int, message: str) -> Issue:
    # The rest of the array cannot be read, so how many records are lost is unknown: fatal.
    line, col = _line_col(text, pos)
    return Issue(name, f"{line}:{col}", "(json)", f"invalid JSON: {message}", fatal=True)


# ----------------------------------------------------------------------------- JSON

class _Duplicates:
    """Keys given twice in one JSON object: json keeps the last silently ({"messages": A, "messages": B}
    trained B). `hook` builds each object as json does; one without a repeated key costs one length
    comparison (a plain function: an instance's __call__ costs more, once per object of the file)."""

    def __init__(self) -> None:
        self.repeated: list[list[tuple[str, object]]] = []  # the pairs of each object with a repeated key
        found = self.repeated.append

        def hook(pairs: list[tuple[str, object]]) -> dict:
            value = dict(pairs)
            if len(value) != len(pairs):
                found(pairs)
            return value

        self.hook = hook

    def issue(self, name: str, line: int) -> Issue | None:
        """The problem of the record just decoded (at `line`), if a key was repeated in it; resets."""
        if not self.repeated:
            return None
        seen: set[str] = set()
        key = next(k for k, _ in self.repeated[0] if k in seen or seen.add(k))  # add() is None: the first repeat
        self.repeated.clear()
        return Issue(name, line, key, "the key appears twice in one object (only the last would be read); keep one")


def _decoder() -> tuple[json.JSONDecoder, _Duplicates]:
    duplicates = _Duplicates()  # one per file read: the web UI reads files from several threads
    return json.JSONDecoder(object_pairs_hook=duplicates.hook), duplicates


def read_json(path: Path) -> ReadResult:
    """A JSON array of records (or one object). Records keep the line they start on."""
    return read_json_text(str(path), read_text(path))


def read_json_text(name: str, text: str) -> ReadResult:
    pos = _skip_ws(text, 0)
    if pos == len(text):
        return ReadResult(issues=[_empty(name)])
    decoder, duplicates = _decoder()
    if text[pos] != "[":
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return ReadResult(issues=[_broken(name, text, exc.pos, exc.msg)])
        except RecursionError:
            return ReadResult(issues=[_broken(name, text, pos, TOO_DEEP)])
        if _skip_ws(text, end) != len(text):
            # Several objects one per line: that is JSON Lines saved with a .json name.
            return read_jsonl_text(name, text)
        repeated = duplicates.issue(name, _line_col(text, pos)[0])
        if repeated:
            return ReadResult(issues=[repeated], lost=1)
        rows = columns_as_rows(value)
        if rows is not None:  # a table saved by columns: its rows are the records ("row N", 0-based)
            return ReadResult([Record(row, name, f"row {i}") for i, row in enumerate(rows)])
        return ReadResult([Record(value, name, _line_col(text, pos)[0])])

    result = ReadResult()
    records = result.records
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        result.issues.append(Issue(name, None, "(file)", "the JSON array is empty: no records"))
        return result
    line, line_pos = 1, 0
    indexes: list[int] = []  # each kept record's place in the array (1-based)
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except RecursionError:
            result.issues.append(_broken(name, text, pos, TOO_DEEP))
            return result
        except json.JSONDecodeError as exc:
            if pos >= len(text):
                result.issues.append(_broken(name, text, pos, "the array is not closed with ']'"))
            else:
                result.issues.append(_broken(name, text, exc.pos, exc.msg))
            return result
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        repeated = duplicates.issue(name, line)
        if repeated:
            result.issues.append(repeated)
            result.lost += 1
        else:
            records.append(Record(value, name, line))
            indexes.append(result.lost + len(records))
        pos = _skip_ws(text, end)
        if pos >= len(text):
            result.issues.append(_broken(name, text, pos, "the array is not closed with ']'"))
            return _numbered(result, indexes)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            if pos < len(text) and text[pos] == "]":
                # Every record was read; only the comma is wrong, so --skip-bad may go on.
                l, c = _line_col(text, pos)
                result.issues.append(Issue(name, f"{l}:{c}", "(json)", "invalid JSON: trailing comma before ']'"))
                pos += 1
                break
            continue
        if text[pos] == "]":
            pos += 1
            break
        result.issues.append(_broken(name, text, pos, "expected ',' or ']' between records"))
        return result
    rest = _skip_ws(text, pos)
    if rest != len(text):
        result.issues.append(_broken(name, text, rest, "extra data after the closing ']'"))
    return _numbered(result, indexes)


def _numbered(result: ReadResult, indexes: list[int]) -> ReadResult:
    """Records of an array written with several on one line (a one-line json.dump) are told apart by
    their place in it: "file:1, record 5: output: missing", where every problem said "file:1"."""
    records = result.records
    if len({r.line for r in records}) < len(records):
        for record, index in zip(records, indexes):
            record.line = f"{record.line}, record {index}"
    return result


def columns_as_rows(value: object) -> list[dict] | None:
    """The rows of a table saved by columns, None for anything else: {field: [v0, v1, ...]} (a Hugging Face
    Dataset.to_dict() dumped with json.dump) or {field: {"0": v0, "1": v1, ...}} (pandas' default to_json),
    every column as long, at least two rows. A single record whose one list is its turns ({"messages":
    [{role, content}, ...]}) is no table: a column of turn objects is."""
    if not isinstance(value, dict) or not value:
        return None
    columns = list(value.values())
    if all(isinstance(c, dict) for c in columns):
        keys = list(columns[0])
        if len(keys) < 2 or not all(k.isdigit() for k in keys) or any(list(c) != keys for c in columns):
            return None
        columns = [[c[k] for k in keys] for c in columns]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1 or len(columns[0]) < 2:
        return None
    if any(all(isinstance(v, dict) and ("role" in v or "from" in v) for v in c) for c in columns):
        return None  # a record's turn list (its items are turns, where a table's would be lists of turns)
    return [dict(zip(value, row)) for row in zip(*columns)]


def read_jsonl(path: Path) -> ReadResult:
    return read_jsonl_text(str(path), read_text(path))


def read_jsonl_text(name: str, text: str) -> ReadResult:
    result = ReadResult()
    records, issues = result.records, result.issues
    decoder, duplicates = _decoder()
    decode = decoder.decode
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.isspace():
            continue
        try:
            value = decode(line)
        except json.JSONDecodeError as exc:
            issues.append(Issue(name, f"{number}:{exc.colno}", "(json)", f"invalid JSON: {exc.msg}"))
            result.lost += 1
            continue
        except RecursionError:
            issues.append(Issue(name, f"{number}:1", "(json)", f"invalid JSON: {TOO_DEEP}"))
            result.lost += 1
            continue
        repeated = duplicates.issue(name, number)
        if repeated:
            issues.append(repeated)
            result.lost += 1
            continue
        records.append(Record(value, name, number))
    if not records and not issues:
        issues.append(_empty(name))
    elif result.lost and _one_json_value(text):
        return ReadResult(issues=[Issue(name, None, "(file)", "looks like pretty-printed JSON (one JSON value over "
                                        "many lines), not JSON Lines (one record per line); rename the file to .json",
                                        fatal=True)])
    return result


def _one_json_value(text: str) -> bool:
    """Whether the whole text is one JSON array or object (only tried once a line of a JSON Lines file
    failed: a pretty-printed file fails on nearly every line, and an error for each helps nobody)."""
    if text.lstrip()[:1] not in ("[", "{"):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


# ----------------------------------------------------------------------------- CSV / TSV

def read_csv(path: Path, delimiter: str = ",") -> ReadResult:
    return read_csv_text(str(path), read_text(path), delimiter)


def read_csv_text(name: str, text: str, delimiter: str = ",") -> ReadResult:
    """A header row, then one record per row. Cells are strings; a cell holding a JSON list
    (conversations, history) is parsed by the normalizer that expects a list."""
    result = ReadResult()
    if not text.strip():
        result.issues.append(_empty(name))
        return result
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):
            header = next(reader)
    except StopIteration:
        result.issues.append(_empty(name))
        return result
    except csv.Error as exc:
        result.issues.append(Issue(name, reader.line_num, "(csv)", f"invalid CSV: {exc}", fatal=True))
        return result
    header_line = reader.line_num
    columns = [cell.strip() for cell in header]
    separator = _other_separator(columns, delimiter)
    if separator:
        if separator in (",", "\t"):  # the other file type's separator: the name is what is wrong
            fix = f"rename the file to {'.csv' if separator == ',' else '.tsv'}"
        else:
            fix = f"save the file with {_SEPARATORS[delimiter]} between columns"
        result.issues.append(Issue(name, header_line, "(header)", f"the header is one column, {columns[0]!r}: the "
                                   f"columns look separated by {_SEPARATORS[separator]}, not "
                                   f"{_SEPARATORS[delimiter]}; {fix}", fatal=True))
        return result
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            result.issues.append(Issue(name, header_line, "(header)", f"column '{column}' appears twice", fatal=True))
            return result
        seen.add(column)
    start = header_line + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.issues.append(Issue(name, start, "(csv)", f"invalid CSV: {exc}", fatal=True))
            return result
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            result.issues.append(Issue(name, line, "(row)", f"has {len(row)} cells, the header has {len(columns)}"))
            result.lost += 1
            continue
        result.records.append(Record({c: v for c, v in zip(columns, row) if c}, name, line))
    if text.count('"') % 2 and _ends_inside_quotes(text, delimiter):
        # The csv module reads an unclosed quote to the end of the file, silently merging every later row.
        line = result.records[-1].line if result.records else header_line
        result.issues.append(Issue(name, line, "(csv)", "a quoted cell opened in this row is never closed "
                                   "(an odd number of '\"' in the file)", fatal=True))
        return result
    if not result.records and not result.issues:
        result.issues.append(Issue(name, None, "(file)", "the file has a header row but no records"))
    return result


_SEPARATORS = {",": "','", ";": "';' (Excel's CSV in many locales)", "\t": "tabs", "|": "'|'"}


def _other_separator(columns: list[str], delimiter: str) -> str | None:
    """The separator the columns look separated by when a one-column header splits on it into names."""
    if len(columns) != 1:
        return None
    for other in _SEPARATORS:
        if other != delimiter and sum(1 for part in columns[0].split(other) if part.strip()) >= 2:
            return other
    return None


def _ends_inside_quotes(text: str, delimiter: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(text), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


# ----------------------------------------------------------------------------- Parquet

def read_parquet(path: Path) -> ReadResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ReadResult(issues=[Issue(name, None, "(file)", f"not a readable Parquet file: {first}", fatal=True)])
    rows = table.to_pylist()
    if not rows:
        return ReadResult(issues=[Issue(name, None, "(file)", "the Parquet file has no rows")])
    return ReadResult([Record(row, name, f"row {i}") for i, row in enumerate(rows)])


# ----------------------------------------------------------------------------- plain text

def read_txt(path: Path, unit: str = "paragraph") -> ReadResult:
    return read_txt_text(str(path), read_text(path), unit)


def read_txt_text(name: str, text: str, unit: str = "paragraph") -> ReadResult:
    """Plain text for continued pre-training: one sample per paragraph (blank-line separated),
    per line, or per file. Each becomes a {"text": ...} record at the line it starts on."""
    result = ReadResult()
    lines = text.split("\n")
    if unit == "file":
        if text.strip():
            first = next(i for i, line in enumerate(lines) if line.strip())
            result.records.append(Record({"text": text.strip("\n")}, name, first + 1))
    elif unit == "line":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                result.records.append(Record({"text": line}, name, number))
    else:
        block: list[str] = []
        block_start = 0
        for number, line in enumerate(lines + [""], start=1):
            if line.strip():
                if not block:
                    block_start = number
                block.append(line)
            elif block:
                result.records.append(Record({"text": "\n".join(block)}, name, block_start))
                block = []
    if not result.records:
        result.issues.append(_empty(name))
    return result


# ----------------------------------------------------------------------------- dispatch

def read_file(path: Path, text_unit: str = "paragraph") -> ReadResult:
    """Read one data file by its suffix."""
    suffix = path.suffix.lower()
    name = str(path)
    if suffix not in SUPPORTED_SUFFIXES:
        hint = ("; from Excel or a spreadsheet, save it as 'CSV UTF-8' (one column per field, a header row)"
                if suffix in (".xlsx", ".xls", ".ods", ".numbers") else "")
        return ReadResult(issues=[Issue(name, None, "(file)", f"unsupported file type '{suffix}' "
                                        f"(use {', '.join(SUPPORTED_SUFFIXES)}){hint}", fatal=True)])
    try:
        if suffix == ".json":
            return read_json(path)
        if suffix in (".jsonl", ".ndjson"):
            return read_jsonl(path)
        if suffix == ".csv":
            return read_csv(path, ",")
        if suffix == ".tsv":
            return read_csv(path, "\t")
        if suffix == ".txt":
            return read_txt(path, text_unit)
        return read_parquet(path)
    except _FileIssue as exc:
        return ReadResult(issues=[exc.issue])
    except OSError as exc:
        return ReadResult(issues=[Issue(name, None, "(file)", f"cannot read: {exc.strerror or exc}", fatal=True)])
