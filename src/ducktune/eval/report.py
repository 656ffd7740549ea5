"""Where evaluation results go: eval/eval.json, eval/predictions.jsonl, eval/eval.png, and an
"Evaluation" section of report.md (replaced on every run, placed before the config)."""

from __future__ import annotations

import json

from ducktune.io import atomic_file, write_json, write_text

SECTION = "## Evaluation"
ROWS = (("loss", "held-out loss", 4), ("perplexity", "perplexity", 2), ("exact_match", "exact match %", 1),
        ("bleu_4", "BLEU-4", 2), ("rouge_1", "ROUGE-1", 2), ("rouge_2", "ROUGE-2", 2), ("rouge_l", "ROUGE-L", 2),
        ("tool_call_name", "tool calls: right functions %", 1),
        ("tool_call_exact", "tool calls: right functions and arguments %", 1),
        ("choice_accuracy", "multiple-choice accuracy %", 1),
        ("preference_accuracy", "prefers chosen % (held-out pairs)", 1),
        ("preference_margin", "log p(chosen) - log p(rejected)", 3))
PERCENT_KEYS = ("exact_match", "tool_call_name", "tool_call_exact", "choice_accuracy", "preference_accuracy")  # eval.png's bars (BLEU/ROUGE too)


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def metric_rows(result: dict) -> list[tuple[str, str, str]]:
    """(label, base, tuned) for every measured headline metric."""
    rows = []
    for key, label, digits in ROWS:
        pair = result.get(key) or {}
        if pair.get("tuned") is not None or pair.get("base") is not None:
            rows.append((label, _fmt(pair.get("base"), digits), _fmt(pair.get("tuned"), digits)))
    return rows


def _cell(text: str) -> str:
    return (text or "").strip().replace("|", "\\|").replace("\n", "<br>") or "(empty)"


NOT_MEASURED = "not measured (no persona terms or trained answers to look for: set eval.persona_terms)"


def bleed_count(bleed: dict) -> str:
    """"3/52 (6 %)", or why bleed was not measured (None in eval.json, never a false 0 %)."""
    if bleed.get("bleed_rate") is None:
        return NOT_MEASURED
    return f"{bleed['bleed']}/{bleed['prompts']} ({bleed['bleed_rate']:.0f} %)"


def bleed_lines(bleed: dict | None) -> list[str]:
    if not bleed:
        return []
    lines = [f"Forgetting / bleed on {bleed['prompts']} general prompts the run never trained on: "
             f"**bleed {bleed_count(bleed)}**, {bleed['changed']} answers changed, "
             f"mean KL(tuned || base) {_fmt(bleed.get('mean_kl'), 4)} nats.", ""]
    changed = [r for r in bleed["rows"] if r["changed"]]
    if changed:
        lines += ["| prompt | base | tuned | bleed |", "|---|---|---|---|"]
        for row in changed:
            lines.append(f"| {_cell(row['prompt'])} | {_cell(row['base'])} | {_cell(row['tuned'])} | "
                         f"{'yes: ' + _cell(row['bleed_text']) if row['bleed'] else ''} |")
        lines.append("")
    return lines


def preference_line(preference: dict | None) -> str | None:
    """One sentence on held-out pairs: how many, the reward against which reference; None without any."""
    if not preference:
        return None
    if not preference.get("pairs"):
        return (f"Preference: not measured ({preference.get('unpaired_skipped', 0)} held-out KTO samples are "
                "unpaired: no chosen/rejected pair to compare)")
    line = f"Preference on {preference['pairs']} held-out pairs"
    if preference.get("reward_accuracy") is not None:
        line += (f": reward accuracy {preference['reward_accuracy']:.0f} %, mean reward margin "
                 f"{preference['reward_margin']:.4f} (DPO's implied reward, beta {preference['beta']}, against "
                 f"{preference['reference']})")
    started = preference.get("started_from")
    if started:
        line += f"; the adapter it started from prefers chosen in {started['accuracy']:.0f} %"
    return line


