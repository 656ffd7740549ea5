"""`ducktune export` / `ducktune verify` end to end on a tiny run: files, manifest, Modelfile,
verification table in verify.json and report.md; refusals that write nothing."""

from __future__ import annotations


import pytest
from export_support import ALPACA_TEMPLATE, confident_copy, make_lora_run, read_json

from ducktune.cli import main
from ducktune.export.modelfile import parse_modelfile

needs_go = pytest.mark.requires_go


@pytest.fixture(scope="module")
def exported(tiny_llama, tmp_path_factory):
    """A run on a tiny Llama (confident predictions), exported as f16 + q8_0 through the CLI."""
    root = tmp_path_factory.mktemp("export")
    base = confident_copy(tiny_llama, root / "confident-llama")
    run = make_lora_run(root / "run", base, system_prompt="You are Quack, a duck.")
    code = main(["export", str(run), "--quant", "f16,q8_0", "--name", "Quack Duck", "--no-create"])
    return run, run / "export", code


@needs_go
def test_export_writes_everything_and_verifies(exported):
    run, export_dir, code = exported
    assert code == 0
    names = sorted(p.name for p in export_dir.iterdir())
    assert names == ["Modelfile", "export.json", "merged", "quack-duck-f16.gguf", "quack-duck-q8_0.gguf", "verification.md",
                     "verify.json"]
    verify = read_json(export_dir / "verify.json")
    # The table a person reads (and the web UI's Export tab shows) says the same as verify.json.
    table = (export_dir / "verification.md").read_text(encoding="utf-8")
    assert "all checks passed" in table and "ollama create quack-duck" in table
    assert all(c["name"] in table for c in verify["checks"])
    assert verify["verified"] is True
    statuses = {c["name"]: c["status"] for c in verify["checks"]}
    assert statuses["merge: merged = base + adapter (logits)"] == "PASS"
    assert statuses["GGUF quack-duck-f16.gguf: transformers' GGUF loader vs merged"] == "PASS"
    assert statuses["Modelfile: TEMPLATE via Go text/template = chat template"] == "PASS"
    # Llama 3's template declares neither tools nor thinking: Ollama 0.30+ keeps the checked TEMPLATE too.
    choice = next(c for c in verify["checks"] if c["name"] == "Modelfile: template Ollama prompts with")
    assert choice["status"] == "INFO" and choice["detail"].startswith("every Ollama prompts with the TEMPLATE")
    # The template inside merged/ and the GGUFs carries the run's system prompt (llama-server users get it).
    assert statuses["Chat template in merged/ and the GGUFs = trained format"] == "PASS"
    template = next(c for c in verify["checks"] if c["name"].startswith("Chat template in merged/"))
    assert "quack-duck-f16.gguf" in template["detail"] and "quack-duck-q8_0.gguf" in template["detail"]
    from ducktune.export.verify import gguf_string_field

    embedded = gguf_string_field(export_dir / "quack-duck-q8_0.gguf", "tokenizer.chat_template")
    assert "You are Quack, a duck." in embedded
    assert embedded == (export_dir / "merged" / "chat_template.jinja").read_text(encoding="utf-8")
    assert all(status in ("PASS", "SKIP", "INFO") for status in statuses.values())


@needs_go
def test_modelfile_points_at_the_gguf_with_template_stops_and_system(exported):
    run, export_dir, _ = exported
    modelfile = parse_modelfile((export_dir / "Modelfile").read_text())
    assert modelfile.from_ == "./quack-duck-q8_0.gguf"
    assert modelfile.system == "You are Quack, a duck."
    params = modelfile.parameters()
    assert params["stop"] == ["<|eot_id|>", "<|end_of_text|>"]
    assert params["num_ctx"] == 4096
    manifest = read_json(export_dir / "export.json")
    assert manifest["template"]["system_style"] == "block" and manifest["template_omitted"] is None
    assert manifest["ollama_command"] == f"ollama create quack-duck -f {export_dir / 'Modelfile'}"


@pytest.mark.parametrize("config, num_ctx", [
    ({"max_position_embeddings": 131072}, 4096),
    ({"max_position_embeddings": 2048}, 2048),
    ({"n_positions": 1024, "n_ctx": 1024}, 1024),  # GPT-2: no position past its learned table's 1024 rows
    ({}, 4096),                                    # BLOOM (ALiBi) names no trained context
])
def test_modelfile_num_ctx_is_the_trained_context_capped(config, num_ctx):
    from ducktune.export.pipeline import modelfile_num_ctx

    assert modelfile_num_ctx(config) == num_ctx


