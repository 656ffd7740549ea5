"""`ducktune data identity`: a self-cognition dataset from the bundled template."""

from __future__ import annotations

import json

from data_support import run_cli
from ducktune.config import DataConfig
from ducktune.data.loader import load_data


def test_identity_dataset_names_the_model_and_author(tmp_path, capsys):
    out = tmp_path / "identity.json"
    code, stdout, _ = run_cli(capsys, "data", "identity", "--name", "Nova", "--author", "Acme Labs", out)
    assert code == 0
    records = json.loads(out.read_text())
    template = json.loads((__import__("importlib.resources").resources.files("ducktune.resources")
                           / "identity_template.json").read_text(encoding="utf-8"))
    assert len(records) == len(template)
    assert all("{name}" not in r["output"] and "{author}" not in r["output"] for r in records)
    assert sum("Nova" in r["output"] for r in records) == len(records)
    assert any("Acme Labs" in r["output"] for r in records)
    assert {r["instruction"] for r in records} >= {"Who are you?", "你是谁？"}
    assert f"Wrote {len(records)} identity examples for Nova by Acme Labs" in stdout
    # What it writes trains as is.
    assert len(load_data(DataConfig(datasets=[str(out)])).train) == len(records)


def test_one_language_and_jsonl(tmp_path, capsys):
    out = tmp_path / "identity_zh.jsonl"
    code, _, _ = run_cli(capsys, "data", "identity", "--name", "小新", "--author", "某公司", "--lang", "zh", out)
    assert code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records and all("小新" in r["output"] for r in records)
    assert all(not r["instruction"].isascii() for r in records)


def test_unknown_language_and_existing_output(tmp_path, capsys):
    out = tmp_path / "identity.json"
    code, _, err = run_cli(capsys, "data", "identity", "--name", "N", "--author", "A", "--lang", "fr", out)
    assert code == 2 and err.strip() == "error: --lang: unknown language fr (available: en, zh)"
    assert not out.exists()
    out.write_text("[]")
    code, _, err = run_cli(capsys, "data", "identity", "--name", "N", "--author", "A", out)
    assert code == 2 and "already exists; pass --force" in err
    assert run_cli(capsys, "data", "identity", "--name", "N", "--author", "A", out, "--force")[0] == 0