def section(result: dict, has_plot: bool) -> str:
    lines = [SECTION, "", f"`ducktune eval` ({result['finished']}, {result['seconds']:.0f} s); "
             "base = the same weights with the adapter switched off.", ""]
    rows = metric_rows(result)
    if rows:
        lines += ["| metric | base | tuned |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows] + [""]
    if line := preference_line(result.get("preference")):
        lines += [line + ".", ""]
    if has_plot:
        lines += ["![eval](eval/eval.png)", ""]
    return "\n".join(lines + bleed_lines(result.get("bleed")))


def update_report(report_path, text: str) -> None:
    """Put the evaluation section into report.md, replacing an earlier one, before `## Config`."""
    old = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    start = old.find(SECTION)
    if start >= 0:
        end = old.find("\n## ", start + len(SECTION))
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    at = old.find("## Config")
    new = old[:at] + text + "\n" + old[at:] if at >= 0 else old.rstrip() + "\n\n" + text + "\n"
    write_text(report_path, new)


def plot_eval(result: dict, path) -> bool:
    """Base vs tuned bars: per-subject multiple-choice accuracy and the percent metrics (a table of
    many subjects reads worse than bars)."""
    bars = [(label, result[key]) for key, label, _ in ROWS
            if (key in PERCENT_KEYS or key.startswith(("bleu", "rouge"))) and (result.get(key) or {}).get("tuned") is not None]
    choices = result.get("choices") or {}
    subjects = (choices.get("tuned") or {}).get("subjects") or {}
    if len(subjects) > 1:  # per subject only when there is more than one
        base_subjects = (choices.get("base") or {}).get("subjects") or {}
        bars += [(f"MC: {s}", {"tuned": v, "base": base_subjects.get(s)}) for s, v in subjects.items()]
    if (result.get("bleed") or {}).get("bleed_rate") is not None:
        bars.append(("bleed %", {"base": 0.0, "tuned": result["bleed"]["bleed_rate"]}))
    if not bars:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(bars) + 2), 4), dpi=100)
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [b[1].get("base") or 0 for b in bars], 0.4, label="base", color="#9aa5b1")
    ax.bar([x + 0.2 for x in xs], [b[1].get("tuned") or 0 for b in bars], 0.4, label="tuned", color="#e0a100")
    ax.set_xticks(list(xs), [b[0] for b in bars], rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return True


def write_eval_outputs(run, result: dict, predictions: list[dict]) -> None:
    folder = run.path / "eval"
    folder.mkdir(exist_ok=True)
    write_json(folder / "eval.json", result)
    write_text(folder / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
    has_plot = plot_eval(result, folder / "eval.png")
    update_report(run.report, section(result, has_plot))


def print_summary(result: dict, folder, log=print) -> None:
    rows = metric_rows(result)
    if rows:
        width = max(len(r[0]) for r in rows)
        log(f"{'metric':<{width}}  {'base':>10}  {'tuned':>10}")
        for label, base, tuned in rows:
            log(f"{label:<{width}}  {base:>10}  {tuned:>10}")
    if line := preference_line(result.get("preference")):
        log(line)
    loss = result.get("loss") or {}
    # A preference run's validation split is pairs: scored above, not missing.
    if loss.get("tuned") is None and loss.get("base") is None and not result.get("preference"):
        log("Held-out loss: none (the run has no validation split: set data.val_ratio or data.val_file when "
            "training, or pass held-out chat data with --data FILE)")
    bleed = result.get("bleed")
    if bleed:
        log(f"Bleed on {bleed['prompts']} general prompts: {bleed_count(bleed)}, "
            f"{bleed['changed']} answers changed, mean KL(tuned || base) {_fmt(bleed.get('mean_kl'), 4)}")
    log(f"Written: {folder}/eval.json, predictions.jsonl, eval.png; report.md has an Evaluation section")
