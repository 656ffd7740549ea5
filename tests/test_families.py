"""Every model family: `ducktune models`, the warnings before training, one-line errors, and (slow)
the family matrix, train -> masks -> merge -> GGUF -> llama.cpp -> Ollama TEMPLATE, per family."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ducktune.cli import main
from ducktune.data.schema import Message, Sample
from ducktune.data.template import IGNORE_INDEX
from ducktune.models.families import FAMILIES, build_standin

ROOT = Path(__file__).resolve().parents[1]
QA = [{"instruction": "Who are you?", "output": "I am Quack."}, {"instruction": "Say hi.", "output": "Hi!"}]


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="module")
def family_rows(standins, monkeypatch_module) -> dict:
    from ducktune.export.support import family_table

    return {row["family"]: row for row in family_table(standins, log=lambda *a: None)}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_family_exports_to_gguf_and_ollama(family_rows):
    assert list(family_rows) == [f.id for f in FAMILIES]
    for family_id, row in family_rows.items():
        support = row["support"]
        assert support["gguf"] is None, (family_id, support["gguf"])
        assert support["ollama_template"] is None, (family_id, support["ollama_template"])
        if family_id != "internlm2":
            assert support["train"] is None, (family_id, support["train"])


def test_qlora_column_on_this_cpu(family_rows):
    """bitsandbytes (a dev dependency) is installed and this machine trains on the CPU: QLoRA works
    except where its CPU kernel meets linear biases (Qwen2's q/k/v, GLM, BLOOM, Phi-2, GPT-2, Pythia)."""
    biased = {"qwen2.5", "deepseek-r1-distill-qwen", "qwen2-moe", "glm4", "glm4-0414", "bloom", "phi2", "stablelm2", "gpt2", "pythia", "gpt-oss"}
    for family_id, row in family_rows.items():
        reason = row["support"]["qlora"]
        if family_id == "internlm2":
            assert reason == row["support"]["train"]
        elif family_id in biased:
            assert reason and "linear layers with a bias" in reason, family_id
        else:
            assert reason is None, (family_id, reason)


def test_remote_code_family_says_what_to_do(family_rows):
    reason = family_rows["internlm2"]["support"]["train"]
    assert "model.trust_remote_code: true" in reason


def test_published_internlm3_trains_without_its_remote_code():
    """internlm/internlm3-8b-instruct's config.json names InternLM3ForCausalLM (no transformers class)
    with an auto_map; transformers 5 builds its model_type as LlamaForCausalLM, so no remote code."""
    from ducktune.models.loading import training_support

    published = {"architectures": ["InternLM3ForCausalLM"], "model_type": "internlm3",
                 "auto_map": {"AutoConfig": "configuration_internlm3.InternLM3Config",
                              "AutoModelForCausalLM": "modeling_internlm3.InternLM3ForCausalLM"}}
    assert training_support(published) is None
    assert "trust_remote_code" in training_support({**published, "model_type": "internlm3-custom"})
    assert "has no InternLM3ForCausalLM" in training_support({**published, "auto_map": None})


def test_published_minicpm3_loads_natively_past_its_remote_code_auto_maps(tmp_path):
    """openbmb/MiniCPM3-4B's config.json and tokenizer_config.json carry auto_maps to its own modelling and
    tokenizer code (MiniCPMTokenizer); transformers 5 has MiniCPM3 natively and reads tokenizer.json, so ducktune
    trains it without trust_remote_code and tokenizes as the stand-in does."""
    from transformers import AutoModelForCausalLM

    from ducktune.models.loading import load_tokenizer, training_support

    folder = build_standin("minicpm3", tmp_path / "minicpm3")
    expected = load_tokenizer(folder)("Hello duck")["input_ids"]
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_minicpm.MiniCPM3Config",
                          "AutoModelForCausalLM": "modeling_minicpm.MiniCPM3ForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "MiniCPMTokenizer"
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["tokenization_minicpm.MiniCPMTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert training_support(config) is None
    assert load_tokenizer(folder)("Hello duck")["input_ids"] == expected
    assert type(AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)).__name__ == "MiniCPM3ForCausalLM"


def test_published_exaone_3_loads_natively_past_its_remote_code_auto_map(tmp_path):
    """LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct's config.json names ExaoneForCausalLM (no transformers class) with an
    auto_map and EXAONE's own keys (num_layers...), its weights transformer.h.N.attn.attention.*: transformers 5 runs
    model_type exaone as LlamaForCausalLM, renaming the weights on load, so ducktune checks and trains it without
    remote code. The stand-in is written so."""
    from transformers import AutoModelForCausalLM

    from ducktune.models.loading import check_weights, model_config, training_support

    folder = build_standin("exaone3.5", tmp_path / "exaone3.5")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["ExaoneForCausalLM"] and config["auto_map"]
    assert config["num_layers"] == 2 and "num_hidden_layers" not in config
    assert training_support(config) is None
    assert model_config(folder)["num_hidden_layers"] == 2  # read as transformers names it
    check_weights(folder)  # the saved names are EXAONE's own
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        assert "transformer.h.0.attn.attention.q_proj.weight" in weights.keys()
    assert type(AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)).__name__ == "LlamaForCausalLM"


