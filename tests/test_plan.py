"""Memory plan: shapes counted right, choices within a budget, and the prediction vs a measured peak."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ducktune.errors import ConfigError
from ducktune.train import plan
from ducktune.train.plan import GiB, MiB, ModelShape, Setup


def test_parse_memory():
    assert plan.parse_memory("11GB") == 11 * GiB
    assert plan.parse_memory("11 GiB") == 11 * GiB
    assert plan.parse_memory("800MB") == 800 * MiB
    assert plan.parse_memory("1.5g") == int(1.5 * GiB)
    with pytest.raises(ValueError, match="not a memory size"):
        plan.parse_memory("lots")
    assert plan.parse_memory(8 * GiB) == 8 * GiB  # a number is bytes
    for forgotten_unit in ("16", "1.5", "0", "1KB"):
        with pytest.raises(ValueError, match="less than any model needs: give a unit"):
            plan.parse_memory(forgotten_unit)
    # The config refuses it by the option's name before anything loads (CLI --set, YAML, the UI form).
    from ducktune.config import load_config
    from ducktune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.memory_budget: .*'lots' is not a memory size"):
        load_config(None, ["train.memory_budget=lots"])
    assert load_config(None, ["train.memory_budget=11GB"]).train.memory_budget == "11GB"


def _hf_model(**overrides):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    kwargs = dict(vocab_size=500, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(Qwen2Config(**kwargs), dtype=torch.float32)


@pytest.mark.parametrize("tied", [True, False])
def test_shape_counts_parameters_and_adapters_exactly(tied):
    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora

    model = _hf_model(tie_word_embeddings=tied)
    shape = ModelShape.from_config(model.config.to_dict())
    assert shape.params == sum(p.numel() for p in model.parameters())
    peft_model, _ = attach_lora(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_params(8, ["q_proj", "v_proj", "down_proj"]) == trainable


def _saved_bytes(layers: int, dropout: float, tokens: int = 96, dtype: str = "float32") -> int:
    """Bytes autograd keeps for one training forward (tensors deduplicated by storage). In half
    precision as training runs it: fp32 adapters (PEFT's default), the forward under autocast, and
    adapter input casts off (train/lora.adapter_input_casting, as recipe._run_training does)."""
    import contextlib

    import torch

    from ducktune.config import LoraConfig
    from ducktune.train import packing
    from ducktune.train.loss import forward_hidden
    from ducktune.train.lora import adapter_input_casting, attach_lora

    model, _ = attach_lora(_hf_model(num_hidden_layers=layers).to(getattr(torch, dtype)), LoraConfig(r=8, dropout=dropout))
    model.train()
    mixed = contextlib.ExitStack()
    if dtype != "float32":
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        mixed.enter_context(torch.autocast("cpu", dtype=getattr(torch, dtype)))
        mixed.enter_context(adapter_input_casting(model, enabled=False))
    packing.use_varlen_attention(model, "cpu")
    ids = torch.randint(0, 500, (tokens,)).tolist()
    batch = packing.VarlenCollator()([{"input_ids": ids[:40], "labels": ids[:40]}, {"input_ids": ids[40:], "labels": ids[40:]}])
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with mixed, torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        forward_hidden(model, batch)
    return sum(seen.values())


@pytest.mark.parametrize("dropout,dtype", [(0.0, "float32"), (0.1, "float32"), (0.0, "bfloat16"), (0.1, "bfloat16")])
def test_activation_count_matches_what_autograd_keeps(dropout, dtype):
    """One more decoder layer adds exactly the bytes the plan counts per layer. In bf16 this fails
    when adapters copy their input to fp32 (a forward without autocast, or with PEFT's input casts on:
    +60 % here) or when the plan counts the norms' fp32 inputs at 2 bytes."""
    tokens = 96
    per_layer = (_saved_bytes(3, dropout, tokens, dtype) - _saved_bytes(2, dropout, tokens, dtype)) / tokens
    shape = ModelShape.from_config(_hf_model().config.to_dict())
    predicted = plan.estimate(shape, Setup(dtype=dtype, batch_size=1, row_tokens=tokens, lora_r=8, lora_dropout=dropout))
    # 'activations' covers every layer; per layer and token, in bytes:
    assert per_layer == pytest.approx(predicted["activations"] / shape.layers / tokens, rel=0.02)


SMOLLM_LIKE = ModelShape(vocab=49152, hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, intermediate=1536,
                         tied=True, max_positions=8192)


def test_choose_keeps_the_global_batch_and_prefers_cheap_changes():
    wanted = Setup(batch_size=8, grad_accum=2, row_tokens=1024)
    roomy = plan.choose(SMOLLM_LIKE, wanted, "cpu", 64 * GiB)
    assert (roomy.setup.batch_size, roomy.setup.checkpointing) == (8, False)
    assert "checkpointing off" in roomy.notes[0]

    full = plan.estimate(SMOLLM_LIKE, wanted)
    tight = plan.choose(SMOLLM_LIKE, wanted, "cpu", int(sum(full.values()) * 0.6))
    assert tight.fits and tight.peak <= tight.budget
    assert tight.setup.batch_size * tight.setup.grad_accum == 16
    assert tight.setup.batch_size < 8 and not tight.setup.checkpointing

    tighter = plan.choose(SMOLLM_LIKE, wanted, "cpu", 1800 * MiB)
    assert tighter.fits and tighter.setup.checkpointing
    assert any("checkpointing on" in n for n in tighter.notes)


def test_checkpointing_off_is_respected_and_refusal_says_what_to_change():
    wanted = Setup(batch_size=4, row_tokens=4096)
    refused = plan.choose(SMOLLM_LIKE, wanted, "cpu", 1300 * MiB, checkpointing="off")
    assert not refused.fits
    assert "train.gradient_checkpointing=auto" in refused.problem
    assert "lower data.cutoff_len to" in refused.problem
    small = Setup(batch_size=1, row_tokens=256, dtype="bfloat16", checkpointing=True, loss_chunk_size=128)
    lora_peak = sum(plan.estimate(SMOLLM_LIKE, small, "cuda").values())
    qlora_peak = sum(plan.estimate(SMOLLM_LIKE, Setup(**{**small.__dict__, "method": "qlora"}), "cuda").values())
    assert qlora_peak < lora_peak - 100 * MiB  # 4-bit decoder weights
    between = (lora_peak + qlora_peak) // 2
    qlora = plan.choose(SMOLLM_LIKE, Setup(batch_size=1, row_tokens=256, dtype="bfloat16"), "cuda", between,
                        qlora_available=True)
    assert not qlora.fits and "set train.method=qlora" in qlora.problem


def test_rows_longer_than_the_model_are_flagged():
    assert any("exceed the model's 8192 positions" in n
               for n in plan.choose(SMOLLM_LIKE, Setup(row_tokens=10000), "cpu", None).notes)
    # Packed rows restart their positions with each sample: a long packed row is no problem.
    assert not plan.choose(SMOLLM_LIKE, Setup(row_tokens=10000), "cpu", None, packed=True).notes


@pytest.mark.parametrize("mode", ["packed", "padding-free", "padded"])
def test_heaviest_row_tokens_bound_what_the_collators_build(mode):
    """The planned micro-batch holds at least as many tokens as the heaviest one the real
    datasets and collators produce for that batching mode, and not a row more."""
    import random

    from ducktune.train.packing import Batching

    rng = random.Random(1)
    lengths = [rng.randint(5, 60) for _ in range(40)] + [300]  # one long sample among short ones
    rows = [{"input_ids": [1] * n, "labels": [1] * n} for n in lengths]
    batch_size, cutoff = 4, 512
    batching = Batching(mode, "test", "sdpa")
    dataset, collate = batching.dataset(rows, cutoff), batching.collator(pad_token_id=0)
    # The heaviest micro-batch any sampler can form: the batch_size largest rows together
    # (largest by the tokens a collated batch of them would hold).
    items = sorted((dataset[i] for i in range(len(dataset))), key=lambda r: -collate([r])["input_ids"].numel())
    heaviest = collate(items[:batch_size])["input_ids"].numel()
    planned = batch_size * plan.heaviest_row_tokens(lengths, batch_size, cutoff, mode)
    assert heaviest <= planned < heaviest + batch_size * (8 if mode == "padded" else 1)
    if mode == "padded":  # every row padded to the long sample, not the mean of the top rows
        assert planned >= batch_size * 300


# ----------------------------------------------------------------------------- against a measured run

def _chat_file(path, n=120, words=160):
    import random

    rng = random.Random(0)
    vocab = "the duck swims in a pond and eats bread while the sun shines over green hills far away".split()
    records = [{"instruction": " ".join(rng.choice(vocab) for _ in range(rng.randint(20, words))),
                "output": " ".join(rng.choice(vocab) for _ in range(rng.randint(20, words)))} for _ in range(n)]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def planning_model(tmp_path_factory):
    """Small, but with a 32k vocabulary and wide enough that the model, not the framework, decides the peak."""
    from ducktune.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("plan") / "model", arch="qwen2", hidden_size=256, num_layers=4,
                            num_heads=4, num_kv_heads=2, intermediate_size=768, vocab_size=32000)


