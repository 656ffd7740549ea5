"""The addmm LoRA layer: the same outputs and gradients as PEFT's own layer, PEFT's forward wherever
the fast path does not apply, and PEFT's save/merge/adapter switching unchanged."""

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from ducktune.train.lora_addmm import AddmmLoraLinear, addmm_layers_apply, register_addmm_layers


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(24, 40, bias=True)
        self.down = nn.Linear(40, 24, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def build(addmm: bool, dropout: float = 0.0, use_dora: bool = False):
    torch.manual_seed(0)
    config = PeftLoraConfig(r=4, lora_alpha=12, lora_dropout=dropout, target_modules=["up", "down"],
                            init_lora_weights=False, use_dora=use_dora)  # B random: the adapter term is not 0
    if addmm:
        register_addmm_layers(config)
    return get_peft_model(TwoLinears(), config)


def assert_same_up_to_rounding(actual, expected):
    """Equal within float32 rounding of the tensor's own scale (sums in another order differ in the last bits)."""
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max(), (actual - expected).abs().max()


def forward_backward(model, x, seed=1):
    torch.manual_seed(seed)  # the same dropout masks on both sides
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(2, 7, 24), (5, 24)])
def test_same_outputs_and_gradients_as_peft(dropout, shape):
    stock, fused = build(False, dropout), build(True, dropout)
    assert type(fused.base_model.model.up) is AddmmLoraLinear and type(stock.base_model.model.up) is PeftLoraLinear
    x = torch.randn(*shape)
    out_s, gx_s, grads_s = forward_backward(stock, x)
    out_f, gx_f, grads_f = forward_backward(fused, x)
    assert out_f.shape == out_s.shape
    assert_same_up_to_rounding(out_f, out_s)
    assert_same_up_to_rounding(gx_f, gx_s)
    assert sorted(grads_f) == sorted(grads_s) and len(grads_f) == 4  # lora_A and lora_B of both layers
    for name in grads_s:
        assert_same_up_to_rounding(grads_f[name], grads_s[name])