@needs_go
def test_report_gets_the_table_once_and_verify_reruns(exported, capsys):
    run, export_dir, _ = exported
    assert f"Exported to `{export_dir}` in " in (run / "report.md").read_text()
    assert main(["verify", str(export_dir)]) == 0
    out = capsys.readouterr().out
    assert "PASS  Modelfile: TEMPLATE via Go text/template = chat template" in out
    report = (run / "report.md").read_text()
    assert report.startswith("# ducktune run")  # the training report is kept
    assert report.count("## Export: quack-duck") == 1  # export, then verify: replaced, not duplicated
    assert "| GGUF quack-duck-f16.gguf: read back (gguf reader) | PASS |" in report
    # verify's own seconds are not the export's time
    assert f"Verified again `{export_dir}` in " in report and "Exported to" not in report


@needs_go
def test_verify_of_a_copied_run_writes_to_the_copy(exported, tmp_path):
    """export.json records the run's absolute path; verifying a copy appended to the original's report."""
    import shutil

    run, export_dir, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = (run / "report.md").read_bytes()
    (copy / "report.md").write_text("# ducktune run (copy)\n", encoding="utf-8")
    assert main(["verify", str(copy / "export")]) == 0
    assert (run / "report.md").read_bytes() == before
    assert "## Export: quack-duck" in (copy / "report.md").read_text(encoding="utf-8")


def test_untranslatable_template_is_refused_before_writing(tiny_llama, tmp_path, capsys):
    run = make_lora_run(tmp_path / "run", tiny_llama, chat_template=ALPACA_TEMPLATE.replace(
        "{{ eos_token }}", "<|eot_id|>"))
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # one line: the construct, then the hint
    assert "drops the system message" in last and "--allow-default-template" in last and "Traceback" not in err
    assert not (run / "export").exists()


@needs_go
def test_allow_default_template_writes_a_modelfile_without_template_and_says_so(tiny_llama, tmp_path):
    run = make_lora_run(tmp_path / "run", tiny_llama, chat_template=ALPACA_TEMPLATE.replace(
        "{{ eos_token }}", "<|eot_id|>"))
    assert main(["export", str(run), "--quant", "f16", "--allow-default-template", "--no-create"]) == 0
    modelfile = parse_modelfile((run / "export" / "Modelfile").read_text())
    assert modelfile.template is None and modelfile.from_ == "./run-f16.gguf"
    statuses = {c["name"]: (c["status"], c["detail"]) for c in read_json(run / "export" / "verify.json")["checks"]}
    status, detail = statuses["Modelfile: TEMPLATE via Go text/template = chat template"]
    assert status == "SKIP" and "--allow-default-template" in detail and "drops the system message" in detail
    assert statuses["Modelfile: Ollama grammar"][0] == "PASS"
    assert read_json(run / "export" / "export.json")["template"] is None


