"""The UI's JSON endpoints (in process): the form is the config schema, the saved YAML is what
`ducktune train` reads, data checks report file:line problems, the preview marks exactly the
trained tokens, runs and reports are listed safely, training starts and stops as a subprocess."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from ducktune.config import describe_options, load_config
from ducktune.ui.app import create_ui_app
from ducktune.ui.form import form_schema
from web_helpers import QA, shared_trained_run, write_dataset


@pytest.fixture(scope="module")
def trained(tiny_qwen, tmp_path_factory):
    return shared_trained_run(tiny_qwen, tmp_path_factory)


@pytest.fixture
def runs_dir(tmp_path, trained):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(trained, runs / "duckling")
    return runs


@pytest.fixture
def client(runs_dir):
    with TestClient(create_ui_app(runs_dir), base_url="http://127.0.0.1:7860") as test_client:
        yield test_client


def error_of(response) -> str:
    return response.json()["error"]["message"]


def test_form_has_every_config_option_once_with_its_documentation():
    fields = [f for section in form_schema() for f in section["fields"]]
    keys = [f["key"] for f in fields]
    options = describe_options()
    assert keys == [key for key, *_ in options]
    by_key = {f["key"]: f for f in fields}
    for key, _, default, description in options:
        assert by_key[key]["description"] == description and by_key[key]["default"] == default
    assert by_key["train.method"]["widget"] == "select" and by_key["train.method"]["choices"] == ["lora", "qlora", "full"]
    assert by_key["train.max_steps"]["widget"] == "integer" and by_key["train.max_steps"]["nullable"]
    assert by_key["train.learning_rate"]["widget"] == "number"
    assert by_key["data.shuffle"]["widget"] == "checkbox"
    assert by_key["data.datasets"]["widget"] == "yaml" and by_key["lora.target_modules"]["widget"] == "yaml"


def test_form_values_become_the_yaml_that_train_reads(client, tmp_path):
    values = {"model.name_or_path": "smollm2-135m", "data.datasets": "- a.json\n- path: b.jsonl\n  repeat: 2",
              "train.learning_rate": 1e-4, "train.max_steps": 7, "data.shuffle": False,
              "lora.target_modules": "[q_proj, v_proj]", "model.system_prompt": None, "output.dir": "runs/x"}
    response = client.post("/api/config/validate", json=values)
    assert response.status_code == 200
    text = response.json()["yaml"]
    path = tmp_path / "saved.yaml"
    path.write_text(text)
    config = load_config(path)
    assert config.train.learning_rate == 1e-4 and config.train.max_steps == 7 and config.data.shuffle is False
    assert [d.path for d in config.data.datasets] == ["a.json", "b.jsonl"] and config.data.datasets[1].repeat == 2
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.train.batch_size == 4  # untouched options keep the schema's default


def test_form_values_show_datasets_as_they_are_typed():
    """A reloaded form showed `- {"path": ..., "format": "auto", "columns": {}, "tags": {}, "repeat": 1, ...}`
    for a dataset given as `- path`: only the options a dataset sets are given back, a bare path as itself."""
    from ducktune.ui.form import config_from_form, form_values

    typed = "- a.json\n- path: b.jsonl\n  repeat: 2\n  columns: {instruction: q}"
    config = config_from_form({"data.datasets": typed})
    values = form_values(config)
    assert values["data.datasets"] == ["a.json", {"path": "b.jsonl", "columns": {"instruction": "q"}, "repeat": 2.0}]
    again = config_from_form({"data.datasets": yaml.safe_dump(values["data.datasets"])})
    assert again.data.datasets == config.data.datasets


def test_form_errors_name_the_option(client):
    response = client.post("/api/config/validate", json={"train.learning_rate": -1, "train.method": "magic",
                                                          "lora.target_modules": "[unclosed"})
    assert response.status_code == 400
    message = error_of(response)
    assert "form: lora.target_modules: invalid YAML" in message
    response = client.post("/api/config/validate", json={"train.learning_rate": -1, "train.method": "magic"})
    lines = error_of(response).splitlines()
    assert any(line.startswith("form: train.learning_rate:") for line in lines)
    assert any(line.startswith("form: train.method:") for line in lines)
    assert error_of(client.post("/api/config/validate", json={"train.speed": 3})).startswith("form: train.speed: unknown")


def test_upload_and_check_report_every_problem(client, runs_dir, tmp_path):
    good = write_dataset(tmp_path / "good.json").read_bytes()
    saved = client.put("/api/data/upload?name=../../evil name.json", content=good).json()
    assert Path(saved["path"]).parent == runs_dir / ".ui" / "uploads" and saved["name"] == "evil_name.json"
    check = client.post("/api/data/check", json={"path": saved["path"]}).json()
    assert check == {**check, "format": "alpaca", "records": len(QA), "samples": len(QA), "issue_count": 0, "ok": True}
    bad = '{"instruction": "q1", "output": "a1"}\n{"instruction": "q2"}\n{"instruction": "", "output": "a3"}\nnot json\n'
    saved = client.put("/api/data/upload?name=bad.jsonl", content=bad.encode()).json()
    check = client.post("/api/data/check", json={"path": saved["path"]}).json()
    assert not check["ok"] and check["issue_count"] == len(check["issues"]) >= 2
    # Every problem names the file and the line: the record without an output, the line that is not JSON.
    assert all(issue.startswith(saved["path"] + ":") for issue in check["issues"])
    assert {2, 4} <= {int(issue[len(saved["path"]) + 1:].split(":")[0]) for issue in check["issues"]}
    assert [f["name"] for f in client.get("/api/data/files").json()] == ["bad.jsonl", "evil_name.json"]
    response = client.put("/api/data/upload?name=x.exe", content=b"MZ")
    assert response.status_code == 400 and "unsupported file type" in error_of(response)


def test_check_with_a_model_measures_tokens_like_data_check(client, tiny_qwen, tmp_path):
    from ducktune.data.lengths import token_stats
    from ducktune.data.loader import load_file
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer

    path = write_dataset(tmp_path / "d.json")
    check = client.post("/api/data/check", json={"path": str(path), "model": str(tiny_qwen), "cutoff_len": 12}).json()
    expected, _ = token_stats(load_file(path).samples, ChatFormat(load_tokenizer(tiny_qwen)), 12, "assistant")
    assert check["tokens"] == {**expected.as_json(), "model": str(tiny_qwen)}
    assert check["tokens"]["truncated"] > 0  # a 12-token cutoff cuts these samples
    assert client.post("/api/data/check", json={"path": str(path)}).json()["tokens"] is None
    # Values the config itself refuses are a 400 naming the field, not a 500 from the data code.
    for url, body, field in (("/api/data/check", {"format": "bogus"}, "format"),
                             ("/api/data/check", {"cutoff_len": 8}, "cutoff_len"),
                             ("/api/data/preview", {"model": str(tiny_qwen), "fmt": "bogus"}, "fmt")):
        response = client.post(url, json={"path": str(path), **body})
        assert response.status_code == 400 and field in error_of(response), (url, body, response.text)


def test_check_says_not_usable_where_data_check_does(client, tiny_qwen, tmp_path, capsys):
    """A file without a single bad record, whose every sample loses all its trained tokens at
    the cutoff: `ducktune data check` says "Usable: no", and so must the Data tab."""
    from data_support import run_cli

    path = tmp_path / "long-questions.json"
    path.write_text(json.dumps([{"instruction": "A question long enough to pass the cutoff " * 3, "output": "answer"}]))
    code, out, _ = run_cli(capsys, "data", "check", str(path), "--model", str(tiny_qwen), "--cutoff", "12")
    assert code == 2 and "Usable: no: every sample loses all its trained tokens" in out
    check = client.post("/api/data/check", json={"path": str(path), "model": str(tiny_qwen), "cutoff_len": 12}).json()
    assert check["issue_count"] == 0 and not check["ok"]
    assert out.splitlines()[-1] == f"Usable: no: {check['verdict']}"


def test_data_tab_verdict_names_the_forms_option_not_the_cli_flag(client, tmp_path, capsys):
    """The Data tab showed data check's verdict as is: "pass --skip-bad", a flag the web UI has no
    field for; it names the form's data.skip_bad, and the CLI keeps its flag."""
    from data_support import run_cli

    path = tmp_path / "one-bad.json"
    path.write_text(json.dumps([{"instruction": "Hi", "output": "Hello"}, {"instruction": "Hi", "output": 3}]))
    check = client.post("/api/data/check", json={"path": str(path)}).json()
    assert check["verdict"] == "1 problem; fix them, or turn on data.skip_bad to train on the 1 good sample"
    code, out, _ = run_cli(capsys, "data", "check", str(path))
    assert code == 2 and out.splitlines()[-1] == "Usable: no: 1 problem; fix them, or pass --skip-bad to train on the 1 good sample"


