"""Benchmark: ducktune vs TRL's SFTTrainer (PEFT LoRA), at TRL's defaults and tuned, on identical work.

    .venv/bin/python bench/run.py --write     # what `make bench` runs; records bench/results/bench.json
    .venv/bin/python bench/run.py --quick     # two tiny models, 12 chats, >= 3 steps: checks the script (~5 min shared)
    .venv/bin/python bench/run.py --from-json bench/results/bench.json   # only re-renders the tables

Three sides per model, each run in its own subprocess (bench/sides.py) so peak memory is its own:
"baseline" (TRL SFTTrainer at its defaults: padded batches, gradient checkpointing on), "tuned"
(TRL SFTTrainer with gradient checkpointing off and TRL's BFD packing when the isolation check in
bench/sides.py passes on this attention backend, else padded), and "ducktune" (its recipe at its
defaults). The sides alternate in rotating order (baseline, tuned, ducktune; tuned, ducktune,
baseline; ...), 5 alternations per model by default (>= 3), on the same samples (one pass over the same synthetic
chats, tokenized identically, the same trained tokens, checked), with the same LoRA rank/targets,
batch, accumulation, cutoff, optimizer, schedule, learning rate and thread count. ducktune packs
several chats into each row, so it does fewer, fuller optimizer steps: the data is sized so it
still does >= 20 (checked before the runs from the packed row count, and after them for every
run). Every measurement goes to the JSON; the tables report medians with min-max. The matmul
ceiling of this machine is measured in the same run (before and after; the higher is used).

Defaults (CPU): batch 1, accumulation 1; qwen2-scaled 44 chats at cutoff 256 (2,783 trained of
6,270 tokens; ducktune packs them into 27 rows, so 27 steps; TRL defaults 43), SmolLM2-135M 28 chats
at cutoff 128 (1,053 trained of 2,652 tokens; 23 ducktune steps); chat lengths lognormal around
half the cutoff. Each run trains for 5-45 s on 2 cores, so one busy moment of another process on
the shared machine moves a run by 10-30 %: 5 alternations (the median of five, 30 runs) keep such a
run from deciding a ratio (three alternations took 11 min for the SFT part on 2 shared cores; five
15 min, measured); the DPO section adds ~20 min (1,235 s measured).

The last lines are machine-readable (the DPO section's two first, then the main model's four,
then each further model's four with its prefix, `smollm2_` for SmolLM2-135M):

    throughput_ratio: X        (ducktune / TRL defaults, trained tokens per second, medians)
    throughput_ratio_tuned: X  (ducktune / TRL tuned)
    memory_ratio: Y            (ducktune / TRL defaults, peak memory, medians)
    useful_flops_fraction: Z   (ducktune's useful FLOP/s / the measured matmul peak)

`--write` records every measurement in bench/results/bench.json and rewrites, from that JSON,
the SFT block of bench/RESULTS.md and the benchmark table of README.md (between their markers;
nothing in them is typed by hand); `--from-json FILE` re-renders both from a recorded JSON without
measuring (several FILEs, one model each as bench/gpu_bench.sh writes them, with `--write`: merged
into bench/results/bench_gpu.json or bench.json first). The DPO section (bench/dpo_bench.py: ducktune's train.objective dpo vs TRL's
DPOTrainer on the same pairs, same layout) runs after the SFT models on the main model;
`--sections dpo` runs it alone; `--write-dpo` records it in bench/results/dpo.json and RESULTS.md.
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

from sft_report import SIDES, gib, on_cuda, render, report  # noqa: E402,F401  (gib: dpo_bench imports it from here)

# Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads of 64, MLP 4864, tied
# 151,936-token vocabulary) at half the width and a sixth of the depth, so a run fits a 2-core CPU.
# The vocabulary (and so the embedding / LM head, the part packing and the chunked loss act on)
# keeps its real size.
QWEN2_SCALED = dict(arch="qwen2", hidden_size=448, num_layers=4, num_heads=7, num_kv_heads=1,
                    intermediate_size=2432, vocab_size=151_936, tokenizer_vocab=4096, tie_word_embeddings=True)
TINY = dict(arch="qwen2", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, tokenizer_vocab=1024)
TINY_LLAMA = dict(arch="llama", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, tokenizer_vocab=1024)
# SmolLM2-135M's exact shape (Llama: hidden 576, 30 layers, 9 heads / 3 KV heads of 64, MLP 1536,
# tied 49,152-token vocabulary), random init: where the built-in model's weights cannot travel (the
# GPU machine receives at most 64 MiB; throughput does not depend on the weights' values).
SMOLLM2_SHAPE = dict(arch="llama", hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                     intermediate_size=1536, vocab_size=49_152, tokenizer_vocab=4096, tie_word_embeddings=True)
SHAPES = {"qwen2-scaled": QWEN2_SCALED, "smollm2-shape": SMOLLM2_SHAPE, "tiny": TINY, "tiny-llama": TINY_LLAMA}
MODELS = ["qwen2-scaled", "smollm2-135m", "smollm2-shape", "tiny", "tiny-llama"]
# Per model on CPU: chats and cutoff, sized so ducktune (batch 1) packs >= 20 rows (so >= 20
# steps) and the full bench stays near 40 min on 2 cores (see the module docstring).
CPU_DEFAULTS = {"qwen2-scaled": (44, 256), "smollm2-135m": (28, 128), "smollm2-shape": (28, 128),
                "tiny": (12, 128), "tiny-llama": (12, 128)}
# On CUDA every model runs at cutoff 2048 (bf16); chats of ~1,000 tokens pack about two to a row,
# so 56 chats give >= 20 ducktune steps.
CUDA_SAMPLES, CUDA_CUTOFF = 56, 2048
RESULTS_JSON = HERE / "results" / "bench.json"
RESULTS_JSON_GPU = HERE / "results" / "bench_gpu.json"  # a --write on CUDA: RESULTS.md's GPU block
RESULTS_MD = HERE / "RESULTS.md"
README_MD = HERE.parent / "README.md"


@dataclass
class ModelCase:
    key: str
    label: str
    samples: int
    repeats: int
    cutoff: int
    min_steps: int


def cache_dir() -> Path:
    return Path(os.environ.get("DUCKTUNE_CACHE", Path.home() / ".cache" / "ducktune")) / "bench"


def build_model(key: str) -> Path:
    """The model folder for a case: built here (random init) or the built-in SmolLM2-135M."""
    if key == "smollm2-135m":
        from ducktune.models.sources import resolve_model

        return resolve_model("smollm2-135m", log=lambda *_: None)
    from ducktune.models.tiny import build_tiny_model

    shape = SHAPES[key]
    folder = cache_dir() / key
    if not (folder / "config.json").exists():
        build_tiny_model(folder, seed=0, **shape)
    return folder


def write_chats(model: Path, path: Path, n: int, seed: int, cutoff: int) -> None:
    """`n` synthetic chats, lengths lognormal around half the cutoff (a tail of longer ones is cut)."""
    from synthetic import synthetic_chats, tokens_per_word

    from ducktune.models.loading import load_tokenizer

    ratio = tokens_per_word(load_tokenizer(model))
    with path.open("w", encoding="utf-8") as handle:
        for chat in synthetic_chats(n, seed=seed, tokens_per_word=ratio, median_tokens=cutoff // 2,
                                    low=min(20, cutoff // 4), high=2 * cutoff):
            handle.write(json.dumps(chat) + "\n")


# ----------------------------------------------------------------------------- measurements

def matmul_peak(threads: int, device: str, dtype: str, size: int | None = None, seconds: float = 3.0) -> float:
    """Best FLOP/s of square matmuls in this machine's training dtype (a subprocess, same threads):
    2048-square on a CPU, 8192-square on a GPU (smaller ones leave a GPU's units idle)."""
    size = size or (8192 if device == "cuda" else 2048)
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

def side_order(repeat: int, sides=SIDES) -> list[str]:
    """The sides of alternation `repeat`, rotated so each side runs first, second and third in turn."""
    shift = repeat % len(sides)
    return list(sides[shift:] + sides[:shift])


def packed_steps(spec: dict) -> int:
    """Optimizer steps ducktune's packing will take on this data (best-fit-decreasing rows of
    `cutoff` tokens, batch x accumulation rows per step): checked before spending the runs."""
    from sides import tokenized

    from ducktune.train.packing import best_fit_decreasing

    rows, _ = tokenized(spec, spec["data"])
    packed = best_fit_decreasing([len(r["input_ids"]) for r in rows], spec["cutoff"])
    per_step = spec["train"]["batch_size"] * spec["train"]["grad_accum"]
    return -(-len(packed) // per_step)


def work_spec(key: str, samples: int, cutoff: int, root: Path, device: str, dtype: str, threads: int,
              packing: str = "auto", batch_size: int = 1, grad_accum: int = 1, lr: float = 2e-4, seed: int = 0,
              heldout_samples: int = 8) -> dict:
    """One model's work, shared by every side (bench/sides.py's SPEC without its "side"): the model
    folder, its synthetic training and held-out chats written under root/key, and the settings."""
    folder = build_model(key)
    workdir = root / key
    workdir.mkdir(parents=True, exist_ok=True)
    data, heldout = workdir / "train.jsonl", workdir / "heldout.jsonl"
    write_chats(folder, data, samples, seed=seed, cutoff=cutoff)
    write_chats(folder, heldout, heldout_samples, seed=seed + 1, cutoff=cutoff)
    return {
        "model": str(folder), "data": str(data), "heldout": str(heldout), "workdir": str(workdir),
        "device": device, "dtype": dtype, "cutoff": cutoff, "threads": threads, "packing": packing,
        "train": {"batch_size": batch_size, "grad_accum": grad_accum, "learning_rate": lr,
                  "max_steps": None, "warmup_ratio": 0.03, "seed": 42,
                  "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0},
    }


def bench_model(case: ModelCase, args, device: str, dtype: str, root: Path, log) -> dict:
    from ducktune.models.loading import model_config

    spec = work_spec(case.key, case.samples, case.cutoff, root, device, dtype, args.threads, args.packing,
                     args.batch_size, args.grad_accum, args.lr, args.seed, args.heldout)
    workdir = Path(spec["workdir"])
    if args.packing != "off" and (steps := packed_steps(spec)) < case.min_steps:
        raise SystemExit(f"{case.label}: {case.samples} chats pack into {steps} ducktune steps, fewer than "
                         f"{case.min_steps}: raise --samples")
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for repeat in range(case.repeats):
        for side in side_order(repeat):
            started = time.perf_counter()
            result = run_side({**spec, "side": side}, workdir)
            result["tokens_per_s"] = result["dataset_trained_tokens"] / result["train_seconds"]
            result["order"] = repeat * len(SIDES) + side_order(repeat).index(side)
            runs[side].append(result)
            log(f"  {case.label} {side} #{repeat + 1}: {result['tokens_per_s']:.1f} trained tok/s, "
                f"peak {result['peak_bytes'] / 2**30:.2f} GiB, {result['steps']} steps, "
                f"held-out loss {result['heldout_loss']:.4f} ({time.perf_counter() - started:.0f} s)")
    return summarize(case, runs, model_config(Path(spec["model"])), spec)


def summarize(case: ModelCase, runs: dict, config: dict, spec: dict) -> dict:
    """Checks that every run did the same work and enough steps, then the per-side medians
    (with min and max) and the useful FLOPs of one pass."""
    for side, rs in runs.items():
        for r in rs:
            if r["counted_trained_tokens"] != r["dataset_trained_tokens"]:
                raise SystemExit(f"{case.label}: {side} trained {r['counted_trained_tokens']} tokens, "
                                 f"the data holds {r['dataset_trained_tokens']}: the work differs")
            if r["steps"] < case.min_steps:
                raise SystemExit(f"{case.label}: a {side} run did {r['steps']} optimizer steps, fewer than "
                                 f"{case.min_steps}: raise --samples")
    first = runs["ducktune"][0]
    sides = {}
    for side, rs in runs.items():
        tps, peak = [r["tokens_per_s"] for r in rs], [r["peak_bytes"] for r in rs]
        sides[side] = {
            "tps": statistics.median(tps), "tps_min": min(tps), "tps_max": max(tps),
            "peak": statistics.median(peak), "peak_min": min(peak), "peak_max": max(peak),
            "steps": rs[0]["steps"], "gradient_checkpointing": rs[0]["gradient_checkpointing"],
            "packing": rs[0]["packing"], "optimizer": rs[0].get("optimizer"), "heldout": [r["heldout_loss"] for r in rs],
            "last_loss": rs[-1]["losses"][-1] if rs[-1]["losses"] else None,
        }
    return {
        "key": case.key,
        "label": case.label,
        "samples": case.samples,
        "cutoff": case.cutoff,
        "repeats": case.repeats,
        "trained_tokens": first["dataset_trained_tokens"],
        "tokens": first["dataset_tokens"],
        "sides": sides,
        "plan": statistics.median(r["plan_bytes"] for r in runs["ducktune"]),
        "plan_setup": first["plan"],
        "batching": first["batching"],
        "trl_packing_check": runs["tuned"][0].get("packing_check"),
        "settings": {k: v for k, v in spec.items()
                     if k in ("cutoff", "threads", "device", "dtype", "packing", "train")},
        "config": config,
        "flops": model_flops(config, first["dataset_tokens"], first["dataset_trained_tokens"], first["lengths"],
                             spec["train"]["lora_r"]),
        "runs": runs,
    }

# ----------------------------------------------------------------------------- machine

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
    parser.add_argument("--quick", action="store_true",
                        help="two tiny models, few samples, fewer steps: checks the script end to end")
    parser.add_argument("--models", nargs="+", choices=MODELS,
                        help="models to run, the main one first "
                             "(default: qwen2-scaled smollm2-135m; --quick: tiny tiny-llama)")
    parser.add_argument("--samples", type=int, help="chats per model (default per model, see the module docstring)")
    parser.add_argument("--repeats", type=int, default=None, help="alternations per model (default 5; --quick 1)")
    parser.add_argument("--min-steps", type=int, default=None,
                        help="fewest optimizer steps a run may do (default 20; --quick 3)")
    parser.add_argument("--cutoff", type=int, default=None,
                        help="tokens per sample (default per model on CPU: 256 / 128; 2048 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--heldout", type=int, default=8, help="held-out chats for the loss comparison")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, all sides")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic chats")
    parser.add_argument("--packing", choices=["auto", "on", "off"], default="auto",
                        help="ducktune's train.packing (auto: its default); off also keeps TRL tuned unpacked")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--write", action="store_true",
                        help="record the measurement in bench/results/bench.json and render bench/RESULTS.md's SFT "
                             "block and README.md's benchmark table from it")
    parser.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                        help="measure nothing: print the report of a recorded measurement and render "
                             "the blocks from it (several files: one model each, measured one after the "
                             "other on the same machine, as bench/gpu_bench.sh does; merged in order, and with "
                             "--write recorded as bench/results/bench_gpu.json, or bench.json for CPU runs)")
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD, help=argparse.SUPPRESS)
    parser.add_argument("--readme", type=Path, default=README_MD, help=argparse.SUPPRESS)
    parser.add_argument("--sections", nargs="+", choices=["sft", "dpo"], default=["sft", "dpo"],
                        help="what to compare: sft (TRL SFTTrainer) and/or dpo (TRL DPOTrainer); default both")
    parser.add_argument("--dpo-model", choices=MODELS, help="model of the DPO section (default: the first of --models)")
    parser.add_argument("--dpo-pairs", type=int, help="preference pairs of the DPO section (default 8; --quick 6)")
    parser.add_argument("--dpo-repeats", type=int, help="alternations of the DPO section (default 2; --quick 1)")
    parser.add_argument("--dpo-cutoff", type=int, help="cutoff of the DPO section (default 512 on CPU, 2048 on CUDA)")
    parser.add_argument("--dpo-batch-size", type=int, default=2, help="pairs per micro-batch, both DPO sides")
    parser.add_argument("--dpo-lr", type=float, default=5e-5, help="learning rate, both DPO sides")
    parser.add_argument("--write-dpo", action="store_true",
                        help="record the DPO measurement in bench/results/dpo.json and bench/RESULTS.md's DPO block")
    args = parser.parse_args(argv)
    if args.quick:
        if args.write:
            parser.error("--write records the committed results: not from a --quick run (use --json)")
        args.models = args.models or ["tiny", "tiny-llama"]
        args.repeats = args.repeats or 1
        args.min_steps = args.min_steps or 3
        args.heldout = min(args.heldout, 4)
        args.dpo_pairs = args.dpo_pairs or 6
        args.dpo_repeats = args.dpo_repeats or 1
        args.dpo_cutoff = args.dpo_cutoff or 256
    args.models = args.models or ["qwen2-scaled", "smollm2-135m"]
    args.repeats = args.repeats or 5
    args.min_steps = args.min_steps or 20
    args.dpo_model = args.dpo_model or args.models[0]
    args.dpo_pairs = args.dpo_pairs or 8
    args.dpo_repeats = args.dpo_repeats or 2
    return args


