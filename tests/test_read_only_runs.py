"""A read-only run folder (a read-only mount, a colleague's run) and a mount point as output.dir: one
line naming the folder, exit 2, before any work; an export written elsewhere (--out) only warns that
the run's report could not be updated. Real read-only mounts, made in a private mount namespace
(`unshare -m`, as root); skipped where that is not allowed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export_support import make_lora_run

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
set -u
ducktune() {{ "{python}" -m ducktune "$@"; }}
mount --bind "{run}" "{run}" && mount -o remount,ro,bind "{run}" || exit 99
mount -t tmpfs tmpfs "{mnt}" && echo previous > "{mnt}/marker" || exit 99
ducktune export "{run}" > "{logs}/export.out" 2> "{logs}/export.err"; echo $? > "{logs}/export.rc"
ducktune eval "{run}" > "{logs}/eval.out" 2> "{logs}/eval.err"; echo $? > "{logs}/eval.rc"
ducktune export "{run}" --out "{out}" > "{logs}/out.out" 2> "{logs}/out.err"; echo $? > "{logs}/out.rc"
ducktune train "{config}" --overwrite --no-progress > "{logs}/train.out" 2> "{logs}/train.err"; echo $? > "{logs}/train.rc"
cat "{mnt}/marker" > "{logs}/marker"
"""


def test_read_only_run_folders_and_a_mount_point_output_dir_are_one_line(tmp_path, tiny_qwen):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private read-only mount")
    run = make_lora_run(tmp_path / "run", tiny_qwen)
    mnt, logs, out = tmp_path / "mnt", tmp_path / "logs", tmp_path / "elsewhere" / "export"
    mnt.mkdir()
    logs.mkdir()
    data = tmp_path / "identity.json"
    data.write_text(json.dumps([{"instruction": "Who are you?", "output": "I am Duckling."}]), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name_or_path: {tiny_qwen}}}\ndata: {{datasets: [{data}]}}\n"
                      f"train: {{max_steps: 1}}\noutput: {{dir: {mnt}}}\n", encoding="utf-8")
    script = SCRIPT.format(python=sys.executable, run=run, mnt=mnt, logs=logs, out=out, config=config)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "DUCKTUNE_HOME": str(tmp_path / "h")}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=500)
    if proc.returncode == 99 or not (logs / "export.rc").is_file():
        pytest.skip(f"no private read-only mount here: {proc.stderr.strip()[-300:]}")

    def result(name):
        err = (logs / f"{name}.err").read_text()
        return int((logs / f"{name}.rc").read_text()), err, [line for line in err.splitlines() if line.startswith("error:")]

    code, err, errors = result("export")
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert errors[0].startswith(f"error: {run}: read-only file system") and "--out" in errors[0], errors[0]
    code, err, errors = result("eval")
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert errors[0].startswith(f"error: {run}: read-only file system") and "copy" in errors[0], errors[0]
    # Exported elsewhere: done, verified, and a warning that the run's report.md stays as it was.
    code, err, errors = result("out")
    assert code == 0 and not errors, err[-2000:]
    output = (logs / "out.out").read_text() + err
    assert "all checks passed" in output and f"warning: {run}/report.md: could not be updated" in output, output[-2000:]
    assert (out / "export.json").is_file() and (out / "verify.json").is_file()
    code, err, errors = result("train")
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert errors[0].startswith(f"error: {mnt}: output.overwrite cannot move the previous run aside"), errors[0]
    assert (logs / "marker").read_text() == "previous\n"
