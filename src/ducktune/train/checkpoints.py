"""Checkpoints that a crash cannot poison.

transformers' Trainer writes `checkpoint-N/` file by file and writes `trainer_state.json`
last (after weights, optimizer, scheduler and RNG state). A checkpoint is complete when that
file parses and names step N and every weight and state file in it is whole (safetensors, or
accelerate's FSDP files): a safetensors
file as long as its header says, a torch file (optimizer, scheduler, RNG) with its zip
directory intact. Incomplete or damaged ones (a crash mid-save, a truncated copy, a full disk)
are renamed aside to `incomplete-checkpoint-N`, a name the Trainer's `checkpoint-*` rotation
does not match, with a message saying why, so neither resume nor rotation ever picks them;
nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from ducktune.io import safetensors_problem

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TORCH_FILES = ("*.pt", "*.pth", "*.bin")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def _torch_file_problem(path: Path) -> str | None:
    # torch.save writes a zip archive whose directory comes last: a cut-short file has none.
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (OSError, zipfile.BadZipFile, EOFError):
        return "truncated or not a torch file"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why training cannot resume from this checkpoint folder (None: it is complete)."""
    step = checkpoint_step(path)
    if step is None:
        return "not a checkpoint-N folder"
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (the save was cut short)"
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"trainer_state.json is unreadable ({exc})"
    if not isinstance(data, dict) or data.get("global_step") != step:
        return f"trainer_state.json does not record step {step}"
    weights = sorted(path.glob("*.safetensors"))
    # accelerate's FSDP checkpointing writes pytorch_model_fsdp.bin or a pytorch_model_fsdp_0/ folder instead.
    if not weights and not any(path.glob("pytorch_model_fsdp*")):
        return "no weights (*.safetensors)"
    for file in weights:
        problem = safetensors_problem(file)
        if problem:
            return f"{file.name}: {problem}"
    for file in sorted(f for pattern in _TORCH_FILES for f in path.glob(pattern)):
        if file.name == "training_args.bin":  # not read on resume
            continue
        problem = _torch_file_problem(file)
        if problem:
            return f"{file.name}: {problem}"
    return None


def is_complete(path: Path) -> bool:
    return checkpoint_problem(path) is None


def _set_aside(path: Path) -> Path:
    target = path.with_name(f"incomplete-{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"incomplete{n}-{path.name}")
    os.replace(path, target)
    return target


def latest_complete(folder: Path, quarantine: bool = True, log=None) -> Path | None:
    """The newest complete checkpoint; incomplete or damaged ones are renamed `incomplete-checkpoint-N`
    (each with a message to `log`)."""
    if not folder.is_dir():
        return None
    found = []
    for path in sorted(folder.iterdir()):
        step = checkpoint_step(path)
        if step is None or not path.is_dir():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            found.append((step, path))
        elif quarantine:
            target = _set_aside(path)
            if log is not None:
                log(f"{path}: {problem}; set aside as {target.name}, not resumed from")
    return max(found)[1] if found else None
