"""`hf:` datasets through the `datasets` library, exercised with local folders (no network)."""

from __future__ import annotations

from data_support import run_cli, write_jsonl
from ducktune.config import DataConfig
from ducktune.data.loader import load_data, read_datasets


def read(path, **spec):
    dataset = read_datasets(DataConfig(datasets=[{"path": path, **spec}]))[0]
    return [s for f in dataset.files for s in f.samples], [str(i) for f in dataset.files for i in f.issues]


def test_hub_style_folder_through_load_dataset(tmp_path):
    repo = tmp_path / "my-dataset"
    (repo / "data").mkdir(parents=True)
    write_jsonl(repo / "data" / "train.jsonl", [
        {"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(3)])
    samples, issues = read(f"hf:{repo}")
    assert issues == []
    assert [(s.where, s.messages[-1].content) for s in samples] == [
        (f"hf:{repo}:row {i}", f"a{i}") for i in range(3)]


def test_saved_dataset_dict_with_splits(tmp_path):
    import datasets

    rows = {"train": [{"instruction": "q", "output": "a"}], "test": [{"instruction": "tq", "output": ""}]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()}).save_to_disk(tmp_path / "saved")
    samples, issues = read(f"hf:{tmp_path / 'saved'}")
    assert issues == [] and samples[0].messages[-1].content == "a"
    _, issues = read(f"hf:{tmp_path / 'saved'}", split="test")
    assert issues == [f"hf:{tmp_path / 'saved'}:row 0: output: empty assistant answer"]
    _, issues = read(f"hf:{tmp_path / 'saved'}", split="dev")
    assert issues == [f"hf:{tmp_path / 'saved'}: (dataset): no split 'dev' (splits: train, test); "
                      "set split in the dataset entry"]
    # A folder written by save_to_disk is recognised without the hf: prefix too.
    samples, issues = read(str(tmp_path / "saved"))
    assert issues == [] and len(samples) == 1


def test_hub_dataset_trains_through_load_data(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    write_jsonl(repo / "train.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(4)])
    loaded = load_data(DataConfig(datasets=[{"path": f"hf:{repo}", "repeat": 2}]))
    assert len(loaded.train) == 8


def test_unreachable_hub_dataset_is_one_line(capsys):
    code, out, err = run_cli(capsys, "data", "check", "hf:ducktune-test/does-not-exist", "--no-tokens")
    assert code == 2
    line = next(line for line in out.splitlines() if line.startswith("hf:ducktune-test/does-not-exist: (dataset):"))
    assert "cannot load the dataset" in line
    assert "Traceback" not in out + err
