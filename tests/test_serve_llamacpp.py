"""`ducktune serve` / `chat` on an export run the GGUF through llama.cpp: the engine's greedy
answers equal llama-cpp-python's own greedy decoding of the same prompt ids and the merged HF
model's answers; the server answers the official openai client (streaming and not, usage
counted); without llama-cpp-python the command fails in one line. The HF path batches
concurrent requests and answers them as it answers them one by one."""

from __future__ import annotations

import re

import threading
from pathlib import Path

import openai
import pytest
from export_support import confident_copy, make_lora_run

from ducktune.cli import main

PROMPTS = ["Who are you?", "What do ducks eat?", "Say hello.", "Tell me a story about a pond."]
MAX_NEW = 24


@pytest.fixture(scope="module")
def export_dir(tiny_llama, tmp_path_factory) -> Path:
    """A LoRA run on a tiny Llama with confident predictions (no near-ties), exported as f16 GGUF.
    (Scale 8, adapter seed 1: answers differ by prompt and hold characters split across tokens.)"""
    from ducktune.export.pipeline import export_run

    root = tmp_path_factory.mktemp("gguf-serve")
    base = confident_copy(tiny_llama, root / "confident-llama", scale=8.0)
    run = make_lora_run(root / "run", base, system_prompt="You are Quack, a duck.", seed=1)
    export_run(run, to="gguf", quants="f16", out=root / "quack-export", name="quack", create=False,
               prompt_limit=2, log=lambda *a: None)
    return root / "quack-export"


@pytest.fixture(scope="module")
def hf_answers(export_dir):
    from ducktune.serve.registry import load_path

    engine = load_path(export_dir, engine="transformers")[0].engine
    return engine, [engine.generate([{"role": "user", "content": p}], max_new_tokens=MAX_NEW) for p in PROMPTS]


@pytest.fixture(scope="module")
def gguf_engine(export_dir):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing (make verify-extra)")
    from ducktune.serve.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.from_export(export_dir, quant="f16")
    yield engine
    engine.close()


@pytest.mark.requires_llama_cpp
def test_gguf_engine_greedy_equals_llama_cpp_and_the_merged_model(export_dir, gguf_engine, hf_answers):
    from ducktune.export.verify import _greedy, _open_llama

    hf_engine, hf = hf_answers
    assert gguf_engine.name == "quack" and gguf_engine.chat_format.system_prompt == "You are Quack, a duck."
    reference = _open_llama(export_dir / "quack-f16.gguf", 512)  # logits_all: verify's own greedy decoding
    stop_ids = set(gguf_engine.chat_format.stop_token_ids)
    try:
        for prompt, expected in zip(PROMPTS, hf):
            messages = [{"role": "user", "content": prompt}]
            ids = gguf_engine.chat_format.prompt_ids(messages)
            assert ids == hf_engine.chat_format.prompt_ids(messages)  # the run's template, the HF tokenizer
            own = _greedy(reference, ids, stop_ids, MAX_NEW)
            got = gguf_engine.generate(messages, max_new_tokens=MAX_NEW)
            assert got.text == hf_engine.tokenizer.decode([t for t in own if t not in stop_ids], skip_special_tokens=True)
            assert got == expected  # text, token counts and finish reason
            assert got.prompt_tokens == len(ids) and got.completion_tokens == len(own)
    finally:
        reference.close()
    assert len({g.text for g in hf}) > 1 and any(g.text for g in hf)  # not the same (empty) answer everywhere


