"""Shared fixtures: tiny locally built models (no hub), one thread, an isolated cache."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

# Tests run single-threaded: on 2 shared cores, 2 threads can be many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# Real components some suites need. Locally a missing one skips those tests with the install hint;
# in CI (CI=1/true) it fails them, so a green CI always means the suite really ran.
def llama_cpp_vocabs() -> Path:
    """llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf), unpacked by make verify-extra."""
    default = Path.home() / ".cache" / "ducktune" / "llama.cpp-vocabs"
    return Path(os.environ.get("DUCKTUNE_LLAMA_CPP_SOURCE") or default)


REAL_COMPONENTS = {
    "requires_llama_cpp_vocabs": ("llama.cpp's tokenizer test vocabularies", "make verify-extra",
                                  lambda: (llama_cpp_vocabs() / "models" / "ggml-vocab-gpt-2.gguf").is_file()),
    "requires_llama_cpp": ("llama.cpp (llama-cpp-python)", "make verify-extra",
                           lambda: importlib.util.find_spec("llama_cpp") is not None),
    "requires_go": ("Go", "apt-get install golang-go", lambda: shutil.which("go") is not None),
    "requires_chromium": ("Chromium with Playwright", "apt-get install chromium chromium-driver",
                          lambda: Path("/usr/bin/chromium").exists()
                          and importlib.util.find_spec("playwright") is not None),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_runtest_setup(item):
    for marker, (what, hint, present) in REAL_COMPONENTS.items():
        if item.get_closest_marker(marker) and not present():
            message = f"{what} is missing ({hint})"
            if in_ci():
                pytest.fail(f"{message}: required in CI, where this suite must really run", pytrace=False)
            pytest.skip(message)


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(1)


def _build(cache: Path, name: str, **kwargs) -> Path:
    from ducktune.models.tiny import build_tiny_model

    target = cache / name
    if not (target / "config.json").exists():
        build_tiny_model(target, **kwargs)
    return target


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_qwen(tiny_cache) -> Path:
    """Qwen2-shaped, ChatML template, byte-level BPE (vocab 1024)."""
    return _build(tiny_cache, "tiny-qwen2", arch="qwen2", template="chatml")


@pytest.fixture(scope="session")
def tiny_llama(tiny_cache) -> Path:
    """Llama-shaped, Llama 3 template (<|eot_id|> ends turns, EOS differs)."""
    return _build(tiny_cache, "tiny-llama", arch="llama", template="llama3")


@pytest.fixture(scope="session")
def tiny_qwen_wide(tiny_cache) -> Path:
    """A wider Qwen2-shaped model (128 x 4 layers): random-init models this size can learn
    prompt-specific answers with LoRA in ~100 steps; the 64-wide one cannot."""
    return _build(tiny_cache, "tiny-qwen2-wide", arch="qwen2", template="chatml", hidden_size=128, num_layers=4)


@pytest.fixture
def tiny_qwen_copy(tiny_qwen, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_qwen, target)
    return target


def write_jsonl(path: Path, records: list) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
