"""One generation at a time per model, off the event loop.

Each loaded model gets one worker thread; requests wait in its queue in arrival order.
The HTTP event loop only awaits futures, so listing models, health checks and new
connections stay responsive while a long answer is being generated. A request whose
client has gone is skipped when its turn comes, and a running one stops at the next
token (ChatEngine's cancel event), so the slot frees at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

from ducktune.serve.protocol import APIError

T = TypeVar("T")


class Cancelled(Exception):
    """The client went away before or during its generation."""


class GenerationWorker:
    def __init__(self, name: str, max_queue: int = 64):
        self.name = name
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{name}")
        self._guard = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.completed = 0
        self.cancelled = 0
        self.refused = 0  # the job found the request unanswerable (a 4xx, e.g. over the context length)
        self.failed = 0

    def submit(self, job: Callable[[], T], cancel: threading.Event) -> Future:
        """Queue `job`; raises APIError(429) when the queue is full (clients retry 429 with backoff)."""
        with self._guard:
            if self.waiting >= self.max_queue:
                raise APIError(429, f"{self.name}: {self.waiting} requests are already waiting; retry shortly",
                               type="rate_limit_error", code="queue_full")
            self.waiting += 1
        return self._executor.submit(self._run, job, cancel)

    def _run(self, job: Callable[[], T], cancel: threading.Event) -> T:
        with self._guard:
            self.waiting -= 1
            self.running += 1
        try:
            if cancel.is_set():
                raise Cancelled()
            result = job()
            if cancel.is_set():
                raise Cancelled()
        except Cancelled:
            self._count("cancelled")
            raise
        except APIError:
            self._count("refused")
            raise
        except BaseException:
            self._count("failed")
            raise
        self._count("completed")
        return result

    def _count(self, outcome: str) -> None:
        with self._guard:
            self.running -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)

    def stats(self) -> dict:
        with self._guard:
            return {"waiting": self.waiting, "running": self.running, "completed": self.completed,
                    "cancelled": self.cancelled, "refused": self.refused, "failed": self.failed}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
