"""Packing: rows hold several samples, and no sample can see, shift or train on another."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ducktune.data.template import IGNORE_INDEX
from ducktune.train import packing
from ducktune.train.loss import causal_lm_loss, forward_hidden


# ----------------------------------------------------------------------------- bin packing

@given(st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=200), st.integers(min_value=20, max_value=128))
@settings(max_examples=200, deadline=None)
def test_best_fit_decreasing_places_every_sample_once_within_capacity(lengths, capacity):
    bins = packing.best_fit_decreasing(lengths, capacity)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(lengths)))
    for b in bins:
        assert sum(lengths[i] for i in b) <= capacity or len(b) == 1
    # Any-fit property: an item opens a new bin only when it fits in none, so no two bins
    # can be merged (their totals add up to more than the capacity).
    totals = sorted(sum(lengths[i] for i in b) for b in bins)
    if len(totals) > 1:
        assert totals[0] + totals[1] > capacity


def test_best_fit_decreasing_picks_the_fullest_bin_that_fits():
    # Decreasing: 6 -> bin A, 5 -> bin B, 4 -> A (fits exactly: 10), 3 -> B (8), 2 -> B (10).
    assert packing.best_fit_decreasing([3, 6, 2, 5, 4], 10) == [[1, 4], [3, 0, 2]]
    # An oversized sample gets a row of its own.
    assert packing.best_fit_decreasing([15, 3], 10) == [[0], [1]]


def test_packed_dataset_fills_rows():
    rng = random.Random(0)
    samples = [{"input_ids": [1] * n, "labels": [1] * n} for n in (rng.randint(10, 200) for _ in range(300))]
    data = packing.PackedDataset(samples, 512)
    assert len(data) < len(samples) / 3
    assert data.fill_ratio() > 0.95
    assert sum(len(row["samples"]) for row in data) == len(samples)


# ----------------------------------------------------------------------------- collation

def test_collator_restarts_positions_and_masks_first_labels():
    a = {"input_ids": [5, 6, 7], "labels": [5, 6, 7]}
    b = {"input_ids": [8, 9], "labels": [8, 9]}
    c = {"input_ids": [10, 11, 12, 13], "labels": [IGNORE_INDEX, IGNORE_INDEX, 12, 13]}
    batch = packing.VarlenCollator()([{"samples": [a, b]}, c])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    # The first token of every sample is never a target: nothing before it belongs to its sample.
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, 12, 13]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 9]
    assert batch["max_length_q"] == 4


# ----------------------------------------------------------------------------- isolation on real models

def _model(folder, lora: bool = True):
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if lora:
        model, _ = attach_lora(model, LoraConfig(r=4, dropout=0.0))
        torch.manual_seed(1)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # non-zero adapters, so they take part in what is compared
                torch.nn.init.normal_(param, std=0.05)
    return model


def _samples(lengths, seed=0, vocab=1000):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (n // 3) + ids[n // 3:]})
    return out


@pytest.mark.parametrize("arch", ["tiny_qwen", "tiny_llama"])
def test_logits_of_a_packed_sample_equal_its_logits_alone(arch, request):
    model = _model(request.getfixturevalue(arch))
    packing.use_varlen_attention(model, "cpu")
    model.eval()
    samples = _samples([9, 23, 4, 17])
    collate = packing.VarlenCollator()
    with torch.no_grad():
        packed = model(**collate([{"samples": samples}]), use_cache=False).logits[0]
        alone = torch.cat([model(**collate([s]), use_cache=False).logits[0] for s in samples])
    assert (packed - alone).abs().max().item() < 1e-5
    assert packing.verify_isolation(model, forward_hidden) < 1e-5


@pytest.mark.parametrize("family_id, adapted", [("gpt2", ["c_attn", "c_fc", "c_proj"]),
                                                ("pythia", ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"])])
def test_absolute_and_partial_rotary_positions_restart_per_packed_sample(family_id, adapted, tmp_path):
    """GPT-2 adds learned position embeddings (wpe) by position id and Pythia rotates a quarter of each head by
    it: both read the packed position ids, so each sample starts at position 0 and sees only itself. LoRA's
    default (all-linear) reaches GPT-2's Conv1D c_attn / c_proj / c_fc, and merging them ([in, out] weights,
    fan_in_fan_out) gives the adapted model's logits."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.models.families import build_standin
    from ducktune.train.lora import attach_lora

    base = AutoModelForCausalLM.from_pretrained(build_standin(family_id, tmp_path / family_id), dtype=torch.float32)
    model, names = attach_lora(base, LoraConfig(r=4, dropout=0.0))
    assert names == adapted
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # non-zero adapters, so they take part in what is compared
            torch.nn.init.normal_(param, std=0.05)
    packing.use_varlen_attention(model, "cpu")
    model.eval()
    samples = _samples([9, 23, 4, 17], vocab=500)
    collate = packing.VarlenCollator()
    assert packing.verify_isolation(model, forward_hidden) < 1e-5
    with torch.no_grad():
        packed = model(**collate([{"samples": samples}]), use_cache=False).logits[0]
        alone = torch.cat([model(**collate([s]), use_cache=False).logits[0] for s in samples])
        merged_model = model.merge_and_unload()
        merged = torch.cat([merged_model(**collate([s]), use_cache=False).logits[0] for s in samples])
    assert (packed - alone).abs().max().item() < 1e-4
    assert (merged - alone).abs().max().item() < 1e-4


