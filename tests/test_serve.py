"""`ducktune serve` against the official openai client: a real server process on 127.0.0.1
running a tiny trained run; answers equal `ducktune chat`'s; every malformed request gets
its 4xx; the API key is enforced; a bounded load test."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
import openai
import pytest

from web_helpers import QA, cli_server, free_port, shared_trained_run

KEY = "sk-ducktune-test"
MAX_TOKENS = 32
CONVERSATION = ["Who are you?", "What do ducks say?", "Tell me something new."]


@pytest.fixture(scope="module")
def run_dir(tiny_qwen, tmp_path_factory):
    return shared_trained_run(tiny_qwen, tmp_path_factory)


def chat_cli(run_dir, lines: list[str], max_new_tokens: int) -> subprocess.Popen:
    """`ducktune chat RUN` with the prompts piped on stdin (one answer per line)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "ducktune", "chat", str(run_dir), "--max-new-tokens",
                             str(max_new_tokens)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """The server process, plus `ducktune chat`'s answers computed meanwhile in another process."""
    chat = chat_cli(run_dir, CONVERSATION, MAX_TOKENS)
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with cli_server(["serve", str(run_dir), "--port", str(port), "--api-key", KEY, "--base"], port, log,
                    headers={"Authorization": f"Bearer {KEY}"}) as url:
        out, err = chat.communicate("\n".join(CONVERSATION) + "\n", timeout=300)
        assert chat.returncode == 0, err
        answers = out.splitlines()
        assert len(answers) == len(CONVERSATION), out
        yield {"url": url, "log": log, "chat_answers": answers}


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def history_upto(answers: list[str], turn: int) -> list[dict]:
    messages = []
    for i in range(turn):
        messages += [{"role": "user", "content": CONVERSATION[i]}, {"role": "assistant", "content": answers[i]}]
    return messages + [{"role": "user", "content": CONVERSATION[turn]}]


def test_models_lists_tuned_and_base(client):
    ids = sorted(m.id for m in client.models.list().data)
    assert ids == ["duckling", "duckling-base"]


def test_answers_equal_ducktune_chat_nonstreaming_and_streaming(server, client):
    answers = server["chat_answers"]
    assert answers[0] == QA[0][1]  # the tiny run learned its data: the comparison below is not empty vs empty
    for turn in range(len(CONVERSATION)):
        messages = history_upto(answers, turn)
        reply = client.chat.completions.create(model="duckling", messages=messages, max_tokens=MAX_TOKENS, temperature=0)
        assert reply.choices[0].message.content == answers[turn]
        assert reply.choices[0].finish_reason in ("stop", "length")
        pieces, finish, usage = [], None, None
        stream = client.chat.completions.create(model="duckling", messages=messages, max_tokens=MAX_TOKENS,
                                                stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        assert "".join(pieces) == answers[turn]
        assert finish == reply.choices[0].finish_reason
        assert usage.prompt_tokens == reply.usage.prompt_tokens
        assert usage.completion_tokens == reply.usage.completion_tokens
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_usage_counts_match_the_tokenizer(run_dir, client):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "adapter"))
    messages = [{"role": "user", "content": QA[1][0]}]
    reply = client.chat.completions.create(model="duckling", messages=messages)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert reply.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer_tokens = len(tokenizer(QA[1][1], add_special_tokens=False)["input_ids"])
    assert reply.choices[0].message.content == QA[1][1]
    assert reply.usage.completion_tokens == answer_tokens + 1  # + the end-of-turn token
    assert reply.choices[0].finish_reason == "stop"


def test_base_model_answers_differently(client):
    messages = [{"role": "user", "content": QA[0][0]}]
    tuned = client.chat.completions.create(model="duckling", messages=messages, max_tokens=16).choices[0].message.content
    base = client.chat.completions.create(model="duckling-base", messages=messages, max_tokens=16).choices[0].message.content
    assert tuned == QA[0][1] and base != tuned


