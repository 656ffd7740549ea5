"""File types: JSON arrays (exact lines), JSONL, CSV/TSV, Parquet, .txt, folders; BOM and CRLF."""

from __future__ import annotations

import json

import pytest

from data_support import write_json, write_jsonl
from ducktune.config import DataConfig, DatasetSpec
from ducktune.data.loader import read_datasets
from ducktune.data.readers import read_file
from ducktune.data.dataset_files import read_spec


def samples_of(path, **spec):
    files = read_spec(DatasetSpec(path=str(path), **spec))
    return [s for f in files for s in f.samples], [str(i) for f in files for i in f.issues]


def test_json_array_records_keep_their_first_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"instruction": "a",\n   "output": "b"},\n\n  {"instruction": "c", "output": "d"}\n]\n')
    read = read_file(path)
    assert [r.line for r in read.records] == [2, 5]
    assert read.issues == []


def test_records_of_a_one_line_json_array_are_told_apart_by_their_place(tmp_path):
    """json.dump without indent writes the whole array on line 1: every problem said "file:1". Records
    sharing a line are numbered by their place in the array, and the problems name them."""
    path = tmp_path / "one-line.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 3},
                                {"instruction": "e", "output": "f"}]))
    read = read_file(path)
    assert [r.line for r in read.records] == ["1, record 1", "1, record 2", "1, record 3"]
    (data,) = read_spec(DatasetSpec(path=str(path)))
    assert [str(issue) for issue in data.issues] == [f"{path}:1, record 2: output: must be a string, got int"]


def test_single_object_and_json_lines_saved_as_json(tmp_path):
    one = tmp_path / "one.json"
    one.write_text('\n{"text": "hello"}\n')
    assert [r.line for r in read_file(one).records] == [2]
    lines = tmp_path / "lines.json"
    lines.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert [r.value["text"] for r in read_file(lines).records] == ["a", "b"]


def test_a_table_saved_by_columns_is_read_by_rows(tmp_path):
    """json.dump(dataset.to_dict()) and pandas' default to_json write one object of columns: each field said
    "must be a string, got a list". Its rows are the records, named "row N"; a single record whose one list
    is its turns stays one record."""
    columns = write_json(tmp_path / "columns.json", {"instruction": ["a", ""], "output": ["x", "y"]})
    samples, issues = samples_of(columns)
    assert [(m.role, m.content) for m in samples[0].messages] == [("user", "a"), ("assistant", "x")]
    assert issues == [f"{columns}:row 1: instruction: empty: neither instruction nor input has text"]
    pandas = write_json(tmp_path / "pandas.json", {"question": {"0": "q0", "1": "q1"}, "answer": {"0": "a0", "1": "a1"}})
    assert [r.value for r in read_file(pandas).records] == [{"question": "q0", "answer": "a0"},
                                                            {"question": "q1", "answer": "a1"}]
    chats = write_json(tmp_path / "chats.json", {"messages": [
        [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"}],
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]]})
    assert [r.line for r in read_file(chats).records] == ["row 0", "row 1"]
    one = write_json(tmp_path / "one.json", {"messages": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "a"}]})
    assert [r.line for r in read_file(one).records] == [1]
    single = write_json(tmp_path / "single.json", {"instruction": "q", "output": "a", "history": [["h", "i"]]})
    assert len(read_file(single).records) == 1


def test_a_spreadsheet_is_told_to_be_saved_as_csv(tmp_path):
    path = tmp_path / "qa.xlsx"
    path.write_bytes(b"PK\x03\x04")
    (issue,) = read_file(path).issues
    assert issue.fatal and str(issue).endswith("; from Excel or a spreadsheet, save it as 'CSV UTF-8' (one column per "
                                               "field, a header row)")


def test_jsonl_lines_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n   \n{"text": "b"}\n')
    assert [r.line for r in read_file(path).records] == [1, 4]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bom_and_crlf(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    body = ('[\r\n{"instruction": "q1", "output": "a1"},\r\n{"instruction": "q2", "output": "a2"}\r\n]\r\n'
            if suffix == ".json" else
            '{"instruction": "q1", "output": "a1"}\r\n{"instruction": "q2", "output": "a2"}\r\n')
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    samples, issues = samples_of(path)
    assert issues == []
    assert [s.messages[-1].content for s in samples] == ["a1", "a2"]
    assert [s.where for s in samples] == ([f"{path}:2", f"{path}:3"] if suffix == ".json" else [f"{path}:1", f"{path}:2"])


def test_csv_with_quotes_multiline_cells_bom_and_crlf(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'\xef\xbb\xbfinstruction,input,output\r\n"Say ""hi""",,hello\r\n'
                     b'q2,"two\r\nlines",ans\r\n\r\nq3,,a3\r\n')
    samples, issues = samples_of(path)
    assert issues == []
    assert [s.messages[0].content for s in samples] == ['Say "hi"', "q2\ntwo\nlines", "q3"]
    # Each record keeps the line it starts on; the quoted cell spans lines 3-4.
    assert [s.where.rsplit(":", 1)[1] for s in samples] == ["2", "3", "6"]
    assert samples[0].format == "alpaca"


def test_tsv_and_json_lists_in_cells(tmp_path):
    path = tmp_path / "d.tsv"
    conversation = json.dumps([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}])
    path.write_text(f"conversations\tsystem\n{conversation}\tBe brief.\n")
    samples, issues = samples_of(path)
    assert issues == []
    assert [(m.role, m.content) for m in samples[0].messages] == [
        ("system", "Be brief."), ("user", "hi"), ("assistant", "hello")]


