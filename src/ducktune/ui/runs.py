"""The Runs and Export tabs: what is in a runs folder, read from the run-directory contract."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from ducktune.errors import UserError
from ducktune.rundir import RunDir
from ducktune.train.checkpoints import checkpoint_step

# Files an export leaves that a person downloads (GGUF weights, the Ollama Modelfile).
EXPORT_PATTERNS = ("*.gguf", "Modelfile")
EXPORT_REPORTS = ("verification.md", "verify.md", "export.md", "README.md")
SKIP_DIRS = {"checkpoints", "adapter", "model"}
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


def _read_info(path: Path) -> tuple[dict | None, str | None]:
    """(run.json's object, None), (None, what is wrong with it), or (None, None) without a run.json."""
    run = RunDir(path)
    if not run.exists():
        return None, None
    try:
        return run.info(), None
    except (UserError, OSError) as exc:
        return None, f"run.json is damaged ({getattr(exc, 'message', None) or exc})"


def _field(info: dict, section: str, key: str):
    """info[section][key] when run.json has that shape; None otherwise (an edited or foreign file)."""
    part = info.get(section)
    return part.get(key) if isinstance(part, dict) else None


def _given(value, fallback):
    return fallback if value is None else value


def run_summary(path: Path) -> dict | None:
    """The Runs tab's row of one run; a damaged run.json gives a row with status "damaged" and the
    problem (one bad run must not take the whole list down); None for a folder without run.json."""
    info, problem = _read_info(path)
    if info is None and problem is None:
        return None
    info = info or {}
    run = RunDir(path)
    metrics = run.read_metrics()
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), (int, float))]
    weights = run.full_model if info.get("method") == "full" else run.adapter
    status = run.status(info) if info else None  # "running" with no live writer: interrupted (killed)
    row = {
        "name": path.name,
        "path": str(path),
        "status": status if status in ("running", "completed", "failed", "interrupted") else "unknown",
        "method": info.get("method") if isinstance(info.get("method"), str) else None,
        "objective": info.get("objective") if isinstance(info.get("objective"), str) else None,
        "base_model": _field(info, "base_model", "name_or_path"),
        "started": info.get("started") if isinstance(info.get("started"), str) else None,
        "finished": info.get("finished") if isinstance(info.get("finished"), str) else None,
        "steps": _steps_reached(run, info, metrics),
        "final_loss": _given(_field(info, "result", "final_loss"), losses[-1] if losses else None),
        "first_loss": _given(_field(info, "result", "first_loss"), losses[0] if losses else None),
        "eval_loss": _field(info, "result", "eval_loss"),
        "train_seconds": _field(info, "result", "train_seconds"),
        "train_samples": _field(info, "data", "train_samples"),
        "chat_ready": weights.is_dir() and not problem,
        "has_report": run.report.is_file(),
        "exports": [str(p.relative_to(path)) for p in export_files(path)],
        "bleed_rate": _field(_read_eval(path) or {}, "bleed", "bleed_rate"),
        "tools": trained_tools(info),
    }
    if problem:
        row.update(status="damaged", problem=problem)
    return row


def trained_tools(info: dict) -> list[dict] | None:
    """The functions a run's probe prompts offered (run.json probe_tools: the data's tools), each once by
    name, for the Chat tab to offer; None for a run trained without tools."""
    seen: dict[str, dict] = {}
    entries = info.get("probe_tools")
    for tools in entries if isinstance(entries, list) else []:
        for tool in tools if isinstance(tools, list) else []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                seen.setdefault(function["name"], tool)
    return list(seen.values()) or None


def _steps_reached(run: RunDir, info: dict, metrics: list[dict]) -> int:
    """A finished run's step count; an unfinished run's newest checkpoint or last logged step, whichever
    is later. A stopped run checkpoints the step it stopped at, which the Train tab showed: its last
    logged step alone read a few steps less (2020 against 2024)."""
    done = _field(info, "result", "global_step")
    if isinstance(done, int) and done:
        return done
    logged = [m["step"] for m in metrics[-1:] if isinstance(m.get("step"), int)]
    try:
        saved = [checkpoint_step(p) for p in run.checkpoints.iterdir()] if run.checkpoints.is_dir() else []
    except OSError:  # an unreadable folder: the logged step is still worth showing
        saved = []
    return max([0, *logged, *(s for s in saved if s is not None)])


