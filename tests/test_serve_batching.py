"""The worker's batching, without a model: requests queued together share one batch call per key,
a client gone before its turn is skipped, per-request errors stay per request, and shutting
down ends requests still queued."""

from __future__ import annotations

import threading

import pytest

from ducktune.serve.protocol import APIError
from ducktune.serve.worker import Cancelled, GenerationWorker


def test_queued_requests_share_batches_by_key():
    worker = GenerationWorker("m", batch_size=3, gather_s=0.0)
    release = threading.Event()
    calls: list[list] = []

    def run_batch(payloads):
        calls.append(list(payloads))
        if payloads == ["block"]:
            release.wait(10)
        return [p.upper() if p != "bad" else APIError(400, "bad request") for p in payloads]

    first = worker.submit_batchable("tuned", "block", threading.Event(), run_batch)
    while worker.stats()["running"] == 0:  # the first batch is running: the rest queue behind it
        pass
    gone = threading.Event()
    gone.set()
    futures = [worker.submit_batchable(key, payload, cancel, run_batch) for key, payload, cancel in [
        ("tuned", "a", threading.Event()), ("base", "x", threading.Event()), ("tuned", "b", gone),
        ("tuned", "bad", threading.Event()), ("tuned", "c", threading.Event()), ("tuned", "d", threading.Event())]]
    assert worker.stats()["waiting"] == 6
    release.set()
    assert first.result(10) == "BLOCK"
    assert [f.exception(10) is None for f in futures] == [True, True, False, False, True, True]
    assert futures[0].result() == "A" and futures[1].result() == "X" and futures[5].result() == "D"
    assert isinstance(futures[2].exception(), Cancelled)
    assert isinstance(futures[3].exception(), APIError)
    # batches: [block], then up to 3 "tuned" in arrival order (b was gone: skipped), then base, then the rest
    assert calls == [["block"], ["a", "bad"], ["x"], ["c", "d"]]
    stats = worker.stats()
    assert (stats["completed"], stats["cancelled"], stats["refused"], stats["waiting"], stats["running"]) == (5, 1, 1, 0, 0)


def test_shutdown_ends_queued_requests():
    worker = GenerationWorker("m", gather_s=0.0)
    release = threading.Event()
    worker.submit_batchable("k", "block", threading.Event(), lambda p: [release.wait(10)] * len(p))
    while worker.stats()["running"] == 0:
        pass
    waiting = worker.submit_batchable("k2", "later", threading.Event(), lambda p: p)
    worker.shutdown()
    release.set()
    with pytest.raises(Cancelled):
        waiting.result(5)
