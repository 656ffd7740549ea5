"""The most trained tokens/s any side built on transformers' decoder, PEFT's LoRA and the Trainer can
reach on the SFT bench's work, against TRL tuned and ducktune, measured side by side.

    .venv/bin/python bench/ceiling.py [--models smollm2-135m] [--repeats 5] [--write]

Three sides per model, each run in its own process (bench/sides.py), alternating in rotating order,
on the SFT block's work (bench/run.py's `work_spec`: the same chats, cutoff, batch, LoRA and threads):
- "tuned": TRL's SFTTrainer tuned, as in the SFT block;
- "ducktune": ducktune's recipe, as in the SFT block;
- "bound": ducktune's recipe with its loss replaced by `sides.FreeLoss`, which costs nothing (no LM
  head, no cross-entropy: the trained positions' hidden states times a fixed vector). Everything else
  runs as in a real step: the decoder's forward and its backward into every adapter, the optimizer, the
  Trainer's loop, packing. A real side computes a loss on top of that work, so none that runs this
  decoder through the Trainer on this work can beat the bound: bound / TRL tuned is the highest tuned
  ratio within reach of such a side, and the bound's useful FLOP/s (the decoder's work only:
  bench/run.py's `model_flops` without the LM head), over the matmul peak measured in the same run,
  is the decoder's own share of the peak.

Medians (min-max) and ratios of medians. Writes bench/results/ceiling.json; --write renders the CEILING
block of bench/RESULTS.md from it; --render renders from the committed JSON without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

RESULTS_JSON = HERE / "results" / "ceiling.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- CEILING:BEGIN (bench/ceiling.py --write) -->", "<!-- CEILING:END -->"
SIDES = ("tuned", "ducktune", "bound")
LABELS = {"tuned": "TRL SFTTrainer, tuned", "ducktune": "ducktune",
          "bound": "bound: ducktune's step with a free loss (no LM head, no cross-entropy)"}


def measure_model(key: str, repeats: int, threads: int, root: Path, log) -> dict:
    """Every run of the three sides on one model's bench work (rotating order), with the decoder's useful FLOPs."""
    from run import CPU_DEFAULTS, model_flops, run_side, side_order, work_spec

    from ducktune.models.loading import model_config

    samples, cutoff = CPU_DEFAULTS[key]
    spec = work_spec(key, samples, cutoff, root, "cpu", "float32", threads)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for repeat in range(repeats):
        for side in side_order(repeat, SIDES):
            started = time.perf_counter()
            result = run_side({**spec, "side": side}, Path(spec["workdir"]))
            if result["counted_trained_tokens"] != result["dataset_trained_tokens"]:
                raise SystemExit(f"{key}: {side} trained {result['counted_trained_tokens']} tokens, the data holds "
                                 f"{result['dataset_trained_tokens']}: the work differs")
            runs[side].append({"tokens_per_s": result["dataset_trained_tokens"] / result["train_seconds"],
                               "steps": result["steps"], "packing": result["packing"]})
            log(f"  {key} {side} #{repeat + 1}: {runs[side][-1]['tokens_per_s']:.1f} trained tok/s, "
                f"{result['steps']} steps ({time.perf_counter() - started:.0f} s)")
    decoder_flops = model_flops(model_config(Path(spec["model"])), result["dataset_tokens"], 0, result["lengths"], 16)
    return {"key": key, "samples": samples, "cutoff": cutoff, "trained_tokens": result["dataset_trained_tokens"],
            "decoder_flops": decoder_flops, "runs": runs}


def summarize(model: dict, peak: float) -> dict:
    """Medians per side, the three ratios, and the bound's decoder FLOP/s over the peak."""
    tps = {side: [r["tokens_per_s"] for r in model["runs"][side]] for side in SIDES}
    median = {side: statistics.median(values) for side, values in tps.items()}
    bound_seconds = model["trained_tokens"] / median["bound"]
    return {"key": model["key"], "median": median, "min": {s: min(v) for s, v in tps.items()},
            "max": {s: max(v) for s, v in tps.items()},
            "bound_over_tuned": median["bound"] / median["tuned"],
            "ducktune_over_tuned": median["ducktune"] / median["tuned"],
            "ducktune_over_bound": median["ducktune"] / median["bound"],
            "bound_decoder_flops_per_s": model["decoder_flops"] / bound_seconds,
            "bound_decoder_fraction": model["decoder_flops"] / bound_seconds / peak}


