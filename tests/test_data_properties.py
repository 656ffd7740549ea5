"""Property tests: no input makes the normalizer or `data check` crash with a traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ducktune.config import load_config
from ducktune.data.check import check_data
from ducktune.data.formats import FORMATS, NormalizeOptions, TurnTags, normalize
from ducktune.data.schema import Record

KEYS = ["instruction", "input", "output", "system", "history", "conversations", "messages", "conversation", "from",
        "value", "role", "content", "human", "assistant", "gpt", "text", "prompt", "chosen", "rejected", "type", "user",
        "completion", "label"]
ROLES = ["user", "assistant", "system", "human", "gpt", "narrator", ""]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
           | st.sampled_from(ROLES))
json_values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)),
    max_leaves=24,
)
options = st.sampled_from([
    NormalizeOptions(),
    NormalizeOptions(require_alternation=True, allow_system=False),
    NormalizeOptions(TurnTags(role_tag="role", content_tag="text", user_tag="U", assistant_tag="A")),
])


@settings(max_examples=400, deadline=None)
@given(value=json_values, fmt=st.sampled_from(FORMATS), opts=options)
def test_normalizer_never_raises(value, fmt, opts):
    issues = []
    sample = normalize(Record(value, "f.json", 3), fmt, issues, opts)
    # Either a sample and no problem, or no sample and at least one problem, each naming the record.
    assert (sample is None) == bool(issues)
    assert all(str(issue).startswith("f.json:3: ") for issue in issues)


SUFFIXES = [".json", ".jsonl", ".csv", ".tsv", ".txt"]
file_bodies = (json_values.map(lambda v: json.dumps(v, allow_nan=True))
               | st.lists(json_values, max_size=5).map(lambda vs: "\n".join(json.dumps(v) for v in vs))
               | st.text(max_size=80))


def _check(body, suffix, chat_format=None, as_bytes=False):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        if as_bytes:
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
        report = check_data(load_config(None, [f"data.datasets=[{path}]", "data.cutoff_len=64"]), chat_format)
    # Usable exactly when nothing is wrong, something is left, and the cutoff does not empty every sample.
    all_dropped = report.tokens is not None and report.tokens.samples and report.tokens.dropped == report.tokens.samples
    assert report.usable == (not report.issues and report.samples > 0 and report.loaded is not None
                             and not all_dropped)
    for issue in report.issues:
        assert str(issue).startswith(str(path))


@settings(max_examples=150, deadline=None)
@given(body=file_bodies, suffix=st.sampled_from(SUFFIXES))
def test_check_never_raises_on_arbitrary_files(body, suffix):
    _check(body, suffix)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=60), suffix=st.sampled_from(SUFFIXES + [".parquet"]))
def test_check_never_raises_on_arbitrary_bytes(body, suffix):
    _check(body, suffix, as_bytes=True)


@pytest.fixture(scope="module")
def qwen_format(tiny_qwen):
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer

    return ChatFormat(load_tokenizer(tiny_qwen))


chats = st.builds(lambda q, a, s: {"messages": ([{"role": "system", "content": s}] if s else [])
                                   + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                  st.text(max_size=30), st.text(max_size=30), st.none() | st.text(max_size=10))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.lists(chats | json_values, min_size=1, max_size=4))
def test_check_with_a_tokenizer_never_raises(qwen_format, value):
    _check(json.dumps(value), ".json", qwen_format)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.lists(chats, min_size=1, max_size=4))
def test_any_text_in_valid_chats_is_measured(qwen_format, value):
    """Arbitrary Unicode in well-formed chats: usable exactly when every question and answer has text."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.json"
        path.write_text(json.dumps(value), encoding="utf-8")
        report = check_data(load_config(None, [f"data.datasets=[{path}]"]), qwen_format)
    answered = all(record["messages"][-1]["content"].strip() and record["messages"][-2]["content"].strip()
                   for record in value)
    assert report.usable == answered
    if answered:
        assert report.tokens.samples == len(value)
