"""bf16 on a CPU that computes it natively: how much faster, and does a short run learn as well?

    .venv/bin/python bench/cpu_bf16.py [--repeats 3] [--steps 12] [--write]

Speed: `ducktune train examples/identity.yaml` (the built-in SmolLM2-135M, LoRA r16, batch 4,
cutoff 256) for --steps optimizer steps, model.dtype float32 and bfloat16 alternating, each run its
own process; trained tokens/s from metrics.jsonl between the first and the last logged step (the
first step's warm-up left out). Ratio: median over alternations of bf16 / fp32 in the same pair.
Learning: the quickstart (`ducktune quickstart`, no export) once in each dtype, persona answers
on its 28 trained questions and bleed on the general prompts. Writes bench/results/cpu_bf16.json;
--write also renders the CPU-BF16 block of bench/RESULTS.md from it. On a CPU without AVX512-BF16
or AMX it refuses (bf16 would be emulated there, many times slower).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "cpu_bf16.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- CPU-BF16:BEGIN (bench/cpu_bf16.py --write) -->", "<!-- CPU-BF16:END -->"
DTYPES = ("float32", "bfloat16")


def train_tokens_per_s(dtype: str, steps: int, workdir: Path) -> float:
    """Trained tokens/s of one `ducktune train` process (steps 2..last)."""
    out = workdir / f"speed-{dtype}"
    subprocess.run([str(Path(sys.executable).parent / "ducktune"), "train", str(ROOT / "examples" / "identity.yaml"),
                    "--no-progress", "--set", f"model.dtype={dtype}", "--set", f"train.max_steps={steps}",
                    "--set", "train.logging_steps=1", "--set", "train.save_steps=1000", "--set", "output.overwrite=true",
                    "--set", f"output.dir={out}"], check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    return (rows[-1]["trained_tokens"] - rows[0]["trained_tokens"]) / (rows[-1]["time"] - rows[0]["time"])


def quickstart(dtype: str, workdir: Path) -> dict:
    """The demo's persona and bleed counts in one dtype (its own process)."""
    script = ("import json, sys; from ducktune.quickstart import run_quickstart; "
              f"s = run_quickstart(out={str(workdir / ('qs-' + dtype))!r}, export=False, overrides=('model.dtype={dtype}',)); "
              "print('RESULT ' + json.dumps(s))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {"persona_hits": summary["persona_hits"], "persona_total": summary["persona_total"],
            "bleed": summary["bleed"], "bleed_prompts": summary["bleed_prompts"],
            "seconds": round(time.perf_counter() - started, 1)}


def render(measured: dict) -> str:
    speed, qs = measured["speed"], measured["quickstart"]
    ratios = speed["ratios"]
    lines = [BEGIN, "",
             f"Measured {measured['date']} by `bench/cpu_bf16.py --write` ({measured['cpu']}, {measured['threads']} threads; "
             f"source: bench/results/cpu_bf16.json).", "",
             "| | float32 | bfloat16 |", "|---|---:|---:|",
             f"| trained tokens/s, `examples/identity.yaml`, median of {len(ratios)} | "
             f"{statistics.median(speed['float32']):.0f} | {statistics.median(speed['bfloat16']):.0f} |",
             f"| quickstart persona (trained questions) | {qs['float32']['persona_hits']}/{qs['float32']['persona_total']} | "
             f"{qs['bfloat16']['persona_hits']}/{qs['bfloat16']['persona_total']} |",
             f"| quickstart bleed (general prompts) | {qs['float32']['bleed']}/{qs['float32']['bleed_prompts']} | "
             f"{qs['bfloat16']['bleed']}/{qs['bfloat16']['bleed_prompts']} |",
             f"| quickstart process, wall time (s) | {qs['float32']['seconds']:.0f} | {qs['bfloat16']['seconds']:.0f} |",
             "", f"bf16 / fp32 trained tokens/s, pair by pair: median {statistics.median(ratios):.2f}x "
             f"(min {min(ratios):.2f}, max {max(ratios):.2f}).", "", END]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fp32/bf16 alternations for the speed")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per speed run")
    parser.add_argument("--write", action="store_true", help="render the CPU-BF16 block of bench/RESULTS.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from ducktune.models.device import cpu_computes_bf16

    if not cpu_computes_bf16():
        raise SystemExit("this CPU has no AVX512-BF16 or AMX: bf16 would be emulated; nothing to measure")

    speed: dict = {dtype: [] for dtype in DTYPES}
    with tempfile.TemporaryDirectory(prefix="ducktune-bf16-") as tmp:
        for i in range(args.repeats):
            order = DTYPES if i % 2 == 0 else DTYPES[::-1]  # alternate which goes first
            pair = {dtype: train_tokens_per_s(dtype, args.steps, Path(tmp)) for dtype in order}
            for dtype in DTYPES:
                speed[dtype].append(round(pair[dtype], 1))
            print(f"alternation {i + 1}: " + ", ".join(f"{d} {pair[d]:.1f} tok/s" for d in DTYPES), flush=True)
        speed["ratios"] = [round(b / f, 3) for f, b in zip(speed["float32"], speed["bfloat16"])]
        qs = {dtype: quickstart(dtype, Path(tmp)) for dtype in DTYPES}
        print(f"quickstart: {qs}", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    measured = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "threads": os.cpu_count(), "steps": args.steps,
                "speed": speed, "quickstart": qs}
    from ducktune.io import write_json

    write_json(RESULTS_JSON, measured, indent=1)
    block = render(measured)
    print(block)
    if args.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from blocks import rewrite_block

        rewrite_block(RESULTS_MD, BEGIN, END, block, missing="## CPU bf16\n\n" + block)


if __name__ == "__main__":
    main()
