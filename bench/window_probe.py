"""Where a packed step spends its time on CUDA (a probe for a lent GPU; prints tables, writes nothing).

    python3 bench/window_probe.py [--folder DIR]          # --cpu-smoke --folder DIR: checks it runs, on a CPU

An H100 trained packed Gemma 3 1B-shaped rows at a quarter of the padded speed (bench/window_speed.py). The
suspect: PyTorch prefers cuDNN attention on Hopper, and cuDNN builds an execution graph per new shape, which
packed rows meet in nearly every call (each sample has a length of its own); padded batches repeat shapes.
packing.per_sample_backends now keeps the per-sample calls to flash / mem-efficient / math. Every timing here
uses inputs of new shapes (`fresh_timed`), and compares that choice with PyTorch's own order:
1. one sample's attention alone at Gemma 3 1B's head shape (4 heads of 256, bf16), causal and banded (512);
2. one decoder step (forward + backward, LoRA r=16 on every linear) of Gemma 3 1B's shape on 4 packed rows of
   new sample lengths, both backend choices, and the same samples padded through transformers' SDPA; then the
   packed step under torch.profiler, top kernels and CPU ops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICE = "cuda"
SIZES = (256, 1000, 2000)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))


def fresh_timed(make, run, count: int) -> float:
    """Median milliseconds of run(make(i)) over `count` inputs of new shapes (each shape seen once: what a packed
    run meets, where nearly every sample has a length of its own), synchronized on CUDA."""
    import time

    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    run(make(count))  # warm-up on a shape of its own
    times = []
    for index in range(count):
        inputs = make(index)
        sync()
        started = time.perf_counter()
        run(inputs)
        sync()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def backends_named(names):
    """packing.per_sample_backends' choice set to `names` (() = PyTorch's own order, cuDNN first on Hopper)."""
    from ducktune.train import packing

    packing.CUDA_BACKENDS = tuple(names)


def attention_table() -> None:
    """fwd + bwd of one sample's attention, at a new length each call, per mask kind and backend choice."""
    import torch

    from ducktune.train import packing

    dtype, heads, dim, window = torch.bfloat16, 4, 256, 512
    module = __import__("types").SimpleNamespace(num_key_value_groups=1, is_causal=True, training=True)
    default = packing.CUDA_BACKENDS
    for base in SIZES:
        for choice, (label, names) in enumerate((("ducktune's backends", default),
                                                 ("PyTorch's order (cuDNN first on Hopper)", ()))):
            def make(i, base=base, choice=choice):
                n = base + 16 * i + 2 * choice + 1  # a length no call has had before (unaligned)
                q, k, v = (torch.randn(1, heads, n, dim, device=DEVICE, dtype=dtype, requires_grad=True)
                           for _ in range(3))
                return q, k, v, torch.randn(1, n, heads, dim, device=DEVICE, dtype=dtype)

            for kind, layer_window in (("causal", None), ("band 512", window)):
                def run(inputs, layer_window=layer_window):
                    q, k, v, grad = inputs
                    with packing.per_sample_backends(q):
                        packing._sample_attention(module, q, k, v, layer_window, {}).backward(grad)
                backends_named(names)
                try:
                    print(f"  n~{base:5d} {kind:9s} {label:42s} {fresh_timed(make, run, 6):9.2f} ms fwd+bwd", flush=True)
                except Exception as exc:
                    print(f"  n~{base:5d} {kind:9s} {label:42s} failed: {type(exc).__name__}: {exc}"[:220], flush=True)
                finally:
                    backends_named(default)


def random_rows(generator, count: int) -> list[list[int]]:
    """`count` rows of up to 2,048 tokens (64 on a CPU smoke run), one to three samples of random lengths each."""
    import torch

    cap = 2048 if DEVICE == "cuda" else 64
    rows = []
    for _ in range(count):
        parts = int(torch.randint(1, 4, (1,), generator=generator))
        cuts = sorted(torch.randint(8, cap - 8, (parts - 1,), generator=generator).tolist())
        rows.append([b - a for a, b in zip([0] + cuts, cuts + [cap]) if b > a])
    return rows


