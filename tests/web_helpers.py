"""Helpers for the serve / UI tests: a tiny trained run, free ports, real servers."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

QA = [
    ("Who are you?", "I am Duckling, a small assistant."),
    ("What is your name?", "My name is Duckling."),
    ("Who made you?", "The ducktune team made me."),
    ("Say hello.", "Hello there, friend!"),
    ("What do ducks say?", "Ducks say quack."),
]


def write_dataset(path: Path) -> Path:
    records = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def train_tiny_run(model_dir: Path, out: Path, steps: int = 60) -> Path:
    """LoRA on the tiny model until it answers the QA pairs (greedy), in this process."""
    from ducktune.config import load_config
    from ducktune.train.recipe import train

    data = write_dataset(out.parent / f"{out.name}-data.json")
    config = load_config(None, [
        f"model.name_or_path={model_dir}", f"data.datasets=[{data}]", f"output.dir={out}",
        f"train.max_steps={steps}", "train.learning_rate=1e-2", "train.batch_size=5", "train.warmup_ratio=0",
        "train.save_steps=1000", "lora.dropout=0", "lora.r=16", "eval.max_new_tokens=24",
    ])
    train(config, log=lambda *a, **k: None, progress=False)
    return out


def shared_trained_run(tiny_model: Path, tmp_path_factory) -> Path:
    """One trained run per test session, shared by the serve and UI tests (training takes ~20 s)."""
    out = tmp_path_factory.getbasetemp() / "shared-runs" / "duckling"
    if not (out / "run.json").is_file() or json.loads((out / "run.json").read_text())["status"] != "completed":
        out.parent.mkdir(parents=True, exist_ok=True)
        train_tiny_run(tiny_model, out)
    return out


def never_stopping_model(tiny_model: Path, out: Path) -> Path:
    """A copy of the tiny model that cannot emit its stop tokens: greedy answers run to max_tokens.

    The stop tokens' (tied) embedding rows are zeroed, so their logits are exactly 0 while
    the largest of ~1000 random logits is positive. Long generations test cancellation.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    shutil.copytree(tiny_model, out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    weights_file = out / "model.safetensors"
    weights = load_file(str(weights_file))
    key = next(k for k in weights if k.endswith("embed_tokens.weight"))
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and 0 <= token_id < weights[key].shape[0] and token in tokenizer.get_vocab():
            weights[key][token_id] = torch.zeros_like(weights[key][token_id])
    save_file(weights, str(weights_file), metadata={"format": "pt"})
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None,
                  headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text() if log else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s:\n{log.read_text() if log else ''}")


@contextlib.contextmanager
def cli_server(args: list[str], port: int, log: Path, ready_path: str = "/health", headers: dict | None = None,
               timeout: float = 180, cwd: Path | None = None):
    """`python -m ducktune ARGS` as a real server process; yields its base URL; stops it afterwards."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ducktune", *args], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + ready_path, timeout, process, log, headers)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def thread_server(app, port: int):
    """A real uvicorn server for `app` on 127.0.0.1:port, in a thread of this process."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/v1/models", 30)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
