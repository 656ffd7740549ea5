"""Generated blocks in README.md and RESULTS.md: the text between two markers, replaced whole."""

from __future__ import annotations


def replace_block(text: str, begin: str, end: str, block: str, missing: str | None = None) -> str:
    """`text` with everything from `begin` through `end` replaced by `block` (which carries the
    markers again). Without the markers: `text` with `missing` appended when given, else an error."""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if missing is None:
        raise SystemExit(f"no {begin} ... {end} block to replace")
    return text.rstrip("\n") + "\n\n" + missing + "\n"


def rewrite_block(path, begin: str, end: str, block: str, missing: str | None = None) -> None:
    """replace_block on a file, written atomically (a crash leaves the old file, never half a new one)."""
    from pathlib import Path

    from ducktune.io import write_text

    write_text(path, replace_block(Path(path).read_text(encoding="utf-8"), begin, end, block, missing))


def show_block(block: str, write: bool, path, begin: str, end: str, missing: str | None = None) -> None:
    """Print a rendered block and, with `write`, put it in its file (rewrite_block)."""
    print(block)
    if write:
        rewrite_block(path, begin, end, block, missing)
