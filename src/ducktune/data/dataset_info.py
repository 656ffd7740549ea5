"""LLaMA-Factory's dataset registry (`dataset_info.json`), read as is.

A LLaMA-Factory user points ducktune at their data folder and names a dataset:
`data.datasets: [{path: my_dataset}]` with `data.dataset_dir: data`, or
`ducktune data check my_dataset --dataset-dir data`. Each entry's `file_name` (a file or
folder in the data folder) or `hf_hub_url`, `formatting` (alpaca | sharegpt), `ranking`
(preference pairs), `columns` (a `kto_tag` column makes KTO data), `tags`, `split`, `subset`,
`folder` and `num_samples` are translated into the same options a ducktune config has (DatasetSpec), so everything downstream is shared.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from ducktune.config import TAG_NAMES, unknown_column_field
from ducktune.data.columns import UNSUPPORTED_COLUMNS
from ducktune.data.readers import _FileIssue, read_text
from ducktune.data.schema import Issue

REGISTRY_FILE = "dataset_info.json"


def registry_path(dataset_dir: str | Path) -> Path:
    return Path(dataset_dir).expanduser() / REGISTRY_FILE


def read_registry(path: Path) -> tuple[dict, list[Issue]]:
    name = str(path)
    try:
        text = read_text(path)
    except _FileIssue as exc:
        return {}, [exc.issue]
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, [Issue(name, f"{exc.lineno}:{exc.colno}", "(json)", f"invalid JSON: {exc.msg}", fatal=True)]
    if not isinstance(info, dict):
        return {}, [Issue(name, None, "(file)", "must be a JSON object of dataset entries", fatal=True)]
    return info, []


def lookup(dataset: str, dataset_dir: str | Path) -> tuple[dict | None, list[Issue]]:
    """DatasetSpec fields for a dataset registered in `dataset_dir`/dataset_info.json.

    Returns (None, []) when there is no registry or no such entry; (None, issues) when the
    registry or the entry is unusable.
    """
    path = registry_path(dataset_dir)
    if not path.is_file():
        return None, []
    info, issues = read_registry(path)
    if issues or dataset not in info:
        return None, issues
    return entry_to_spec(dataset, info[dataset], path)


def known_names(dataset_dir: str | Path) -> list[str]:
    path = registry_path(dataset_dir)
    if not path.is_file():
        return []
    info, _ = read_registry(path)
    return sorted(info)


def suggest(dataset: str, dataset_dir: str | Path) -> str:
    names = known_names(dataset_dir)
    if not names:
        return ""
    close = difflib.get_close_matches(dataset, names, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (registered: {', '.join(names[:10])})"


def entry_to_spec(dataset: str, entry: object, registry: Path) -> tuple[dict | None, list[Issue]]:
    where = str(registry)

    def problem(field: str, message: str) -> tuple[None, list[Issue]]:
        return None, [Issue(where, None, f"{dataset}.{field}", message, fatal=True)]

    if not isinstance(entry, dict):
        return problem("(entry)", f"must be an object, got {type(entry).__name__}")
    spec: dict = {}
    if entry.get("hf_hub_url"):
        spec["path"] = f"hf:{entry['hf_hub_url']}"
    elif entry.get("ms_hub_url"):
        return problem("ms_hub_url", "ModelScope datasets are not supported; download the files and set file_name")
    elif entry.get("script_url"):
        return problem("script_url", "dataset loading scripts run arbitrary code and are not supported; "
                                     "save the data as files and set file_name")
    elif entry.get("cloud_file_name"):
        return problem("cloud_file_name", "cloud storage is not supported; download the file and set file_name")
    elif isinstance(entry.get("file_name"), str) and entry["file_name"]:
        spec["path"] = str(registry.parent / entry["file_name"])
    else:
        return problem("file_name", "missing (or set hf_hub_url)")

    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        return problem("formatting", f"unknown formatting {formatting!r} (use alpaca or sharegpt)")
    columns = entry.get("columns") or {}
    tags = entry.get("tags") or {}
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        return problem("columns", "must map column roles to column names")
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return problem("tags", "must map tag names to strings")
    for key in columns:
        if key in UNSUPPORTED_COLUMNS:
            return problem(f"columns.{key}", f"{UNSUPPORTED_COLUMNS[key]} data is not supported")
        unknown = unknown_column_field(key)
        if unknown:  # said here, naming the entry, not by the DatasetSpec validation that would follow
            return problem(f"columns.{key}", unknown)
    unknown_tags = sorted(set(tags) - set(TAG_NAMES))
    if unknown_tags:
        return problem("tags", f"unknown tag {unknown_tags[0]!r} (known: {', '.join(TAG_NAMES)})")

    if entry.get("ranking"):
        spec["format"] = "preference"
    elif "kto_tag" in columns:  # KTO: each record's kto_tag column says whether its answer is desirable
        spec["format"] = "unpaired"
    elif formatting == "sharegpt":
        spec["format"] = "sharegpt"
    elif "prompt" in columns and not set(columns) & {"response", "query", "history"}:
        # LLaMA-Factory's pre-training entries map only the prompt column ({"prompt": "text"}):
        # the column is either an alpaca instruction (when the records have an output) or text.
        columns = {"text": columns["prompt"], "instruction": columns["prompt"], **
                   {k: v for k, v in columns.items() if k != "prompt"}}
        spec["format"] = "auto"
    else:
        spec["format"] = "alpaca"
    spec["columns"] = columns
    if tags:
        spec["tags"] = tags
    for source, target in (("split", "split"), ("subset", "subset"), ("folder", "data_dir")):
        if isinstance(entry.get(source), str):
            spec[target] = entry[source]
    if isinstance(entry.get("num_samples"), int) and entry["num_samples"] > 0:
        spec["max_samples"] = entry["num_samples"]
    return spec, []
