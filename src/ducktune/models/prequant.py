"""Checkpoints published already quantized: config.json carries a `quantization_config`.

bitsandbytes 4-bit and 8-bit uploads (unsloth/*-bnb-4bit) load with the bitsandbytes ducktune
uses for QLoRA, on CUDA and on the CPU: LoRA trains on them as QLoRA and the export merges the
adapter onto a dequantized copy. gpt-oss (GptOssForCausalLM), published with its experts in MXFP4, is
dequantized on load (transformers' Mxfp4Config(dequantize=True): what transformers itself falls back to
without the Triton kernels, which train nothing anyway): LoRA trains on the bf16 weights and the export
merges onto the same dequantized weights. Every other method (FP8, GPTQ, AWQ, MXFP4 on other models,
compressed-tensors...) is refused before anything is written: ducktune merges and writes GGUF from
full-precision weights.
"""

from __future__ import annotations

import re
from pathlib import Path

BITSANDBYTES = "bitsandbytes"
MXFP4 = "mxfp4"
# the models transformers dequantizes MXFP4 for (its Mxfp4 integration replaces GptOssExperts only)
MXFP4_MODEL_TYPES = {"gpt_oss"}

# Suffixes publishers add to a quantized upload's name (Qwen/Qwen3-8B-FP8, Qwen2.5-7B-Instruct-GPTQ-Int4,
# unsloth/Llama-3.2-1B-Instruct-unsloth-bnb-4bit, *-AWQ): what is left names the full-precision repository.
_QUANT_SUFFIX = re.compile(r"[-_.](unsloth[-_])?(bnb[-_]?(4|8)bit|fp8([-_](dynamic|static|block))?|gptq([-_]int[348])?"
                           r"|awq|mxfp4|nvfp4|int[348]|w4a16|w8a8([-_]fp8)?|fbgemm[-_]fp8)$", re.IGNORECASE)


def quant_method(config: dict) -> str | None:
    """The checkpoint's quantization method (config.json's quantization_config.quant_method,
    lower case), or None for full-precision weights. Old bitsandbytes uploads name no method."""
    block = config.get("quantization_config") or (config.get("text_config") or {}).get("quantization_config")
    if not isinstance(block, dict):
        return None
    method = block.get("quant_method")
    if not method and (block.get("load_in_4bit") or block.get("load_in_8bit")):
        return BITSANDBYTES
    return str(method or "unknown").lower()


def is_bitsandbytes(config: dict) -> bool:
    return quant_method(config) == BITSANDBYTES


def dequantized_on_load(config: dict) -> bool:
    """Whether the checkpoint is MXFP4 that ducktune loads dequantized (gpt-oss's experts)."""
    return quant_method(config) == MXFP4 and config.get("model_type") in MXFP4_MODEL_TYPES


def dequantizing_load_kwargs(config: dict) -> dict:
    """from_pretrained keywords that load this checkpoint in full precision ({} when it is not MXFP4)."""
    if not dequantized_on_load(config):
        return {}
    from transformers import Mxfp4Config

    return {"quantization_config": Mxfp4Config(dequantize=True)}


def bnb_bits(config: dict) -> int:
    block = config.get("quantization_config") or {}
    return 8 if block.get("load_in_8bit") or block.get("_load_in_8bit") else 4


def full_precision_name(name: str) -> str | None:
    """`name` without its quantization suffix (Qwen/Qwen3-8B-FP8 -> Qwen/Qwen3-8B), None when it has none."""
    stripped = name.rstrip("/")
    while match := _QUANT_SUFFIX.search(stripped):
        stripped = stripped[:match.start()]
    return stripped if stripped and stripped != name.rstrip("/") else None


def prequant_problem(config: dict, name: str) -> str | None:
    """Why (after "config.json: ") ducktune cannot fine-tune and export this pre-quantized checkpoint (None: it can, or the
    weights are not quantized). `name` (a folder or hub id) names the full-precision repository."""
    method = quant_method(config)
    if method is None or method == BITSANDBYTES or dequantized_on_load(config):
        return None
    full = full_precision_name(Path(name).name if Path(name).expanduser().exists() else name)
    repository = f", e.g. {full}" if full else " of this model"
    return (f"quantization_config.quant_method is {method!r}: ducktune trains, merges and writes GGUF "
            f"from full-precision (or bitsandbytes 4/8-bit) weights only; use the full-precision (BF16) "
            f"repository{repository}")