def test_a_long_check_does_not_hold_up_a_preview(client, tiny_qwen, tmp_path, monkeypatch):
    """A check held the tokenizer's lock from start to end: while a 300 MB file was checked (4 min), a
    preview of a 5-record file waited for it. The check now uses its own copy of the tokenizer."""
    import ducktune.data.check as check_module

    real, entered, release = check_module.check_data, threading.Event(), threading.Event()

    def slow_check(*args, **kwargs):  # a check that takes as long as the test wants
        entered.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(check_module, "check_data", slow_check)
    path = write_dataset(tmp_path / "d.json")
    body = {"path": str(path), "model": str(tiny_qwen), "cutoff_len": 12}
    with ThreadPoolExecutor(2) as pool:
        checking = pool.submit(client.post, "/api/data/check", json=body)
        try:
            assert entered.wait(60)
            previewing = pool.submit(client.post, "/api/data/preview", json={**body, "count": 1})
            preview = previewing.result(timeout=30)  # before: blocked until the check ended
        finally:
            release.set()
        check = checking.result(timeout=60)
    assert preview.status_code == 200 and preview.json()["rows"][0]["tokens"] > 0
    assert check.status_code == 200 and check.json()["tokens"]["truncated"] > 0 and check.json()["samples"] == len(QA)