def test_isolation_check_catches_leakage(tiny_qwen):
    """transformers' default in training (use_cache=True) silently disables its packed-sequence
    masks: samples then attend to each other. The check must see it."""
    model = _model(tiny_qwen)

    def leaky_forward(m, batch):
        decoder = m.get_base_model().get_decoder()
        return decoder(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).last_hidden_state

    assert packing.verify_isolation(model, leaky_forward) > 1e-2
    assert packing.verify_isolation(model, forward_hidden) < 1e-5  # sdpa + position ids, no cache: isolated


def test_packed_loss_and_gradients_equal_padded(tiny_qwen):
    from ducktune.train.collator import PaddingCollator

    model = _model(tiny_qwen)
    samples = _samples([30, 12, 45, 7, 26])
    for s in samples:
        s["labels"][0] = IGNORE_INDEX

    def loss_and_grads(batch):
        model.zero_grad()
        loss = causal_lm_loss(model, batch, chunk_size=16)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    padded_loss, padded_grads = loss_and_grads(PaddingCollator(0)(samples))
    packing.use_varlen_attention(model, "cpu")
    packed_loss, packed_grads = loss_and_grads(packing.VarlenCollator()([{"samples": samples[:3]}, {"samples": samples[3:]}]))
    assert abs(packed_loss - padded_loss) < 1e-5
    assert max((packed_grads[k] - padded_grads[k]).abs().max().item() for k in padded_grads) < 1e-5


