"""The web UI in a real headless Chromium (Debian's), driven by Playwright: upload a dataset,
check and preview it, train a tiny model from the generated form, watch the loss chart fill,
chat with the tuned model, and save screenshots.

Set DUCKTUNE_SCREENSHOTS=docs to also write the screenshots used by the README.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from web_helpers import QA, cli_server, free_port, shared_trained_run, thread_server, write_dataset

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.requires_chromium


@pytest.fixture(scope="module")
def browser():
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    port = free_port()
    with cli_server(["ui", "--port", str(port), "--runs-dir", str(root / "runs")], port, root / "ui.log",
                    ready_path="/api/info", cwd=root) as url:
        yield {"url": url, "root": root, "log": root / "ui.log"}


def save_shots(page, shots: dict[str, Path], name: str, full_page: bool = False) -> None:
    path = shots["dir"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if shots.get("docs"):
        shutil.copy(path, shots["docs"] / path.name)


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page, problems


def scripted_chat(page, model: str, answers: list[list[dict]]) -> list:
    """The page's API answers as a model would: /v1/models lists `model`; the n-th chat completion streams
    the deltas answers[n]. Returns the list the requests' bodies are appended to."""
    sent: list = []

    def completions(route):
        sent.append(json.loads(route.request.post_data))
        chunks = answers[min(len(sent), len(answers)) - 1]
        body = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': d}]})}\n\n" for d in chunks)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body + "data: [DONE]\n\n")

    page.route("**/v1/models", lambda route: route.fulfill(json={"object": "list", "data": [{"id": model}]}))
    page.route("**/v1/chat/completions", completions)
    page.click(".tabs button[data-tab=chat]")
    page.wait_for_selector(f"#chat-run option[value={model}]", state="attached")
    return sent


def test_page_checks_previews_and_chats_in_both_languages(browser, tiny_qwen, tmp_path_factory, tmp_path):
    """Fast tier: an in-process UI over an already trained run (no training here)."""
    from ducktune.ui.app import create_ui_app

    runs = tmp_path / "runs"
    shutil.copytree(shared_trained_run(tiny_qwen, tmp_path_factory), runs / "duckling")
    dataset = write_dataset(tmp_path / "duckling.json")
    with thread_server(create_ui_app(runs), free_port()) as url:
        page, problems = open_page(browser, url)
        page.click(".tabs button[data-tab=train]")
        assert page.locator("#train-form .opt").count() > 40  # the whole schema, folded
        page.fill("#opt-model\\.name_or_path", str(tiny_qwen))
        page.click(".tabs button[data-tab=data]")
        page.set_input_files("#data-file", str(dataset))
        page.wait_for_selector("#data-verdict.ok")
        page.wait_for_selector("#preview-samples .sample .tok.trained")
        assert page.locator("#preview-samples .sample").count() == 3
        page.click(".tabs button[data-tab=chat]")
        page.wait_for_selector("#chat-run option[value=duckling]", state="attached")
        page.fill("#chat-input", QA[1][0])
        page.click("#chat-send")
        page.wait_for_selector("#messages-tuned .msg.assistant[data-done]", timeout=60_000)
        page.wait_for_selector("#messages-base .msg.assistant[data-done]", timeout=60_000)
        assert page.inner_text("#messages-tuned .msg.assistant").startswith(QA[1][1])
        page.click(".tabs button[data-tab=runs]")
        page.wait_for_selector("#runs-table tbody tr[data-run=duckling]")
        page.click(".lang button[data-lang=zh]")
        assert page.inner_text(".tabs button[data-tab=chat]") == "对话"
        assert page.inner_text("#runs-table thead th >> nth=0") == "运行"
        page.click(".lang button[data-lang=en]")
        assert page.inner_text(".tabs button[data-tab=chat]") == "Chat"
        page.screenshot(path=str(tmp_path / "ui-runs.png"))
        assert not problems, problems


def test_chat_shows_a_reasoning_models_thinking_apart_from_its_answer(browser, tmp_path):
    """The chat tab reads reasoning_content deltas (what `ducktune serve` streams for <think> blocks and
    gpt-oss's analysis) into a block of its own; the answer, and the history sent back, hold the answer alone."""
    from ducktune.ui.app import create_ui_app

    chunks = [{"role": "assistant", "content": ""}, {"reasoning_content": "The user says hi."},
              {"reasoning_content": " Greet back."}, {"content": "Hello!"}]
    with thread_server(create_ui_app(tmp_path / "runs"), free_port()) as url:
        page, problems = open_page(browser, url)
        sent = scripted_chat(page, "thinker", [chunks])
        for i, question in enumerate(("Hi", "Again")):
            page.fill("#chat-input", question)
            page.click("#chat-send")
            page.wait_for_selector(f"#messages-tuned .msg.assistant[data-done] >> nth={i}")
        answer = page.locator("#messages-tuned .msg.assistant").first
        assert answer.locator(".thinking").inner_text() == "The user says hi. Greet back."
        assert answer.locator(".said").inner_text() == "Hello!"
        assert sent[1]["messages"][1] == {"role": "assistant", "content": "Hello!"}  # no reasoning in the history
        assert not problems, problems