def test_csv_ragged_row_is_reported_and_the_rest_read(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\nq1,a1\nq2\nq3,a3\n")
    samples, issues = samples_of(path)
    assert issues == [f"{path}:3: (row): has 1 cells, the header has 2"]
    assert len(samples) == 2


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({
        "messages": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                     [{"role": "user", "content": "q2"}, {"role": "assistant", "content": ""}]],
    })
    pq.write_table(table, path)
    samples, issues = samples_of(path)
    assert [s.where for s in samples] == [f"{path}:row 0"]
    assert issues == [f"{path}:row 1: messages[1]: empty assistant answer"]


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("hello")
    _, issues = samples_of(path)
    assert len(issues) == 1 and issues[0].startswith(f"{path}: (file): not a readable Parquet file")


@pytest.mark.parametrize("unit,expected", [
    ("paragraph", [("First paragraph\nstill first.", 1), ("Second.", 4)]),
    ("line", [("First paragraph", 1), ("still first.", 2), ("Second.", 4)]),
    ("file", [("First paragraph\nstill first.\n\nSecond.", 1)]),
])
def test_txt_units(tmp_path, unit, expected):
    path = tmp_path / "book.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst paragraph\r\nstill first.\r\n\r\nSecond.\r\n")
    samples, issues = samples_of(path, text_unit=unit)
    assert issues == []
    assert [(s.text, int(s.where.rsplit(":", 1)[1])) for s in samples] == expected
    assert {s.kind for s in samples} == {"text"}


def test_folder_reads_every_data_file_and_skips_registry_and_hidden(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    write_json(folder / "a.json", [{"instruction": "q", "output": "a"}])
    write_jsonl(folder / "sub" / "b.jsonl", [{"text": "plain"}])
    (folder / "c.txt").write_text("some text\n")
    write_json(folder / "dataset_info.json", {"x": {"file_name": "a.json"}})
    write_json(folder / ".hidden.json", [{"bad": 1}])
    (folder / "notes.md").write_text("# not data")
    files = read_datasets(DataConfig(datasets=[str(folder)]))[0].files
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.json", "c.txt", "b.jsonl"]
    assert [f.format for f in files] == ["alpaca", "text", "text"]
    assert all(not f.issues for f in files)


def test_not_utf8(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    _, issues = samples_of(path)
    assert issues == [f"{path}:2:11: (file): not valid UTF-8; save the file as UTF-8"]


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")])
def test_a_utf16_file_is_named_as_such(tmp_path, encoding, name):
    """Notepad's 'Unicode' was 'not valid UTF-8' at 1:1, which does not say what the file is."""
    path = tmp_path / "d.jsonl"
    text = '{"instruction": "q", "output": "a"}\n'
    path.write_bytes((text if encoding != "utf-16-be" else "\ufeff" + text).encode(encoding))
    _, issues = samples_of(path)
    assert issues == [f"{path}:1: (file): the file is {name} (it starts with a {name} byte order mark), not UTF-8; "
                      "save it as UTF-8"]


def test_pretty_printed_json_in_a_jsonl_file_is_one_problem(tmp_path):
    """It was an 'invalid JSON' problem for nearly every line."""
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps([{"instruction": "q", "output": "a"}, {"instruction": "q2", "output": "a2"}], indent=2))
    _, issues = samples_of(path)
    assert issues == [f"{path}: (file): looks like pretty-printed JSON (one JSON value over many lines), not JSON Lines "
                      "(one record per line); rename the file to .json"]
    # A JSON Lines file with a broken line is still reported line by line.
    path.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q2",\n')
    _, issues = samples_of(path)
    assert issues == [f"{path}:2:22: (json): invalid JSON: Expecting property name enclosed in double quotes"]


@pytest.mark.parametrize("suffix, header, expected", [
    (".csv", "instruction;output", "';' (Excel's CSV in many locales), not ','; save the file with ',' between columns"),
    (".csv", "instruction\toutput", "tabs, not ','; rename the file to .tsv"),
    (".tsv", "instruction,output", "',', not tabs; rename the file to .csv"),
])
def test_a_csv_with_another_separator_says_which(tmp_path, suffix, header, expected):
    """A semicolon-separated CSV (Excel in many locales) got the generic 'no known format fits'."""
    path = tmp_path / f"d{suffix}"
    sep = header[len("instruction")]
    path.write_text(f"{header}\nq{sep}a\n")
    _, issues = samples_of(path)
    assert issues == [f"{path}:1: (header): the header is one column, {header!r}: the columns look separated by {expected}"]
