"""The bad-input corpus: every malformed file is refused by the real CLI with exit code 2, its first
error line naming the file (and the line or field where there is one), no traceback, nothing written.

Data files in every format (through `data convert`, plus a few through `train`), config files,
model folders, run directories and export folders with a bad Modelfile or export.json. The cases
that are fine to accept (a BOM, CRLF line ends) are read exactly like their plain twins. The
figures go to docs/reliability/inputs.json when the whole corpus has run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from reliability_support import save_reliability_part

from ducktune.cli import main

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "reliability" / "inputs.json"
GOOD = {"instruction": "Who are you?", "output": "I am Duckling."}
CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def jl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


@dataclass
class Case:
    kind: str
    files: dict  # name -> str | bytes | callable(path) (a folder is a name ending with "/")
    argv: list  # "{d}" is the case folder, "{model}" the tiny model
    expect: tuple  # substrings of the first error line


def convert(name: str) -> list:
    return ["data", "convert", f"{{d}}/{name}", "{d}/out.jsonl", "--to", "messages"]


def _parquet(rows: dict, cut: float | None = None):
    def write(path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(rows), path)
        if cut:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * cut)])
    return write


DEEP = "[" * 100_000 + "]" * 100_000

DATA = {
    # JSON Lines
    "jsonl: invalid JSON on line 2": ({"d.jsonl": jl(GOOD, '{"instruction": "q" "output": "a"}')}, ("d.jsonl:2:",)),
    "jsonl: not UTF-8 (latin-1 byte)": ({"d.jsonl": jl(GOOD).encode() + b'{"instruction": "caf\xe9", "output": "a"}\n'},
                                        ("d.jsonl:2:", "UTF-8")),
    "jsonl: UTF-16 file": ({"d.jsonl": jl(GOOD).encode("utf-16")}, ("d.jsonl:1:", "is UTF-16", "save it as UTF-8")),
    "jsonl: NUL bytes": ({"d.jsonl": b"\x00\x00\x00\n"}, ("d.jsonl:1",)),
    "jsonl: empty file": ({"d.jsonl": ""}, ("d.jsonl", "empty")),
    "jsonl: whitespace only": ({"d.jsonl": "\n \n\t\n"}, ("d.jsonl", "empty")),
    "jsonl: a null record": ({"d.jsonl": jl(GOOD, "null")}, ("d.jsonl:2",)),
    "jsonl: a bare string record": ({"d.jsonl": jl(GOOD, '"hello"')}, ("d.jsonl:2",)),
    "jsonl: a list record": ({"d.jsonl": jl(GOOD, '["q", "a"]')}, ("d.jsonl:2",)),
    "jsonl: extra data after the record": ({"d.jsonl": jl(GOOD, '{"instruction": "q", "output": "a"} x')},
                                           ("d.jsonl:2:",)),
    "jsonl: output a number": ({"d.jsonl": jl(GOOD, {"instruction": "q", "output": 42})}, ("d.jsonl:2", "output")),
    "jsonl: output NaN": ({"d.jsonl": jl(GOOD, '{"instruction": "q", "output": NaN}')}, ("d.jsonl:2", "output")),
    "jsonl: messages a string": ({"d.jsonl": jl(CHAT, {"messages": "hi"})}, ("d.jsonl:2", "messages")),
    "jsonl: message without role": ({"d.jsonl": jl({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]})},
                                    ("d.jsonl:1", "messages[0]")),
    "jsonl: role a number": ({"d.jsonl": jl({"messages": [{"role": 1, "content": "q"}, {"role": "assistant", "content": "a"}]})},
                             ("d.jsonl:1", "messages[0].role")),
    "jsonl: content null": ({"d.jsonl": jl({"messages": [{"role": "user", "content": None},
                                                          {"role": "assistant", "content": "a"}]})},
                            ("d.jsonl:1", "messages[0].content")),
    "jsonl: formats mixed in one file": ({"d.jsonl": jl(CHAT, GOOD, CHAT)}, ("d.jsonl:2", "format")),
    "jsonl: output a list": ({"d.jsonl": jl(GOOD, {"instruction": "q", "output": {"text": "a"}})}, ("d.jsonl:2", "output")),
    "csv: output only spaces": ({"d.csv": "instruction,output\nq,a\nq2,   \n"}, ("d.csv:3", "output")),
    "jsonl: a 4 MB line of garbage": ({"d.jsonl": jl(GOOD) + "x" * 4_000_000 + "\n"}, ("d.jsonl:2:",)),
    "jsonl: nesting 100,000 deep": ({"d.jsonl": jl(GOOD) + DEEP + "\n"}, ("d.jsonl:2",)),
    # JSON
    "json: array never closed": ({"d.json": "[" + json.dumps(GOOD) + ",\n" + json.dumps(GOOD)}, ("d.json:",)),
    "json: top level a number": ({"d.json": "42"}, ("d.json",)),
    "json: array of strings": ({"d.json": '["q", "a"]'}, ("d.json:",)),
    "json: BOM then invalid JSON": ({"d.json": "\ufeff[" + json.dumps(GOOD) + ",]"}, ("d.json:1:",)),
    "json: nesting 100,000 deep": ({"d.json": DEEP}, ("d.json",)),
    "json: not UTF-8": ({"d.json": b'[{"instruction": "\xff", "output": "a"}]'}, ("d.json:1:", "UTF-8")),
    "json: empty array": ({"d.json": "[]"}, ("d.json",)),
    "json: sharegpt turn from an unknown speaker": (
        {"d.json": json.dumps([{"conversations": [{"from": "narrator", "value": "q"}, {"from": "gpt", "value": "a"}]}])},
        ("d.json:1", "conversations[0]")),
    "json: sharegpt conversations not a list": ({"d.json": json.dumps([{"conversations": {"from": "human"}}])},
                                                ("d.json:1", "conversations")),
    "json: preference rejected a number": ({"d.json": json.dumps([{"instruction": "q", "chosen": "a", "rejected": 3}])},
                                           ("d.json:1", "rejected")),
    # CSV / TSV
    "csv: no output column": ({"d.csv": "instruction,reply\nq,a\n"}, ("d.csv",)),
    "csv: a row longer than the header": ({"d.csv": "instruction,output\nq,a\nq,a,extra\n"}, ("d.csv:3",)),
    "csv: not UTF-8": ({"d.csv": b"instruction,output\nq,caf\xe9\n"}, ("d.csv:2:", "UTF-8")),
    "csv: header only": ({"d.csv": "instruction,output\n"}, ("d.csv",)),
    "csv: a 200 KB cell (over the csv module's field limit)": (
        {"d.csv": "instruction,output\nq,\"" + "a" * 200_000 + "\"\nq2,\"a\n"}, ("d.csv",)),
    "csv: quote never closed": ({"d.csv": 'instruction,output\nq,a\nq2,"b\nq3,c\n'}, ("d.csv:3", "never closed")),
    "tsv: commas instead of tabs": ({"d.tsv": "instruction,output\nq,a\n"}, ("d.tsv",)),
    # Parquet
    "parquet: a text file": ({"d.parquet": "instruction,output\nq,a\n"}, ("d.parquet",)),
    "parquet: cut short": ({"d.parquet": _parquet({"instruction": ["q"] * 50, "output": ["a"] * 50}, 0.5)},
                           ("d.parquet",)),
    "parquet: output an integer column": ({"d.parquet": _parquet({"instruction": ["q"], "output": [1]})},
                                          ("d.parquet", "output")),
    "parquet: no rows": ({"d.parquet": _parquet({"instruction": [], "output": []})}, ("d.parquet",)),
    # Text
    "txt: not UTF-8": ({"d.txt": b"caf\xe9 au lait\n"}, ("d.txt:1:", "UTF-8")),
    "txt: empty": ({"d.txt": ""}, ("d.txt", "empty")),
    "folder: no data files in it": ({"data/": None}, ("data",)),
}


def _config(**sections) -> str:
    base = {"model": {"name_or_path": "{model}"}, "data": {"datasets": ["{d}/good.json"]}, "output": {"dir": "{d}/run"}}
    for key, value in sections.items():
        base.setdefault(key, {}).update(value)
    return json.dumps(base)


def train_with(config: str) -> tuple[dict, list]:
    return {"c.yaml": config, "good.json": json.dumps([GOOD])}, ["train", "{d}/c.yaml", "--no-progress"]


CONFIG = {
    "config: invalid YAML (tab indent)": ({"c.yaml": "train:\n\tmax_steps: 3\n"}, ("c.yaml:2:",)),
    "config: top level a list": ({"c.yaml": "- train\n- data\n"}, ("c.yaml", "top level")),
    "config: unknown section": ({"c.yaml": "trian:\n  max_steps: 3\n"}, ("c.yaml", "trian", "did you mean 'train'")),
    "config: unknown key": ({"c.yaml": "train:\n  learnin_rate: 0.1\n"}, ("c.yaml", "train.learnin_rate")),
    "config: learning rate a word": ({"c.yaml": "train:\n  learning_rate: fast\n"}, ("c.yaml", "train.learning_rate")),
    "config: negative max_steps": ({"c.yaml": "train:\n  max_steps: -5\n"}, ("c.yaml", "train.max_steps")),
    "config: lora.r zero": ({"c.yaml": "lora:\n  r: 0\n"}, ("c.yaml", "lora.r")),
    "config: unknown method": ({"c.yaml": "train:\n  method: qlorra\n"}, ("c.yaml", "train.method")),
    "config: datasets a number": ({"c.yaml": "data:\n  datasets: 5\n"}, ("c.yaml", "data.datasets")),
    "config: val_ratio and val_file": ({"c.yaml": "data:\n  val_ratio: 0.1\n  val_file: v.json\n"}, ("c.yaml", "val_file")),
    "config: weight on one dataset only": (
        {"c.yaml": "data:\n  datasets: [{path: a.json, weight: 1}, {path: b.json}]\n"}, ("c.yaml", "weight")),
    "config: cutoff_len 4": ({"c.yaml": "data:\n  cutoff_len: 4\n"}, ("c.yaml", "data.cutoff_len")),
    "config: a section that is a string": ({"c.yaml": "train: fast\n"}, ("c.yaml", "train")),
    "config: not UTF-8": ({"c.yaml": b"train:\n  seed: \xff\n"}, ("c.yaml",)),
    "config: --set a bad value": ({"good.json": json.dumps([GOOD])},
                                  ("--set", "train.batch_size")),
    "config: qlora on MPS": (None, ("qlora",)),
    "config: output.dir is a file": (None, ("run",)),
}
CONFIG_ARGV = {"config: --set a bad value": ["train", "--set", "data.datasets=[{d}/good.json]", "--set",
                                             "train.batch_size=abc", "-o", "{d}/run"]}


def _model_folder(change):
    def write(path: Path):
        shutil.copytree(MODEL[0], path)
        change(path)
    return write


def _edit_json(name, **changes):
    def change(path: Path):
        data = json.loads((path / name).read_text())
        data.update(changes)
        (path / name).write_text(json.dumps(data))
    return change


def _bin_only(path: Path):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(path / "model.safetensors")), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()


MODELS = {
    "model: empty folder": (lambda p: p.mkdir(), ("m",)),
    "model: config.json invalid": (_model_folder(lambda p: (p / "config.json").write_text("{")), ("config.json",)),
    "model: config.json without model_type": (_model_folder(lambda p: (p / "config.json").write_text('{"hidden_size": 8}')),
                                             ("m",)),
    "model: no tokenizer": (_model_folder(lambda p: [(p / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")]),
                            ("m",)),
    "model: pickled pytorch_model.bin only": (_model_folder(_bin_only), ("m",)),
    "model: an encoder architecture (BERT)": (
        _model_folder(_edit_json("config.json", model_type="bert", architectures=["BertModel"])), ("m",)),
    "model: weights cut short": (_model_folder(lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:1000])), ("model.safetensors",)),
}
MODEL: list = []  # the tiny model's folder, set by the fixture


def _run(name="run", *, status="completed", adapter=True, config_text=None):
    def write(path: Path):
        shutil.copytree(RUN[0], path)
        if not adapter:
            shutil.rmtree(path / "adapter")
        if config_text is not None:
            (path / "config.yaml").write_text(config_text)
        if status != "completed":
            info = json.loads((path / "run.json").read_text())
            info["status"] = status
            (path / "run.json").write_text(json.dumps(info))
    return write


RUN: list = []  # a finished tiny run, set by the fixture

RUNS = {
    "run: chat on a folder without run.json": ({"r/": None}, ["chat", "{d}/r"], ("r", "run.json")),
    "run: chat with the adapter missing": ({"r": _run(adapter=False)}, ["chat", "{d}/r"], ("r", "adapter")),
    "run: export with the adapter missing": ({"r": _run(adapter=False)}, ["export", "{d}/r"], ("r", "adapter")),
    "run: run.json corrupt": ({"r": lambda p: (_run()(p), (p / "run.json").write_text("{"))},
                              ["chat", "{d}/r"], ("run.json",)),
    "run: config.yaml edited into invalid YAML": ({"r": _run(config_text="model: [\n")}, ["export", "{d}/r"],
                                                  ("config.yaml",)),
    "run: config.yaml with an unknown key": ({"r": _run(config_text="model:\n  nmae: x\n")}, ["chat", "{d}/r"],
                                            ("config.yaml", "model.nmae")),
    "run: config.yaml deleted": ({"r": lambda p: (_run()(p), (p / "config.yaml").unlink())}, ["chat", "{d}/r"],
                                 ("config.yaml",)),
    "run: adapter_config.json broken": ({"r": lambda p: (_run()(p), (p / "adapter" / "adapter_config.json").write_text("{"))},
                                        ["export", "{d}/r"], ("adapter",)),
}


def _export(modelfile: str | bytes | None, manifest: dict | None = None):
    def write(path: Path):
        path.mkdir()
        files = {"merged": "merged", "modelfile": "Modelfile"}
        (path / "export.json").write_text(json.dumps(manifest if manifest is not None else
                                                     {"name": "m", "files": files, "probe_prompts": ["hi"]}))
        if modelfile is not None:
            (path / "Modelfile").write_bytes(modelfile if isinstance(modelfile, bytes) else modelfile.encode())
    return write


MODELFILES = {
    "Modelfile: unknown command": ("FROM ./m.gguf\nTEMPLTE {{ .Prompt }}\n", ("Modelfile", "line 2")),
    "Modelfile: no FROM": ('PARAMETER stop "<|im_end|>"\n', ("Modelfile", "no FROM")),
    "Modelfile: num_ctx not a number": ("FROM ./m.gguf\nPARAMETER num_ctx lots\n", ("Modelfile", "num_ctx")),
    "Modelfile: unknown PARAMETER": ("FROM ./m.gguf\nPARAMETER colour blue\n", ("Modelfile", "colour")),
    "Modelfile: quotes never closed": ('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}\n', ("Modelfile", "quoted")),
    "Modelfile: MESSAGE with a bad role": ("FROM ./m.gguf\nMESSAGE narrator hi\n", ("Modelfile", "line 2")),
    "Modelfile: not UTF-8": (b"FROM ./m.gguf\nSYSTEM caf\xe9\n", ("Modelfile", "UTF-8")),
    "Modelfile: missing": (None, ("Modelfile", "missing")),
    "export.json: no files": ("FROM ./m.gguf\n", ("export.json", "files.merged")),
    "export.json: a list": ("FROM ./m.gguf\n", ("export.json", "files.merged")),
}
MANIFESTS = {"export.json: no files": {"name": "m", "probe_prompts": []}, "export.json: a list": []}


def _all_cases() -> dict[str, Case]:
    cases = {}
    for label, (files, expect) in DATA.items():
        name = next(iter(files))
        cases[label] = Case("data file", files, convert(name.rstrip("/")), expect)
    for label in ("jsonl: invalid JSON on line 2", "csv: not UTF-8", "json: sharegpt turn from an unknown speaker"):
        files, expect = DATA[label]
        name = next(iter(files))
        cases[f"train refuses: {label}"] = Case("data file", {**files, "c.yaml": _config(data={"datasets": [f"{{d}}/{name}"]})},
                                                ["train", "{d}/c.yaml", "--no-progress"], expect)
    for label, (files, expect) in CONFIG.items():
        if files is None:
            continue
        argv = CONFIG_ARGV.get(label, ["train", "{d}/c.yaml", "--no-progress"])
        cases[label] = Case("config file", files, argv, expect)
    cases["config: qlora on MPS"] = Case("config file", *train_with(_config(model={"device": "mps"},
                                                                           train={"method": "qlora"})), ("mps",))
    cases["config: output.dir is a file"] = Case("config file", {**train_with(_config())[0], "run": "not a folder"},
                                                 ["train", "{d}/c.yaml", "--no-progress"], ("run",))
    remote = _model_folder(_edit_json("config.json", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"}))
    cases["config: packing on with a remote-code model"] = Case(
        "config file", {**train_with(_config(model={"name_or_path": "{d}/m", "trust_remote_code": True},
                                             train={"packing": "on"}))[0], "m": remote},
        ["train", "{d}/c.yaml", "--no-progress"], ("train.packing=on", "trust_remote_code"))
    for label, (write, expect) in MODELS.items():
        cases[label] = Case("model folder", {**train_with(_config(model={"name_or_path": "{d}/m"}))[0], "m": write},
                            ["train", "{d}/c.yaml", "--no-progress"], expect)
    for label, (files, argv, expect) in RUNS.items():
        cases[label] = Case("run directory", files, argv, expect)
    for label, (text, expect) in MODELFILES.items():
        cases[label] = Case("Modelfile / export", {"e": _export(text, MANIFESTS.get(label))}, ["verify", "{d}/e"], expect)
    return cases


CASES = _all_cases()
RESULTS: dict[str, tuple[str, bool]] = {}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_qwen):
    from ducktune.config import DatasetSpec, load_config
    from ducktune.train import recipe

    folder = tmp_path_factory.mktemp("inputs-run")
    (folder / "good.json").write_text(json.dumps([GOOD]))
    config = load_config(None, [f"model.name_or_path={tiny_qwen}", f"output.dir={folder / 'run'}", "train.max_steps=2",
                                "lora.r=4", "eval.max_new_tokens=2", "train.num_threads=1"])
    config.data.datasets = [DatasetSpec(path=str(folder / "good.json"))]
    recipe.train(config, log=lambda message: None, progress=False, compare=False)
    return folder / "run"


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if len(RESULTS) == len(CASES) and len(FUZZ) == FUZZ_TESTS:  # the whole file ran: its figures are the report's
        import time

        kinds = {}
        for label, (kind, ok) in RESULTS.items():
            tried, passed, labels = kinds.get(kind, (0, 0, []))
            kinds[kind] = (tried + 1, passed + ok, labels + ([] if ok else [label]))
        rows = [{"check": f"Bad input refused cleanly: {kind} (exit 2, one error line naming it, nothing written)",
                 "tried": tried, "passed": passed,
                 "detail": ("FAILED: " + "; ".join(failed)) if failed else
                 ", ".join(label.split(": ", 1)[-1] for label, (k, _) in RESULTS.items() if k == kind)}
                for kind, (tried, passed, failed) in kinds.items()]
        rows += [{"check": f"Fuzzed (hypothesis): {name}", "tried": count, "passed": count - FUZZ_BAD.get(name, 0),
                  "detail": (f"FAILED: {FUZZ_BAD[name]} generated inputs raised (see the test's falsifying example)"
                             if FUZZ_BAD.get(name) else
                             "every generated input refused with a one-line error or accepted; no traceback")}
                 for name, count in FUZZ.items()]
        save_reliability_part(REPORT, {
            "title": "Bad input: malformed files refused cleanly, readers fuzzed",
            "command": "pytest tests/test_reliability_inputs.py",
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": rows,
            "notes": [f"{sum(ok for _, ok in RESULTS.values())} of {len(RESULTS)} malformed inputs refused with exit "
                      "code 2, a first error line naming the file (and line or field), no traceback and nothing "
                      "written; a BOM and CRLF line ends are read like plain UTF-8 (not counted).",
                      "Fuzz counts are the examples hypothesis generated in this run."],
        })


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if "__pycache__" not in p.parts}


@pytest.mark.parametrize("label", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(label, tmp_path, tiny_qwen, finished_run, capsys, monkeypatch):
    MODEL[:] = [tiny_qwen]
    RUN[:] = [finished_run]
    case = CASES[label]
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        path = tmp_path / name.rstrip("/")
        if content is None:
            path.mkdir()
        elif callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{d}", str(tmp_path)).replace("{model}", str(tiny_qwen)), encoding="utf-8")
    before = _snapshot(tmp_path)
    argv = [a.replace("{d}", str(tmp_path)).replace("{model}", str(tiny_qwen)) for a in case.argv]
    try:
        code = main(argv)
    except BaseException as exc:  # noqa: BLE001 - a traceback is the finding
        RESULTS[label] = (case.kind, False)
        raise AssertionError(f"{label}: raised {type(exc).__name__}: {exc}") from exc
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    problems = []
    if code != 2:
        problems.append(f"exit code {code}")
    if "Traceback" in out + err:
        problems.append("traceback")
    if not errors or not all(part in errors[0] for part in case.expect):
        problems.append(f"first error line {errors[:1]} lacks {case.expect}")
    if _snapshot(tmp_path) != before:
        problems.append("something was written")
    RESULTS[label] = (case.kind, not problems)
    assert not problems, f"{label}: {problems}\n{err[-1500:]}"


# ----------------------------------------------------------------------------- tolerated, read like their twins

def test_a_bom_and_crlf_line_ends_read_like_plain_utf8(tmp_path, capsys):
    plain = tmp_path / "plain.jsonl"
    plain.write_text(jl(CHAT, CHAT), encoding="utf-8")
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(b"\xef\xbb\xbf" + jl(CHAT, CHAT).replace("\n", "\r\n").encode())
    assert main(["data", "convert", str(plain), str(tmp_path / "a.jsonl"), "--to", "messages"]) == 0
    assert main(["data", "convert", str(odd), str(tmp_path / "b.jsonl"), "--to", "messages"]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_corpus_is_large_and_covers_every_kind():
    kinds = {case.kind for case in CASES.values()}
    assert kinds == {"data file", "config file", "model folder", "run directory", "Modelfile / export"}
    assert len(CASES) >= 60
    suffixes = {Path(next(iter(c.files))).suffix for c in CASES.values() if c.kind == "data file"}
    assert {".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt"} <= suffixes


# ----------------------------------------------------------------------------- fuzzing: no input gives a traceback

import contextlib  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ducktune.errors import UserError  # noqa: E402

FUZZ: dict[str, int] = {}
FUZZ_TESTS = 6
yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
SECTION_KEYS = ["model", "data", "lora", "train", "output", "eval", "trian", ""]
FIELD_KEYS = ["name_or_path", "datasets", "learning_rate", "max_steps", "method", "r", "dir", "packing", "device",
              "cutoff_len", "val_ratio", "val_file", "weight", "path", "repeat", "tags", "columns", "x"]
yaml_values = st.recursive(yaml_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.sampled_from(FIELD_KEYS) | st.text(max_size=4), c, max_size=4),
                           max_leaves=12)
configs = st.dictionaries(st.sampled_from(SECTION_KEYS), yaml_values, max_size=4)


FUZZ_BAD: dict[str, int] = {}


@contextlib.contextmanager
def fuzzed(name: str):
    """Counts one generated input, and whether it failed (a failing example also fails its test)."""
    FUZZ[name] = FUZZ.get(name, 0) + 1
    try:
        yield
    except BaseException:
        FUZZ_BAD[name] = FUZZ_BAD.get(name, 0) + 1
        raise


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs | st.text(max_size=60).map(lambda t: {"__text__": t}), as_bytes=st.binary(max_size=30))
def test_fuzz_config_loader(tmp_path_factory, config, as_bytes):
    import yaml

    from ducktune.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    if "__text__" in config:
        path.write_text(config["__text__"], encoding="utf-8")
    else:
        path.write_bytes(yaml.safe_dump(config, allow_unicode=True).encode() + (as_bytes if len(as_bytes) < 5 else b""))
    with fuzzed("config loader (YAML files)"):
        try:
            load_config(path)
        except UserError:
            pass


@settings(max_examples=200, deadline=None)
@given(overrides=st.lists(st.tuples(st.sampled_from(["train.max_steps", "data.datasets", "lora.r", "model.device", "x.y",
                                                     "train", ".", "output.dir.sub"]), st.text(max_size=12)), max_size=3))
def test_fuzz_set_overrides(overrides):
    from ducktune.config import load_config

    with fuzzed("config loader (--set overrides)"):
        try:
            load_config(None, [f"{key}={value}" for key, value in overrides])
        except UserError:
            pass


nested = st.integers(min_value=1, max_value=60_000).map(lambda n: "[" * n + "]" * n)


@settings(max_examples=60, deadline=None)
@given(body=st.text(alphabet='[]{}":,0a \n\\', max_size=80) | nested, suffix=st.sampled_from([".json", ".jsonl"]))
def test_fuzz_json_readers_with_brackets_and_depth(tmp_path_factory, body, suffix):
    from ducktune.config import load_config
    from ducktune.data.check import check_data

    path = tmp_path_factory.mktemp("fz") / f"d{suffix}"
    path.write_text(body, encoding="utf-8")
    with fuzzed("data readers (JSON brackets, deep nesting)"):
        report = check_data(load_config(None, [f"data.datasets=[{path}]"]), None)
        assert all(str(issue).startswith(str(path)) for issue in report.issues)


files = st.sampled_from(["trainer_state.json", "adapter_model.safetensors", "optimizer.pt"])


@settings(max_examples=200, deadline=None)
@given(damage=st.dictionaries(files, st.binary(max_size=64) | st.text(max_size=40).map(str.encode), min_size=1))
def test_fuzz_checkpoint_reader(tmp_path_factory, damage):
    from ducktune.train.checkpoints import checkpoint_problem, latest_complete

    folder = tmp_path_factory.mktemp("ck")
    path = folder / "checkpoint-3"
    path.mkdir()
    for name, data in damage.items():
        (path / name).write_bytes(data)
    with fuzzed("checkpoint reader (damaged files)"):
        problem = checkpoint_problem(path)
        assert problem is None or isinstance(problem, str)
        assert latest_complete(folder, log=lambda m: None) in (None, path)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80) | st.binary(max_size=40),
       manifest=st.none() | st.recursive(yaml_scalars, lambda c: st.lists(c, max_size=3)
                                          | st.dictionaries(st.sampled_from(["files", "merged", "modelfile", "name",
                                                                              "probe_prompts"]), c, max_size=4),
                                          max_leaves=8))
def test_fuzz_verify_inputs(tmp_path_factory, text, manifest):
    """`ducktune verify` on an export folder with any export.json and Modelfile: one-line errors only."""
    from ducktune.export.pipeline import verify_export

    folder = tmp_path_factory.mktemp("ex")
    good = {"name": "m", "files": {"merged": "merged", "modelfile": "Modelfile"}, "probe_prompts": []}
    (folder / "export.json").write_text(json.dumps(manifest if manifest is not None else good))
    (folder / "Modelfile").write_bytes(text if isinstance(text, bytes) else text.encode())
    with fuzzed("verify (export.json and Modelfile)"):
        with pytest.raises(UserError):  # nothing here is a complete export: always refused, never a traceback
            verify_export(folder, log=lambda m: None)


@settings(max_examples=200, deadline=None)
@given(run_json=st.binary(max_size=40) | st.text(max_size=40).map(str.encode), metrics=st.binary(max_size=60))
def test_fuzz_run_directory_reader(tmp_path_factory, run_json, metrics):
    from ducktune.rundir import RunDir

    folder = tmp_path_factory.mktemp("run")
    (folder / "run.json").write_bytes(run_json)
    (folder / "metrics.jsonl").write_bytes(metrics)
    run = RunDir(folder)
    with fuzzed("run directory reader (run.json, metrics.jsonl)"):
        assert all(isinstance(row, dict) for row in run.read_metrics())
        try:
            run.weights_dir()
        except UserError:
            pass