def test_chat_offers_the_runs_tools_shows_calls_and_sends_their_results(browser, tmp_path):
    """A run trained on calls fills the tools box with its functions; a streamed call shows as a call (no
    markup), the next thing typed is its result (a tool message answering the call's id), and the model is
    asked again with the whole exchange and the tools."""
    from ducktune.ui.app import create_ui_app

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    run = tmp_path / "runs" / "caller"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "completed", "probe_prompts": ["a", "b"],
                                              "probe_tools": [[tool], None]}))
    call = {"index": 0, "id": "call00001", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    answers = [[{"role": "assistant", "content": ""}, {"content": "Let me check."}, {"tool_calls": [call]}],
               [{"content": "Sunny in Paris."}]]
    with thread_server(create_ui_app(tmp_path / "runs"), free_port()) as url:
        page, problems = open_page(browser, url)
        sent = scripted_chat(page, "caller", answers)
        page.wait_for_function("document.querySelector('#chat-tools').value.includes('get_weather')")
        assert json.loads(page.input_value("#chat-tools")) == [tool]
        page.fill("#chat-input", "Weather in Paris?")
        page.click("#chat-send")
        page.wait_for_selector("#messages-tuned .msg.assistant[data-done]")
        first = page.locator("#messages-tuned .msg.assistant").first
        assert first.locator(".said").inner_text() == "Let me check."
        assert first.locator(".call").inner_text() == 'get_weather({"city": "Paris"})'
        assert "get_weather" in page.get_attribute("#chat-input", "placeholder")  # the next input is its result
        page.fill("#chat-input", '{"sky": "sunny"}')
        page.click("#chat-send")
        page.wait_for_selector("#messages-tuned .msg.assistant[data-done] >> nth=1")
        assert page.locator("#messages-tuned .msg.assistant").nth(1).inner_text().startswith("Sunny in Paris.")
        assert sent[0]["tools"] == [tool] and sent[1]["tools"] == [tool]
        assert sent[1]["messages"] == [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call00001", "type": "function", "function": {"name": "get_weather",
                                                                     "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": '{"sky": "sunny"}'}]
        assert "get_weather" not in page.get_attribute("#chat-input", "placeholder")  # answered: a question again
        # A tools box that is no JSON is said, and nothing is sent.
        assert page.inner_text("#chat-tools-count") == "1"  # the folded box says how many functions it offers
        page.click("#chat-tools-box summary")
        page.fill("#chat-tools", "[{oops")
        page.fill("#chat-input", "Again?")
        page.click("#chat-send")
        page.wait_for_selector("#toast.bad:not(.hidden)")
        assert "not a JSON list of functions" in page.inner_text("#toast") and len(sent) == 2
        assert page.input_value("#chat-input") == "Again?"  # kept, to send once the tools are mended
        assert not problems, problems


