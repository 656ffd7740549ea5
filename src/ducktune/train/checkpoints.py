"""Checkpoints that a crash cannot poison.

transformers' Trainer writes `checkpoint-N/` file by file and writes `trainer_state.json`
last (after weights, optimizer, scheduler and RNG state). A checkpoint is complete when that
file parses and names step N, next to weights (safetensors, or accelerate's FSDP files).
Incomplete ones (a crash mid-save) are renamed aside to `incomplete-checkpoint-N` (a name the
Trainer's `checkpoint-*` rotation does not match), so neither resume nor rotation ever picks
them; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    step = checkpoint_step(path)
    state = path / "trainer_state.json"
    if step is None or not state.is_file():
        return False
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    # Weights as save_pretrained writes them, or as accelerate's FSDP checkpointing does
    # (pytorch_model_fsdp.bin, or the pytorch_model_fsdp_0/ folder of a sharded state dict).
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model_fsdp*"))
    return data.get("global_step") == step and has_weights


def latest_complete(folder: Path, quarantine: bool = True) -> Path | None:
    """The newest complete checkpoint; incomplete ones are renamed `incomplete-checkpoint-N`."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        step = checkpoint_step(path)
        if step is None or not path.is_dir():
            continue
        if is_complete(path):
            found.append((step, path))
        elif quarantine:
            target = path.with_name(f"incomplete-{path.name}")
            n = 1
            while target.exists():
                n += 1
                target = path.with_name(f"incomplete{n}-{path.name}")
            os.replace(path, target)
    return max(found)[1] if found else None
