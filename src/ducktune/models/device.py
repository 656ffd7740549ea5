"""Pick the device and dtype a run uses, so users never have to know about bf16 support tables."""

from __future__ import annotations

from dataclasses import dataclass

from ducktune.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # "float32", "float16" or "bfloat16"
    reason: str

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def available_devices() -> list[str]:
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def cuda_supports_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def choose_placement(device: str = "auto", dtype: str = "auto", n_params: int | None = None) -> Placement:
    """Resolve `auto` device/dtype on this machine (placement_for's rules)."""
    devices = available_devices()
    if device == "auto":
        device = devices[0]
    elif device not in devices:
        raise ConfigError(f"model.device: '{device}' is not available on this machine (available: {', '.join(devices)})")
    return placement_for(device, dtype, n_params, cuda_bf16=device == "cuda" and cuda_supports_bf16())


def placement_for(device: str, dtype: str = "auto", n_params: int | None = None, cuda_bf16: bool = True) -> Placement:
    """The dtype rules for a device, present or not (`ducktune plan --device` plans for other
    machines; cuda_bf16: whether that GPU supports bf16).

    - CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16.
    - MPS: fp32 for models under 1B parameters (fast enough, and no fp16 overflow surprises),
      fp16 above; never bf16, which older macOS/MPS builds do not support.
    - CPU: fp32. CPUs without AMX/AVX-512-BF16 run bf16 matmuls ~100x slower than fp32.
    """
    if dtype != "auto":
        if device == "mps" and dtype == "bfloat16":
            raise ConfigError("model.dtype: bfloat16 is not supported on Apple MPS; use float16 or float32")
        if device == "cuda" and dtype == "bfloat16" and not cuda_bf16:
            raise ConfigError("model.dtype: this GPU does not support bfloat16; use float16")
        return Placement(device, dtype, "set in the config")

    if device == "cuda":
        if cuda_bf16:
            return Placement("cuda", "bfloat16", "CUDA GPU with bf16 support")
        return Placement("cuda", "float16", "CUDA GPU without bf16 support")
    if device == "mps":
        if n_params is not None and n_params >= 1_000_000_000:
            return Placement("mps", "float16", "Apple MPS, model of 1B+ parameters")
        return Placement("mps", "float32", "Apple MPS, small model")
    return Placement("cpu", "float32", "CPU (no fast half-precision path)")
