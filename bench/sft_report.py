"""The SFT benchmark's report, rendered only from a recorded measurement (bench/results/bench.json).

bench/run.py prints it after measuring and, with `--write` or `--from-json`, writes it into the
block between the SFT markers of bench/RESULTS.md and the BENCH markers of README.md (via
bench/blocks.replace_block): every number in those blocks comes from the JSON.
"""

from __future__ import annotations

import statistics
from pathlib import Path

SIDES = ("baseline", "tuned", "ducktune")
SIDE_NAMES = {"baseline": "TRL SFTTrainer, defaults", "tuned": "TRL SFTTrainer, tuned", "ducktune": "ducktune"}
SHORT = {"baseline": "TRL defaults", "tuned": "TRL tuned", "ducktune": "ducktune"}
PREFIXES = {"smollm2-135m": "smollm2_"}
SFT_BEGIN, SFT_END = "<!-- SFT:BEGIN (bench/run.py --write) -->", "<!-- SFT:END -->"
README_BEGIN, README_END = "<!-- BENCH:BEGIN (bench/run.py --write) -->", "<!-- BENCH:END -->"
# A measurement on CUDA goes to its own block of RESULTS.md (the GPU section); the README's table
# and the SFT block stay the CPU measurement's.
GPU_BEGIN, GPU_END = "<!-- SFT-GPU:BEGIN (bench/run.py --write on CUDA) -->", "<!-- SFT-GPU:END -->"


def on_cuda(measured: dict) -> bool:
    return measured["results"][0]["settings"]["device"] == "cuda"


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def peak_flops(measured: dict) -> float:
    """The matmul ceiling of the run: the higher of the measurements before and after it."""
    peak = measured["matmul_peak"]
    return max(peak) if isinstance(peak, list) else peak


def useful_flops(r: dict, side: str) -> float:
    """Useful FLOP/s of a side at its median speed: the pass's useful FLOPs over its train time."""
    return r["flops"] * r["sides"][side]["tps"] / r["trained_tokens"]


def ratios(r: dict, peak: float) -> dict[str, float]:
    s = r["sides"]
    return {"throughput_ratio": s["ducktune"]["tps"] / s["baseline"]["tps"],
            "throughput_ratio_tuned": s["ducktune"]["tps"] / s["tuned"]["tps"],
            "memory_ratio": s["ducktune"]["peak"] / s["baseline"]["peak"],
            "useful_flops_fraction": useful_flops(r, "ducktune") / peak}


def prefix(index: int, key: str) -> str:
    """No prefix for the main (first) model; `smollm2_` for SmolLM2, else the key's."""
    return "" if index == 0 else PREFIXES.get(key, key.replace("-", "_") + "_")


def ratio_lines(results: list[dict], peak: float) -> list[str]:
    return [f"{prefix(i, r['key'])}{name}: {value:.3f}"
            for i, r in enumerate(results) for name, value in ratios(r, peak).items()]


def _range(median: float, low: float, high: float, fmt) -> str:
    return f"{fmt(median)} ({fmt(low)}-{fmt(high)})"


def _packing(r: dict, side: str) -> str:
    s = r["sides"][side]
    if side == "ducktune":
        return r["batching"]
    check = r.get("trl_packing_check")
    if side == "tuned" and not s["packing"] and check:
        return "off (leaks)" if check["samples_in_row"] > 1 else "off (1 sample per row)"
    return "BFD" if s["packing"] else "off"


def table(results: list[dict], peak: float) -> list[str]:
    """Per model, one row per side (medians, min-max over the alternations), then the ratios."""
    lines = ["| model | side | trained tok/s | peak memory | steps | checkpointing | packing | held-out loss | "
             "useful FLOP/s (of matmul peak) |", "|---|---|---|---|---|---|---|---|---|"]
    one = lambda x: f"{x:.1f}"  # noqa: E731
    mem = lambda x: f"{x / 2**30:.2f}"  # noqa: E731
    for r in results:
        for side in SIDES:
            s = r["sides"][side]
            flops = useful_flops(r, side)
            lines.append(
                f"| {r['label']} | {SIDE_NAMES[side]} | {_range(s['tps'], s['tps_min'], s['tps_max'], one)} | "
                f"{_range(s['peak'], s['peak_min'], s['peak_max'], mem)} GiB | {s['steps']} | "
                f"{'on' if s['gradient_checkpointing'] else 'off'} | {_packing(r, side)} | "
                f"{statistics.median(s['heldout']):.4f} | {flops / 1e9:.1f} G ({flops / peak * 100:.0f} %) |")
        q = ratios(r, peak)
        tuned_mem = r["sides"]["ducktune"]["peak"] / r["sides"]["tuned"]["peak"]
        lines.append(f"| {r['label']} | **ducktune / TRL defaults** | **{q['throughput_ratio']:.2f}x** | "
                     f"**{q['memory_ratio']:.2f}x** | | | | | |")
        lines.append(f"| {r['label']} | **ducktune / TRL tuned** | **{q['throughput_ratio_tuned']:.2f}x** | "
                     f"**{tuned_mem:.2f}x** | | | | | |")
    return lines


