"""Profile ducktune's LoRA training step by op (torch.profiler, self CPU time), 1 thread.

    .venv/bin/python bench/profile_step.py --label before      # record a profile under "before"
    .venv/bin/python bench/profile_step.py --label after       # ... under "after"; renders both

Builds the bench's two models as bench/run.py does (qwen2-scaled, SmolLM2-135M) and the same
synthetic chats, and trains through ducktune's real path (`ducktune.train.recipe.train`, packing
and the chunked loss chosen as in a normal run, lora dropout 0.05 as in the bench). The profiler
runs over whole optimizer steps: it starts once the recipe has chosen its loss, skips the first
step (warm-up) and records the next `--steps`. Step boundaries are the micro-batch loss calls
(grad_accum 1), so a recorded step is forward + backward + clipping + optimizer + Trainer overhead.

Reported per model: the top ops by self CPU time, the share of CPU time in matmul ops, and the
useful FLOPs of the recorded steps (bench/run.py's model_flops on each step's own samples) over
their CPU time (time.process_time: one thread, so other processes on the machine do not count),
as a fraction of a 1-thread fp32 matmul peak measured in this script (best of several 2048^3
products, also by process time). Writes bench/results/profile.json (each label kept) and the
"Profile" block of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS_JSON = HERE / "results" / "profile.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- profile:begin -->", "<!-- profile:end -->"
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
              "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::baddbmm", "aten::addmm_")
LEAF_MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmm_",
                "aten::_scaled_dot_product_flash_attention_for_cpu",
                "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def matmul_peak_process_time(size: int = 2048, repeats: int = 6) -> float:
    """Best fp32 FLOP/s of a square matmul on this thread, timed by process CPU time."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.process_time()
        a @ b
        best = max(best, 2 * size ** 3 / max(time.process_time() - t, 1e-9))
    return best


def run_config(model: Path, data: Path, output: Path, steps: int, batch_size: int, cutoff: int):
    from ducktune.config import RunConfig

    return RunConfig.model_validate({
        "model": {"name_or_path": str(model), "device": "cpu", "dtype": "float32"},
        "data": {"datasets": [str(data)], "cutoff_len": cutoff, "val_ratio": 0.0},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "train": {"batch_size": batch_size, "grad_accum": 1, "learning_rate": 2e-4, "max_steps": steps,
                  "num_epochs": 1, "warmup_ratio": 0.03, "scheduler": "cosine", "optimizer": "adamw_torch",
                  "seed": 42, "logging_steps": 1, "save_steps": 10_000, "packing": "auto", "num_threads": 1},
        "output": {"dir": str(output), "overwrite": True},
    })


class StepProfiler:
    """Wraps the recipe's micro-batch loss: each call starts a step; profiles steps 2..steps+1."""

    def __init__(self, loss, steps: int):
        from torch.profiler import ProfilerActivity, profile, schedule

        self.loss = loss
        self.recorded = steps
        self.calls = 0
        self.step_cpu: list[float] = []
        self.batches: list[dict] = []
        self.losses: list[float] = []
        self._last = None
        self.prof = profile(activities=[ProfilerActivity.CPU],
                            schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                            record_shapes=bool(os.environ.get("PROFILE_SHAPES")))
        self.prof.start()

    def __call__(self, model, batch, num_items=None):
        now = time.process_time()
        if self._last is not None and 2 <= self.calls <= self.recorded + 1:
            self.step_cpu.append(now - self._last)
        self._last = now
        self.calls += 1
        self.prof.step()
        if 2 <= self.calls <= self.recorded + 1:  # a recorded step: its work
            cu = batch["cu_seq_lens_q"].tolist() if batch.get("cu_seq_lens_q") is not None else None
            lengths = [b - a for a, b in zip(cu, cu[1:])] if cu else [batch["input_ids"].shape[1]] * batch["input_ids"].shape[0]
            self.batches.append({"tokens": int(batch["input_ids"].numel()), "lengths": lengths,
                                 "trained": int((batch["labels"][:, 1:] != -100).sum())})
        out = self.loss(model, batch, num_items)
        self.losses.append(float(out.detach()))
        return out


def profile_model(key: str, steps: int, batch_size: int, cutoff: int, samples: int, tmp: Path, log) -> dict:
    from run import build_model, model_flops, write_chats

    from ducktune.models.loading import model_config
    from ducktune.train.loss import choose_loss as real_choose_loss
    from ducktune.train.recipe import train

    folder = build_model(key)
    data = tmp / f"{key}.jsonl"
    write_chats(folder, data, samples, seed=0)
    holder = {}

    def choose_loss(model, chunk_size, log=print):
        holder["profiler"] = StepProfiler(real_choose_loss(model, chunk_size, log=log), steps)
        return holder["profiler"]

    config = run_config(folder, data, tmp / f"run-{key}", steps + 2, batch_size, cutoff)
    train(config, log=lambda *_: None, progress=False, compare=False, choose_loss=choose_loss)
    profiler = holder["profiler"]
    profiler.prof.stop()
    if len(profiler.step_cpu) < steps:
        raise SystemExit(f"{key}: only {len(profiler.step_cpu)} steps recorded; give it more --samples")
    if os.environ.get("PROFILE_SHAPES"):
        log(profiler.prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40))
    events = profiler.prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:25]
    matmul = sum(e.self_cpu_time_total for e in events if e.key in LEAF_MATMULS)
    config_json = model_config(folder)
    flops = sum(model_flops(config_json, b["tokens"], b["trained"], b["lengths"], 16) for b in profiler.batches)
    cpu = sum(profiler.step_cpu[:steps])
    log(f"{key}: {steps} steps, {cpu:.1f} s CPU, matmul share {matmul / total:.2f}")
    return {
        "model": key,
        "steps": steps,
        "tokens_per_step": [b["tokens"] for b in profiler.batches],
        "trained_per_step": [b["trained"] for b in profiler.batches],
        "step_cpu_s": [round(s, 3) for s in profiler.step_cpu[:steps]],
        "losses": profiler.losses,
        "useful_flops": flops,
        "useful_flops_per_cpu_s": flops / cpu,
        "profiled_self_cpu_s": total / 1e6,
        "matmul_share": matmul / total,
        "top_ops": [{"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count,
                     "share": round(e.self_cpu_time_total / total, 4)} for e in top],
    }


