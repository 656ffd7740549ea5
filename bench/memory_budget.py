"""Is train.memory_budget honoured? SmolLM2-135M LoRA with a budget of half TRL's measured peak.

    .venv/bin/python bench/memory_budget.py                  # budget 2554 MiB (half of TRL's 4.99 GiB)
    .venv/bin/python bench/memory_budget.py --budget 3GiB --steps 2

The bench's setup (bench/run.py's SmolLM2 case): synthetic chats (bench/synthetic.py, seed 0),
cutoff 512, batch 4, LoRA r16 / alpha 32 / dropout 0.05 on all linear projections, fp32 on CPU.
The training runs in its own process so its peak resident memory (VmHWM, the measure
bench/sides.py reports) is that run's alone. Writes bench/results/memory_budget.json: the
budget, the plan ducktune chose (micro-batch, accumulation, checkpointing, loss chunk, its
estimate by part), the measured peak and trained tokens/s, and renders bench/RESULTS.md's block
between the MEMORY-BUDGET markers from that JSON (`--from-json` re-renders without measuring).
The last lines are machine-readable:

    memory_budget_bytes: B
    memory_budget_peak_bytes: P
    memory_budget_honoured: true|false
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# TRL SFTTrainer's measured peak on SmolLM2-135M at these settings (bench/RESULTS.md, CPU fp32).
TRL_PEAK_GIB = 4.99
DEFAULT_BUDGET = f"{int(TRL_PEAK_GIB * 1024 / 2)}MiB"  # 2554MiB, half of TRL's peak


RESULT = HERE / "results" / "memory_budget.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- MEMORY-BUDGET:BEGIN (bench/memory_budget.py) -->", "<!-- MEMORY-BUDGET:END -->"


def results_block(record: dict) -> str:
    """RESULTS.md's memory-budget section, every figure read from the recorded JSON."""
    gib, plan = 1024 ** 3, record["plan"]
    parts = ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in plan["parts"].items())
    verdict = "honoured" if record["honoured"] else "NOT honoured"
    lines = [
        BEGIN, "## Memory budget (train.memory_budget)", "",
        f"Measured by `bench/memory_budget.py` on {record['date']} ({record['machine']}, {record['threads']} thread(s)): "
        f"{record['model']} LoRA ({record['lora']}), cutoff {record['cutoff']}, batch {record['batch_size']}, "
        f"`train.memory_budget: {record['budget']}` (half of TRL SFTTrainer's peak, {record['trl_peak_gib']} GiB, "
        f"at these settings), {record['steps']} optimizer steps.", "",
        "| budget | plan chose | plan estimate | measured peak (VmHWM) | trained tok/s |",
        "|---|---|---|---|---|",
        f"| {record['budget_bytes'] / gib:.2f} GiB | micro-batch {plan['batch_size']} x accumulation {plan['grad_accum']}, "
        f"checkpointing {'on' if plan['gradient_checkpointing'] else 'off'}, loss chunk {plan['loss_chunk_size']} | "
        f"{plan['peak_bytes'] / gib:.2f} GiB | {record['measured_peak_bytes'] / gib:.2f} GiB "
        f"({record['measured_peak_bytes'] / record['budget_bytes']:.0%} of the budget: {verdict}) | "
        f"{record['trained_tokens_per_s']:.1f} |", "",
        f"Plan by part: {parts}.", END,
    ]
    return "\n".join(lines)


def write_results_block(record: dict) -> None:
    from blocks import replace_block

    text = RESULTS_MD.read_text(encoding="utf-8")
    block = results_block(record)
    RESULTS_MD.write_text(replace_block(text, BEGIN, END, block, missing=block), encoding="utf-8")


def write_chats(model: Path, path: Path, n: int, seed: int = 0) -> None:
    from synthetic import synthetic_chats, tokens_per_word

    from ducktune.models.loading import load_tokenizer

    ratio = tokens_per_word(load_tokenizer(model))
    with path.open("w", encoding="utf-8") as handle:
        for chat in synthetic_chats(n, seed=seed, tokens_per_word=ratio):
            handle.write(json.dumps(chat) + "\n")


