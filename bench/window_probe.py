"""Where the packed sliding-window step spends its time (a probe for a lent GPU; prints tables, writes nothing).

    python3 bench/window_probe.py [--folder DIR]

1. Attention alone at Gemma 3 1B's head shape (4 query heads, 1 KV head of 256, bf16), forward + backward,
   per variant: causal SDPA, the packed path's additive band mask (window 512), a boolean band mask, the band
   mask at an aligned length, and transformers' own SDPA attention with its sliding mask.
2. One training step (decoder forward + backward, LoRA r=16 on every linear) of Gemma 3 1B's shape on a
   packed micro-batch through `ducktune_varlen`, against the same tokens as padded samples through
   transformers' SDPA; the packed step once more under torch.profiler, top kernels and CPU ops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICE = "cuda"
SIZES = (1000, 1008, 2000)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))


def timed(fn, repeats: int = 7, warmup: int = 2) -> float:
    """Median milliseconds of fn() (synchronized on CUDA)."""
    import time

    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def attention_table() -> None:
    import torch
    import torch.nn.functional as F

    from ducktune.train.packing import _band_mask

    device, dtype, heads, dim, window = DEVICE, torch.bfloat16, 4, 256, 512
    for n in SIZES:
        q = torch.randn(1, heads, n, dim, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(1, heads, n, dim, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(1, heads, n, dim, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn(1, heads, n, dim, device=device, dtype=dtype)
        index = torch.arange(n, device=device)
        band = ((index[:, None] - index[None, :]) >= 0) & ((index[:, None] - index[None, :]) < window)
        additive = _band_mask(n, window, dtype, torch.device(device))
        variants = {"causal (flash)": dict(is_causal=True), "additive band": dict(attn_mask=additive),
                    "bool band": dict(attn_mask=band[None, None]),
                    "additive band, fresh each call": None}
        for name, kwargs in variants.items():
            def step(kwargs=kwargs):
                if kwargs is None:
                    kwargs = dict(attn_mask=_band_mask.__wrapped__(n, window, dtype, torch.device(device)))
                F.scaled_dot_product_attention(q, k, v, **kwargs).backward(grad)
            try:
                print(f"  n={n:5d} {name:32s} {timed(step):8.3f} ms fwd+bwd", flush=True)
            except Exception as exc:
                print(f"  n={n:5d} {name:32s} failed: {type(exc).__name__}: {exc}"[:200], flush=True)
        for backend in ("EFFICIENT_ATTENTION", "MATH"):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def forced(backend=backend):
                with sdpa_kernel(getattr(SDPBackend, backend)):
                    F.scaled_dot_product_attention(q, k, v, attn_mask=additive).backward(grad)
            try:
                print(f"  n={n:5d} additive band, {backend:17s}  {timed(forced):8.3f} ms fwd+bwd", flush=True)
            except Exception as exc:
                print(f"  n={n:5d} additive band, {backend} failed: {type(exc).__name__}: {exc}"[:200], flush=True)


def packed_rows() -> list[list[int]]:
    """Four packed rows of 2,048 tokens at most, sample lengths as the window bench's chats give."""
    if DEVICE == "cpu":
        return [[11, 9], [15, 5]]
    return [[1100, 900], [1500, 500], [700, 700, 600], [2000]]


def step_table(folder: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ducktune.data.template import IGNORE_INDEX
    from ducktune.train.loss import forward_hidden
    from ducktune.train.packing import VARLEN_ATTENTION, VarlenCollator, register_varlen_attention

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, attn_implementation="sdpa").to(DEVICE)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    generator = torch.Generator().manual_seed(0)
    rows = packed_rows()
    samples = [[{"input_ids": torch.randint(10, 1500, (n,), generator=generator).tolist(), "labels": [1] * n}
                for n in row] for row in rows]
    packed = VarlenCollator()([{"samples": row} for row in samples])
    packed = {k: v.to(DEVICE) if hasattr(v, "to") else v for k, v in packed.items()}
    flat = [s for row in samples for s in row]
    longest = (max(len(s["input_ids"]) for s in flat) + 7) // 8 * 8

    def padded_batch(group):
        ids = torch.zeros(len(group), longest, dtype=torch.long)
        mask = torch.zeros(len(group), longest, dtype=torch.long)
        for i, s in enumerate(group):
            ids[i, :len(s["input_ids"])] = torch.tensor(s["input_ids"])
            mask[i, :len(s["input_ids"])] = 1
        return {"input_ids": ids.to(DEVICE), "attention_mask": mask.to(DEVICE), "labels": torch.full_like(ids, IGNORE_INDEX)}

    def step(batch):
        hidden = forward_hidden(model, batch)
        hidden.float().pow(2).mean().backward()

    tokens = sum(len(s["input_ids"]) for s in flat)
    register_varlen_attention()
    model.base_model.model.set_attn_implementation(VARLEN_ATTENTION)
    packed_ms = timed(lambda: step(packed), repeats=5)
    print(f"  packed through {VARLEN_ATTENTION}: {packed_ms:8.1f} ms a step ({tokens} tokens, {len(flat)} samples)",
          flush=True)
    from ducktune.train import packing

    cache = packing._band_mask
    packing._band_mask = __import__("functools").lru_cache(maxsize=64)(cache.__wrapped__)
    print(f"  packed, band-mask cache of 64:  {timed(lambda: step(packed), repeats=5):8.1f} ms a step", flush=True)
    packing._band_mask = cache
    model.base_model.model.set_attn_implementation("sdpa")
    groups = [flat[i:i + 4] for i in range(0, len(flat), 4)]
    padded_ms = timed(lambda: [step(padded_batch(g)) for g in groups], repeats=5)
    print(f"  padded through sdpa ({len(groups)} batches of <= 4, padded to {longest}): {padded_ms:8.1f} ms", flush=True)
    model.base_model.model.set_attn_implementation(VARLEN_ATTENTION)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step(packed)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60), flush=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a built Gemma 3 1B-shaped model (default: build one)")
    parser.add_argument("--cpu-smoke", action="store_true", help="on the CPU, short lengths (checks the script runs)")
    args = parser.parse_args()
    global DEVICE, SIZES
    if args.cpu_smoke:
        DEVICE, SIZES = "cpu", (40,)
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
