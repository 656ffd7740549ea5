import json

import pytest

from ducktune.config import RunConfig, apply_overrides, describe_options, load_config, read_yaml
from ducktune.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 0.001\n  batch_size: 2\n")
    config = load_config(path, ["train.batch_size=8", "lora.target_modules=[q_proj, v_proj]"])
    assert config.train.learning_rate == 0.001
    assert config.train.batch_size == 8
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.model.name_or_path == "smollm2-135m"


def test_unknown_key_suggests(tmp_path):
    path = write(tmp_path, "train:\n  learning_rat: 0.001\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: train.learning_rat: unknown key (did you mean 'learning_rate'?)"


def test_unknown_section_suggests(tmp_path):
    path = write(tmp_path, "trian:\n  seed: 1\n")
    with pytest.raises(ConfigError, match=r"trian: unknown key \(did you mean 'train'\?\)"):
        load_config(path)


def test_unknown_key_in_dataset_list(tmp_path):
    path = write(tmp_path, "data:\n  datasets:\n    - path: a.json\n      colums: {}\n")
    with pytest.raises(ConfigError, match=r"data\.datasets\.0\.colums: unknown key \(did you mean 'columns'\?\)"):
        load_config(path)


@pytest.mark.parametrize("override, field", [
    ("train.learning_rate=0", "train.learning_rate"),
    ("train.learning_rate=-1e-4", "train.learning_rate"),
    ("train.batch_size=0", "train.batch_size"),
    ("data.val_ratio=1.5", "data.val_ratio"),
    ("train.scheduler=cosin", "train.scheduler"),
])
def test_impossible_values(override, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    line = str(err.value)
    assert line.startswith(f"--set {field}: ") and "\n" not in line


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "train:\n  seed: [1, 2\nmodel: x\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: invalid YAML"):
        load_config(path)


def test_duplicate_yaml_key_refused_naming_both_lines(tmp_path):
    # Plain YAML keeps the last of two equal keys; the user's first value would be ignored unseen.
    path = write(tmp_path, "train:\n  learning_rate: 1e-4\n  epochs: 2\n  learning_rate: 2e-4\n")
    with pytest.raises(ConfigError, match=rf"{path}:4:3: invalid YAML: key 'learning_rate' given twice \(first on line 2\)"):
        load_config(path)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    # `<<: *anchor` then an explicit key is YAML's override idiom, not a duplicate.
    path = write(tmp_path, "base: &b {learning_rate: 0.0001, epochs: 2}\ntrain:\n  <<: *b\n  epochs: 3\n")
    assert read_yaml(path)["train"] == {"learning_rate": 0.0001, "epochs": 3}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="a folder, not a config file"):  # it said "not found"
        load_config(tmp_path)


def test_dataset_paths_relative_to_config(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.json").write_text("[]")
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("data:\n  datasets: [d.json]\n")
    config = load_config(path)
    assert config.data.datasets[0].path == str(tmp_path / "sub" / "d.json")


def test_set_creates_nested_and_parses_scalars():
    data = apply_overrides({}, ["train.max_steps=5", "model.trust_remote_code=true", "eval.probe_prompts=[a, b]"])
    assert data == {"train": {"max_steps": 5}, "model": {"trust_remote_code": True}, "eval": {"probe_prompts": ["a", "b"]}}


def test_every_option_documented():
    rows = describe_options()
    assert len(rows) > 40
    undocumented = [key for key, _, _, description in rows if not description]
    assert undocumented == []


def test_safe_defaults():
    config = RunConfig()
    assert config.model.trust_remote_code is False


def test_set_errors_are_blamed_on_set_and_union_fields_are_one_line(tmp_path):
    path = write(tmp_path, "train:\n  learning_rate: 0.0001\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.lerning_rate=1", "lora.target_modules=5"])
    lines = str(err.value).splitlines()
    assert "--set train.lerning_rate: unknown key (did you mean 'learning_rate'?)" in lines
    assert "--set lora.target_modules: Input should be a valid list, or input should be 'all-linear' (got 5)" in lines
    assert len(lines) == 2  # the union's two alternatives in one line; nothing blamed on the file
    path = write(tmp_path, "train:\n  lerning_rate: 0.0001\n")
    with pytest.raises(ConfigError, match=rf"^{path}: train.lerning_rate: unknown key"):
        load_config(path, ["lora.r=4"])
    # One name, or several separated by commas, on the command line: the list YAML would give.
    assert load_config(None, ["lora.target_modules=q_proj, v_proj"]).lora.target_modules == ["q_proj", "v_proj"]
    assert load_config(None, ["lora.target_modules=all-linear"]).lora.target_modules == "all-linear"


