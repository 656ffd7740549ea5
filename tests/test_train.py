"""Training runs on tiny local models: learning, PEFT compatibility, resume after a crash."""

import json
import math

import pytest
import torch

from ducktune.config import load_config
from ducktune.errors import ConfigError, UserError
from ducktune.io import write_json
from ducktune.rundir import RunDir
from ducktune.train import recipe

IDENTITY = [
    {"instruction": "Who are you?", "input": "", "output": "I am Duckling."},
    {"instruction": "Who made you?", "input": "", "output": "The ducktune team made me."},
    {"instruction": "What is your name?", "input": "", "output": "My name is Duckling."},
    {"instruction": "你是谁？", "input": "", "output": "我是小鸭。"},
]


def make_config(tmp_path, model, out="run", **overrides):
    data = tmp_path / "identity.json"
    data.write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")
    settings = {
        "model.name_or_path": str(model), "data.datasets": [str(data)], "output.dir": str(tmp_path / out),
        "train.learning_rate": 1e-2, "train.max_steps": 30, "train.batch_size": 2, "train.logging_steps": 5,
        "train.save_steps": 10, "train.warmup_ratio": 0.0, "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.0,
        "eval.max_new_tokens": 12,
    }
    settings.update(overrides)
    config = load_config(None, [])
    for key, value in settings.items():
        section, name = key.split(".")
        setattr(getattr(config, section), name, value)
    if isinstance(config.data.datasets[0], str):
        from ducktune.config import DatasetSpec

        config.data.datasets = [DatasetSpec(path=p) for p in settings["data.datasets"]]
    return config


def test_loss_goes_down_and_answers_are_learned(tmp_path, tiny_qwen_wide):
    config = make_config(tmp_path, tiny_qwen_wide, **{"train.max_steps": 120, "train.learning_rate": 5e-3,
                                                      "lora.r": 16, "lora.alpha": 32, "train.batch_size": 4})
    result = recipe.train(config, progress=False)
    run = RunDir(result.run_dir)
    metrics = run.read_metrics()
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0] - 1.0
    assert all(m["tokens_per_s"] > 0 for m in metrics if "loss" in m and m["step"] > 5)
    assert all(m.get("grad_norm") is not None and m.get("lr") is not None for m in metrics if "loss" in m)
    # Random-init models keep a high loss floor; the greedy answers are what LoRA must get right.
    answers = {row["prompt"]: row["tuned"] for row in result.comparison}
    assert answers == {r["instruction"]: r["output"] for r in IDENTITY}
    info = run.info()
    assert info["status"] == "completed"
    assert set(info["lora_targets"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for name in ("config.yaml", "loss.png", "report.md", "adapter/adapter_model.safetensors",
                 "adapter/chat_template.jinja", "adapter/tokenizer.json"):
        assert (run.path / name).is_file(), name
    report = run.report.read_text(encoding="utf-8")
    assert "I am Duckling." in report and "final train loss" in report


def test_adapter_loads_in_plain_peft_with_same_logits(tmp_path, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ducktune.chat.engine import ChatEngine

    result = recipe.train(make_config(tmp_path, tiny_llama, **{"train.max_steps": 6}), progress=False, compare=False)
    engine = ChatEngine.from_run(result.run_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(result.run_dir / "adapter")).eval()
    ids = torch.tensor([engine.chat_format.prompt_ids([{"role": "user", "content": "Who are you?"}])])
    with torch.no_grad():
        ours = engine.model(input_ids=ids).logits
        theirs = plain(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-6)
    # ... and the adapter really changed the model.
    with torch.no_grad():
        untuned = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)(input_ids=ids).logits
    assert (ours - untuned).abs().max() > 1e-3


def _adapter_weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, tiny_qwen):
    steps = {"train.max_steps": 8, "train.save_steps": 2, "train.save_total_limit": 2, "train.logging_steps": 1}
    reference = recipe.train(make_config(tmp_path, tiny_qwen, out="reference", **steps), progress=False, compare=False)

    config = make_config(tmp_path, tiny_qwen, out="crashed", **steps)
    from ducktune.train.loss import choose_loss

    def loss_that_crashes_in_step_6(model, chunk_size, log):
        loss, calls = choose_loss(model, chunk_size, log), []

        def crash_at_call_6(model, inputs, num_items):  # one micro-batch per step here
            calls.append(1)
            if len(calls) == 6:
                raise RuntimeError("simulated crash")
            return loss(model, inputs, num_items)
        return crash_at_call_6

    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.train(config, progress=False, compare=False, choose_loss=loss_that_crashes_in_step_6)

    run = RunDir(config.output.dir)
    assert run.info()["status"] == "failed"
    assert run.info()["error"] == "RuntimeError: simulated crash"  # the reason, not only the status
    assert run.unfinished_hint().startswith("(status: failed, RuntimeError: simulated crash); finish it with")
    assert not run.adapter.exists()
    # A crash in the middle of saving checkpoint-6 left a partial folder behind.
    partial = run.checkpoints / "checkpoint-6"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    (partial / "trainer_state.json").write_text('{"global_step": 6, "log_hist')

    # Rerunning the same command resumes from checkpoint-4 and skips the partial one.
    resumed = recipe.train(config, progress=False, compare=False)
    assert (run.checkpoints / "incomplete-checkpoint-6").is_dir()
    ours, theirs = _adapter_weights(resumed.run_dir), _adapter_weights(reference.run_dir)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=1e-6), key
    steps_logged = [m["step"] for m in run.read_metrics() if "loss" in m]
    assert steps_logged == list(range(1, 9))
    # The whole run's totals, not only the resumed part's; and run.json says it was resumed.
    assert resumed.info["result"]["trained_tokens"] == reference.info["result"]["trained_tokens"]
    assert [m["trained_tokens"] for m in run.read_metrics() if "loss" in m] == \
        [m["trained_tokens"] for m in RunDir(reference.run_dir).read_metrics() if "loss" in m]
    assert len(resumed.info["resumed"]) == 1 and resumed.info["started"] <= resumed.info["resumed"][0]


