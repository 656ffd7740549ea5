"""One configured dataset (`DatasetSpec`) -> the files it names -> normalized samples.

A dataset's `path` is a file, a folder of files, `hf:org/name`, or the name of a dataset in
a LLaMA-Factory `dataset_info.json` (looked up in `data.dataset_dir`). Each file is read,
its columns renamed, its format detected (unless given) and every record normalized;
every problem is kept, none stops the reading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.config import DatasetSpec
from ducktune.data import dataset_info, formats
from ducktune.data.columns import OPTIONAL_FIELDS, canonical_columns, file_field_names, rename_fields
from ducktune.data.formats import NormalizeOptions, TurnTags
from ducktune.data.hub import is_hub, read_hub
from ducktune.data.readers import SUPPORTED_SUFFIXES, ReadResult, read_file
from ducktune.data.schema import Issue, Sample

# Files in a data folder that are not data: LLaMA-Factory's registry, `datasets` metadata.
_NOT_DATA = {"dataset_info.json", "state.json", "dataset_dict.json"}


@dataclass
class FileData:
    """One file (or hub dataset) read and normalized."""

    path: str
    format: str | None
    samples: list[Sample] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    records: int = 0
    lost: int = 0  # records that could not even be parsed

    @property
    def bad_records(self) -> int:
        return self.records - len(self.samples) + self.lost


@dataclass
class DatasetRead:
    """One configured dataset: its spec as resolved (registry entries filled in) and its files."""

    spec: DatasetSpec
    files: list[FileData]


def resolve_spec(spec: DatasetSpec, dataset_dir: str) -> tuple[DatasetSpec | None, list[Issue]]:
    """The spec itself for files, folders and hub ids; the registry's entry for a dataset name."""
    if is_hub(spec.path) or Path(spec.path).expanduser().exists():
        return spec, []
    fields, issues = dataset_info.lookup(spec.path, dataset_dir)
    if issues:
        return None, issues
    if fields is None:
        registry_file = dataset_info.registry_path(dataset_dir)
        hint = (f", and no dataset named '{spec.path}' in {registry_file}{dataset_info.suggest(spec.path, dataset_dir)}"
                if registry_file.is_file() else "")
        return None, [Issue(spec.path, None, "(file)", f"not found: no such file or folder{hint}", fatal=True)]
    # What the config sets explicitly wins over the registry entry.
    explicit = spec.model_dump(include=spec.model_fields_set - {"path"})
    if "columns" in explicit:
        explicit["columns"] = {**fields.get("columns", {}), **explicit["columns"]}
    if "tags" in explicit:
        explicit["tags"] = {**fields.get("tags", {}), **explicit["tags"]}
    return DatasetSpec(**{**fields, **explicit}), []


def dataset_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.name not in _NOT_DATA)


def _saved_dataset(folder: Path) -> bool:
    """A folder written by `datasets`' save_to_disk."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def read_spec(spec: DatasetSpec, dataset_dir: str = "data", options: NormalizeOptions = formats.DEFAULT_OPTIONS
              ) -> list[FileData]:
    return read_dataset(spec, dataset_dir, options).files


def read_dataset(spec: DatasetSpec, dataset_dir: str = "data", options: NormalizeOptions = formats.DEFAULT_OPTIONS
                 ) -> DatasetRead:
    resolved, issues = resolve_spec(spec, dataset_dir)
    if resolved is None:
        return DatasetRead(spec, [FileData(spec.path, None, issues=issues)])
    return DatasetRead(resolved, _read_files(resolved, options))


def _read_files(spec: DatasetSpec, options: NormalizeOptions) -> list[FileData]:
    if spec.tags:
        options = dataclasses.replace(options, tags=TurnTags.from_dict(spec.tags))
    if is_hub(spec.path):
        return [normalize_read(spec.path, read_hub(spec.path, spec.split, spec.subset, spec.data_dir), spec, options)]
    path = Path(spec.path).expanduser()
    if path.is_dir():
        if _saved_dataset(path):
            return [normalize_read(spec.path, read_hub(f"hf:{path}", spec.split, spec.subset), spec, options)]
        files = dataset_files(path)
        if not files:
            return [FileData(spec.path, None, issues=[Issue(
                spec.path, None, "(file)", f"the folder has no data files ({', '.join(SUPPORTED_SUFFIXES)})", fatal=True)])]
    else:
        files = [path]
    return [normalize_read(str(p), read_file(p, spec.text_unit), spec, options) for p in files]


def normalize_read(name: str, read: ReadResult, spec: DatasetSpec, options: NormalizeOptions) -> FileData:
    data = FileData(name, None, issues=list(read.issues), records=len(read.records), lost=read.lost)
    if not read.records:
        return data
    fmt = spec.format
    columns = canonical_columns(spec.columns, fmt)
    dicts = [r.value for r in read.records if isinstance(r.value, dict)]
    # A mapped column that no record has: a misspelt mapping, which must not quietly fall back to
    # ducktune's own field of that name, nor end in "no known format fits" (an optional column that is
    # simply absent, as dataset_info.json entries list them, is fine unless that fallback would happen).
    absent = [(t, s) for t, s in columns.items()
              if t != s and not any(s in d for d in dicts) and (t not in OPTIONAL_FIELDS or any(t in d for d in dicts))]
    if absent and dicts:
        target, source = absent[0]
        first = dicts[0]
        data.issues.append(Issue(name, None, source, f"the column mapped to {target!r} is in no record "
                                 f"(the records' fields: {', '.join(sorted(first)) or 'none'})", fatal=True))
        return data
    rename_fields(read.records, columns)
    if fmt == "auto" and name.lower().endswith(".txt"):
        fmt = "text"
    if fmt == "auto":
        detected, why = formats.detect_format(read.records)
        if detected is None:
            data.issues.append(Issue(name, None, "(format)", why, fatal=True))
            return data
        fmt = detected
    data.format = fmt
    issues: list[Issue] = []
    normalize = formats.normalize
    append = data.samples.append
    for record in read.records:
        sample = normalize(record, fmt, issues, options)
        if sample is not None:
            append(sample)
    data.issues = sorted(data.issues + file_field_names(issues, columns), key=Issue.sort_key)
    return data