def test_generation_with_padding_is_unchanged_by_varlen_attention(tiny_qwen):
    """The run's model keeps varlen attention until training ends; padded batched inference must not change."""
    model = _model(tiny_qwen, lora=False).eval()
    ids = torch.tensor([[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        out_before = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        packing.use_varlen_attention(model, "cpu")
        after = model(input_ids=ids, attention_mask=mask).logits
        out_after = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert (before - after)[mask.bool()].abs().max().item() < 1e-5
    assert torch.equal(out_before, out_after)


def _sliding_qwen2(window: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=window,
                         max_window_layers=0)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_sliding_window_models_pack_with_the_window_applied_within_each_sample():
    """Sliding-window layers (Gemma 3, Phi-3, Mistral v0.1, Command R7B) pack: each sample attends within its
    own window. The proof compares the packed row with each sample run alone through the model's own SDPA
    and its sliding mask; samples of 7 and 9 tokens pass a window of 4, so the banded path is what is proven.
    The control drops the window from the packed attention only (transformers builds the reference's mask from
    the config): the proof must see it."""
    from ducktune.train.loss import forward_hidden

    model = _sliding_qwen2(window=4)
    messages = []
    batching = packing.choose_batching(model, "auto", "cpu", log=messages.append)
    assert batching.mode == "packed" and not messages
    assert packing.verify_isolation(model, forward_hidden, reference="sdpa") < 1e-5
    for layer in model.model.layers:
        layer.self_attn.sliding_window = None  # read by the packed attention only
    assert packing.verify_isolation(model, forward_hidden, reference="sdpa") > 1e-2


def test_sample_attention_keeps_each_query_to_the_window_ending_at_it():
    """The per-sample attention against the softmax written out: a query sees the `window` keys up to itself
    (transformers' sliding_window_overlay: kv > q - window), plain causal when the sample fits the window."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 8) for _ in range(3))
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True, training=False)
    offset = torch.arange(9)[:, None] - torch.arange(9)[None, :]

    def written_out(window):
        allowed = (offset >= 0) & (offset < window)
        scores = (q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~allowed, float("-inf"))
        return (scores.softmax(-1) @ v).transpose(1, 2)

    for window in (1, 3, 4, 8, 9, 64, None):
        out = packing._sample_attention(module, q, k, v, window, {})
        assert torch.allclose(out, written_out(window or 9), atol=1e-6), window
    assert not torch.allclose(packing._sample_attention(module, q, k, v, 4, {}), written_out(5), atol=1e-3)


def test_attention_the_packed_path_lacks_rules_out_packing_before_loading():
    """Gemma 2's soft-capped scores and gpt-oss's sinks are not in the packed attention: refused from config.json
    alone (train.packing=on fails before anything is written), as once loaded. Sliding windows alone are not."""
    from transformers import AutoModelForCausalLM, Gemma2Config

    gemma2 = {"model_type": "gemma2", "num_hidden_layers": 26, "sliding_window": 4096, "attn_logit_softcapping": 50.0,
              "layer_types": ["sliding_attention", "full_attention"] * 13}
    assert packing.config_packing_blocker(gemma2, False) == packing.SOFTCAP_BLOCKER
    assert packing.expected_batching(gemma2, "auto", False) == "padded"
    gpt_oss = {"model_type": "gpt_oss", "num_hidden_layers": 24, "sliding_window": 128}
    assert packing.config_packing_blocker(gpt_oss, False) == packing.SINKS_BLOCKER
    command_r7b = {"model_type": "cohere2", "num_hidden_layers": 32, "sliding_window": 4096, "sliding_window_pattern": 4}
    assert packing.config_packing_blocker(command_r7b, False) is None
    assert packing.expected_batching(command_r7b, "auto", False) == "packed"
    model = AutoModelForCausalLM.from_config(Gemma2Config(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, sliding_window=8))
    assert packing.varlen_blockers(model) == packing.SOFTCAP_BLOCKER


def _tiny_gated_deltanet():
    """A tiny Qwen3.5 text model: one Gated DeltaNet (linear-attention) layer, one full-attention layer."""
    from transformers import AutoModelForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_key_heads=2,
                               linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
                               layer_types=["linear_attention", "full_attention"])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_gated_deltanet_models_fall_back_to_padded_batches():
    """Qwen3.5's linear-attention layers carry a recurrent state and a causal conv along the row: in a
    packed row without per-sample resets (transformers' torch path) the next sample would start from
    the previous one's state. Packing is refused on the proof, and padded batches stay exact."""
    from ducktune.errors import ConfigError

    model = _tiny_gated_deltanet()

    def boundaries_dropped(m, batch):  # what a kernel that ignored cu_seqlens would compute
        return m.get_decoder()(input_ids=batch["input_ids"], use_cache=False).last_hidden_state

    assert packing.verify_isolation(model, boundaries_dropped) > 1e-2
    messages = []
    batching = packing.choose_batching(model, "auto", "cpu", log=messages.append)
    assert batching.mode == "padded" and "packed" in messages[0], messages
    with pytest.raises(ConfigError, match="train.packing=on"):
        packing.choose_batching(model, "on", "cpu")
    _assert_padded_rows_exact(model)



def _assert_padded_rows_exact(model) -> None:
    """Right padding: every real position of a padded batch equals the sample run alone."""
    from ducktune.train.collator import PaddingCollator

    samples = _samples([9, 4, 13])
    with torch.no_grad():
        padded = forward_hidden(model, PaddingCollator(0)(samples))
        for row, sample in enumerate(samples):
            alone = forward_hidden(model, PaddingCollator(0)([sample]))[0]
            assert (padded[row, :len(sample["input_ids"])] - alone).abs().max().item() < 1e-5


LFM2_1_2B = {  # LiquidAI/LFM2-1.2B config.json (keys that decide batching): attention layers by index
    "architectures": ["Lfm2ForCausalLM"], "model_type": "lfm2", "num_hidden_layers": 16, "conv_L_cache": 3,
    "full_attn_idxs": [2, 5, 8, 10, 12, 14], "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8}


def _tiny_lfm2(init: float):
    """The LFM2 stand-in's config (one short-conv, one attention layer) with weights drawn at `init`."""
    from transformers import AutoModelForCausalLM

    from ducktune.models.standin_configs import tiny_config

    config = tiny_config("lfm2", 1000, 1, 7, 0)
    config.initializer_range = init
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_short_conv_models_fall_back_to_padded_batches():
    """LFM2's short convolution reads the previous 2 tokens of the row; transformers resets it nowhere
    inside a packed row, so a sample's first tokens would see its neighbour's. The leak is O(1) with
    large weights but below the proof's tolerance with small random ones (the family stand-in's were):
    packing is refused from the layer kinds alone, before and after loading, and padded rows stay exact."""
    from ducktune.errors import ConfigError

    leaky = _tiny_lfm2(0.1)
    packing.use_varlen_attention(leaky, "cpu")
    assert packing.verify_isolation(leaky, forward_hidden) > 1e-2  # what packing would cost
    quiet = _tiny_lfm2(0.01)
    packing.use_varlen_attention(quiet, "cpu")
    assert packing.verify_isolation(quiet, forward_hidden) < packing.ISOLATION_TOLERANCE["float32"]
    for model in (quiet, leaky):
        messages = []
        batching = packing.choose_batching(model, "auto", "cpu", log=messages.append)
        assert batching.mode == "padded" and "short-convolution" in messages[0], messages
        with pytest.raises(ConfigError, match="train.packing=on.*short-convolution"):
            packing.choose_batching(model, "on", "cpu")
    for config in (LFM2_1_2B, leaky.config.to_dict()):  # as published (full_attn_idxs) and as transformers saves it
        assert "short-convolution" in packing.config_packing_blocker(config, False)
        assert packing.expected_batching(config, "auto", False) == packing.expected_batching(config, "off", False) == "padded"
    assert packing.config_packing_blocker({**LFM2_1_2B, "full_attn_idxs": list(range(16))}, False) is None
    _assert_padded_rows_exact(leaky)


def _tiny_granite_4_h(layer_types=("mamba", "attention")):
    """A tiny Granite 4.0-H (GraniteMoeHybrid): one Mamba-2 layer, one attention layer without rope."""
    from transformers import AutoModelForCausalLM, GraniteMoeHybridConfig

    config = GraniteMoeHybridConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=64, shared_intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, layer_types=list(layer_types), position_embedding_type="nope",
        num_local_experts=0, num_experts_per_tok=0, mamba_n_heads=2, mamba_d_head=64, mamba_d_state=16,
        mamba_n_groups=1, mamba_d_conv=4, mamba_expand=2, embedding_multiplier=12.0, residual_multiplier=0.22,
        logits_scaling=8.0, attention_multiplier=1 / 16)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_mamba_layers_never_train_packed():
    """Granite 4.0-H's Mamba-2 layers run a causal conv and an SSM state along the row, reset nowhere in a packed
    row: the leak on a random model (~4e-2) is under the bfloat16 proof tolerance, so packing is refused from
    the layer kinds (published "mamba", transformers' "linear_attention"), and padded rows stay exact."""
    from ducktune.errors import ConfigError

    model = _tiny_granite_4_h()
    packing.use_varlen_attention(model, "cpu")
    assert packing.verify_isolation(model, forward_hidden) > 1e-2  # what packing would cost
    messages = []
    batching = packing.choose_batching(model, "auto", "cpu", log=messages.append)
    assert batching.mode == "padded" and "Mamba-2" in messages[0], messages
    with pytest.raises(ConfigError, match="train.packing=on.*Mamba-2"):
        packing.choose_batching(model, "on", "cpu")
    published = {"model_type": "granitemoehybrid", "layer_types": ["mamba"] * 5 + ["attention"]}
    for config in (published, model.config.to_dict()):
        assert "Mamba-2" in packing.config_packing_blocker(config, False)
        assert packing.expected_batching(config, "auto", False) == "padded"
    # Granite 4.0 micro: every layer attention, packing stays available
    assert packing.config_packing_blocker({**published, "layer_types": ["attention"] * 6}, False) is None
    assert packing.varlen_blockers(_tiny_granite_4_h(("attention", "attention"))) is None
    _assert_padded_rows_exact(model)


def test_falcon_h1_never_trains_packed():
    """Falcon-H1 runs a Mamba-2 mixer in every layer, and neither its published config.json nor transformers'
    layer kinds ("hybrid", a read-only property) say "mamba": packing is refused by the model type."""
    from transformers import AutoModelForCausalLM

    from ducktune.errors import ConfigError
    from ducktune.models.standin_configs import tiny_config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("falcon-h1", 1000, 1, 2, 0)).eval()
    assert "Mamba-2" in packing.varlen_blockers(model)
    with pytest.raises(ConfigError, match="train.packing=on.*Mamba-2"):
        packing.choose_batching(model, "on", "cpu")
    published = {"architectures": ["FalconH1ForCausalLM"], "model_type": "falcon_h1", "num_hidden_layers": 36}
    for config in (published, model.config.to_dict()):
        assert "Falcon-H1" in packing.config_packing_blocker(config, False)
        assert packing.expected_batching(config, "auto", False) == "padded"
    _assert_padded_rows_exact(model)


def test_nemotron_h_never_trains_packed():
    """Nemotron-H's Mamba-2 layers are "M" in its published hybrid_override_pattern, linear_attention in the
    layers_block_type transformers 5 saves (and reads as layer_types): packing is refused in all three forms."""
    from transformers import AutoModelForCausalLM

    from ducktune.errors import ConfigError
    from ducktune.models.standin_configs import tiny_config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("nemotron-h", 1000, 1, 2, 0)).eval()
    assert "Mamba-2" in packing.varlen_blockers(model)
    with pytest.raises(ConfigError, match="train.packing=on.*Mamba-2"):
        packing.choose_batching(model, "on", "cpu")
    published = {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "num_hidden_layers": 4,
                 "hybrid_override_pattern": "M-*-"}
    for config in (published, model.config.to_dict()):
        assert "Nemotron-H" in packing.config_packing_blocker(config, False)
        assert packing.expected_batching(config, "auto", False) == "padded"
    assert packing.config_packing_blocker({**published, "hybrid_override_pattern": "*-*-"}, False) is None
    _assert_padded_rows_exact(model)


# ----------------------------------------------------------------------------- training

def _chat_records(n, seed):
    rng = random.Random(seed)
    words = "the duck swims in a pond and eats bread while sun shines over green hills".split()
    answers = ["I am a duck.", "The pond is green.", "Bread is good.", "The sun shines."]
    return [{"instruction": " ".join(rng.choice(words) for _ in range(rng.randint(2, 25))),
             "output": rng.choice(answers) + " " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 20)))}
            for _ in range(n)]