def test_a_run_stopped_after_its_last_checkpoint_finishes_without_another_step(tmp_path, tiny_qwen):
    """Stopped while saving the adapter or comparing (after checkpoint-N of max_steps N): transformers'
    Trainer, resumed from it, trained step N+1 and overwrote the result. The rerun now takes the
    checkpoint as the result; the final evaluation is also not logged twice."""
    steps = {"train.max_steps": 4, "train.save_steps": 4, "train.logging_steps": 3, "data.val_ratio": 0.25,
             "train.eval_steps": 2, "train.scheduler": "constant"}
    reference = recipe.train(make_config(tmp_path, tiny_qwen, out="reference", **steps), progress=False, compare=False)
    metrics = RunDir(reference.run_dir).read_metrics()
    assert [m["step"] for m in metrics if "eval_loss" in m] == [2, 4]  # step 4's evaluation once
    assert [m["step"] for m in metrics if "loss" in m] == [3, 4]  # the last step is logged: its loss is final
    assert reference.info["result"]["final_loss"] == [m for m in metrics if "loss" in m][-1]["loss"]

    config = make_config(tmp_path, tiny_qwen, out="stopped", **steps)
    first = recipe.train(config, progress=False, compare=False)
    run = RunDir(first.run_dir)
    write_json(run.run_json, {**run.info(), "status": "interrupted"})  # as if killed in the comparison
    resumed = recipe.train(config, progress=False, compare=False)
    assert resumed.info["result"]["global_step"] == 4
    assert not (run.checkpoints / "checkpoint-5").exists()
    assert max(m["step"] for m in run.read_metrics()) == 4
    ours, theirs = _adapter_weights(resumed.run_dir), _adapter_weights(reference.run_dir)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert resumed.info["result"]["trained_tokens"] == reference.info["result"]["trained_tokens"]


def test_resume_refuses_changed_data_and_takes_the_folder_however_named(tmp_path, tiny_qwen, monkeypatch):
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2})
    recipe.train(config, progress=False, compare=False)
    run = RunDir(config.output.dir)
    write_json(run.run_json, {**run.info(), "status": "interrupted"})
    data = tmp_path / "identity.json"
    records = json.loads(data.read_text(encoding="utf-8"))
    data.write_text(json.dumps(records[:-1], ensure_ascii=False), encoding="utf-8")  # a record edited out
    with pytest.raises(ConfigError, match="cannot resume: the training data changed since the run started"):
        recipe.train(config, progress=False, compare=False)
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    # The same folder named relative to the working folder: the same run, not a changed config.
    monkeypatch.chdir(tmp_path)
    config.output.dir = "run"
    assert recipe.prepare_run_dir(config, log=lambda *a: None)[1] is True


