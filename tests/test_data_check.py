"""`ducktune data check`: counts, token statistics that match training, cutoff effects, exit codes."""

from __future__ import annotations

import json

import pytest

from data_support import chat, problem_lines, run_cli, write_json, write_jsonl
from ducktune.config import load_config
from ducktune.data.check import check_data
from ducktune.data.lengths import ShapeRenderer, percentile
from ducktune.data.loader import read_datasets
from ducktune.data.template import ChatFormat
from ducktune.errors import DataError
from ducktune.models.loading import load_tokenizer


@pytest.fixture(params=["tiny_qwen", "tiny_llama"])
def chat_format(request):
    return ChatFormat(load_tokenizer(request.getfixturevalue(request.param)))


@pytest.fixture
def mixed_data(tmp_path):
    a = write_json(tmp_path / "a.json", [
        {"instruction": "Who are you?", "output": "I am Nova.", "system": "Be brief."},
        {"instruction": "", "input": "  What is {{ x }}?  ", "output": "A template-looking string.\n\n"}])
    b = write_jsonl(tmp_path / "b.jsonl", [
        chat("Tell me a long story about ducks and ponds and rain", "Once there was a duck. " * 12),
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]},
        chat("x", "y")])
    c = write_jsonl(tmp_path / "c.jsonl", [{"text": "Plain text for pre-training, every token trained."}])
    return [a, b, c]


def config_for(paths, *settings):
    return load_config(None, [f"data.datasets=[{', '.join(str(p) for p in paths)}]", *settings])


def test_token_stats_match_training_encoding(chat_format, mixed_data):
    report = check_data(config_for(mixed_data), chat_format)
    samples = [s for d in read_datasets(config_for(mixed_data).data) for f in d.files for s in f.samples]
    exact = sorted(len(chat_format.encode(s, 10**9).input_ids) for s in samples)
    t = report.tokens
    assert (t.samples, t.min, t.median, t.p95, t.max) == (
        len(exact), exact[0], percentile(exact, 0.5), percentile(exact, 0.95), exact[-1])
    assert report.usable and report.issues == []


def test_shape_renderer_is_exact_or_steps_aside(chat_format, mixed_data):
    samples = [s for d in read_datasets(config_for(mixed_data).data) for f in d.files for s in f.samples
               if s.kind == "chat"]
    renderer = ShapeRenderer(chat_format)
    for sample in samples:
        expected = chat_format.tokenizer.apply_chat_template(chat_format.with_system(sample.message_dicts()),
                                                             tokenize=False)
        assert renderer.render(sample) == expected
    trims = "| trim" in chat_format.tokenizer.chat_template
    # ChatML copies contents verbatim (fast path); the Llama 3 template trims them (template path).
    assert all((pieces is None) == trims for pieces in renderer.skeletons.values())


def test_cutoff_counts_match_what_training_drops(chat_format, mixed_data):
    from ducktune.train.tokenize import tokenize_samples

    cutoff = 40
    report = check_data(config_for(mixed_data, f"data.cutoff_len={cutoff}"), chat_format)
    samples = [s for d in read_datasets(config_for(mixed_data).data) for f in d.files for s in f.samples]
    _, stats, _ = tokenize_samples(samples, chat_format, cutoff, "assistant", skip_bad=False)
    assert report.tokens.truncated == stats["truncated"] > 0
    assert report.tokens.dropped == stats["dropped"]