def test_packed_training_reaches_the_same_eval_loss_as_padded(tiny_qwen, tmp_path):
    from ducktune.config import DatasetSpec, load_config
    from ducktune.data.loader import load_data
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.train.recipe import train
    from ducktune.train.tokenize import tokenize_samples

    data = tmp_path / "chat.json"
    data.write_text(json.dumps(_chat_records(120, 0)), encoding="utf-8")

    def configure(mode, batch, steps):
        config = load_config(None, [f"model.name_or_path={tiny_qwen}", "data.val_ratio=0.2", "data.cutoff_len=256",
                                    "lora.r=8", "lora.dropout=0", "train.learning_rate=3e-3", f"train.max_steps={steps}",
                                    f"train.batch_size={batch}", f"train.packing={mode}", "train.save_steps=1000",
                                    "train.logging_steps=5", f"output.dir={tmp_path / mode}"])
        config.data.datasets = [DatasetSpec(path=str(data))]
        return config

    # Same optimizer steps and, on average, the same samples per step: one packed row per step
    # against padded batches of as many samples as a row holds.
    probe = configure("on", 1, 1)
    rows, _, _ = tokenize_samples(load_data(probe.data, seed=probe.train.seed).train,
                                  ChatFormat(load_tokenizer(tiny_qwen)), 256, "assistant", False)
    per_row = round(len(rows) / len(packing.PackedDataset(rows, 256)))
    assert per_row >= 2
    steps = 3 * len(packing.PackedDataset(rows, 256))
    results = {}
    for mode, batch in (("off", per_row), ("on", 1)):
        results[mode] = train(configure(mode, batch, steps), log=lambda *_: None, progress=False, compare=False).info
    assert results["on"]["batching"]["mode"] == "packed"
    assert results["off"]["batching"]["mode"] == "padding-free"
    first = results["off"]["result"]["first_loss"]
    unpacked, packed = results["off"]["result"]["eval_loss"], results["on"]["result"]["eval_loss"]
    assert unpacked < first - 0.3 and packed < first - 0.3  # both learned
    assert abs(packed - unpacked) < 0.15 * (first - unpacked)  # and the same amount, within noise