def _read_eval(path: Path) -> dict | None:
    try:
        result = json.loads((path / "eval" / "eval.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return result if isinstance(result, dict) else None


def list_runs(runs_dir: Path) -> list[dict]:
    if not runs_dir.is_dir():
        return []
    rows = [run_summary(child) for child in runs_dir.iterdir() if child.is_dir() and not child.name.startswith(".")]
    rows = [r for r in rows if r is not None]
    return sorted(rows, key=lambda r: r.get("started") or "", reverse=True)


def run_path(runs_dir: Path, name: str) -> Path:
    try:
        path = (runs_dir / name).resolve()
        found = path.parent == runs_dir.resolve() and (path / "run.json").is_file()
    except (OSError, ValueError):  # a name no file system accepts (NUL byte, too long): no such run either
        found = False
    if not found:
        raise UserError(f"{name[:200]}: no such run in {runs_dir}")
    return path


def safe_file(root: Path, relative: str) -> Path:
    """A file inside `root` (no escaping it with .. or symlinks)."""
    try:
        target = (root / relative).resolve()
        found = target.is_relative_to(root.resolve()) and target.is_file()
    except (OSError, ValueError):  # NUL byte, name too long
        found = False
    if not found:
        raise UserError(f"{relative[:200]}: no such file")
    return target


def report_html(path: Path, name: str) -> str:
    """report.md as HTML. Everything in it is escaped first: answers and prompts are untrusted text."""
    run = RunDir(path)
    if not run.report.is_file():
        return ""
    import markdown

    text = run.report.read_text(encoding="utf-8").replace("![loss](loss.png)", "")  # the page draws the curve itself
    text = _without_section(text, "## Evaluation")  # the page shows eval/eval.json itself (evaluation.js)
    # Markdown escapes code itself; everything else is escaped here so no raw HTML gets through.
    parts = _CODE.split(text)
    source = "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))
    source = source.replace("&lt;br&gt;", "<br>")
    rendered = markdown.markdown(source, extensions=["tables", "fenced_code"])
    # The full config is long: folded, one click away.
    head, marker, config = rendered.partition("<h2>Config</h2>")
    return head + (f"<details><summary>config.yaml</summary>{config}</details>" if marker else "")


def _without_section(text: str, heading: str) -> str:
    start = text.find(heading)
    if start < 0:
        return text
    end = text.find("\n## ", start + len(heading))
    return text[:start] + (text[end + 1:] if end >= 0 else "")


def export_files(path: Path) -> list[Path]:
    """GGUF files and Modelfiles anywhere in the run folder except training state."""
    found = []
    for pattern in EXPORT_PATTERNS:
        for file in path.rglob(pattern):
            if not SKIP_DIRS & set(file.relative_to(path).parts[:-1]) and file.is_file():
                found.append(file)
    return sorted(set(found))


def export_report(path: Path) -> str:
    """The export's verification report, when it left one next to its files."""
    for file in export_files(path):
        for name in EXPORT_REPORTS:
            candidate = file.parent / name
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
    return ""


def probe_answers(path: Path) -> list[dict]:
    """The generation probe's answers during training ({step, probe: [{prompt, answer}]}), from metrics.jsonl."""
    return [{"step": row.get("step"), "probe": row["probe"]} for row in RunDir(path).read_metrics()
            if isinstance(row.get("probe"), list)]


def run_evaluation(path: Path) -> dict | None:
    """What the Runs tab shows about evaluation: eval/eval.json (headline metrics base vs tuned,
    multiple choice by subject, the bleed table) and the generation probe's answers; None when neither exists."""
    result = _read_eval(path)
    probes = probe_answers(path)
    if result is None and not probes:
        return None
    return {"eval": result, "probes": probes, "plot": (path / "eval" / "eval.png").is_file()}
