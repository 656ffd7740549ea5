"""A Hugging Face model folder -> one GGUF file (f16 or q8_0), with the `gguf` package.

Everything llama.cpp and Ollama need is written: the architecture's hyper-parameters, every
tensor under its GGUF name (the `gguf` package's tensor-name maps), and complete tokenizer
metadata (BPE tokens and merges, token types, bos/eos/pad/unk and end-of-turn ids, whether
BOS is added, the pre-tokenizer kind, the chat template).

Tensors are streamed to disk one at a time (header and tensor index first), so memory stays
near one tensor; the file is written under a temporary name and renamed into place, so a
failure never leaves a partial GGUF behind.

Architectures (hyper-parameters, tensor names and layouts per llama.cpp architecture) live in
export/gguf_arch.py, whose ARCHITECTURES lists the Hugging Face classes written (and gguf_qwen35, gguf_gemma4,
gguf_lfm2, gguf_moe, gguf_apertus for the larger ones). Anything else is refused with a one-line reason (`architecture_support`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.export import gguf_apertus
from ducktune.export.gguf_arch import (TensorPlan, add_hparams, gguf_arch, language_model_config, n_layers,
                                       plan_from_shapes)
from ducktune.export.gguf_vocab import add_tokenizer_metadata, general_name, read_tokenizer_json
from ducktune.io import short_write_cause

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
    """config.json as the GGUF is written from it: a multimodal model's language model (its text_config)."""
    path = model_dir / "config.json"
    try:
        return language_model_config(json.loads(path.read_text(encoding="utf-8")))
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


def _source_array(plan: TensorPlan, handles: dict):
    """The plan's source weight as float32 numpy (experts' weights stacked), or None for a computed tensor."""
    import numpy as np

    def read(name):
        return handles[name].get_tensor(name).float().numpy()

    if plan.stacked and len(plan.stacked) > 1:
        return np.stack([read(name) for name in plan.stacked])
    return None if plan.hf_name is None else read(plan.hf_name)


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
                writer.write_tensor_data(_encode(_source_array(plan, handles), plan))
        writer.flush()
        for handle in writer.fout or []:
            os.fsync(handle.fileno())
        writer.close()
        os.replace(tmp_path, out_path)
    except BaseException as exc:
        cause = short_write_cause(exc, tmp_path)  # a full disk or the file size limit, said without errno
        with contextlib.suppress(OSError):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if cause is not None:
            cause.filename = str(out_path)
            raise cause from exc
        raise
    return GGUFSummary(out_path, arch, quant, {p.gguf_name: p.shape for p in plans}, metadata)


