"""Checkpoints published already quantized (config.json's quantization_config): bitsandbytes 4/8-bit
trains as QLoRA and exports merged onto the dequantized weights; FP8, GPTQ, AWQ, MXFP4 and
compressed-tensors are refused in one line before anything is written."""

from __future__ import annotations

import json
import shutil

import pytest

from ducktune.cli import main
from ducktune.models.prequant import full_precision_name

# quantization_config blocks as the hub's uploads publish them (Qwen3-*-FP8, Llama fbgemm FP8, *-GPTQ-Int4, *-AWQ,
# gpt-oss, neuralmagic's compressed-tensors)
PUBLISHED = {
    "fp8": ("Qwen3-8B-FP8", {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                             "weight_block_size": [128, 128]}),
    "fbgemm_fp8": ("Llama-3.1-8B-Instruct-FP8", {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0}),
    "gptq": ("Qwen2.5-7B-Instruct-GPTQ-Int4", {"bits": 4, "group_size": 128, "desc_act": False, "sym": True,
                                               "quant_method": "gptq", "checkpoint_format": "gptq"}),
    "awq": ("Qwen2.5-7B-Instruct-AWQ", {"bits": 4, "group_size": 128, "quant_method": "awq", "version": "gemm",
                                        "zero_point": True}),
    "mxfp4": ("gpt-oss-20b", {"quant_method": "mxfp4", "modules_to_not_convert": ["lm_head"]}),
    "compressed-tensors": ("Llama-3.2-1B-Instruct-W4A16", {"quant_method": "compressed-tensors",
                                                           "format": "pack-quantized", "ignore": ["lm_head"]}),
}


def _quantized_copy(base, folder, block):
    shutil.copytree(base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = block
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_unsupported_quantization_is_one_line_before_anything_is_written(method, tiny_llama, tmp_path, capsys):
    name, block = PUBLISHED[method]
    model = _quantized_copy(tiny_llama, tmp_path / name, block)
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Who are you?", "output": "A duck."}] * 4))
    run = tmp_path / "run"
    code = main(["train", "--no-progress", "--set", f"model.name_or_path={model}", "--set",
                 f"data.datasets=[{data}]", "-o", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not run.exists()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"config.json: quantization_config.quant_method is '{method}'" in err
    assert "full-precision (BF16) repository" in err
    if full := full_precision_name(name):
        assert f"e.g. {full}" in err

    assert main(["models", "--check", str(model), "--json"]) == 0
    support = json.loads(capsys.readouterr().out)
    assert method in support["train"] and method in support["gguf"]


def test_the_full_precision_repository_is_the_name_without_its_quantization_suffix():
    assert full_precision_name("Qwen/Qwen3-8B-FP8") == "Qwen/Qwen3-8B"
    assert full_precision_name("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4") == "Qwen/Qwen2.5-7B-Instruct"
    assert full_precision_name("unsloth/Llama-3.2-1B-Instruct-unsloth-bnb-4bit") == "unsloth/Llama-3.2-1B-Instruct"
    assert full_precision_name("unsloth/Qwen3-4B-bnb-4bit") == "unsloth/Qwen3-4B"
    assert full_precision_name("RedHatAI/Qwen3-8B-FP8-dynamic") == "RedHatAI/Qwen3-8B"
    assert full_precision_name("mistralai/Ministral-3-8B-Instruct-2512") is None


@pytest.fixture(scope="module")
def bnb_model(tiny_llama, tmp_path_factory):
    """The tiny Llama saved 4-bit by bitsandbytes (as unsloth's *-bnb-4bit uploads are), on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    folder = tmp_path_factory.mktemp("bnb") / "tiny-llama-bnb-4bit"
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), quantization_config=quantization,
                                                 device_map={"": "cpu"})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(tiny_llama)).save_pretrained(folder)
    return folder


def test_bitsandbytes_4bit_trains_as_qlora_and_exports_merged_on_dequantized_weights(bnb_model, tmp_path, capsys):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Who are you?", "output": "A duck."}] * 4))
    run = tmp_path / "run"
    assert main(["train", "--no-progress", "--set", f"model.name_or_path={bnb_model}", "--set",
                 f"data.datasets=[{data}]", "--set", "train.max_steps=2", "--set",
                 "eval.probe_during_training=false", "-o", str(run)]) == 0
    assert "trains on it as QLoRA" in capsys.readouterr().out
    assert main(["export", str(run), "--to", "merged"]) == 0
    merged = run / "export" / "merged"
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config  # plain weights: GGUF and any runner read them

    run_full = tmp_path / "full"
    assert main(["train", "--no-progress", "--set", f"model.name_or_path={bnb_model}", "--set",
                 f"data.datasets=[{data}]", "--set", "train.method=full", "-o", str(run_full)]) == 2
    assert "bitsandbytes 4-bit" in capsys.readouterr().err and not run_full.exists()