def test_set_data_paths_are_stored_absolute(tmp_path, monkeypatch):
    """Relative paths from --set are the working folder's: stored absolute, so the run's config.yaml
    (what a resume reads) works from anywhere."""
    (tmp_path / "d.json").write_text("[]")
    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["data.datasets=[d.json]", "data.val_file=d.json", "data.datasets=[d.json, hf:org/x]"])
    assert [spec.path for spec in config.data.datasets] == [str(tmp_path / "d.json"), "hf:org/x"]
    assert config.data.val_file == str(tmp_path / "d.json")


def test_set_indexes_lists(tmp_path):
    """`--set data.datasets.0.weight=3` changes the first dataset (the list was replaced by a mapping and
    the error named `data.datasets.0.0`); an index past the end is one clear line."""
    path = write(tmp_path, "data:\n  datasets: [a.json, {path: b.json, weight: 2}]\n")
    data = apply_overrides(read_yaml(path), ["data.datasets.0.weight=3", "data.datasets.1.path=c.json"])
    assert data["data"]["datasets"] == [{"path": "a.json", "weight": 3}, {"path": "c.json", "weight": 2}]
    with pytest.raises(ConfigError, match=r"^--set data.datasets.5.path=x: data.datasets is a list of 2; index it with 0-1$"):
        apply_overrides(read_yaml(path), ["data.datasets.5.path=x"])


@pytest.mark.parametrize("raw", ["#1 assistant", "Rules: be nice", "yes", "[draft]", " spaced ", "1e-4"])
def test_set_text_options_take_the_value_verbatim(raw):
    """Read as YAML, `#1 assistant` became null (a comment) with exit 0, `Rules: be nice` a mapping
    (refused) and `yes` True (refused)."""
    config = load_config(None, [f"model.system_prompt={raw}", f"output.dir={raw}"])
    assert config.model.system_prompt == raw and config.output.dir == raw


def test_set_null_clears_an_optional_text_option_only():
    config = load_config(None, ["model.system_prompt=null", "model.revision=NULL", "output.dir=null"])
    assert config.model.system_prompt is None and config.model.revision is None
    assert config.output.dir == "null"  # a required text option has no null: the word is the value
    data = apply_overrides({"data": {"datasets": ["a.json"]}}, ["data.datasets.0.path=yes", "train.max_steps=5"])
    assert data == {"data": {"datasets": [{"path": "yes"}]}, "train": {"max_steps": 5}}


@pytest.mark.parametrize("source", ["yaml", "set"])
def test_booleans_are_no_numbers(tmp_path, source):
    """pydantic read true as 1: `--set train.batch_size=true` trained with batch 1 and `cutoff_len: yes`
    said "greater than 8 (got True)". Quoted numbers ("128") still convert."""
    if source == "yaml":
        args = (write(tmp_path, "train:\n  batch_size: true\ndata:\n  cutoff_len: yes\n"), [])
    else:
        args = (None, ["train.batch_size=true", "data.cutoff_len=yes"])
    with pytest.raises(ConfigError) as err:
        load_config(*args)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all("should be a number, not a boolean" in line for line in lines)
    assert any("train.batch_size" in line for line in lines) and any("data.cutoff_len" in line for line in lines)
    config = load_config(write(tmp_path, "train:\n  batch_size: '8'\n  learning_rate: '1e-4'\n"), ['data.cutoff_len="128"'])
    assert (config.train.batch_size, config.train.learning_rate, config.data.cutoff_len) == (8, 1e-4, 128)


