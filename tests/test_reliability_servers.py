"""`ducktune serve` and `ducktune ui` under abuse: every route, found from the apps themselves (a new
endpoint is fuzzed without editing this file), answers wrong types, missing fields, broken JSON,
hostile path and query values with a 4xx and an error body, never a 500; bodies over the limit
get 413; uploads never land outside the upload folder; foreign Host/Origin stay refused; the
API key is compared in constant time; a server exposed on 0.0.0.0 without a key warns.
The load run (bench/reliability.py: 1,000 mixed requests at 32 concurrent) is the slow test at the end.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ducktune.serve.app import create_app
from ducktune.serve.registry import StaticRegistry
from ducktune.ui.app import create_ui_app
from ducktune.ui.form import form_schema
from web_helpers import free_port, write_dataset

ROOT = Path(__file__).resolve().parents[1]
UI_BASE = "http://127.0.0.1:7860"

# Raw bodies no endpoint may answer with a 5xx.
RAW_BODIES = [b"", b"{bad json", b"[]", b"[1, 2]", b"1", b'"text"', b"null", b"true", b"{}", b'{"a": NaN}',
              b"\xff\xfe\x00", json.dumps({"x" * 100: ["y"] * 1000}).encode()]
# Path and query values: traversal, encoded traversal, NUL, invalid UTF-8, over-long names, odd scripts.
HOSTILE = ["no-such-thing", "..", "%2e%2e", "..%2F..%2Fetc", "%00", "x%00.json", "%ff%fe", "a" * 600,
           "%E6%97%A5%E6%9C%AC", "%20", "-", "."]


def routes(app) -> list[tuple[str, str, object]]:
    """(method, path, endpoint) of every route of `app`, however the installed FastAPI nests included routers."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x keeps included routers nested
        found = list(iter_route_contexts(app.routes))
    except ImportError:
        found = list(app.routes)
    out = []
    for route in found:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                out.append((method, route.path, getattr(route, "endpoint", None)))
    return out


def request_schemas(app) -> dict[tuple[str, str], dict]:
    """{(method, path): the operation's OpenAPI entry}: its query parameters and JSON body schema."""
    spec = app.openapi()
    return {(method.upper(), path): op for path, ops in spec["paths"].items() for method, op in ops.items()}


def body_schema(op: dict, spec: dict) -> dict | None:
    content = ((op.get("requestBody") or {}).get("content") or {}).get("application/json")
    if not content:
        return None
    schema = content["schema"]
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def wrong_values(schema: dict) -> list:
    """JSON values of the wrong type for a property, that pydantic would not coerce either."""
    variants = schema.get("anyOf", [schema])
    types = {v.get("type") for v in variants}
    enum = next((v["enum"] for v in variants if "enum" in v), None) or next(
        (v.get("const") and [v["const"]] for v in variants if "const" in v), None)
    wrong = []
    if "string" not in types:
        wrong.append("not a number")
    if types & {"string", "object"} and not types & {"integer", "number"}:
        wrong.append(12345)
    if "array" not in types:
        wrong.append([1, [2]])
    if "object" not in types:
        wrong.append({"nested": {"x": 1}})
    if "null" not in types:
        wrong.append(None)
    if types <= {"integer"}:
        wrong.append(1.5)
    if enum:
        wrong.append("not-one-of-the-choices")
    if "integer" in types or "number" in types:
        wrong.append(10 ** 30)
        wrong.append(-(10 ** 30))
    return wrong


class Recorder:
    """Sends requests, keeps every answer that breaks the rules (a 5xx; a 4xx without an error body)."""

    def __init__(self, client: TestClient):
        self.client = client
        self.sent = 0
        self.broken: list[str] = []
        self.endpoints: set[tuple[str, str]] = set()
        self.final: dict = {}

    def send(self, method: str, url: str, route: tuple[str, str] | None = None, expect_4xx: bool = False, **kwargs):
        self.sent += 1
        if "json" in kwargs:  # encoded here: Infinity/NaN are sent as Python's json module writes them
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        if route:
            self.endpoints.add(route)
        response = self.client.request(method, url, **kwargs)
        what = f"{method} {url[:120]} {str(kwargs.get('content', kwargs.get('json', '')))[:120]!r}"
        if response.status_code >= 500:
            self.broken.append(f"{what} -> {response.status_code} {response.text[:200]}")
        elif expect_4xx and not 400 <= response.status_code < 500:
            self.broken.append(f"{what} -> {response.status_code}, expected a 4xx")
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = None
            if not message:
                self.broken.append(f"{what} -> {response.status_code} without an error body: {response.text[:200]}")
        return response