def child(spec: dict) -> dict:
    """One training run in this process: the plan it chose, its peak RSS and its speed."""
    import torch

    from ducktune.config import RunConfig
    from ducktune.train.recipe import train

    torch.set_num_threads(spec["threads"])
    config = RunConfig.model_validate({
        "model": {"name_or_path": spec["model"], "device": "cpu", "dtype": "float32"},
        "data": {"datasets": [spec["data"]], "cutoff_len": 512, "val_ratio": 0.0},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "train": {"batch_size": 4, "grad_accum": 1, "max_steps": spec["steps"], "num_epochs": 1,
                  "optimizer": "adamw_torch", "seed": 42, "logging_steps": 1, "save_steps": 10_000,
                  "num_threads": spec["threads"], "memory_budget": spec["budget"],
                  **({"gradient_checkpointing": spec["checkpointing"]} if spec.get("checkpointing") else {})},
        "output": {"dir": spec["output"], "overwrite": True},
    })
    lines: list[str] = []
    cpu = time.process_time()
    info = train(config, log=lambda *a: lines.append(" ".join(map(str, a))), progress=False, compare=False).info
    # CPU seconds of the whole run (load + tokenize + train): on a shared machine a fairer speed
    # comparison between setups than wall time, with one thread.
    return {"plan": info["memory_plan"], "result": info["result"], "log": lines,
            "cpu_seconds": time.process_time() - cpu}


def measure(model: Path, budget: str, steps: int, threads: int, chats: int, checkpointing: str | None = None) -> dict:
    """Train in a fresh process with this budget; returns child()'s answer plus the budget in bytes."""
    from ducktune.train.plan import parse_memory

    with tempfile.TemporaryDirectory(prefix="ducktune-budget-") as tmp:
        data = Path(tmp) / "chats.jsonl"
        write_chats(model, data, chats)
        spec = {"model": str(model), "data": str(data), "budget": budget, "steps": steps, "threads": threads,
                "output": str(Path(tmp) / "run"), "checkpointing": checkpointing}
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_VERBOSITY="error")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                             text=True, env=env, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the training run failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result["budget_bytes"] = parse_memory(budget)
    result["wall_seconds"] = time.perf_counter() - started
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default=DEFAULT_BUDGET, help=f"train.memory_budget (default {DEFAULT_BUDGET})")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps (default 2)")
    parser.add_argument("--chats", type=int, default=16, help="synthetic chats (default 16)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpointing", choices=["auto", "on", "off"], default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "memory_budget.json"))
    parser.add_argument("--from-json", action="store_true", help="only re-render RESULTS.md's block from --out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.from_json:
        write_results_block(json.loads(Path(args.out).read_text(encoding="utf-8")))
        return

    from ducktune.io import write_json
    from ducktune.models.sources import resolve_model

    model = resolve_model("smollm2-135m", log=lambda *_: None)
    run = measure(model, args.budget, args.steps, args.threads, args.chats, args.checkpointing)
    plan, result = run["plan"], run["result"]
    record = {
        "model": "smollm2-135m", "cutoff": 512, "batch_size": 4, "lora": "r16 all-linear, dropout 0.05",
        "threads": args.threads, "steps": result["global_step"], "trl_peak_gib": TRL_PEAK_GIB,
        "budget": args.budget, "budget_bytes": run["budget_bytes"],
        "plan": {k: plan[k] for k in ("batch_size", "grad_accum", "gradient_checkpointing", "loss_chunk_size",
                                      "row_tokens", "batching", "peak_bytes", "parts", "notes")},
        "measured_peak_bytes": result["peak_rss_bytes"],
        "honoured": result["peak_rss_bytes"] < run["budget_bytes"],
        "trained_tokens_per_s": result["tokens_per_s"], "train_seconds": result["train_seconds"],
        "cpu_seconds": run["cpu_seconds"],
        "log": run["log"], "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json(Path(args.out), record)
    if Path(args.out).resolve() == RESULT.resolve():
        write_results_block(record)
    gib = 1024 ** 3
    print("\n".join(run["log"]))
    print(f"plan: ~{plan['peak_bytes'] / gib:.2f} GiB; measured peak {result['peak_rss_bytes'] / gib:.2f} GiB "
          f"of budget {run['budget_bytes'] / gib:.2f} GiB; {result['tokens_per_s']:.1f} trained tok/s "
          f"({args.threads} thread(s))")
    print(f"memory_budget_bytes: {run['budget_bytes']}")
    print(f"memory_budget_peak_bytes: {result['peak_rss_bytes']}")
    print(f"memory_budget_honoured: {str(record['honoured']).lower()}")


if __name__ == "__main__":
    main()