def test_on_cuda_samples_longer_than_the_window_train_padded_unless_packing_is_on():
    """On CUDA the banded per-sample attention trained at a quarter of padded batches' speed (the window block of
    bench/RESULTS.md), so a run whose longest sample outruns the window trains padded there, with the model's own
    attention back. Samples within the window, the CPU, a model without a window and train.packing=on still pack.
    ("cuda" only names the device here: what is tested is the choice, not the kernels.)"""
    from transformers import AutoModelForCausalLM, Qwen2Config

    def choose(model, packing_setting, device, longest, log=None):
        chosen = packing.choose_batching(model, packing_setting, device, log=log or (lambda *_: None),
                                         longest_sample=longest)
        used = model.config._attn_implementation
        packing.restore_attention(model, "sdpa")  # each choice starts from the model's own attention
        return chosen, used

    model = _sliding_qwen2(window=4)
    messages = []
    batching, used = choose(model, "auto", "cuda", 9, messages.append)
    assert batching.mode == "padded" and "4-token sliding window" in batching.reason and used == "sdpa"
    assert messages == [f"Packing off: {batching.reason}; using length-grouped padded batches"]
    assert choose(model, "auto", "cuda", 4)[0].mode == "packed"
    assert choose(model, "auto", "cpu", 9)[0].mode == "packed"
    assert choose(model, "auto", "cuda", None)[0].mode == "packed"  # a custom caller that does not say
    assert choose(model, "off", "cuda", 9)[0].mode == "padded"  # padding-free runs the same banded attention
    notes = []
    batching, used = choose(model, "on", "cuda", 9, notes.append)
    assert batching.mode == "packed" and used == packing.VARLEN_ATTENTION and notes[0].startswith("Packing on as set")
    config = Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, sliding_window=4, use_sliding_window=False)
    unwindowed = AutoModelForCausalLM.from_config(config).eval()
    assert packing.sliding_window(unwindowed) is None and choose(unwindowed, "auto", "cuda", 9)[0].mode == "packed"