def merged(parts: list[dict]) -> dict:
    """One measurement from several taken one after the other on one machine: the results in order,
    every matmul-peak reading (the report uses the highest), the load before the first and after the
    last, the seconds summed, the commands joined."""
    if len(parts) == 1:
        return parts[0]
    peaks = [p for part in parts for p in (part["matmul_peak"] if isinstance(part["matmul_peak"], list)
                                           else [part["matmul_peak"]])]
    loads = [part.get("load_average") for part in parts]
    return {**parts[0], "seconds": sum(part["seconds"] for part in parts),
            "command": " ; ".join(part.get("command", "") for part in parts),
            "load_average": [loads[0][0], loads[-1][1]] if all(loads) else None,
            "matmul_peak": peaks, "results": [r for part in parts for r in part["results"]],
            "dpo": next((part["dpo"] for part in parts if part.get("dpo")), None)}


def from_json(args, log) -> None:
    """Print the report of a recorded measurement and render the README / RESULTS.md blocks from it."""
    parts = []
    for path in args.from_json:
        if not path.is_file():
            raise SystemExit(f"{path}: no such measurement (run `bench/run.py --write` first)")
        parts.append(json.loads(path.read_text(encoding="utf-8")))
        if not parts[-1].get("results"):
            raise SystemExit(f"{path}: no SFT results to render")
    measured = merged(parts)
    if args.write and len(parts) > 1:  # the merged measurement becomes the committed JSON the blocks come from
        from ducktune.io import write_text

        write_text(RESULTS_JSON_GPU if on_cuda(measured) else RESULTS_JSON, json.dumps(measured, indent=1) + "\n")
    render(measured, args.results_md, args.readme)
    report(measured, log)