def test_check_says_whether_skipping_bad_records_would_help(client, tmp_path):
    """The Data tab offered "turn on data.skip_bad to train on the good ones" under every problem list,
    also where skipping cannot help: a UTF-16 or invalid JSON file (skipping drops records, not files),
    an empty file, no good record. The check says when it helps, as the verdict does."""
    good, bad = {"instruction": "Hi", "output": "Hello"}, {"instruction": "Hi", "output": 3}
    files = {"one-bad.json": json.dumps([good, bad]).encode(), "bad-line.jsonl": json.dumps(good).encode() + b"\n{oops\n",
             "utf16.json": json.dumps([good]).encode("utf-16"), "broken.json": b'[{"instruction": ',
             "empty.json": b"", "all-bad.json": json.dumps([bad]).encode(), "fine.json": json.dumps([good]).encode()}
    helps = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        check = client.post("/api/data/check", json={"path": str(tmp_path / name)}).json()
        helps[name] = check["skip_bad_helps"]
        assert helps[name] == ("turn on data.skip_bad" in check["verdict"]), (name, check["verdict"])
    assert [name for name, yes in helps.items() if yes] == ["one-bad.json", "bad-line.jsonl"]


def test_preview_marks_exactly_the_assistant_answers(client, tiny_qwen, tmp_path):
    path = write_dataset(tmp_path / "d.json")
    result = client.post("/api/data/preview", json={"path": str(path), "model": str(tiny_qwen), "start": 1, "count": 2}).json()
    assert result["total"] == len(QA) and [r["index"] for r in result["rows"]] == [1, 2]
    for row, (question, answer) in zip(result["rows"], QA[1:3]):
        trained = "".join(text for text, is_trained in row["spans"] if is_trained)
        context = "".join(text for text, is_trained in row["spans"] if not is_trained)
        assert trained == answer + "<|im_end|>"  # the answer and its end-of-turn, nothing else
        assert question in context and answer not in context
        assert row["trained"] < row["tokens"] and not row["truncated"]