def test_mix_says_how_many_training_samples_the_cutoff_drops(chat_format, tmp_path):
    """The Mix line counted samples training then dropped for the cutoff as training samples. A JSON
    array on one line puts every record on line 1, so samples are matched by content, and a repeated
    dataset (repeat: 2) loses each copy."""
    from ducktune.data.check import render_report, report_json
    from ducktune.train.tokenize import tokenize_samples

    records = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(9)]
    records += [{"instruction": "word " * 120, "output": f"long {i}"} for i in range(2)]
    path = tmp_path / "one-line.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    config = load_config(None, [f"data.datasets=[{{path: {path}, repeat: 2}}]", "data.cutoff_len=48",
                                "data.val_ratio=0"])
    report = check_data(config, chat_format)
    trained, _, _ = tokenize_samples(report.loaded.train, chat_format, 48, "assistant", skip_bad=False)
    assert len(report.loaded.train) == 22 and len(trained) == 18
    assert "Mix: 22 training samples, 0 validation (4 of the training samples left out for the cutoff or \"weight\": 0: 18 trained)" \
        in render_report(report)
    assert report_json(report)["mix"]["dropped_by_cutoff"] == 4
    assert "dropped_keys" not in report_json(report)["tokens"]


def test_samples_with_every_answer_weight_zero_are_counted_as_training_leaves_them_out(tmp_path, tiny_qwen, capsys):
    """A record whose every answer has "weight": 0 passed data check ("Usable: yes", counted in the
    Mix) and training then dropped it, or failed blaming the cutoff when no other sample was left."""
    from ducktune.config import DatasetSpec

    zero = {"messages": [{"role": "user", "content": "zero"}, {"role": "assistant", "content": "w0", "weight": 0}]}
    good = [chat(f"q{i}", f"a{i}") for i in range(5)]
    mixed = write_jsonl(tmp_path / "mixed.jsonl", good + [zero])
    code, out, _ = run_cli(capsys, "data", "check", str(mixed), "--model", str(tiny_qwen), "--set", "data.val_ratio=0")
    assert code == 0
    assert '  1 sample marks every answer untrained ("weight": 0): training leaves them out' in out
    assert 'Mix: 6 training samples, 0 validation (1 of the training samples left out' in out
    only = write_jsonl(tmp_path / "only.jsonl", [zero])
    code, out, _ = run_cli(capsys, "data", "check", str(only), "--model", str(tiny_qwen))
    assert code == 2 and out.splitlines()[-1] == ('Usable: no: no sample leaves anything to train: 1 mark every '
                                                  'answer untrained ("weight": 0)')
    from ducktune.train.recipe import train

    config = load_config(None, [f"model.name_or_path={tiny_qwen}", f"output.dir={tmp_path / 'run'}",
                                "train.max_steps=1"])
    config.data.datasets = [DatasetSpec(path=str(only))]
    with pytest.raises(DataError, match=r'every answer of the 1 samples is marked untrained \("weight": 0\)'):
        train(config, log=lambda *_: None, progress=False, compare=False)


def test_mix_counts_the_preference_pairs_the_cutoff_drops(chat_format, tmp_path):
    """For preference data the Mix line counted pairs whose prompt alone passes the cutoff (training
    drops them: an answer would keep no trained token) as training samples."""
    from ducktune.data.check import render_report
    from ducktune.data.preference import tokenize_preference

    pairs = [{"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]
    pairs.append({"prompt": "word " * 120, "chosen": "good", "rejected": "bad"})
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    report = check_data(config_for([path], "data.cutoff_len=48", "data.val_ratio=0"), chat_format)
    rows, stats, _ = tokenize_preference(report.loaded.train, chat_format, 48, skip_bad=False)
    assert len(report.loaded.train) == 6 and len(rows) == 5 and stats["dropped"] == 1
    assert "Mix: 6 training samples, 0 validation (1 of the training samples left out for the cutoff or " \
        '"weight": 0: 5 trained)' in render_report(report)


def test_every_sample_emptied_by_the_cutoff_is_unusable(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("A question long enough to pass the cutoff " * 3, "answer")])
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_qwen, "--cutoff", "12")
    assert code == 2
    assert "Usable: no: every sample loses all its trained tokens at the cutoff (12); raise data.cutoff_len" in out


