"""The DPO demo's numbers for the README: `ducktune quickstart --method dpo`, timed end to end.

    python bench/dpo_demo.py [--runs N] [--adapter-from-sft] [--write]

Runs the demo as a user would (a subprocess of this tree's `ducktune`, without the export),
N times, and reports each run's wall time, the held-out reward accuracy, and the persona
answers on the trained and held-out questions, read from the run.json it writes. With
`--adapter-from-sft` each run first trains the SFT demo (`ducktune quickstart --no-export`, timed
too) and continues its adapter (`--adapter`). `--write` saves bench/results/dpo_demo.json and
rewrites the README's block between the DPO-DEMO markers from it; nothing in that block is typed
by hand. The issue's targets: held-out reward accuracy >= 0.9, persona on >= 80 % of the trained
questions, under 8 minutes on 2 CPU cores.
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

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "dpo_demo.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- DPO-DEMO:BEGIN (bench/dpo_demo.py --write) -->", "<!-- DPO-DEMO:END -->"
TARGETS = {"held_out_reward_accuracy": 0.9, "persona_rate": 0.8, "seconds": 480}


def quickstart(args: list[str], workdir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ducktune", "quickstart", "--no-export", *args], cwd=workdir,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"quickstart {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def run_once(workdir: Path, from_sft: bool) -> dict:
    sft_seconds = None
    args = ["--method", "dpo", "--out", "runs/quickstart-dpo"]
    if from_sft:
        sft_seconds = round(quickstart(["--out", "runs/quickstart"], workdir), 1)
        args += ["--adapter", "runs/quickstart"]
    seconds = quickstart(args, workdir)
    info = json.loads((workdir / "runs" / "quickstart-dpo" / "run.json").read_text(encoding="utf-8"))
    q = info["quickstart"]
    return {"seconds": round(seconds, 1), "sft_seconds": sft_seconds, "train_seconds": info["result"]["train_seconds"],
            "steps": info["result"]["global_step"], **{k: q[k] for k in (
                "held_out_reward_accuracy", "held_out_mean_margin", "pairs_trained", "pairs_held_out", "persona_hits",
                "persona_total", "persona_rate", "base_persona_hits", "held_out_persona_hits")}}


def measure(runs: int, from_sft: bool) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="ducktune-dpo-demo-") as tmp:
        for i in range(runs):
            work = Path(tmp) / f"run-{i}"
            work.mkdir()
            results.append(run_once(work, from_sft))
            print(f"run {i + 1}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    times = [r["seconds"] + (r["sft_seconds"] or 0) for r in results]
    return {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
            "threads": os.environ.get("OMP_NUM_THREADS", "default"), "from_sft": from_sft,
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": results}


def readme_block(result: dict) -> str:
    runs = result["runs"]
    accuracy = ", ".join(f"{r['held_out_reward_accuracy']:.2f}" for r in runs)
    persona = ", ".join(f"{r['persona_hits']}/{r['persona_total']}" for r in runs)
    held = ", ".join(f"{r['held_out_persona_hits']}/{r['pairs_held_out']}" for r in runs)
    command = "ducktune quickstart && ducktune quickstart --method dpo --adapter runs/quickstart" \
        if result["from_sft"] else "ducktune quickstart --method dpo"
    sft = (f" (the SFT demo {statistics.median(r['sft_seconds'] for r in runs):.0f} s of it, median)"
           if result["from_sft"] else "")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    ok_acc = all(r["held_out_reward_accuracy"] >= TARGETS["held_out_reward_accuracy"] for r in runs)
    ok_persona = all(r["persona_rate"] >= TARGETS["persona_rate"] for r in runs)
    ok_time = result["max_s"] < TARGETS["seconds"]
    text = (f"Measured by `bench/dpo_demo.py` on {result['date']} ({result['cores']} cores, torch threads "
            f"{result['threads']}, {len(runs)} run(s), without the export): `{command}` took "
            f"{result['median_s']:.0f} s (median; {result['min_s']:.0f}-{result['max_s']:.0f} s){sft}; "
            f"{runs[0]['pairs_trained']} pairs trained ({runs[0]['steps']} steps), {runs[0]['pairs_held_out']} held out. "
            f"Held-out reward accuracy {accuracy} (target >= {TARGETS['held_out_reward_accuracy']}: {met(ok_acc)}); "
            f"persona answers on the trained questions {persona} (target >= {TARGETS['persona_rate']:.0%}: "
            f"{met(ok_persona)}; base model {runs[0]['base_persona_hits']}), on the held-out ones {held}; "
            f"time target < {TARGETS['seconds'] // 60} min: {met(ok_time)}.")
    return "\n".join([BEGIN, text, END])


def write_readme(result: dict) -> None:
    from blocks import replace_block

    text = README.read_text(encoding="utf-8")
    README.write_text(replace_block(text, BEGIN, END, readme_block(result)), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="demo runs (default 1)")
    parser.add_argument("--adapter-from-sft", action="store_true", help="train the SFT demo first and continue its adapter")
    parser.add_argument("--write", action="store_true", help="write bench/results/dpo_demo.json and the README block")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the README block from dpo_demo.json")
    args = parser.parse_args()
    if args.from_json:
        write_readme(json.loads(RESULT.read_text(encoding="utf-8")))
        return 0
    result = measure(args.runs, args.adapter_from_sft)
    print(json.dumps(result, indent=1))
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        write_readme(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
