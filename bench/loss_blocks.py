"""The CPU loss's vocabulary blocks against one [chunk x vocab] block: time of the LM-head loss.

    .venv/bin/python bench/loss_blocks.py [--repeats 7] [--threads 2] [--write]

One process, the two walkers of train/loss.py on the same frozen head, hidden states and targets
(loss and the hidden states' gradient, as a LoRA step computes them), alternating call by call:
`_linear_ce_chunks` (one [chunk x vocab] logits block per chunk: the head is read twice per chunk)
and `_linear_ce_vocab_blocks` (cache-sized blocks of head rows, online log-sum-exp: read once).
Cases: the bench's heads (Qwen2.5's 152k x 448 of qwen2-scaled, SmolLM2's 49k x 576) at the
trained rows of one bench step, and Qwen2.5-0.5B's real 152k x 896 head at 1,024 rows (in chunks
of 256 rows, the default for a 152k vocabulary: the head is read 4 times by the vocabulary blocks,
8 times by one block per chunk). Ratio: median over alternations of blocks / one block in the
same pair. Writes
bench/results/loss_blocks.json; --write also renders the LOSS-BLOCKS block of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "loss_blocks.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- LOSS-BLOCKS:BEGIN (bench/loss_blocks.py --write) -->", "<!-- LOSS-BLOCKS:END -->"
# (label, trained rows, hidden, vocab): the bench's steps (2,783 trained tokens in 27 steps of
# qwen2-scaled; 1,053 in 23 of SmolLM2) and a larger micro-batch of the real Qwen2.5-0.5B head.
CASES = [("qwen2-scaled head, one bench step", 103, 448, 151_936),
         ("SmolLM2-135M head, one bench step", 46, 576, 49_152),
         ("Qwen2.5-0.5B head, 1,024 trained rows", 1024, 896, 151_936)]


def measure_case(rows: int, hidden: int, vocab: int, repeats: int) -> dict:
    """Seconds per call of each walker, alternating, with each walker's own default chunk."""
    import torch

    from ducktune.train import loss
    from ducktune.train.plan import auto_loss_chunk

    generator = torch.Generator().manual_seed(0)
    h = torch.randn(rows, hidden, generator=generator)
    weight = torch.randn(vocab, hidden, generator=generator) * 0.02
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    chunks = {"one_block": auto_loss_chunk(vocab), "vocab_blocks": auto_loss_chunk(vocab)}  # the default chunk
    walkers = {"one_block": loss._linear_ce_chunks, "vocab_blocks": loss._linear_ce_vocab_blocks}
    results = {name: walk(h, weight, None, targets, chunks[name], True) for name, walk in walkers.items()}  # warm-up
    difference = float((results["one_block"][1] - results["vocab_blocks"][1]).abs().max())
    times: dict[str, list[float]] = {name: [] for name in walkers}
    for i in range(repeats):
        for name in (list(walkers) if i % 2 == 0 else list(walkers)[::-1]):
            started = time.perf_counter()
            walkers[name](h, weight, None, targets, chunks[name], True)
            times[name].append(round(time.perf_counter() - started, 5))
    return {"rows": rows, "hidden": hidden, "vocab": vocab, "chunks": chunks, "seconds": times,
            "max_gradient_difference": difference}


def ratios(case: dict) -> list[float]:
    """vocab blocks / one block, pair by pair (alternation i of each)."""
    return [b / a for a, b in zip(case["seconds"]["one_block"], case["seconds"]["vocab_blocks"])]


def render(measured: dict) -> str:
    lines = [BEGIN, "",
             f"Measured {measured['date']} by `bench/loss_blocks.py --write` ({measured['threads']} threads, "
             f"{measured['repeats']} alternations per case; source: bench/results/loss_blocks.json). Loss and "
             "hidden-state gradient of a frozen fp32 head, both walkers at the default loss chunk for the vocabulary.", "",
             "| case | one [chunk x vocab] block | vocabulary blocks | blocks / one block, pair by pair: median (min-max) |",
             "|---|---:|---:|---:|"]
    for label, case in zip(measured["labels"], measured["cases"]):
        r = ratios(case)
        one, blocks = (statistics.median(case["seconds"][k]) * 1e3 for k in ("one_block", "vocab_blocks"))
        lines.append(f"| {label} | {one:.0f} ms (chunk {case['chunks']['one_block']}) | {blocks:.0f} ms "
                     f"(chunk {case['chunks']['vocab_blocks']}) | {statistics.median(r):.2f}x "
                     f"({min(r):.2f}-{max(r):.2f}) |")
    worst = max(c["max_gradient_difference"] for c in measured["cases"])
    lines += ["", f"Largest difference between the two walkers' hidden-state gradients: {worst:.1e}.", "", END]
    return "\n".join(lines)


def write_block(measured: dict, write: bool) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from blocks import show_block

    block = render(measured)
    show_block(block, write, RESULTS_MD, BEGIN, END, missing="## The CPU loss's vocabulary blocks\n\n" + block)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternations per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="render the LOSS-BLOCKS block of bench/RESULTS.md")
    parser.add_argument("--from-json", action="store_true", help="render the committed JSON again, measure nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        return write_block(json.loads(RESULTS_JSON.read_text(encoding="utf-8")), args.write)
    import torch

    torch.set_num_threads(args.threads)
    cases = []
    for label, rows, hidden, vocab in CASES:
        cases.append(measure_case(rows, hidden, vocab, args.repeats))
        print(f"{label}: blocks / one block {statistics.median(ratios(cases[-1])):.2f}x", flush=True)
    measured = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "repeats": args.repeats,
                "labels": [c[0] for c in CASES], "cases": cases}
    from ducktune.io import write_json

    write_json(RESULTS_JSON, measured, indent=1)
    write_block(measured, args.write)


if __name__ == "__main__":
    main()