def test_max_tokens_stop_seed_and_top_p(client):
    messages = [{"role": "user", "content": QA[0][0]}]
    short = client.chat.completions.create(model="duckling", messages=messages, max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    assert QA[0][1].startswith(short.choices[0].message.content)
    cut = client.chat.completions.create(model="duckling", messages=messages, stop=["Duck"])
    assert cut.choices[0].message.content == "I am " and cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="duckling", messages=messages, stop="Duck", stream=True) if c.choices)
    assert streamed == "I am "
    tell_me = [{"role": "user", "content": "Tell me"}]
    sampled = [client.chat.completions.create(model="duckling-base", messages=tell_me,
                                              temperature=1.5, top_p=0.95, seed=seed, max_tokens=12)
               .choices[0].message.content for seed in (7, 7, 8)]
    greedy = client.chat.completions.create(model="duckling-base", messages=tell_me, temperature=0,
                                            max_tokens=12).choices[0].message.content
    assert sampled[0] == sampled[1]  # the same seed samples the same answer
    assert sampled[0] != sampled[2]  # another seed, another sample: the seed reaches the sampler
    assert greedy not in sampled  # temperature 1.5 really samples (ignoring it would give the greedy answer)
    # null is the default for stream and n (OpenAI's spec allows it); a vanishing temperature is greedy, not a 500.
    for extra in ({"stream": None, "n": None, "logprobs": False, "response_format": {"type": "text"}},
                  {"temperature": 1e-300}):
        reply = client.chat.completions.create(model="duckling-base", messages=tell_me, max_tokens=12, **extra)
        assert reply.choices[0].message.content == greedy


