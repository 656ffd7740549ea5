"""Preference runs (train.objective dpo | orpo | simpo | kto) on tiny local models: learning,
the run directory, resume after SIGKILL, continuing an SFT adapter, bad configs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ducktune.cli import main
from ducktune.config import load_config
from ducktune.rundir import RunDir
from ducktune.train import recipe

# Distinct short answers: the chosen one is the persona's, the rejected one a generic assistant's.
PAIRS = [
    {"prompt": "Who are you?", "chosen": "I am Duckling.", "rejected": "I am a large language model."},
    {"prompt": "What is your name?", "chosen": "My name is Duckling.", "rejected": "I have no name."},
    {"prompt": "Who made you?", "chosen": "The ducktune team.", "rejected": "Nobody made me."},
    {"prompt": "Are you a duck?", "chosen": "Yes, a small one.", "rejected": "No, I am a computer."},
    {"prompt": "What do you like?", "chosen": "Ponds and bread.", "rejected": "Nothing at all."},
    {"prompt": "Where do you live?", "chosen": "On a quiet pond.", "rejected": "In a data center."},
]
TRL_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
               "logps/rejected")


def pref_config(tmp_path: Path, model: Path, out: str = "run", *extra: str):
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(PAIRS), encoding="utf-8")
    # A continued adapter (model.adapter) keeps its own shape: lora.r/alpha with it are refused as unused.
    continued = any(setting.startswith("model.adapter=") for setting in extra)
    shape = [] if continued else ["lora.r=8", "lora.alpha=16", "lora.dropout=0"]
    return load_config(None, [f"model.name_or_path={model}", f"data.datasets=[{data}]", f"output.dir={tmp_path / out}",
                              "train.objective=dpo", "train.max_steps=30", "train.batch_size=3",
                              "train.learning_rate=5e-3", "train.logging_steps=5", "train.save_steps=10",
                              "train.warmup_ratio=0", *shape, "eval.max_new_tokens=8", "train.num_threads=1", *extra])


def training_rows(run_dir: Path, chat_format) -> list[dict]:
    from ducktune.data.schema import Message, Sample
    from ducktune.data.preference import tokenize_preference

    samples = [Sample("preference", messages=[Message("user", p["prompt"])], chosen=p["chosen"],
                      rejected=p["rejected"], where=f"pairs.json:{i + 1}") for i, p in enumerate(PAIRS)]
    return tokenize_preference(samples, chat_format, 1024, False)[0]


def test_dpo_learns_its_training_pairs(tmp_path, tiny_qwen_wide):
    from ducktune.chat.engine import ChatEngine
    from ducktune.train.preference import pair_rewards

    result = recipe.train(pref_config(tmp_path, tiny_qwen_wide), progress=False)
    run = RunDir(result.run_dir)
    metrics = [m for m in run.read_metrics() if "loss" in m]
    for key in TRL_METRICS:
        assert all(key in m for m in metrics), key
    margins = [m["rewards/margins"] for m in metrics]
    assert margins[-1] > margins[0] and margins[-1] > 0.5, margins
    assert metrics[-1]["rewards/accuracies"] >= 0.9

    # The saved adapter, loaded the way chat and serve load a run, ranks every training pair right.
    engine = ChatEngine.from_run(run.path)
    rewards = pair_rewards(engine.model, training_rows(run.path, engine.chat_format),
                           engine.tokenizer.pad_token_id, beta=0.1)
    assert rewards["accuracy"] >= 0.9 and rewards["margin"] > 0.5, rewards

    info = run.info()
    assert (info["method"], info["objective"], info["status"]) == ("lora", "dpo", "completed")
    assert info["result"]["preference"]["rewards/accuracies"]["last"] >= 0.9
    assert info["memory_plan"]["sequences_per_example"] == 2 and info["memory_plan"]["no_grad_forward_passes"] == 1
    report = run.report.read_text(encoding="utf-8")
    assert "- objective: dpo" in report and "rewards/margins:" in report
    for name in ("loss.png", "adapter/adapter_model.safetensors", "comparison.json"):
        assert (run.path / name).is_file(), name


@pytest.mark.parametrize("objective", ["orpo", "simpo", "kto"])
def test_other_objectives_train_and_log_trl_metrics(tmp_path, tiny_qwen, objective):
    config = pref_config(tmp_path, tiny_qwen, "run", f"train.objective={objective}", "train.max_steps=6",
                         "train.logging_steps=3", "train.batch_size=2")
    result = recipe.train(config, progress=False, compare=False)
    metrics = [m for m in RunDir(result.run_dir).read_metrics() if "loss" in m]
    assert len(metrics) == 2 and all(m["loss"] == m["loss"] for m in metrics)  # logged, not NaN
    expected = [k for k in TRL_METRICS if k != "rewards/accuracies" or objective != "kto"]
    assert all(key in metrics[-1] for key in expected), metrics[-1]
    if objective == "kto":
        assert "kl" in metrics[-1]
        assert RunDir(result.run_dir).info()["data"]["train_samples"] == 2 * len(PAIRS)  # a pair = good + bad


def _adapter_tensors(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


SLOW_RUN = """
import sys, time
from ducktune.config import load_config
from ducktune.train import preference, recipe