def test_errors_name_the_set_flag_a_value_came_from(tmp_path):
    """A key misspelt in --set, and checks across options set by --set, were blamed on the YAML file."""
    path = write(tmp_path, "train:\n  max_steps: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["trian.max_steps=1"])
    assert str(err.value) == "--set trian.max_steps: trian: unknown key (did you mean 'train'?)"
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.objective=kto", "train.batch_size=1"])
    assert str(err.value).startswith("--set train.objective, --set train.batch_size: train.objective kto estimates")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["data.val_file=x", "data.val_ratio=0.1"])
    assert str(err.value) == "--set data.val_file, --set data.val_ratio: set data.val_ratio or data.val_file, not both"
    # One from the file, one from a flag: both named.
    path = write(tmp_path, "data:\n  val_file: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["data.val_ratio=0.1"])
    assert str(err.value) == f"{path}, --set data.val_ratio: set data.val_ratio or data.val_file, not both"


def test_unknown_keys_are_named_as_written(tmp_path):
    """Keys that look like pydantic's union tags (`int`, `datasets[0]`) were dropped from the location:
    `train: {int: 3}` said `train: unknown key (did you mean 'train'?)`."""
    path = write(tmp_path, "train:\n  int: 3\ndata:\n  datasets[0]: {repeat: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert f"{path}: data.datasets[0]: unknown key (did you mean 'datasets'?)" in lines
    assert any(line.startswith(f"{path}: train.int: unknown key (known keys: batch_size,") for line in lines)
    # On the command line the index spelling works, and a list not given yet is one clear line.
    path = write(tmp_path, "data:\n  datasets: [a.json]\n")
    assert load_config(path, ["data.datasets[0].repeat=2"]).data.datasets[0].repeat == 2
    with pytest.raises(ConfigError, match=r"^--set data.datasets\[0\].repeat=2: data.datasets is empty; give the list"):
        load_config(None, ["data.datasets[0].repeat=2"])


def test_home_folder_is_expanded_in_every_path_option(tmp_path, monkeypatch):
    """`output.dir=~/x` wrote run.json into a literal `./~/x` folder while the Trainer's checkpoints went
    to the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "d.json").write_text("[]")
    (tmp_path / "t.jinja").write_text("x")
    monkeypatch.chdir(tmp_path / "m")
    config = load_config(None, ["output.dir=~/x", "model.name_or_path=~/m", "model.adapter=~/a",
                                "model.chat_template=~/t.jinja", "data.datasets=[~/d.json]", "data.val_file=~/v.json",
                                "data.dataset_dir=~/data"])
    home = str(tmp_path)
    assert config.output.dir == f"{home}/x" and config.model.name_or_path == f"{home}/m"
    assert config.model.adapter == f"{home}/a" and config.model.chat_template == f"{home}/t.jinja"
    assert config.data.datasets[0].path == f"{home}/d.json" and config.data.val_file == f"{home}/v.json"
    assert config.data.dataset_dir == f"{home}/data"


def test_model_and_template_paths_relative_to_config_are_stored_absolute(tmp_path, monkeypatch):
    """A relative `model.name_or_path: ./tiny` was resolved against the working folder: the run's
    config.yaml kept `./tiny`, so `cd /tmp && ducktune chat RUN` said './tiny: model folder not found'."""
    from ducktune.config import dump_config

    project = tmp_path / "project"
    (project / "tiny").mkdir(parents=True)
    (project / "org" / "local").mkdir(parents=True)
    (project / "chat.jinja").write_text("{{ messages }}")
    path = project / "c.yaml"
    path.write_text("model:\n  name_or_path: ./tiny\n  chat_template: chat.jinja\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.model.name_or_path == str(project / "tiny")
    assert config.model.chat_template == str(project / "chat.jinja")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(config))
    (run / "run.json").write_text("{}")
    monkeypatch.chdir(run)  # the run's own config, read from another folder, still names the model
    assert load_config(run / "config.yaml").model.name_or_path == str(project / "tiny")
    # A hub id stays a hub id unless such a folder exists beside the config; bare names likewise.
    for name, expected in [("org/local", str(project / "org" / "local")), ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"),
                           ("tiny", str(project / "tiny")), ("smollm2-135m", "smollm2-135m"),
                           ("modelscope:qwen/x", "modelscope:qwen/x"), ("./missing", "./missing")]:
        assert load_config(path, [f"model.name_or_path={name}"]).model.name_or_path == expected, name
    # A template text or a bundled template's name is no path.
    assert load_config(path, ["model.chat_template=chatml"]).model.chat_template == "chatml"
    assert load_config(path, ["model.chat_template={{ x }}"]).model.chat_template == "{{ x }}"


def test_runs_that_recorded_a_relative_model_use_the_folder_they_loaded(tmp_path, monkeypatch):
    """Runs trained before model paths were stored absolute: their config.yaml says `./tiny`, run.json
    the folder it was; chat, eval and export read the run through RunDir.config()."""
    from ducktune.rundir import RunDir

    (tmp_path / "tiny").mkdir()
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  name_or_path: ./tiny\n")
    (run / "run.json").write_text(json.dumps({"base_model": {"name_or_path": "./tiny", "resolved": str(tmp_path / "tiny")}}))
    monkeypatch.chdir(run)
    assert RunDir(run).config().model.name_or_path == str(tmp_path / "tiny")


def test_help_config_shows_allowed_values_and_dataset_entry_keys(capsys):
    """Choices showed as "Literal" (method, train_on, optimizer, ...), target_modules as "Union", and the
    keys of a data.datasets entry (path, format, columns, repeat, ...) were not documented at all."""
    from ducktune.cli import main

    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "Literal" not in out and "Union" not in out
    assert "train.method (lora | qlora | full; default 'lora')" in out
    assert "data.train_on (assistant | last_assistant | all; default 'assistant')" in out
    assert "lora.target_modules (list of str | all-linear; default 'all-linear')" in out
    assert "train.max_steps (int | null; default None)" in out
    assert "data.datasets[].path (str; required)\n    A .json/.jsonl" in out
    for key in ("format", "columns", "tags", "repeat", "weight", "max_samples", "split", "subset", "data_dir", "text_unit"):
        assert f"\ndata.datasets[].{key} (" in out


@pytest.mark.parametrize("settings, message", [
    (["train.method=full", "lora.r=8"], "lora.r has no effect with train.method full"),
    (["train.method=full", "lora.use_dora=true"], "lora.use_dora has no effect with train.method full"),
    (["model.adapter=runs/sft", "lora.r=4"], "lora.r has no effect with model.adapter"),
    (["train.objective=orpo", "train.packing=on"], "train.packing on has no effect with train.objective orpo"),
])
def test_options_that_would_be_silently_ignored_are_refused(tmp_path, settings, message):
    """lora.* with method full, a new adapter's shape with model.adapter (the run's config.yaml recorded
    r: 4 while the adapter kept r=16) and packing with preference pairs were ignored without a word."""
    with pytest.raises(ConfigError) as err:
        load_config(None, settings)
    assert message in str(err.value) and "\n" not in str(err.value)
    # What still applies is accepted; a run's own config.yaml, accepted when it started, is still read.
    load_config(None, ["train.method=full", "lora.r=16"])
    load_config(None, ["model.adapter=runs/sft", "lora.fused=false"])
    load_config(None, ["train.objective=orpo", "train.packing=off"])
    (tmp_path / "config.yaml").write_text("train:\n  method: full\nlora:\n  r: 8\n")
    (tmp_path / "run.json").write_text("{}")
    assert load_config(tmp_path / "config.yaml").lora.r == 8