def test_finished_run_is_not_retrained(tmp_path, tiny_qwen):
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2})
    recipe.train(config, progress=False, compare=False)
    with pytest.raises(UserError, match="already holds a finished run"):
        recipe.train(config, progress=False, compare=False)


def test_resume_refuses_changed_config(tmp_path, tiny_qwen):
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2})
    run = RunDir(config.output.dir)
    run.path.mkdir(parents=True)
    from ducktune.config import dump_config
    from ducktune.io import write_json, write_text

    write_text(run.config_yaml, dump_config(config))
    write_json(run.run_json, {"status": "failed"})
    config.train.learning_rate = 5e-3
    with pytest.raises(ConfigError, match=r"train.learning_rate: 0.01 -> 0.005"):
        recipe.train(config, progress=False, compare=False)
    # Another machine's thread count or a longer comparison does not change what trains: it resumes.
    config.train.learning_rate = 1e-2
    config.train.num_threads, config.eval.max_new_tokens = 1, 5
    assert recipe.prepare_run_dir(config, log=lambda *a: None)[1] is True


def test_output_dir_problems_are_one_line_and_overwrites_never_collide(tmp_path, tiny_qwen, monkeypatch):
    (tmp_path / "afile").write_text("x")
    config = make_config(tmp_path, tiny_qwen, out="afile/run")
    with pytest.raises(UserError, match=r"afile/run: cannot create output.dir \(Not a directory\)"):
        recipe.prepare_run_dir(config, log=lambda *a: None)

    # Two overwrites in the same second: the second previous run gets its own name, none is lost.
    monkeypatch.setattr(recipe.time, "strftime", lambda *a: "20261205-000000")
    config = make_config(tmp_path, tiny_qwen, out="run", **{"output.overwrite": True})
    for generation in ("first", "second", "third"):
        (tmp_path / "run").mkdir(exist_ok=True)
        (tmp_path / "run" / "marker").write_text(generation)
        recipe.prepare_run_dir(config, log=lambda *a: None)
    assert (tmp_path / "run.old-20261205-000000" / "marker").read_text() == "first"
    assert (tmp_path / "run.old-20261205-000000-2" / "marker").read_text() == "second"
    assert (tmp_path / "run.old-20261205-000000-3" / "marker").read_text() == "third"

    # A start killed between config.yaml and run.json: the same command starts afresh.
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text("model: {}\n")
    (killed / ".run.json.123.abc.tmp").write_text("{")
    config = make_config(tmp_path, tiny_qwen, out="killed")
    run, resuming = recipe.prepare_run_dir(config, log=lambda *a: None)
    assert not resuming and list(killed.iterdir()) == []
    (killed / "stranger.txt").write_text("x")  # anything else is not ducktune's to remove
    with pytest.raises(UserError, match="folder exists and is not a ducktune run"):
        recipe.prepare_run_dir(config, log=lambda *a: None)

    # Overwriting the folder one stands in would move the working directory itself aside.
    monkeypatch.chdir(tmp_path / "run")
    (tmp_path / "run" / "marker").write_text("here")
    config = make_config(tmp_path, tiny_qwen, **{"output.overwrite": True})
    config.output.dir = "."
    with pytest.raises(UserError, match="would move the current folder aside"):
        recipe.prepare_run_dir(config, log=lambda *a: None)
    assert (tmp_path / "run" / "marker").read_text() == "here"


def test_an_interrupt_outside_the_training_loop_marks_the_run_and_the_rerun_finishes(tmp_path, tiny_qwen):
    """Ctrl-C (or SIGTERM) after run.json says "running" but outside trainer.train (model setup, the
    final save, the comparison): the run is marked interrupted, one line says how to resume."""
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2})

    def interrupted(*args, **kwargs):  # Ctrl-C while the batching and loss are being set up
        raise KeyboardInterrupt

    with pytest.raises(UserError, match="interrupted; rerun the same command to resume"):
        recipe.train(config, progress=False, compare=False, choose_loss=interrupted)
    assert RunDir(config.output.dir).info()["status"] == "interrupted"
    recipe.train(config, progress=False, compare=False)
    assert RunDir(config.output.dir).info()["status"] == "completed"


