"""Chat samples -> token rows with loss labels, and the prompts a run probes before/after training."""

from __future__ import annotations

from ducktune.data.template import IGNORE_INDEX, marks_a_trained_answer
from ducktune.errors import DataError


def tokenize_samples(samples, chat_format, cutoff: int, train_on: str, skip_bad: bool) -> tuple[list[dict], dict, list[str]]:
    """(rows of input_ids/labels, stats, template problems). Raises DataError listing the
    samples the chat template cannot render unless skip_bad."""
    rows, problems = [], []
    truncated = dropped = untrained = 0
    for sample in samples:
        if not marks_a_trained_answer(sample, train_on):
            untrained += 1  # every answer "weight": 0: nothing to learn from it
            continue
        try:
            encoded = chat_format.encode(sample, cutoff, train_on)
        except DataError as exc:
            problems.append(f"{sample.where}: messages: {exc.message}")
            continue
        truncated += encoded.truncated
        labels = [IGNORE_INDEX] + list(encoded.labels[1:])  # no position predicts the first token
        if all(label == IGNORE_INDEX for label in labels):
            dropped += 1  # everything trainable was cut off by the cutoff
            continue
        rows.append({"input_ids": encoded.input_ids, "labels": labels})
    if problems and not skip_bad:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError("\n".join(shown + [f"{len(problems)} samples cannot be rendered with the chat template; "
                                          "fix them or pass --skip-bad"]))
    lengths = sorted(len(r["input_ids"]) for r in rows)
    stats = {
        "samples": len(rows),
        "truncated": truncated,
        "dropped": dropped,
        "untrained": untrained,
        "template_errors": len(problems),
        "tokens": sum(lengths),
        "trained_tokens": sum(trained_token_count(r["labels"]) for r in rows),
        "max_len": lengths[-1] if lengths else 0,
        "median_len": lengths[len(lengths) // 2] if lengths else 0,
    }
    return rows, stats, problems


def trained_token_count(labels) -> int:
    return sum(1 for x in labels if x != IGNORE_INDEX)


def probe_tools(config, samples, prompts: list[str]) -> list | None:
    """The tools of the sample each probe prompt comes from (None for one without): a run trained on tool
    calls is probed with them, as it was trained. None when no probe prompt has tools (eval.probe_prompts
    given: none)."""
    if config.eval.probe_prompts:
        return None
    last_user = {}
    for sample in samples:
        users = [m.content for m in sample.messages if m.role == "user"]
        if users:
            last_user.setdefault(users[-1], sample.tools)
    tools = [last_user.get(prompt) or None for prompt in prompts]
    return tools if any(tools) else None


def probe_prompts(config, samples, limit: int = 5) -> list[str]:
    """eval.probe_prompts, else the last user message of the first `limit` distinct samples."""
    if config.eval.probe_prompts:
        return list(config.eval.probe_prompts)
    prompts: list[str] = []
    for sample in samples:
        users = [m.content for m in sample.messages if m.role == "user"]
        if users and users[-1] not in prompts:
            prompts.append(users[-1])
        if len(prompts) >= limit:
            break
    return prompts