@pytest.mark.slow
def test_upload_train_watch_loss_and_chat(browser, ui, tiny_qwen, tmp_path):
    shots = {"dir": tmp_path}
    if os.environ.get("DUCKTUNE_SCREENSHOTS"):
        shots["docs"] = Path(os.environ["DUCKTUNE_SCREENSHOTS"]).resolve()
        shots["docs"].mkdir(parents=True, exist_ok=True)
    dataset = write_dataset(tmp_path / "duckling.json")
    page, problems = open_page(browser, ui["url"])

    # Train tab first: the model picker takes a local folder (the tiny model).
    page.click(".tabs button[data-tab=train]")
    page.fill("#opt-model\\.name_or_path", str(tiny_qwen))

    # Data: upload, check, templated preview with the trained tokens marked.
    page.click(".tabs button[data-tab=data]")
    page.set_input_files("#data-file", str(dataset))
    page.wait_for_selector("#data-verdict.ok")
    assert page.inner_text("#data-summary .stats").split() == ["alpaca", "format", "5", "records", "5", "samples",
                                                                "0", "problems"]
    page.wait_for_selector("#preview-samples .sample .tok.trained")
    trained = page.locator("#preview-samples .sample").first.locator(".tok.trained").all_inner_texts()
    context = page.locator("#preview-samples .sample").first.locator(".tok:not(.trained)").all_inner_texts()
    assert "".join(trained).startswith(QA[0][1]) and QA[0][0] in "".join(context)
    assert QA[0][1] not in "".join(context)
    save_shots(page, shots, "ui-data")
    page.click("#data-use")

    # Train: the generated form, with a few settings for a quick tiny run.
    uploaded = ui["root"] / "runs" / ".ui" / "uploads" / dataset.name
    assert uploaded.read_bytes() == dataset.read_bytes()
    assert page.input_value("#opt-data\\.datasets").strip() == f"- {uploaded}"
    page.check("#show-advanced")
    for key, value in {"train.max_steps": "60", "train.learning_rate": "0.01", "train.batch_size": "5",
                       "train.warmup_ratio": "0", "train.save_steps": "1000", "lora.dropout": "0",
                       "eval.max_new_tokens": "24", "output.dir": str(ui["root"] / "runs" / "duckling")}.items():
        page.fill(f"#opt-{key.replace('.', chr(92) + '.')}", value)
    page.uncheck("#show-advanced")
    page.click("#train-start")
    page.wait_for_selector("#train-chart circle.pt >> nth=2", timeout=180_000)  # live points while training
    page.wait_for_selector("#train-state.completed", timeout=300_000)
    points = page.locator("#train-chart circle.pt").count()
    assert points == 60
    assert "60 / 60" in page.inner_text("#train-steps")
    save_shots(page, shots, "ui-train")

    # The YAML the UI saved and ran is downloadable and is exactly the run's config.
    href = page.get_attribute("#train-download", "href")
    saved_yaml = httpx.get(f"{ui['url']}/{href}").text
    run_dir = ui["root"] / "runs" / "duckling"
    assert saved_yaml == (run_dir / "config.yaml").read_text()
    assert yaml.safe_load(saved_yaml)["train"]["max_steps"] == 60
    # A reloaded page shows the last job's settings (the form fell back to the defaults), a fresh run folder.
    again, again_problems = open_page(browser, ui["url"])
    again.click(".tabs button[data-tab=train]")
    again.wait_for_function("document.querySelector('#opt-train\\\\.max_steps').value === '60'")
    assert again.input_value("#opt-model\\.name_or_path") == str(tiny_qwen)
    assert again.input_value("#opt-output\\.dir") not in ("", str(run_dir))
    assert again.get_attribute("#train-download", "href") == href and not again_problems
    again.close()

    # Chat: tuned and base side by side; the tuned model answers what it learned.
    page.click(".tabs button[data-tab=chat]")
    page.select_option("#chat-run", "duckling")
    page.fill("#chat-max-tokens", "40")
    page.fill("#chat-input", QA[0][0])
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#messages-tuned .msg.assistant[data-done]", timeout=120_000)
    page.wait_for_selector("#messages-base .msg.assistant[data-done]", timeout=120_000)
    assert page.inner_text("#messages-tuned .msg.assistant").startswith(QA[0][1])
    # A second turn: the conversation goes on (multi-turn history is sent).
    page.fill("#chat-input", QA[4][0])
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#messages-tuned .msg.assistant[data-done] >> nth=1", timeout=120_000)
    page.wait_for_selector("#messages-base .msg.assistant[data-done] >> nth=1", timeout=120_000)
    assert page.locator("#messages-tuned .msg.user").count() == 2
    save_shots(page, shots, "ui-chat")

    # Runs: the finished run with its loss and report; Export: the run offered, nothing exported yet.
    page.click(".tabs button[data-tab=runs]")
    page.click("#runs-table tbody tr[data-run=duckling]")
    page.wait_for_selector("#run-report table")
    assert page.locator("#run-chart circle.pt").count() == 60
    save_shots(page, shots, "ui-runs")
    page.click(".tabs button[data-tab=export]")
    page.wait_for_selector("#export-state.idle")
    # The file listing arrives after the status (two requests): wait for it, then check what it says.
    page.wait_for_selector("#export-files li")
    assert page.input_value("#export-run") == "duckling" and page.is_enabled("#export-start")
    assert page.inner_text("#export-files") == "No exported files for this run yet."

    # Chinese labels.
    page.click(".lang button[data-lang=zh]")
    assert page.inner_text(".tabs button[data-tab=train]") == "训练"
    page.click(".tabs button[data-tab=chat]")
    save_shots(page, shots, "ui-chat-zh")
    assert not problems, problems
    log = ui["log"].read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_chart_axes_reach_every_point_and_preference_results_show(browser, ui):
    """The y axis stopped at the last tick below the maximum: a loss curve's first points (0.69 over ticks
    0.4-0.6) and a DPO run's largest reward margins were drawn outside the chart. The evaluation panel
    showed none of eval.json's preference numbers, and nothing where bleed was not measured."""
    page, problems = open_page(browser, ui["url"])
    ticks = page.evaluate("""async () => { const m = await import('./static/util.js');
        return [m.niceTicks(0.4, 0.6931, 4), m.niceTicks(-0.1, 0.5926, 4), m.niceTicks(1.2, 3.3258, 4)]; }""")
    assert ticks == [[0.4, 0.5, 0.6, 0.7], [-0.2, 0, 0.2, 0.4, 0.6], [1, 2, 3, 4]]
    panel = page.evaluate("""async () => { const m = await import('./static/evaluation.js');
        const box = document.createElement('div'); document.body.append(box);
        m.renderEvaluation(box, 'x', { eval: { finished: '2026-12-05T06:00:00', bleed: null,
          preference_accuracy: { base: 0, tuned: 75 }, preference_margin: { base: -35.48, tuned: 9.75 },
          preference: { pairs: 4, reference: 'base', reward_accuracy: 100, reward_margin: 0.3188 } },
          probes: [], plot: false });
        return box.innerText; }""")
    assert "Prefers chosen %\t0.0\t75.0" in panel and "-35.48\t9.75" in panel
    assert "Held-out pairs: 4; DPO reward against base: accuracy 100 %, mean margin 0.319." in panel
    assert "Not measured for this run" in panel
    assert problems == []
    page.close()


