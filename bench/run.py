"""Benchmark: ducktune vs TRL's SFTTrainer (PEFT LoRA, padded batches) on identical work.

    .venv/bin/python bench/run.py            # what `make bench` runs (~25 min on 2 CPU cores, plus the DPO section)
    .venv/bin/python bench/run.py --quick    # a tiny model, a few samples: checks the script (~1 min)

For each model, the two sides run alternately (baseline, ducktune, baseline, ducktune...),
each in its own subprocess (bench/sides.py) so peak memory is measured per run, on the same
samples (one pass over the same synthetic chats, tokenized identically, the same trained
tokens), with the same LoRA rank/targets, batch, accumulation, cutoff, optimizer, schedule,
learning rate and thread count. The matmul ceiling of this machine is measured in the same
run. Prints a table; the last two lines are machine-readable ratios for the main model:

    throughput_ratio: X   (ducktune / baseline trained tokens per second)
    memory_ratio: Y       (ducktune / baseline peak memory)

The DPO section (bench/dpo_bench.py: ducktune's train.objective dpo vs TRL's DPOTrainer on the
same pairs, same layout) runs after the SFT models on the main model and prints its table and
`dpo_throughput_ratio:` / `dpo_memory_ratio:` just before those two lines. `--sections dpo`
runs it alone; `--write-dpo` records it in bench/results/dpo.json and bench/RESULTS.md.
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads of 64, MLP 4864, tied
# 151,936-token vocabulary) at half the width and a sixth of the depth, so a run fits a 2-core CPU.
# The vocabulary (and so the embedding / LM head, the part packing and the chunked loss act on)
# keeps its real size.
QWEN2_SCALED = dict(arch="qwen2", hidden_size=448, num_layers=4, num_heads=7, num_kv_heads=1,
                    intermediate_size=2432, vocab_size=151_936, tokenizer_vocab=4096, tie_word_embeddings=True)
TINY = dict(arch="qwen2", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, tokenizer_vocab=1024)


@dataclass
class ModelCase:
    key: str
    label: str
    samples: int
    repeats: int


def cache_dir() -> Path:
    return Path(os.environ.get("DUCKTUNE_CACHE", Path.home() / ".cache" / "ducktune")) / "bench"


def build_model(key: str) -> Path:
    """The model folder for a case: built here (random init) or the built-in SmolLM2-135M."""
    if key == "smollm2-135m":
        from ducktune.models.sources import resolve_model

        return resolve_model("smollm2-135m", log=lambda *_: None)
    from ducktune.models.tiny import build_tiny_model

    shape = {"qwen2-scaled": QWEN2_SCALED, "tiny": TINY}[key]
    folder = cache_dir() / key
    if not (folder / "config.json").exists():
        build_tiny_model(folder, seed=0, **shape)
    return folder


def write_chats(model: Path, path: Path, n: int, seed: int) -> None:
    from synthetic import synthetic_chats, tokens_per_word

    from ducktune.models.loading import load_tokenizer

    ratio = tokens_per_word(load_tokenizer(model))
    with path.open("w", encoding="utf-8") as handle:
        for chat in synthetic_chats(n, seed=seed, tokens_per_word=ratio):
            handle.write(json.dumps(chat) + "\n")


# ----------------------------------------------------------------------------- measurements

def matmul_peak(threads: int, device: str, dtype: str, size: int = 2048, seconds: float = 3.0) -> float:
    """Best FLOP/s of square matmuls in this machine's training dtype (a subprocess, same threads)."""
    code = f"""
import time, torch
torch.set_num_threads({threads})
dt = getattr(torch, {dtype!r})
a = torch.randn({size}, {size}, device={device!r}, dtype=dt); b = torch.randn({size}, {size}, device={device!r}, dtype=dt)
sync = torch.cuda.synchronize if {device!r} == "cuda" else (lambda: None)
for _ in range(3): a @ b
sync(); best = 0.0; end = time.perf_counter() + {seconds}
while time.perf_counter() < end:
    t = time.perf_counter(); a @ b; sync(); best = max(best, 2 * {size}**3 / (time.perf_counter() - t))
print(best)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def model_flops(config: dict, dataset_tokens: int, trained_tokens: int, lengths: list[int], lora_r: int) -> float:
    """Useful FLOPs of one LoRA pass over the data (same formula for both sides: work done on
    padding, recomputation or discarded logits is not useful work).

    Per real token: frozen linears forward + gradient w.r.t. their input (2 x 2 x params),
    LoRA forward/backward (~6 x adapter params), causal attention (scores and values, forward
    and input gradients: 4 x 2 x context/2 x q-width per layer). The LM head on trained
    positions only: logits + gradient w.r.t. the hidden state (2 x 2 x hidden x vocab).
    """
    from ducktune.train.plan import ModelShape

    shape = ModelShape.from_config(config)
    linear = shape.layers * shape.layer_linear_params
    lora = shape.lora_params(lora_r, None)
    per_token = 4 * linear + 6 * lora
    q_width = shape.heads * shape.head_dim
    attention = sum(4 * 2 * (n * n / 2) * q_width * shape.layers for n in lengths)
    head = 4 * shape.hidden * shape.vocab * trained_tokens
    return per_token * dataset_tokens + attention + head


def run_side(spec: dict, workdir: Path, script: str = "sides.py") -> dict:
    """Run one side (`script`: sides.py for SFT, dpo_sides.py for DPO) in its own process."""
    spec_path = workdir / f"spec-{spec['side']}.json"
    result_path = workdir / f"result-{spec['side']}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(HERE / script), str(spec_path), str(result_path)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{spec['side']} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(result_path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- one model

def bench_model(case: ModelCase, args, device: str, dtype: str, root: Path, log) -> dict:
    from ducktune.models.loading import model_config

    folder = build_model(case.key)
    workdir = root / case.key
    workdir.mkdir(parents=True, exist_ok=True)
    data, heldout = workdir / "train.jsonl", workdir / "heldout.jsonl"
    write_chats(folder, data, case.samples, seed=args.seed)
    write_chats(folder, heldout, args.heldout, seed=args.seed + 1)
    spec = {
        "model": str(folder), "data": str(data), "heldout": str(heldout), "workdir": str(workdir),
        "device": device, "dtype": dtype, "cutoff": args.cutoff, "threads": args.threads, "packing": args.packing,
        "train": {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "learning_rate": args.lr,
                  "max_steps": None, "warmup_ratio": 0.03, "seed": 42,
                  "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05},
    }
    runs: dict[str, list[dict]] = {"baseline": [], "ducktune": []}
    for repeat in range(case.repeats):
        for side in ("baseline", "ducktune"):
            started = time.perf_counter()
            result = run_side({**spec, "side": side}, workdir)
            result["tokens_per_s"] = result["dataset_trained_tokens"] / result["train_seconds"]
            runs[side].append(result)
            log(f"  {case.label} {side} #{repeat + 1}: {result['tokens_per_s']:.0f} trained tok/s, "
                f"peak {result['peak_bytes'] / 2**30:.2f} GiB, {result['steps']} steps, "
                f"held-out loss {result['heldout_loss']:.4f} ({time.perf_counter() - started:.0f} s)")
    config = model_config(folder)
    return summarize(case, runs, config, spec)


def summarize(case: ModelCase, runs: dict, config: dict, spec: dict) -> dict:
    base, duck = runs["baseline"], runs["ducktune"]
    for r in base + duck:
        if r["counted_trained_tokens"] != r["dataset_trained_tokens"]:
            raise SystemExit(f"{case.label}: a side trained {r['counted_trained_tokens']} tokens, "
                             f"the data holds {r['dataset_trained_tokens']}: the work differs")
    median = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
    first = duck[0]
    return {
        "label": case.label,
        "samples": case.samples,
        "trained_tokens": first["dataset_trained_tokens"],
        "tokens": first["dataset_tokens"],
        "baseline_tps": median(base, "tokens_per_s"),
        "ducktune_tps": median(duck, "tokens_per_s"),
        "baseline_peak": median(base, "peak_bytes"),
        "ducktune_peak": median(duck, "peak_bytes"),
        "plan": median(duck, "plan_bytes"),
        "plan_setup": first["plan"],
        "batching": first["batching"],
        "baseline_steps": base[0]["steps"],
        "ducktune_steps": first["steps"],
        "baseline_heldout": [r["heldout_loss"] for r in base],
        "ducktune_heldout": [r["heldout_loss"] for r in duck],
        "baseline_losses": base[-1]["losses"],
        "ducktune_losses": duck[-1]["losses"],
        "baseline_checkpointing": base[0]["gradient_checkpointing"],
        "config": config,
        "flops": model_flops(config, first["dataset_tokens"], first["dataset_trained_tokens"], first["lengths"],
                             spec["train"]["lora_r"]),
        "runs": runs,
    }


# ----------------------------------------------------------------------------- report

def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def table(results: list[dict], peak_flops: float) -> list[str]:
    lines = ["| model | side | trained tok/s | peak memory | steps | held-out loss | last-step train loss | "
             "useful FLOP/s (of matmul peak) | memory plan |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for side in ("baseline", "ducktune"):
            tps, peak = r[f"{side}_tps"], r[f"{side}_peak"]
            flops = r["flops"] / (r["trained_tokens"] / tps)
            heldout = r[f"{side}_heldout"]
            plan = (f"{gib(r['plan'])} ({(r['plan'] / peak - 1) * 100:+.0f} %)" if side == "ducktune" else "-")
            lines.append(
                f"| {r['label']} | {'TRL SFTTrainer' if side == 'baseline' else 'ducktune'} | {tps:.0f} | {gib(peak)} | "
                f"{r[f'{side}_steps']} | {statistics.mean(heldout):.4f} (±{_spread(heldout):.4f}) | "
                f"{r[f'{side}_losses'][-1]:.4f} | {flops / 1e9:.1f} G ({flops / peak_flops * 100:.0f} %) | {plan} |")
        lines.append(f"| {r['label']} | **ratio** | **{r['ducktune_tps'] / r['baseline_tps']:.2f}x** | "
                     f"**{r['ducktune_peak'] / r['baseline_peak']:.2f}x** | | | | | |")
    return lines


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def describe_machine(device: str, threads: int) -> list[str]:
    import torch
    import transformers
    import trl

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ducktune.train.memory_probe import meminfo_bytes

    lines = [f"CPU: {cpu}, {os.cpu_count()} logical cores, {meminfo_bytes('MemTotal') / 2**30:.1f} GiB RAM; "
             f"torch threads: {threads}"]
    if device == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    lines.append(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
                 f"trl {trl.__version__}, peft {__import__('peft').__version__}")
    return lines


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few samples: checks the script end to end")
    parser.add_argument("--models", nargs="+", choices=["qwen2-scaled", "smollm2-135m", "tiny"],
                        help="models to run (default: qwen2-scaled smollm2-135m; --quick: tiny)")
    parser.add_argument("--samples", type=int, help="chats per model (default: 12 for qwen2-scaled, 8 for SmolLM2)")
    parser.add_argument("--repeats", type=int, default=None, help="alternations per model (default: 2 for the main model, 1 for SmolLM2)")
    parser.add_argument("--cutoff", type=int, default=None, help="tokens per sample (default 512 on CPU, 2048 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--heldout", type=int, default=16, help="held-out chats for the loss comparison")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both sides")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic chats")
    parser.add_argument("--packing", choices=["auto", "on", "off"], default="auto",
                        help="ducktune's train.packing (auto: its default)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--sections", nargs="+", choices=["sft", "dpo"], default=["sft", "dpo"],
                        help="what to compare: sft (TRL SFTTrainer) and/or dpo (TRL DPOTrainer); default both")
    parser.add_argument("--dpo-model", choices=["qwen2-scaled", "smollm2-135m", "tiny"],
                        help="model of the DPO section (default: the first of --models)")
    parser.add_argument("--dpo-pairs", type=int, help="preference pairs of the DPO section (default 8; --quick 6)")
    parser.add_argument("--dpo-repeats", type=int, help="alternations of the DPO section (default 2; --quick 1)")
    parser.add_argument("--dpo-batch-size", type=int, default=2, help="pairs per micro-batch, both DPO sides")
    parser.add_argument("--dpo-lr", type=float, default=5e-5, help="learning rate, both DPO sides")
    parser.add_argument("--write-dpo", action="store_true",
                        help="record the DPO measurement in bench/results/dpo.json and bench/RESULTS.md's DPO block")
    args = parser.parse_args(argv)
    if args.quick:
        args.models = args.models or ["tiny"]
        args.repeats = args.repeats or 1
        args.cutoff = args.cutoff or 256
        args.heldout = min(args.heldout, 4)
        args.dpo_pairs = args.dpo_pairs or 6
        args.dpo_repeats = args.dpo_repeats or 1
    args.models = args.models or ["qwen2-scaled", "smollm2-135m"]
    args.dpo_model = args.dpo_model or args.models[0]
    args.dpo_pairs = args.dpo_pairs or 8
    args.dpo_repeats = args.dpo_repeats or 2
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    args.cutoff = args.cutoff or (2048 if device == "cuda" else 512)
    default_samples = {"qwen2-scaled": 12, "smollm2-135m": 8, "tiny": 16}
    log = lambda text: print(text, flush=True)  # noqa: E731
    started = time.perf_counter()
    machine = describe_machine(device, args.threads)
    for line in machine:
        log(line)
    peak_flops = matmul_peak(args.threads, device, dtype)
    log(f"matmul peak ({dtype}, {args.threads} threads): {peak_flops / 1e9:.1f} GFLOP/s")
    results, dpo = [], None
    with tempfile.TemporaryDirectory(prefix="ducktune-bench-") as tmp:
        for index, key in enumerate(args.models if "sft" in args.sections else []):
            repeats = args.repeats or (2 if index == 0 else 1)
            case = ModelCase(key, key, args.samples or default_samples[key], repeats)
            log(f"{key}: {case.samples} chats, cutoff {args.cutoff}, batch {args.batch_size} x accum {args.grad_accum}, "
                f"{repeats} alternation(s)")
            results.append(bench_model(case, args, device, dtype, Path(tmp), log))
        if "dpo" in args.sections:
            from dpo_bench import bench_dpo

            log(f"DPO {args.dpo_model}: {args.dpo_pairs} pairs, cutoff {args.cutoff}, {args.dpo_batch_size} pairs "
                f"x accum {args.grad_accum}, {args.dpo_repeats} alternation(s)")
            dpo = bench_dpo(args.dpo_model, args.dpo_pairs, args.dpo_repeats, args, device, dtype, Path(tmp), log)
    peak_after = matmul_peak(args.threads, device, dtype)
    log(f"matmul peak after the runs: {peak_after / 1e9:.1f} GFLOP/s")
    seconds = time.perf_counter() - started
    log(f"total {seconds:.0f} s")
    report(args, results, dpo, max(peak_flops, peak_after), log)
    measured = {"date": time.strftime("%Y-%m-%d"), "seconds": round(seconds), "machine": machine,
                "matmul_peak": max(peak_flops, peak_after), "results": results, "dpo": dpo}
    if args.json:
        args.json.write_text(json.dumps(measured | {"matmul_peak": [peak_flops, peak_after]}, indent=1))
    if args.write_dpo and dpo:
        from dpo_bench import write_results

        write_results(measured)


def report(args, results: list[dict], dpo: dict | None, peak_flops: float, log) -> None:
    """The tables, then the machine-readable ratios: the DPO ones, then the SFT main model's (last)."""
    log("")
    for line in table(results, peak_flops) if results else []:
        log(line)
    if dpo:
        from dpo_bench import ratio_lines
        from dpo_bench import table as dpo_table

        log("")
        for line in dpo_table(dpo):
            log(line)
    log("")
    for line in ratio_lines(dpo) if dpo else []:
        log(line)
    if results:
        main_case = results[0]
        log(f"throughput_ratio: {main_case['ducktune_tps'] / main_case['baseline_tps']:.3f}")
        log(f"memory_ratio: {main_case['ducktune_peak'] / main_case['baseline_peak']:.3f}")


if __name__ == "__main__":
    main()