@pytest.mark.requires_llama_cpp
def test_gguf_engine_streams_stops_and_cancels(gguf_engine, hf_answers):
    _, hf = hf_answers
    messages = [{"role": "user", "content": PROMPTS[0]}]
    finished = []
    pieces = list(gguf_engine.stream(messages, max_new_tokens=MAX_NEW, on_finish=finished.append))
    assert "".join(pieces) == hf[0].text and finished == [hf[0]]
    word = hf[0].text[len(hf[0].text) // 2:][:3]
    cut = gguf_engine.generate(messages, max_new_tokens=MAX_NEW, stop=[word])
    assert cut.text == hf[0].text[:hf[0].text.find(word)] and cut.finish_reason == "stop"
    cancel = threading.Event()
    cancel.set()
    stopped = gguf_engine.generate(messages, max_new_tokens=MAX_NEW, cancel=cancel)
    assert stopped.completion_tokens == 1  # stops at the first token once cancelled
    sampled = [gguf_engine.generate(messages, max_new_tokens=8, temperature=1.5, seed=s).text for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]  # a seed repeats its answer


@pytest.mark.requires_llama_cpp
def test_serve_export_dir_answers_openai_client_with_llama_cpp(export_dir, hf_answers):
    from web_helpers import free_port, thread_server

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry, load_path

    _, hf = hf_answers
    models = load_path(export_dir)  # engine auto: llama.cpp is installed, so the GGUF answers
    assert type(models[0].engine).__name__ == "LlamaCppEngine"
    limit = models[0].max_context
    assert limit == 4096  # the model's trained context (the GGUF's context_length), capped like num_ctx
    with thread_server(create_app(StaticRegistry(models)), free_port()) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["quack"]  # the export's name (ollama run knows it by it), not its folder's
        messages = [{"role": "user", "content": PROMPTS[1]}]
        reply = client.chat.completions.create(model="quack", messages=messages, max_tokens=MAX_NEW)
        assert reply.choices[0].message.content == hf[1].text
        assert reply.choices[0].finish_reason == hf[1].finish_reason
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (hf[1].prompt_tokens, hf[1].completion_tokens)
        stream = client.chat.completions.create(model="quack", messages=messages, max_tokens=MAX_NEW, stream=True,
                                                stream_options={"include_usage": True})
        pieces, usage, finish = [], None, None
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        assert "".join(pieces) == hf[1].text and finish == hf[1].finish_reason
        assert usage.completion_tokens == hf[1].completion_tokens and usage.prompt_tokens == hf[1].prompt_tokens
        with pytest.raises(openai.BadRequestError, match=f"maximum context length is {limit}"):
            client.chat.completions.create(model="quack", messages=messages, max_tokens=limit)
    models[0].engine.close()


def test_missing_llama_cpp_is_one_line(monkeypatch, export_dir, capsys, tmp_path):
    import ducktune.export.quantize as quantize

    monkeypatch.setattr(quantize, "llama_cpp_available", lambda: False)  # our own probe, not the library
    from web_helpers import free_port

    port = str(free_port())
    for argv in (["serve", "--gguf", str(export_dir / "quack-f16.gguf"), "--port", port],
                 ["chat", "--gguf", str(tmp_path / "x.gguf")],
                 ["serve", str(export_dir), "--engine", "llama.cpp", "--port", port]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "llama-cpp-python is not installed" in err and "make verify-extra" in err
    # auto: the export's merged model with transformers, saying why
    from ducktune.serve.registry import load_path

    said = []
    models = load_path(export_dir, log=said.append)
    assert type(models[0].engine).__name__ == "ChatEngine" and "make verify-extra" in said[0]


def test_hf_server_batches_concurrent_requests_with_the_same_answers(export_dir, hf_answers):
    """8 clients at once (streaming and not): fewer batches than requests, every answer as when asked alone."""
    from web_helpers import free_port, thread_server

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry, load_path

    _, hf = hf_answers
    models = load_path(export_dir, engine="transformers")
    worker = models[0].worker
    results: dict[int, tuple] = {}
    with thread_server(create_app(StaticRegistry(models)), free_port()) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
        start = threading.Barrier(8)

        def ask(i: int) -> None:
            messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
            start.wait()
            if i % 2:
                stream = client.chat.completions.create(model="quack", messages=messages, max_tokens=MAX_NEW,
                                                        stream=True, stream_options={"include_usage": True})
                chunks = list(stream)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                results[i] = (text, chunks[-1].usage.completion_tokens)
            else:
                reply = client.chat.completions.create(model="quack", messages=messages, max_tokens=MAX_NEW)
                results[i] = (reply.choices[0].message.content, reply.usage.completion_tokens)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    stats = worker.stats()
    assert stats["completed"] == 8 and stats["batched"] == 8
    assert stats["batches"] <= 4, stats  # requests shared batches
    for i in range(8):
        expected = hf[i % len(PROMPTS)]
        assert results[i] == (expected.text, expected.completion_tokens), i


@pytest.mark.requires_llama_cpp
def test_chat_on_an_export_dir_answers_through_llama_cpp(export_dir, hf_answers):
    import os
    import subprocess
    import sys

    _, hf = hf_answers
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for args in ([str(export_dir)], ["--gguf", str(export_dir / "quack-f16.gguf")]):
        proc = subprocess.run([sys.executable, "-m", "ducktune", "chat", *args, "--max-new-tokens", str(MAX_NEW)],
                              input=PROMPTS[2] + "\n", capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout == hf[2].text + "\n"
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
        # The file answering is named (an export's quants answer differently), on stderr.
        assert re.search(r"Chatting with llama\.cpp: quack-[a-z0-9_]+\.gguf", proc.stderr), proc.stderr


@pytest.mark.requires_llama_cpp
def test_a_seed_samples_the_same_answer_whatever_came_before(gguf_engine):
    """llama.cpp's prompt cache re-evaluated only the last token of a prompt it had seen (logits differing
    in the last bits from a whole-prompt pass), so a seeded answer depended on the request before it; and
    seeds = 2**32 - 1 (mod 2**32) were llama.cpp's 'random seed'. A seeded request answers alike every time."""
    asked = [{"role": "user", "content": PROMPTS[0]}]

    def sample(seed):
        return gguf_engine.generate(asked, max_new_tokens=MAX_NEW, temperature=1.5, seed=seed).text

    first = sample(1)
    assert sample(1) == first  # the same prompt again: cached by llama.cpp
    gguf_engine.generate([{"role": "user", "content": PROMPTS[1]}], max_new_tokens=4)
    assert sample(1) == first
    assert sample(2 ** 32 - 1) == sample(2 ** 32 - 1)
    assert sample(-1) == sample(-1)


@pytest.mark.requires_llama_cpp
def test_a_file_that_is_no_gguf_or_is_cut_short_is_one_line(export_dir, tmp_path, capsys):
    """A YAML given as --gguf, a GGUF cut short (a copy that stopped, `head -c`), and an export folder whose
    GGUF is cut short were tracebacks from the tokenizer loader, gguf's reader or llama.cpp (exit 1)."""
    import shutil

    from web_helpers import free_port

    yaml = tmp_path / "config.yaml"
    yaml.write_text("model:\n  name_or_path: x\n", encoding="utf-8")
    damaged = shutil.copytree(export_dir, tmp_path / "damaged-export")
    whole = (damaged / "quack-f16.gguf").read_bytes()
    (damaged / "quack-f16.gguf").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "cut.gguf").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "header-only.gguf").write_bytes(whole[:100])
    port = str(free_port())
    in_export = f"; `ducktune verify {damaged}` checks the export; export again to rewrite it"
    cases = [
        (["--gguf", str(yaml)], f"{yaml}: not a GGUF file"),
        (["--gguf", str(tmp_path / "cut.gguf")], "cut.gguf: damaged or truncated GGUF: tensor "),
        (["--gguf", str(tmp_path / "cut.gguf")], "; export or download it again"),
        (["--gguf", str(tmp_path / "header-only.gguf")], "header-only.gguf: damaged or truncated GGUF: "),
        ([str(damaged)], "quack-f16.gguf: damaged or truncated GGUF: tensor "),
        ([str(damaged)], in_export),
        (["--gguf", str(damaged / "quack-f16.gguf")], in_export),
    ]
    for args, message in cases:
        for command in (["serve", *args, "--port", port], ["chat", *args]):
            assert main(command) == 2, command
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, (command, err)


@pytest.mark.requires_llama_cpp
def test_the_startup_line_names_the_gguf_that_answers(export_dir, tmp_path, monkeypatch, capsys):
    """An export folder is served from its Modelfile's GGUF (often q4_k_m), whose answers differ a little
    from the run's; the startup line only said 'llama.cpp', so users could not tell which file answered."""
    import json
    import shutil

    import ducktune.serve.server as server
    from web_helpers import free_port

    monkeypatch.setattr(server, "run_uvicorn", lambda *a: None)  # loaded and announced; not listening
    export = shutil.copytree(export_dir, tmp_path / "two-quants")
    shutil.copy(export / "quack-f16.gguf", export / "quack-q8_0.gguf")  # the name is what is shown
    manifest = json.loads((export / "export.json").read_text(encoding="utf-8"))
    manifest["files"]["gguf"]["q8_0"] = "quack-q8_0.gguf"
    (export / "export.json").write_text(json.dumps(manifest), encoding="utf-8")
    (export / "Modelfile").write_text("FROM ./quack-q8_0.gguf\n", encoding="utf-8")
    port = str(free_port())
    assert main(["serve", str(export), "--port", port]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Serving quack (llama.cpp: quack-q8_0.gguf, the q8_0 quant; OpenAI-compatible)")
    assert lines[1] == (f"This export also has f16; to serve f16 instead: ducktune serve --gguf "
                        f"{export / 'quack-f16.gguf'} --name quack")
    assert main(["serve", "--gguf", str(export / "quack-f16.gguf"), "--port", port]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Serving quack-f16 (llama.cpp: quack-f16.gguf, the f16 quant; OpenAI-compatible) at http://localhost:{port}/v1"]