def test_validation_split_reports_eval_loss(tmp_path, tiny_qwen):
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 4, "data.val_ratio": 0.25, "train.eval_steps": 2})
    result = recipe.train(config, progress=False, compare=False)
    info = RunDir(result.run_dir).info()
    assert info["data"]["val_samples"] == 1 and info["data"]["train_samples"] == 3
    assert info["result"]["eval_loss"] is not None
    assert any("eval_loss" in m for m in RunDir(result.run_dir).read_metrics())


def test_explicit_resume_needs_an_unfinished_run(tmp_path, tiny_qwen):
    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2})
    with pytest.raises(UserError, match="no unfinished run to resume"):
        recipe.train(config, progress=False, compare=False, require_resume=True)
    assert not (tmp_path / "run").exists()


def test_training_arguments_follow_the_config_and_the_plan(tmp_path, tiny_qwen):
    """The Trainer's arguments come from the config and the memory plan, without loading a model."""
    from ducktune.models.device import Placement
    from ducktune.train.plan import Setup

    config = make_config(tmp_path, tiny_qwen, **{"train.max_steps": None, "train.warmup_steps": 3})
    setup = Setup(batch_size=3, grad_accum=5, checkpointing=True, optimizer="sgd")
    cpu = Placement("cpu", "float32", "test")
    args = recipe.training_arguments(config, tmp_path / "ckpt", setup, cpu, "padded", has_val=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 5)
    assert args.optim == "sgd"  # the plan's resolved optimizer, not the config's "auto"
    assert args.max_steps == -1 and args.warmup_steps == 3 and args.use_cpu and not args.bf16
    assert args.eval_strategy == "no" and args.train_sampling_strategy == "group_by_length"
    assert getattr(args, recipe.checkpointing_argument())  # the installed transformers' name for it
    packed = recipe.training_arguments(config, tmp_path / "ckpt", Setup(checkpointing=False), cpu, "packed", has_val=True)
    assert packed.eval_strategy == "steps" and packed.eval_steps == config.train.save_steps
    assert packed.train_sampling_strategy == "random" and not getattr(packed, recipe.checkpointing_argument())
    # "constant" is the rate after the warm-up, as the other schedules: transformers' own constant skips it.
    config.train.scheduler = "constant"
    args = recipe.training_arguments(config, tmp_path / "ckpt", setup, cpu, "padded", has_val=False)
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "constant_with_warmup" and args.warmup_steps == 3


def test_checkpointing_argument_follows_the_installed_transformers():
    """transformers 5.17 (seen on a GPU machine) has only `gradient_checkpointing`; newer 5.x renamed
    it `activation_checkpointing`: the Trainer gets whichever its TrainingArguments has."""
    import dataclasses

    @dataclasses.dataclass
    class Older:
        gradient_checkpointing: bool = False

    @dataclasses.dataclass
    class Newer:
        gradient_checkpointing: bool = False
        activation_checkpointing: bool = False

    assert recipe.checkpointing_argument(Older) == "gradient_checkpointing"
    assert recipe.checkpointing_argument(Newer) == "activation_checkpointing"
    installed = recipe.checkpointing_argument()
    assert installed in recipe.sharding_arguments("none", True, 1) and f"{installed}_kwargs" in recipe.sharding_arguments(
        "none", True, 1)


def test_memory_is_planned_again_when_batching_falls_back_to_padded(tmp_path, tiny_qwen):
    """A model that fails the packing proof trains on padded batches: the plan recorded (and
    obeyed) is the one for padded rows, not the packed rows expected from config.json."""
    from ducktune.train.loss import unwrap_peft
    from ducktune.train.packing import Batching

    def padded(model, packing, device, log):
        return Batching("padded", "isolation failed (test)", unwrap_peft(model).config._attn_implementation)

    messages = []
    result = recipe.train(make_config(tmp_path, tiny_qwen, **{"train.max_steps": 2}), log=messages.append,
                          progress=False, compare=False, choose_batching=padded)
    info = RunDir(result.run_dir).info()
    assert info["batching"]["mode"] == info["memory_plan"]["batching"] == "padded"
    assert "Planning memory again for padded batches" in messages
    assert info["memory_plan"]["row_tokens"] % 8 == 0  # rows padded to a multiple of 8
    assert info["memory_plan"]["optimizer"] == "adamw_torch_fused"  # train.optimizer auto, on CPU