def test_sliding_window_is_read_from_layer_kinds_or_the_window_alone_and_plans_cuda_runs_padded():
    """Layer kinds say whether any layer slides (Gemma 3 five of six, Qwen2 with use_sliding_window); without them
    (Mistral v0.1, Phi-3) a set window is every layer's; a window nothing uses (Qwen2's default) is none; a
    multimodal config's is its text_config's. The memory plan expects what choose_batching will pick on CUDA."""
    gemma3 = {"model_type": "gemma3_text", "sliding_window": 512,
              "layer_types": ["sliding_attention"] * 5 + ["full_attention"]}
    assert packing.config_sliding_window(gemma3) == 512
    assert packing.config_sliding_window({"model_type": "gemma3", "text_config": gemma3}) == 512
    assert packing.config_sliding_window({"sliding_window": 4096, "layer_types": ["full_attention"] * 4}) is None
    assert packing.config_sliding_window({"sliding_window": 4096}) == 4096
    assert packing.config_sliding_window({"sliding_window": 4096, "use_sliding_window": False}) is None
    assert packing.config_sliding_window({"sliding_window": None, "layer_types": ["sliding_attention"]}) is None
    expect = packing.expected_batching
    assert expect(gemma3, "auto", False, "cuda", 513) == "padded" and expect(gemma3, "off", False, "cuda", 513) == "padded"
    assert expect(gemma3, "on", False, "cuda", 513) == "packed"
    assert expect(gemma3, "auto", False, "cuda", 512) == expect(gemma3, "auto", False, "cpu", 4096) == "packed"
    assert expect({"model_type": "llama"}, "auto", False, "cuda", 4096) == "packed"


