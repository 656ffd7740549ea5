"""Packing: several samples per row, each one still seeing only itself.

Rows are built with best-fit-decreasing bin packing (bins of `data.cutoff_len` tokens). A
micro-batch is then flattened into ONE row with no padding at all: position ids restart at 0
for every sample, the first label of every sample is -100 (nothing in the row may predict it
from the previous sample), and attention is confined to each sample:

- on CUDA with flash-attn installed, transformers' `flash_attention_2` reads the varlen
  boundaries (`cu_seq_lens_q/k`, `max_length_q/k`) the collator supplies;
- everywhere else (CPU, MPS, CUDA without flash-attn) the model uses the `ducktune_varlen`
  attention registered here through transformers' AttentionInterface: per-sample causal SDPA on
  each sample's slice, so no [tokens x tokens] mask is built or stored and no work is spent on
  cross-sample scores.
  Sliding-window layers (Gemma 3, Phi-3, Mistral v0.1, Command R7B) get the window within each
  sample: a sample no longer than the window is plain causal, a longer one gets a banded mask.

`verify_isolation` proves it on the model being trained before training starts: the hidden
states of samples packed together must equal those of each sample run alone through the model's
own attention. When it fails (or the architecture cannot use it), training falls back to
length-grouped padded batches.
"""

from __future__ import annotations

import bisect
import contextlib
from dataclasses import dataclass

from ducktune.data.template import IGNORE_INDEX
from ducktune.train.loss import unwrap_peft

VARLEN_ATTENTION = "ducktune_varlen"


# ----------------------------------------------------------------------------- bin packing

def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins whose lengths sum to at most `capacity`.

    Longest items first; each goes into the fullest bin it still fits in (a new bin if none).
    Deterministic: ties keep the original order. Items longer than `capacity` get a bin alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # Open bins sorted by (free space, bin number): the best fit is the first with enough room.
    free: list[tuple[int, int]] = []
    for i in order:
        size = lengths[i]
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, b = free.pop(at)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        left = room - size
        if left > 0:
            bisect.insort(free, (left, b))
    return bins


