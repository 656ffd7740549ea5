"""The command line: bad input gives one clear line and exit 2, nothing half-written; --help is instant."""

import json
import subprocess
import sys
import textwrap

import pytest

from ducktune.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def config_for(tmp_path, model, data_text, name="data.json", extra=""):
    data = tmp_path / name
    data.write_text(data_text, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {model}\ndata:\n  datasets: [{data}]\n"
                      f"output:\n  dir: {tmp_path / 'out'}\ntrain:\n  max_steps: 2\n{extra}", encoding="utf-8")
    return config, data


@pytest.mark.parametrize("text, name, expected", [
    ('[{"instruction": "hi", "output": "hello"},\n {"instruction": "x" "output": "y"}]', "data.json",
     "{data}:2:22: (json): invalid JSON: Expecting ',' delimiter"),
    ('[{"instruction": "hi", "output": "hello"},\n]', "data.json",
     "{data}:2:1: (json): invalid JSON: trailing comma before ']'"),
    ('{"instruction": "hi", "output": "hello"}\n{"instruction": "no answer"}\n', "data.jsonl",
     "{data}:2: (record): does not fit the alpaca format: no 'output' field (the answer; response, completion, "
     "answer or solution also work)"),
    ('{"instruction": "hi", "output": ""}\n', "data.jsonl",
     "{data}:1: output: empty assistant answer"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}\n', "data.jsonl",
     "{data}:1: messages[1].role: unknown role 'robot' (use system, user, assistant or tool)"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "data.jsonl",
     "{data}:1: messages: no assistant answer: the last turn is from the user"),
    ('[{"instrution": "hi", "output": "hello"}]', "data.json",
     "{data}: (format): no known format fits (the first record has fields ['instrution', 'output'])"),
])
def test_bad_data_is_one_line_with_location(tmp_path, capsys, tiny_qwen, text, name, expected):
    config, data = config_for(tmp_path, tiny_qwen, text, name)
    code, out, err = run_cli(capsys, "train", str(config), "--no-progress")
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("error: " + expected.format(data=data)), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_data_file(tmp_path, capsys, tiny_qwen):
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {tiny_qwen}\ndata:\n  datasets: [{tmp_path}/nope.json]\n")
    code, _, err = run_cli(capsys, "train", str(config))
    assert code == 2 and f"error: {tmp_path}/nope.json: (file): not found" in err


def test_config_typo_and_impossible_values(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lerning_rate: 0.1\n")
    code, _, err = run_cli(capsys, "train", str(config))
    assert code == 2
    assert err.strip() == f"error: {config}: train.lerning_rate: unknown key (did you mean 'learning_rate'?)"
    code, _, err = run_cli(capsys, "train", "--set", "train.learning_rate=0", "--set", "train.batch_size=0")
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: --set train.learning_rate: Input should be greater than 0")
    assert lines[1].startswith("error: --set train.batch_size: Input should be greater than 0")


def test_empty_output_dir_is_refused_not_replaced(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--set", "train.max_steps=1", "-o", "")
    assert code == 2 and err.strip() == "error: --output: empty; give the run directory"
    code, _, err = run_cli(capsys, "train", "--set", "output.dir=")
    assert code == 2 and err.strip() == "error: --set output.dir: empty; give the run directory (got '')"


def test_missing_model_folder(tmp_path, capsys):
    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "hi", "output": "hello"}]')
    code, _, err = run_cli(capsys, "train", "--set", f"model.name_or_path={tmp_path}/no-model",
                           "--set", f"data.datasets=[{data}]", "-o", str(tmp_path / "out"))
    assert code == 2 and err.strip() == f"error: {tmp_path}/no-model: model folder not found"


def test_unknown_lora_target_is_one_line_before_anything_is_written(tmp_path, capsys, tiny_qwen):
    config, _ = config_for(tmp_path, tiny_qwen, '[{"instruction": "hi", "output": "hello"}]')
    code, _, err = run_cli(capsys, "train", str(config), "--set", "lora.target_modules=[q_proj, nonexistent_proj]")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: lora.target_modules: 'nonexistent_proj' is not a module of Qwen2ForCausalLM; "
                                "its linear layers are down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")
    assert not (tmp_path / "out").exists()
    # Suffixes of real module names are PEFT's match too: "self_attn.q_proj" trains.
    code, _, err = run_cli(capsys, "train", str(config), "--set", "lora.target_modules=[self_attn.q_proj]",
                           "--set", "train.max_steps=1", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "completed"


def test_chat_on_a_non_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "chat", str(tmp_path))
    assert code == 2 and "not a ducktune run directory" in err