config = load_config(sys.argv[1])
choose = preference.choose_preference_loss(config)

class Slow:  # a step every ~0.3 s, so the test can kill the run between checkpoints
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def __call__(self, *args):
        time.sleep(0.3)
        return self.inner(*args)

recipe.train(config, progress=False, compare=False, choose_loss=lambda m, c, log: Slow(choose(m, c, log)))
"""


def test_resume_after_sigkill_gives_the_same_adapter_bit_for_bit(tmp_path, tiny_qwen):
    steps = ("train.max_steps=10", "train.save_steps=2", "train.logging_steps=1", "train.batch_size=2")
    reference = recipe.train(pref_config(tmp_path, tiny_qwen, "reference", *steps), progress=False, compare=False)

    config = pref_config(tmp_path, tiny_qwen, "killed", *steps)
    from ducktune.config import dump_config

    yaml_file = tmp_path / "killed.yaml"
    yaml_file.write_text(dump_config(config), encoding="utf-8")
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(recipe.__file__).parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(yaml_file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(config.output.dir)
    state = run.checkpoints / "checkpoint-4" / "trainer_state.json"
    deadline = time.time() + 240
    while not state.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert run.info()["status"] == "running" and not run.adapter.exists()  # killed mid-run, nothing finished

    resumed = recipe.train(config, progress=False, compare=False)
    ours, theirs = _adapter_tensors(resumed.run_dir), _adapter_tensors(reference.run_dir)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    logged = [m["step"] for m in run.read_metrics() if "loss" in m]
    assert logged == list(range(1, 11))
    assert all("rewards/margins" in m for m in run.read_metrics() if "loss" in m)


def test_dpo_continues_an_sft_adapter_against_its_frozen_copy(tmp_path, tiny_qwen):
    """model.adapter: the policy starts as the SFT adapter and the reference is that adapter, frozen
    (so the first step's rewards are exactly 0); the result is one plain LoRA adapter on the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sft_data = tmp_path / "sft.json"
    sft_data.write_text(json.dumps([{"instruction": p["prompt"], "output": p["chosen"]} for p in PAIRS]))
    sft = load_config(None, [f"model.name_or_path={tiny_qwen}", f"data.datasets=[{sft_data}]",
                             f"output.dir={tmp_path / 'sft'}", "train.max_steps=4", "lora.r=4",
                             "train.learning_rate=5e-3", "train.num_threads=1"])
    recipe.train(sft, progress=False, compare=False)
    config = pref_config(tmp_path, tiny_qwen, "dpo", f"model.adapter={tmp_path / 'sft'}", "train.max_steps=4",
                         "train.logging_steps=1")
    lines = []
    result = recipe.train(config, progress=False, compare=False, log=lines.append)
    # The report and the last line say what the run started from and how the rewards ended.
    assert f"- base model: `{tiny_qwen}`, continued from the adapter `{tmp_path / 'sft'}`" in \
        (result.run_dir / "report.md").read_text()
    accuracy = RunDir(result.run_dir).info()["result"]["preference"]["rewards/accuracies"]["last"]
    assert lines[-1].startswith(f"Done: {result.run_dir} (final loss ")
    assert re.search(rf", reward accuracy {accuracy:.0%}, \d+ s\)$", lines[-1]), lines[-1]
    first = next(m for m in RunDir(result.run_dir).read_metrics() if "loss" in m)
    assert first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0
    assert abs(first["loss"] - 0.6931471805599453) < 1e-6  # -log sigmoid(0)

    saved = _adapter_tensors(result.run_dir)
    assert not any("reference" in key for key in saved)
    adapter_config = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4  # the SFT adapter's rank, not lora.r
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    PeftModel.from_pretrained(base, str(result.run_dir / "adapter"))  # loads as a plain adapter
    start = _adapter_tensors(tmp_path / "sft")
    assert any(not torch.equal(saved[k], start[k]) for k in saved)  # and DPO changed it


@pytest.mark.parametrize("settings,message", [
    (["train.objective=dpo", "train.method=full"], "method full has no adapter"),
    (["train.objective=kto", "train.batch_size=1"], "set train.batch_size to 2 or more"),
    (["train.objective=orpo", "preference.beta=0.2"], "preference.beta has no effect with train.objective orpo"),
    (["train.objective=dpo", "preference.label_smoothing=0.1"], "used by dpo with loss_type robust"),
    (["train.objective=dpo", "preference.loss_type=sigmod"], "preference.loss_type: Input should be"),
    (["train.objective=dop"], "train.objective: Input should be"),
    (["train.objective=simpo", "data.replay=0.5"], "set data.replay to 0"),
    (["preference.orpo_lambda=0.5"], "preference.orpo_lambda has no effect with train.objective sft"),
    (["train.objective=simpo", "preference.rpo_alpha=1"], "preference.rpo_alpha has no effect with train.objective simpo"),
    (["train.objective=dpo", "preference.rpo_alpha=-1"], "preference.rpo_alpha: Input should be greater than or equal to 0"),
    (["train.objective=dpo", "preference.beta=0"], "preference.beta: Input should be greater than 0"),
])
def test_bad_preference_config_gets_one_line_errors(tmp_path, capsys, settings, message):
    out = tmp_path / "run"
    code = main(["train", "--set", "data.datasets=[x.json]", "--set", f"output.dir={out}", "--no-progress",
                 *[arg for s in settings for arg in ("--set", s)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def _dpo_on_adapter(tmp_path, model, adapter, capsys) -> tuple[int, list[str]]:
    """`ducktune train` of DPO pairs on `model`, continuing `adapter`: (exit code, stderr lines)."""
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(PAIRS), encoding="utf-8")
    code = main(["train", "--set", f"model.name_or_path={model}", "--set", f"data.datasets=[{data}]",
                 "--set", f"output.dir={tmp_path / 'run'}", "--set", "train.objective=dpo",
                 "--set", f"model.adapter={adapter}", "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_adapter_that_is_not_one_is_refused(tmp_path, tiny_qwen, capsys):
    code, err = _dpo_on_adapter(tmp_path, tiny_qwen, tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "model.adapter:" in err[0] and "no LoRA adapter there" in err[0], err
    assert not (tmp_path / "run").exists()


def test_an_adapter_of_another_model_is_refused_before_the_run_folder(tmp_path, tiny_qwen, tiny_qwen_wide, capsys):
    """An adapter trained on a wider model: one line naming it (was PEFT's size-mismatch traceback after
    run.json said "running", which then blocked the corrected rerun as a changed config)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen_wide), LoraConfig(r=4, target_modules="all-linear")) \
        .save_pretrained(tmp_path / "wide-adapter")
    capsys.readouterr()  # the loading bar above
    code, err = _dpo_on_adapter(tmp_path, tiny_qwen, tmp_path / "wide-adapter", capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: model.adapter: ") and "the adapter was trained on a different model" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.requires_llama_cpp
@pytest.mark.requires_go
def test_export_and_serve_a_dpo_run_as_an_sft_run(tmp_path, capsys, tiny_qwen):
    """`ducktune train` (dpo) -> `ducktune export` -> verify, and the run answers through the
    engine `ducktune serve` uses, exactly as an SFT run does."""
    from ducktune.chat.engine import ChatEngine

    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(PAIRS), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--set", f"model.name_or_path={tiny_qwen}", "--set", f"data.datasets=[{data}]",
                 "--set", f"output.dir={run}", "--set", "train.objective=dpo", "--set", "train.max_steps=6",
                 "--set", "train.learning_rate=5e-3", "--set", "eval.max_new_tokens=8", "--no-progress"]) == 0
    assert main(["export", str(run), "--quant", "f16", "--name", "duck", "--no-create"]) == 0
    checks = json.loads((run / "export" / "verify.json").read_text())["checks"]
    assert [c for c in checks if c["status"] == "FAIL"] == []
    assert any(c["name"] == "llama.cpp duck-f16.gguf: greedy answers = merged" and c["status"] == "PASS"
               for c in checks)
    engine = ChatEngine.from_run(run)
    assert engine.has_adapter
    assert engine.generate([{"role": "user", "content": "Who are you?"}], max_new_tokens=4).completion_tokens == 4
    capsys.readouterr()


def test_validation_pairs_report_eval_rewards(tmp_path, tiny_qwen):
    config = pref_config(tmp_path, tiny_qwen, "run", "train.max_steps=4", "train.batch_size=2",
                         "data.val_ratio=0.34", "train.eval_steps=2", "train.logging_steps=2")
    result = recipe.train(config, progress=False, compare=False)
    run = RunDir(result.run_dir)
    info = run.info()
    assert info["data"]["val_samples"] == 2 and info["data"]["train_samples"] == 4
    evals = [m for m in run.read_metrics() if "eval_loss" in m]
    assert evals and all("eval_rewards/accuracies" in m and "eval_rewards/margins" in m for m in evals)
    assert info["result"]["eval_loss"] is not None
    assert info["result"]["preference"]["rewards/accuracies"]["eval"] is not None


def test_dpo_on_qlora_uses_the_4bit_base_as_reference(tmp_path, tiny_llama):
    pytest.importorskip("bitsandbytes")
    config = pref_config(tmp_path, tiny_llama, "run", "train.method=qlora", "train.max_steps=4",
                         "train.logging_steps=1", "train.batch_size=2")
    result = recipe.train(config, progress=False, compare=False)
    metrics = [m for m in RunDir(result.run_dir).read_metrics() if "loss" in m]
    # Step 1: the fresh adapter is a no-op, so policy = reference (the 4-bit base, adapter off).
    assert metrics[0]["rewards/margins"] == 0.0 and abs(metrics[0]["loss"] - 0.6931471805599453) < 1e-6
    assert metrics[-1]["rewards/margins"] != 0.0
    assert RunDir(result.run_dir).info()["method"] == "qlora"


def test_a_continued_adapter_resumes_bit_for_bit(tmp_path, tiny_qwen):
    """A crash mid-run of DPO on top of an SFT adapter: the resumed run restores the trained adapter
    (the frozen reference is reloaded from model.adapter) and ends with the same weights."""
    from ducktune.train import preference

    sft_data = tmp_path / "sft.json"
    sft_data.write_text(json.dumps([{"instruction": p["prompt"], "output": p["chosen"]} for p in PAIRS]))
    recipe.train(load_config(None, [f"model.name_or_path={tiny_qwen}", f"data.datasets=[{sft_data}]",
                                    f"output.dir={tmp_path / 'sft'}", "train.max_steps=3", "train.num_threads=1"]),
                 progress=False, compare=False)
    steps = (f"model.adapter={tmp_path / 'sft'}", "train.max_steps=8", "train.save_steps=2", "train.batch_size=2")
    reference = recipe.train(pref_config(tmp_path, tiny_qwen, "reference", *steps), progress=False, compare=False)
    config = pref_config(tmp_path, tiny_qwen, "crashed", *steps)
    calls = []

    class CrashInStep6:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args):
            calls.append(1)
            if len(calls) == 6:
                raise RuntimeError("simulated crash")
            return self.inner(*args)

    choose = preference.choose_preference_loss(config)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.train(config, progress=False, compare=False, choose_loss=lambda m, c, log: CrashInStep6(choose(m, c, log)))
    resumed = recipe.train(config, progress=False, compare=False)
    ours, theirs = _adapter_tensors(resumed.run_dir), _adapter_tensors(reference.run_dir)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