class ListDataset:
    """One tokenized sample per row (a map-style dataset for the Trainer)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


class PackedDataset:
    """Training rows made of several tokenized samples each (a map-style dataset for the Trainer)."""

    def __init__(self, samples: list[dict], capacity: int):
        self.samples = samples
        self.capacity = capacity
        self.bins = best_fit_decreasing([len(s["input_ids"]) for s in samples], capacity)

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int) -> dict:
        return {"samples": [self.samples[i] for i in self.bins[index]]}

    def fill_ratio(self) -> float:
        used = sum(len(s["input_ids"]) for s in self.samples)
        return used / (len(self.bins) * self.capacity) if self.bins else 0.0


# ----------------------------------------------------------------------------- collation

@dataclass
class VarlenCollator:
    """Flatten a micro-batch (samples, or packed rows of samples) into one row without padding.

    Returns input_ids/labels/position_ids of shape [1, tokens] and the varlen boundaries
    (`cu_seq_lens_q/k`, `max_length_q/k`) that flash-attention and `ducktune_varlen` use.
    """

    def __call__(self, features: list[dict]) -> dict:
        import torch

        samples = [s for f in features for s in f.get("samples", [f])]
        input_ids, labels, positions, bounds = [], [], [], [0]
        for sample in samples:
            ids = list(sample["input_ids"])
            lab = list(sample["labels"])
            lab[0] = IGNORE_INDEX  # nothing predicts a sample's first token; never the previous sample
            input_ids += ids
            labels += lab
            positions += range(len(ids))
            bounds.append(bounds[-1] + len(ids))
        cu = torch.tensor(bounds, dtype=torch.int32)
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
        }


# ----------------------------------------------------------------------------- attention

def _segments(position_ids, row: int) -> list[tuple[int, int]]:
    """(start, end) of every sample in one row: a sample starts where the position id does not grow by 1."""
    import torch

    pos = position_ids[row]
    starts = torch.nonzero(torch.diff(pos, prepend=pos[:1] - 2) != 1).flatten().tolist()
    return list(zip(starts, starts[1:] + [pos.shape[0]]))


def varlen_sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA, except on full forwards (no mask, no cache): then causal SDPA per sample slice.

    query/key/value: [batch, heads, tokens, head_dim]. Returns [batch, tokens, heads, head_dim]
    like transformers' own attention functions.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_q = kwargs.pop("cu_seq_lens_q", None)
    position_ids = kwargs.pop("position_ids", None)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(name, None)
    full_forward = attention_mask is None and query.shape[2] == key.shape[2] and query.shape[2] > 1
    if not full_forward or (cu_q is None and position_ids is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if kwargs.get("s_aux") is not None:  # gpt-oss's sinks: SDPA would drop them without a word
        raise ValueError("ducktune_varlen attention does not implement attention sinks")
    window = kwargs.pop("sliding_window", None)
    rows = []
    with per_sample_backends(query):
        for row in range(query.shape[0]):
            rows.append(_row_attention(module, query, key, value, row, cu_q, position_ids, window, kwargs))
    return (rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)), None


# PyTorch prefers its cuDNN attention on Hopper and Blackwell GPUs (sm90 / sm100 with cuDNN above 9.15, which the
# wheels bundle since torch 2.11: check_prefer_cudnn_attention), and cuDNN builds an execution graph for each new
# problem shape (tens to hundreds of ms on the host). Packed rows give nearly every sample a length of its own, so
# the per-sample calls ask for the kernels that need no per-shape build. An H100 (2026-12-05) trained packed Gemma 3
# rows at a quarter of the padded speed, which this would explain; not yet measured with it (bench/window_probe.py
# compares both). Empty: PyTorch's own choice.
CUDA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")


def per_sample_backends(query):
    """The SDPA backends the per-sample calls may use: CUDA_BACKENDS on a CUDA tensor, anything elsewhere."""
    if not query.is_cuda or not CUDA_BACKENDS:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, name) for name in CUDA_BACKENDS])


def _row_attention(module, query, key, value, row: int, cu_q, position_ids, window, kwargs):
    """One row's attention, sample by sample: [1, tokens, heads, head_dim]."""
    import torch

    if cu_q is not None and query.shape[0] == 1:
        bounds = cu_q.tolist()
        spans = list(zip(bounds, bounds[1:]))
    else:
        spans = _segments(position_ids.expand(query.shape[0], -1), row)
    # split, not one slice per sample: split's backward concatenates the samples' gradients
    # once, where each slice's backward fills a zero tensor of the whole row (samples x tokens).
    sizes = [b - a for a, b in spans]
    q, k, v = ((t if t.shape[0] == 1 else t[row:row + 1]).split(sizes, dim=2) for t in (query, key, value))
    parts = [_sample_attention(module, qs, ks, vs, window, kwargs) for qs, ks, vs in zip(q, k, v)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _sample_attention(module, query, key, value, window: int | None, kwargs: dict):
    """Causal SDPA over one sample, within a sliding window when the layer has one: as transformers'
    sliding_window_overlay, a query sees the `window` keys up to itself. A sample no longer than the
    window is plainly causal (no mask built); a longer one gets a [tokens x tokens] banded mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n = query.shape[2]
    if not window or n <= window:
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)[0]
    return sdpa_attention_forward(module, query, key, value, _band_mask(n, window, query.dtype, query.device),
                                  **kwargs)[0]


_BAND_MASKS: dict = {}  # (window, dtype, device) -> the largest band mask built so far


def _band_mask(n: int, window: int, dtype, device):
    """[1, 1, n, n] additive mask (0 inside the band, -inf outside) of a sliding window over a sample of n tokens.
    The band depends only on query - key, so every length's mask is the top-left corner of the longest one: one
    tensor per window (grown in steps of 256 tokens, which keeps its rows aligned for CUDA's kernels), and each call
    a view of it. So all layers and samples share one tensor, kept once for backward, where a mask per sample and
    layer would be rebuilt and kept per call (16 MB each for a 2,048-token sample); additive in the query's dtype,
    since a boolean mask is converted to a new float one inside each call."""
    import torch

    key = (window, dtype, device)
    full = _BAND_MASKS.get(key)
    if full is None or full.shape[-1] < n:
        size = -(-n // 256) * 256
        index = torch.arange(size, device=device)
        offset = index[:, None] - index[None, :]  # query - key
        band = (offset >= 0) & (offset < window)
        full = _BAND_MASKS[key] = torch.zeros((size, size), dtype=dtype, device=device).masked_fill_(~band, float("-inf"))
    return full[:n, :n][None, None]


def varlen_mask(*, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0, attention_mask=None, **kwargs):
    """No mask for full forwards without padding (the attention splits samples itself and applies a sliding
    window in each); sdpa's otherwise, and for chunked attention (Llama 4's `local_size` is its chunk)."""
    from transformers.masking_utils import sdpa_mask

    local = kwargs.get("local_size")
    sliding = local == getattr(kwargs.get("config"), "sliding_window", None)
    if attention_mask is None and q_offset == 0 and kv_offset == 0 and q_length == kv_length and (not local or sliding):
        return None
    return sdpa_mask(q_length=q_length, kv_length=kv_length, q_offset=q_offset, kv_offset=kv_offset,
                     attention_mask=attention_mask, **kwargs)


def register_varlen_attention() -> None:
    """Make `ducktune_varlen` a valid attention implementation (transformers' documented extension point)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_ATTENTION, varlen_sdpa_attention)
    AttentionMaskInterface.register(VARLEN_ATTENTION, varlen_mask)


def flash_attention_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


# What the packed path's per-sample SDPA cannot compute, known from the config: Gemma 2 soft-caps its attention
# scores (SDPA has no soft-capping), gpt-oss adds learned sinks to each softmax. Both also have sliding layers, which
# packing handles (the window is applied within each sample).
SOFTCAP_BLOCKER = "the model soft-caps its attention scores (Gemma 2), which the packed attention does not"
SINKS_BLOCKER = "the model's attention sinks (gpt-oss) are not part of the packed attention"
SINK_MODELS = {"gpt_oss"}
# LFM2's short convolutions read the previous conv_L_cache - 1 tokens of the row, and transformers'
# conv path has no per-sample reset: in a packed row each sample would start from its neighbour's
# tokens. Random stand-in weights make that leak too small for the numeric proof, so it is structural.
SHORT_CONV_BLOCKER = "the model's short-convolution layers (LFM2) would read across sample boundaries"
# Granite 4.0-H's Mamba-2 layers carry an SSM state and a causal conv along the row; transformers' torch path
# has no per-sample reset (and the proof's leak, ~4e-2 relative on the stand-in, is under the bfloat16
# tolerance): structural, like LFM2's. transformers 5 calls them linear_attention, as Qwen3.5's DeltaNet.
MAMBA_BLOCKER = ("the model's Mamba-2 layers (Granite 4.0-H, Falcon-H1, Nemotron-H) would carry their state across "
                 "sample boundaries")
MAMBA_HYBRIDS = {"granitemoehybrid", "nemotron_h"}
# Nemotron-H's published layer kinds: one letter per layer (M Mamba-2, * attention, - MLP, E MoE); transformers 5
# saves them as layers_block_type
NEMOTRON_H_LETTERS = {"M": "mamba", "*": "full_attention", "-": "mlp", "E": "moe"}
# models with a Mamba-2 mixer in every layer, whatever their layer kinds say (Falcon-H1's are all "hybrid", a
# read-only property its published config.json leaves out)
MAMBA_EVERY_LAYER = {"falcon_h1"}


# On CUDA (without flash-attn), samples longer than the sliding window go through SDPA with a banded mask each. At
# Gemma 3 1B's shape on an H100 that trained at 0.24x the tokens/s of padded batches (bench/window_speed.py,
# 2026-12-05; the CPU is not affected), so such runs train on padded batches there unless train.packing=on. The
# likely cause (cuDNN's per-shape graphs) is avoided since by per_sample_backends, not yet measured on a GPU.
CUDA_BAND_BLOCKER = ("on CUDA, samples longer than the model's {window}-token sliding window train about 4x slower "
                     "packed than in padded batches (bench/RESULTS.md, window block)")


def config_sliding_window(config: dict) -> int | None:
    """The sliding window (tokens) of a config's windowed attention layers, or None when no layer has one (a
    published config.json, or a transformers config's keys; a multimodal one's text_config). Layer kinds say which
    layers slide (Gemma 3: five of six); without them a set window applies to every layer (Mistral v0.1, Phi-3)
    unless use_sliding_window turns it off (older Qwen2 configs)."""
    text = config.get("text_config") or config
    window = text.get("sliding_window")
    if not window or text.get("use_sliding_window") is False:
        return None
    kinds = text.get("layer_types")
    return int(window) if kinds is None or "sliding_attention" in kinds else None


def sliding_window(model) -> int | None:
    """config_sliding_window of a loaded model."""
    text = unwrap_peft(model).config.get_text_config()
    return config_sliding_window({key: getattr(text, key, None)
                                  for key in ("sliding_window", "use_sliding_window", "layer_types")})


def cuda_band_blocker(window: int | None, device: str, longest_sample: int | None) -> str | None:
    """Why the packed path would be slow here (see CUDA_BAND_BLOCKER), or None: on CUDA through ducktune_varlen
    (flash-attn applies windows itself) when some sample is longer than the sliding window. The one test for both
    the loaded model (choose_batching) and its config.json (expected_batching, for the memory plan)."""
    if (device != "cuda" or not window or not longest_sample or longest_sample <= window
            or flash_attention_available()):
        return None
    return CUDA_BAND_BLOCKER.format(window=window)


def longest_sample_tokens(rows: list[dict]) -> int:
    """Tokens in the longest of the tokenized samples (0 for none): what cuda_band_blocker compares the window with."""
    return max((len(row["input_ids"]) for row in rows), default=0)


def layer_blocker(config: dict) -> str | None:
    """Why the layer kinds or the attention of this config (transformers' or as published) rule out packed rows,
    or None. Sliding-window layers do not: the packed attention applies the window within each sample."""
    kinds = set(config.get("layer_types") or config.get("layers_block_type")
                or [NEMOTRON_H_LETTERS.get(letter, letter) for letter in config.get("hybrid_override_pattern") or ""])
    attention_layers = config.get("full_attn_idxs")  # LFM2's published form: the others are conv layers
    if not kinds and attention_layers is not None and len(attention_layers) < int(config.get("num_hidden_layers") or 0):
        kinds.add("conv")
    if config.get("attn_logit_softcapping"):
        return SOFTCAP_BLOCKER
    if config.get("model_type") in SINK_MODELS:
        return SINKS_BLOCKER
    if "conv" in kinds:
        return SHORT_CONV_BLOCKER
    if ("mamba" in kinds or (config.get("model_type") in MAMBA_HYBRIDS and "linear_attention" in kinds)
            or config.get("model_type") in MAMBA_EVERY_LAYER):
        return MAMBA_BLOCKER
    return None


def varlen_blockers(model) -> str | None:
    """Why this model cannot train on flattened varlen rows (None when it can)."""
    inner = unwrap_peft(model)
    keys = ("layer_types", "full_attn_idxs", "num_hidden_layers", "model_type", "attn_logit_softcapping")
    # a multimodal model's layer kinds are its language model's (Gemma 4: text_config.layer_types)
    text = inner.config.get_text_config()
    blocker = layer_blocker({key: getattr(text, key, None) for key in keys})
    if blocker:
        return blocker
    if not type(inner).__module__.startswith("transformers."):
        return "the model's code is not part of transformers (trust_remote_code)"
    if not inner._can_set_attn_implementation():
        return "the model does not use transformers' attention interface"
    return None


def use_varlen_attention(model, device: str) -> str:
    """Switch the model to a varlen-capable attention; returns the implementation it had before."""
    inner = unwrap_peft(model)
    previous = inner.config._attn_implementation
    wanted = "flash_attention_2" if device == "cuda" and flash_attention_available() else VARLEN_ATTENTION
    if wanted == VARLEN_ATTENTION:
        register_varlen_attention()
    if previous != wanted:
        inner.set_attn_implementation(wanted)
    return previous


def restore_attention(model, implementation: str) -> None:
    inner = unwrap_peft(model)
    if inner.config._attn_implementation != implementation:
        inner.set_attn_implementation(implementation)


# ----------------------------------------------------------------------------- proof on the real model

def verify_isolation(model, forward_hidden, lengths=(7, 5, 9), seed: int = 0, reference: str | None = None) -> float:
    """Largest relative difference between samples run packed in one row and each run alone.

    `forward_hidden(model, batch) -> [1, tokens, hidden]` is the exact call training makes.
    Leakage across samples (attention, positions) shows up as an O(1) difference; a correct
    implementation differs only by rounding. `reference`: the attention implementation the samples
    run alone with (the model's own, which the packed one is switched from), so the packed path is
    also checked against what the model computes without it (a sliding window, a score transform).
    """
    import torch

    vocab = model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(seed)
    device = model.get_input_embeddings().weight.device
    samples = [{"input_ids": torch.randint(0, min(vocab, 1000), (n,), generator=generator).tolist(),
                "labels": [IGNORE_INDEX] * n} for n in lengths]
    collate = VarlenCollator()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = forward_hidden(model, _to(collate([{"samples": samples}]), device))[0].float()
            packed_with = unwrap_peft(model).config._attn_implementation
            if reference is not None:
                restore_attention(model, reference)
            try:
                alone = torch.cat([forward_hidden(model, _to(collate([s]), device))[0].float() for s in samples])
            finally:
                restore_attention(model, packed_with)
    finally:
        model.train(was_training)
    scale = alone.abs().max().clamp_min(1e-6)
    return float((packed - alone).abs().max() / scale)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- the choice

@dataclass
class Batching:
    """How rows are formed and collated for this run.

    packed:       best-fit-decreasing rows of up to cutoff_len tokens, flattened per micro-batch
    padding-free: one sample per row, each micro-batch flattened into one row (no padding)
    padded:       one sample per row, padded to the longest of a length-grouped micro-batch
    """

    mode: str
    reason: str
    previous_attention: str

    def dataset(self, rows: list[dict], cutoff: int):
        return PackedDataset(rows, cutoff) if self.mode == "packed" else ListDataset(rows)

    def collator(self, pad_token_id: int):
        from ducktune.train.collator import PaddingCollator

        return PaddingCollator(pad_token_id, pad_to_multiple_of=8) if self.mode == "padded" else VarlenCollator()


def config_packing_blocker(model_config: dict, trust_remote_code: bool) -> str | None:
    """Why packing cannot work for this model, known from config.json alone (None: only the proof on
    the loaded model can tell): lets train.packing=on be refused before anything is written."""
    blocker = layer_blocker(model_config)
    if blocker:
        return blocker
    if trust_remote_code and model_config.get("auto_map"):
        return "the model's code is not part of transformers (trust_remote_code)"
    return None


def packing_on_error(blocker: str) -> str:
    return f"train.packing=on: cannot pack for this model: {blocker}; set train.packing=auto or off"


def expected_batching(model_config: dict, packing: str, trust_remote_code: bool, device: str = "cpu",
                      longest_sample: int | None = None) -> str:
    """The mode choose_batching is expected to pick, from config.json alone (before the model
    is loaded, for the memory plan): padded for attention the packed path lacks, short convolutions, Mamba
    layers or remote code, or on CUDA without flash-attn for a sample longer than the sliding window
    (CUDA_BAND_BLOCKER, unless packing is on); else packed (padding-free with train.packing=off). The proof on
    the loaded model can still fall back to padded; the recipe then plans again."""
    if config_packing_blocker(model_config, trust_remote_code):
        return "padded"
    if packing != "on" and cuda_band_blocker(config_sliding_window(model_config), device, longest_sample):
        return "padded"
    return "padding-free" if packing == "off" else "packed"


# Relative difference above which packed and separate samples do not agree (rounding is ~1e-6
# in fp32 and ~1e-2 in half precision; leakage is of order 1).
ISOLATION_TOLERANCE = {"float32": 1e-4, "float16": 3e-2, "bfloat16": 6e-2}


def choose_batching(model, packing: str, device: str, log=print, longest_sample: int | None = None) -> Batching:
    """packing: auto | on | off (train.packing). Switches the model to varlen attention and
    proves isolation on it; falls back to padded batches (or refuses, for 'on') when it fails.
    `longest_sample` (tokens; the recipe passes its data's): on CUDA, packing that would be slow for it (a
    sample longer than the sliding window, CUDA_BAND_BLOCKER) gives padded batches too, except with 'on'."""
    from ducktune.errors import ConfigError
    from ducktune.train.loss import forward_hidden

    inner = unwrap_peft(model)
    previous = inner.config._attn_implementation
    blocker = varlen_blockers(model)
    if blocker is None:
        use_varlen_attention(model, device)
        dtype = str(inner.dtype).removeprefix("torch.")
        try:
            difference = verify_isolation(model, forward_hidden, reference=previous)
        except Exception as exc:  # an architecture whose decoder rejects varlen inputs
            difference, blocker = float("inf"), f"the model rejected packed inputs ({type(exc).__name__}: {exc})"
        if difference > ISOLATION_TOLERANCE.get(dtype, 1e-4):
            blocker = blocker or f"packed samples did not match separate ones on this model (difference {difference:.1e})"
        elif slow := cuda_band_blocker(sliding_window(model), device, longest_sample):
            if packing == "on":  # the user's choice: exact, only slower
                log(f"Packing on as set, although {slow}")
            else:
                blocker = slow
        if blocker is not None:
            restore_attention(model, previous)
    if blocker is not None:
        if packing == "on":
            raise ConfigError(packing_on_error(blocker))
        if packing == "auto":
            log(f"Packing off: {blocker}; using length-grouped padded batches")
        return Batching("padded", blocker, previous)
    if packing == "off":
        return Batching("padding-free", "train.packing=off: one sample per row, batches without padding", previous)
    return Batching("packed", "samples packed into rows, attention proven confined to each sample", previous)