def _add_metadata(writer, config, arch, name, quant, model_dir, tokenizer, eot_token, add_bos) -> dict:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(general_name(name, read_tokenizer_json(model_dir)))
    writer.add_file_type(FILE_TYPES[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hparams(writer, config, arch)
    if arch == gguf_apertus.ARCH:
        _add_xielu_hparams(writer, model_dir, config)

    return add_tokenizer_metadata(writer, model_dir, tokenizer, eot_token, config["vocab_size"], add_bos)


def _add_xielu_hparams(writer, model_dir: Path, config: dict) -> None:
    """Apertus: xIELU's learned scalars are weights in the checkpoint and per-layer keys in llama.cpp."""
    from safetensors import safe_open

    values = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if gguf_apertus.xielu_scalar(name):
                    values[name] = float(handle.get_tensor(name).float().reshape(-1)[0])
    per_layer = gguf_apertus.xielu_values(values, values.__getitem__, n_layers(config), str(model_dir))
    for method, layer_values in per_layer.items():
        getattr(writer, method)(layer_values)


# ---------------------------------------------------------------------- reading back

# GGUF metadata value types: the fixed-size ones (struct formats), then string (8) and array (9).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array whose contents were skipped: its item type and length."""
    item_type: int
    count: int


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # HF (row-major) order: the file stores the fastest-moving dimension first
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass
class GGUFHeader:
    metadata: dict  # key -> int/float/bool/str, or GGUFArray
    tensors: list[GGUFTensorInfo]
    data_offset: int


class _Cursor:
    def __init__(self, blob, path):
        self.blob, self.path, self.pos = blob, path, 0

    def take(self, fmt: str) -> tuple:
        import struct

        try:
            values = struct.unpack_from("<" + fmt, self.blob, self.pos)
        except struct.error:
            raise ValueError(f"{self.path}: the GGUF header ends early (byte {self.pos})") from None
        self.pos += struct.calcsize("<" + fmt)
        return values

    def number(self, fmt: str):
        return self.take(fmt)[0]

    def string(self) -> str:
        length = self.number("Q")
        if self.pos + length > len(self.blob):
            raise ValueError(f"{self.path}: the GGUF header ends early (byte {self.pos})")
        text = self.blob[self.pos:self.pos + length].decode("utf-8")
        self.pos += length
        return text

    def value(self, value_type: int):
        import struct

        if value_type in _GGUF_SCALARS:
            return self.number(_GGUF_SCALARS[value_type])
        if value_type == _GGUF_STRING:
            return self.string()
        if value_type != _GGUF_ARRAY:
            raise ValueError(f"{self.path}: unknown GGUF value type {value_type} (byte {self.pos - 4})")
        item_type, count = self.take("IQ")
        if item_type in _GGUF_SCALARS:
            self.pos += struct.calcsize("<" + _GGUF_SCALARS[item_type]) * count
        elif item_type == _GGUF_STRING:  # the vocabulary: walk the lengths, decode nothing
            for _ in range(count):
                length = self.number("Q")  # (not `pos += number()`: that adds to the pos before the read)
                self.pos += length
        else:
            for _ in range(count):
                self.value(item_type)
        if self.pos > len(self.blob):
            raise ValueError(f"{self.path}: the GGUF header ends early (in an array of {count})")
        return GGUFArray(item_type, count)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """A little-endian GGUF v2/v3 file's metadata and tensor index, arrays skipped (their type and
    length kept). gguf's GGUFReader builds numpy views of every array item, ~7 s of CPU for a
    49k-token vocabulary with its merges. Checks what GGUFReader and llama.cpp check: magic,
    version, value types, unique keys and tensor names, alignment, tensor types, and that every
    tensor's data lies inside the file. ValueError on anything else."""
    import mmap

    import gguf

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 24:
            raise ValueError(f"{path}: {size} bytes, too short for a GGUF header")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            cursor = _Cursor(blob, path)
            if blob[:4] != b"GGUF" or cursor.number("4xI") not in (2, 3):
                raise ValueError(f"{path}: not a little-endian GGUF v2/v3 file")
            tensor_count, kv_count = cursor.take("QQ")
            metadata = {}
            for _ in range(kv_count):
                key = cursor.string()
                if key in metadata:
                    raise ValueError(f"{path}: metadata key {key} twice")
                metadata[key] = cursor.value(cursor.number("I"))
            tensors = []
            for _ in range(tensor_count):
                name = cursor.string()
                shape = tuple(reversed(cursor.take(f"{cursor.number('I')}Q")))
                ggml_type, offset = cursor.take("IQ")
                tensors.append(GGUFTensorInfo(name, shape, ggml_type, offset))
            header_end = cursor.pos
    alignment = metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"{path}: general.alignment {alignment!r} is not a power of two")
    data_offset = -(-header_end // alignment) * alignment
    _check_tensor_data(path, tensors, data_offset, alignment, size)
    return GGUFHeader(metadata, tensors, data_offset)


def _check_tensor_data(path, tensors: list[GGUFTensorInfo], data_offset: int, alignment: int, size: int) -> None:
    import gguf

    names = set()
    for tensor in tensors:
        if tensor.name in names:
            raise ValueError(f"{path}: tensor {tensor.name} twice")
        names.add(tensor.name)
        try:
            block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(tensor.ggml_type)]
        except (ValueError, KeyError):
            raise ValueError(f"{path}: tensor {tensor.name} has unknown ggml type {tensor.ggml_type}") from None
        count = 1
        for dim in tensor.shape:
            count *= dim
        if count % block or tensor.offset % alignment:
            raise ValueError(f"{path}: tensor {tensor.name}: {count} values at offset {tensor.offset} do not fit "
                             f"blocks of {block} aligned to {alignment}")
        end = data_offset + tensor.offset + count // block * block_bytes
        if end > size:
            raise ValueError(f"{path}: tensor {tensor.name} ends at byte {end}, past the end of the file ({size} bytes)")


def read_back(path: str | Path, expected: GGUFSummary | None = None, model_dir: Path | None = None) -> dict:
    """Read a GGUF's header and tensor index (read_gguf_header); compare tensor names/shapes and
    tokenizer metadata.

    Returns {"tensors": n, "problems": [...], "metadata": {...}}. Expected tensors come from
    `expected` (a writer summary) or are planned again from `model_dir`.
    """
    import gguf

    header = read_gguf_header(path)
    problems = []
    found = {t.name: t.shape for t in header.tensors}
    if expected is None and model_dir is not None:
        quant = "q8_0" if any(t.ggml_type == gguf.GGMLQuantizationType.Q8_0 for t in header.tensors) else "f16"
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

    fields = header.metadata
    metadata = {key: fields.get(key) for key in (
        "general.architecture", "general.file_type", "tokenizer.ggml.model", "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template")}
    for name in ("tokens", "token_type", "merges", "scores"):
        array = fields.get(f"tokenizer.ggml.{name}")
        count = array.count if isinstance(array, GGUFArray) else 0
        metadata[{"token_type": "n_token_types"}.get(name, f"n_{name}")] = count
    # Byte-level BPE ("gpt2") needs merges; SentencePiece ("llama") needs scores instead.
    by_model = {"gpt2": ("tokenizer.ggml.merges",), "llama": ("tokenizer.ggml.scores",)}
    if metadata["tokenizer.ggml.model"] not in by_model:
        problems.append(f"tokenizer.ggml.model {metadata['tokenizer.ggml.model']!r} is not one ducktune writes")
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.pre",
                "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                *by_model.get(metadata["tokenizer.ggml.model"], ())):
        if key not in fields:
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