def packing_note(r: dict) -> str:
    check = r.get("trl_packing_check")
    if not check:
        return "TRL tuned: packing not tried (`--packing off` or no check recorded)."
    if r["sides"]["tuned"]["packing"]:
        verdict = "used: each sample's logits in a packed row equal its logits alone"
    elif check["samples_in_row"] < 2:
        verdict = "NOT used: no packed row holds two samples, so isolation could not be checked"
    else:
        verdict = "NOT used: in a packed row samples attend to each other on this backend"
    return (f"TRL tuned, BFD packing {verdict} (check on a row of {check['samples_in_row']} samples: max |diff| "
            f"{check['max_abs_diff']:.1e}; the same row with an all-ones mask, the leak the check must see: "
            f"{check['control_diff']:.1e}).")


def results_block(measured: dict) -> str:
    """The SFT section of bench/RESULTS.md, from the recorded measurement."""
    peak, results = peak_flops(measured), measured["results"]
    before_after = measured["matmul_peak"] if isinstance(measured["matmul_peak"], list) else [peak]
    t, cuda = results[0]["settings"]["train"], on_cuda(measured)
    trl_device = ("`bf16=True` (weights and compute in bf16 on CUDA, as ducktune's `model.dtype: auto` there)"
                  if cuda else "`bf16=False`, `use_cpu=True`")
    lines = [
        GPU_BEGIN if cuda else SFT_BEGIN,
        f"Measured {measured['date']} by `bench/run.py {measured.get('command', '--write')}` (total "
        f"{measured['seconds']:.0f} s); {'; '.join(measured['machine'])}; matmul ceiling "
        f"{' / '.join(f'{p / 1e9:.1f}' for p in before_after)} GFLOP/s before / after "
        + ("the runs" if len(before_after) <= 2 else "each model's runs")
        + (f"; load average (1 min) before / after: {measured['load_average'][0]:.2f} / "
           f"{measured['load_average'][1]:.2f} (the bench's own runs add about its thread count)."
           if measured.get("load_average") else "."),
        "",
        "- Work per model: synthetic chats (`bench/synthetic.py`, lengths lognormal around half the cutoff, seed 0), "
        "one pass, the same token ids, label masks and trained tokens on every side (counted in the collated "
        "batches; the script refuses to report otherwise): "
        + "; ".join(f"{r['label']}: {r['samples']} chats, cutoff {r['cutoff']}, {r['trained_tokens']} trained "
                    f"of {r['tokens']} tokens, {r['repeats']} alternations" for r in results) + ".",
        f"- All sides: LoRA r={t['lora_r']} / alpha {t['lora_alpha']} / dropout {t['lora_dropout']} on all linear "
        f"projections, batch {t['batch_size']} x accumulation {t['grad_accum']}, AdamW lr {t['learning_rate']:g}"
        f"{optimizer_note(results)}, "
        f"cosine, warm-up {t['warmup_ratio']:.0%}, seed {t['seed']}, {results[0]['settings']['threads']} torch "
        "thread(s), each run in its own process, sides in rotating order; tables give medians (min-max).",
        "- TRL defaults: TRL 1.16 `SFTTrainer` + `peft_config` at its defaults (padded batches, gradient "
        "checkpointing on, its LM-head loss on every position, entropy and accuracy metrics), " + trl_device
        + ". TRL tuned: the same with `gradient_checkpointing=False` and, when the check below "
        "passes, `packing=True, packing_strategy='bfd'` (padding-free rows, position ids restart per sample).",
        "- ducktune: `ducktune.train.recipe.train` at its defaults (packing auto, chunked loss on trained "
        "positions, memory plan). Useful FLOP/s: one formula for all sides (frozen linears forward + input "
        "gradient, LoRA, causal attention on real tokens, LM head on trained positions), over train time.",
        "",
    ]
    lines += table(results, peak)
    lines.append("")
    for r in results:
        ordered = sorted(((x.get("order", 0), side, x) for side in SIDES for x in r["runs"][side]), key=lambda t: t[0])
        per_run = ", ".join(f"{SHORT[side]} {x['tokens_per_s']:.1f}" for _, side, x in ordered)
        setup = r["plan_setup"]
        lines.append(f"- {r['label']}: trained tok/s per run, in run order: {per_run}. {packing_note(r)} "
                     f"ducktune's memory plan: {plan_note(r, cuda)}, batch "
                     f"{setup['batch_size']} x accumulation {setup['grad_accum']}, gradient checkpointing "
                     f"{'on' if setup['gradient_checkpointing'] else 'off'}, loss chunk {setup['loss_chunk_size']}.")
    lines += ["", "```text", *ratio_lines(results, peak), "```", GPU_END if cuda else SFT_END]
    return "\n".join(lines)


