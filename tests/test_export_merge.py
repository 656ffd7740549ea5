"""Merging a LoRA adapter: PEFT's merge equals base+adapter, the merged folder is complete, and
adapters that do not fit (another model, missing or half-written files) are refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from export_support import make_lora_run

from ducktune.cli import main
from ducktune.errors import ModelError
from ducktune.export.merge import logits_of, merge_run, open_run, prompt_ids
from ducktune.models.adapter_check import check_adapter


@pytest.fixture(scope="module")
def llama_run(tiny_llama, tmp_path_factory):
    return make_lora_run(tmp_path_factory.mktemp("runs") / "llama-run", tiny_llama)


def test_merged_model_equals_base_plus_adapter(llama_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    source = open_run(llama_run)
    result = merge_run(source, tmp_path / "merged", log=lambda *a: None)
    assert result.precision == "float64" and result.max_diff < 1e-4

    # Independently: base + adapter (unmerged) vs the merged folder as saved.
    ids = prompt_ids(source.chat_format, source.probe_prompts)
    base = AutoModelForCausalLM.from_pretrained(str(source.base_folder), dtype=torch.float32)
    plain = logits_of(base, ids)
    adapted = logits_of(PeftModel.from_pretrained(base, str(llama_run / "adapter")), ids)
    saved = logits_of(AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32), ids)
    assert max(float((a - b).abs().max()) for a, b in zip(adapted, saved)) < 1e-4
    # ... and the adapter really changes the model (the check above could not pass by accident).
    assert max(float((a - b).abs().max()) for a, b in zip(plain, saved)) > 1e-2


def test_merged_folder_is_complete(llama_run, tmp_path):
    source = open_run(llama_run)
    merge_run(source, tmp_path / "merged", log=lambda *a: None)
    merged = tmp_path / "merged"
    config = json.loads((merged / "config.json").read_text())
    assert config["dtype"] == "float32"  # the base model's dtype
    assert (merged / "model.safetensors").is_file() and not list(merged.glob("*.bin"))
    assert (merged / "chat_template.jinja").read_text() == source.tokenizer.chat_template
    generation = json.loads((merged / "generation_config.json").read_text())
    vocab = source.tokenizer.get_vocab()
    # Llama 3: <|eot_id|> ends a turn and differs from EOS; both stop generation.
    assert sorted(generation["eos_token_id"]) == sorted([vocab["<|eot_id|>"], vocab["<|end_of_text|>"]])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folders left


def test_adapter_for_another_model_is_refused(llama_run, tmp_path):
    """An adapter trained on a model with another hidden size: refused, naming the file."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    other = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=1024, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=2, num_attention_heads=4,
                                                         num_key_value_heads=2))
    adapter_dir = tmp_path / "adapter"
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter_dir)
    source = open_run(llama_run)
    with pytest.raises(ModelError, match=r"adapter_model\.safetensors.*different model"):
        check_adapter(adapter_dir, source.base_folder)


def test_adapter_missing_modules_is_refused(llama_run, tmp_path):
    from safetensors.torch import load_file, save_file

    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text((llama_run / "adapter" / "adapter_config.json").read_text())
    weights = load_file(str(llama_run / "adapter" / "adapter_model.safetensors"))
    kept = {k: v for k, v in weights.items() if "layers.1." not in k}
    save_file(kept, str(adapter_dir / "adapter_model.safetensors"))
    with pytest.raises(ModelError, match=r"adapter_model\.safetensors: no weights for \d+ of the \d+ modules"):
        check_adapter(adapter_dir, open_run(llama_run).base_folder)


def test_half_written_adapter_is_refused(llama_run, tmp_path):
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text((llama_run / "adapter" / "adapter_config.json").read_text())
    data = (llama_run / "adapter" / "adapter_model.safetensors").read_bytes()
    (adapter_dir / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"adapter_model\.safetensors: unreadable.*incomplete"):
        check_adapter(adapter_dir, open_run(llama_run).base_folder)
    (adapter_dir / "adapter_config.json").unlink()
    with pytest.raises(ModelError, match=r"adapter_config\.json: missing"):
        check_adapter(adapter_dir, open_run(llama_run).base_folder)


def test_cli_refuses_a_broken_adapter_with_one_line_and_writes_nothing(tiny_llama, tmp_path, capsys):
    run = make_lora_run(tmp_path / "run", tiny_llama)
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert "adapter_model.safetensors" in err and "Traceback" not in err
    assert not (run / "export").exists()


