"""A Hugging Face model folder -> one GGUF file (f16 or q8_0), with the `gguf` package.

Everything llama.cpp and Ollama need is written: the architecture's hyper-parameters, every
tensor under its GGUF name (the `gguf` package's tensor-name maps), and complete tokenizer
metadata (BPE tokens and merges, token types, bos/eos/pad/unk and end-of-turn ids, whether
BOS is added, the pre-tokenizer kind, the chat template).

Tensors are streamed to disk one at a time (header and tensor index first), so memory stays
near one tensor; the file is written under a temporary name and renamed into place, so a
failure never leaves a partial GGUF behind.

Architectures (hyper-parameters, tensor names and layouts per llama.cpp architecture) live in
export/gguf_arch.py: Llama (2, 3.x with llama3 rope), Mistral, Qwen2/2.5, Qwen3, Gemma 2/3, Phi-3,
GLM-4, Bloom, InternLM2. Anything else is refused with a one-line reason (`architecture_support`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.export.gguf_arch import TensorPlan, add_hparams, gguf_arch, plan_from_shapes
from ducktune.export.gguf_vocab import add_tokenizer_metadata, general_name, read_tokenizer_json

QUANTS = ("f16", "q8_0")
# llama.cpp's names for the file types (general.file_type)
FILE_TYPES = {"f16": 1, "q8_0": 7}


@dataclass
class GGUFSummary:
    path: Path
    arch: str
    quant: str
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)  # GGUF name -> HF-order shape
    metadata: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- model metadata


def read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model config ({exc})") from None


def _weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_dir}: no .safetensors weights")
    shapes = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def plan_tensors(model_dir: Path, config: dict, quant: str) -> list[TensorPlan]:
    return plan_from_shapes(_weight_shapes(model_dir), config, quant, where=str(model_dir))


def _tensor_bytes(plan: TensorPlan) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[plan.qtype]
    count = 1
    for dim in plan.shape:
        count *= dim
    return count // block * size


def _encode(array, plan: TensorPlan):
    import gguf
    import numpy as np

    if plan.transform is not None:
        array = plan.transform(array)
    if plan.qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if plan.qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), plan.qtype)


# ---------------------------------------------------------------------- writing


def write_gguf(model_dir: str | Path, out_path: str | Path, quant: str, name: str, tokenizer,
               eot_token: str | None = None, log=print, add_bos: bool | None = None) -> GGUFSummary:
    """Write `model_dir` (a merged HF folder) as one GGUF file. `tokenizer` is the folder's HF
    tokenizer (with the run's chat template); `eot_token` the template's end-of-turn token;
    `add_bos` whether llama.cpp must add BOS to prompts (None: as the HF tokenizer does)."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    if quant not in QUANTS:
        raise ModelError(f"--quant {quant}: written directly are {', '.join(QUANTS)}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = read_config(model_dir)
    arch = gguf_arch(config)
    plans = plan_tensors(model_dir, config, quant)

    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(None, arch)
    try:
        metadata = _add_metadata(writer, config, arch, name, quant, model_dir, tokenizer, eot_token, add_bos)
        for plan in plans:
            qtype = None if plan.qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else plan.qtype
            dtype = {gguf.GGMLQuantizationType.F32: "float32", gguf.GGMLQuantizationType.F16: "float16"}.get(plan.qtype, "float32")
            writer.add_tensor_info(plan.gguf_name, plan.shape, np.dtype(dtype), _tensor_bytes(plan), raw_dtype=qtype)
        writer.write_header_to_file(tmp_path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        handles = {}
        with contextlib.ExitStack() as stack:
            for path in sorted(model_dir.glob("*.safetensors")):
                handle = stack.enter_context(safe_open(str(path), framework="pt"))
                for key in handle.keys():
                    handles[key] = handle
            for plan in plans:
                array = None if plan.hf_name is None else handles[plan.hf_name].get_tensor(plan.hf_name).float().numpy()
                writer.write_tensor_data(_encode(array, plan))
        writer.flush()
        for handle in writer.fout or []:
            os.fsync(handle.fileno())
        writer.close()
        os.replace(tmp_path, out_path)
    except BaseException:
        writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    return GGUFSummary(out_path, arch, quant, {p.gguf_name: p.shape for p in plans}, metadata)


def _add_metadata(writer, config, arch, name, quant, model_dir, tokenizer, eot_token, add_bos) -> dict:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(general_name(name, read_tokenizer_json(model_dir)))
    writer.add_file_type(FILE_TYPES[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hparams(writer, config, arch)

    return add_tokenizer_metadata(writer, model_dir, tokenizer, eot_token, config["vocab_size"], add_bos)


# ---------------------------------------------------------------------- reading back


def read_back(path: str | Path, expected: GGUFSummary | None = None, model_dir: Path | None = None) -> dict:
    """Open a GGUF with the gguf reader; compare tensor names/shapes and tokenizer metadata.

    Returns {"tensors": n, "problems": [...], "metadata": {...}}. Expected tensors come from
    `expected` (a writer summary) or are planned again from `model_dir`.
    """
    import gguf

    reader = gguf.GGUFReader(str(path))
    problems = []
    found = {t.name: tuple(int(d) for d in reversed(list(t.shape))) for t in reader.tensors}
    if expected is None and model_dir is not None:
        quant = "q8_0" if any(t.tensor_type == gguf.GGMLQuantizationType.Q8_0 for t in reader.tensors) else "f16"
        expected_tensors = {p.gguf_name: p.shape for p in plan_tensors(model_dir, read_config(model_dir), quant)}
    else:
        expected_tensors = expected.tensors if expected else {}
    for name, shape in expected_tensors.items():
        if name not in found:
            problems.append(f"tensor {name} missing")
        elif found[name] != tuple(shape):
            problems.append(f"tensor {name}: shape {found[name]}, expected {tuple(shape)}")
    for name in found:
        if expected_tensors and name not in expected_tensors:
            problems.append(f"unexpected tensor {name}")

    def field(key):
        f = reader.get_field(key)
        return None if f is None else f.contents()

    metadata = {key: field(key) for key in (
        "general.architecture", "general.file_type", "tokenizer.ggml.model", "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template")}
    tokens = reader.get_field("tokenizer.ggml.tokens")
    types = reader.get_field("tokenizer.ggml.token_type")
    merges = reader.get_field("tokenizer.ggml.merges")
    metadata["n_tokens"] = len(tokens.data) if tokens else 0
    metadata["n_token_types"] = len(types.data) if types else 0
    metadata["n_merges"] = len(merges.data) if merges else 0
    scores = reader.get_field("tokenizer.ggml.scores")
    metadata["n_scores"] = len(scores.data) if scores else 0
    # Byte-level BPE ("gpt2") needs merges; SentencePiece ("llama") needs scores instead.
    by_model = {"gpt2": ("tokenizer.ggml.merges",), "llama": ("tokenizer.ggml.scores",)}
    if metadata["tokenizer.ggml.model"] not in by_model:
        problems.append(f"tokenizer.ggml.model {metadata['tokenizer.ggml.model']!r} is not one ducktune writes")
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.pre",
                "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                *by_model.get(metadata["tokenizer.ggml.model"], ())):
        if reader.get_field(key) is None:
            problems.append(f"metadata {key} missing")
    if metadata["n_tokens"] != metadata["n_token_types"]:
        problems.append(f"{metadata['n_tokens']} tokens but {metadata['n_token_types']} token types")
    if metadata["tokenizer.ggml.model"] == "llama" and metadata["n_scores"] != metadata["n_tokens"]:
        problems.append(f"{metadata['n_tokens']} tokens but {metadata['n_scores']} scores")
    if expected is not None:
        want = expected.metadata
        if metadata["n_tokens"] != want.get("n_tokens"):
            problems.append(f"{metadata['n_tokens']} tokens, expected {want.get('n_tokens')}")
        if metadata["n_merges"] != want.get("n_merges"):
            problems.append(f"{metadata['n_merges']} merges, expected {want.get('n_merges')}")
        if metadata["tokenizer.chat_template"] != want.get("chat_template"):
            problems.append("chat template differs from the run's")
    return {"tensors": len(found), "problems": problems, "metadata": metadata}
