"""Queueing and cancellation: a client that leaves mid-answer frees the model at once, the
event loop keeps answering while a model generates, and a merged export folder is served."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from web_helpers import free_port, never_stopping_model, thread_server


@pytest.fixture(scope="module")
def server(tiny_qwen, tmp_path_factory):
    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry, load_path

    export_dir = tmp_path_factory.mktemp("export") / "my-export"
    never_stopping_model(tiny_qwen, export_dir / "merged")  # an export folder: the model is in merged/
    registry = StaticRegistry(load_path(export_dir))
    with thread_server(create_app(registry), free_port()) as url:
        yield {"url": url, "registry": registry, "worker": registry.get("my-export").worker}


def wait_idle(worker, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        stats = worker.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"worker still busy after {timeout} s: {worker.stats()}")


def tokens_per_second(url: str) -> float:
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    started = time.perf_counter()
    reply = client.chat.completions.create(model="my-export", messages=[{"role": "user", "content": "hi"}], max_tokens=64)
    assert reply.usage.completion_tokens == 64 and reply.choices[0].finish_reason == "length"
    return 64 / (time.perf_counter() - started)


def test_merged_export_folder_is_served(server):
    models = httpx.get(server["url"] + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["my-export"]


def test_disconnect_mid_stream_frees_the_slot(server):
    worker, url = server["worker"], server["url"]
    rate = tokens_per_second(url)
    long_answer = 3000  # would take 3000 / rate seconds if it ran to the end
    before = worker.stats()
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", url + "/v1/chat/completions", json={
                "model": "my-export", "messages": [{"role": "user", "content": "go on"}],
                "max_tokens": long_answer, "stream": True}) as response:
            assert response.status_code == 200
            chunks = 0
            for line in response.iter_lines():
                chunks += line.startswith("data: ")
                if chunks >= 5:
                    break
            assert worker.stats()["running"] == 1
    freed_after = wait_idle(worker, timeout=10)
    after = worker.stats()
    assert after["cancelled"] == before["cancelled"] + 1
    assert freed_after < 0.25 * long_answer / rate, (freed_after, rate)
    # The next request is served at once.
    reply = httpx.post(url + "/v1/chat/completions", json={"model": "my-export", "max_tokens": 4,
                                                           "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4


def test_disconnect_while_waiting_non_streaming_cancels(server):
    worker, url = server["worker"], server["url"]
    before = worker.stats()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json={"model": "my-export", "max_tokens": 3000,
                                                       "messages": [{"role": "user", "content": "go on"}]}, timeout=1.0)
    wait_idle(worker, timeout=10)
    assert worker.stats()["cancelled"] == before["cancelled"] + 1


def test_requests_queue_and_event_loop_stays_responsive(server):
    """While one long answer runs, /v1/models answers fast and queued requests all complete in order."""
    worker, url = server["worker"], server["url"]
    results, errors = [], []

    def ask(i, max_tokens):
        try:
            response = httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": "my-export", "max_tokens": max_tokens, "messages": [{"role": "user", "content": f"q{i}"}]})
            results.append((i, response.status_code, response.json()["usage"]["completion_tokens"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(0, 300))]
    threads[0].start()
    while worker.stats()["running"] == 0:
        time.sleep(0.01)
    threads += [threading.Thread(target=ask, args=(i, 8)) for i in range(1, 6)]
    for t in threads[1:]:
        t.start()
    assert httpx.get(url + "/v1/models", timeout=5).status_code == 200
    # Answered while the long generation is still going: the event loop was not blocked by it.
    listed_during_generation = worker.stats()["running"] == 1 and threads[0].is_alive()
    peak_waiting = max(worker.stats()["waiting"] for _ in range(20) if not time.sleep(0.01))
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == [(0, 200, 300)] + [(i, 200, 8) for i in range(1, 6)]
    assert listed_during_generation
    assert peak_waiting >= 1  # they did queue behind the long answer
