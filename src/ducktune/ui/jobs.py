"""Long tasks the UI starts as `ducktune ...` subprocesses (train, export).

Running the real command line, with the saved YAML, makes a run started from the UI
identical to one started in a terminal, and a crash or an out-of-memory kill of the task
cannot take the UI down. Output goes to a log file the page tails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ducktune.errors import UserError

# ducktune's own progress bar (train/callbacks.py ProgressBar): "training:  45%|...| 9/20 [..."
_PROGRESS = re.compile(r"training:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")
LOG_TAIL_BYTES = 64 * 1024


class Job:
    """One `ducktune` subprocess with its log file."""

    def __init__(self, kind: str, args: list[str], log_path: Path, target: str, cwd: str | None = None):
        self.kind = kind
        self.args = args
        self.log_path = log_path
        self.target = target  # the run directory it works on
        self.started = time.time()
        self.finished: float | None = None
        self.stop_requested = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Own process group: stopping the job reaches anything it started, and never the UI.
        self.process = subprocess.Popen([sys.executable, "-m", "ducktune", *args], stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                        start_new_session=True)
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        self.process.wait()
        self.finished = time.time()
        self._log.close()

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def state(self) -> str:
        code = self.returncode
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if code == 0:
            return "completed"
        return "stopped" if self.stop_requested else "failed"

    def stop(self, grace: float = 20.0) -> None:
        """Ctrl-C first (training saves its state and exits resumable), then terminate, then kill."""
        if self.returncode is not None:
            return
        self.stop_requested = True
        os.killpg(self.process.pid, signal.SIGINT)

        def escalate():
            # SIGTERM is handled like Ctrl-C by `ducktune train` (the run stays resumable): it gets time too.
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
                try:
                    self.process.wait(timeout=wait)
                    return
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.process.pid, sig)
                    except ProcessLookupError:
                        return

        threading.Thread(target=escalate, daemon=True).start()

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                raw = handle.read()
        except OSError:
            return ""
        return raw.decode("utf-8", errors="replace")

    def progress(self, tail: str) -> tuple[int, int] | None:
        found = _PROGRESS.findall(tail)
        if not found:
            return None
        step, total = found[-1]
        return int(step), int(total)

    def status(self) -> dict:
        tail = self.log_tail()
        # A progress bar rewrites its line with carriage returns: show only the latest state of each line.
        lines = [line.rsplit("\r", 1)[-1] for line in tail.replace("\r\n", "\n").split("\n")]
        progress = self.progress(tail)
        return {
            "kind": self.kind, "state": self.state, "target": self.target, "command": "ducktune " + " ".join(self.args),
            "returncode": self.returncode, "started": self.started, "finished": self.finished,
            "elapsed": (self.finished or time.time()) - self.started,
            "progress": {"step": progress[0], "total": progress[1]} if progress else None,
            "log": "\n".join(lines[-200:]),
        }


class JobSlot:
    """At most one job of a kind at a time: two trainings would halve each other's speed."""

    def __init__(self, kind: str):
        self.kind = kind
        self.job: Job | None = None
        self._lock = threading.Lock()

    def ensure_free(self) -> None:
        if self.job is not None and self.job.returncode is None:
            raise UserError(f"a {self.kind} job is already running ({self.job.target}); stop it first")

    def start(self, args: list[str], log_path: Path, target: str, cwd: str | None = None) -> Job:
        with self._lock:
            self.ensure_free()
            self.job = Job(self.kind, args, log_path, target, cwd)
            return self.job

    def status(self) -> dict:
        return self.job.status() if self.job else {"kind": self.kind, "state": "idle"}