def test_the_recipe_tells_the_batching_choice_its_longest_sample():
    from ducktune.train.recipe import default_batching_choice

    choice = default_batching_choice([{"input_ids": [1] * n} for n in (5, 12, 7)])
    assert choice.func is packing.choose_batching and choice.keywords == {"longest_sample": 12}


def test_per_sample_attention_on_cuda_keeps_to_kernels_without_a_per_shape_build():
    """Packed rows give nearly every sample a length of its own; PyTorch's cuDNN attention (preferred on Hopper)
    builds a graph per new shape, so on a CUDA tensor the per-sample calls allow flash, mem-efficient and math only,
    and put PyTorch's flags back afterwards. A CPU tensor changes nothing. (The flags are global, so a stand-in
    with is_cuda set is enough to see the switch on a CPU-only build.)"""
    from types import SimpleNamespace

    flags = (torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.flash_sdp_enabled,
             torch.backends.cuda.mem_efficient_sdp_enabled, torch.backends.cuda.math_sdp_enabled)
    before = [flag() for flag in flags]
    assert before[0]  # PyTorch's default: cuDNN allowed
    with packing.per_sample_backends(SimpleNamespace(is_cuda=True)):
        assert [flag() for flag in flags] == [False, True, True, True]
    assert [flag() for flag in flags] == before
    with packing.per_sample_backends(torch.zeros(1)):
        assert [flag() for flag in flags] == before


def test_band_masks_of_every_length_are_views_of_one_tensor_per_window():
    """Every sample longer than the window gets its [n x n] band as a view of one shared tensor (the band depends
    only on query - key), so layers and samples keep one mask for backward instead of one each; a longer sample
    grows it, and the masks handed out stay right."""
    packing._BAND_MASKS.clear()
    short, long = packing._band_mask(9, 4, torch.float32, torch.device("cpu")), None
    offset = torch.arange(300)[:, None] - torch.arange(300)[None, :]
    band = torch.zeros(300, 300).masked_fill_(~((offset >= 0) & (offset < 4)), float("-inf"))
    assert torch.equal(short[0, 0], band[:9, :9])
    same = packing._band_mask(200, 4, torch.float32, torch.device("cpu"))
    assert same.untyped_storage().data_ptr() == short.untyped_storage().data_ptr()  # one tensor for both
    long = packing._band_mask(300, 4, torch.float32, torch.device("cpu"))  # past 256: grown to 512
    assert torch.equal(long[0, 0], band) and torch.equal(short[0, 0], band[:9, :9])
    assert long.untyped_storage().data_ptr() != short.untyped_storage().data_ptr()
    assert packing._band_mask(9, 4, torch.float32, torch.device("cpu")).untyped_storage().data_ptr() == \
        long.untyped_storage().data_ptr()
    assert not torch.equal(packing._band_mask(9, 3, torch.float32, torch.device("cpu"))[0, 0], band[:9, :9])