def test_moe_expert_parameters_are_named_and_pass_the_adapter_check(tmp_path):
    """PEFT's all-linear on a transformers-5 Mixtral also adapts the fused expert tensors (target_parameters):
    training names them, and the adapter check (which knows only `.weight` matrices and the checkpoint's
    own names, block_sparse_moe.*) lets PEFT judge those instead of calling the adapter foreign."""
    import torch
    from transformers import AutoModelForCausalLM, MixtralConfig

    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora

    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    peft_model, targets = attach_lora(model, LoraConfig(r=4, alpha=8, fused=False))
    parameters = [t for t in targets if t.endswith(" (parameter)")]
    assert parameters and "q_proj" in targets
    peft_model.save_pretrained(tmp_path / "adapter")
    summary = check_adapter(tmp_path / "adapter", tmp_path / "base")
    assert summary["modules"] >= 4  # q/k/v/o at least, checked by shape


def _tiny_gemma3_multimodal_config():
    """Gemma3ForConditionalGeneration's shape (Gemma 3 4B+: a SigLIP vision tower beside the text model), tiny."""
    from transformers import Gemma3Config

    return Gemma3Config(
        text_config=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, vocab_size=300,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, image_size=32, patch_size=8,
                           num_attention_heads=2),
        mm_tokens_per_image=16, boi_token_index=5, eoi_token_index=6, image_token_index=7)


def test_adapter_of_a_checkpoint_transformers_renames_on_load_fits(tmp_path):
    """Gemma 3 4B+ (Gemma3ForConditionalGeneration) ships language_model.model.layers.* on disk,
    which transformers loads as model.language_model.layers.*; PEFT names the loaded modules. The
    check compared with the on-disk names and refused every such run after training ("trained on a
    different architecture") in chat, compare, eval and export."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = _tiny_gemma3_multimodal_config()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "base")
    from ducktune.models.adapter_check import weight_shapes

    assert any(name.startswith("language_model.model.layers.") for name in weight_shapes(tmp_path / "base"))
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "base"))
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "down_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(tmp_path / "adapter")
    summary = check_adapter(tmp_path / "adapter", tmp_path / "base")
    # q_proj and down_proj of the 2 text layers, and the vision tower's one q_proj.
    assert summary == {"modules": 5, "rank": 2}


def test_all_linear_leaves_a_multimodal_models_vision_parts_alone(tmp_path):
    """Gemma 3 4B+: all-linear put adapters on the SigLIP vision tower and the projector, which a
    text fine-tune never runs (their adapters stay zero and only grow the files)."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora

    config = _tiny_gemma3_multimodal_config()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "base")
    peft_model, targets = attach_lora(model, LoraConfig(r=2))
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert len(adapted) == 2 * 7 and all(".language_model.layers." in name for name in adapted)
    assert targets == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    from ducktune.train.lora import unadapted_note

    assert unadapted_note(peft_model) is None  # the vision parts are left alone on purpose, not "Not adapted"
    # The saved adapter fits its base: the modules its config excludes are not missing weights.
    peft_model.save_pretrained(tmp_path / "adapter")
    assert check_adapter(tmp_path / "adapter", tmp_path / "base") == {"modules": 14, "rank": 2}


def test_all_linear_reaches_nemotrons_ungated_mlp():
    """Nemotron's MLP is up_proj -> squared ReLU -> down_proj, with no gate: the default targets adapt both."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.standin_configs import tiny_config
    from ducktune.train.lora import attach_lora, unadapted_note

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("nemotron-mini", 256, 2, 3, 0))
    peft_model, targets = attach_lora(model, LoraConfig(r=2))
    assert targets == ["down_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert unadapted_note(peft_model) is None


def test_all_linear_leaves_gemma_4s_vision_and_audio_parts_alone(tmp_path):
    """Gemma 4 E2B/E4B: beside the vision tower, an audio tower and the two embedders that project their outputs
    into the text model; all-linear adapts the language model only (its per-layer embedding linears included)."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.standin_configs import tiny_config
    from ducktune.train.lora import attach_lora, unadapted_note

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("gemma4", 256, 2, 1, 0))
    assert model.model.audio_tower is not None and model.model.embed_audio is not None
    peft_model, targets = attach_lora(model, LoraConfig(r=2))
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert adapted and all(".language_model." in name for name in adapted)
    assert {"per_layer_input_gate", "per_layer_projection", "per_layer_model_projection", "q_proj"} <= set(targets)
    assert unadapted_note(peft_model) is None