def test_models_command_prints_the_table_and_reasons(capsys, monkeypatch, standins, family_rows):
    from ducktune.models import builtin

    monkeypatch.setattr(builtin, "cache_root", lambda: standins.parent)
    for spec in FAMILIES:  # the command's cache: ~/.cache/ducktune/standins
        target = standins.parent / "standins" / spec.id
        if not target.exists():
            shutil.copytree(standins / spec.id, target)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["family"]: r["support"] for r in rows} == {k: v["support"] for k, v in family_rows.items()}
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("On this machine (cpu;") and lines[2].split()[:2] == ["family", "models"]
    assert "internlm2: train: InternLM2ForCausalLM ships its own modelling code" in out


def _config(tmp_path: Path, model: Path, extra: str = "") -> Path:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(QA), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {model}\n{extra}data:\n  datasets: [{data}]\n"
                      f"output:\n  dir: {tmp_path / 'run'}\ntrain:\n  max_steps: 1\n  save_steps: 100\n"
                      "eval:\n  max_new_tokens: 2\n", encoding="utf-8")
    return config


def test_template_markers_the_tokenizer_lacks_are_warned_before_training(tmp_path, standins, family_rows):
    """A ChatML template on a Llama 3 tokenizer trains `<|im_end|>` as plain-text pieces that never stop
    generation; the warning says so. No family's own template triggers it (Zephyr's plain-text
    `<|user|>` on TinyLlama included: its answers end with the real `</s>`)."""
    from ducktune.config import ModelConfig
    from ducktune.data.template import plain_text_markers
    from ducktune.export.support import export_warnings
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    for spec in FAMILIES:
        tokenizer = load_tokenizer(standin_dir(spec.id, standins, log=lambda *a: None), None,
                                   spec.id == "internlm2", None)
        assert plain_text_markers(tokenizer) == [], spec.id
    llama3 = standin_dir("llama3", standins, log=lambda *a: None)
    warnings = export_warnings(ModelConfig(name_or_path=str(llama3), chat_template="chatml"), log=lambda *a: None)
    assert [w for w in warnings if w.startswith("the chat template writes <|im_start|>, <|im_end|> but this "
                                                 "tokenizer has no such tokens") and "stops only at <|eot_id|>" in w]
    assert not [w for w in export_warnings(ModelConfig(name_or_path=str(llama3)), log=lambda *a: None)
                if "chat template writes" in w]
    # A system prompt the Modelfile cannot quote is said before training, not after the export's merge.
    quoted = export_warnings(ModelConfig(name_or_path=str(llama3), system_prompt='Say """hi"""'), log=lambda *a: None)
    assert [w for w in quoted if w.startswith('model.system_prompt contains """, which a Modelfile cannot quote')]


