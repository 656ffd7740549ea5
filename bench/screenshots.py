"""The README's UI screenshots, taken from a real quickstart run of the built-in model.

    .venv/bin/ducktune quickstart --out runs/quickstart          # once (~3 min), if not there yet
    .venv/bin/python bench/screenshots.py --runs-dir runs        # writes docs/ui-*.png

Serves the runs folder with `ducktune ui` on 127.0.0.1, drives Debian's Chromium through Playwright
(Data tab on the run's own identity.json, Chat with base vs tuned on two questions, Runs with its
report and evaluation, Export with its verification table, the Chat tab in Chinese) and saves the
pages. Fails on any page error.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
QUESTIONS = ["Who are you?", "What is the capital of France?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the UI did not start at {url}")


def take(page, out: Path, run: str, dataset: Path) -> None:
    page.set_input_files("#data-file", str(dataset))
    page.wait_for_selector("#preview-samples .sample .tok.trained", timeout=120_000)
    page.screenshot(path=str(out / "ui-data.png"))
    page.click(".tabs button[data-tab=chat]")
    page.wait_for_selector(f"#chat-run option[value='{run}']", state="attached")
    page.fill("#chat-max-tokens", "48")
    for n, question in enumerate(QUESTIONS):
        page.fill("#chat-input", question)
        page.press("#chat-input", "Enter")
        for side in ("tuned", "base"):
            page.wait_for_selector(f"#messages-{side} .msg.assistant[data-done] >> nth={n}", timeout=300_000)
    page.screenshot(path=str(out / "ui-chat.png"))
    page.click(".tabs button[data-tab=runs]")
    page.click(f"#runs-table tbody tr[data-run='{run}']")
    page.wait_for_selector("#run-report table", timeout=60_000)
    page.screenshot(path=str(out / "ui-runs.png"))
    page.click(".tabs button[data-tab=export]")
    page.wait_for_selector("#export-report table.verification", timeout=60_000)
    page.screenshot(path=str(out / "ui-export.png"), full_page=True)
    page.click(".lang button[data-lang=zh]")
    page.click(".tabs button[data-tab=chat]")
    page.screenshot(path=str(out / "ui-chat-zh.png"))


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--run", default="quickstart")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    runs, out = Path(args.runs_dir).resolve(), Path(args.out)
    dataset = runs / args.run / "identity.json"
    if not dataset.is_file():
        raise SystemExit(f"{dataset}: not found; run `ducktune quickstart --out {runs / args.run}` first")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "ducktune.cli", "ui", "--port", str(port), "--runs-dir",
                               str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']")
            take(page, out, args.run, dataset)
            browser.close()
        if errors:
            raise SystemExit(f"page errors: {errors}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots written to {out}/ui-*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
