"""Chunked cross-entropy: the same loss and gradients as the plain computation, without the full logits."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from ducktune.data.template import IGNORE_INDEX
from ducktune.train import loss as loss_module
from ducktune.train.collator import PaddingCollator
from ducktune.train.loss import causal_lm_loss, choose_loss, linear_cross_entropy
from ducktune.train.plan import vocab_block_rows


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_matches_plain_loss_and_gradients(chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 24, generator=g, requires_grad=True)
    weight = (torch.randn(300, 24, generator=g) * 0.3).requires_grad_()
    bias = torch.randn(300, generator=g).requires_grad_() if with_bias else None
    targets = torch.randint(0, 300, (50,), generator=g)

    plain = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum")
    expected = torch.autograd.grad(plain, [hidden, weight] + ([bias] if with_bias else []))
    ours = linear_cross_entropy(hidden, weight, bias, targets, chunk)
    got = torch.autograd.grad(ours, [hidden, weight] + ([bias] if with_bias else []))

    assert abs(ours.item() - plain.item()) < 1e-5 * max(1.0, abs(plain.item()) / 100)
    for a, b in zip(got, expected):
        assert (a - b).abs().max().item() < 1e-5


def test_linear_cross_entropy_without_grad_is_the_same_number():
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(20, 8, generator=g), torch.randn(50, 8, generator=g)
    targets = torch.randint(0, 50, (20,), generator=g)
    with torch.no_grad():
        plain = F.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
        assert abs(linear_cross_entropy(hidden, weight, None, targets, 3).item() - plain.item()) < 1e-4


@pytest.mark.parametrize("chunk", [7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_frozen_head_on_cpu_walks_vocabulary_blocks_with_the_same_loss_and_gradient(chunk, with_bias):
    """A LoRA run's head (frozen) goes through vocabulary blocks: a 1,024-wide fp32 head is cut
    into blocks of 1,024 rows, so 2,600 rows make two full blocks and a partial one, and most rows'
    running maximum moves to a later block (a wrong rescale changes their loss)."""
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(50, 1024, generator=g, requires_grad=True)
    weight = torch.randn(2600, 1024, generator=g) * 0.05
    bias = torch.randn(2600, generator=g) if with_bias else None
    targets = torch.randint(0, 2600, (50,), generator=g)
    assert vocab_block_rows(1024, 4) == 1024
    assert loss_module._ce_chunks_for(hidden, weight, bias, grads=True) is loss_module._linear_ce_vocab_blocks

    plain = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum")
    (expected,) = torch.autograd.grad(plain, [hidden])
    ours = linear_cross_entropy(hidden, weight, bias, targets, chunk)
    (got,) = torch.autograd.grad(ours, [hidden])
    assert abs(ours.item() - plain.item()) < 1e-5 * abs(plain.item())
    assert (got - expected).abs().max().item() < 1e-5
    with torch.no_grad():
        assert abs(linear_cross_entropy(hidden, weight, bias, targets, chunk).item() - plain.item()) < 1e-5 * abs(plain.item())


def test_vocabulary_blocks_in_bfloat16_match_the_fp32_loss_of_the_same_values():
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(40, 1024, generator=g).bfloat16().requires_grad_()
    weight = (torch.randn(3000, 1024, generator=g) * 0.05).bfloat16()  # 2,048-row blocks in bf16: two
    assert vocab_block_rows(1024, 2) == 2048
    targets = torch.randint(0, 3000, (40,), generator=g)
    plain = F.cross_entropy(hidden.float() @ weight.float().t(), targets, reduction="sum")
    (expected,) = torch.autograd.grad(plain, [hidden])
    ours = linear_cross_entropy(hidden, weight, None, targets, 16)
    (got,) = torch.autograd.grad(ours, [hidden])
    assert got.dtype == torch.bfloat16
    assert abs(ours.item() - plain.item()) < 1e-2 * abs(plain.item())
    assert (got.float() - expected.float()).abs().max().item() < 2e-2 * expected.float().abs().max().item()


def test_a_head_that_trains_keeps_the_one_block_walk():
    hidden = torch.randn(4, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    assert loss_module._ce_chunks_for(hidden, weight, None, grads=True) is loss_module._linear_ce_chunks
    assert loss_module._ce_chunks_for(hidden, weight, None, grads=False) is loss_module._linear_ce_vocab_blocks


def _lora_model(folder):
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora

    model, _ = attach_lora(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), LoraConfig(r=4, dropout=0.0))
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    return model


def _batch():
    g = torch.Generator().manual_seed(2)
    samples = []
    for n in (31, 12, 44):
        ids = torch.randint(3, 1000, (n,), generator=g).tolist()
        samples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (n // 2) + ids[n // 2:]})
    return PaddingCollator(0)(samples)


@pytest.mark.parametrize("arch", ["tiny_qwen", "tiny_llama"])
def test_chunked_loss_equals_the_models_own_loss_and_lora_gradients(arch, request):
    model = _lora_model(request.getfixturevalue(arch))
    batch = _batch()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    reference = model(**batch, use_cache=False).loss
    expected = torch.autograd.grad(reference, [p for _, p in trainable])
    ours = causal_lm_loss(model, batch, chunk_size=10)
    got = torch.autograd.grad(ours, [p for _, p in trainable])

    assert abs(ours.item() - reference.item()) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(got, expected)) < 1e-5
    # Normalised by a token count over several micro-batches (gradient accumulation), as the Trainer passes it.
    count = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    scaled = causal_lm_loss(model, batch, chunk_size=10, num_items=3 * count)
    assert abs(scaled.item() - reference.item() / 3) < 1e-5


def test_models_that_transform_logits_keep_their_own_loss():
    from transformers import AutoModelForCausalLM, Gemma2Config

    config = Gemma2Config(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5)
    model = AutoModelForCausalLM.from_config(config)
    messages = []
    assert choose_loss(model, 256, log=messages.append) is None
    assert "not a plain LM head" in messages[0]
    plain = AutoModelForCausalLM.from_config(Gemma2Config(**{**config.to_dict(), "final_logit_softcapping": None}))
    assert choose_loss(plain, 256).chunk_size == 256


def test_full_logits_are_never_materialized():
    """Peak memory of a forward+backward over 8,192 positions and a 32,000-token vocabulary:
    the plain loss holds [8192 x 32000] fp32 logits (1 GiB) several times; the chunked one a
    [256 x 32000] block."""
    script = textwrap.dedent("""
        import sys, torch, torch.nn.functional as F
        from ducktune.train.loss import linear_cross_entropy
        from ducktune.train.memory_probe import peak_rss, return_freed_memory_to_os
        return_freed_memory_to_os()
        torch.set_num_threads(1)
        hidden = torch.randn(8192, 64, requires_grad=True)
        weight = torch.randn(32000, 64) * 0.1
        targets = torch.randint(0, 32000, (8192,))
        before = peak_rss()
        if sys.argv[1] == "plain":
            loss = F.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
        else:
            loss = linear_cross_entropy(hidden, weight, None, targets, 256)
        loss.backward()
        print((peak_rss() - before) / 2**20)
    """)
    growth = {}
    for mode in ("plain", "chunked"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        growth[mode] = float(out.stdout.strip().splitlines()[-1])
    assert growth["plain"] > 1500  # MiB: logits, log-probabilities, their gradient
    assert growth["chunked"] < 120
