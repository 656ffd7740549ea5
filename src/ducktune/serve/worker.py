"""One generation at a time per model, off the event loop.

Each loaded model gets one worker thread; requests wait in its queue in arrival order.
The HTTP event loop only awaits futures, so listing models, health checks and new
connections stay responsive while a long answer is being generated. A request whose
client has gone is skipped when its turn comes, and a running one stops at the next
token (ChatEngine's cancel event), so the slot frees at once.

Batching: on CPU a small model's decoding step costs about the same for 8 sequences as for
one (it is bound by reading the weights), so requests queued with `submit_batchable` are
answered together: when one's turn comes, the worker waits `gather_s` for companions, then
takes every queued request with the same key (same weights, same adapter state), up to
`batch_size`, into one call of their shared batch function. A request arriving while a batch
runs waits for the next one (static batching, not per-token joining).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

from ducktune.serve.protocol import APIError

T = TypeVar("T")


class Cancelled(Exception):
    """The client went away before or during its generation."""


@dataclass
class _Queued:
    key: object  # requests with equal keys may share a batch
    payload: object
    cancel: threading.Event
    future: Future
    run_batch: Callable[[list], list]  # payloads -> one result or exception per payload


DEFAULT_BATCH_SIZE = 8
GATHER_SECONDS = 0.02  # concurrent clients' requests arrive spread over a few ms


class GenerationWorker:
    def __init__(self, name: str, max_queue: int = 64, batch_size: int = DEFAULT_BATCH_SIZE,
                 gather_s: float = GATHER_SECONDS):
        self.name = name
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.gather_s = gather_s
        self._queued: list[_Queued] = []
        self.batches = 0  # batch calls made, and the requests they answered (stats: mean batch size)
        self.batched = 0
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
            self._admit()
        return self._executor.submit(self._run, job, cancel)

    def _admit(self) -> None:
        if self.waiting >= self.max_queue:
            raise APIError(429, f"{self.name}: {self.waiting} requests are already waiting; retry shortly",
                           type="rate_limit_error", code="queue_full")
        self.waiting += 1

    def submit_batchable(self, key, payload, cancel: threading.Event, run_batch: Callable[[list], list]) -> Future:
        """Queue `payload` to be answered by `run_batch([payload, ...])`, possibly with other requests
        queued under the same key; the Future gets this payload's result (or exception)."""
        item = _Queued(key, payload, cancel, Future(), run_batch)
        with self._guard:
            self._admit()
            self._queued.append(item)
        self._executor.submit(self._run_batch)
        return item.future

    def _take_batch(self) -> list[_Queued]:
        with self._guard:
            if not self._queued:
                return []  # an earlier batch answered this submission's request
            key = self._queued[0].key
            same = sum(1 for q in self._queued if q.key == key)
        if same < self.batch_size and self.gather_s > 0:
            time.sleep(self.gather_s)
        with self._guard:
            key = self._queued[0].key
            batch = [q for q in self._queued if q.key == key][: self.batch_size]
            self._queued = [q for q in self._queued if not any(q is b for b in batch)]
            self.waiting -= len(batch)
            self.running += len(batch)
        return batch

    def _run_batch(self) -> None:
        live = []
        for item in self._take_batch():
            # A future cancelled by its awaiting side, or a client gone: skip it.
            if not item.future.set_running_or_notify_cancel() or item.cancel.is_set():
                if item.future.running():
                    item.future.set_exception(Cancelled())
                self._count("cancelled")
            else:
                live.append(item)
        if not live:
            return
        with self._guard:
            self.batches += 1
            self.batched += len(live)
        try:
            outcomes = live[0].run_batch([item.payload for item in live])
        except BaseException as exc:  # the whole batch failed: every request gets the error
            outcomes = [exc] * len(live)
        for item, outcome in zip(live, outcomes):
            if isinstance(outcome, BaseException):
                self._count("cancelled" if isinstance(outcome, Cancelled) else
                            "refused" if isinstance(outcome, APIError) else "failed")
                item.future.set_exception(outcome)
            elif item.cancel.is_set():
                self._count("cancelled")
                item.future.set_exception(Cancelled())
            else:
                self._count("completed")
                item.future.set_result(outcome)

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
                    "cancelled": self.cancelled, "refused": self.refused, "failed": self.failed,
                    "batches": self.batches, "batched": self.batched}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._guard:  # batchable requests still queued have their own futures: end them too
            queued, self._queued = self._queued, []
            self.waiting -= len(queued)
        for item in queued:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(Cancelled())
