"""docs/RELIABILITY.md from the measurements in docs/reliability/*.json: regenerated, never typed.

Each reliability check (the servers' load and abuse run, the crash-safety and bad-input
corpus, ...) writes its own file, docs/reliability/<part>.json, with `write_part` or by hand:

    {"title": "Servers under load and abuse",
     "command": "python bench/reliability.py",           # how to measure it again
     "generated": "2026-12-03T15:04:05Z",
     "environment": "Linux x86_64, 2 cores, ...",        # optional
     "rows": [{"check": "...", "tried": 1000, "passed": 1000, "detail": "..."}],
     "notes": ["..."]}                                    # optional

(a bare list of rows is accepted too). This script renders every file present into one page,
in file-name order, so parts are produced independently and never edit each other's text.

    python bench/reliability_report.py            # write docs/RELIABILITY.md
    python bench/reliability_report.py --check    # exit 1 if the page differs from the JSON files
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS_DIR = ROOT / "docs" / "reliability"
PAGE = ROOT / "docs" / "RELIABILITY.md"
ROW_KEYS = ("check", "tried", "passed", "detail")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_part(part: str, rows: list[dict], title: str, command: str, notes: list[str] | None = None,
               environment: str | None = None, parts_dir: Path = PARTS_DIR, **extra) -> Path:
    """Write docs/reliability/<part>.json (rows: {check, tried, passed, detail}); `extra` keeps raw figures."""
    for row in rows:
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"{part}: row {row.get('check')!r} lacks {', '.join(missing)}")
    data = {"title": title, "command": command, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": environment, "rows": rows, "notes": notes or [], **extra}
    return save_part(parts_dir / f"{part}.json", data)


def save_part(path: Path, data: dict | list, page: Path | None = None) -> Path:
    """Write one part's JSON and render the page again from every part, so the page never lags a
    part a test or script has just measured. A measurement equal to the recorded one but for its
    time keeps the recorded file (rerunning the suite does not touch the repository for nothing)."""
    def without_time(value):
        return {k: v for k, v in value.items() if k != "generated"} if isinstance(value, dict) else value

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old is None or without_time(old) != without_time(data):
        _atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    page = page or path.parent.parent / "RELIABILITY.md"
    _atomic_write(page, render(read_parts(path.parent)))
    return path


def read_parts(parts_dir: Path = PARTS_DIR) -> list[tuple[str, dict]]:
    """(part name, its data) for every JSON file, a bare row list wrapped as {"rows": [...]}."""
    parts = []
    for path in sorted(parts_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            data = {"rows": data}
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError(f"{path}: expected a list of rows or an object with 'rows'")
        parts.append((path.stem, data))
    return parts


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", "<br>")


def _result(row: dict) -> str:
    tried, passed = row.get("tried"), row.get("passed")
    if isinstance(tried, (int, float)) and isinstance(passed, (int, float)):
        return "✅" if passed == tried else f"❌ {tried - passed} failed"
    return "✅" if passed is True else ("❌" if passed is False else "")


def render_part(name: str, data: dict) -> str:
    lines = [f"## {data.get('title') or name}", ""]
    facts = [f"source: `docs/reliability/{name}.json`"]
    if data.get("generated"):
        facts.append(f"measured {data['generated']}")
    if data.get("command"):
        facts.append(f"regenerate: `{data['command']}`")
    lines += [" · ".join(facts), ""]
    if data.get("environment"):
        lines += [f"Environment: {data['environment']}", ""]
    lines += ["| Check | Tried | Passed | Result | Detail |", "|---|---:|---:|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {_cell(row.get('check'))} | {_cell(row.get('tried'))} | {_cell(row.get('passed'))} | "
                     f"{_result(row)} | {_cell(row.get('detail'))} |")
    lines.append("")
    for note in data.get("notes") or []:
        lines.append(f"- {note}")
    if data.get("notes"):
        lines.append("")
    return "\n".join(lines)


def render(parts: list[tuple[str, dict]]) -> str:
    head = ["# Reliability", "",
            "Measured, not typed: every table below is rendered by `python bench/reliability_report.py` from the",
            "JSON files in `docs/reliability/`, which the scripts named under each table write when they run.",
            "Do not edit this page by hand; rerun the command under a table and then the renderer.", ""]
    if not parts:
        head += ["(No measurements yet: docs/reliability/ holds no JSON file.)", ""]
    return "\n".join(head + [render_part(name, data) for name, data in parts]).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=Path, default=PARTS_DIR, help="folder of <part>.json files")
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write")
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    text = render(read_parts(args.parts))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python bench/reliability_report.py", file=sys.stderr)
            return 1
        print(f"{args.out} matches {args.parts}/*.json")
        return 0
    _atomic_write(args.out, text)
    print(f"wrote {args.out} from {len(read_parts(args.parts))} part(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