def test_fsdp_maps_to_the_trainers_fsdp2_plugin_on_multi_process_runs(tmp_path, tiny_qwen):
    """train.distributed=fsdp becomes the Trainer's FSDP2 settings (what accelerate shards with), with
    activation checkpointing moved into FSDP's own; a single process or ddp gets none of it."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    from ducktune.models.device import Placement
    from ducktune.train.plan import Setup

    config = make_config(tmp_path, tiny_qwen, **{"train.distributed": "fsdp"})
    gpu = Placement("cuda", "float32", "test")
    args = recipe.training_arguments(config, tmp_path / "ckpt", Setup(checkpointing=True), gpu, "packed",
                                     has_val=False, processes=2)
    assert args.fsdp and not getattr(args, recipe.checkpointing_argument())
    plugin_args = args.fsdp_plugin_args
    assert plugin_args["fsdp_version"] == 2 and plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin_args["state_dict_type"] == "FULL_STATE_DICT"  # checkpoints and the adapter: whole weights
    assert plugin_args["activation_checkpointing"] and plugin_args["cpu_ram_efficient_loading"] is False
    plugin = FullyShardedDataParallelPlugin(**plugin_args)  # accelerate takes them as they are
    assert plugin.fsdp_version == 2

    alone = recipe.training_arguments(config, tmp_path / "ckpt", Setup(checkpointing=True), gpu, "packed",
                                      has_val=False, processes=1)
    config.train.distributed = "ddp"
    ddp = recipe.training_arguments(config, tmp_path / "ckpt", Setup(checkpointing=True), gpu, "packed",
                                    has_val=False, processes=2)
    for plain in (alone, ddp):
        assert not plain.fsdp and plain.fsdp_plugin_args is None and getattr(plain, recipe.checkpointing_argument())


def test_fsdp_checkpoints_count_as_complete(tmp_path):
    """accelerate's FSDP checkpoint files are weights too: such a checkpoint is resumed, not set aside."""
    from ducktune.train.checkpoints import latest_complete

    for step, weights in ((2, "pytorch_model_fsdp.bin"), (4, "pytorch_model_fsdp_0")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        if weights.endswith(".bin"):
            (folder / weights).write_bytes(b"\0")
        else:
            (folder / weights).mkdir()
    weightless = tmp_path / "checkpoint-6"
    weightless.mkdir()
    (weightless / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    assert latest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert (tmp_path / "incomplete-checkpoint-6").is_dir()


def test_fsdp_is_refused_only_where_accelerate_would_not_shard(tmp_path, tiny_qwen, monkeypatch):
    """Over CPU processes accelerate drops FSDP and runs DDP: refused, whether train.distributed or an
    `accelerate launch` FSDP config (ACCELERATE_USE_FSDP) asks for it. One process, or GPUs: allowed."""
    from ducktune.models.device import Placement
    from ducktune.train.distributed import DistributedRun

    config = make_config(tmp_path, tiny_qwen, **{"train.distributed": "fsdp"})
    cpu, gpu = Placement("cpu", "float32", "test"), Placement("cuda", "bfloat16", "test")
    with pytest.raises(ConfigError, match="train.distributed: fsdp runs on GPUs"):
        recipe._check_sharding(config, cpu, DistributedRun(rank=1, world_size=2))
    recipe._check_sharding(config, gpu, DistributedRun(rank=0, world_size=2))
    recipe._check_sharding(config, cpu, DistributedRun())
    config.train.distributed = "ddp"
    recipe._check_sharding(config, cpu, DistributedRun(rank=0, world_size=2))
    config.train.distributed = "auto"
    recipe._check_sharding(config, cpu, DistributedRun(rank=0, world_size=2))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with fsdp2.yaml sets
    with pytest.raises(ConfigError, match="the accelerate config's FSDP runs on GPUs"):
        recipe._check_sharding(config, cpu, DistributedRun(rank=0, world_size=2))
    recipe._check_sharding(config, gpu, DistributedRun(rank=0, world_size=2))


def test_resume_restores_the_trained_adapter_beside_a_reference_copy(tmp_path, tiny_qwen):
    """Before a resume, the checkpoint's root adapter goes into "default" (transformers 5.17's Trainer
    skipped it when the checkpoint also held the frozen reference copy), and only into "default"."""
    import torch
    from peft import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import REFERENCE_ADAPTER, attach_lora, restore_trained_adapter

    model, _ = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraConfig(r=4, alpha=8))
    model.add_adapter(REFERENCE_ADAPTER, model.peft_config["default"])
    model.save_pretrained(tmp_path / "ckpt")  # root: default; subfolder: reference (what a checkpoint holds)
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(model, adapter_name="default").items()}
    reference = {k: v.clone() for k, v in get_peft_model_state_dict(model, adapter_name=REFERENCE_ADAPTER).items()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(1.0)  # both adapters drift from the checkpoint
    assert not restore_trained_adapter(model, tmp_path / "nothing-here")
    assert restore_trained_adapter(model, tmp_path / "ckpt")
    restored = get_peft_model_state_dict(model, adapter_name="default")
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
    drifted = get_peft_model_state_dict(model, adapter_name=REFERENCE_ADAPTER)
    assert all(torch.equal(drifted[k], reference[k] + 1.0) for k in reference)


@pytest.mark.parametrize("checkpointing,loss", [("off", "chunked"), ("on", "chunked"), ("off", "model's own")])
def test_bf16_run_trains_fp32_adapters_under_autocast_without_input_copies(tmp_path, tiny_qwen, checkpointing, loss):
    """Mixed precision (bf16 weights, fp32 adapters), as on a GPU: every forward of a training step, and
    of evaluation in the middle of training, runs under bf16 autocast with the adapters' input casts
    off, so no adapter keeps an fp32 copy of its layer's input (tests/test_plan.py counts the bytes);
    with ducktune's chunked loss and with the model's own (the fallback for soft-capped heads), with
    gradient checkpointing's recomputation too. The generation probe in the middle of training and the
    base-vs-tuned comparison after it get casting back, and the adapters stay fp32 and train."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer
    from safetensors.torch import load_file

    from ducktune.train.loss import choose_loss

    calls = []  # per forward of one adapted layer: (training, autocast on, autocast dtype, input casting on)

    def watch_and_choose(model, chunk_size, log):
        layer = next(m for m in model.modules() if isinstance(m, BaseTunerLayer))

        def record(module, args):
            device = args[0].device.type  # cuda where a GPU is (model.device auto)
            calls.append((module.training, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device),
                          module.cast_input_dtype_enabled))

        layer.register_forward_pre_hook(record)
        return choose_loss(model, chunk_size, log) if loss == "chunked" else None

    config = make_config(tmp_path, tiny_qwen, **{
        "model.dtype": "bfloat16", "train.max_steps": 4, "data.val_ratio": 0.25, "train.eval_steps": 2,
        "train.save_steps": 2, "train.logging_steps": 1, "train.gradient_checkpointing": checkpointing,
        "eval.probe_during_training": True})
    result = recipe.train(config, progress=False, compare=True, choose_loss=watch_and_choose)
    info = RunDir(result.run_dir).info()
    assert info["memory_plan"]["gradient_checkpointing"] == (checkpointing == "on")
    assert info["batching"]["chunked_loss"] == (loss == "chunked")
    training = [c for c in calls if c[0]]
    assert len(training) >= 4 and all(c[1:] == (True, torch.bfloat16, False) for c in training)
    assert all(autocast for _, autocast, _, casting in calls if not casting)  # never uncast outside autocast
    assert any(not casting for on, _, _, casting in calls if not on)  # evaluation in the middle of training
    assert any(casting for on, _, _, casting in calls if not on)  # generation (probe, comparison)
    metrics = RunDir(result.run_dir).read_metrics()
    assert any(m.get("probe") for m in metrics)  # generated mid-training, casting back on
    assert len(result.comparison) == len(info["probe_prompts"]) > 0  # generated after training, casting restored
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    assert losses and all(math.isfinite(x) for x in losses)
    weights = load_file(str(result.run_dir / "adapter" / "adapter_model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}
    assert any(float(w.abs().max()) > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero


def test_trainer_flops_estimate_is_the_trainers_own_with_the_parameters_counted_once(tmp_path, tiny_qwen):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from ducktune.train.trainer import DucktuneTrainer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen),
                           LoraConfig(r=4, target_modules="all-linear"))
    trainer = DucktuneTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                  report_to=[]))
    counted = []
    stock_count = model.num_parameters
    model.num_parameters = lambda **kwargs: counted.append(kwargs) or stock_count(**kwargs)
    batches = [{"input_ids": torch.ones(shape, dtype=torch.long)} for shape in ((1, 7), (3, 50), (2, 128))]
    ours = [trainer.floating_point_ops(batch) for batch in batches]
    assert len(counted) == 1  # counted once, not on every step
    stock = [Trainer.floating_point_ops(trainer, batch) for batch in batches]
    assert ours == stock
    assert stock[1] == 6 * 150 * stock_count(exclude_embeddings=True) > 0


def test_resume_allows_changing_how_often_checkpoints_are_saved_but_not_the_trajectory(tmp_path):
    """Resuming refused a changed save_steps, save_total_limit or logging_steps (nothing the training
    trajectory depends on); a changed learning rate is still refused."""
    from ducktune.config import dump_config, load_config
    from ducktune.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    started = load_config(None, ["train.save_steps=50", "train.logging_steps=10", "train.learning_rate=2e-4"])
    run.config_yaml.write_text(dump_config(started), encoding="utf-8")
    harmless = load_config(None, ["train.save_steps=5", "train.logging_steps=1", "train.save_total_limit=1",
                                  "train.learning_rate=2e-4"])
    assert recipe.resume_config_changes(run, harmless) == []
    changed = load_config(None, ["train.save_steps=50", "train.logging_steps=10", "train.learning_rate=1e-4"])
    assert recipe.resume_config_changes(run, changed) == ["train.learning_rate: 0.0002 -> 0.0001"]


def test_a_finished_run_in_output_dir_is_refused_before_the_model_and_data_load(tmp_path):
    """Training into a finished run loaded the model and data and printed the memory plan before it said
    the folder holds a finished run; the refusal comes first now (the model named here does not exist:
    loading it would fail otherwise)."""
    from ducktune.config import load_config
    from ducktune.errors import UserError
    from ducktune.io import write_json

    out = tmp_path / "done"
    out.mkdir()
    write_json(out / "run.json", {"status": "completed"})
    config = load_config(None, [f"model.name_or_path={tmp_path / 'no-such-model'}", f"output.dir={out}",
                                f"data.datasets=[{tmp_path / 'no-such-data.json'}]"])
    with pytest.raises(UserError, match="already holds a finished run"):
        recipe.train(config, log=lambda *_: None, progress=False, compare=False)


def test_a_warmup_ratio_leaves_a_one_step_run_a_learning_rate(tmp_path, tiny_qwen):
    """transformers rounds a warm-up ratio up to whole steps starting at lr 0: a one-step run
    (train.max_steps 1) trained at lr 0 and saved an untrained adapter. Longer runs keep the
    Trainer's warm-up, and explicit warm-up steps are the user's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    from ducktune.train.trainer import DucktuneTrainer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraConfig(r=4, target_modules="all-linear"))

    def first_rates(warmup, steps: int) -> list[float]:
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], learning_rate=1e-3,
                                 warmup_steps=warmup)
        trainer = DucktuneTrainer(model=model, args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        assert trainer.args.warmup_steps == warmup  # the arguments are left as given
        rates = []
        for _ in range(min(steps, 3)):
            rates.append(trainer.lr_scheduler.get_last_lr()[0])
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
        return rates

    assert first_rates(0.03, 1) == [1e-3]  # the only step has the rate (was [0.0])
    assert first_rates(0.5, 2)[0] == 0.0 and first_rates(0.5, 2)[1] > 0  # ceil(1.0) = 1 < 2 steps: unchanged
    assert first_rates(0.03, 100)[0] == 0.0  # ceil(3): the Trainer's warm-up as before
    assert first_rates(0.9, 3) == [0.0, 0.5e-3, 1e-3]  # ceil(2.7) = 3 would span the run: capped at 2
    assert first_rates(5, 1) == [0.0]  # explicit warm-up steps are the user's