def fill_path(path: str, value: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", value, path)


def fuzz_app(app, fill: dict[str, object], form_keys: dict[str, dict]) -> Recorder:
    """Every route with raw bodies, hostile path/query values, wrong types and missing fields per property.
    `fill`: a harmless valid value per body property (so one wrong field at a time reaches the handler)."""
    with TestClient(app, base_url=UI_BASE, raise_server_exceptions=False) as client:  # one event loop for all
        record = Recorder(client)
        fuzz_routes(app, record, fill, form_keys)
        record.final = {kind: client.get(f"/api/{kind}/status").json().get("state") for kind in ("train", "export")}
    return record


def fuzz_routes(app, record: Recorder, fill: dict[str, object], form_keys: dict[str, dict]) -> None:
    spec = app.openapi()
    ops = request_schemas(app)
    for mount in (r for r in app.routes if type(r).__name__ == "Mount"):  # static files: traversal finds nothing
        for value in HOSTILE + ["..%2f..%2fui%2fapp.py", "%2e%2e/app.py"]:
            response = record.send("GET", f"{mount.path}/{value}")
            if response.status_code == 200 and "import " in response.text:
                record.broken.append(f"GET {mount.path}/{value} served Python source")
    for method, path, _ in routes(app):
        key = (method, path)
        op = ops.get(key, {})
        record.send("PATCH" if method != "PATCH" else "GET", fill_path(path, "x"), key)  # wrong method: 405
        for value in HOSTILE:
            url = fill_path(path, value)
            record.send(method, url, key)
            for param in (p for p in op.get("parameters", []) if p["in"] == "query"):
                record.send(method, f"{url}?{param['name']}={value}", key)
        if method not in ("POST", "PUT", "PATCH"):
            continue
        url = fill_path(path, "no-such-thing")
        for raw in RAW_BODIES:
            record.send(method, url, key, content=raw, headers={"Content-Type": "application/json"})
        schema = body_schema(op, spec)
        if schema is None:
            continue
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        base = {name: fill[name] for name in props if name in fill}
        for name in required:  # every required field missing in turn: a 4xx, not a TypeError
            record.send(method, url, key, expect_4xx=True, json={k: v for k, v in base.items() if k != name})
        for name, prop in props.items():
            for wrong in wrong_values(prop):
                record.send(method, url, key, expect_4xx=True, json={**base, name: wrong})
        if schema.get("additionalProperties") is not None and not props:  # {dotted key: value} forms
            for form_key, field in form_keys.items():
                wrong_types, extreme = form_wrong_values(field)
                for wrong in wrong_types:
                    record.send(method, url, key, json={form_key: wrong}, expect_4xx=True)
                for value in extreme:  # the right type: the config schema decides (its bounds), never a 500
                    record.send(method, url, key, json={form_key: value})


def form_wrong_values(field: dict) -> tuple[list, list]:
    """(values of the wrong type, extreme values of the right type) for one option of the Train form,
    by its widget (YAML options get wrong structures)."""
    by_widget = {"integer": (["many", [1], {"a": 1}, 1.5], [10 ** 30, -(10 ** 30)]),
                 "number": (["much", [1], {"a": 1}], [float("inf"), float("nan"), 1e308, -1e308]),
                 "checkbox": (["maybe", [1], {"a": 1}], []), "select": (["not-a-choice", 5, [1]], []),
                 "text": ([[1], {"a": 1}, 5], ["\x00", "x" * 10000]),
                 "yaml": ([{"unexpected": {"deeply": [1]}}, "[unclosed", 5.5], [])}
    return by_widget[field["widget"]]


@pytest.fixture
def ui_space(tmp_path):
    runs = tmp_path / "runs"
    fake = runs / "fake-run"
    fake.mkdir(parents=True)
    # A finished-looking run with no weights: every /api/runs/{name} route gets a real name too.
    (fake / "run.json").write_text(json.dumps({"status": "completed", "method": "lora", "result": {"final_loss": "x"}}))
    (fake / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": "two"}\n')
    data = write_dataset(tmp_path / "data.json")
    return {"runs": runs, "data": data, "cwd": tmp_path}


def test_every_ui_endpoint_answers_abuse_with_a_4xx_never_a_500(ui_space, monkeypatch):
    monkeypatch.chdir(ui_space["cwd"])  # anything written relative to the working directory stays in tmp
    app = create_ui_app(ui_space["runs"], device="cpu")
    fill = {"path": str(ui_space["data"]), "model": "no-such-model", "name": "no-such-run"}
    form_keys = {f["key"]: f for section in form_schema() for f in section["fields"]}
    record = fuzz_app(app, fill, form_keys)
    found = {(m, p) for m, p, _ in routes(app)}
    # The enumeration found the app's routes (an empty list would pass everything below vacuously).
    assert {("POST", "/api/data/check"), ("PUT", "/api/data/upload"), ("POST", "/api/train/start"),
            ("GET", "/api/runs/{name}/files/{relative:path}"), ("POST", "/v1/chat/completions")} <= found
    assert record.endpoints == found  # every route was fuzzed
    assert not record.broken, f"{len(record.broken)} of {record.sent} requests broke the rules:\n" + \
        "\n".join(record.broken[:40])
    # Fuzzing started nothing: a wrong form never launches `ducktune train`/`export`.
    assert record.final == {"train": "idle", "export": "idle"}
    assert record.sent > 1000


def test_every_serve_endpoint_answers_abuse_with_a_4xx_never_a_500():
    app = create_app(StaticRegistry([]), api_key=None)
    record = fuzz_app(app, {}, {})
    assert {("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/health")} <= \
        {(m, p) for m, p, _ in routes(app)} == record.endpoints
    assert not record.broken, "\n".join(record.broken[:40])


@pytest.fixture
def ui(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with TestClient(create_ui_app(runs, max_upload_bytes=4096), base_url=UI_BASE,
                    raise_server_exceptions=False) as client:
        yield client, runs


def test_data_check_without_path_is_a_400_naming_it(ui):
    """The bug that started this file: a body missing `path` was a 500 with a traceback."""
    client, _ = ui
    for body in ({}, {"model": "x"}, {"path": None}, {"path": ""}):
        response = client.post("/api/data/check", json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["param"] == "path" and error["message"].startswith("path: "), error
    response = client.post("/api/data/preview", json={"path": "x.json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


def test_bodies_over_the_limit_get_413_and_leave_nothing(ui, tmp_path):
    client, runs = ui
    uploads = runs / ".ui" / "uploads"

    def chunks(total: int, size: int = 1000):  # no Content-Length: counted as it streams
        for start in range(0, total, size):
            yield b"x" * min(size, total - start)

    for content in (b"x" * 5000, chunks(5000)):
        response = client.put("/api/data/upload?name=big.jsonl", content=content)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"
        assert "4 KiB" in response.json()["error"]["message"]
    assert not uploads.exists() or list(uploads.iterdir()) == []  # no file, no temporary left behind
    assert client.put("/api/data/upload?name=small.jsonl", content=b"x" * 4096).status_code == 200
    nine_mib = b'{"path": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    for content in (nine_mib, chunks(len(nine_mib), 1024 * 1024)):
        response = client.post("/api/data/check", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and "8 MiB" in response.json()["error"]["message"]
    api = TestClient(create_app(StaticRegistry([]), max_body_bytes=1000), raise_server_exceptions=False)
    for content in (b"{" + b" " * 2000 + b"}", chunks(2000)):
        response = api.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert api.post("/v1/chat/completions", json={"model": "m", "messages": []}).status_code == 400


def test_413_reaches_real_clients_over_a_socket():
    """Through uvicorn: a client that announced `Expect: 100-continue` gets the 413 without sending the
    body; one that sends a 9 MiB body gets the 413 (the server reads and drops it first: under load,
    answering before reading made clients see connection resets in bench/reliability.py)."""
    import socket

    from web_helpers import thread_server

    with thread_server(create_app(StaticRegistry([])), free_port()) as url:
        host, port = url.rsplit(":", 1)
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {20 * 1024 ** 2}\r\nExpect: 100-continue\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
            sock.sendall(head)
            received = b""
            while chunk := sock.recv(65536):  # the server closes the connection after its answer
                received += chunk
            answer = received.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413") and "request_too_large" in answer, answer[:300]
        import httpx

        response = httpx.post(url + "/v1/chat/completions", content=b"x" * (9 * 1024 ** 2),
                              headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_uploads_cannot_write_outside_the_upload_folder(ui, tmp_path):
    client, runs = ui
    uploads = runs / ".ui" / "uploads"
    outside = tmp_path / "outside.json"
    outside.write_text("keep me")
    names = ["../../outside.json", "../outside.json", str(outside), "..\\..\\outside.json", "/etc/x.json",
             "C:\\Windows\\x.json", "./.hidden.json", "a/b/c.json", "%2e%2e%2foutside.json", "x" * 400 + ".json",
             "日本語のデータ" * 40 + ".jsonl", "\u202ejson.exe"]
    for name in names:
        response = client.put("/api/data/upload", params={"name": name}, content=b"[]")
        assert response.status_code in (200, 400), (name, response.text)
        if response.status_code == 200:
            saved = Path(response.json()["path"])
            assert saved.parent == uploads.resolve() and saved.is_file(), (name, saved)
            assert len(saved.name.encode()) <= 200
    assert outside.read_text() == "keep me"
    written = {p.resolve() for p in runs.rglob("*") if p.is_file()} | {p.resolve() for p in tmp_path.glob("*.json")}
    assert all(p.is_relative_to(uploads.resolve()) or p == outside for p in written), written
    # A symbolic link in the upload folder is not written through, and its target is untouched.
    (uploads / "linked.json").symlink_to(outside)
    response = client.put("/api/data/upload?name=linked.json", content=b"[1]")
    assert response.status_code == 400 and "symbolic link" in response.json()["error"]["message"]
    assert outside.read_text() == "keep me"
    # An upload folder that is itself a link out of the runs folder is refused.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for child in uploads.iterdir():
        child.unlink()
    uploads.rmdir()
    uploads.symlink_to(elsewhere, target_is_directory=True)
    response = client.put("/api/data/upload?name=ok.json", content=b"[]")
    assert response.status_code == 400 and list(elsewhere.iterdir()) == []


def test_foreign_host_and_origin_are_refused_on_every_route(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    app = create_ui_app(runs)
    client = TestClient(app, base_url=UI_BASE, raise_server_exceptions=False)
    checked = 0
    for method, path, _ in routes(app):
        url = fill_path(path, "x")
        rebound = client.request(method, url, headers={"Host": "evil.example:7860"}, json={})
        assert rebound.status_code == 403 and "not this machine" in rebound.json()["error"]["message"], (method, path)
        if method != "GET":
            forged = client.request(method, url, headers={"Origin": "http://evil.example"}, json={})
            assert forged.status_code == 403 and "cross-origin" in forged.json()["error"]["message"], (method, path)
        checked += 1
    assert checked >= 20
    assert client.get("/api/info", headers={"Host": "localhost:7860"}).status_code == 200


def test_api_key_is_compared_in_constant_time():
    """The key check goes through hmac.compare_digest, never ==, on every route."""
    from ducktune.serve import app as serve_app

    tree = ast.parse(textwrap.dedent(inspect.getsource(serve_app.bearer_auth)))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert not [c for c in compares if "api_key" in c or "token" in c], compares
    client = TestClient(create_app(StaticRegistry([]), api_key="sk-right"), raise_server_exceptions=False)
    for header in (None, "Bearer sk-wrong", "Bearer sk-righ", "Bearer sk-right-and-more", "Basic sk-right",
                   "Bearer ", "sk-right", "Bearer sk-rïght"):
        headers = {"Authorization": header.encode("utf-8")} if header else {}  # bytes: non-ASCII as sent
        for method, path in (("GET", "/v1/models"), ("GET", "/v1/models/m"), ("POST", "/v1/chat/completions")):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", header
        assert client.get("/health", headers=headers).json() == {"status": "ok"}  # the stats need the key
    assert client.get("/health", headers={"Authorization": "Bearer sk-right"}).json() == {"status": "ok", "models": {}}
    assert client.get("/v1/models", headers={"Authorization": "Bearer sk-right"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "bearer  sk-right "}).status_code == 200


def started_output(args: list[str], until: str, timeout: float = 120) -> str:
    """Run `ducktune ARGS` until its output shows `until` (or it exits), then stop it; its stdout+stderr."""
    import threading

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "ducktune", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True)
    watchdog = threading.Timer(timeout, process.kill)  # a server that never prints `until` cannot hang the test
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if until in line:
                break
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=20)
    return "".join(lines)


def test_exposure_warning_only_without_a_key_beyond_loopback():
    from ducktune.serve.server import exposure_warning

    for host in ("0.0.0.0", "::", "192.168.1.20", "example.com"):
        assert exposure_warning(host, None).startswith(f"warning: serving on {host} without --api-key")
        assert exposure_warning(host, "sk-x") is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, None) is None


def test_servers_started_on_all_interfaces_print_the_warning(tiny_qwen, tmp_path):
    exposed = started_output(["serve", str(tiny_qwen), "--host", "0.0.0.0", "--port", str(free_port())], "Serving")
    assert "warning: serving on 0.0.0.0 without --api-key" in exposed and "Serving" in exposed, exposed
    ui = started_output(["ui", "--host", "0.0.0.0", "--port", str(free_port()), "--runs-dir", str(tmp_path)], "UI at")
    assert "warning: the UI on 0.0.0.0" in ui and "UI at" in ui, ui


@pytest.mark.slow
def test_load_and_abuse_run(tmp_path):
    """bench/reliability.py: 1,000 mixed requests at 32 concurrent against a real `ducktune serve`,
    then the UI's endpoints; no 5xx, every malformed request a 4xx with an error body, RSS growth < 10 %."""
    out = tmp_path / "servers.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "reliability.py"), "--out", str(out), "--no-render",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for server in ("serve", "ui"):
        figures = result["figures"][server]
        assert figures["requests"] >= (1000 if server == "serve" else 300)
        assert figures["status_5xx"] == 0, figures
        assert figures["unexpected"] == 0, figures["unexpected_examples"]
        assert figures["malformed"] > 0 and figures["malformed_4xx_with_body"] == figures["malformed"]
        assert figures["rss_growth_pct"] < 10, figures
        assert figures["log_errors"] == 0, figures
    serve = result["figures"]["serve"]
    assert serve["by_kind"]["disconnect"]["count"] > 0 and serve["by_kind"]["stream"]["count"] > 0
    assert serve["latency_s"]["p50"] <= serve["latency_s"]["p95"]
    assert all(row["passed"] == row["tried"] for row in result["rows"]), result["rows"]
    assert "p50" in proc.stdout and "p95" in proc.stdout


def load_report_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reliability_report", ROOT / "bench" / "reliability_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reliability_page_is_rendered_from_the_json_parts(tmp_path):
    """docs/RELIABILITY.md is what the renderer makes of docs/reliability/*.json (nobody typed it), and
    parts written independently (servers, crash safety, ...) each get their own table."""
    report = load_report_module()
    assert report.main(["--check"]) == 0, "docs/RELIABILITY.md is stale: run python bench/reliability_report.py"
    parts, page = tmp_path / "parts", tmp_path / "RELIABILITY.md"
    report.write_part("b-servers", [{"check": "no 5xx", "tried": 10, "passed": 10, "detail": "p50 | 1 s"}],
                      "Servers", "python bench/reliability.py", parts_dir=parts)
    (parts / "a-crash.json").write_text(json.dumps([{"check": "kill -9", "tried": 3, "passed": 2, "detail": "x"}]))
    assert report.main(["--parts", str(parts), "--out", str(page)]) == 0
    text = page.read_text()
    assert text.index("## a-crash") < text.index("## Servers")
    assert "| kill -9 | 3 | 2 | ❌ 1 failed | x |" in text and "| no 5xx | 10 | 10 | ✅ | p50 \\| 1 s |" in text
    assert report.main(["--parts", str(parts), "--out", str(page), "--check"]) == 0
    (parts / "a-crash.json").write_text("[]")
    assert report.main(["--parts", str(parts), "--out", str(page), "--check"]) == 1
    with pytest.raises(ValueError, match="lacks passed"):
        report.write_part("bad", [{"check": "x", "tried": 1, "detail": ""}], "t", "c", parts_dir=parts)
