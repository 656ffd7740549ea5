"""The memory any Trainer + PEFT side holds before its first step, against the SFT bench's peaks.

    .venv/bin/python bench/memory_floor.py [--repeats 3] [--write]

Each measurement is a fresh process (as every bench side is): resident memory (VmRSS) after
importing what a side that trains with transformers' Trainer and PEFT imports (torch,
transformers.trainer, peft: ducktune and TRL's SFTTrainer both do; TRL adds itself, ~5 MiB), then
after loading the bench's model in float32 and reading every weight once (a step reads them all: the
LM head's matmul streams the whole tied embedding). That sum is a floor: no side of the bench can
peak below it, whatever it does with activations, optimizer state or the heap. Against the SFT
block's committed measurement (bench/results/bench.json): the lowest peak-memory ratio any such
side could reach vs TRL at its defaults, next to ducktune's measured ratio. Medians over --repeats
processes. Writes bench/results/memory_floor.json; --write renders RESULTS.md's MEMORY-FLOOR block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

RESULTS_JSON = HERE / "results" / "memory_floor.json"
BENCH_JSON = HERE / "results" / "bench.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- MEMORY-FLOOR:BEGIN (bench/memory_floor.py --write) -->", "<!-- MEMORY-FLOOR:END -->"
MiB = 2**20

# Runs in a fresh process: prints {"imports": bytes, "weights": bytes} (VmRSS after each stage).
PROBE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
import torch, transformers.trainer, peft
from transformers import AutoModelForCausalLM
torch.set_num_threads(2)
imports = rss()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
with torch.no_grad():
    touched = sum(float(p.sum()) for p in model.parameters())  # every page of every weight resident
print(json.dumps({"imports": imports, "weights": rss(), "parameters": sum(p.numel() for p in model.parameters())}))
"""


def measure_once(folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder)], check=True, capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
                               "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(models: list[str], repeats: int) -> dict:
    from run import build_model

    folders = {key: build_model(key) for key in models}
    samples: dict[str, list[dict]] = {key: [] for key in models}
    for _ in range(repeats):  # models alternate, so a noisy moment spreads over both
        for key in models:
            samples[key].append(measure_once(folders[key]))
    return {key: {"imports": [s["imports"] for s in runs], "weights": [s["weights"] for s in runs],
                  "parameters": runs[0]["parameters"]} for key, runs in samples.items()}


def summarize(measured: dict, bench: dict) -> list[dict]:
    """One row per model of the bench: the floor (medians) and the bench's peaks (its medians)."""
    rows = []
    for result in bench["results"]:
        floor = measured["models"].get(result["key"])
        if floor is None:
            continue
        sides = result["sides"]
        imports, weights = statistics.median(floor["imports"]), statistics.median(floor["weights"])
        rows.append({"model": result["label"], "imports": imports, "floor": weights,
                     "trl_defaults": sides["baseline"]["peak"], "ducktune": sides["ducktune"]["peak"],
                     "floor_ratio": weights / sides["baseline"]["peak"],
                     "ducktune_ratio": sides["ducktune"]["peak"] / sides["baseline"]["peak"]})
    return rows


def render(measured: dict, bench: dict) -> str:
    lines = [BEGIN, "",
             f"Measured {measured['date']} by `bench/memory_floor.py --write` ({measured['repeats']} fresh processes "
             f"per model, medians; source: bench/results/memory_floor.json), against the SFT block's peaks "
             f"(bench/results/bench.json, measured {bench['date']}).", "",
             "| model | imports (torch, transformers' Trainer, PEFT) | + weights, float32, all read | "
             "TRL defaults' peak | floor / TRL defaults | ducktune / TRL defaults | ducktune above the floor |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in summarize(measured, bench):
        lines.append(f"| {row['model']} | {row['imports'] / MiB:.0f} MiB | {row['floor'] / MiB:.0f} MiB | "
                     f"{row['trl_defaults'] / MiB:.0f} MiB | {row['floor_ratio']:.2f}x | {row['ducktune_ratio']:.2f}x | "
                     f"{(row['ducktune'] - row['floor']) / MiB:.0f} MiB |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    import datetime

    from blocks import show_block

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qwen2-scaled", "smollm2-135m"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="render the MEMORY-FLOOR block of bench/RESULTS.md")
    parser.add_argument("--render", action="store_true", help="measure nothing: render from the committed JSON")
    args = parser.parse_args()
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8"))
    if args.render:
        measured = json.loads(RESULTS_JSON.read_text(encoding="utf-8"))
    else:
        measured = {"date": datetime.date.today().isoformat(), "repeats": args.repeats,
                    "models": measure(args.models, args.repeats)}
        from ducktune.io import write_text

        write_text(RESULTS_JSON, json.dumps(measured, indent=1) + "\n")
    show_block(render(measured, bench), args.write or args.render, RESULTS_MD, BEGIN, END,
               missing=render(measured, bench))


if __name__ == "__main__":
    main()