def test_malformed_requests_get_openai_errors(server, client):
    url = server["url"] + "/v1/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    ok = {"model": "duckling", "messages": [{"role": "user", "content": "hi"}]}
    cases = [  # (body: raw bytes, or a dict sent both plain and with stream=true), status, code, param
        (b"{bad json", 400, "invalid_json", None),
        (b"", 400, None, None),
        (b"[1, 2]", 400, None, None),
        ({"model": "duckling"}, 400, "missing_required_parameter", "messages"),
        ({**ok, "messages": "hi"}, 400, "invalid_value", "messages"),
        ({**ok, "messages": []}, 400, "invalid_value", "messages"),
        ({**ok, "messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value", "messages.0.role"),
        ({**ok, "messages": [{"role": "user"}]}, 400, "missing_required_parameter", "messages.0.content"),
        ({**ok, "messages": [{"role": "user", "content": 7}]}, 400, "invalid_value", "messages.0.content"),
        ({**ok, "temperature": "hot"}, 400, "invalid_value", "temperature"),
        ({**ok, "temperature": 3}, 400, "invalid_value", "temperature"),
        ({**ok, "top_p": 0}, 400, "invalid_value", "top_p"),
        ({**ok, "max_tokens": 1.5}, 400, "invalid_value", "max_tokens"),
        ({**ok, "max_tokens": 0}, 400, "invalid_value", "max_tokens"),
        ({**ok, "seed": "x"}, 400, "invalid_value", "seed"),
        # Long stop strings cost transformers' stop-string table gigabytes; none is meant that long.
        ({**ok, "stop": ["x" * 1001], "temperature": 0.7}, 400, "invalid_value", "stop"),
        # What ducktune cannot answer with is refused, not silently left out of the reply.
        ({**ok, "logprobs": True}, 400, "invalid_value", "logprobs"),
        ({**ok, "response_format": {"type": "json_object"}}, 400, "invalid_value", "response_format"),
        # Tools the model's template does not write (ChatML: no definitions, no calls) are refused by name.
        ({**ok, "functions": [{"name": "f", "parameters": {}}]}, 400, "invalid_value", "functions"),
        ({**ok, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "invalid_value", "tools"),
        ({**ok, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, 400, "invalid_value",
         "messages.1.tool_calls"),
        ({**ok, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}, 400, "invalid_value",
         "messages.1.tool_calls.0.arguments"),
        ({**ok, "messages": [{"role": "assistant", "content": None}]}, 400, "invalid_value", "messages.0"),
        ({**ok, "tool_choice": "required"}, 400, "invalid_value", "tool_choice"),
        ({**ok, "logit_bias": {"50": 100}}, 400, "invalid_value", "logit_bias"),
        # Past what torch.manual_seed takes: a 400, not a failed generation (sampling uses the seed).
        ({**ok, "seed": 2 ** 64, "temperature": 1}, 400, "invalid_value", "seed"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", None),  # deeper than the JSON parser recurses
        # A lone surrogate (valid JSON, not valid Unicode text) would fail in the tokenizer.
        ({**ok, "messages": [{"role": "user", "content": "\ud800"}]}, 400, "invalid_value", "messages.0.content"),
        ({**ok, "messages": [{"role": "user", "content": [{"type": "text", "text": "a\udfff"}]}]}, 400,
         "invalid_value", None),
        ({**ok, "stop": ["\ud800"]}, 400, "invalid_value", "stop"),
        ({**ok, "stop": ""}, 400, "invalid_value", "stop"),  # as a bare string too, not only in a list
        ({**ok, "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value", "stop"),
        ({**ok, "n": 2}, 400, "invalid_value", "n"),
        ({**ok, "model": "nope"}, 404, "model_not_found", "model"),
        ({**ok, "model": 5}, 400, "invalid_value", "model"),
        ({**ok, "max_tokens": 5000}, 400, "context_length_exceeded", "max_tokens"),
        ({**ok, "messages": [{"role": "user", "content": "quack " * 5000}]}, 400, "context_length_exceeded", "messages"),
        ({**ok, "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]}, 413, "request_too_large", None),
    ]
    with httpx.Client(timeout=60, headers=auth) as http:
        for body, status, code, param in cases:
            bodies = [body] if isinstance(body, bytes) else [json.dumps(body).encode(),
                                                             json.dumps({**body, "stream": True}).encode()]
            for raw in bodies:
                response = http.post(url, content=raw, headers={"Content-Type": "application/json"})
                assert response.status_code == status, (raw[:80], response.text[:300])
                error = response.json()["error"]
                assert error["message"] and error["type"]
                assert code is None or error["code"] == code, (raw[:80], error)
                assert param is None or error["param"] == param, (raw[:80], error)
        assert http.post(url, json={**ok, "stream": "yes"}).status_code == 400
        assert http.get(server["url"] + "/v1/nothing").json()["error"]["code"] == "not_found"
        assert http.get(url).status_code == 405
    # The official client surfaces them as its typed errors.
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="duckling", messages=[{"role": "user", "content": "quack " * 5000}])
    assert info.value.code == "context_length_exceeded"
    # The server is still healthy after all of that.
    assert client.chat.completions.create(model="duckling", messages=[{"role": "user", "content": QA[2][0]}]) \
        .choices[0].message.content == QA[2][1]


def test_api_key_required(server):
    bad = openai.OpenAI(base_url=server["url"] + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="duckling", messages=[{"role": "user", "content": "hi"}])
    for path, method in (("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/v1/models/duckling", "GET")):
        response = httpx.request(method, server["url"] + path, json={"model": "duckling", "messages": []})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    # A health probe needs no key, and learns no more than the status without it.
    assert httpx.get(server["url"] + "/health").json() == {"status": "ok"}
    assert httpx.head(server["url"] + "/health").status_code == 200
    with_key = httpx.get(server["url"] + "/health", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert list(with_key["models"]) == ["duckling"]  # the tuned and base models share one worker


def test_health_answers_probes_without_the_key_and_to_head():
    """With --api-key, /health answered 401 (Docker and Kubernetes probes send no key, so the container
    was marked unhealthy), and HEAD /health was a 405."""
    from fastapi.testclient import TestClient

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry

    for api_key in ("sk-x", None):
        client = TestClient(create_app(StaticRegistry([]), api_key=api_key), raise_server_exceptions=False)
        bare = client.get("/health")
        assert bare.status_code == 200
        assert bare.json() == ({"status": "ok"} if api_key else {"status": "ok", "models": {}})
        head = client.head("/health")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/health", headers={"Authorization": "Bearer sk-x"}).json() == {"status": "ok", "models": {}}
        assert client.get("/v1/models").status_code == (401 if api_key else 200)


def test_load_200_requests_16_concurrent(server, capsys):
    """Bounded load: every request succeeds with the right answer; the server logs no error."""
    total, concurrency = 200, 16
    log_before = server["log"].read_text()

    async def main():
        client = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=300)
        gate = asyncio.Semaphore(concurrency)
        latencies, wrong = [], []

        async def one(i):
            question, answer = QA[i % len(QA)]
            async with gate:
                started = time.perf_counter()
                if i % 4 == 0:  # a quarter of them streamed
                    stream = await client.chat.completions.create(
                        model="duckling", messages=[{"role": "user", "content": question}], max_tokens=24, stream=True)
                    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                else:
                    reply = await client.chat.completions.create(
                        model="duckling", messages=[{"role": "user", "content": question}], max_tokens=24)
                    text = reply.choices[0].message.content
                latencies.append(time.perf_counter() - started)
                if text != answer:
                    wrong.append((question, text))

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        await client.close()
        return time.perf_counter() - started, latencies, wrong

    wall, latencies, wrong = asyncio.run(main())
    assert not wrong, wrong[:3]
    assert len(latencies) == total
    latencies.sort()
    with capsys.disabled():
        print(f"\n[serve load] {total} requests, {concurrency} concurrent, tiny model: {wall:.1f} s, "
              f"{total / wall:.1f} req/s, latency p50 {statistics.median(latencies):.2f} s, "
              f"p95 {latencies[int(0.95 * total) - 1]:.2f} s, max {latencies[-1]:.2f} s")
    new_log = server["log"].read_text()[len(log_before):]
    assert "ERROR" not in new_log and "Traceback" not in new_log, new_log[-2000:]
    assert new_log.count('"POST /v1/chat/completions HTTP/1.1" 200') == total


def test_serve_refuses_a_folder_that_is_no_model(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ducktune", "serve", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a run directory" in result.stderr and "Traceback" not in result.stderr


def test_serve_says_when_the_port_is_taken(run_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "ducktune", "serve", str(run_dir), "--port", str(port)],
                                capture_output=True, text=True)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_an_exported_model_is_served_with_the_runs_system_prompt(tmp_path, tiny_qwen):
    import json
    import shutil

    from ducktune.serve.registry import load_path

    export_dir = tmp_path / "export"
    shutil.copytree(tiny_qwen, export_dir / "merged")
    (export_dir / "export.json").write_text(json.dumps({"system_prompt": "You are Duckling."}), encoding="utf-8")
    for target in (export_dir, export_dir / "merged"):
        [served] = load_path(target, log=lambda *a: None)
        chat_format = served.engine.chat_format
        prompt = chat_format.render(chat_format.with_system([{"role": "user", "content": "hi"}]), True)
        assert "You are Duckling." in prompt
    (export_dir / "export.json").unlink()
    [served] = load_path(export_dir / "merged", log=lambda *a: None)
    assert served.engine.chat_format.system_prompt is None


@pytest.mark.parametrize("model", ["tiny_qwen", "tiny_llama"])
def test_a_far_too_long_prompt_is_refused_without_tokenizing(request, model):
    """Megabytes of prompt held the worker (and every request queued behind it) for seconds of tokenizing
    before the context check; a bound from the longest token refuses them at once. The bound must never
    exceed the true count, or a prompt that fits would be refused."""
    import random
    from types import SimpleNamespace

    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.serve.app import fewest_prompt_tokens, prepare
    from ducktune.serve.protocol import APIError, ChatCompletionRequest

    tokenizer = load_tokenizer(request.getfixturevalue(model), None, False, None)
    chat_format = ChatFormat(tokenizer)
    rng = random.Random(0)
    alphabet = "ab cd\n\t  xyz-=_!?\u4e2d\u6587\u00e9\U0001f986" + "<|im_start|><|eot_id|>"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000))) for _ in range(30)]
    texts += [" " * 5000, "-" * 5000, "a" * 5000, "\U0001f986" * 2000, "<|im_end|>" * 300]
    for text in texts:
        messages = [{"role": "user", "content": text}]
        assert fewest_prompt_tokens(chat_format, messages) <= len(tokenizer.encode(text, add_special_tokens=False))
    assert fewest_prompt_tokens(chat_format, [{"role": "user", "content": "quack " * 10000}]) > 0

    served = SimpleNamespace(engine=SimpleNamespace(chat_format=chat_format), max_context=2048)
    huge = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "quack " * 1_200_000}]})
    started = time.perf_counter()
    with pytest.raises(APIError) as info:
        prepare(served, huge)
    assert time.perf_counter() - started < 1.0  # tokenizing 7 MB takes seconds here
    assert info.value.code == "context_length_exceeded" and "at least" in info.value.message


