"""A write that runs out of room during an export (a full disk, or a file over the file system's or
`ulimit -f`'s size limit) is one line naming the file, exit 2, the previous export untouched."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export_support import make_lora_run

from ducktune.io import disk_full

REPO = Path(__file__).resolve().parents[1]

# The real CLI in a child process whose file size limit (RLIMIT_FSIZE) is set before the write named by
# argv[2]: "merged" (safetensors, a Rust writer: "File too large (os error 27)") or "gguf" (numpy's tofile:
# "N requested and M written", no errno). Python ignores SIGXFSZ, so the write fails with EFBIG.
CHILD = """
import resource, sys
from ducktune.cli import main
from ducktune.export import gguf_file, merge

limit = 100_000
def limited(real):
    def call(*args, **kwargs):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        return real(*args, **kwargs)
    return call
if sys.argv[2] == "merged":
    merge.merge_run = limited(merge.merge_run)
else:
    gguf_file.write_gguf = limited(gguf_file.write_gguf)
sys.exit(main(["export", sys.argv[1], "--quant", "f16"]))
"""


@pytest.mark.parametrize("where", ["merged", "gguf"])
def test_a_file_over_the_size_limit_in_export_is_one_line(tmp_path, tiny_qwen, where):
    run = make_lora_run(tmp_path / "run", tiny_qwen)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(run), where], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file too large" in errors[0] and "ulimit -f" in errors[0], proc.stderr[-2000:]
    named = f"{run}/export/merged" if where == "merged" else f"{run}/export/run-f16.gguf"
    assert errors[0].startswith(f"error: {named}: file too large"), errors[0]
    assert not (run / "export").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]  # no temporary left behind


def test_a_full_disk_said_in_a_libraries_own_exception_counts_as_a_full_disk():
    from safetensors import SafetensorError

    full = disk_full(SafetensorError("Error while serializing: No space left on device (os error 28)"))
    assert full is not None and full.errno == errno.ENOSPC
    assert disk_full(OSError(errno.EFBIG, "File too large")).errno == errno.EFBIG
    assert disk_full(SafetensorError("Error while deserializing header: (os error 2)")) is None
