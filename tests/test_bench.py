"""bench/run.py end to end in its smallest configuration, so the benchmark script cannot rot.

Runs `bench/run.py --quick` (a tiny Qwen2-shaped model, 16 short chats and 6 preference pairs;
TRL's SFTTrainer and DPOTrainer and ducktune's recipe, each in its own subprocess) and checks the
report it prints: both sides trained the same tokens (the script refuses otherwise), the tables
are there, the DPO ratios come before the last two lines, which are the SFT ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ratio(line: str, name: str) -> float:
    assert line.startswith(f"{name}: "), line
    return float(line.split(": ")[1])


@pytest.mark.slow
def test_bench_quick_prints_parseable_ratios(tmp_path):
    pytest.importorskip("trl")
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    throughput, memory = ratio(lines[-2], "throughput_ratio"), ratio(lines[-1], "memory_ratio")
    dpo_throughput, dpo_memory = ratio(lines[-4], "dpo_throughput_ratio"), ratio(lines[-3], "dpo_memory_ratio")
    assert min(throughput, memory, dpo_throughput, dpo_memory) > 0
    assert any(line.startswith("| tiny | ducktune |") for line in lines)
    assert any(line.startswith("| tiny | TRL DPOTrainer |") for line in lines)
    measured = json.loads(out.read_text())
    result = measured["results"][0]
    # The ratios printed are the ones measured, and both sides trained on the same tokens.
    assert abs(result["ducktune_tps"] / result["baseline_tps"] - throughput) < 1e-3
    runs = result["runs"]
    assert runs["baseline"][0]["counted_trained_tokens"] == runs["ducktune"][0]["counted_trained_tokens"] > 0
    dpo = measured["dpo"]
    assert abs(dpo["ducktune_tps"] / dpo["baseline_tps"] - dpo_throughput) < 1e-3
    assert abs(dpo["ducktune_peak"] / dpo["baseline_peak"] - dpo_memory) < 1e-3
    base, duck = dpo["runs"]["baseline"][0], dpo["runs"]["ducktune"][0]
    assert base["counted_trained_tokens"] == duck["counted_trained_tokens"] == dpo["trained_tokens"] > 0
    # Same token ids, order and start: TRL's DPO and ducktune's compute the same losses, step by step.
    assert base["steps"] == duck["steps"] >= 2
    assert dpo["loss_max_difference"] < 1e-3


def test_dpo_results_block_is_generated_from_the_measurement(tmp_path, monkeypatch):
    """bench/RESULTS.md's DPO block is rewritten from the JSON, between its markers, numbers included."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import dpo_bench

    side = lambda tps, peak: {"tokens_per_s": tps, "peak_bytes": peak, "losses": [0.69, 0.5],  # noqa: E731
                              "heldout_reward_accuracy": 0.75}
    dpo = {"label": "m", "pairs": 8, "trained_tokens": 1000, "tokens": 1500, "baseline_tps": 10.0,
           "ducktune_tps": 25.0, "baseline_peak": 4 * 2**30, "ducktune_peak": 2 * 2**30, "plan": 2.2 * 2**30,
           "baseline_steps": 4, "ducktune_steps": 4, "baseline_checkpointing": True, "ducktune_checkpointing": False,
           "loss_max_difference": 2e-6, "runs": {"baseline": [side(10.0, 4 * 2**30)], "ducktune": [side(25.0, 2 * 2**30)]},
           "settings": {"cutoff": 512, "threads": 2, "train": {"lora_r": 16, "lora_alpha": 32, "batch_size": 2,
                                                               "grad_accum": 1, "learning_rate": 5e-5,
                                                               "warmup_ratio": 0.03, "beta": 0.1, "seed": 42}}}
    measured = {"date": "2026-12-03", "seconds": 300, "machine": ["CPU: test"], "matmul_peak": 1e11, "dpo": dpo}
    target = tmp_path / "RESULTS.md"
    target.write_text(f"# head\n\n{dpo_bench.BEGIN}\nold numbers\n{dpo_bench.END}\n\ntail\n", encoding="utf-8")
    monkeypatch.setattr(dpo_bench, "RESULT_JSON", tmp_path / "dpo.json")
    monkeypatch.setattr(dpo_bench, "RESULTS_MD", target)
    dpo_bench.write_results(measured)
    text = target.read_text(encoding="utf-8")
    assert "old numbers" not in text and text.startswith("# head") and text.rstrip().endswith("tail")
    assert "dpo_throughput_ratio: 2.500" in text and "dpo_memory_ratio: 0.500" in text
    assert "| m | **ratio** | **2.50x** | **0.50x** |" in text
    assert json.loads((tmp_path / "dpo.json").read_text())["dpo"]["pairs"] == 8
