"""From `data:` in the config to the list of samples a run trains on.

Reads every dataset, normalizes every record (collecting every problem, not just the
first), mixes datasets by their repeat factors, dedupes, shuffles deterministically and
splits off validation data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.config import DataConfig, DatasetSpec
from ducktune.data import formats
from ducktune.data.readers import SUPPORTED_SUFFIXES, read_file
from ducktune.data.schema import Issue, Record, Sample
from ducktune.errors import DataError

MAX_ISSUES_SHOWN = 20


@dataclass
class FileData:
    path: str
    format: str | None
    samples: list[Sample] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    records: int = 0


@dataclass
class LoadedData:
    train: list[Sample]
    val: list[Sample]
    files: list[FileData]
    issues: list[Issue]
    skipped: int = 0
    duplicates_removed: int = 0


def _rename_columns(records: list[Record], columns: dict[str, str]) -> None:
    """columns maps ducktune's field name -> the file's field name."""
    if not columns:
        return
    for record in records:
        value = record.value
        if isinstance(value, dict):
            value = dict(value)
            for target, source in columns.items():
                if source in value:
                    value[target] = value.pop(source)
            record.value = value


def dataset_files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                       and not p.name.startswith("."))
        return found
    return [path]


def read_records(path: Path) -> tuple[list[Record], list[Issue]]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return [], [Issue(str(path), None, "(file)", f"unsupported file type '{suffix}' (use {', '.join(SUPPORTED_SUFFIXES)})")]
    return read_file(path)


def load_file(path: Path, fmt: str = "auto", columns: dict[str, str] | None = None) -> FileData:
    records, issues = read_records(path)
    _rename_columns(records, columns or {})
    data = FileData(str(path), None, issues=list(issues), records=len(records))
    if not records:
        return data
    if fmt == "auto":
        detected, why = formats.detect_format(records)
        if detected is None:
            data.issues.append(Issue(str(path), None, "(format)", why))
            return data
        fmt = detected
    data.format = fmt
    for record in records:
        sample = formats.normalize(record, fmt, data.issues)
        if sample is not None:
            data.samples.append(sample)
    return data


def load_spec(spec: DatasetSpec) -> list[FileData]:
    path = Path(spec.path).expanduser()
    if not path.exists():
        return [FileData(spec.path, None, issues=[Issue(spec.path, None, "(file)", "not found")])]
    files = dataset_files(path)
    if not files:
        return [FileData(spec.path, None, issues=[Issue(spec.path, None, "(file)", "folder has no data files")])]
    return [load_file(p, spec.format, spec.columns) for p in files]


def _apply_repeat(samples: list[Sample], repeat: float, rng: random.Random) -> list[Sample]:
    whole, frac = int(repeat), repeat - int(repeat)
    out = samples * whole
    if frac > 0:
        out += rng.sample(samples, round(len(samples) * frac))
    return out


def load_data(config: DataConfig, seed: int = 42, skip_bad: bool | None = None) -> LoadedData:
    """Load, validate and mix every dataset. Raises DataError listing every problem when unusable."""
    skip_bad = config.skip_bad if skip_bad is None else skip_bad
    if not config.datasets:
        raise DataError("data.datasets: no training data configured (add a file, e.g. data.datasets=[my.json])")
    rng = random.Random(seed)
    all_files: list[FileData] = []
    mixed: list[Sample] = []
    seen: set = set()
    duplicates = 0
    for spec in config.datasets:
        files = load_spec(spec)
        all_files += files
        samples = [s for f in files for s in f.samples]
        if config.dedupe:
            unique = []
            for sample in samples:
                key = sample.key()
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                unique.append(sample)
            samples = unique
        if spec.max_samples is not None:
            samples = samples[: spec.max_samples]
        mixed += _apply_repeat(samples, spec.repeat, rng)

    issues = [i for f in all_files for i in f.issues]
    skipped = len(issues)
    if issues and not skip_bad:
        raise data_error(issues, "the training data has problems; fix them or pass --skip-bad to train on the good records")
    chat_like = [s for s in mixed if s.kind != "preference"]
    if not chat_like:
        raise data_error(issues, "no usable training samples")

    if config.shuffle:
        rng.shuffle(chat_like)
    if config.max_samples is not None:
        chat_like = chat_like[: config.max_samples]

    val: list[Sample] = []
    if config.val_file:
        val_files = load_spec(DatasetSpec(path=config.val_file))
        val_issues = [i for f in val_files for i in f.issues]
        if val_issues and not skip_bad:
            raise data_error(val_issues, "the validation data has problems")
        val = [s for f in val_files for s in f.samples if s.kind != "preference"]
    elif config.val_ratio > 0:
        n_val = max(1, int(len(chat_like) * config.val_ratio))
        if n_val >= len(chat_like):
            raise DataError(f"data.val_ratio: {config.val_ratio} leaves no training samples out of {len(chat_like)}")
        val, chat_like = chat_like[:n_val], chat_like[n_val:]
    return LoadedData(chat_like, val, all_files, issues, skipped=skipped if skip_bad else 0, duplicates_removed=duplicates)


def data_error(issues: list[Issue], headline: str) -> DataError:
    shown = [str(i) for i in issues[:MAX_ISSUES_SHOWN]]
    more = len(issues) - len(shown)
    lines = shown + ([f"... and {more} more problems"] if more > 0 else [])
    if issues:
        lines.append(f"{len(issues)} problem{'s' if len(issues) != 1 else ''}: {headline}")
    else:
        lines.append(headline)
    return DataError("\n".join(lines), issues)