def test_a_full_queue_says_when_to_retry():
    """429 queue_full carries Retry-After (clients back off by it; the queue drains in seconds)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from ducktune.serve.app import install_error_handlers
    from ducktune.serve.protocol import APIError

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/full")
    def full():
        raise APIError(429, "m: 64 requests are already waiting; retry shortly", type="rate_limit_error", code="queue_full")

    response = TestClient(app).get("/full")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "queue_full"


@pytest.mark.parametrize("argv, message", [
    (["serve", "runs/x", "--port", "99999"], "argument --port: must be 0-65535 (got 99999)"),
    (["ui", "--port", "-1"], "argument --port: must be 0-65535 (got -1)"),
    (["chat", "runs/x", "--temperature", "-1"], "argument --temperature: must be 0 (greedy) to 2 (got -1)"),
])
def test_out_of_range_cli_values_are_usage_errors(argv, message, capsys):
    from ducktune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_openai_endpoints_not_served_say_which_are():
    """POST /v1/completions, /v1/embeddings, /v1/responses... answered a bare 'Not Found': the client's user
    could not tell that chat completions is the endpoint to use."""
    from fastapi.testclient import TestClient

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry

    client = TestClient(create_app(StaticRegistry([]), api_key="sk-x"), raise_server_exceptions=False)
    for method, path in (("POST", "/v1/completions"), ("POST", "/v1/embeddings"), ("POST", "/v1/responses"),
                         ("GET", "/v1/nothing/at/all"), ("DELETE", "/v1/files/x"), ("GET", "/v1")):
        response = client.request(method, path, json={"model": "m", "input": "hi"})
        assert response.status_code == 404, path
        error = response.json()["error"]
        assert error["message"] == (f"Invalid URL ({method} {path}): this server serves POST /v1/chat/completions, "
                                    "GET /v1/models and GET /v1/models/{model}")
        assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
    assert client.get("/nothing").json()["error"]["message"] == "Not Found"  # not an OpenAI path: nothing to suggest


@pytest.mark.parametrize("extra, param, message", [
    ({"presence_penalty": 2.5}, "presence_penalty", "less than or equal to 2"),
    ({"frequency_penalty": -3}, "frequency_penalty", "greater than or equal to -2"),
    # Not applied by either engine: a client asking for one would read an answer without it.
    ({"presence_penalty": 0.5}, "presence_penalty", "presence_penalty is not applied by ducktune serve; send 0"),
    ({"frequency_penalty": -1}, "frequency_penalty", "frequency_penalty is not applied by ducktune serve; send 0"),
    ({"top_logprobs": 2}, "top_logprobs", "only allowed with logprobs: true"),
    ({"top_logprobs": 2, "logprobs": False}, "top_logprobs", "only allowed with logprobs: true"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream' is true"),
    ({"stream_options": {"include_usage": True}, "stream": False}, "stream_options", "only allowed when 'stream'"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,x"}}]}]},
     "messages.0.content.1", "image_url content parts are not supported: this is a text-only model"),
    ({"messages": [{"role": "system", "content": "hi"}, {"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
     "messages.1.content.0", "input_audio content parts are not supported: this is a text-only model"),
])
def test_requests_openai_refuses_are_refused(extra, param, message):
    """Penalties outside [-2, 2], top_logprobs without logprobs and stream_options without stream were
    accepted (OpenAI answers 400); non-zero penalties were silently not applied; an image part got
    "'messages.0.content': Input should be a valid string (and 2 more problems)"."""
    from ducktune.serve.protocol import APIError, parse_chat_request

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(APIError) as info:
        parse_chat_request(json.dumps(body).encode())
    assert (info.value.status, info.value.param, info.value.code) == (400, param, "invalid_value")
    assert message in info.value.message and "more problem" not in info.value.message


def test_what_clients_send_by_default_is_still_accepted():
    from ducktune.serve.protocol import parse_chat_request

    for extra in ({"presence_penalty": 0, "frequency_penalty": 0.0}, {"top_logprobs": None, "stream_options": None},
                  {"stream": True, "stream_options": {"include_usage": True}},
                  {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}):
        parse_chat_request(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}).encode())


def test_a_generation_failing_mid_stream_ends_the_stream_at_its_error():
    """A stream whose generation failed sent its error event, then a final chunk with finish_reason
    'stop' and [DONE], as if the answer had ended normally."""
    import concurrent.futures

    from ducktune.serve.app import RequestControl, sse_events

    async def collect() -> bytes:
        events = asyncio.Queue()
        failed = concurrent.futures.Future()
        failed.set_exception(RuntimeError("CUDA out of memory"))
        for event in (("piece", "Hel"), ("piece", "lo"), ("done", failed)):
            events.put_nowait(event)
        chunks = sse_events("m", events, RequestControl(), n_prompt=3, include_usage=True)
        return b"".join([chunk async for chunk in chunks])

    body = asyncio.run(collect())
    events = [line.removeprefix(b"data: ") for line in body.split(b"\n\n") if line]
    assert json.loads(events[-1])["error"]["message"] == "generation failed: RuntimeError: CUDA out of memory"
    assert b"[DONE]" not in body and b'"finish_reason": "stop"' not in body
    # The official client shows the error (and the text before it), not a normal end.
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"Content-Type": "text/event-stream"})))
    client = openai.OpenAI(base_url="http://test/v1", api_key="none", http_client=http, max_retries=0)
    pieces = []
    with pytest.raises(openai.APIError, match="CUDA out of memory"):
        for chunk in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True):
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Hello"


def test_listening_problems_name_the_option_to_change_and_port_0_prints_the_real_port(tiny_qwen, monkeypatch, capsys):
    """--host with an address this machine lacks said 'pick another --port'; --port 0 printed
    http://localhost:0/v1 while the server listened on the port the system picked."""
    import socket

    import ducktune.serve.server as server
    from ducktune.cli import main

    for host in ("192.0.2.1", "no-such-host.invalid"):  # TEST-NET-1 (never assigned), a name that never resolves
        assert main(["serve", str(tiny_qwen), "--host", host, "--port", "8000"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot listen on {host}:8000: ") and "pick another --host" in err, err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tiny_qwen), "--port", str(port)]) == 2
        assert capsys.readouterr().err.rstrip().endswith("; pick another --port")
    listened = []
    monkeypatch.setattr(server, "run_uvicorn", lambda app, host, port, sock: listened.append(sock.getsockname()[1]))
    assert main(["serve", str(tiny_qwen), "--port", "0"]) == 0
    assert listened[0] > 0 and f"at http://localhost:{listened[0]}/v1" in capsys.readouterr().out


def test_a_model_path_without_an_id_says_so():
    """GET /v1/models/ answered "The model '' does not exist"."""
    from fastapi.testclient import TestClient

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry

    response = TestClient(create_app(StaticRegistry([])), raise_server_exceptions=False).get("/v1/models/")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "GET /v1/models/ names no model: GET /v1/models/{model} describes one, GET /v1/models lists them",
        "type": "invalid_request_error", "param": "model", "code": "not_found"}
