"""What this machine and process hold: free memory for a budget, current and peak resident memory.

Readers of /proc (Linux) with portable fallbacks; the planner (train/plan.py) only predicts.
"""

from __future__ import annotations


def available_memory(device: str) -> int:
    """What a run may use: free device memory on CUDA, the recommended working set on MPS,
    and on CPU the memory the OS reports available plus what this process already holds."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    if device == "mps":
        import torch

        return int(torch.mps.recommended_max_memory())
    return meminfo_bytes("MemAvailable") + current_rss()


def meminfo_bytes(key: str) -> int:
    """A /proc/meminfo field in bytes; total physical memory where there is no /proc."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    # macOS and others: total physical memory as an upper bound.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _status_bytes(key: str) -> int | None:
    """A kB field of /proc/self/status (Linux), in bytes; None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    return _status_bytes("VmRSS") or 0


def peak_rss() -> int:
    """This process's peak resident memory so far (VmHWM), bytes."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def freed_memory_returns_to_os() -> bool:
    """Whether return_freed_memory_to_os can work here (Linux with glibc): elsewhere the heap keeps
    its highest size and peak RSS runs ~30 % above the live tensors the memory plan counts."""
    import platform

    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def return_freed_memory_to_os() -> bool:
    """Make glibc give large freed buffers back to the OS at once (Linux only).

    By default glibc raises its mmap threshold after the first large free (up to 32 MiB), so
    a training step's activation buffers stay in the heap and the process keeps its highest
    heap size: peak RSS runs ~30 % above the live tensors. A fixed 128 KiB threshold serves
    large tensors with mmap, released on free. The price: a page fault per 4 KiB of every new
    buffer, measured 25-40 % of a SmolLM2 LoRA step (115 tokens, 2 cores), so the recipe does this
    only under an explicit train.memory_budget (plan.heap_returns_memory). Returns whether the
    setting was applied.
    """
    import ctypes

    if not freed_memory_returns_to_os():
        return False
    try:
        libc = ctypes.CDLL(None)
        m_mmap_threshold = -3  # from <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 128 * 1024))
    except (OSError, AttributeError):
        return False
