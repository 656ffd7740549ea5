"""RESULTS.md's GPU block from the logs of a GPU bench that the lease cut off before its JSON.

    .venv/bin/python bench/gpu_log.py --write     # renders bench/results/gpu/log_*.txt into the GPU block

bench/gpu_bench.sh runs bench/run.py once per model on a lent CUDA machine; each run prints one
line per side run (`  MODEL SIDE #N: T trained tok/s, peak P GiB, S steps, held-out loss L (W s)`)
and writes its JSON only at the end. When the device time ran out first, the printed lines are
all there is: this script reads them back (the logs are committed beside the JSONs) and renders
the runs that finished, per side the median with min-max and how many runs it is over, so the
block never claims alternations that did not happen. A complete run's JSON renders the same
block instead (`bench/run.py --from-json`).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sft_report import GPU_BEGIN, GPU_END, SHORT, SIDE_NAMES, SIDES, _range  # noqa: E402

LOGS = HERE / "results" / "gpu"
RUN = re.compile(r"^\s+(?P<model>\S+) (?P<side>baseline|tuned|ducktune) #(?P<n>\d+): (?P<tps>[\d.]+) trained tok/s, "
                 r"peak (?P<peak>[\d.]+) GiB, (?P<steps>\d+) steps, held-out loss (?P<loss>[\d.]+) \((?P<wall>\d+) s\)$")
CASE = re.compile(r"^(?P<model>\S+): (?P<chats>\d+) chats, cutoff (?P<cutoff>\d+), batch (?P<batch>\d+) x accum "
                  r"(?P<accum>\d+), (?P<repeats>\d+) alternation")
PEAK = re.compile(r"^matmul peak \((?P<dtype>\w+), (?P<threads>\d+) threads\): (?P<flops>[\d.]+) GFLOP/s$")


def parse_log(text: str) -> dict:
    """One model's log: its machine lines, settings, matmul peak and finished side runs (in run order)."""
    out: dict = {"machine": [], "runs": [], "case": None, "peak_gflops": None}
    for line in text.splitlines():
        if m := RUN.match(line):
            out["runs"].append({"side": m["side"], "n": int(m["n"]), "tps": float(m["tps"]),
                                "peak_gib": float(m["peak"]), "steps": int(m["steps"]), "loss": float(m["loss"]),
                                "wall_s": int(m["wall"]), "model": m["model"]})
        elif m := CASE.match(line):
            out["case"] = {k: (v if k == "model" else int(v)) for k, v in m.groupdict().items()}
        elif m := PEAK.match(line):
            out["peak_gflops"], out["dtype"] = float(m["flops"]), m["dtype"]
        elif line.startswith(("CPU:", "GPU:", "python ")):
            out["machine"].append(line.strip())
    if out["case"] is None:
        raise SystemExit("no bench/run.py case line in the log (was it cut off before the first model?)")
    return out


def spread(values: list[float], fmt: str) -> str:
    """Median (min-max), as the JSON-rendered tables write it."""
    return _range(statistics.median(values), min(values), max(values), lambda x: format(x, fmt))


def model_rows(log: dict) -> list[str]:
    """Per side: runs finished, trained tok/s and peak memory (median, min-max), steps; then the ratios."""
    model, runs = log["case"]["model"], log["runs"]
    by_side = {side: [r for r in runs if r["side"] == side] for side in SIDES}
    rows = []
    for side in SIDES:
        rs = by_side[side]
        if not rs:
            rows.append(f"| {model} | {SIDE_NAMES[side]} | 0 of {log['case']['repeats']} | | | | |")
            continue
        rows.append(f"| {model} | {SIDE_NAMES[side]} | {len(rs)} of {log['case']['repeats']} | "
                    f"{spread([r['tps'] for r in rs], '.1f')} | {spread([r['peak_gib'] for r in rs], '.2f')} GiB | "
                    f"{rs[0]['steps']} | {statistics.median(r['loss'] for r in rs):.4f} |")
    mine = by_side["ducktune"]
    for side in ("baseline", "tuned"):
        if mine and by_side[side]:
            tps = statistics.median(r["tps"] for r in mine) / statistics.median(r["tps"] for r in by_side[side])
            mem = (statistics.median(r["peak_gib"] for r in mine)
                   / statistics.median(r["peak_gib"] for r in by_side[side]))
            rows.append(f"| {model} | **ducktune / {SHORT[side]}** | | **{tps:.2f}x** | **{mem:.2f}x** | | |")
    return rows


def cut_note(logs: dict[str, dict]) -> str:
    """Whether every model finished every alternation of every side; if not, which were cut off."""
    short = [f"{log['case']['model']} {len(log['runs'])} of {len(SIDES) * log['case']['repeats']} side runs"
             for log in logs.values() if len(log["runs"]) < len(SIDES) * log["case"]["repeats"]]
    if not short:
        return "Every alternation finished."
    return ("**Cut off by the lease**: the device time ran out first (" + ", ".join(short) + "), so no JSON "
            "was written; the table holds every side run that finished (the 'runs' column) and nothing else.")


def gpu_block(logs: dict[str, dict]) -> str:
    first = next(iter(logs.values()))
    peaks = " / ".join(f"{log['peak_gflops'] / 1e3:.0f}" for log in logs.values() if log["peak_gflops"])
    lines = [GPU_BEGIN,
             f"Rendered by `bench/gpu_log.py --write` from the logs of `bench/gpu_bench.sh` "
             f"({', '.join(f'bench/results/gpu/{name}' for name in logs)}): {'; '.join(first['machine'])}; "
             f"bf16 matmul ceiling {peaks} TFLOP/s (8192-square, before each model's runs).",
             "",
             cut_note(logs) + " Settings as the CPU bench's (LoRA r=16 on all linear projections, "
             "batch 1 x accumulation 1, each side at its default optimizer, sides in rotating order), bf16 "
             "on CUDA, " + "; ".join(f"{log['case']['model']}: {log['case']['chats']} chats at cutoff "
                                      f"{log['case']['cutoff']}" for log in logs.values()) + ".",
             "",
             "| model | side | runs | trained tok/s | peak memory (max allocated) | steps | held-out loss |",
             "|---|---|---|---|---|---|---|"]
    for log in logs.values():
        lines += model_rows(log)
    walls = [r["wall_s"] for log in logs.values() for r in log["runs"]]
    lines += ["",
              f"- Each side run took {min(walls)}-{max(walls)} s of wall time including process start, model "
              "loading and the held-out evaluation; at batch 1 these small models leave most of an H200 idle, "
              "so the ratios measure per-step overhead more than the GPU.",
              "- Peak memory: TRL's defaults checkpoint activations; ducktune's plan is not memory-bound on a "
              "139 GiB GPU. The logs do not record the setup it chose (a complete run's JSON does), so why "
              "ducktune's peak on the SmolLM2 shape is above TRL tuned's is left open here.",
              GPU_END]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, nargs="+", default=sorted(LOGS.glob("log_*.txt")))
    parser.add_argument("--write", action="store_true", help="render the GPU block of --results-md")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if not args.logs:
        raise SystemExit(f"no logs under {LOGS}")
    logs = {path.name: parse_log(path.read_text(encoding="utf-8")) for path in args.logs}
    block = gpu_block(logs)
    print(block)
    if args.write:
        from blocks import rewrite_block

        rewrite_block(args.results_md, GPU_BEGIN, GPU_END, block)


if __name__ == "__main__":
    main()
