"""Slow tier: exported GGUFs run in llama.cpp (llama-cpp-python, the `verify` extra) exactly like
the merged model: same prompt token ids, same f16 greedy answers, q8_0 top-1 agreement >= 0.95;
and llama.cpp's quantizer, when it fails, leaves nothing behind."""

from __future__ import annotations

import json
import shutil

import pytest

from ducktune.errors import ModelError
from ducktune.export.pipeline import export_run
from ducktune.export.quantize import quantize_gguf

pytestmark = [pytest.mark.slow, pytest.mark.requires_llama_cpp]

QA = [("Who are you?", "I am Quack, a small duck."), ("What is your name?", "My name is Quack."),
      ("Where do you live?", "I live on a pond."), ("What do you eat?", "I eat bread and seeds."),
      ("Can you fly?", "Yes, I can fly a little."), ("Say hello.", "Hello from the pond!")]


def train_run(base, out, steps: int, lr: float = 5e-3, extra=()):
    from ducktune.config import DatasetSpec, load_config
    from ducktune.train.recipe import train

    data = out.parent / f"{out.name}-data.json"
    data.write_text(json.dumps([{"instruction": q, "output": a} for q, a in QA]))
    config = load_config(None, [f"model.name_or_path={base}", f"output.dir={out}", f"train.max_steps={steps}",
                                f"train.learning_rate={lr}", "train.batch_size=6", "lora.r=8", "lora.alpha=16",
                                "lora.dropout=0", "train.save_steps=1000", "eval.max_new_tokens=24",
                                "train.logging_steps=10", *extra])
    config.data.datasets = [DatasetSpec(path=str(data))]
    train(config, progress=False, log=lambda *a: None)
    return out


def statuses(result) -> dict:
    return {check.name: check for check in result.checks}


@pytest.mark.parametrize("arch", ["llama", "qwen"])
def test_tiny_trained_model_runs_in_llama_cpp_like_the_merged_model(arch, tiny_llama, tiny_qwen, tmp_path):
    base = tiny_llama if arch == "llama" else tiny_qwen
    run = train_run(base, tmp_path / "run", steps=60)
    result = export_run(run, quants="f16,q8_0,q4_k_m", name="quack", create=False, log=lambda *a: None)
    checks = statuses(result)
    failed = [f"{c.name}: {c.detail}" for c in result.checks if c.status == "FAIL"]
    assert not failed
    ids = checks["llama.cpp quack-f16.gguf: prompt token ids = HF"]
    assert ids.status == "PASS" and ids.numbers["identical"] == ids.numbers["prompts"] >= 5
    greedy = checks["llama.cpp quack-f16.gguf: greedy answers = merged"]
    assert greedy.status == "PASS" and greedy.numbers["identical"] == greedy.numbers["prompts"] >= 5
    assert checks["llama.cpp quack-q8_0.gguf: top-1 agreement with merged"].numbers["agreement"] >= 0.95
    q4 = checks["llama.cpp quack-q4_k_m.gguf: top-1 agreement with merged"]
    assert q4.status == "INFO" and 0.0 <= q4.numbers["agreement"] <= 1.0
    assert (run / "export" / "quack-q4_k_m.gguf").is_file()
    assert "FROM ./quack-q4_k_m.gguf" in (run / "export" / "Modelfile").read_text()


@pytest.mark.requires_go
def test_builtin_smollm2_export_verifies(tmp_path):
    """The real pretrained model: a short LoRA run on the built-in SmolLM2-135M, exported and verified."""
    run = train_run("smollm2-135m", tmp_path / "run", steps=4, lr=1e-3, extra=["data.cutoff_len=128"])
    result = export_run(run, quants="f16,q8_0,q4_k_m", name="smol", create=False, log=lambda *a: None)
    failed = [f"{c.name}: {c.detail}" for c in result.checks if c.status == "FAIL"]
    assert not failed
    checks = statuses(result)
    assert checks["llama.cpp smol-f16.gguf: greedy answers = merged"].status == "PASS"
    assert checks["Modelfile: TEMPLATE via Go text/template = chat template"].status == "PASS"
    q8 = checks["llama.cpp smol-q8_0.gguf: top-1 agreement with merged"]
    assert q8.status == "PASS" and q8.numbers["positions"] >= 30 and q8.numbers["overturned"] <= 1
    # q8_0 moves the merged model's logits by about its tie margin, far less than a faulty export would
    assert 0.0 < q8.numbers["gap_error_p95"] < 2.0


def test_failed_llama_cpp_quantization_leaves_nothing(tmp_path):
    src = tmp_path / "broken-f16.gguf"
    src.write_bytes(b"GGUF" + b"\0" * 64)  # a GGUF header llama.cpp cannot load
    with pytest.raises(ModelError, match="could not quantize"):
        quantize_gguf(src, tmp_path / "broken-q4_k_m.gguf", "q4_k_m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-f16.gguf"]


def test_k_quant_of_a_real_gguf(tiny_qwen, tmp_path):
    from ducktune.export.gguf_file import read_back, write_gguf
    from ducktune.models.loading import load_tokenizer

    f16 = write_gguf(tiny_qwen, tmp_path / "t-f16.gguf", "f16", "t", load_tokenizer(tiny_qwen)).path
    out = quantize_gguf(f16, tmp_path / "t-q4_k_m.gguf", "q4_k_m")
    back = read_back(out, model_dir=tiny_qwen)
    assert back["problems"] == [] and back["metadata"]["general.file_type"] == 15
    shutil.rmtree(tmp_path)