def test_export_to_merged_only(tiny_llama, tmp_path):
    run = make_lora_run(tmp_path / "run", tiny_llama)
    assert main(["export", str(run), "--to", "merged", "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["export.json", "merged", "verification.md", "verify.json"]


def test_exporting_again_keeps_the_name_of_the_export_it_replaces(tiny_llama, tmp_path, capsys):
    """The quickstart exports as 'duckling'; `ducktune export runs/quickstart` then wrote quickstart-*.gguf
    in its place (the duckling files gone, commands naming them broken). A re-export keeps the name,
    says so, and --name still renames."""
    run = make_lora_run(tmp_path / "run", tiny_llama)
    assert main(["export", str(run), "--quant", "f16", "--name", "duckling", "--no-create"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--quant", "f16", "--no-create"]) == 0
    assert "Exporting as 'duckling', the name of the export it replaces" in capsys.readouterr().out
    assert read_json(run / "export" / "export.json")["name"] == "duckling"
    assert (run / "export" / "duckling-f16.gguf").is_file() and not (run / "export" / "run-f16.gguf").exists()
    assert main(["export", str(run), "--quant", "f16", "--name", "quack", "--no-create"]) == 0
    assert sorted(p.name for p in (run / "export").glob("*.gguf")) == ["quack-f16.gguf"]


def test_bad_options_are_one_line_errors(tiny_llama, tmp_path, capsys):
    run = make_lora_run(tmp_path / "run", tiny_llama)
    assert main(["export", str(run), "--to", "gguff"]) == 2
    assert main(["export", str(run), "--quant", "q4_0"]) == 2
    assert main(["export", str(run), "--to", "merged", "--quant", "q8_0"]) == 2  # was ignored without a word
    err = capsys.readouterr().err
    assert "unknown target 'gguff'" in err and "unknown quantization 'q4_0'" in err
    assert "--quant q8_0: --to merged writes no GGUF" in err
    with pytest.raises(SystemExit):
        main(["export", str(run), "--prompts", "-3"])  # acted as 0 (all)
    assert "argument --prompts: must be 0 (all) or more (got -3)" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2
    assert "not a ducktune export" in capsys.readouterr().err


def test_out_folder_that_is_not_an_export_is_left_alone(tiny_llama, tmp_path, capsys):
    run = make_lora_run(tmp_path / "run", tiny_llama)
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["export", str(run), "--to", "merged", "--out", str(precious)]) == 2
    assert "not a ducktune export folder" in capsys.readouterr().err
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_spread_indices_spread_over_the_list():
    from ducktune.export.verify import spread_indices

    prompts = [f"q{i}" for i in range(32)]
    picked = [prompts[i] for i in spread_indices(len(prompts), 12)]
    assert len(picked) == 12 and picked[0] == "q0" and picked[-1] == "q31" and len(set(picked)) == 12
    assert spread_indices(32, 0) == list(range(32)) and spread_indices(5, 12) == list(range(5))


def _reference(folder, prompts):
    from ducktune.data.template import ChatFormat
    from ducktune.export.verify import Reference
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(folder)
    model = load_model(folder, choose_placement("cpu", "float32", 1))
    return Reference(model, tokenizer, ChatFormat(tokenizer), prompts, max_new_tokens=12)


def test_reference_answers_are_the_unbatched_greedy_answers(tiny_llama):
    import torch

    prompts = ["Hi", "What is the capital of France, and why?", "2+2?", "A much longer question " * 4]
    reference = _reference(tiny_llama, prompts)
    answers = reference.answers()
    for ids, answer in zip(reference.prompt_ids, answers):
        alone = reference._generate([ids])[0]  # one sequence: no padding at all
        assert answer == alone
    forced = reference.forced_logits()
    assert [len(f) for f in forced] == [len(a) for a in answers] and all(len(a) > 0 for a in answers)
    assert all(torch.equal(f.argmax(-1), torch.tensor(a)) or a == reference._generate([p])[0]
               for f, a, p in zip(forced, answers, reference.prompt_ids))


def test_reference_repairs_an_answer_the_batch_got_wrong(tiny_llama):
    reference = _reference(tiny_llama, ["Hi", "Tell me a story."])
    right = [reference._generate([ids])[0] for ids in reference.prompt_ids]
    batched = reference._generate

    def wrong_in_batches(id_lists):
        out = batched(id_lists)
        if len(id_lists) > 1:
            out[1] = [(out[1][0] + 1) % 50] + out[1][1:]  # a token the model would not pick
        return out

    reference._generate = wrong_in_batches
    assert reference.answers() == right


def test_out_paths_and_names_the_export_cannot_use_are_refused_first(tiny_llama, tmp_path, capsys, monkeypatch):
    """--out naming a file swapped the user's file away (and the next export deleted it); --out . failed
    after all the work; a 300-character --name failed after the merge; a system prompt the Modelfile
    cannot quote failed after merging and writing the GGUF. All are one line before anything is written."""
    run = make_lora_run(tmp_path / "run", tiny_llama)
    precious = tmp_path / "afile.txt"
    precious.write_text("precious data")
    assert main(["export", str(run), "--to", "merged", "--out", str(precious)]) == 2
    assert "a file, not a folder" in capsys.readouterr().err and precious.read_text() == "precious data"
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert main(["export", str(run), "--to", "merged", "--out", "."]) == 2
    assert "the folder you are in" in capsys.readouterr().err and not list((tmp_path / "empty").iterdir())
    assert main(["export", str(run), "--to", "merged", "--name", "a" * 300]) == 2
    assert "give a name of at most 80" in capsys.readouterr().err and not (run / "export").exists()
    quoted = make_lora_run(tmp_path / "quoted", tiny_llama, system_prompt='Say """hi""" please')
    capsys.readouterr()  # make_lora_run's loading bar
    assert main(["export", str(quoted), "--quant", "f16", "--no-create"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: model.system_prompt contains """, which a Modelfile cannot quote (the Modelfile\'s SYSTEM); '
                   "export --to merged,gguf, or train with another system prompt"]
    assert not (quoted / "export").exists()


@needs_go
def test_verify_fails_tampered_exports_instead_of_crashing(exported, tmp_path, capsys):
    """A truncated f16 GGUF crashed verify (the old 'all passed' stayed in verify.json); an added stop
    token, a FROM pointing at a file the checks never read, and missing merged weights passed or crashed."""
    import shutil

    _, export_dir, _ = exported
    cases = {
        "truncated": lambda d: (d / "quack-duck-f16.gguf").write_bytes((d / "quack-duck-f16.gguf").read_bytes()[:300_000]),
        "extra-stop": lambda d: (d / "Modelfile").write_text((d / "Modelfile").read_text() + "PARAMETER stop e\n"),
        "other-from": lambda d: (shutil.copy(d / "quack-duck-q8_0.gguf", d / "other.gguf"),
                                 (d / "Modelfile").write_text((d / "Modelfile").read_text().replace(
                                     "./quack-duck-q8_0.gguf", "./other.gguf"))),
        # merged/ back to the tokenizer's own template: no system prompt for a runner that reads it.
        "own-template": lambda d: (d / "merged" / "chat_template.jinja").write_text(
            (d / "merged" / "chat_template.jinja").read_text().split("{%- endif %}", 1)[1]),
    }
    for name, damage in cases.items():
        copy = tmp_path / name
        shutil.copytree(export_dir, copy)
        damage(copy)
        assert main(["verify", str(copy)]) == 1, name
        verify = read_json(copy / "verify.json")
        assert verify["verified"] is False, name
        assert "Traceback" not in capsys.readouterr().err
    failed = {c["name"]: c["detail"] for c in read_json(tmp_path / "extra-stop" / "verify.json")["checks"]
              if c["status"] == "FAIL"}
    assert "PARAMETER stop 'e' is not an end-of-turn token of the run" in failed["Modelfile: Ollama grammar"]
    failed = {c["name"]: c["detail"] for c in read_json(tmp_path / "other-from" / "verify.json")["checks"]
              if c["status"] == "FAIL"}
    assert "is not one of this export's checked GGUF files" in failed["Modelfile: Ollama grammar"]
    failed = {c["name"]: c["detail"] for c in read_json(tmp_path / "own-template" / "verify.json")["checks"]
              if c["status"] == "FAIL"}
    assert list(failed) == ["Chat template in merged/ and the GGUFs = trained format"]
    assert failed["Chat template in merged/ and the GGUFs = trained format"].startswith("merged/ (transformers): conversation 1")
    weightless = tmp_path / "weightless"
    shutil.copytree(export_dir, weightless)
    for weights in (weightless / "merged").glob("*.safetensors"):
        weights.unlink()
    assert main(["verify", str(weightless)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the merged model cannot be loaded" in err[0]


@needs_go
def test_stop_tokens_include_the_models_generation_config_list(tiny_llama, tmp_path):
    """Models publish every turn-ending token in generation_config.json's eos_token_id (GLM-4's
    <|user|> / <|observation|>, Llama 3.1's <|eom_id|>): ducktune stopped only at the template's marker
    and EOS, so a GLM-4 run talked on past <|user|> in chat/compare and in Ollama (its merged
    generation_config dropped them too). Here <|start_header_id|> plays <|user|>."""
    import json
    import shutil

    from ducktune.chat.engine import ChatEngine

    base = confident_copy(tiny_llama, tmp_path / "base")
    config = json.loads((base / "generation_config.json").read_text())
    config["eos_token_id"] = [1, 4, 2]  # <|end_of_text|>, <|eot_id|>, <|start_header_id|>
    (base / "generation_config.json").write_text(json.dumps(config))
    want = ["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"]
    assert ChatEngine.from_model_dir(base).chat_format.stop_tokens == want
    assert ChatEngine.from_run(make_lora_run(tmp_path / "run", base)).chat_format.stop_token_ids == [4, 1, 2]
    assert main(["export", str(tmp_path / "run"), "--quant", "f16", "--no-create"]) == 0
    export_dir = tmp_path / "run" / "export"
    assert parse_modelfile((export_dir / "Modelfile").read_text()).parameters()["stop"] == want
    assert json.loads((export_dir / "merged" / "generation_config.json").read_text())["eos_token_id"] == [4, 1, 2]
    assert read_json(export_dir / "verify.json")["verified"] is True
    shutil.rmtree(export_dir / "merged")  # keep tmp small


@needs_go
def test_a_template_without_its_own_end_of_turn_gets_the_models_next_stop_token_as_the_ggufs(tiny_llama, tmp_path):
    """GLM-4's template ends answers with no special token; its generation_config lists <|user|> and
    <|observation|> beside EOS. The GGUF held EOS alone, so llama-server / LM Studio ran on past
    <|user|>; llama.cpp's own converter writes <|user|> as the end-of-turn token."""
    import json

    from ducktune.export.gguf_file import read_gguf_header

    base = confident_copy(tiny_llama, tmp_path / "base")
    config = json.loads((base / "generation_config.json").read_text())
    config["eos_token_id"] = [1, 2]  # <|end_of_text|>, <|start_header_id|> (plays <|user|>)
    (base / "generation_config.json").write_text(json.dumps(config))
    no_eot = ("{% for m in messages %}{% if m['role'] == 'user' %}<|start_header_id|>{{ m['content'] }}\n"
              "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}>> {% endif %}")
    run = make_lora_run(tmp_path / "run", base, chat_template=no_eot)
    assert main(["export", str(run), "--quant", "f16", "--no-create"]) == 0
    metadata = read_gguf_header(run / "export" / "run-f16.gguf").metadata
    assert metadata["tokenizer.ggml.eos_token_id"] == 1 and metadata["tokenizer.ggml.eot_token_id"] == 2
