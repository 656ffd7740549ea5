"""bench/run.py end to end in its smallest configuration, so the benchmark script cannot rot.

Runs `bench/run.py --quick` (a tiny Qwen2-shaped model, 16 short chats, TRL's SFTTrainer and
ducktune's recipe in their own subprocesses) and checks the report it prints: both sides
trained the same tokens (the script refuses otherwise), the table is there, and the last two
lines are the machine-readable ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_prints_parseable_ratios(tmp_path):
    pytest.importorskip("trl")
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].startswith("throughput_ratio: ") and lines[-1].startswith("memory_ratio: ")
    throughput = float(lines[-2].split(": ")[1])
    memory = float(lines[-1].split(": ")[1])
    assert throughput > 0 and memory > 0
    assert any(line.startswith("| tiny | ducktune |") for line in lines)
    measured = json.loads(out.read_text())
    result = measured["results"][0]
    # The ratios printed are the ones measured, and both sides trained on the same tokens.
    assert abs(result["ducktune_tps"] / result["baseline_tps"] - throughput) < 1e-3
    runs = result["runs"]
    assert runs["baseline"][0]["counted_trained_tokens"] == runs["ducktune"][0]["counted_trained_tokens"] > 0
