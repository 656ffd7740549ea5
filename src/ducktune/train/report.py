"""What a run leaves for people to read: loss.png and report.md."""

from __future__ import annotations

from pathlib import Path

from ducktune.io import atomic_file, write_text


def plot_loss(metrics: list[dict], path: Path) -> bool:
    train = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if m.get("eval_loss") is not None]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="#e0a100", linewidth=1.8)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="#2a6fdb")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return True


def _cell(text: str) -> str:
    return text.strip().replace("|", "\\|").replace("\n", "<br>") or "(empty)"


def comparison_table(rows: list[dict]) -> str:
    lines = ["| prompt | base | tuned |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {_cell(row['prompt'])} | {_cell(row['base'])} | {_cell(row['tuned'])} |")
    return "\n".join(lines)


def write_report(path: Path, info: dict, config_yaml: str, comparison: list[dict] | None) -> None:
    data = info.get("data", {})
    result = info.get("result", {})
    parts = [
        f"# ducktune run: {path.parent.name}",
        "",
        f"- base model: `{info['base_model']['name_or_path']}`"
        + (f", continued from the adapter `{info['started_from']}`" if info.get("started_from") else ""),
        f"- method: {info['method']}, device: {info['placement']['device']} ({info['placement']['dtype']})",
        f"- samples: {data.get('train_samples', 0)} train, {data.get('val_samples', 0)} validation; "
        f"{data.get('truncated', 0)} truncated at {data.get('cutoff_len')} tokens, {data.get('dropped', 0)} dropped, "
        f"{data.get('skipped_bad', 0)} bad records skipped",
        f"- trained tokens: {result.get('trained_tokens', 'n/a')}, steps: {result.get('global_step', 'n/a')}, "
        f"time: {result.get('train_seconds', 0):.0f} s, {result.get('tokens_per_s', 0):.0f} trained tokens/s",
        f"- final train loss: {_fmt(result.get('final_loss'))}, eval loss: {_fmt(result.get('eval_loss'))}",
        *_preference_lines(info),
        f"- stop tokens: {', '.join('`' + t + '`' for t in info['chat_format']['stop_tokens'])}",
        "",
        "![loss](loss.png)",
        "",
    ]
    if comparison:
        parts += ["## Base vs tuned (greedy)", "", comparison_table(comparison), ""]
    parts += ["## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    write_text(path, "\n".join(parts))


# TRL's names of the preference metrics, in the order the report shows them.
REWARD_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
               "logps/rejected", "kl")


def preference_result(metrics: list[dict]) -> dict:
    """run.json's "preference" result: each reward metric's first and last logged value (and the
    last evaluation's); {} for supervised runs."""
    out = {}
    for key in REWARD_KEYS:
        values = [m[key] for m in metrics if m.get(key) is not None]
        evals = [m[f"eval_{key}"] for m in metrics if m.get(f"eval_{key}") is not None]
        if values or evals:
            out[key] = {"first": values[0] if values else None, "last": values[-1] if values else None,
                        "eval": evals[-1] if evals else None}
    return {"preference": out} if out else {}


def _preference_lines(info: dict) -> list[str]:
    rewards = info.get("result", {}).get("preference")
    if not info.get("objective") or info["objective"] == "sft":
        return []
    lines = [f"- objective: {info['objective']}"]
    for key, value in (rewards or {}).items():
        shown = f"{_fmt(value['first'])} -> {_fmt(value['last'])}"
        lines.append(f"- {key}: {shown}" + (f" (eval {_fmt(value['eval'])})" if value.get("eval") is not None else ""))
    return lines


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
