"""Benchmark: `ducktune data check` on a 100,000-record JSONL file of short chats.

Generates the file (deterministic; one and two-turn chats, some with a system prompt,
a few bad records), then times the real command line end to end, with the built-in
model's tokenizer (token statistics) and with --no-tokens (structure only). Target: the
full check under 30 s on a 2-core machine.

    .venv/bin/python bench/data_check.py [--records 100000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["the ocean", "bread", "Python lists", "the moon", "tea", "bicycles", "rain", "chess", "music", "maps"]


def make_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        messages = []
        if i % 5 == 0:
            messages.append({"role": "system", "content": "You are a concise assistant."})
        messages += [{"role": "user", "content": f"Tell me one fact about {topic} (#{i})."},
                     {"role": "assistant", "content": f"Here is a fact about {topic}: it is number {rng.randint(1, 999)}."}]
        if i % 3 == 0:
            messages += [{"role": "user", "content": "And another?"},
                         {"role": "assistant", "content": f"Another one: {topic} is mentioned {rng.randint(1, 50)} times."}]
        records.append({"messages": messages})
    # A few bad records, so the report has problems to list (the exit code is then 2).
    for i in range(0, n, n // 5 or 1):
        records[i] = {"messages": [{"role": "user", "content": "No answer here"}]}
    return records


def time_check(path: Path, *extra: str) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, exit code, output) of one `ducktune data check` run."""
    ducktune = Path(sys.executable).with_name("ducktune")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(ducktune), "data", "check", str(path), *extra], capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode, proc.stdout + proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--keep", help="write the generated file here (default: a temporary file)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ducktune-bench-"))
    path = Path(args.keep) if args.keep else folder / "chats.jsonl"
    records = make_records(args.records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    print(f"{path}: {len(records):,} records, {path.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs")

    # Warm-up: the built-in tokenizer is cached on first use (and imports warm the page cache).
    time_check(path, "--no-tokens")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    structure, structure_cpu, rc_structure, _ = time_check(path, "--no-tokens")
    full, full_cpu, rc_full, output = time_check(path)
    print(output.rstrip().split("Problems")[0].rstrip())
    print(f"\nducktune data check --no-tokens: {structure:.1f} s wall, {structure_cpu:.1f} s CPU (exit {rc_structure})")
    print(f"ducktune data check (token stats, built-in tokenizer): {full:.1f} s wall, {full_cpu:.1f} s CPU "
          f"(exit {rc_full})")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"target < 30 s: {'met' if full < 30 else 'NOT met'}"
          + ("" if full < 30 or os.getloadavg()[0] < os.cpu_count() else " (the machine is shared and busy: see the CPU time)"))
    if not args.keep:
        path.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