def calls_to_peft_forward(model, x, monkeypatch):
    """How many layers went to PEFT's forward (the fallback) in one forward of `model`."""
    calls = []
    original = PeftLoraLinear.forward
    monkeypatch.setattr(PeftLoraLinear, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    model(x)
    return len(calls)


def test_fast_path_taken_only_where_it_is_plain(monkeypatch):
    fused, stock = build(True), build(False)
    x = torch.randn(3, 24)
    assert calls_to_peft_forward(fused, x, monkeypatch) == 0  # both layers on the addmm path
    with fused.disable_adapter():  # adapters off: PEFT's forward, which returns the base alone
        assert calls_to_peft_forward(fused, x, monkeypatch) == 2
        torch.testing.assert_close(fused(x), fused.base_model.model.down(torch.relu(fused.base_model.model.up.base_layer(x))))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert calls_to_peft_forward(fused, x, monkeypatch) == 2
    layer = fused.base_model.model.up
    assert layer.fast_path_adapter(x.to(torch.bfloat16), (), {}) is None  # input dtype differs from the adapter's
    assert layer.fast_path_adapter(x, (), {"adapter_names": ["default"] * 3}) is None
    fused.merge_adapter()
    assert layer.fast_path_adapter(x, (), {}) is None
    fused.unmerge_adapter()
    assert layer.fast_path_adapter(x, (), {}) == "default"
    assert_same_up_to_rounding(fused(x), stock(x))


def test_dora_keeps_peft_forward(monkeypatch):
    fused, stock = build(True, use_dora=True), build(False, use_dora=True)
    x = torch.randn(3, 24)
    assert calls_to_peft_forward(fused, x, monkeypatch) == 2
    torch.testing.assert_close(fused(x), stock(x))


def test_second_adapter_switching_and_merge_match_peft():
    fused, stock = build(True), build(False)
    for model in (fused, stock):
        torch.manual_seed(5)
        model.add_adapter("other", PeftLoraConfig(r=2, lora_alpha=2, target_modules=["up"], init_lora_weights=False))
    x = torch.randn(4, 24)
    for adapter in ("other", "default"):
        fused.set_adapter(adapter), stock.set_adapter(adapter)
        assert_same_up_to_rounding(fused(x), stock(x))
    merged_f, merged_s = fused.merge_and_unload(), stock.merge_and_unload()
    assert type(merged_f.up) is nn.Linear
    assert_same_up_to_rounding(merged_f(x), merged_s(x))


def test_saved_adapter_is_plain_peft(tmp_path):
    """The layer class is not written anywhere: a saved adapter loads into stock PEFT and answers the same."""
    from peft import PeftModel

    fused = build(True)
    fused.save_pretrained(tmp_path / "adapter")
    text = (tmp_path / "adapter" / "adapter_config.json").read_text()
    assert "custom" not in text.lower() and "Addmm" not in text
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(TwoLinears(), str(tmp_path / "adapter"))
    assert type(loaded.base_model.model.up) is PeftLoraLinear
    x = torch.randn(3, 24)
    assert_same_up_to_rounding(loaded(x), fused(x))


def test_quantized_or_subclassed_linears_are_left_to_peft():
    class FourBitLike(nn.Linear):  # what bitsandbytes' Linear4bit is to the dispatch: an nn.Linear subclass
        pass

    plain = TwoLinears()
    assert addmm_layers_apply(plain)
    subclassed = TwoLinears()
    subclassed.up = FourBitLike(24, 40)
    assert not addmm_layers_apply(subclassed)
    quantized = TwoLinears()
    quantized.hf_quantizer = object()
    assert not addmm_layers_apply(quantized)


def test_attach_lora_uses_addmm_on_plain_models_and_bitsandbytes_layers_on_4bit(tiny_llama):
    """The recipe's own attach: plain linears get AddmmLoraLinear (and lora.fused=false PEFT's class);
    a 4-bit model (real bitsandbytes layers, nn.Linear subclasses) keeps PEFT's bitsandbytes LoRA class."""
    from peft.tuners.lora.bnb import Linear4bit as PeftLinear4bit

    from ducktune.config import LoraConfig
    from ducktune.models.device import placement_for
    from ducktune.models.loading import load_model
    from ducktune.train.lora import attach_lora

    def lora_layer_types(quantize_4bit: bool, fused: bool = True):
        model = load_model(tiny_llama, placement_for("cpu", "float32"), quantize_4bit=quantize_4bit)
        model, _ = attach_lora(model, LoraConfig(r=4, alpha=8, fused=fused))
        return {type(m) for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}

    assert lora_layer_types(False) == {AddmmLoraLinear}
    assert lora_layer_types(False, fused=False) == {PeftLoraLinear}
    assert lora_layer_types(True) == {PeftLinear4bit}


def test_a_continued_adapter_trains_on_addmm_layers_with_its_saved_weights(tiny_llama, tmp_path):
    """model.adapter (continue training, and the DPO reference copy): the saved adapter's own config,
    routed to AddmmLoraLinear; the loaded weights are the saved ones, both adapters answer as saved."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import REFERENCE_ADAPTER, attach_lora

    torch.manual_seed(0)
    first, _ = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=4, alpha=8))
    with torch.no_grad():
        for name, param in first.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a trained-looking adapter: its term is not 0
    first.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    expected = first(input_ids=ids).logits

    continued, targets = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=8, alpha=16),
                                     start_from=str(tmp_path / "adapter"), reference_copy=True)
    layers = [m for m in continued.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert layers and {type(m) for m in layers} == {AddmmLoraLinear}
    assert {m.r["default"] for m in layers} == {4}  # the saved adapter's rank, not the config's 8
    assert all(REFERENCE_ADAPTER in m.lora_A for m in layers)
    assert_same_up_to_rounding(continued(input_ids=ids).logits, expected)
    continued.set_adapter(REFERENCE_ADAPTER)
    assert_same_up_to_rounding(continued(input_ids=ids).logits, expected)


def test_a_frozen_reference_adapter_is_not_counted_as_base_weights(tiny_qwen, tmp_path):
    """DPO on model.adapter keeps a frozen `reference` copy of the adapter: its lora_A/lora_B are adapter
    weights, not base weights left unadapted (training warned 'Not adapted ... lora_A.reference.weight')."""
    from transformers import AutoModelForCausalLM

    from ducktune.config import LoraConfig
    from ducktune.train.lora import attach_lora, unadapted_note, unadapted_weights

    first, _ = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraConfig(r=4, alpha=8))
    first.save_pretrained(tmp_path / "adapter")
    continued, _ = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraConfig(r=4, alpha=8),
                               start_from=str(tmp_path / "adapter"), reference_copy=True)
    left, total = unadapted_weights(continued)
    assert left == {} and total > 0
    assert unadapted_note(continued) is None
