"""The Data tab: check a dataset file and preview how samples are templated and masked,
with the tokenizer and chat format `ducktune data check/preview` use."""

from __future__ import annotations

import contextlib
import copy
import threading
from functools import lru_cache
from pathlib import Path

from ducktune.errors import DataError

MAX_ISSUES = 200
_tokenizer_lock = threading.Lock()


def check_dataset(path: str | Path, fmt: str = "auto", model: str | None = None, chat_template: str | None = None,
                  system_prompt: str | None = None, cutoff_len: int = 1024, train_on: str = "assistant") -> dict:
    """`ducktune data check` on one file (data/check.py: the same report and the same usable
    decision), in the Data tab's shape: format, record and sample counts, every problem as
    `file:line: field: what`, and with a model the token lengths as training builds them.
    """
    from ducktune.config import DatasetSpec, load_config
    from ducktune.data.check import check_data
    from ducktune.data.template import ChatFormat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    config = load_config(None, [])
    config.data.datasets = [DatasetSpec(path=str(path), format=fmt)]
    config.data.cutoff_len, config.data.train_on = int(cutoff_len), train_on
    if model:
        config.model.name_or_path = model
    with _own_tokenizer(model, chat_template or None) as tokenizer:
        chat_format = ChatFormat(tokenizer, system_prompt=system_prompt or None) if model else None
        report = check_data(config, chat_format, skip_bad_option="data.skip_bad")  # the form's option
    samples = [s for f in report.files for s in f.samples]
    turns = [len(s.messages) for s in samples if s.kind == "chat"]
    issues = [str(i) for i in report.issues]
    return {
        "path": str(path),
        "name": path.name,
        "format": report.files[0].format if report.files else None,
        "records": report.records,
        "samples": report.samples,
        "kinds": dict(report.kinds),
        "max_turns": max(turns) if turns else 0,
        "issues": issues[:MAX_ISSUES],
        "issue_count": len(issues),
        "ok": report.usable,
        "verdict": report.verdict,
        "skip_bad_helps": report.skipping_helps,  # the page offers data.skip_bad only where it would train
        "tokens": None if report.tokens is None else {**report.tokens.as_json(), "model": model},
    }


@lru_cache(maxsize=4)
def _tokenizer(model: str, chat_template: str | None):
    """The tokenizer `ducktune data check --model` and training use (the built-in model's is read
    from its GGUF, without converting the weights)."""
    from ducktune.config import ModelConfig
    from ducktune.models.tokenizer import model_tokenizer

    return model_tokenizer(ModelConfig(name_or_path=model, chat_template=chat_template), log=lambda *a, **k: None)


@contextlib.contextmanager
def _own_tokenizer(model: str | None, chat_template: str | None):
    """A copy of the model's tokenizer for one check alone (None without a model). A check of a big
    file reads and tokenizes for minutes; holding the shared tokenizer's lock all that time kept every
    preview waiting. The shared object itself cannot be used unlocked: a fast tokenizer sets each call's
    truncation and padding on its one Rust object. The copy is taken under the lock (never halfway
    through another request's call); a tokenizer that cannot be copied (remote code) is used under it."""
    if not model:
        yield None
        return
    with _tokenizer_lock:
        shared = _tokenizer(model, chat_template)
        try:
            own = copy.deepcopy(shared)
        except Exception:  # any remote-code tokenizer: the check is slow then, never wrong
            own = None
        if own is None:
            yield shared
            return
    yield own


def preview_samples(path: str | Path, model: str, fmt: str = "auto", chat_template: str | None = None,
                    system_prompt: str | None = None, cutoff_len: int = 1024, train_on: str = "assistant",
                    start: int = 0, count: int = 3) -> dict:
    """Samples rendered with the model's chat template, as (text, trained) runs."""
    from ducktune.data.loader import load_file
    from ducktune.data.preview import item_json
    from ducktune.data.preview import preview_samples as preview_items
    from ducktune.data.template import ChatFormat

    if not Path(path).is_file():  # as data check: a 400, not an empty preview
        raise DataError(f"{path}: file not found")
    data = load_file(Path(path), fmt)
    if not data.samples and data.issues:  # unreadable as a whole (not JSON, not a data file)
        raise DataError(str(data.issues[0]))
    with _tokenizer_lock:  # one tokenizer object is not safe to use from two threads at once
        chat_format = ChatFormat(_tokenizer(model, chat_template or None), system_prompt=system_prompt or None)
        rows = []
        for index, sample in enumerate(data.samples[start:start + count], start=start):
            # The CLI's preview of one sample: chats with their trained spans, preference pairs with
            # the prompt once and each answer's trained spans.
            try:
                item = preview_items([sample], chat_format, cutoff_len, train_on)[0]
            except DataError as exc:
                rows.append({"index": index, "where": sample.where, "error": exc.message})
                continue
            rows.append({"index": index, **item_json(item)})
    return {"total": len(data.samples), "start": start, "rows": rows,
            "stop_tokens": chat_format.stop_tokens}


def refuse_unusable_data(config) -> None:
    """Raise DataError naming the first problem when the form's data cannot train (the records read
    and validated as `ducktune data check` does, without a model), so starting a run with bad data
    is a 400 and writes nothing, not a job that fails a second later in its log."""
    from ducktune.data.check import check_data

    report = check_data(config, skip_bad=config.data.skip_bad, skip_bad_option="data.skip_bad")
    if not report.usable:
        raise DataError(f"form: data.datasets: {report.issues[0] if report.issues else report.verdict}")