def test_plan_is_within_15_percent_of_the_measured_peak_rss(planning_model, tmp_path):
    data = _chat_file(tmp_path / "chat.json")
    # A fresh process: its own VmHWM is the peak of exactly one training run.
    script = textwrap.dedent(f"""
        import json, torch
        from ducktune.config import DatasetSpec, load_config
        from ducktune.train.recipe import train
        torch.set_num_threads(1)
        config = load_config(None, ["model.name_or_path={planning_model}", "data.cutoff_len=512", "train.batch_size=4",
                                    "train.max_steps=2", "train.save_steps=1000", "output.dir={tmp_path / 'run'}"])
        config.data.datasets = [DatasetSpec(path="{data}")]
        info = train(config, log=lambda *_: None, progress=False, compare=False).info
        print(json.dumps({{"planned": info["memory_plan"]["peak_bytes"], "measured": info["result"]["peak_rss_bytes"],
                          "parts": info["memory_plan"]["parts"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    model_part = sum(v for k, v in result["parts"].items() if k != "framework")
    assert model_part > 0.4 * result["planned"]  # the test measures the model's share, not just Python
    assert result["planned"] == pytest.approx(result["measured"], rel=0.15)


def test_plan_for_padded_batches_is_within_15_percent_of_the_measured_peak_rss(planning_model, tmp_path):
    """Padded batches (what models packing cannot serve get: remote code, Gemma 2's soft-capping, short
    convolutions) pad every row to the longest: one 500-token sample among short ones makes the heaviest
    micro-batch 4 x 504 tokens, not 4 x their mean. The recipe's batching parameter gives padded batches here;
    the plan made for padding-free rows from config.json is then made again for them, as for such a model."""
    # Under an explicit budget (freed buffers go back to the OS): with glibc's default heap this run's
    # peak was seen anywhere from 860 MB to the plan's ~1040 MB, one run in four past 15 %. The packed
    # test above checks the plan for the default heap.
    import random

    rng = random.Random(0)
    words = "the duck swims in a pond and eats bread".split()
    # 7 short samples and the long one: the 2 steps are one whole epoch, so the heaviest micro-batch is
    # surely drawn (with 40 short ones, 2 random steps could miss it and measure less than planned).
    records = [{"instruction": " ".join(rng.choice(words) for _ in range(8)), "output": "yes"} for _ in range(7)]
    records.append({"instruction": "tell me", "output": " ".join(rng.choice(words) for _ in range(480))})
    data = tmp_path / "chat.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    script = textwrap.dedent(f"""
        import json, torch
        from ducktune.config import DatasetSpec, load_config
        from ducktune.train.packing import Batching
        from ducktune.train.recipe import train
        torch.set_num_threads(1)

        def padded(model, packing, device, log=print):
            return Batching("padded", "padded batches (the test's choice)", model.config._attn_implementation)

        config = load_config(None, ["model.name_or_path={planning_model}", "data.cutoff_len=512", "train.batch_size=4",
                                    "train.packing=off", "train.max_steps=2", "train.save_steps=1000",
                                    "train.memory_budget=16GB", "output.dir={tmp_path / 'run'}"])
        config.data.datasets = [DatasetSpec(path="{data}")]
        info = train(config, log=lambda *_: None, progress=False, compare=False, choose_batching=padded).info
        print(json.dumps({{"planned": info["memory_plan"]["peak_bytes"], "measured": info["result"]["peak_rss_bytes"],
                          "plan": info["memory_plan"], "batching": info["batching"]["mode"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["batching"] == result["plan"]["batching"] == "padded"
    assert result["plan"]["row_tokens"] >= 480
    assert result["planned"] == pytest.approx(result["measured"], rel=0.15)


def test_train_refuses_a_run_that_cannot_fit_and_writes_nothing(planning_model, tmp_path):
    from ducktune.config import DatasetSpec, load_config
    from ducktune.train.recipe import train

    config = load_config(None, [f"model.name_or_path={planning_model}", "data.cutoff_len=512",
                                "train.memory_budget=300MB", f"output.dir={tmp_path / 'run'}"])
    config.data.datasets = [DatasetSpec(path=str(_chat_file(tmp_path / "chat.json")))]
    with pytest.raises(ConfigError) as err:
        train(config, log=lambda *_: None, progress=False, compare=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("memory plan: needs ~") and "0.29 GiB is available" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("packing", ["on", "off"])
def test_train_refuses_samples_longer_than_the_models_positions(planning_model, tmp_path, packing):
    """data.cutoff_len past max_position_embeddings trained samples of ~500 tokens on a 64-position model
    (the plan only noted it). Refused in one line before anything is written. Packed rows longer than
    the positions are fine (positions restart with each sample): short samples train, packed or not."""
    import json as json_module
    import shutil

    from ducktune.config import DatasetSpec, load_config
    from ducktune.train.recipe import train

    model = tmp_path / "short-context"
    shutil.copytree(planning_model, model)
    config_json = json_module.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json_module.dumps({**config_json, "max_position_embeddings": 64}))
    config = load_config(None, [f"model.name_or_path={model}", "data.cutoff_len=512", f"train.packing={packing}",
                                f"output.dir={tmp_path / 'run'}", "train.max_steps=1"])
    config.data.datasets = [DatasetSpec(path=str(_chat_file(tmp_path / "chat.json")))]
    with pytest.raises(ConfigError) as err:
        train(config, log=lambda *_: None, progress=False, compare=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.cutoff_len=512: samples of up to ")
    assert message.endswith("exceed the model's 64 positions (max_position_embeddings in its config.json); "
                            "set data.cutoff_len to 64 or less")
    assert not (tmp_path / "run").exists()
    short = tmp_path / "short.json"
    short.write_text(json_module.dumps([{"instruction": f"hi {i}", "output": "yes"} for i in range(24)]))
    config.data.datasets = [DatasetSpec(path=str(short))]
    result = train(config, log=lambda *_: None, progress=False, compare=False)
    assert result.info["status"] == "completed"
    if packing == "on":  # rows of many short samples, longer than the 64 positions
        assert result.info["batching"]["mode"] == "packed" and result.info["memory_plan"]["row_tokens"] > 64


def test_plan_command(planning_model, tmp_path):
    data = _chat_file(tmp_path / "chat.json")
    base = [sys.executable, "-m", "ducktune", "plan", "--set", f"model.name_or_path={planning_model}",
            "--set", f"data.datasets=[{data}]", "--set", "data.cutoff_len=512", "--set", "train.batch_size=8"]
    ok = subprocess.run(base + ["--memory", "900MB"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "micro-batch 8 does not fit" in ok.stdout and "global batch kept at 8" in ok.stdout
    assert "peak" in ok.stdout and "activations" in ok.stdout
    refused = subprocess.run(base + ["--memory", "300MB"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: memory plan: needs ~") and "Traceback" not in refused.stderr
    as_json = json.loads(subprocess.run(base + ["--memory", "900MB", "--json"], capture_output=True, text=True).stdout)
    assert as_json["fits"] and as_json["batch_size"] * as_json["grad_accum"] == 8
    # --memory plans what `ducktune train` with that train.memory_budget runs (the budget changes how the
    # heap returns memory, so the same number planned two ways chose different micro-batches).
    as_budget = json.loads(subprocess.run(base + ["--set", "train.memory_budget=900MB", "--json"],
                                          capture_output=True, text=True).stdout)
    assert as_budget == as_json


def test_plan_of_a_model_folder_without_tokenizer_files_assumes_full_rows(planning_model, tmp_path):
    """`plan --help` says rows are assumed full without a local tokenizer; a folder without tokenizer
    files ended the plan with transformers' five-line error instead."""
    import shutil

    bare = tmp_path / "config-and-weights"
    shutil.copytree(planning_model, bare, ignore=shutil.ignore_patterns("tokenizer*", "chat_template*"))
    data = _chat_file(tmp_path / "chat.json")
    out = subprocess.run([sys.executable, "-m", "ducktune", "plan", "--set", f"model.name_or_path={bare}",
                          "--set", f"data.datasets=[{data}]", "--set", "data.cutoff_len=512", "--memory", "8GB",
                          "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["rows"].startswith("assumed full rows of 512 tokens (") and "no tokenizer files" in plan["rows"]
    assert plan["row_tokens"] == 512


def test_default_loss_chunk_keeps_one_chunk_of_logits_within_256_mib():
    from ducktune.train.plan import LOSS_CHUNK_BYTES, auto_loss_chunk

    assert auto_loss_chunk(151_936) == 256  # Qwen2.5: a 1024-row chunk alone would be 594 MiB
    assert auto_loss_chunk(49_152) == 1024  # SmolLM2
    assert auto_loss_chunk(32_000) == 2048
    assert auto_loss_chunk(1_000) == 4096 and auto_loss_chunk(10_000_000) == 128
    for vocab in (1_000, 32_000, 49_152, 128_256, 151_936):
        chunk = auto_loss_chunk(vocab)
        assert chunk * vocab * 4 <= LOSS_CHUNK_BYTES and (chunk == 4096 or 2 * chunk * vocab * 4 > LOSS_CHUNK_BYTES)


def test_plan_for_absent_hardware_uses_the_training_placement_rules(tmp_path):
    """`ducktune plan --device mps` for a 1.5B model plans float16, as `ducktune train` would run
    it on a Mac (models/device.py), not a dtype table of its own."""
    folder = tmp_path / "qwen-1.5b-shape"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
        "max_position_embeddings": 32768, "tie_word_embeddings": True}))
    base = [sys.executable, "-m", "ducktune", "plan", "--set", f"model.name_or_path={folder}", "--json",
            "--memory", "64GB"]
    mps = subprocess.run(base + ["--device", "mps"], capture_output=True, text=True)
    assert mps.returncode == 0, mps.stderr
    assert json.loads(mps.stdout)["dtype"] == "float16"
    cuda = subprocess.run(base + ["--device", "cuda"], capture_output=True, text=True)
    assert json.loads(cuda.stdout)["dtype"] == "bfloat16"


@pytest.mark.parametrize("requested,device,expected", [
    ("auto", "cpu", "adamw_torch_fused"), ("auto", "cuda", "adamw_torch_fused"), ("auto", "mps", "adamw_torch_fused"),
    ("auto", "xla", "adamw_torch"), ("adamw_torch", "cpu", "adamw_torch"), ("sgd", "cuda", "sgd"),
])
def test_optimizer_auto_is_fused_adamw_where_torch_has_it(requested, device, expected):
    assert plan.optimizer_for(requested, device) == expected


@pytest.mark.parametrize("method, device, heap_returned, expected", [
    ("lora", "cpu", True, 1024), ("qlora", "cpu", True, 1024), ("lora", "cpu", False, 151936),
    ("full", "cpu", True, 151936), ("lora", "cuda", True, 151936)])
def test_estimate_counts_the_logits_block_the_loss_holds(method, device, heap_returned, expected):
    """A CPU run with the head frozen holds a [chunk x vocabulary block] tile (train/loss.py): the
    estimate counts it where freed memory goes back to the OS; a head that trains, a GPU, and a heap
    that keeps freed memory (calibrated on the one-block size) count the whole vocabulary."""
    from ducktune.train.plan import ModelShape, Setup, estimate, loss_logits_columns

    shape = ModelShape.from_config({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
                                    "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864,
                                    "vocab_size": 151936, "tie_word_embeddings": True})
    setup = Setup(method=method, heap_returned=heap_returned, batch_size=1, row_tokens=512, loss_chunk_size=256)
    assert loss_logits_columns(shape, setup, device, head_trains=method == "full") == expected  # 4 MiB of 896-wide rows
    if method != "full":
        head = estimate(shape, setup, device)["working set"]
        assert (head > 256 * 151936 * 4) == (expected == 151936)


@pytest.mark.parametrize("memory, why", [("10", "less than any model needs"), ("abc", "not a memory size"),
                                          ("0", "less than any model needs")])
def test_plan_memory_flag_refuses_a_bad_size_in_one_line(capsys, memory, why):
    """`--memory 10` ended in pydantic's ValidationError traceback (exit 1): the flag's value was
    assigned to train.memory_budget unchecked; the same value by --set was one line."""
    from ducktune.cli import main

    assert main(["plan", "--set", "model.name_or_path=unused", "--memory", memory]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --memory: '{memory}'") and why in err and err.count("\n") == 1
