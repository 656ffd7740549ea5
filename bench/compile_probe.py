"""Does torch.compile speed up a LoRA training step on this CPU? Eager vs compiled decoder layers.

    .venv/bin/python bench/compile_probe.py [--repeats 3] [--steps 14] [--write]

The built-in SmolLM2-135M with ducktune's LoRA (r16, all linear projections, fp32), one row of
470-512 tokens per step (lengths vary as packed rows do), forward through the decoder, a stand-in
loss on its hidden states, backward and an AdamW step: the part of a ducktune step that compiling
the decoder layers (`layer.compile(dynamic=True)`, PyTorch's in-place module API) can change.
Each run is its own process, with an empty inductor cache so the compile time is a cold one;
eager and compiled runs alternate. Reports the compiled run's first step (compile included), the
median step time of each side after 3 warm-up steps, their ratio pair by pair, and the steps it
takes to earn the compile time back. Writes bench/results/compile_probe.json; --write also renders
the COMPILE block of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "compile_probe.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- COMPILE:BEGIN (bench/compile_probe.py --write) -->", "<!-- COMPILE:END -->"
WARMUP = 3
CHILD = r"""
import json, random, sys, time, torch
from ducktune.config import load_config
from ducktune.models.device import choose_placement
from ducktune.models.loading import load_model
from ducktune.models.sources import resolve_model
from ducktune.train.lora import attach_lora
mode, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads); torch.manual_seed(0)
model = load_model(resolve_model("smollm2-135m"), choose_placement("cpu", "float32"))
model, _ = attach_lora(model, load_config(None, ["lora.r=16", "lora.alpha=32", "lora.dropout=0.0"]).lora)
model.train()
decoder = model.get_base_model().get_decoder()
if mode == "compiled":
    for layer in decoder.layers:
        layer.compile(dynamic=True)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
rng, times = random.Random(0), []
for _ in range(steps):
    ids = torch.randint(0, 49000, (1, rng.choice([470, 480, 500, 505, 512])))
    started = time.perf_counter()
    hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
    (hidden.float() ** 2).mean().backward()
    optimizer.step(); optimizer.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - started)
print("RESULT " + json.dumps(times))
"""


def step_times(mode: str, steps: int, threads: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="ducktune-inductor-") as cache:
        env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps), str(threads)], env=env,
                              check=True, capture_output=True, text=True)
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def summarize(runs: dict) -> dict:
    medians = {mode: [statistics.median(t[WARMUP:]) for t in runs[mode]] for mode in runs}
    ratios = [e / c for e, c in zip(medians["eager"], medians["compiled"])]
    first = [t[0] for t in runs["compiled"]]
    saved = statistics.median(medians["eager"]) - statistics.median(medians["compiled"])
    extra = statistics.median(first) - statistics.median(medians["compiled"])
    return {"eager_step_s": medians["eager"], "compiled_step_s": medians["compiled"], "speedups": ratios,
            "compiled_first_step_s": first, "break_even_steps": round(extra / saved) if saved > 0 else None}


def render(measured: dict) -> str:
    s = measured["summary"]
    even = (f"is earned back after {s['break_even_steps']} steps" if s["break_even_steps"]
            else "is never earned back (compiled steps are not faster)")
    return "\n".join([
        BEGIN, "",
        f"Measured {measured['date']} by `bench/compile_probe.py --write` ({measured['threads']} threads, "
        f"{len(s['speedups'])} alternations, {measured['steps']} steps per run; source: bench/results/compile_probe.json).", "",
        "| | eager | compiled layers |", "|---|---:|---:|",
        f"| median step (s), after {WARMUP} warm-up steps | {statistics.median(s['eager_step_s']):.3f} | "
        f"{statistics.median(s['compiled_step_s']):.3f} |",
        f"| first step (s), cold compile included | | {statistics.median(s['compiled_first_step_s']):.1f} |", "",
        f"Speed-up pair by pair: median {statistics.median(s['speedups']):.2f}x (min {min(s['speedups']):.2f}, "
        f"max {max(s['speedups']):.2f}); the cold compile {even}. So ducktune does not compile: "
        "the step's time is in matmuls that inductor leaves to the same oneDNN/BLAS kernels.", "", END])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=14, help=f"steps per run, more than the {WARMUP} warm-up steps")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="render the COMPILE block of bench/RESULTS.md")
    parser.add_argument("--from-json", action="store_true", help="render the committed JSON again, measure nothing")
    args = parser.parse_args(argv)
    if args.steps <= WARMUP:
        parser.error(f"--steps must exceed the {WARMUP} warm-up steps the medians leave out")
    if args.from_json:
        return write_block(json.loads(RESULTS_JSON.read_text(encoding="utf-8")), args.write)
    runs: dict = {"eager": [], "compiled": []}
    for i in range(args.repeats):
        for mode in (("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")):
            runs[mode].append([round(t, 4) for t in step_times(mode, args.steps, args.threads)])
            print(f"alternation {i + 1} {mode}: median {statistics.median(runs[mode][-1][WARMUP:]):.3f} s, "
                  f"first {runs[mode][-1][0]:.1f} s", flush=True)
    measured = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "steps": args.steps, "runs": runs,
                "summary": summarize(runs)}
    from ducktune.io import write_json

    write_json(RESULTS_JSON, measured, indent=1)
    write_block(measured, args.write)


def write_block(measured: dict, write: bool) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from blocks import show_block

    block = render(measured)
    show_block(block, write, RESULTS_MD, BEGIN, END, missing="## torch.compile on CPU\n\n" + block)


if __name__ == "__main__":
    main()
