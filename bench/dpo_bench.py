"""The DPO section of `make bench`: ducktune's train.objective dpo vs TRL's DPOTrainer.

Same process layout as the SFT benchmark (bench/run.py): the two sides alternate (baseline,
ducktune, baseline, ducktune...), each in its own subprocess (bench/dpo_sides.py) so its peak
memory is its own, on the same synthetic pairs tokenized once by ducktune's chat format (the
same token ids and trained tokens on both sides), with the same LoRA, batch (pairs per step),
accumulation, learning rate, schedule, beta, cutoff, seed and thread count. Ratios are of the
medians over the alternations:

    dpo_throughput_ratio: X   (ducktune / TRL trained tokens per second; a pair's trained
                               tokens are both answers')
    dpo_memory_ratio: Y       (ducktune / TRL peak memory)

`write_results` records the measurement in bench/results/dpo.json and rewrites the block
between the DPO markers of bench/RESULTS.md from it (nothing in that block is typed by hand).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT_JSON = HERE / "results" / "dpo.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- DPO:BEGIN (bench/run.py --sections dpo --write-dpo) -->", "<!-- DPO:END -->"


def write_pairs(model: Path, path: Path, n: int, seed: int) -> None:
    from synthetic import synthetic_pairs, tokens_per_word

    from ducktune.models.loading import load_tokenizer

    ratio = tokens_per_word(load_tokenizer(model))
    with path.open("w", encoding="utf-8") as handle:
        for pair in synthetic_pairs(n, seed=seed, tokens_per_word=ratio):
            handle.write(json.dumps(pair) + "\n")


def bench_dpo(key: str, pairs: int, repeats: int, args, device: str, dtype: str, root: Path, log) -> dict:
    """Alternate the two DPO sides `repeats` times on `pairs` synthetic pairs of model `key`."""
    from run import build_model, run_side

    folder = build_model(key)
    workdir = root / f"dpo-{key}"
    workdir.mkdir(parents=True, exist_ok=True)
    data, heldout = workdir / "pairs.jsonl", workdir / "heldout-pairs.jsonl"
    write_pairs(folder, data, pairs, seed=args.seed)
    write_pairs(folder, heldout, max(4, args.heldout // 2), seed=args.seed + 1)
    spec = {
        "model": str(folder), "data": str(data), "heldout": str(heldout), "workdir": str(workdir),
        "device": device, "dtype": dtype, "cutoff": args.cutoff, "threads": args.threads,
        "train": {"batch_size": args.dpo_batch_size, "grad_accum": args.grad_accum, "learning_rate": args.dpo_lr,
                  "warmup_ratio": 0.03, "seed": 42, "beta": 0.1,
                  "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05},
    }
    runs: dict[str, list[dict]] = {"baseline": [], "ducktune": []}
    for repeat in range(repeats):
        for side in ("baseline", "ducktune"):
            started = time.perf_counter()
            result = run_side({**spec, "side": side}, workdir, script="dpo_sides.py")
            result["tokens_per_s"] = result["dataset_trained_tokens"] / result["train_seconds"]
            runs[side].append(result)
            log(f"  DPO {key} {side} #{repeat + 1}: {result['tokens_per_s']:.0f} trained tok/s, "
                f"peak {result['peak_bytes'] / 2**30:.2f} GiB, {result['steps']} steps, held-out reward accuracy "
                f"{result['heldout_reward_accuracy']:.2f} ({time.perf_counter() - started:.0f} s)")
    return summarize(key, runs, spec)


def summarize(key: str, runs: dict, spec: dict) -> dict:
    base, duck = runs["baseline"], runs["ducktune"]
    for r in base + duck:
        if r["counted_trained_tokens"] != r["dataset_trained_tokens"]:
            raise SystemExit(f"DPO {key}: a side trained {r['counted_trained_tokens']} tokens, the pairs hold "
                             f"{r['dataset_trained_tokens']}: the work differs")
    median = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    first = duck[0]
    return {
        "label": key,
        "pairs": first["pairs"],
        "trained_tokens": first["dataset_trained_tokens"],
        "tokens": first["dataset_tokens"],
        "settings": {k: v for k, v in spec.items() if k in ("cutoff", "threads", "device", "dtype", "train")},
        "baseline_tps": median(base, "tokens_per_s"),
        "ducktune_tps": median(duck, "tokens_per_s"),
        "baseline_peak": median(base, "peak_bytes"),
        "ducktune_peak": median(duck, "peak_bytes"),
        "plan": median(duck, "plan_bytes"),
        "baseline_steps": base[0]["steps"],
        "ducktune_steps": first["steps"],
        "baseline_checkpointing": base[0]["gradient_checkpointing"],
        "ducktune_checkpointing": first["gradient_checkpointing"],
        # Same pairs, same order, same weights at step 0: the per-step losses should agree.
        "loss_max_difference": max((abs(a - b) for a, b in zip(base[0]["losses"], first["losses"])), default=None),
        "runs": runs,
    }


def table(r: dict) -> list[str]:
    from run import gib

    lines = ["| model | side | trained tok/s | peak memory | steps | gradient checkpointing | "
             "held-out reward accuracy | last-step loss |", "|---|---|---|---|---|---|---|---|"]
    for side, name in (("baseline", "TRL DPOTrainer"), ("ducktune", "ducktune dpo")):
        runs = r["runs"][side]
        accuracy = ", ".join(f"{x['heldout_reward_accuracy']:.2f}" for x in runs)
        lines.append(f"| {r['label']} | {name} | {r[f'{side}_tps']:.0f} | {gib(r[f'{side}_peak'])} | "
                     f"{r[f'{side}_steps']} | {'on' if r[f'{side}_checkpointing'] else 'off'} | {accuracy} | "
                     f"{runs[-1]['losses'][-1]:.4f} |")
    lines.append(f"| {r['label']} | **ratio** | **{r['ducktune_tps'] / r['baseline_tps']:.2f}x** | "
                 f"**{r['ducktune_peak'] / r['baseline_peak']:.2f}x** | | | | |")
    return lines


def ratio_lines(r: dict) -> list[str]:
    return [f"dpo_throughput_ratio: {r['ducktune_tps'] / r['baseline_tps']:.3f}",
            f"dpo_memory_ratio: {r['ducktune_peak'] / r['baseline_peak']:.3f}"]


def results_block(measured: dict) -> str:
    """The DPO section of RESULTS.md, from the recorded measurement."""
    r, s = measured["dpo"], measured["dpo"]["settings"]
    t = s["train"]
    per_run = lambda side: " / ".join(f"{x['tokens_per_s']:.0f}" for x in r["runs"][side])  # noqa: E731
    lines = [
        BEGIN,
        f"Measured {measured['date']} by `bench/run.py --sections dpo --write-dpo` (total {measured['seconds']:.0f} s); "
        f"{measured['machine'][0]}; matmul ceiling {measured['matmul_peak'] / 1e9:.1f} GFLOP/s in the same run.",
        "",
        f"- Work: {r['pairs']} synthetic pairs (`bench/synthetic.py` `synthetic_pairs`, seed 0; prompts and two "
        f"different answers of mixed length), {r['trained_tokens']} trained tokens (both answers of every pair), "
        f"{r['tokens']} tokens in all; cutoff {s['cutoff']}; one pass; {len(r['runs']['ducktune'])} alternation(s), "
        "each side in its own process; ratios of the medians.",
        f"- Both sides: the same token ids (ducktune's chat format tokenizes the pairs once; TRL gets them as "
        f"prompt_ids/chosen_ids/rejected_ids), LoRA r={t['lora_r']} / alpha {t['lora_alpha']} on all linear "
        f"projections, {t['batch_size']} pairs per step x accumulation {t['grad_accum']}, AdamW lr "
        f"{t['learning_rate']:g}, cosine, warm-up {t['warmup_ratio']:.0%}, beta {t['beta']}, sigmoid loss, "
        f"seed {t['seed']}, dropout off (TRL's disable_dropout default; ducktune does the same), reference = the "
        f"base with the adapter switched off, {s['threads']} torch thread(s). Trained tokens are counted in the "
        "collated batches on both sides and the script refuses to report if either differs from the data's.",
        "- TRL 1.16 `DPOTrainer` + `peft_config` at its defaults (padded batches, gradient checkpointing "
        f"{'on' if r['baseline_checkpointing'] else 'off'}, its fused LM head over every position, the reference "
        "pass every step) except the shared settings above and what the CPU needs: `bf16=False`, `use_cpu=True`. "
        "It has no input for pre-tokenized pairs: the benchmark subclasses it to skip `_prepare_dataset` (its "
        "chat-template tokenization) and changes nothing else. TRL's rows end at the end-of-turn token; "
        "ducktune's keep the template's untrained newline after it (one token per sequence).",
        f"- ducktune: `train.objective: dpo` with its defaults (chosen and rejected in one padded batch, the "
        f"chunked head on answer tokens only, the reference pass first under no_grad, memory plan -> gradient "
        f"checkpointing {'on' if r['ducktune_checkpointing'] else 'off'}).",
        "",
    ]
    lines += table(r)
    lines += ["", f"Per run (alternating), trained tok/s: TRL {per_run('baseline')}, ducktune {per_run('ducktune')}. "
              f"ducktune's memory plan: {r['plan'] / 2**30:.2f} GiB "
              f"({(r['plan'] / r['ducktune_peak'] - 1) * 100:+.0f} % of its measured peak). Per-step training losses "
              f"of the two sides' first runs differ by at most {r['loss_max_difference'] or 0:.1e} over "
              f"{min(r['baseline_steps'], r['ducktune_steps'])} steps (same pairs, same order, same start: the "
              "same computation).", "",
              "```text", *ratio_lines(r), "```", END]
    return "\n".join(lines)


def write_results(measured: dict) -> None:
    RESULT_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULT_JSON.write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")
    text = RESULTS_MD.read_text(encoding="utf-8")
    block = results_block(measured)
    from blocks import replace_block

    text = replace_block(text, BEGIN, END, block, missing="## DPO: ducktune vs TRL DPOTrainer (LoRA, CPU)\n\n" + block)
    RESULTS_MD.write_text(text, encoding="utf-8")
