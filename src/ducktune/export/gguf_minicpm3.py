"""llama.cpp's `minicpm3` architecture: OpenBMB's MiniCPM3 (MiniCPM3ForCausalLM: MiniCPM3-4B).

Learned from llama.cpp's loader and graph (src/models/minicpm3.cpp) and its converter (MiniCPM3Model in
conversion/minicpm.py). Multi-head latent attention (DeepSeek-V2's MLA): queries through a low-rank
q_a_proj -> q_a_layernorm -> q_b_proj, keys and values from one compressed kv_a_proj_with_mqa (the
kv_lora_rank latent, then one shared rope key of qk_rope_head_dim) -> kv_a_layernorm -> kv_b_proj (per head:
qk_nope_head_dim key dims, then v_head_dim value dims). Every projection is a plain linear weight written as
it is (gguf's names: attn_q_a, attn_q_b, attn_kv_a_mqa, attn_kv_b, ...): a LoRA merge leaves nothing to
re-split. Rope sits on the trailing qk_rope_head_dim dims of each query head and on the shared key, in
rotate-half (NEOX) order as transformers stores them, so nothing is re-ordered either.

llama.cpp's graph hard-codes MiniCPM3-4B's muP scalars (embeddings x 12, residual branches x 1.4 / sqrt(layers),
hidden states x 256 / hidden before the output layer) and reads no key for them: configs with other values
are refused. LongRoPE's factor tables are written as Phi-3's (rope_factors_long / _short).
"""

from __future__ import annotations

from ducktune.export.gguf_mla import MlaSizes
from ducktune.export.gguf_common import unloaded_biases

ARCH = "minicpm3"
# the scalars llama.cpp's minicpm3 graph hard-codes (n_embd_base, scale_embd, scale_depth) = transformers' defaults
MUP_SCALARS = {"scale_emb": 12.0, "scale_depth": 1.4, "dim_model_base": 256.0}
# MiniCPM3Config's defaults for the MLA sizes a config.json may leave out
MLA = MlaSizes({"q_lora_rank": 768, "kv_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32})
_mla, rope_dims, key_length = MLA.size, MLA.rope_dims, MLA.key_length


def value_length(config: dict, hidden: int, heads: int) -> int:
    """v_head_dim, or hidden / heads when absent (MiniCPM3Config's default)."""
    return int(config.get("v_head_dim") or hidden // heads)


def minicpm3_support(config: dict, name: str) -> str | None:
    """What llama.cpp's minicpm3 graph would run differently from transformers' MiniCPM3: other muP scalars
    (hard-coded there), queries without the low-rank q_a/q_b pair (q_lora_rank null: one q_proj, which it
    does not load), biases, another activation, or DeepSeek's softmax mscale (mscale_all_dim)."""
    scalars = [f"{key} {config[key]}" for key, value in MUP_SCALARS.items()
               if key in config and (config[key] is None or float(config[key]) != value)]
    if scalars:
        reason = (f"{', '.join(scalars)}; llama.cpp's minicpm3 hard-codes scale_emb 12, scale_depth 1.4 and "
                  "dim_model_base 256")
    elif "q_lora_rank" in config and not config["q_lora_rank"]:
        reason = "q_lora_rank null (a dense q_proj); llama.cpp's minicpm3 loads the low-rank q_a_proj/q_b_proj only"
    elif bias := unloaded_biases(config, "minicpm3"):
        reason = bias
    elif config.get("hidden_act", "silu") != "silu":
        reason = f"hidden_act {config['hidden_act']!r}: llama.cpp's minicpm3 runs SiLU only"
    elif (config.get("rope_scaling") or config.get("rope_parameters") or {}).get("mscale_all_dim"):
        reason = "rope mscale_all_dim (transformers then rescales the softmax); llama.cpp's minicpm3 does not"
    else:
        return None
    return f"GGUF export of {name}: {reason}"


def add_minicpm3_hparams(put, config: dict, hidden: int, heads: int) -> None:
    """The MLA keys llama.cpp's minicpm3 loader reads: the two latent ranks and the key / value head sizes."""
    put("add_q_lora_rank", _mla(config, "q_lora_rank"))
    put("add_kv_lora_rank", _mla(config, "kv_lora_rank"))
    put("add_key_length", key_length(config))
    put("add_value_length", value_length(config, hidden, heads))