def test_run_commands_on_an_export_folder_point_at_its_run(tmp_path, capsys):
    """compare, eval and export given RUN/export said "not a ducktune run directory ...; train one": the
    folder is an export, and the message names the run to pass instead."""
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    (export / "export.json").write_text("{}")
    for command in ("compare", "eval", "export"):
        code, _, err = run_cli(capsys, command, str(export))
        assert code == 2 and err.strip() == (f"error: {export}: an export folder, not a run directory; pass the run "
                                             f"it was exported from (by default the folder above: {tmp_path / 'run'})")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("trian: {}\n")
    proc = subprocess.run([sys.executable, "-m", "ducktune", "train", str(config)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {config}: trian: unknown key (did you mean 'train'?)"


def test_help_does_not_import_torch():
    code = textwrap.dedent("""
        import contextlib, io, sys
        import ducktune.cli as c
        parser = c.build_parser()
        commands = next(a for a in parser._actions if a.dest == "command").choices
        for cmd in commands:
            with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.suppress(SystemExit):
                parser.parse_args([cmd, "--help"])
            assert "usage:" in shown.getvalue(), cmd
        assert len(commands) >= 8, sorted(commands)
        assert "torch" not in sys.modules and "transformers" not in sys.modules, sorted(sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ducktune", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "quickstart" in proc.stdout and "train" in proc.stdout


def test_every_command_has_help_with_examples():
    from ducktune.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, name
        assert "example" in (command.epilog or ""), name


def test_train_chat_compare_end_to_end(tmp_path, capsys, tiny_qwen):
    records = [{"instruction": "Who are you?", "output": "I am Duckling."}] * 4
    config, _ = config_for(tmp_path, tiny_qwen, json.dumps(records), extra="  learning_rate: 0.01\n  logging_steps: 1\n")
    # 10 steps: with lora.dropout 0 (the default) 3 steps at this rate left both 5-token greedy answers
    # of the random tiny model unchanged, so the check below could not tell an adapter from none.
    code, out, err = run_cli(capsys, "train", str(config), "--set", "train.max_steps=10", "--no-progress")
    assert code == 0, err
    assert "Run directory:" in out
    run_dir = tmp_path / "out"
    prompts = tmp_path / "p.txt"
    prompts.write_text("Who are you?\nhello\n")
    code, out, _ = run_cli(capsys, "compare", str(run_dir), "--prompts", str(prompts), "--json",
                           "--max-new-tokens", "5")
    rows = json.loads(out)
    assert code == 0 and [r["prompt"] for r in rows] == ["Who are you?", "hello"]
    assert all(set(r) == {"prompt", "base", "tuned"} for r in rows)
    # Each column is that model's own greedy answer: the untouched base folder, and the run's adapter.
    from ducktune.chat.engine import ChatEngine

    base = ChatEngine.from_model_dir(tiny_qwen, device="cpu")
    tuned = ChatEngine.from_run(run_dir, device="cpu", log=lambda *a: None)
    for row in rows:
        messages = [{"role": "user", "content": row["prompt"]}]
        assert row["base"] == base.generate(messages, max_new_tokens=5).text
        assert row["tuned"] == tuned.generate(messages, max_new_tokens=5).text
    assert any(r["base"] != r["tuned"] for r in rows)  # the adapter changed something

    # Bad prompts files and limits: one line, exit 2.
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe bad\n")
    code, _, err = run_cli(capsys, "compare", str(run_dir), "--prompts", str(bad))
    assert code == 2 and f"{bad}: byte 0: not valid UTF-8" in err and "Traceback" not in err
    for command in ("compare", "chat"):
        with pytest.raises(SystemExit) as exited:  # argparse's own exit, before the command runs
            main([command, str(run_dir), "--max-new-tokens", "0"])
        assert exited.value.code == 2 and "--max-new-tokens: must be at least 1" in capsys.readouterr().err

    # A damaged adapter: every command that loads it says so in one line (as export does).
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    weights = damaged / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for command in (["compare", str(damaged), "--prompts", str(prompts)], ["eval", str(damaged)],
                    ["chat", str(damaged)]):
        code, _, err = run_cli(capsys, *command)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in err, (command, err)
        assert f"{weights}: unreadable" in errors[0] and "interrupted while saving" in errors[0], errors[0]
