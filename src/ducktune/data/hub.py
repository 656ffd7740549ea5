"""`hf:org/name` datasets through the `datasets` library.

`hf:org/name` is loaded with `datasets.load_dataset` (which honours HF_ENDPOINT, HF_HOME and
HF_DATASETS_OFFLINE); `hf:/a/local/folder` works too: a folder laid out like a hub
repository (data files, optional README with configs) or one written by
`Dataset.save_to_disk`. Rows become records named "row N" (0-based, as `datasets` counts).
"""

from __future__ import annotations

from pathlib import Path

from ducktune.data.readers import ReadResult
from ducktune.data.schema import Issue, Record

PREFIX = "hf:"


def is_hub(path: str) -> bool:
    return path.startswith(PREFIX)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 240 else first[:237] + "..."


def read_hub(path: str, split: str = "train", subset: str | None = None, data_dir: str | None = None) -> ReadResult:
    name = path[len(PREFIX):]

    def problem(message: str) -> ReadResult:
        return ReadResult(issues=[Issue(path, None, "(dataset)", message, fatal=True)])

    if not name:
        return problem("give a dataset id after 'hf:', e.g. hf:tatsu-lab/alpaca")
    try:
        import datasets
    except ImportError:
        return problem("Hugging Face datasets need the datasets package: pip install 'ducktune[datasets]'")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    local = Path(name).expanduser()
    try:
        if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(str(local) if local.is_dir() else name, subset, split=split, data_dir=data_dir)
    except Exception as exc:  # datasets raises many types (no network, no such repo or split): all one line
        return problem(f"cannot load the dataset: {_one_line(exc)}")
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            return problem(f"no split '{split}' (splits: {', '.join(loaded)}); set split in the dataset entry")
        loaded = loaded[split]
    if not isinstance(loaded, datasets.Dataset):
        return problem(f"expected a map-style dataset, got {type(loaded).__name__}")
    rows = loaded.to_list()
    if not rows:
        return ReadResult(issues=[Issue(path, None, "(dataset)", "the dataset has no rows")])
    return ReadResult([Record(row, path, f"row {i}") for i, row in enumerate(rows)])