@pytest.fixture
def blank_ui(tmp_path):
    """An in-process UI over an empty runs folder (no model loaded, no training)."""
    from ducktune.ui.app import create_ui_app

    with thread_server(create_ui_app(tmp_path / "runs"), free_port()) as url:
        yield url


def test_form_errors_mark_their_field_and_bring_it_into_view(browser, blank_ui):
    """The server's `form: train.learning_rate: ...` marked no field (the key was read as `train`): the
    message landed in #form-errors below the fold. Now the field is marked, scrolled to and focused;
    a nested value's problem (data.datasets.0.repeat) marks its option, naming the entry."""
    page, problems = open_page(browser, blank_ui)
    page.click(".tabs button[data-tab=train]")
    page.fill("#opt-train\\.learning_rate", "-0.001")
    page.click("#train-start")
    row = page.wait_for_selector(".opt.invalid[data-key='train.learning_rate'] .err")
    assert row.inner_text().startswith("Input should be greater than 0")
    assert page.evaluate("document.activeElement.id") == "opt-train.learning_rate"
    assert page.evaluate("""() => { const r = document.querySelector("#opt-train\\\\.learning_rate").getBoundingClientRect();
        return r.top >= 0 && r.bottom <= innerHeight; }""")
    assert page.inner_text("#form-errors") == ""
    page.fill("#opt-train\\.learning_rate", "0.0001")
    page.fill("#opt-data\\.datasets", "- path: a.json\n  repeat: -1")
    page.click("#train-yaml")
    page.wait_for_selector(".opt.invalid[data-key='data.datasets'] .err")
    assert page.locator(".opt.invalid").count() == 1  # the fixed field is no longer marked
    assert page.inner_text(".opt.invalid .err").startswith("0.repeat: Input should be greater than 0")
    assert page.evaluate("document.activeElement.id") == "opt-data.datasets"
    assert [p for p in problems if "status of 400" not in p] == []  # the 400s are the point
    page.close()


def test_check_button_is_busy_while_a_check_runs(browser, blank_ui, tiny_qwen, tmp_path):
    """A check of a big file takes minutes: the page kept saying "No dataset checked yet" and the Check
    button stayed enabled (a second click started a second full check). The check is held here."""
    page, problems = open_page(browser, blank_ui)
    page.click(".tabs button[data-tab=train]")
    page.fill("#opt-model\\.name_or_path", str(tiny_qwen))
    page.click(".tabs button[data-tab=data]")
    held = []
    page.route("**/api/data/check", lambda route: held.append(route))
    page.set_input_files("#data-file", str(write_dataset(tmp_path / "duckling.json")))
    page.wait_for_function("document.querySelector('#data-check').disabled")
    assert page.inner_text("#data-check") == "Checking…"
    assert page.inner_text("#data-summary") == "Checking… duckling.json"
    page.click("#data-check", force=True)  # a disabled button starts nothing
    page.wait_for_timeout(200)
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_selector("#data-verdict.ok")
    assert page.is_enabled("#data-check") and page.inner_text("#data-check") == "Check"
    page.wait_for_selector("#preview-samples .sample")
    assert not problems, problems
    page.close()