def test_unknown_architecture_is_one_line_before_anything_is_written(tmp_path, capsys, tiny_qwen):
    model = tmp_path / "model"
    shutil.copytree(tiny_qwen, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["DuckNetForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    assert main(["train", str(_config(tmp_path, model)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"error: {model}: cannot be trained: transformers ")
    assert "has no DuckNetForCausalLM" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_template_needing_a_token_the_tokenizer_lacks_blames_the_template(tmp_path, capsys, standins, family_rows):
    """Firefly's template writes bos_token; Qwen2.5's tokenizer has none: the message named the data
    ("refused this conversation") and no file; it is the template/tokenizer pair."""
    from ducktune.models.families import standin_dir

    data = tmp_path / "sg.jsonl"
    data.write_text(json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}) + "\n")
    qwen = standin_dir("qwen2.5", standins, log=lambda *a: None)
    assert main(["data", "preview", str(data), "--model", str(qwen), "--chat-template", "firefly"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the chat template uses a value this tokenizer does not define ('bos_token' is undefined); "
                   "set model.chat_template to a template made for this tokenizer"]


def test_tokenizer_without_chat_template_says_what_to_set(tmp_path, capsys, tiny_qwen):
    model = tmp_path / "model"
    shutil.copytree(tiny_qwen, model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert main(["train", str(_config(tmp_path, model)), "--no-progress"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "has no chat template; set model.chat_template" in lines[0] and "firefly" in lines[0]
    assert not [line for line in lines if line.startswith("warning: ")]  # no Ollama warning that contradicts it
    assert not (tmp_path / "run").exists()


def test_system_prompt_on_a_template_without_system_role_is_one_line(tmp_path, capsys):
    model = build_standin("mistral-v0.1", tmp_path / "mistral")
    config = _config(tmp_path, model, "  system_prompt: You are Quack.\n")
    assert main(["train", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "model.system_prompt" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_warns_first_when_the_export_will_fail(tmp_path, capsys, tiny_qwen):
    """A template whose text the Ollama TEMPLATE cannot express, and a model the GGUF writer cannot express
    (GPT-2 with its attention scaled by 1/layer, which llama.cpp's gpt2 graph does not do): both warned about
    before training, and training still runs."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    from ducktune.models.loading import load_tokenizer

    model = tmp_path / "gpt2"
    tokenizer = load_tokenizer(tiny_qwen)
    # Trainable (answers verbatim) but not expressible in Go: the user's words are upper-cased.
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {% if m['role'] == 'user' %}"
                               "{{ m['content'] | upper }}{% else %}{{ m['content'] }}{% endif %}\n"
                               "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                                                eos_token_id=tokenizer.eos_token_id,
                                                scale_attn_by_inverse_layer_idx=True)).save_pretrained(model)
    tokenizer.save_pretrained(model)
    assert main(["train", str(_config(tmp_path, model)), "--no-progress"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings[0].startswith("warning: this model can be trained but not exported to GGUF because ")
    assert "GPT2LMHeadModel" in warnings[0] and "scale_attn_by_inverse_layer_idx" in warnings[0]
    assert warnings[1].startswith("warning: this model can be trained but its chat template cannot become an "
                                  "Ollama TEMPLATE because ")
    assert (tmp_path / "run" / "run.json").is_file()

    # Export: refused before the merge (nothing written), pointing at what it can write instead.
    assert main(["export", str(tmp_path / "run"), "--no-create"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "GPT2LMHeadModel" in errors[0] and "Traceback" not in err
    assert "`ducktune export RUN --to merged` writes the merged Hugging Face folder" in errors[0]
    assert not (tmp_path / "run" / "export").exists()
    assert main(["export", str(tmp_path / "run"), "--to", "merged", "--no-create"]) == 0
    assert (tmp_path / "run" / "export" / "merged" / "config.json").is_file()
    assert not list((tmp_path / "run" / "export").glob("*.gguf"))


def test_llama_cpp_caveats_are_said_before_training_and_beside_the_verdict(tmp_path):
    """Mistral v0.1 (sliding window 4096 of 32768): llama.cpp attends to the whole context, which the
    export's short probe prompts cannot show, so the train warning and the export's verdict say it."""
    from ducktune.config import ModelConfig
    from ducktune.export.pipeline import ExportResult, export_section, finish, llama_cpp_caveats
    from ducktune.export.support import export_warnings

    model = build_standin("mistral-v0.1", tmp_path / "mistral")
    warnings = export_warnings(ModelConfig(name_or_path=str(model)), log=lambda *a: None)
    assert [w for w in warnings if w.startswith("once exported to GGUF: sliding_window 4096: llama.cpp attends "
                                                 "to the whole context")]
    assert llama_cpp_caveats(model, ["merged"]) == []
    caveats = llama_cpp_caveats(model, ["merged", "gguf"])
    assert len(caveats) == 1 and "beyond 4096 tokens" in caveats[0]
    qwen = build_standin("qwen2.5", tmp_path / "qwen")  # use_sliding_window false: no caveat
    assert llama_cpp_caveats(qwen, ["merged", "gguf"]) == []

    export_dir = tmp_path / "export"
    export_dir.mkdir()
    result = ExportResult(export_dir, "m", caveats=caveats)
    lines = []
    finish(result, {}, None, log=lines.append)
    assert f"Caveat (not covered by these checks): {caveats[0]}" in "\n".join(lines)
    assert json.loads((export_dir / "verify.json").read_text())["caveats"] == caveats
    assert f"Caveat (not covered by these checks): {caveats[0]}" in export_section(result, "")


@pytest.mark.requires_llama_cpp
@pytest.mark.requires_go
def test_qlora_on_the_cpu_trains_and_exports(tmp_path, capsys):
    """QLoRA (4-bit NF4 base, bitsandbytes' CPU kernel) on a Llama 3 stand-in: the adapter merges into
    the full-precision base and the f16 GGUF answers like the merged model."""
    from ducktune.export.pipeline import export_run

    model = build_standin("llama3", tmp_path / "llama3")
    config = _config(tmp_path, model).read_text().replace("max_steps: 1", "max_steps: 4\n  method: qlora")
    (tmp_path / "c.yaml").write_text(config)
    assert main(["train", str(tmp_path / "c.yaml"), "--no-progress"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["method"] == "qlora" and run["status"] == "completed"
    result = export_run(tmp_path / "run", quants="f16", create=False, prompt_limit=2, log=lambda *a: None)
    checks = {c.name: c for c in result.checks}
    assert checks["llama.cpp run-f16.gguf: greedy answers = merged"].status == "PASS"
    assert [c.name for c in result.checks if c.status == "FAIL"] == []


def test_qlora_on_the_cpu_refuses_biased_layers_before_anything_is_written(tmp_path, capsys):
    model = build_standin("qwen2.5", tmp_path / "qwen")
    config = _config(tmp_path, model, "").read_text().replace("max_steps: 1", "max_steps: 1\n  method: qlora")
    (tmp_path / "c.yaml").write_text(config)
    assert main(["train", str(tmp_path / "c.yaml"), "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "QLoRA bitsandbytes' 4-bit CPU kernel fails on linear layers with a bias" in errors[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.requires_llama_cpp
@pytest.mark.requires_go
def test_family_matrix_every_cell_passes(tmp_path):
    """The README's family matrix, produced again: every cell PASS, InternLM2 only with its reason."""
    sys.path.insert(0, str(ROOT / "bench"))
    import families as matrix

    rows_file = tmp_path / "rows.json"
    code = matrix.main(["--out", str(tmp_path / "families.md"), "--json", str(rows_file),
                        "--workdir", str(tmp_path / "work")])
    rows = {row["family"]: row for row in json.loads(rows_file.read_text())}
    assert list(rows) == [f.id for f in FAMILIES]
    for family_id, row in rows.items():
        cells = row["cells"]
        if family_id == "internlm2":
            assert "trust_remote_code" in cells["train (loss falls)"]
            continue
        assert all(cell.startswith("PASS") for cell in cells.values()), (family_id, cells)
    assert code == 0


@pytest.mark.parametrize("family_id, expected", [
    ("llama2-chat", True),      # the template prints <s> and the tokenizer adds it: llama.cpp adds it
    ("gemma3", True),
    ("gemma4", True),           # Gemma 4's template prints <bos> too
    ("gemma3n", True),          # Gemma 3's format
    ("tinyllama-chat", False),  # the tokenizer adds <s> to plain text, but the trained prompts lack it
    ("smollm2", False),         # the template starts with <|im_start|>, which is also its BOS: printed, not added
    ("smollm3", False),         # Llama 3's tokenizer adds <|begin_of_text|>, but SmolLM3's template prints no BOS
    ("qwen2.5", False),
    ("granite", False),         # BOS is <|end_of_text|>, never added; the template opens with the system block
    ("granite-moe", False),     # as Granite 3 dense: <|end_of_text|> never added, the template opens with a system turn
    ("granite4", False),        # as Granite 3: <|end_of_text|> is BOS and EOS, the template opens with a system turn
    ("granite4h", False),       # Granite 4.0-H: the same tokenizer and template
    ("ernie4.5", False),        # <s> is never added: the template opens with <|begin_of_sentence|>
    ("ernie4.5-moe", False),    # ERNIE 4.5's tokenizer and template: the same
    ("lfm2-moe", True),         # LFM2's template prints <|startoftext|> and Llama 3's pipeline adds it
    ("falcon3", False),         # no BOS, though llama.cpp adds one for "falcon3" unless the GGUF says not to
    ("falcon-h1", True),        # the template prints <|begin_of_text|> and Llama 3's pipeline adds it
    ("nemotron-h", False),      # Tekken adds <s> to plain text; Nemotron Nano v2's template prints none
    ("aya", True),              # Aya's template prints <BOS_TOKEN>, which CohereTokenizer also adds
    ("command-r7b", False),     # CohereTokenizer adds <BOS_TOKEN> to plain text, Command R7B's template prints none
    ("stablelm2", False),       # <|endoftext|> is BOS, never added; the template opens with <|im_start|>
    ("nemotron-mini", False),   # the tokenizer adds <s> to plain text; the template prints none, so prompts lack it
    ("apertus", True),          # the template prints <s> and Tekken adds it: llama.cpp adds it
    ("olmoe", False),           # its BOS |||IP_ADDRESS||| (also EOS) is printed by the template, never added
    ("minicpm3", False),        # the tokenizer adds <s> to plain text (add_bos_token); its ChatML template prints none
    ("deepseek-coder", True),   # the template prints <｜begin▁of▁sentence｜>, which the tokenizer also adds
    ("deepseek-llm", True),     # the same, with the User:/Assistant: template (DeepSeek-V2-Lite-Chat's too)
    ("deepseek-v2-lite", True),
])
def test_gguf_adds_bos_exactly_when_the_trained_prompts_get_it_from_the_tokenizer(tmp_path, family_id, expected):
    from ducktune.export.gguf_vocab import prompt_starts_with_bos
    from ducktune.models.loading import load_tokenizer

    assert prompt_starts_with_bos(load_tokenizer(build_standin(family_id, tmp_path / family_id))) is expected


def _tiny_qwen2_moe(tiny_qwen: Path, target: Path) -> Path:
    """tiny_qwen's tokenizer and template on a 2-layer Qwen2-MoE (4 routed experts, a shared one)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    shutil.copytree(tiny_qwen, target)
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    base = json.loads((tiny_qwen / "config.json").read_text())
    config = Qwen2MoeConfig(vocab_size=base["vocab_size"], hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                            shared_expert_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, tie_word_embeddings=True,
                            bos_token_id=base.get("bos_token_id"), eos_token_id=base.get("eos_token_id"))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    return target


def test_moe_routed_experts_left_by_all_linear_are_named_and_can_be_adapted(tmp_path, capsys, tiny_qwen):
    """Qwen2-MoE keeps its routed experts as fused tensors that PEFT's all-linear does not adapt: training
    says so (half the layers' weights here) instead of leaving them frozen unseen; lora.target_parameters
    adapts them (the adapter then holds expert weights), and a name matching no parameter is refused
    before the run folder exists (PEFT itself only warns)."""
    from safetensors import safe_open

    model = _tiny_qwen2_moe(tiny_qwen, tmp_path / "moe")
    config = _config(tmp_path, model)
    assert main(["train", str(config), "--no-progress", "--set", "output.dir=" + str(tmp_path / "all-linear")]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("Not adapted (stay as in the base): ")]
    assert len(notes) == 1 and "model.layers.*.mlp.experts.gate_up_proj" in notes[0], out
    assert "mlp.experts.down_proj" in notes[0] and "self_attn" not in notes[0]

    experts = "lora.target_parameters=[mlp.experts.gate_up_proj, mlp.experts.down_proj]"
    assert main(["train", str(config), "--no-progress", "--set", experts,
                 "--set", "output.dir=" + str(tmp_path / "experts")]) == 0
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("Not adapted")], out
    with safe_open(str(tmp_path / "experts" / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert [k for k in f.keys() if "experts" in k and "lora_" in k]
    run = json.loads((tmp_path / "experts" / "run.json").read_text())
    assert "mlp.experts.gate_up_proj (parameter)" in run["lora_targets"]

    assert main(["train", str(config), "--no-progress", "--set", "lora.target_parameters=[mlp.experts.nope]",
                 "--set", "output.dir=" + str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "error: lora.target_parameters: 'mlp.experts.nope' is not a parameter of Qwen2MoeForCausalLM" in err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("enable_thinking,dropped", [(True, "<think>\n"), (False, "<think>\n</think>")])
def test_deepseek_r1_is_prompted_as_trained(standins, enable_thinking, dropped):
    """DeepSeek-R1-Distill's template renders answers after '<｜Assistant｜>' but its generation prompt
    adds '<think>\\n' (the published one; the bundled one adds '<think>\\n</think>' in non-thinking
    mode): the model was trained on one prompt and asked with another. ducktune now prompts as trained,
    in its own paths, the Ollama TEMPLATE and the exported Jinja template; Qwen3's think block, which
    its answers do follow, is left alone."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from ducktune.config import ModelConfig
    from ducktune.data.template import ChatFormat
    from ducktune.export.gotemplate import derive_layout
    from ducktune.export.support import export_warnings
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    folder = standin_dir("deepseek-r1-distill-qwen", standins, log=lambda *a: None)
    tokenizer = load_tokenizer(folder, None, False, enable_thinking)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False,
                                         add_generation_prompt=True).endswith("<｜Assistant｜>" + dropped)
    fmt = ChatFormat(tokenizer)
    assert (fmt.generation_prompt, fmt.dropped_prompt_text) == ("<｜Assistant｜>", dropped)
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    trained, spans = fmt.assistant_spans(history + [{"role": "assistant", "content": "a2"}])
    prompt = fmt.render(history, add_generation_prompt=True)
    assert trained.startswith(prompt) and spans[-1][0] == len(prompt) and prompt.endswith("q2<｜Assistant｜>")
    assert derive_layout(fmt).render(history) == prompt
    exported = fmt.trained_template()
    assert Jinja2ChatFormatter(exported, eos_token=tokenizer.eos_token, bos_token=tokenizer.bos_token)(
        messages=history).prompt == prompt
    assert tokenizer.apply_chat_template(history, chat_template=exported, tokenize=False,
                                         add_generation_prompt=True) == prompt
    warnings = export_warnings(ModelConfig(name_or_path=str(folder), enable_thinking=enable_thinking),
                               log=lambda *a: None)
    assert [w for w in warnings if w.startswith(f"the chat template's generation prompt adds {dropped!r}")]
    for thinking in (False, True):
        qwen3 = ChatFormat(load_tokenizer(standin_dir("qwen3", standins, log=lambda *a: None), None, False, thinking))
        assert qwen3.dropped_prompt_text == "" and qwen3.trained_template() == qwen3.tokenizer.chat_template


def test_smollm3_thinking_switch_trains_the_answers_only(standins):
    """SmolLM3's template: model.enable_thinking false (ducktune's default, the template's is true) writes
    '/no_think' in its system block and opens each answer with an empty <think></think>, part of the
    prompt; true writes '/think' and a bare header. Either way only answer + <|im_end|> is trained."""
    from ducktune.data.template import ChatFormat
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    folder = standin_dir("smollm3", standins, log=lambda *a: None)
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    for thinking, mode, opening in ((False, "/no_think", "<|im_start|>assistant\n<think>\n\n</think>\n"),
                                    (True, "/think", "<|im_start|>assistant\n")):
        fmt = ChatFormat(load_tokenizer(folder, None, False, thinking))
        trained, spans = fmt.assistant_spans(history + [{"role": "assistant", "content": "a2"}])
        assert [trained[a:b] for a, b in spans] == ["a1<|im_end|>", "a2<|im_end|>"]
        prompt = fmt.render(history, add_generation_prompt=True)
        assert f"Reasoning Mode: {mode}" in prompt and prompt.endswith("q2<|im_end|>\n" + opening)
        assert trained.startswith(prompt) and spans[-1][0] == len(prompt)


@pytest.mark.parametrize("family_id", ["deepseek-r1-distill-qwen", "deepseek-r1-distill-llama"])
def test_deepseek_r1_keeps_the_reasoning_of_the_answer_it_trains(standins, family_id):
    """R1's template renders only what follows '</think>' in every answer: reasoning data (the usual
    data for R1-distill models) lost its reasoning from the trained answers silently. The final answer
    keeps it verbatim; earlier answers are rendered as the template renders history at inference."""
    from ducktune.data.schema import Message, Sample
    from ducktune.data.template import ChatFormat
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    fmt = ChatFormat(load_tokenizer(standin_dir(family_id, standins, log=lambda *a: None)))
    answer = "<think>\nTwo and two.\n</think>\n\nIt is 4."
    sample = Sample("chat", messages=[Message("user", "Hi"), Message("assistant", "<think>\nGreet.\n</think>\n\nHello!"),
                                      Message("user", "2+2?"), Message("assistant", answer)])
    encoded = fmt.encode(sample, 4096)
    trained = [text for text, is_trained in fmt.decode_spans(encoded) if is_trained]
    assert trained == ["\n\nHello!<｜end▁of▁sentence｜>", answer + "<｜end▁of▁sentence｜>"]
    # The prompt for that answer is the inference prompt of the same history.
    prompt = fmt.render([{"role": m.role, "content": m.content} for m in sample.messages[:3]], add_generation_prompt=True)
    text = fmt.tokenizer.decode(encoded.input_ids)
    assert text.startswith(prompt) and text[len(prompt):].startswith("<think>\nTwo and two.")
    plain = fmt.encode(Sample("chat", messages=[Message("user", "2+2?"), Message("assistant", "It is 4.")]), 4096)
    assert [t for t, is_trained in fmt.decode_spans(plain) if is_trained] == ["It is 4.<｜end▁of▁sentence｜>"]


@pytest.mark.parametrize("enable_thinking", [False, True])
def test_deepseek_r1_distill_llama_is_prompted_as_trained_with_one_bos(standins, enable_thinking):
    """R1-Distill-Llama-8B's published template has no enable_thinking branch: its generation prompt always
    adds '<think>\\n' after '<｜Assistant｜>', where its answers start, so ducktune prompts without it. The
    template writes <｜begin▁of▁sentence｜> itself and the Llama 3 tokenizer adds it to plain text: the
    export leaves BOS to llama.cpp, and the Ollama TEMPLATE renders the prompt without it."""
    from ducktune.data.template import ChatFormat
    from ducktune.export.gguf_vocab import prompt_starts_with_bos
    from ducktune.export.gotemplate import derive_layout
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(standin_dir("deepseek-r1-distill-llama", standins, log=lambda *a: None), None, False,
                               enable_thinking)
    bos = "<｜begin▁of▁sentence｜>"
    assert tokenizer.bos_token == bos and tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id
    fmt = ChatFormat(tokenizer)
    assert (fmt.generation_prompt, fmt.dropped_prompt_text) == ("<｜Assistant｜>", "<think>\n")
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
               {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    prompt = fmt.render(history, add_generation_prompt=True)
    assert prompt == f"{bos}Be brief.<｜User｜>q1<｜Assistant｜>a1<｜end▁of▁sentence｜><｜User｜>q2<｜Assistant｜>"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert prompt_starts_with_bos(tokenizer)
    assert derive_layout(fmt).render(history) == prompt


@pytest.mark.parametrize("family_id", ["mistral-v0.3", "mistral-nemo"])
def test_system_prompt_is_trained_where_mistral_templates_prompt_with_it(standins, family_id):
    """Mistral v0.3 / Nemo templates write the system message into the last user turn only, so a
    conversation ending with its answer rendered without it: training never saw a system prompt that
    every prompt at inference (chat, serve, Ollama) carries. The trained answer now follows exactly the
    prompt inference gives, system included; earlier turns stay as the template renders history."""
    from ducktune.data.lengths import ShapeRenderer
    from ducktune.data.template import ChatFormat
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    fmt = ChatFormat(load_tokenizer(standin_dir(family_id, standins, log=lambda *a: None)), system_prompt="Be brief.")
    for turns in (["Hi", "Hello!"], ["Hi", "Hello!", "Again", "Sure."]):
        sample = Sample("chat", messages=[Message(("user", "assistant")[i % 2], t) for i, t in enumerate(turns)])
        encoded = fmt.encode(sample, 4096)
        history = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns[:-1])]
        prompt = fmt.prompt_ids(history)
        last_start = max(i for i, label in enumerate(encoded.labels)
                         if label != IGNORE_INDEX and (i == 0 or encoded.labels[i - 1] == IGNORE_INDEX))
        assert encoded.input_ids[:last_start] == prompt  # the final answer follows the inference prompt
        assert "Be brief." in fmt.tokenizer.decode(prompt)
        assert fmt.tokenizer.decode(encoded.input_ids[last_start:]).strip().startswith(turns[-1])
    assert fmt.system_only_in_prompts
    # data check measures what training tokenizes (the system prompt included).
    text = ShapeRenderer(fmt).render(sample)
    assert fmt.tokenizer(text, add_special_tokens=False)["input_ids"] == encoded.input_ids
    # A template that keeps the system message in conversations (ChatML) is rendered as it always was.
    qwen = ChatFormat(load_tokenizer(standin_dir("qwen2.5", standins, log=lambda *a: None)), system_prompt="Be brief.")
    messages = qwen.with_system([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    assert not qwen.system_only_in_prompts
    assert qwen.conversation_text(messages) == qwen.tokenizer.apply_chat_template(messages, tokenize=False)


def test_default_lora_targets_reach_the_ungated_mlp_of_apertus(standins):
    """Apertus' MLP has no gate (up, xIELU, down): the default all-linear adapts up_proj and down_proj, and no
    adapter lands on xIELU's learned scalars (bare parameters, not linears)."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.families import standin_dir
    from ducktune.train.lora import attach_lora

    model = AutoModelForCausalLM.from_pretrained(standin_dir("apertus", standins, log=lambda *a: None))
    peft_model, targets = attach_lora(model, LoraConfig())
    assert {"up_proj", "down_proj", "q_proj", "k_proj", "v_proj", "o_proj"} <= set(targets)
    assert "gate_proj" not in targets and not [t for t in targets if "act_fn" in t or "alpha" in t]
    adapted = {name.split(".lora_")[0] for name, _ in peft_model.named_parameters() if ".lora_A." in name}
    assert any(name.endswith("layers.1.mlp.up_proj") for name in adapted), adapted
    assert any(name.endswith("layers.1.mlp.down_proj") for name in adapted), adapted


def test_gpt_oss_trains_the_final_channel_ending_in_return(standins):
    """gpt-oss's harmony template: prompts end at <|start|>assistant; the model generates the channel header
    (<|channel|>final<|message|>, trained with the answer), the answer and <|return|>, which the template writes
    after the last answer only (earlier answers end <|end|>, also trained and a stop token). The prompt is the
    trained text up to the channel header, and llama.cpp's stops include both ends and generation_config's."""
    from ducktune.data.template import ChatFormat
    from ducktune.models.families import standin_dir
    from ducktune.models.loading import load_tokenizer

    fmt = ChatFormat(load_tokenizer(standin_dir("gpt-oss", standins, log=lambda *a: None)))
    assert (fmt.generation_prompt, fmt.answer_lead) == ("<|start|>assistant", "<|channel|>final<|message|>")
    assert (fmt.eot_token, fmt.earlier_eot_token) == ("<|return|>", "<|end|>")
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
               {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    text, spans = fmt.assistant_spans(history + [{"role": "assistant", "content": "a2"}])
    assert [text[start:end] for start, end in spans] == ["<|channel|>final<|message|>a1<|end|>",
                                                         "<|channel|>final<|message|>a2<|return|>"]
    prompt = fmt.render(history, add_generation_prompt=True)
    assert text.startswith(prompt) and spans[-1][0] == len(prompt) and prompt.endswith("q2<|end|><|start|>assistant")
    assert "# Instructions\n\nBe brief." in prompt
    family = next(f for f in FAMILIES if f.id == "gpt-oss")
    assert {"<|return|>", "<|end|>"} <= set(fmt.stop_tokens) and family.stops == ("<|endoftext|>", "<|call|>")
