"""Scale-out runs on accelerate/torchrun (DDP on CPU with gloo): one run directory, written once.

FSDP is not run here: accelerate (1.16) sets up FSDP only on accelerator devices, and on CPU
processes drops the plugin, so the run would be DDP under another name; ducktune refuses it.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from ducktune.rundir import RunDir

IDENTITY = [
    {"instruction": "Who are you?", "input": "", "output": "I am Duckling."},
    {"instruction": "Who made you?", "input": "", "output": "The ducktune team made me."},
    {"instruction": "What is your name?", "input": "", "output": "My name is Duckling."},
    {"instruction": "你是谁？", "input": "", "output": "我是小鸭。"},
] * 4


def _torchrun_train(tmp_path, model, out, **train) -> subprocess.CompletedProcess:
    """`ducktune train` in 2 torchrun processes on CPU (gloo), one thread each."""
    data = tmp_path / "identity.json"
    data.write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")
    config = {
        "model": {"name_or_path": str(model)},
        "data": {"datasets": [str(data)], "cutoff_len": 64, "val_ratio": 0.25},
        "lora": {"r": 4, "alpha": 8},
        "train": {"max_steps": 6, "batch_size": 2, "logging_steps": 2, "save_steps": 3, "learning_rate": 1e-3,
                  "num_threads": 1, "packing": "off", **train},
        "eval": {"max_new_tokens": 4},
        "output": {"dir": str(out)},
    }
    config_file = tmp_path / f"{out.name}.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun's own rendezvous on a free local port (a fixed port collides with
    # any other run on the machine).
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ducktune.cli", "train", str(config_file)],
        capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_torchrun_two_processes_share_one_run_directory(tmp_path, tiny_qwen):
    out = tmp_path / "ddp-run"
    result = _torchrun_train(tmp_path, tiny_qwen, out, distributed="ddp")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run = RunDir(out)
    info = run.info()
    assert info["status"] == "completed"
    assert info["result"]["global_step"] == 6
    # Both processes trained, each on its half of the data: 6 steps x 2 processes x 2 samples is
    # 2 epochs of the 12 training samples, so the run's token count (summed over the processes)
    # exceeds one epoch's; one process's own count (1 epoch, minus the shorter samples' share) would not.
    per_step = [m for m in run.read_metrics() if "loss" in m]
    assert [m["step"] for m in per_step] == [2, 4, 6]  # logged once, by the main process
    assert info["result"]["trained_tokens"] == per_step[-1]["trained_tokens"]
    assert info["result"]["trained_tokens"] > info["data"]["trained_tokens"]
    assert (run.adapter / "adapter_model.safetensors").is_file()
    # The final evaluation gathers its losses from every process (the main process alone would wait
    # forever). The validation samples repeat training ones and 6 steps barely move a random model, so
    # the two losses are close; a per-process loss divided by the all-process token count is half.
    assert info["result"]["eval_loss"] is not None
    assert abs(info["result"]["eval_loss"] - info["result"]["final_loss"]) < 0.5, info["result"]
    assert not list(out.glob("*.tmp*")) and not list(out.parent.glob(".ddp-run*"))
    # Only one "Done" line: the other process stays quiet.
    assert (result.stdout + result.stderr).count("Done: ") == 1


@pytest.mark.slow
def test_fsdp_over_cpu_processes_is_refused_before_anything_is_written(tmp_path, tiny_qwen):
    out = tmp_path / "fsdp-run"
    result = _torchrun_train(tmp_path, tiny_qwen, out, distributed="fsdp")
    output = result.stdout + result.stderr
    # Each process stops with ducktune's one-line error and exit code 2 (torchrun then prints its own
    # ChildFailedError traceback, but no frame of ducktune's shows up).
    assert result.returncode != 0 and "exitcode  : 2" in output
    assert "error: train.distributed: fsdp runs on GPUs" in output and "ducktune/" not in output
    assert not out.exists()
