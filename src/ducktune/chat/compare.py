"""Base vs tuned answers, side by side."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

from ducktune.errors import UserError


def terminal_text(text: str) -> str:
    """Model output made safe to print: control characters (NUL, backspace, ESC sequences that move
    the cursor or recolour the terminal...) shown as \\xNN escapes; newlines kept, tabs as 4 spaces
    (a tab's width depends on where it falls, which breaks the columns), carriage returns as newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join("    " if ch == "\t" else ch if ch == "\n" or unicodedata.category(ch) != "Cc"
                   else f"\\x{ord(ch):02x}" for ch in text)


def _cells(ch: str) -> int:
    """Terminal columns of a character: 2 for wide (CJK) ones, 0 for combining marks."""
    return 0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def display_width(text: str) -> int:
    return sum(_cells(ch) for ch in text)


def _wrap_paragraph(paragraph: str, width: int) -> list[str]:
    """Words to lines of at most `width` terminal columns; a word wider than a line (Chinese text has
    no spaces between words) is broken between characters."""
    lines, line = [], ""
    for word in paragraph.split():
        joined = f"{line} {word}" if line else word
        if display_width(joined) <= width:
            line = joined
            continue
        if display_width(word) <= width:
            lines.append(line)
            line = word
            continue
        if line and display_width(line) + 1 < width:
            line += " "
        for ch in word:
            if display_width(line) + _cells(ch) > width:
                lines.append(line.rstrip())
                line = ""
            line += ch
    return lines + [line]


def _wrap(text: str, width: int, max_lines: int = 14) -> list[str]:
    lines: list[str] = []
    for paragraph in (terminal_text(text).strip() or "(empty)").splitlines():
        wrapped = _wrap_paragraph(paragraph, width)
        if wrapped == [""] and lines and lines[-1] == "":
            continue  # collapse runs of blank lines
        lines += wrapped
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + ["[...]"]
    return lines


def side_by_side(rows: list[dict], width: int | None = None) -> str:
    """A plain-text table: prompt, then base and tuned answers in two columns (aligned in terminal
    columns: Chinese characters take two)."""
    width = width or min(shutil.get_terminal_size((110, 24)).columns, 160)
    col = max(20, (width - 3) // 2)
    out = []
    rule = "-" * (col * 2 + 3)
    for row in rows:
        out.append(rule)
        out.append(f"Q: {row['prompt']}")
        left, right = _wrap(row["base"], col), _wrap(row["tuned"], col)
        out.append(f"{'base':<{col}} | tuned")
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            out.append(f"{a}{' ' * (col - display_width(a))} | {b}")
    out.append(rule)
    return "\n".join(out)


def print_side_by_side(rows: list[dict]) -> None:
    print(side_by_side(rows))


def read_prompts(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: prompts file not found")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: byte {exc.start}: not valid UTF-8; save the file as UTF-8") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UserError(f"{path}: no prompts (one per line)")
    return prompts


def compare_answers(engine, prompts: list[str], max_new_tokens: int, tools: list | None = None) -> list[dict]:
    """Greedy answers of the base model (adapter disabled) and the tuned model to each prompt, offered
    `tools[i]` (the run's probe_tools: a run trained on calls is asked as it was trained).

    The base model's answers are deterministic: they come from the per-base-model cache
    (chat/general.py) when the engine knows its base folder and no prompt has tools, and are
    generated once otherwise.
    """
    from ducktune.chat.general import engine_base_answers

    conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
    base = None if tools else engine_base_answers(engine, prompts, max_new_tokens, log=lambda *_: None)
    if base is None:
        with engine.adapter_disabled():
            base = [g.text for g in engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=32,
                                                          tools=tools)]
    tuned = engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=32, tools=tools)
    return [{"prompt": p, "base": b, "tuned": t.text} for p, b, t in zip(prompts, base, tuned)]


def run_compare(run_dir: str, prompts_file: str | None = None, max_new_tokens: int = 128, as_json: bool = False) -> list[dict]:
    from ducktune.chat.engine import ChatEngine
    from ducktune.rundir import RunDir

    run = RunDir(run_dir)
    info = run.info()
    prompts = read_prompts(prompts_file) if prompts_file else info.get("probe_prompts") or []
    if not prompts:
        raise UserError(f"{run_dir}: the run has no probe prompts; pass --prompts FILE")
    engine = ChatEngine.from_run(run_dir)
    if not engine.has_adapter:
        raise UserError(f"{run_dir}: a full fine-tune has no adapter to switch off; compare needs a LoRA run")
    tools = None if prompts_file else info.get("probe_tools")  # the run's own prompts come with their tools
    rows = compare_answers(engine, prompts, max_new_tokens, tools if isinstance(tools, list) else None)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print_side_by_side(rows)
    return rows