def render(measured: dict) -> str:
    peak = max(measured["matmul_peak"])
    lines = [BEGIN, "",
             f"Measured {measured['date']} by `bench/ceiling.py --write` ({measured['threads']} threads, "
             f"{measured['repeats']} alternations of {', '.join(SIDES)}, each run its own process; matmul peak "
             f"{peak / 1e9:.1f} GFLOP/s in the same run; load average (1 min) before / after: "
             f"{measured['load_average'][0]:.2f} / {measured['load_average'][1]:.2f}; source: bench/results/ceiling.json). "
             "The SFT block's work and settings; medians (min-max).", "",
             "| model | side | trained tok/s | / TRL tuned |", "|---|---|---:|---:|"]
    tail, rows = [], [summarize(model, peak) for model in measured["models"]]
    for model, row in zip(measured["models"], rows):
        for side in SIDES:
            ratio = row["median"][side] / row["median"]["tuned"]
            lines.append(f"| {model['key']} | {LABELS[side]} | {row['median'][side]:.1f} "
                         f"({row['min'][side]:.1f}-{row['max'][side]:.1f}) | {ratio:.2f}x |")
        tail.append(f"- {model['key']} ({model['samples']} chats, cutoff {model['cutoff']}): ducktune reaches "
                    f"{row['ducktune_over_bound']:.0%} of the bound; the bound's decoder work runs at "
                    f"{row['bound_decoder_flops_per_s'] / 1e9:.1f} GFLOP/s, {row['bound_decoder_fraction']:.0%} of "
                    "the matmul peak (useful FLOPs without the LM head, over the bound's time).")
    lines += [""] + tail + ["", "```text"]
    for model, row in zip(measured["models"], rows):
        prefix = "" if model["key"] == "qwen2-scaled" else model["key"].split("-")[0] + "_"
        lines += [f"{prefix}ceiling_ratio_tuned: {row['bound_over_tuned']:.3f}",
                  f"{prefix}ceiling_decoder_flops_fraction: {row['bound_decoder_fraction']:.3f}"]
    lines += ["```", "", END]
    return "\n".join(lines)


def main() -> None:
    import datetime

    from blocks import show_block
    from run import matmul_peak

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m"],
                        choices=["qwen2-scaled", "smollm2-135m", "tiny", "tiny-llama"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=RESULTS_JSON, help="where the measurement goes")
    parser.add_argument("--write", action="store_true", help="render the CEILING block of bench/RESULTS.md")
    parser.add_argument("--render", action="store_true", help="measure nothing: render from the committed JSON")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats: at least 1")
    if args.render:
        measured = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        load_before, peak_before = os.getloadavg()[0], matmul_peak(args.threads, "cpu", "float32")
        with tempfile.TemporaryDirectory() as tmp:
            models = [measure_model(key, args.repeats, args.threads, Path(tmp), print) for key in args.models]
        measured = {"date": datetime.date.today().isoformat(), "threads": args.threads, "repeats": args.repeats,
                    "matmul_peak": [peak_before, matmul_peak(args.threads, "cpu", "float32")],
                    "load_average": [load_before, os.getloadavg()[0]], "models": models}
        from ducktune.io import write_text

        write_text(args.json, json.dumps(measured, indent=1) + "\n")
    show_block(render(measured), args.write or args.render, RESULTS_MD, BEGIN, END, missing=render(measured))


if __name__ == "__main__":
    main()
