"""Scale-out runs on accelerate/torchrun (DDP on CPU with gloo): one run directory, written once."""

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


@pytest.mark.slow
def test_torchrun_two_processes_share_one_run_directory(tmp_path, tiny_qwen):
    data = tmp_path / "identity.json"
    data.write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "ddp-run"
    config = {
        "model": {"name_or_path": str(tiny_qwen)},
        "data": {"datasets": [str(data)], "cutoff_len": 64},
        "lora": {"r": 4, "alpha": 8},
        "train": {"max_steps": 6, "batch_size": 2, "logging_steps": 2, "save_steps": 3, "learning_rate": 1e-3,
                  "num_threads": 1, "packing": "off"},
        "eval": {"max_new_tokens": 4},
        "output": {"dir": str(out)},
    }
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun's own rendezvous on a free local port (a fixed port collides with
    # any other run on the machine).
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ducktune.cli", "train", str(config_file)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run = RunDir(out)
    info = run.info()
    assert info["status"] == "completed"
    assert info["result"]["global_step"] == 6
    # Both processes trained, each on its half of the data: 6 steps x 2 processes x 2 samples is
    # 1.5 epochs of the 16 samples, so the run's token count (summed over the processes) exceeds
    # one epoch's; one process's own count (0.75 epochs) would not.
    per_step = [m for m in run.read_metrics() if "loss" in m]
    assert [m["step"] for m in per_step] == [2, 4, 6]  # logged once, by the main process
    assert info["result"]["trained_tokens"] == per_step[-1]["trained_tokens"]
    assert info["result"]["trained_tokens"] > info["data"]["trained_tokens"]
    assert (run.adapter / "adapter_model.safetensors").is_file()
    assert not list(out.glob("*.tmp*")) and not list(out.parent.glob(".ddp-run*"))
    # Only one "Done" line: the other process stays quiet.
    assert (result.stdout + result.stderr).count("Done: ") == 1
