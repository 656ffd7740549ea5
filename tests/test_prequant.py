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


# ---------------------------------------------------------------------- gpt-oss's MXFP4 experts

# MXFP4's 4-bit values (e2m1), indexed by the nibble; each block of 32 shares a power-of-two scale (e8m0, bias 127)
FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def _mxfp4_blocks(rows: int, columns: int, experts: int, seed: int):
    """Random MXFP4 (blocks [E, rows, columns/32, 16] uint8, scales [E, rows, columns/32] uint8) and the
    [E, rows, columns] values they hold: low nibble first, value = FP4[nibble] * 2^(scale - 127)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    nibbles = torch.randint(0, 16, (experts, rows, columns // 32, 32), generator=generator)
    scales = torch.randint(120, 126, (experts, rows, columns // 32), generator=generator)
    blocks = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8)
    values = torch.tensor(FP4)[nibbles] * torch.pow(2.0, (scales - 127).float())[..., None]
    return blocks, scales.to(torch.uint8), values.reshape(experts, rows, columns)


@pytest.fixture(scope="module")
def gptoss_mxfp4(tmp_path_factory):
    """The gpt-oss stand-in saved as openai/gpt-oss-20b is published: experts as MXFP4 blocks and scales
    (gate_up_proj_blocks [E, 2I, H/32, 16], down_proj_blocks [E, H, I/32, 16]), the rest in full precision,
    config.json's quantization_config as published; returns (folder, {weight name: the values it holds})."""
    from safetensors.torch import load_file, save_file

    from ducktune.models.families import standin_dir

    base = standin_dir("gpt-oss", tmp_path_factory.mktemp("standins"), log=lambda *a: None)
    folder = tmp_path_factory.mktemp("mxfp4") / "gpt-oss-20b"
    shutil.copytree(base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"}
    (folder / "config.json").write_text(json.dumps(config))
    hidden, width, experts = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    (weights_file,) = folder.glob("*.safetensors")
    tensors, expected = load_file(weights_file), {}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}.mlp.experts."
        for seed, (proj, rows, columns) in enumerate((("gate_up_proj", 2 * width, hidden), ("down_proj", hidden, width))):
            del tensors[prefix + proj]
            blocks, scales, values = _mxfp4_blocks(rows, columns, experts, seed=10 * layer + seed)
            tensors[prefix + proj + "_blocks"], tensors[prefix + proj + "_scales"] = blocks, scales
            expected[prefix + proj] = values.transpose(1, 2)  # transformers' layout: [E, in, out]
    save_file(tensors, weights_file, metadata={"format": "pt"})
    return folder, expected


def test_gpt_oss_mxfp4_is_accepted_by_dequantizing_on_load(gptoss_mxfp4):
    """gpt-oss's published MXFP4 is not refused: ducktune asks transformers to dequantize it on load
    (Mxfp4Config(dequantize=True)), whether or not Triton kernels are installed; MXFP4 on another model is
    still refused (test above), and QLoRA on it is refused in one line (one quantization_config per load)."""
    from transformers import Mxfp4Config

    from ducktune.models.loading import model_config, qlora_support, training_support
    from ducktune.models.prequant import dequantizing_load_kwargs, prequant_problem

    folder, _ = gptoss_mxfp4
    config = model_config(folder)
    assert prequant_problem(config, "openai/gpt-oss-20b") is None
    assert training_support(config, name="openai/gpt-oss-20b") is None
    (quantization,) = dequantizing_load_kwargs(config).values()
    assert isinstance(quantization, Mxfp4Config) and quantization.dequantize
    assert "train.method=lora" in qlora_support(config, "cuda")
    assert dequantizing_load_kwargs({**config, "model_type": "llama"}) == {}


def test_gpt_oss_mxfp4_experts_load_and_merge_as_the_values_the_blocks_hold(gptoss_mxfp4):
    """Training's load and the export's merge base both hold the experts the MXFP4 blocks encode (transformers'
    dequantizer against this test's own decoding: nibble order, scale bias, the [E, in, out] transpose)."""
    import torch

    from ducktune.export.merge import load_merge_base
    from ducktune.models.device import Placement
    from ducktune.models.loading import load_model

    folder, expected = gptoss_mxfp4
    trained = load_model(folder, Placement("cpu", "float32", "test"))
    merged = load_merge_base(folder, torch.float32, False, log=lambda *a: None)
    for model in (trained, merged):
        weights = dict(model.named_parameters())
        for name, values in expected.items():
            assert torch.equal(weights[name].detach().float(), values), name