def test_preview_of_a_record_with_half_an_emoji_is_a_400_naming_it(tiny_qwen, tmp_path):
    """A lone surrogate ("\\ud83d" in JSON) was a 500: the tokenizer's TypeError."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"instruction": "Hi \\ud83d", "output": "Yo"}\n')
    with TestClient(create_ui_app(tmp_path / "runs"), base_url="http://127.0.0.1:7860") as bare:
        response = bare.post("/api/data/preview", json={"path": str(path), "model": str(tiny_qwen)})
    assert response.status_code == 400
    assert error_of(response).startswith(f"{path}:1: instruction: invalid Unicode (a lone surrogate \\ud83d")


def test_preview_of_a_pair_shows_the_prompt_once_and_both_answers_trained(client, tiny_qwen, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Who are you?", "chosen": "I am Duckling.", "rejected": "I am a model."}) + "\n")
    row = client.post("/api/data/preview", json={"path": str(path), "model": str(tiny_qwen)}).json()["rows"][0]
    assert row["kind"] == "preference" and "Who are you?" in "".join(text for text, _ in row["spans"])
    assert not any(trained for _, trained in row["spans"])  # the prompt is context only
    trained = {a["name"]: "".join(text for text, t in a["spans"] if t) for a in row["answers"]}
    assert trained == {"chosen": "I am Duckling.<|im_end|>", "rejected": "I am a model.<|im_end|>"}


def test_runs_list_detail_and_report_escaping(client, runs_dir):
    runs = client.get("/api/runs").json()
    assert [r["name"] for r in runs] == ["duckling"]
    run = runs[0]
    assert run["status"] == "completed" and run["steps"] == 60 and run["chat_ready"]
    assert run["final_loss"] < run["first_loss"]
    report = runs_dir / "duckling" / "report.md"
    report.write_text(report.read_text() + "\n| <script>alert(1)</script> | <img src=x onerror=alert(2)> | ok |\n")
    detail = client.get("/api/runs/duckling").json()
    assert "<table>" in detail["report_html"] and "<details>" in detail["report_html"]
    assert "<script>" not in detail["report_html"] and "<img" not in detail["report_html"]
    assert "&lt;script&gt;" in detail["report_html"]
    assert "<code>&lt;|im_end|&gt;</code>" in detail["report_html"]  # stop tokens shown once escaped, not twice
    assert len(detail["metrics"]) == 60
    assert client.get("/api/runs/duckling/files/config.yaml").text == (runs_dir / "duckling" / "config.yaml").read_text()
    for bad in ("/api/runs/duckling/files/../../../etc/passwd", "/api/runs/duckling/files/%2e%2e/%2e%2e/etc/passwd",
                "/api/runs/..%2Fetc/files/passwd", "/api/runs/nope"):
        assert client.get(bad).status_code in (400, 404), bad


def test_chat_api_serves_each_run_tuned_and_base(client):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["duckling", "duckling-base"]
    reply = client.post("/v1/chat/completions", json={"model": "duckling", "max_tokens": 24,
                                                      "messages": [{"role": "user", "content": QA[0][0]}]}).json()
    assert reply["choices"][0]["message"]["content"] == QA[0][1]
    assert client.post("/v1/chat/completions", json={"model": "other", "messages": [{"role": "user", "content": "x"}]}
                       ).status_code == 404
    # The Chat tab's tools, offered to a model whose template writes none (this ChatML one): a 400 naming
    # them, which the tab shows in the answer's place; tools that are no function descriptions, the same.
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ask = [{"role": "user", "content": "Weather?"}]
    refused = client.post("/v1/chat/completions", json={"model": "duckling", "messages": ask, "tools": [tool]})
    assert refused.status_code == 400 and error_of(refused) == ("'tools': this model's chat template does not write "
                                                                "tool definitions")
    broken = client.post("/v1/chat/completions", json={"model": "duckling", "messages": ask, "tools": [{"oops": 1}]})
    assert broken.status_code == 400 and error_of(broken).startswith("'tools.0': must describe a function")


def test_export_files_are_listed_and_downloadable(client, runs_dir):
    # Whatever the export command writes, its GGUF files, Modelfile and report are found and downloadable.
    out = runs_dir / "duckling" / "export"
    out.mkdir()
    (out / "duckling-q4_k_m.gguf").write_bytes(b"GGUF" + bytes(60))
    (out / "Modelfile").write_text("FROM ./duckling-q4_k_m.gguf\n")
    (out / "verification.md").write_text("| check | result |\n|---|---|\n| top-1 agreement | 1.00 |\n")
    listing = client.get("/api/export/duckling").json()
    assert sorted(f["relative"] for f in listing["files"]) == ["export/Modelfile", "export/duckling-q4_k_m.gguf"]
    assert "top-1 agreement" in listing["report"]
    gguf = next(f for f in listing["files"] if f["name"].endswith(".gguf"))
    assert client.get("/" + gguf["url"]).content == b"GGUF" + bytes(60)


@pytest.mark.requires_llama_cpp
@pytest.mark.requires_go
def test_export_started_from_the_ui_runs_to_completion(client, runs_dir):
    """The Export tab's endpoints drive a real `ducktune export` of the tiny run: start, then
    status and log polled until the subprocess ends, with its files and verification report."""
    run = runs_dir / "duckling"
    started = client.post("/api/export/start", json={"name": "duckling"}).json()
    assert started["state"] == "running" and started["command"] == f"ducktune export {run}"
    deadline = time.time() + 300
    while (status := client.get("/api/export/status").json())["state"] == "running":
        assert time.time() < deadline, status["log"][-3000:]
        time.sleep(0.5)
    assert status["state"] == "completed" and status["returncode"] == 0, status["log"][-3000:]
    files = {f["relative"] for f in status["files"]}
    assert {"export/Modelfile", "export/duckling-q4_k_m.gguf"} <= files
    assert all((run / relative).is_file() for relative in files)
    assert status["report"]
    log = client.get("/api/log/export").text
    assert "Export verification: all checks passed" in log
    assert client.get("/api/export/duckling").json()["files"] == status["files"]


def test_train_start_with_unusable_data_is_a_400_that_writes_nothing(client, runs_dir, tiny_qwen, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}\n'
                   '{"conversations": [{"from": "robot", "value": "hi"}]}\n', encoding="utf-8")
    values = {"model.name_or_path": str(tiny_qwen), "data.datasets": f"- {bad}", "train.max_steps": 2,
              "output.dir": str(runs_dir / "bad-run")}
    response = client.post("/api/train/start", json=values)
    assert response.status_code == 400, response.text
    assert error_of(response).startswith(f"form: data.datasets: {bad}:2") and "robot" in error_of(response)
    assert client.get("/api/train/status").json()["state"] != "running"
    assert not (runs_dir / "bad-run").exists() and not list(runs_dir.rglob("bad-run.yaml"))


def test_train_starts_the_cli_on_the_saved_yaml_and_stops_resumably(client, runs_dir, tiny_qwen, tmp_path):
    data = write_dataset(tmp_path / "d.json")
    run_dir = runs_dir / "ui-run"
    values = {"model.name_or_path": str(tiny_qwen), "data.datasets": f"- {data}", "train.max_steps": 2000,
              "train.save_steps": 5, "output.dir": str(run_dir), "train.batch_size": 2}
    started = client.post("/api/train/start", json=values).json()
    assert started["run_dir"] == str(run_dir)
    saved = Path(started["yaml_path"])
    assert load_config(saved).train.max_steps == 2000
    assert client.get(f"/api/configs/{started['yaml_name']}").text == saved.read_text()
    second = client.post("/api/train/start", json={**values, "train.max_steps": 5})
    assert second.status_code == 400 and "already running" in error_of(second)
    assert load_config(saved).train.max_steps == 2000  # the running job's YAML is left as it runs

    deadline = time.monotonic() + 240
    status = client.get("/api/train/status").json()
    # The progress line and metrics.jsonl are written by separate callbacks: wait for both.
    while time.monotonic() < deadline and not ((status.get("progress") or {}).get("step", 0) >= 1
                                               and len(status.get("metrics", [])) >= 6):
        assert status["state"] == "running", status.get("log", "")[-2000:]
        time.sleep(0.5)
        status = client.get("/api/train/status").json()
    assert status["progress"]["total"] == 2000 and status["progress"]["step"] >= 1
    # A page reloaded now gets the running job's settings and YAML, not the form's defaults.
    assert status["yaml_name"] == started["yaml_name"] and status["form"]["train.max_steps"] == 2000
    assert status["form"]["output.dir"] == str(run_dir) and status["form"]["train.batch_size"] == 2
    assert status["form"]["data.datasets"] == [str(data)]  # as typed, not every option's default spelled out
    assert status["command"] == f"ducktune train {saved}"
    assert [m["step"] for m in status["metrics"]][:3] == [1, 2, 3]

    client.post("/api/train/stop")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and client.get("/api/train/status").json()["state"] == "stopping":
        time.sleep(0.3)
    status = client.get("/api/train/status").json()
    assert status["state"] == "stopped"
    # Restarting it with changed settings would fail in the job (a resume refuses them) after replacing
    # the YAML the run started with: a 400 naming the change, the YAML kept.
    changed = client.post("/api/train/start", json={**values, "train.max_steps": 360})
    assert changed.status_code == 400 and "train.max_steps: 2000 -> 360" in error_of(changed), changed.text
    assert load_config(saved).train.max_steps == 2000
    finished = client.post("/api/train/start", json={**values, "output.dir": str(runs_dir / "duckling")})
    assert finished.status_code == 400 and error_of(finished).startswith("form: output.dir:")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"  # Ctrl-C semantics: resumable with the same command
    assert (run_dir / "config.yaml").read_text() == saved.read_text()
    assert yaml.safe_load(saved.read_text())["output"]["dir"] == str(run_dir)


def test_runs_list_shows_the_step_a_stopped_run_reached(client, runs_dir):
    """A run stopped at step 2024 (the Train tab's count, and its last checkpoint) was listed with 2020,
    its last logged step."""
    run = runs_dir / "stopped"
    for step in (2000, 2024):
        (run / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    (run / "checkpoints" / "incomplete-checkpoint-2030").mkdir()  # set aside: no step it names counts
    (run / "run.json").write_text(json.dumps({"status": "interrupted", "method": "lora"}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2010, 2020)))
    rows = {r["name"]: r for r in client.get("/api/runs").json()}
    assert rows["stopped"]["steps"] == 2024 and rows["stopped"]["status"] == "interrupted"
    assert rows["duckling"]["steps"] == json.loads((runs_dir / "duckling" / "run.json").read_text())["result"]["global_step"]


def test_runs_list_the_functions_a_run_trained_on_for_the_chat_tab(client, runs_dir):
    """run.json probe_tools (one entry per probe prompt, None where the prompt had none): each function
    once, by name, in the order first seen; a run without tools, or with a damaged entry, offers none."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    news = {"type": "function", "function": {"name": "get_news"}}
    for name, probe_tools in (("caller", [[weather], None, [news, dict(weather, note="again")]]),
                              ("odd", [["not a tool"], {"function": 3}, None])):
        (runs_dir / name).mkdir()
        (runs_dir / name / "run.json").write_text(json.dumps({"status": "completed", "probe_tools": probe_tools}))
    rows = {r["name"]: r for r in client.get("/api/runs").json()}
    assert rows["caller"]["tools"] == [weather, news]
    assert rows["odd"]["tools"] is None and rows["duckling"]["tools"] is None


def test_other_sites_cannot_drive_the_ui(client):
    """CSRF and DNS rebinding: a page from another origin must not start training."""
    values = {"train.max_steps": 1}
    assert client.post("/api/config/validate", json=values, headers={"Origin": "http://127.0.0.1:7860"}).status_code == 200
    refused = client.post("/api/train/start", json=values, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "cross-origin" in error_of(refused)
    rebound = client.get("/api/info", headers={"Host": "evil.example:7860"})
    assert rebound.status_code == 403
    assert client.get("/api/info", headers={"Host": "localhost:7860"}).status_code == 200


def test_damaged_runs_are_listed_as_damaged_and_never_break_the_page(client, runs_dir):
    """One run.json of the wrong shape made /api/info and /api/runs 500 (the page never loaded); one that
    is not JSON made its detail page 500 while Chat still offered it."""
    for name, text in (("shape", '{"status": "completed", "base_model": "smollm", "result": []}'),
                       ("listed", "[1, 2]"), ("cut", '{"status": "compl')):
        shutil.copytree(runs_dir / "duckling", runs_dir / name)
        (runs_dir / name / "run.json").write_text(text, encoding="utf-8")
    assert client.get("/api/info").status_code == 200
    listed = {r["name"]: r for r in client.get("/api/runs").json()}
    assert listed["duckling"]["status"] == "completed" and listed["shape"]["base_model"] is None
    assert listed["listed"]["status"] == listed["cut"]["status"] == "damaged"
    assert "run.json is damaged" in listed["cut"]["problem"] and not listed["cut"]["chat_ready"]
    for name in ("shape", "listed", "cut"):
        assert client.get(f"/api/runs/{name}").status_code == 200
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "duckling" in models and "shape" in models and "cut" not in models and "listed" not in models


def test_train_start_refuses_what_the_job_would_fail_on(client, runs_dir, tiny_qwen, tmp_path):
    """Each of these answered 200 and the job failed a second later (or wrote a run the UI never shows)."""
    data = write_dataset(tmp_path / "d.json")
    values = {"model.name_or_path": str(tiny_qwen), "data.datasets": f"- {data}", "train.max_steps": 2}
    outside = client.post("/api/train/start", json={**values, "output.dir": str(tmp_path / "elsewhere")})
    assert outside.status_code == 400 and "the UI keeps its runs in" in error_of(outside)
    unknown = client.post("/api/train/start", json={**values, "model.name_or_path": "no-such-model",
                                                    "output.dir": str(runs_dir / "x")})
    assert unknown.status_code == 400 and "no-such-model" in error_of(unknown)
    endless = client.post("/api/config/validate", json={**values, "train.max_steps": None, "train.num_epochs": "inf"})
    assert endless.status_code == 400 and "train.num_epochs" in error_of(endless)
    assert not (tmp_path / "elsewhere").exists() and not (runs_dir / "x").exists()
    missing = client.post("/api/data/preview", json={"path": str(tmp_path / "nope.jsonl"), "model": str(tiny_qwen)})
    assert missing.status_code == 400 and "file not found" in error_of(missing)


def test_a_bare_run_name_goes_into_the_runs_folder(runs_dir, tmp_path, monkeypatch):
    from ducktune.errors import UserError
    from ducktune.ui.app import run_dir_in

    monkeypatch.chdir(tmp_path)
    assert run_dir_in(runs_dir, "my-run") == (runs_dir / "my-run").resolve()
    assert run_dir_in(runs_dir, str(runs_dir / "b")) == (runs_dir / "b").resolve()
    for value in ("../../etc/evil", str(tmp_path / "elsewhere"), "sub/dir", str(runs_dir / ".hidden")):
        with pytest.raises(UserError, match="the UI keeps its runs in"):
            run_dir_in(runs_dir, value)


def test_export_links_survive_any_run_name(client, runs_dir):
    """A run named with '#' or '?' had download links cut at that character (400 on every file)."""
    from urllib.parse import quote

    name = "运行 #1?x%"
    shutil.copytree(runs_dir / "duckling", runs_dir / name)
    (runs_dir / name / "export").mkdir(exist_ok=True)
    (runs_dir / name / "export" / "Modelfile").write_text("FROM ./m.gguf\n", encoding="utf-8")
    files = client.get(f"/api/export/{quote(name, safe='')}").json()["files"]
    link = next(f["url"] for f in files if f["name"] == "Modelfile")
    assert "#" not in link and "?" not in link
    assert client.get("/" + link).text == "FROM ./m.gguf\n"


def test_the_pages_file_types_and_formats_are_the_servers():
    """The upload picker and the format menu list what the server reads (.ndjson and unpaired were missing)."""
    import re

    from ducktune.data.formats import FORMATS
    from ducktune.data.readers import SUPPORTED_SUFFIXES

    page = (Path(__file__).resolve().parents[1] / "src/ducktune/ui/static/index.html").read_text(encoding="utf-8")
    accept = re.search(r'id="data-file" accept="([^"]+)"', page).group(1).split(",")
    assert sorted(accept) == sorted(SUPPORTED_SUFFIXES)
    menu = re.search(r'<select id="data-format">(.*?)</select>', page, re.S).group(1)
    assert re.findall(r"<option>(\w+)</option>", menu) == ["auto", *FORMATS]
