"""The Data tab: check a dataset file and preview how samples are templated and masked,
with the tokenizer and chat format `ducktune data check/preview` use."""

from __future__ import annotations

import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path

from ducktune.errors import DataError

MAX_ISSUES = 200
_tokenizer_lock = threading.Lock()


def check_dataset(path: str | Path, fmt: str = "auto", model: str | None = None, chat_template: str | None = None,
                  system_prompt: str | None = None, cutoff_len: int = 1024, train_on: str = "assistant") -> dict:
    """Format, record and sample counts, and every problem as `file:line: field: what`.

    With a model, also the token lengths as training would build them with that model's
    tokenizer and chat template (min/median/p95/max, how many the cutoff truncates), the
    same figures `ducktune data check --model` prints.
    """
    from ducktune.data.loader import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = load_file(path, fmt)
    kinds = Counter(s.kind for s in data.samples)
    turns = [len(s.messages) for s in data.samples if s.kind == "chat"]
    tokens, template_issues = None, []
    if model and data.samples:
        from ducktune.data.lengths import token_stats
        from ducktune.data.template import ChatFormat

        with _tokenizer_lock:
            chat_format = ChatFormat(_tokenizer(model, chat_template or None), system_prompt=system_prompt or None)
            stats, template_issues = token_stats([s for s in data.samples if s.kind != "preference"],
                                                 chat_format, int(cutoff_len), train_on)
        tokens = None if stats is None else {**stats.__dict__, "model": model}
    issues = [str(i) for i in [*data.issues, *template_issues]]
    return {
        "path": str(path),
        "name": path.name,
        "format": data.format,
        "records": data.records,
        "samples": len(data.samples),
        "kinds": dict(kinds),
        "max_turns": max(turns) if turns else 0,
        "issues": issues[:MAX_ISSUES],
        "issue_count": len(issues),
        "ok": not issues and bool(data.samples),
        "tokens": tokens,
    }


@lru_cache(maxsize=4)
def _tokenizer(model: str, chat_template: str | None):
    """The tokenizer `ducktune data check --model` and training use (the built-in model's is read
    from its GGUF, without converting the weights)."""
    from ducktune.config import ModelConfig
    from ducktune.models.tokenizer import model_tokenizer

    return model_tokenizer(ModelConfig(name_or_path=model, chat_template=chat_template), log=lambda *a, **k: None)


def preview_samples(path: str | Path, model: str, fmt: str = "auto", chat_template: str | None = None,
                    system_prompt: str | None = None, cutoff_len: int = 1024, train_on: str = "assistant",
                    start: int = 0, count: int = 3) -> dict:
    """Samples rendered with the model's chat template, as (text, trained) runs."""
    from ducktune.data.loader import load_file
    from ducktune.data.template import ChatFormat

    data = load_file(Path(path), fmt)
    with _tokenizer_lock:  # one tokenizer object is not safe to use from two threads at once
        chat_format = ChatFormat(_tokenizer(model, chat_template or None), system_prompt=system_prompt or None)
        rows = []
        for index, sample in enumerate(data.samples[start:start + count], start=start):
            if sample.kind == "preference":
                rows.append({"index": index, "where": sample.where, "error": "preference pair: not used for SFT"})
                continue
            try:
                encoded = chat_format.encode(sample, cutoff_len, train_on)
            except DataError as exc:
                rows.append({"index": index, "where": sample.where, "error": exc.message})
                continue
            rows.append({"index": index, "where": sample.where, "tokens": len(encoded.input_ids),
                         "trained": encoded.n_trained, "truncated": encoded.truncated,
                         "spans": [[text, trained] for text, trained in chat_format.decode_spans(encoded)]})
    return {"total": len(data.samples), "start": start, "rows": rows,
            "stop_tokens": chat_format.stop_tokens}