def step_table(folder: Path) -> None:
    """One decoder step (forward + backward, LoRA r=16) on micro-batches of new sample lengths each step: packed
    through ducktune_varlen with ducktune's backend choice and with PyTorch's own, and the same samples padded
    through transformers' SDPA; then the packed step under torch.profiler."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ducktune.data.template import IGNORE_INDEX
    from ducktune.train import packing
    from ducktune.train.loss import forward_hidden

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, attn_implementation="sdpa").to(DEVICE)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    generator = torch.Generator().manual_seed(0)

    def samples_of(index):  # index: a seed; each timed pass below uses seeds of its own, so shapes of its own
        rows = random_rows(torch.Generator().manual_seed(index), 4)
        return [[{"input_ids": torch.randint(10, 1500, (n,), generator=generator).tolist(), "labels": [1] * n}
                 for n in row] for row in rows]

    def packed(index):
        batch = packing.VarlenCollator()([{"samples": row} for row in samples_of(index)])
        return {k: v.to(DEVICE) if hasattr(v, "to") else v for k, v in batch.items()}

    def padded(index):
        flat = sorted((s for row in samples_of(index) for s in row), key=lambda s: len(s["input_ids"]))
        batches = []
        for group in (flat[i:i + 4] for i in range(0, len(flat), 4)):
            longest = (max(len(s["input_ids"]) for s in group) + 7) // 8 * 8
            ids, mask = torch.zeros(len(group), longest, dtype=torch.long), torch.zeros(len(group), longest, dtype=torch.long)
            for i, s in enumerate(group):
                ids[i, :len(s["input_ids"])], mask[i, :len(s["input_ids"])] = torch.tensor(s["input_ids"]), 1
            batches.append({"input_ids": ids.to(DEVICE), "attention_mask": mask.to(DEVICE),
                            "labels": torch.full_like(ids, IGNORE_INDEX)})
        return batches

    def step(batch):
        forward_hidden(model, batch).float().pow(2).mean().backward()

    packing.register_varlen_attention()
    inner = model.base_model.model
    default = packing.CUDA_BACKENDS
    inner.set_attn_implementation(packing.VARLEN_ATTENTION)
    for offset, (label, names) in ((100, ("ducktune's backends", default)), (200, ("PyTorch's order", ()))):
        backends_named(names)
        ms = fresh_timed(lambda i, offset=offset: packed(offset + i), step, 5)
        print(f"  packed, {label:20s} {ms:9.1f} ms a step (4 rows of <= 2,048 tokens)", flush=True)
    backends_named(default)
    inner.set_attn_implementation("sdpa")
    ms = fresh_timed(lambda i: padded(300 + i), lambda batches: [step(b) for b in batches], 5)
    print(f"  padded through sdpa             {ms:9.1f} ms for such samples (batches of 4)", flush=True)
    inner.set_attn_implementation(packing.VARLEN_ATTENTION)
    from torch.profiler import ProfilerActivity, profile

    batch = packed(99)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step(batch)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    if DEVICE == "cuda":
        print(averages.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60), flush=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a built Gemma 3 1B-shaped model (default: build one)")
    parser.add_argument("--cpu-smoke", action="store_true", help="on the CPU, short lengths (checks the script runs)")
    args = parser.parse_args()
    global DEVICE, SIZES
    if args.cpu_smoke:
        DEVICE, SIZES = "cpu", (520,)
    print("attention alone, Gemma 3 1B heads, bf16, window 512:", flush=True)
    attention_table()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            from window_speed import build_model

            folder = build_model(Path(tmp) / "gemma3-1b", "gemma3-1b")
        print("one training step, Gemma 3 1B shape, LoRA r=16:", flush=True)
        step_table(folder)


if __name__ == "__main__":
    main()
