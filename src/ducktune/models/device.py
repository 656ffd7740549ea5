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


# CPU flags (Linux /proc/cpuinfo) of instructions that compute bf16 products natively: AVX512-BF16
# (AMD Zen 4+, Intel Cooper Lake+) and AMX (Intel Sapphire Rapids+). Without them oneDNN emulates
# bf16 and a matmul runs 50-300x slower than fp32; with them 2-2.5x faster (measured, one core).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_computes_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has native bf16 matmul instructions (False where it cannot be told)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            flags = cpu_flags(f.read())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def choose_placement(device: str = "auto", dtype: str = "auto", n_params: int | None = None) -> Placement:
    """Resolve `auto` device/dtype on this machine (placement_for's rules)."""
    devices = available_devices()
    if device == "auto":
        device = devices[0]
    elif device not in devices:
        raise ConfigError(f"model.device: '{device}' is not available on this machine (available: {', '.join(devices)})")
    return placement_for(device, dtype, n_params, cuda_bf16=device == "cuda" and cuda_supports_bf16(),
                         cpu_bf16=device == "cpu" and dtype in ("auto", "bfloat16") and cpu_computes_bf16())


def placement_for(device: str, dtype: str = "auto", n_params: int | None = None, cuda_bf16: bool = True,
                  cpu_bf16: bool = False) -> Placement:
    """The dtype rules for a device, present or not (`ducktune plan --device` plans for other
    machines; cuda_bf16: whether that GPU supports bf16; cpu_bf16: whether that CPU computes
    bf16 natively).

    - CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16.
    - MPS: fp32 for models under 1B parameters (fast enough, and no fp16 overflow surprises),
      fp16 above; never bf16, which older macOS/MPS builds do not support.
    - CPU: fp32. bf16 is opt-in (model.dtype=bfloat16) and only worth it where the CPU computes it
      natively (AVX512-BF16 or AMX; cpu_bf16): there it trained SmolLM2 ~1.3x faster, but the
      quickstart's persona was answered on 23/28 questions instead of 26/28 in fp32 (same settings;
      bench/cpu_bf16.py), so auto keeps fp32 and says so. CPUs without those instructions run bf16
      matmuls 50-300x slower.
    """
    if dtype != "auto":
        if device == "mps" and dtype == "bfloat16":
            raise ConfigError("model.dtype: bfloat16 is not supported on Apple MPS; use float16 or float32")
        if device == "cuda" and dtype == "bfloat16" and not cuda_bf16:
            raise ConfigError("model.dtype: this GPU does not support bfloat16; use float16")
        if device == "cpu" and dtype == "bfloat16" and not cpu_bf16:
            return Placement(device, dtype, "set in the config; this CPU has no native bf16 instructions, "
                                            "expect it many times slower than float32")
        return Placement(device, dtype, "set in the config")

    if device == "cuda":
        if cuda_bf16:
            return Placement("cuda", "bfloat16", "CUDA GPU with bf16 support")
        return Placement("cuda", "float16", "CUDA GPU without bf16 support")
    if device == "mps":
        if n_params is not None and n_params >= 1_000_000_000:
            return Placement("mps", "float16", "Apple MPS, model of 1B+ parameters")
        return Placement("mps", "float32", "Apple MPS, small model")
    if cpu_bf16:
        return Placement("cpu", "float32", "CPU; it computes bf16 natively: model.dtype=bfloat16 trains ~1.3x "
                                           "faster, at some cost in how well a short run learns")
    return Placement("cpu", "float32", "CPU without native bf16 instructions")