def main(argv=None) -> None:
    args = parse_args(argv)
    log = lambda text: print(text, flush=True)  # noqa: E731
    if args.from_json:
        return from_json(args, log)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    machine = describe_machine(device, args.threads)
    for line in machine:
        log(line)
    peak_before = matmul_peak(args.threads, device, dtype)
    log(f"matmul peak ({dtype}, {args.threads} threads): {peak_before / 1e9:.1f} GFLOP/s")
    results, dpo = [], None
    with tempfile.TemporaryDirectory(prefix="ducktune-bench-") as tmp:
        for key in args.models if "sft" in args.sections else []:
            samples, cutoff = CPU_DEFAULTS[key] if device != "cuda" else (CUDA_SAMPLES, CUDA_CUTOFF)
            case = ModelCase(key, key, args.samples or samples, args.repeats, args.cutoff or cutoff, args.min_steps)
            log(f"{key}: {case.samples} chats, cutoff {case.cutoff}, batch {args.batch_size} x accum "
                f"{args.grad_accum}, {case.repeats} alternation(s) of {', '.join(SIDES)}")
            results.append(bench_model(case, args, device, dtype, Path(tmp), log))
        if "dpo" in args.sections:
            from dpo_bench import bench_dpo

            dpo_cutoff = args.dpo_cutoff or (2048 if device == "cuda" else 512)
            dpo_args = argparse.Namespace(**{**vars(args), "cutoff": dpo_cutoff})
            log(f"DPO {args.dpo_model}: {args.dpo_pairs} pairs, cutoff {dpo_args.cutoff}, {args.dpo_batch_size} pairs "
                f"x accum {args.grad_accum}, {args.dpo_repeats} alternation(s)")
            dpo = bench_dpo(args.dpo_model, args.dpo_pairs, args.dpo_repeats, dpo_args, device, dtype, Path(tmp), log)
    peak_after = matmul_peak(args.threads, device, dtype)
    log(f"matmul peak after the runs: {peak_after / 1e9:.1f} GFLOP/s")
    seconds = time.perf_counter() - started
    log(f"total {seconds:.0f} s")
    command = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    measured = {"date": time.strftime("%Y-%m-%d"), "seconds": round(seconds), "command": command, "machine": machine,
                "load_average": [load_before, os.getloadavg()[0]], "matmul_peak": [peak_before, peak_after],
                "results": results, "dpo": dpo}
    text = json.dumps(measured, indent=1) + "\n"
    from ducktune.io import write_text

    targets = [args.json] if args.json else []
    if args.write and results:
        targets.append(RESULTS_JSON_GPU if device == "cuda" else RESULTS_JSON)
    for target in targets:
        write_text(target, text)  # atomic; makes the folder
    if args.write and results:
        render(measured, args.results_md, args.readme)
    if args.write_dpo and dpo:
        from dpo_bench import write_results

        write_results(measured | {"matmul_peak": max(peak_before, peak_after)})
    report(measured, log)


if __name__ == "__main__":
    main()