def _adapted_and_merged(arch: str, train_mode: bool = False, **lora):
    """A tiny stand-in of `arch` with LoRA adapters that act (all-linear unless `lora` says otherwise): (the targets,
    logits with the adapters, without them, and after merge_and_unload)."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.standin_configs import tiny_config
    from ducktune.train.lora import attach_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, 300))
    peft_model, targets = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, fused=False, **lora))
    with torch.no_grad():  # adapters that act (lora_B starts at zero)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 1.0)
    ids = torch.randint(0, 300, (1, 12))
    peft_model.train(train_mode)
    with torch.no_grad():
        adapted = peft_model(ids).logits
        with peft_model.disable_adapter():
            base = peft_model(ids).logits
        merged = peft_model.merge_and_unload().eval()(ids).logits
    return set(targets), adapted, base, merged


def test_granite_4_h_mamba_projections_are_adapted_and_merge_as_trained():
    """all-linear on Granite 4.0-H adapts its Mamba-2 mixers' in_proj and out_proj (not the depthwise conv1d,
    nor A_log / D / dt_bias), and the merged weights give the logits the adapted model computes on the path
    training takes (train mode: transformers' fused Mamba-2 kernel would read out_proj's weight past its adapter;
    without mamba_ssm it falls back to calling out_proj, as here)."""
    targets, trained, base, merged = _adapted_and_merged("granite4h", train_mode=True)
    assert {"in_proj", "out_proj", "input_linear", "output_linear", "q_proj"} <= targets
    assert not {"conv1d", "A_log", "D", "dt_bias"} & targets
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(merged, trained, atol=1e-4), (merged - trained).abs().max()


def test_minicpm3_latent_attention_projections_are_adapted_and_merge_in_place():
    """all-linear on MiniCPM3 adapts every MLA projection (q_a/q_b, kv_a_proj_with_mqa, kv_b, o_proj), never its
    latent norms; each is a plain linear weight llama.cpp reads whole, so merging is PEFT's own, in place."""
    targets, adapted, base, merged = _adapted_and_merged("minicpm3")
    assert {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj"} <= targets
    assert not {"q_a_layernorm", "kv_a_layernorm"} & targets
    assert (adapted - base).abs().max() > 1e-2
    assert torch.allclose(merged, adapted, atol=1e-4), (merged - adapted).abs().max()


@pytest.mark.parametrize("arch, mlp", [("falcon-h1", {"gate_proj", "up_proj", "down_proj"}),
                                       ("nemotron-h", {"up_proj", "down_proj"})])
def test_mamba_hybrid_all_linear_leaves_the_mamba_out_proj_alone_and_merges_as_trained(arch, mlp):
    """PEFT refuses LoRA on Falcon-H1's and Nemotron-H's Mamba-2 out_proj (the fused mamba_ssm path reads its weight
    past an adapter): all-linear adapts in_proj, the attention (o_proj included) and the MLP, not the mixer's
    out_proj, and the merged weights give the adapted logits. Naming out_proj in lora.target_modules is a one-line
    ConfigError."""
    from ducktune.config import LoraConfig
    from ducktune.errors import ConfigError
    from ducktune.models.standin_configs import tiny_config
    from ducktune.train.lora import attach_lora

    from transformers import AutoModelForCausalLM

    targets, trained, base, merged = _adapted_and_merged(arch)
    assert {"in_proj", "q_proj", "k_proj", "v_proj", "o_proj", *mlp} <= targets
    assert not {"out_proj", "conv1d", "lm_head"} & targets
    assert (trained - base).abs().max() > 1e-2
    assert torch.allclose(merged, trained, atol=1e-4), (merged - trained).abs().max()
    fresh = AutoModelForCausalLM.from_config(tiny_config(arch, 300))
    with pytest.raises(ConfigError, match="lora.target_modules: .*out_proj.*incompatible with Mamba"):
        attach_lora(fresh, LoraConfig(r=4, alpha=8, dropout=0.0, fused=False, target_modules=["in_proj", "out_proj"]))


def test_gpt_oss_adapts_attention_and_its_experts_only_as_target_parameters():
    """gpt-oss's experts are bare 3-D tensors (gate_up_proj with gate and up interleaved, down_proj) which all-linear
    does not reach: it adapts q/k/v/o and the training log names the experts left frozen. lora.target_parameters
    adapts them, and the merged weights give the adapted model's logits (the GGUF is written from them)."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.standin_configs import tiny_config
    from ducktune.train.lora import attach_lora, unadapted_note

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("gpt-oss", 300))
    peft_model, targets = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, fused=False))
    assert set(targets) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert "mlp.experts.gate_up_proj" in unadapted_note(peft_model)
    experts = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    targets, adapted, base, merged = _adapted_and_merged("gpt-oss", target_parameters=experts)
    assert {f"{name} (parameter)" for name in experts} <= targets
    assert (adapted - base).abs().max() > 1e-2
    assert torch.allclose(merged, adapted, atol=1e-4), (merged - adapted).abs().max()
