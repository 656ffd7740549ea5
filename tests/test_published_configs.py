"""Real published config.json files (tests/data/published_configs, sources in its README.md) through the
export code: what the tiny stand-ins cannot show (real head counts, rope kinds, tied heads, transformers 5
re-saves). Per config: no refusal, hyper-parameters as the config (and transformers' config class) say,
a GGUF name for every tensor transformers builds from it (on the meta device: no memory), and training
support."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ducktune.export import gguf_arch
from ducktune.models.loading import training_support

DATA = Path(__file__).parent / "data" / "published_configs"
CONFIGS = sorted(DATA.glob("*.json"))
# file stem -> the refusal architecture_support must give (documented in the folder's README.md)
EXPECTED_REFUSALS: dict[str, str] = {}


class RecordingWriter:
    """Stands in for gguf.GGUFWriter: records every add_* call (as tests/test_gguf_arch.py's)."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, method):
        def record(*args):
            self.calls[args[0].split(".", 1)[1] if len(args) == 2 else method.removeprefix("add_")] = args[-1]
        return record


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def hf_config(config: dict):
    """transformers' own config object for the file, as from_pretrained reads it."""
    from transformers import AutoConfig

    keys = {key: value for key, value in config.items() if key not in ("auto_map", "model_type")}
    return AutoConfig.for_model(config["model_type"], **keys)


def meta_shapes(config) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the weights transformers builds for `config`, without allocating them."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def test_there_are_published_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_published_config_support(path):
    config = load(path)
    assert gguf_arch.architecture_support(config) == EXPECTED_REFUSALS.get(path.stem)
    assert training_support(config) is None


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem not in EXPECTED_REFUSALS], ids=lambda path: path.stem)
def test_published_config_hparams(path):
    config = load(path)
    hf = hf_config(config)
    arch = gguf_arch.gguf_arch(config)
    writer = RecordingWriter()
    gguf_arch.add_hparams(writer, config, arch)
    calls = writer.calls
    assert calls["block_count"] == hf.num_hidden_layers
    assert calls["embedding_length"] == hf.hidden_size
    assert calls["feed_forward_length"] == hf.intermediate_size
    assert calls["head_count"] == hf.num_attention_heads
    assert calls["head_count_kv"] == hf.num_key_value_heads
    assert calls["context_length"] == hf.max_position_embeddings
    rope = getattr(hf, "rope_parameters", None) or {}
    rope = rope.get("full_attention", rope)
    assert calls["rope_freq_base"] == pytest.approx(float(rope.get("rope_theta", getattr(hf, "rope_theta", 0))))
    head = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    assert calls.get("key_length", head) == head and calls.get("value_length", head) == head
    assert calls.get("rope_dimension_count", head) == head


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem not in EXPECTED_REFUSALS], ids=lambda path: path.stem)
def test_published_config_tensor_plan(path):
    config = load(path)
    hf = hf_config(config)
    shapes = meta_shapes(hf)
    plans = gguf_arch.plan_from_shapes(shapes, config, "f16", where=path.stem)
    names = [plan.gguf_name for plan in plans]
    assert len(names) == len(set(names)), "two weights map to one GGUF name"
    tied = hf.tie_word_embeddings if hasattr(hf, "tie_word_embeddings") else hf.get_text_config().tie_word_embeddings
    weights = [name for name in shapes if not (tied and name == "lm_head.weight")]
    computed = [plan for plan in plans if plan.hf_name is None]
    assert sorted(plan.hf_name for plan in plans if plan.hf_name) == sorted(weights)
    assert ("output.weight" in names) == (not tied)
    rope_kind = gguf_arch.rope_params(config)["rope_type"]
    assert [plan.gguf_name for plan in computed] == (["rope_freqs.weight"] if rope_kind == "llama3" else [])
    per_layer = [name for name in names if name.startswith("blk.")]
    assert {int(name.split(".")[1]) for name in per_layer} == set(range(hf.num_hidden_layers))
