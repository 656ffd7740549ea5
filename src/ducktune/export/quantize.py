"""K-quants (q4_k_m and friends) through llama.cpp's own quantizer, as exposed by llama-cpp-python.

The `gguf` package cannot produce k-quants, so an f16 GGUF is handed to
`llama_cpp.llama_model_quantize`. The output is written under a temporary name and renamed
only when llama.cpp reports success: a failed quantization leaves no file behind (llama.cpp
itself may leave a partial one, which is deleted).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ducktune.errors import ModelError, UserError

# ducktune's names -> llama.cpp's file-type constants (llama_cpp.LLAMA_FTYPE_MOSTLY_*).
K_QUANTS = {
    "q2_k": "Q2_K", "q3_k_s": "Q3_K_S", "q3_k_m": "Q3_K_M", "q3_k_l": "Q3_K_L",
    "q4_k_s": "Q4_K_S", "q4_k_m": "Q4_K_M", "q5_k_s": "Q5_K_S", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K",
}
INSTALL_HINT = ("pip install 'ducktune[verify]' (builds llama.cpp from source: ~25 min on 2 cores, once); "
                "or write f16 and let Ollama quantize: ollama create NAME -f Modelfile --quantize q4_K_M")

# (source f16 GGUF, destination, quant name) -> llama.cpp return code (0 = success)
Quantizer = Callable[[Path, Path, str], int]


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@contextlib.contextmanager
def captured_stderr(sink: list[str]):
    """Capture what native code writes to file descriptor 2 (llama.cpp prints per-tensor notes there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sink.append(capture.read().decode("utf-8", "replace"))


def llama_cpp_quantizer(threads: int | None = None) -> Quantizer:
    if not llama_cpp_available():
        raise UserError(f"k-quants need llama.cpp's quantizer, from llama-cpp-python: {INSTALL_HINT}")
    import llama_cpp

    def quantize(src: Path, dst: Path, quant: str) -> int:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{K_QUANTS[quant]}")
        params.nthread = threads or max(1, min(4, (os.cpu_count() or 2) - 1))
        output: list[str] = []
        with captured_stderr(output):
            code = int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))
        if code != 0:
            # llama.cpp's own explanation, for the error message
            last = [line for line in output[0].splitlines() if line.strip()][-3:]
            sys.stderr.write("\n".join(last) + ("\n" if last else ""))
        return code

    return quantize


def quantize_gguf(src: str | Path, dst: str | Path, quant: str, quantizer: Quantizer | None = None) -> Path:
    """Quantize the f16 GGUF `src` to `dst` with llama.cpp; nothing is left at `dst` on failure."""
    if quant not in K_QUANTS:
        raise UserError(f"--quant {quant}: llama.cpp quantizes to {', '.join(K_QUANTS)}")
    src, dst = Path(src), Path(dst)
    quantizer = quantizer or llama_cpp_quantizer()
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        code = quantizer(src, tmp, quant)
        if code != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise ModelError(f"llama.cpp could not quantize {src.name} to {quant} (return code {code}); "
                             f"no {dst.name} was written")
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dst
