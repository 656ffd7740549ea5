"""The run directory: the contract between training, chat, export and serving.

    runs/NAME/
      config.yaml      resolved config (every default filled in)
      run.json         status, base model, chat format (stop tokens), data stats, results
      adapter/         PEFT adapter + tokenizer + chat template   (LoRA / QLoRA runs)
      model/           full weights + tokenizer                   (full fine-tuning runs)
      checkpoints/     checkpoint-N folders (Trainer format), last K kept
      metrics.jsonl    one line per logging step: loss, lr, grad_norm, tokens_per_s, eval_loss
      loss.png         loss curve
      report.md        settings, final loss, base vs tuned answers

`ducktune chat/compare/export/serve RUN_DIR` need nothing but this folder.

One writer at a time: `ducktune train` and `ducktune export` hold `WriterLock` on the folder
(an flock on the directory itself, so no lock file is written and the OS releases it when the
holder dies, even by SIGKILL: a crashed run never blocks its rerun). A second writer is refused
with one line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ducktune.errors import UserError
from ducktune.io import read_json_file


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_yaml = property(lambda self: self.path / "config.yaml")
    run_json = property(lambda self: self.path / "run.json")
    adapter = property(lambda self: self.path / "adapter")
    full_model = property(lambda self: self.path / "model")
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    loss_png = property(lambda self: self.path / "loss.png")
    report = property(lambda self: self.path / "report.md")

    def exists(self) -> bool:
        return self.run_json.is_file()

    def info(self) -> dict:
        if not self.run_json.is_file():
            if (self.path / "export.json").is_file():  # an export folder given where its run is wanted
                raise UserError(f"{self.path}: an export folder, not a run directory; pass the run it was exported "
                                f"from (by default the folder above: {self.path.parent})")
            raise UserError(f"{self.path}: not a ducktune run directory (no run.json); train one with `ducktune train`")
        info = read_json_file(self.run_json)
        if not isinstance(info, dict):
            raise UserError(f"{self.run_json}: corrupt (not a JSON object)")
        return info

    def status(self, info: dict | None = None) -> str:
        """run.json's status (`info`: run.json already read), except that a run saying "running" whose
        writer lock no process holds (killed by SIGKILL, a power loss) is "interrupted". A reader never
        rewrites run.json; the next `ducktune train` of the run resumes it."""
        info = self.info() if info is None else info
        status = info.get("status")
        status = status if isinstance(status, str) else "unknown"
        return "interrupted" if status == "running" and not writer_alive(self.path) else status

    def unfinished_hint(self, info: dict | None = None) -> str:
        """What to do about a run that is not finished: wait while a process still trains it, else resume it."""
        status = self.status(info)
        if status == "running":
            return "(status: running): another process is still training it; wait for it to finish"
        error = (info if info is not None else self.info()).get("error") if status == "failed" else None
        failure = f", {error}" if error else ""  # why it failed, as run.json recorded it
        return f"(status: {status}{failure}); finish it with `ducktune train {self.config_yaml}`"

    def weights_dir(self) -> Path:
        """The adapter (LoRA) or full model folder of a finished run."""
        info = self.info()
        folder = self.full_model if info.get("method") == "full" else self.adapter
        if not folder.is_dir():
            status = self.status(info)
            raise UserError(f"{self.path}: no trained weights in {folder.name}/ (run status: {status}); "
                            f"finish or resume the run with `ducktune train {self.config_yaml}`")
        return folder

    def config(self):
        from ducktune.config import load_config

        config = load_config(self.config_yaml)
        name = config.model.name_or_path
        if name.startswith(("./", "../")) and not Path(name).is_dir():
            # Runs trained before model paths were stored absolute recorded `./tiny` as written, which
            # only worked from the folder they were started in; run.json holds the folder that was loaded.
            resolved = (self.info().get("base_model") or {}).get("resolved")
            if isinstance(resolved, str) and Path(resolved).is_dir():
                config.model.name_or_path = resolved
        return config

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        rows = []
        for line in self.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(row, dict):
                rows.append(row)
        return rows


def writer_alive(folder: str | Path) -> bool:
    """Whether a process holds `folder`'s WriterLock: a non-blocking shared-lock probe, released at
    once. True where that cannot be told (no fcntl, an unreadable folder): never call a live run dead."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock
    return False


class WriterLock:
    """An exclusive, non-blocking lock on a run directory for one writing command.

    `acquire(folder)` may be called again with another folder (the run directory recreated by
    --overwrite): the new one is locked and the old one released. Without fcntl (Windows) it does nothing.
    """

    def __init__(self, action: str):
        self.action = action
        self._fd: int | None = None

    def acquire(self, folder: str | Path) -> None:
        try:
            import fcntl
        except ImportError:
            return
        fd = os.open(folder, os.O_RDONLY)
        if self._fd is not None and os.path.sameopenfile(fd, self._fd):
            os.close(fd)  # already ours
            return
        for attempt in range(4):  # a reader's writer_alive() probe holds it for an instant
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:  # BlockingIOError: another process holds it
                if attempt < 3:
                    time.sleep(0.05)
        else:
            os.close(fd)
            raise UserError(f"{folder}: another ducktune process (a training or an export) is writing to this run "
                            f"directory; wait for it to finish, or stop it, before running {self.action} on it") from None
        self.release()
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