def test_a_stopped_run_is_announced_and_keeps_its_folder(browser, blank_ui):
    """The page reacted to a job's end only straight from "running": a stop goes running -> stopping ->
    stopped, so no toast came and the Runs and Chat lists stayed stale. The statuses are played here."""
    job = {"state": "running"}
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.route("**/api/train/status", lambda route: route.fulfill(json={
        "kind": "train", "state": job["state"], "target": "/runs/long", "command": "ducktune train long.yaml",
        "progress": {"step": 5, "total": 100}, "log": "training", "metrics": []}))
    page.goto(blank_ui + "/#train")
    page.wait_for_selector("body[data-ready='1']")
    page.evaluate("window.changed = 0; document.addEventListener('runschanged', () => window.changed++)")
    page.wait_for_selector("#train-state.running")
    page.fill("#opt-output\\.dir", "long")
    job["state"] = "stopping"
    page.wait_for_selector("#train-state.stopping")
    job["state"] = "stopped"
    page.wait_for_selector("#train-state.stopped")
    page.wait_for_selector("#toast:not(.hidden)")
    assert page.inner_text("#toast").startswith("Training stopped.")
    assert page.evaluate("window.changed") == 1
    assert page.input_value("#opt-output\\.dir") == "long"  # Start resumes it there
    page.close()
    # A reloaded page shows the stopped job's folder too; a finished job's settings get a fresh one.
    for job["state"], kept in (("stopped", True), ("completed", False)):
        page = browser.new_page()
        page.route("**/api/train/status", lambda route: route.fulfill(json={
            "kind": "train", "state": job["state"], "target": "/runs/long", "log": "", "form": {"output.dir": "long"}}))
        page.goto(blank_ui + "/#train")
        page.wait_for_selector(f"#train-state.{job['state']}")
        assert (page.input_value("#opt-output\\.dir") == "long") == kept, job
        page.close()


def test_skip_bad_is_offered_only_where_it_helps(browser, blank_ui, tiny_qwen, tmp_path):
    """Under a UTF-16 file's one problem the page said "turn on data.skip_bad to train on the good ones",
    which the verdict beside it said does not help (skipping drops records, not files)."""
    page, problems = open_page(browser, blank_ui)
    page.click(".tabs button[data-tab=train]")
    page.fill("#opt-model\\.name_or_path", str(tiny_qwen))
    page.click(".tabs button[data-tab=data]")
    good, bad = {"instruction": "Hi", "output": "Hello"}, {"instruction": "Hi", "output": 3}
    (tmp_path / "utf16.json").write_text(json.dumps([good]), encoding="utf-16")
    (tmp_path / "one-bad.json").write_text(json.dumps([good, bad]))
    for name, hint in (("utf16.json", "Fix these problems:"), ("one-bad.json", "turn on data.skip_bad")):
        page.set_input_files("#data-file", str(tmp_path / name))
        page.wait_for_selector(f"#data-issues li:has-text('{name}')")  # this file's result is shown
        assert hint in page.inner_text("#data-issues-hint"), name
        page.wait_for_selector("#data-check:enabled")
    assert [p for p in problems if "status of 400" not in p] == []
    page.close()


def test_loss_chart_labels_differ_for_a_small_loss_range(browser, blank_ui):
    """Three significant digits labelled ticks 0.005 apart 9.9, 9.91, 9.91, 9.92, 9.92: the labels now
    carry the decimals of the tick step."""
    page, problems = open_page(browser, blank_ui)
    labels = page.evaluate("""async () => { const m = await import('./static/util.js');
        const chart = document.querySelector('#train-chart');
        m.drawLossChart(chart, [9.919, 9.915, 9.911, 9.908, 9.902].map((loss, i) => ({ step: i + 1, loss })), '');
        return [[...chart.querySelectorAll('text.y-label')].map((t) => t.textContent),
                m.tickLabels([0, 0.5, 1]), m.tickLabels([1, 2, 3]), m.tickLabels([0.1, 0.125, 0.15]),
                m.tickLabels([2e-7, 4e-7]), m.tickLabels([-0.2, 0, 0.2])]; }""")
    assert labels == [["9.900", "9.905", "9.910", "9.915", "9.920"], ["0.0", "0.5", "1.0"], ["1", "2", "3"],
                      ["0.100", "0.125", "0.150"], ["0.0000002", "0.0000004"], ["-0.2", "0.0", "0.2"]]
    assert not problems, problems
    page.close()
