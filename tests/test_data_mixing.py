"""Mixing and shaping: repeats, weights, max_samples, deterministic shuffle, validation split, dedupe."""

from __future__ import annotations

from collections import Counter

import pytest

from data_support import chat, write_json, write_jsonl
from ducktune.config import DataConfig, load_config
from ducktune.data.loader import load_data
from ducktune.errors import ConfigError, DataError


@pytest.fixture
def files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [chat(f"a{i}", f"A{i}") for i in range(100)])
    b = write_jsonl(tmp_path / "b.jsonl", [chat(f"b{i}", f"B{i}") for i in range(10)])
    me = write_json(tmp_path / "me.json", [{"instruction": "Who are you?", "output": "I am Nova."}])
    return a, b, me


def source(sample):
    return sample.messages[0].content[0]


def test_one_example_repeated_10000_times_is_one_config_line(files):
    _, _, me = files
    config = load_config(None, [f"data.datasets=[{{path: {me}, repeat: 10000}}]"])
    loaded = load_data(config.data)
    assert len(loaded.train) == 10_000
    assert {s.messages[-1].content for s in loaded.train} == {"I am Nova."}


def test_repeat_counts_per_dataset(files):
    a, b, _ = files
    loaded = load_data(DataConfig(datasets=[{"path": str(a), "repeat": 0.5}, {"path": str(b), "repeat": 3}]))
    assert Counter(source(s) for s in loaded.train) == {"a": 50, "b": 30}
    assert len({s.where for s in loaded.train if source(s) == "a"}) == 50  # a half: 50 distinct samples
    assert [(m.usable, m.train) for m in loaded.mix] == [(100, 50), (10, 30)]


def test_weights_share_the_mix(files):
    a, b, _ = files
    loaded = load_data(DataConfig(datasets=[{"path": str(a), "weight": 1}, {"path": str(b), "weight": 1}]))
    # 110 samples in all, half from each: b's 10 samples are used 5.5 times each.
    assert Counter(source(s) for s in loaded.train) == {"a": 55, "b": 55}
    loaded = load_data(DataConfig(datasets=[{"path": str(a), "weight": 3}, {"path": str(b), "weight": 1}],
                                  max_samples=40))
    assert Counter(source(s) for s in loaded.train) == {"a": 30, "b": 10}


def test_weights_on_some_datasets_only_is_a_config_error(files):
    a, b, _ = files
    with pytest.raises(ConfigError, match="set weight on every dataset or on none"):
        load_config(None, [f"data.datasets=[{{path: {a}, weight: 2}}, {b}]"])


def test_max_samples_per_dataset_and_in_total(files):
    a, b, _ = files
    loaded = load_data(DataConfig(datasets=[{"path": str(a), "max_samples": 7}, str(b)], shuffle=False))
    assert [s.messages[0].content for s in loaded.train[:8]] == [f"a{i}" for i in range(7)] + ["b0"]
    loaded = load_data(DataConfig(datasets=[str(a), str(b)], max_samples=12))
    assert len(loaded.train) == 12


def test_shuffle_is_deterministic_by_seed(files):
    a, b, _ = files
    config = DataConfig(datasets=[str(a), str(b)])
    order = [s.where for s in load_data(config, seed=1).train]
    assert order == [s.where for s in load_data(config, seed=1).train]
    assert order != [s.where for s in load_data(config, seed=2).train]
    assert sorted(order) == sorted(s.where for s in load_data(config, seed=2).train)
    unshuffled = load_data(DataConfig(datasets=[str(a), str(b)], shuffle=False)).train
    assert [s.messages[0].content for s in unshuffled][:3] == ["a0", "a1", "a2"]


def test_validation_ratio_never_leaks_repeated_copies(files):
    a, b, _ = files
    loaded = load_data(DataConfig(datasets=[str(a), {"path": str(b), "repeat": 5}], val_ratio=0.1))
    val = {s.where for s in loaded.val}
    assert len(loaded.val) == 11  # 10 % of each dataset's own samples
    assert not val & {s.where for s in loaded.train}
    assert Counter(source(s) for s in loaded.train) == {"a": 90, "b": 45}


def test_validation_file(files, tmp_path):
    a, _, _ = files
    val = write_jsonl(tmp_path / "val.jsonl", [chat("v1", "V1"), chat("v2", "V2")])
    loaded = load_data(DataConfig(datasets=[str(a)], val_file=str(val)))
    assert [s.messages[0].content for s in loaded.val] == ["v1", "v2"]
    assert len(loaded.train) == 100
    bad = write_jsonl(tmp_path / "bad_val.jsonl", [chat("v1", "")])
    with pytest.raises(DataError, match="bad_val.jsonl:1: messages\\[1\\]: empty assistant answer"):
        load_data(DataConfig(datasets=[str(a)], val_file=str(bad)))


def test_dedupe_counts_exact_duplicates_across_datasets(tmp_path):
    x = write_jsonl(tmp_path / "x.jsonl", [chat("q", "a"), chat("q", "a"), chat("q", "b")])
    y = write_jsonl(tmp_path / "y.jsonl", [chat("q", "a")])
    loaded = load_data(DataConfig(datasets=[str(x), str(y)], dedupe=True))
    assert loaded.duplicates_removed == 2 and len(loaded.train) == 2
    assert len(load_data(DataConfig(datasets=[str(x), str(y)])).train) == 4


def test_skip_bad_counts_bad_records(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "q", "output": "a"}\nnot json\n{"instruction": "q", "output": ""}\n[1]\n')
    with pytest.raises(DataError):
        load_data(DataConfig(datasets=[str(path)]))
    loaded = load_data(DataConfig(datasets=[str(path)], skip_bad=True))
    assert (len(loaded.train), loaded.skipped) == (1, 3)


def test_preference_only_data_is_explained(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="only preference pairs"):
        load_data(DataConfig(datasets=[str(path)]))
