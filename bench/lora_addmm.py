"""LoRA as one addmm (lora.fused) against PEFT's own forward: speed, peak memory, same training.

    .venv/bin/python bench/lora_addmm.py [--repeats 3] [--models qwen2-scaled smollm2-135m] [--write]

ducktune's side of the SFT bench (bench/sides.py, the same synthetic chats, cutoff, LoRA r16 on all
linears, batch 1, one pass, each run its own process) with `lora.fused` true and false, alternating
which goes first. Per model: trained tokens/s and peak memory (VmHWM) medians with min-max, the
pair-by-pair speed ratio, and the held-out loss of both (the same up to float rounding, or the
fused layer computes something else). Writes bench/results/lora_addmm.json; --write also renders
the LORA-ADDMM block of bench/RESULTS.md from it.
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
RESULTS_JSON = HERE / "results" / "lora_addmm.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- LORA-ADDMM:BEGIN (bench/lora_addmm.py --write) -->", "<!-- LORA-ADDMM:END -->"
SIDES = {"addmm": True, "peft": False}


def bench_one(key: str, repeats: int, threads: int, root: Path, log) -> dict:
    """Alternating fused / PEFT runs of ducktune's bench side on one model."""
    import run

    samples, cutoff = run.CPU_DEFAULTS[key]
    spec = {**run.work_spec(key, samples, cutoff, root, "cpu", "float32", threads), "side": "ducktune"}
    workdir = Path(spec["workdir"])
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for i in range(repeats):
        order = list(SIDES) if i % 2 == 0 else list(SIDES)[::-1]
        for side in order:
            r = run.run_side({**spec, "train": {**spec["train"], "lora_fused": SIDES[side]}}, workdir)
            runs[side].append({"tps": round(r["dataset_trained_tokens"] / r["train_seconds"], 2),
                               "peak": r["peak_bytes"], "plan": r["plan_bytes"], "heldout": r["heldout_loss"],
                               "steps": r["steps"]})
            log(f"  {key} {side} #{i + 1}: {runs[side][-1]['tps']:.1f} trained tok/s, peak "
                f"{r['peak_bytes'] / 2**30:.3f} GiB, held-out loss {r['heldout_loss']:.6f}")
    ratios = [round(a["tps"] / p["tps"], 3) for a, p in zip(runs["addmm"], runs["peft"])]
    return {"key": key, "samples": samples, "cutoff": cutoff, "repeats": repeats, "runs": runs, "ratios": ratios}


def _cell(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def render(measured: dict) -> str:
    lines = [BEGIN, "", f"Measured {measured['date']} by `bench/lora_addmm.py --write` ({measured['threads']} threads, "
             f"{measured['repeats']} alternations per model, {measured['seconds']} s; source: "
             "bench/results/lora_addmm.json). ducktune's SFT bench side, `lora.fused` true (addmm) vs false "
             "(PEFT's forward), each run its own process.", "",
             "| model | forward | trained tok/s | peak memory (GiB) | plan (GiB) | held-out loss |",
             "|---|---|---:|---:|---:|---:|"]
    for m in measured["models"]:
        for side, label in (("peft", "PEFT's"), ("addmm", "addmm (lora.fused)")):
            rs = m["runs"][side]
            lines.append(f"| {m['key']} | {label} | {_cell([r['tps'] for r in rs], '.1f')} | "
                         f"{_cell([r['peak'] / 2**30 for r in rs], '.3f')} | {rs[0]['plan'] / 2**30:.3f} | "
                         f"{rs[0]['heldout']:.6f} |")
    lines.append("")
    for m in measured["models"]:
        peak = statistics.median(r["peak"] for r in m["runs"]["addmm"]) / statistics.median(
            r["peak"] for r in m["runs"]["peft"])
        lines.append(f"- {m['key']}: addmm / PEFT trained tokens/s pair by pair: median "
                     f"{statistics.median(m['ratios']):.3f}x (min {min(m['ratios']):.3f}, max {max(m['ratios']):.3f}); "
                     f"peak memory {peak:.3f}x.")
    return "\n".join(lines + ["", END])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="addmm/PEFT alternations per model")
    parser.add_argument("--models", nargs="+", default=["qwen2-scaled", "smollm2-135m"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="render the LORA-ADDMM block of bench/RESULTS.md")
    parser.add_argument("--from-json", action="store_true", help="only re-render from bench/results/lora_addmm.json")
    args = parser.parse_args(argv)
    if args.from_json:
        from blocks import show_block

        block = render(json.loads(RESULTS_JSON.read_text(encoding="utf-8")))
        return show_block(block, args.write, RESULTS_MD, BEGIN, END, missing="## LoRA as one addmm\n\n" + block)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ducktune-addmm-") as tmp:
        models = [bench_one(key, args.repeats, args.threads, Path(tmp), lambda t: print(t, flush=True))
                  for key in args.models]
    measured = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "repeats": args.repeats,
                "seconds": round(time.perf_counter() - started), "models": models}
    from ducktune.io import write_json

    write_json(RESULTS_JSON, measured, indent=1)
    block = render(measured)
    print(block)
    if args.write:
        from blocks import rewrite_block

        rewrite_block(RESULTS_MD, BEGIN, END, block, missing="## LoRA as one addmm\n\n" + block)


if __name__ == "__main__":
    main()