def plan_note(r: dict, cuda: bool) -> str:
    """ducktune's planned peak against its measured median peak. On CUDA the measured peak is
    max_memory_allocated, which leaves out the CUDA context: so does the plan figure compared."""
    peak = r["sides"]["ducktune"]["peak"]
    if not cuda:
        return f"{gib(r['plan'])} ({(r['plan'] / peak - 1) * 100:+.0f} % of its median peak)"
    from ducktune.train.plan import FRAMEWORK_BYTES

    tensors = r["plan"] - FRAMEWORK_BYTES["cuda"]
    return (f"{gib(tensors)} of tensors ({(tensors / peak - 1) * 100:+.0f} % of its median peak; its "
            f"{gib(FRAMEWORK_BYTES['cuda'])} for the CUDA context left out, as max_memory_allocated leaves it out)")


def optimizer_note(results: list[dict]) -> str:
    """Which AdamW each side ran (each at its own default), when the results record it."""
    names = {side: results[0]["sides"][side].get("optimizer") for side in SIDES}
    if not all(names.values()):
        return ""  # results measured before the optimizer was recorded: all sides ran adamw_torch
    return " (each side's default: " + ", ".join(f"{SHORT[side]} {names[side]}" for side in SIDES) + ")"


def readme_block(measured: dict) -> str:
    """The README's benchmark table: trained tokens/s per side and the ratios, per model."""
    peak, results = peak_flops(measured), measured["results"]
    lines = [README_BEGIN,
             f"Measured {measured['date']} by `bench/run.py {measured.get('command', '--write')}` (medians of "
             f"{results[0]['repeats']} alternation(s), "
             f"{results[0]['settings']['threads']} threads, {results[0]['settings']['device']} "
             f"{results[0]['settings']['dtype']}; details in [bench/RESULTS.md](bench/RESULTS.md)):",
             "",
             "| model | TRL defaults tok/s | TRL tuned tok/s | ducktune tok/s | vs TRL defaults | vs TRL tuned | "
             "peak memory vs TRL defaults | ducktune useful FLOP/s of matmul peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, q = r["sides"], ratios(r, peak)
        lines.append(f"| {r['label']} | {s['baseline']['tps']:.1f} | {s['tuned']['tps']:.1f} | "
                     f"{s['ducktune']['tps']:.1f} | "
                     f"**{q['throughput_ratio']:.2f}x** | **{q['throughput_ratio_tuned']:.2f}x** | "
                     f"{q['memory_ratio']:.2f}x | {q['useful_flops_fraction'] * 100:.0f} % |")
    lines.append(README_END)
    return "\n".join(lines)


def render(measured: dict, results_md: Path, readme: Path) -> None:
    """Rewrite the SFT block of `results_md` and the BENCH block of `readme` from `measured`; a
    measurement on CUDA rewrites only the GPU block of `results_md`."""
    from blocks import rewrite_block

    blocks = ([(results_md, GPU_BEGIN, GPU_END, results_block(measured))] if on_cuda(measured) else
              [(results_md, SFT_BEGIN, SFT_END, results_block(measured)),
               (readme, README_BEGIN, README_END, readme_block(measured))])
    for path, begin, end, block in blocks:
        rewrite_block(path, begin, end, block)


def report(measured: dict, log) -> None:
    """The tables, then the machine-readable lines: the DPO ones, then the SFT models' (main model first)."""
    peak, results, dpo = peak_flops(measured), measured.get("results") or [], measured.get("dpo")
    log("")
    for line in table(results, peak) if results else []:
        log(line)
    for r in results:
        log(f"{r['label']}: {packing_note(r)}")
    if dpo:
        from dpo_bench import ratio_lines as dpo_lines
        from dpo_bench import table as dpo_table

        log("")
        for line in dpo_table(dpo):
            log(line)
    log("")
    for line in (dpo_lines(dpo) if dpo else []) + ratio_lines(results, peak):
        log(line)