# ----------------------------------------------------------------------------- report

def render(record: dict) -> str:
    lines = [BEGIN, "## Profile (one training step, 1 thread, by op)", "",
             "`bench/profile_step.py`: ducktune's real training path (`recipe.train`, packed rows, chunked loss, "
             "LoRA r=16 / dropout 0.05 on all linears, batch 4 x cutoff 512), torch.profiler over whole "
             "optimizer steps after one warm-up step, 1 thread. Useful FLOP/s = bench/run.py's `model_flops` "
             "on each step's samples over the steps' process CPU time (other processes on the shared machine "
             "do not count), against a 1-thread fp32 matmul peak measured in the same script "
             "(best 2048^3 product, process time). Matmul share: self CPU time in aten::mm/addmm/bmm and the "
             "SDPA kernels over all profiled self CPU time.", ""]
    lines += ["| model | label | commit | step CPU s | useful GFLOP/s | of 1-thread peak | matmul share | top non-matmul ops (self CPU share) |",
              "|---|---|---|---|---|---|---|---|"]
    for label, run in record.items():
        for m in run["models"]:
            others = [o for o in m["top_ops"] if o["op"] not in LEAF_MATMULS][:4]
            ops = ", ".join(f"{o['op'].removeprefix('aten::')} {o['share'] * 100:.1f} %" for o in others)
            lines.append(f"| {m['model']} | {label} | {run['commit']} | {sum(m['step_cpu_s']) / m['steps']:.2f} | "
                         f"{m['useful_flops_per_cpu_s'] / 1e9:.1f} | "
                         f"{m['useful_flops_per_cpu_s'] / run['matmul_peak'] * 100:.0f} % "
                         f"(peak {run['matmul_peak'] / 1e9:.1f} G) | {m['matmul_share'] * 100:.0f} % | {ops} |")
    notes = [n for run in record.values() for n in ([run["note"]] if run.get("note") else [])]
    if notes:
        lines += [""] + [f"- {label}: {run['note']}" for label, run in record.items() if run.get("note")]
    lines.append(END)
    return "\n".join(lines)


def write_outputs(record: dict) -> None:
    from blocks import replace_block

    from ducktune.io import write_json, write_text

    write_json(RESULTS_JSON, record)
    block = render(record)
    text = RESULTS_MD.read_text(encoding="utf-8")
    write_text(RESULTS_MD, replace_block(text, BEGIN, END, block, missing=block))


def commit_id() -> str:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "../src"], cwd=HERE, capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="name of this measurement in profile.json (before, after, ...)")
    parser.add_argument("--note", default="", help="what this measurement's code does (shown under the table)")
    parser.add_argument("--models", nargs="+", default=["qwen2-scaled", "smollm2-135m"])
    parser.add_argument("--steps", type=int, default=2, help="recorded optimizer steps per model (after 1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--samples", type=int, default=40, help="synthetic chats (enough for steps + 2 packed steps)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    log = lambda text: print(text, flush=True)  # noqa: E731
    peak_before = matmul_peak_process_time()
    models = []
    with tempfile.TemporaryDirectory(prefix="ducktune-profile-") as tmp:
        for key in args.models:
            models.append(profile_model(key, args.steps, args.batch_size, args.cutoff, args.samples, Path(tmp), log))
    peak = max(peak_before, matmul_peak_process_time())
    log(f"1-thread matmul peak: {peak / 1e9:.1f} GFLOP/s")
    for m in models:
        log(f"{m['model']}: useful {m['useful_flops_per_cpu_s'] / 1e9:.1f} GFLOP/s = "
            f"{m['useful_flops_per_cpu_s'] / peak * 100:.0f} % of peak; matmul share {m['matmul_share'] * 100:.0f} %")
        for o in m["top_ops"][:15]:
            log(f"   {o['op']:<60} {o['self_cpu_s']:8.3f} s {o['share'] * 100:5.1f} %  x{o['calls']}")
    if args.no_write:
        return
    record = json.loads(RESULTS_JSON.read_text(encoding="utf-8")) if RESULTS_JSON.exists() else {}
    record[args.label] = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit_id(), "note": args.note,
                          "matmul_peak": peak, "steps": args.steps, "models": models}
    write_outputs(record)


if __name__ == "__main__":
    main()
