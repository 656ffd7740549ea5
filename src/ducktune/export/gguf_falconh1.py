"""llama.cpp's `falcon-h1` architecture: Falcon-H1 (FalconH1ForCausalLM: Falcon-H1-0.5B / 1.5B / 1.5B-Deep / 3B /
7B / 34B, Base and Instruct).

Learned from llama.cpp's loader and graph (src/models/falcon-h1.cpp on mamba-base.cpp's Mamba-2 layer) and how its
converter writes FalconH1ForCausalLM (conversion/falcon_h1.py on conversion/mamba.py's Mamba-2):

- Every layer runs a Mamba-2 mixer and attention side by side on the same normed input and adds both outputs to
  the residual, then a SwiGLU MLP. The Mamba-2 tensors are written as for Granite 4.0-H (gguf_mamba2: A_log ->
  -exp, D and A as [heads, 1], dt_bias, conv1d squeezed, the optional gated norm per group, all F32); the inner
  size is mamba_d_ssm (or expand x hidden) and need not be twice the hidden size here.
- llama.cpp's graph has none of Falcon-H1's muP multipliers: each is folded into the weight it follows, as the
  converter does. embed_tokens x embedding_multiplier; lm_head x lm_head_multiplier; q/v_proj x
  attention_in_multiplier and k_proj x attention_in_multiplier x key_multiplier (the attention input is scaled,
  and keys once more); o_proj x attention_out_multiplier; gate_proj x mlp_multipliers[0] (inside the SiLU),
  down_proj x mlp_multipliers[1]; out_proj x ssm_out_multiplier; in_proj x ssm_in_multiplier and, per output row,
  the muP vector of ssm_multipliers over its [z; x; B; C; dt] blocks (transformers' compute_mup_vector). Export
  reads the merged weights, so LoRA deltas are merged before any multiplier is folded.
- Rope is rotate-half (llama.cpp's NEOX for falcon-h1): q/k rows are written as they are.
- Refused in one line: the Mamba-2 limits (gguf_mamba2.mixer_problem), a gated norm applied before the gate
  (transformers' mamba_norm_before_gate with mamba_rms_norm; llama.cpp gates first), linear biases (the graph
  loads no in/out projection bias, and ducktune folds multipliers into weights only), tied embeddings (llama.cpp
  would reuse the embedding already scaled by embedding_multiplier as the output).
"""

from __future__ import annotations

from collections.abc import Callable

from ducktune.export import gguf_mamba2

ARCH = "falcon-h1"
# bias flags of FalconH1Config (attention, MLP, Mamba in_proj, Mamba out_proj)
BIAS_KEYS = ("attention_bias", "mlp_bias", "mamba_proj_bias", "projectors_bias")
# weight name part -> the config multipliers folded into it (their product)
SCALAR_FOLDS = {
    "embed_tokens.": ("embedding_multiplier",),
    "lm_head.": ("lm_head_multiplier",),
    ".q_proj.": ("attention_in_multiplier",),
    ".k_proj.": ("attention_in_multiplier", "key_multiplier"),
    ".v_proj.": ("attention_in_multiplier",),
    ".o_proj.": ("attention_out_multiplier",),
    ".mamba.out_proj.": ("ssm_out_multiplier",),
}
MLP_FOLDS = {".gate_proj.": 0, ".down_proj.": 1}  # index into mlp_multipliers


def falconh1_support(config: dict, name: str) -> str | None:
    """None when llama.cpp's falcon-h1 runs this config as transformers does, else a one-line reason."""
    if reason := gguf_mamba2.mixer_problem(config, ARCH):
        return f"GGUF export of {name}: {reason}"
    if config.get("mamba_rms_norm") and config.get("mamba_norm_before_gate", True):
        return (f"GGUF export of {name}: mamba_rms_norm with mamba_norm_before_gate true normalizes before the "
                "gate; llama.cpp's Mamba-2 gates first")
    if biased := [key for key in BIAS_KEYS if config.get(key)]:
        return f"GGUF export of {name}: {', '.join(biased)} true; ducktune folds Falcon-H1's multipliers into weights only"
    if config.get("tie_word_embeddings"):
        return (f"GGUF export of {name}: tie_word_embeddings true; llama.cpp would reuse the embedding scaled by "
                "embedding_multiplier as the output")
    if len(config.get("ssm_multipliers") or [1.0] * 5) != 5 or len(config.get("mlp_multipliers") or [1.0] * 2) != 2:
        return f"GGUF export of {name}: ssm_multipliers must list 5 values and mlp_multipliers 2"
    return None


def add_falconh1_hparams(put, config: dict) -> None:
    """The Mamba-2 `ssm.*` keys (the attention keys are the common ones)."""
    gguf_mamba2.add_ssm_hparams(put, config)


def _multiplier(config: dict, key: str) -> float:
    """A FalconH1Config multiplier, 1.0 (its default) when absent."""
    value = config.get(key)
    return 1.0 if value is None else float(value)


def mup_vector(config: dict):
    """transformers' compute_mup_vector: one factor per in_proj output row, ssm_multipliers over [z; x; B; C; dt]
    (z and x d_inner rows each, B and C groups x state rows, dt one per head)."""
    import numpy as np

    inner, heads, _, groups = gguf_mamba2.mamba_dims(config)
    state = groups * int(config.get("mamba_d_state", 256))
    sizes = (inner, inner, state, state, heads)
    factors = config.get("ssm_multipliers") or [1.0] * 5
    return np.concatenate([np.full(size, float(factor), dtype=np.float32) for size, factor in zip(sizes, factors)])


def weight_scale(hf_name: str, config: dict):
    """The factor Falcon-H1 multiplies this weight's output by (a float, a per-row vector for in_proj), or None."""
    if ".mamba.in_proj." in hf_name:
        return _multiplier(config, "ssm_in_multiplier") * mup_vector(config)
    for part, index in MLP_FOLDS.items():
        if part in hf_name:
            return float((config.get("mlp_multipliers") or [1.0, 1.0])[index])
    for part, keys in SCALAR_FOLDS.items():
        if part in hf_name:
            factor = 1.0
            for key in keys:
                factor *= _multiplier(config, key)
            return factor
    return None


def folded(transform: Callable | None, scale) -> Callable | None:
    """`transform` (or none) followed by scaling the rows by `scale` (a float or one factor per output row)."""
    if scale is None:
        return transform
    import numpy as np

    rows = np.asarray(scale, dtype=np.float32)

    def fold(array):  # float32 in (gguf_file reads weights so), float32 out
        array = transform(array) if transform else array
        return array * (rows.reshape(-1, 1) if rows.ndim else rows)

    return fold