def test_cli_counts_per_file_format_kind_and_role(mixed_data, tiny_qwen, capsys):
    code, out, _ = run_cli(capsys, "data", "check", *mixed_data, "--model", tiny_qwen)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "Checked 3 files: 6 records"
    assert f"  {mixed_data[0]}  (alpaca, 2 records)" in lines
    assert "Samples: 6 usable, 0 bad" in lines
    assert "  formats: alpaca 2 · messages 3 · text 1" in lines
    assert "  kinds:   chat 5 · text 1" in lines
    assert "  roles:   system 1 · user 6 · assistant 6  (messages)" in lines
    assert any(line.startswith(f"Tokens ({tiny_qwen} tokenizer): min ") for line in lines)
    assert "  cutoff 1024: 0 samples would be truncated" in lines
    assert "Mix: 6 training samples, 0 validation" in lines
    assert lines[-1] == "Usable: yes"


def test_cli_json_report(mixed_data, tiny_qwen, capsys):
    code, out, _ = run_cli(capsys, "data", "check", *mixed_data, "--model", tiny_qwen, "--json", "--cutoff", "40")
    report = json.loads(out)
    assert code == 0 and report["usable"] is True
    assert report["kinds"] == {"chat": 5, "text": 1}
    assert report["tokens"]["cutoff"] == 40 and report["tokens"]["truncated"] >= 1
    assert report["mix"]["train"] == 6


def test_exit_codes_and_skip_bad(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), chat("q2", ""), chat("q3", "a3")])
    code, out, _ = run_cli(capsys, "data", "check", path, "--no-tokens")
    assert code == 2
    assert out.splitlines()[-1] == "Usable: no: 1 problem; fix them, or pass --skip-bad to train on the 2 good samples"
    code, out, _ = run_cli(capsys, "data", "check", path, "--no-tokens", "--skip-bad")
    assert code == 0
    assert problem_lines(out) == [f"{path}:2: messages[1]: empty assistant answer"]
    assert out.splitlines()[-1] == "Usable: yes; 1 bad records will be skipped"


def test_check_a_config_with_skip_bad_skips_as_training_does(tmp_path, capsys):
    """data.skip_bad: true in the config was ignored: 'Usable: no ... pass --skip-bad' while `train` trained."""
    write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), chat("q2", ""), chat("q3", "a3")])
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  skip_bad: true\n  datasets: [d.jsonl]\n")
    code, out, _ = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 0 and out.splitlines()[-1] == "Usable: yes; 1 bad records will be skipped"
    config.write_text("data:\n  datasets: [d.jsonl]\n")
    code, _, _ = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 2


def test_check_a_training_config_shows_the_mix(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", [chat(f"q{i}", f"a{i}") for i in range(10)])
    write_json(tmp_path / "me.json", [{"instruction": "Who are you?", "output": "Nova."}])
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  val_ratio: 0.2\n  datasets:\n    - a.jsonl\n    - {path: me.json, repeat: 50}\n")
    code, out, _ = run_cli(capsys, "data", "check", "--config", config, "--no-tokens")
    assert code == 0, out
    assert "Mix: 58 training samples, 2 validation" in out
    assert f"  {tmp_path / 'me.json'}: 1 samples -> 50 in training" in out
    assert f"  {tmp_path / 'a.jsonl'}: 10 samples -> 8 in training, 2 held out" in out


def test_no_data_given_is_one_line(capsys):
    code, out, err = run_cli(capsys, "data", "check", "--no-tokens")
    assert code == 2
    assert err.strip() == "error: give a data file (or a dataset name), or --config with data.datasets"


@pytest.mark.slow
def test_builtin_tokenizer_without_converting_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    from ducktune.config import ModelConfig
    from ducktune.data.template import model_chat_format

    chat_format = model_chat_format(ModelConfig(), log=lambda message: None)
    assert (tmp_path / "tokenizers" / "smollm2-135m-v1" / "tokenizer_config.json").is_file()
    assert not (tmp_path / "models").exists()  # the weights were not converted
    assert chat_format.eot_token == "<|im_end|>"
