"""Crash safety: kills at chosen points, damaged checkpoints, a full disk, two writers.

The slow tests run the crash harness (tests/crash_harness.py: the real CLI in child processes,
SIGKILLed at 30+ points, then rerun and compared bit for bit with an uninterrupted run) and write
its figures to docs/reliability/crash.json. The fast tests pin the pieces it relies on.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_support import save_reliability_part

from ducktune.errors import UserError
from ducktune.io import atomic_dir, atomic_file, disk_full, remove_leftovers, replace_dir
from ducktune.rundir import WriterLock
from ducktune.train.checkpoints import checkpoint_problem, latest_complete

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "reliability" / "crash.json"


# ----------------------------------------------------------------------------- the harness (slow)

@pytest.fixture(scope="module")
def harness(tmp_path_factory, tiny_qwen):
    from crash_harness import Harness

    h = Harness(tmp_path_factory.mktemp("crash"), tiny_qwen)
    h.run_all()
    save_reliability_part(REPORT, h.report())
    return h


def _row(harness, prefix: str) -> dict:
    rows = [row for row in harness.rows() if row["check"].startswith(prefix)]
    assert rows, f"no results for {prefix}"
    return rows[0]


@pytest.mark.slow
@pytest.mark.parametrize("check", [
    "SIGKILL during training", "SIGKILL while saving the adapter", "SIGKILL at seeded random moments",
    "SIGKILL during export", "SIGKILL during `ducktune data convert`", "Damaged checkpoint",
    "Disk full (ENOSPC)", "Disk full on a real tmpfs", "Two writers",
])
def test_every_fault_is_survived(harness, check):
    if check.startswith("Disk full on a real tmpfs") and any(note.startswith(check) for note in harness.skipped):
        pytest.skip("no user namespaces here to mount a tmpfs")
    row = _row(harness, check)
    assert row["passed"] == row["tried"], row["detail"]


@pytest.mark.slow
def test_at_least_twenty_kill_points_across_every_phase(harness):
    tried, survived = harness.kill_points()
    assert tried >= 20 and survived == tried
    checks = " ".join(row["check"] for row in harness.rows())
    for phase in ("training", "adapter", "export", "data convert"):
        assert phase in checks


# ----------------------------------------------------------------------------- checkpoints

def _checkpoint(folder: Path, step: int) -> Path:
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": torch.ones(32)}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("damage, problem", [
    (lambda c: None, None),
    (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
    (lambda c: _cut(c / "trainer_state.json", 10), "trainer_state.json is unreadable"),
    (lambda c: (c / "trainer_state.json").write_text("[]"), "does not record step 4"),
    (lambda c: (c / "trainer_state.json").write_text('{"global_step": 2}'), "does not record step 4"),
    (lambda c: (c / "trainer_state.json").write_bytes(b"\xff\xfe{"), "trainer_state.json is unreadable"),
    (lambda c: (c / "adapter_model.safetensors").unlink(), "no weights"),
    (lambda c: _cut(c / "adapter_model.safetensors", 5), "adapter_model.safetensors: truncated (no header)"),
    (lambda c: _cut(c / "adapter_model.safetensors", 40), "adapter_model.safetensors: truncated"),
    (lambda c: _cut(c / "adapter_model.safetensors", 200), "adapter_model.safetensors: truncated (200 of"),
    (lambda c: (c / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]"),
     "adapter_model.safetensors: unreadable header"),
    (lambda c: _cut(c / "optimizer.pt", 300), "optimizer.pt: truncated or not a torch file"),
])
def test_a_damaged_checkpoint_names_its_problem(tmp_path, damage, problem):
    path = _checkpoint(tmp_path, 4)
    damage(path)
    found = checkpoint_problem(path)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_resume_skips_a_damaged_newest_checkpoint_with_a_message(tmp_path):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    _cut(newest / "adapter_model.safetensors", 100)
    messages = []
    assert latest_complete(tmp_path, log=messages.append) == tmp_path / "checkpoint-2"
    assert (tmp_path / "incomplete-checkpoint-4").is_dir() and not newest.exists()
    assert messages == [f"{newest}: adapter_model.safetensors: truncated (100 of 328 bytes); "
                        "set aside as incomplete-checkpoint-4, not resumed from"]


# ----------------------------------------------------------------------------- atomic writes and leftovers

def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("previous")
    with pytest.raises(OSError) as raised:
        with atomic_file(target) as handle:
            handle.write("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert disk_full(raised.value) is raised.value and raised.value.filename == str(target)  # the file is named
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["run.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_modes_of_ordinary_writes(tmp_path, umask):
    """mkstemp/mkdtemp create private files; an atomic write must not leave run.json, the Modelfile or
    export/merged/ unreadable to the Ollama server or a container running as another user."""
    previous = os.umask(umask)
    try:
        with atomic_file(tmp_path / "run.json") as handle:
            handle.write("{}")
        with atomic_dir(tmp_path / "merged") as work:
            (work / "config.json").write_text("{}")
        (tmp_path / "plain").write_text("x")
        (tmp_path / "plain-dir").mkdir()
    finally:
        os.umask(previous)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "run.json") == mode(tmp_path / "plain") == 0o666 & ~umask
    assert mode(tmp_path / "merged") == mode(tmp_path / "plain-dir") == 0o777 & ~umask


def test_a_failing_folder_build_leaves_the_previous_folder(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "a").write_text("old")
    with pytest.raises(RuntimeError) as raised:
        with atomic_dir(tmp_path / "adapter") as work:
            (work / "a").write_text("new")
            raise RuntimeError("writer failed") from OSError(errno.EDQUOT, "quota")
    assert disk_full(raised.value).errno == errno.EDQUOT
    assert os.listdir(tmp_path) == ["adapter"] and (tmp_path / "adapter" / "a").read_text() == "old"


def test_replacing_a_folder_swaps_it_whole(tmp_path):
    old, new = tmp_path / "export", tmp_path / "new"
    old.mkdir()
    (old / "f16.gguf").write_text("old")
    new.mkdir()
    (new / "q8_0.gguf").write_text("new")
    replace_dir(new, old)
    assert os.listdir(tmp_path) == ["export"] and os.listdir(old) == ["q8_0.gguf"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_writers_leftovers_are_removed_and_an_orphaned_folder_restored(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    (tmp_path / f".adapter.{dead}.abcd1234.tmp").mkdir()
    (tmp_path / f".run.json.{dead}.abcd1234.tmp").write_text("{")
    (tmp_path / f".adapter.{live}.efgh5678.tmp").mkdir()  # a live writer's: kept
    orphan = tmp_path / f".export.old-{dead}"  # a crash between the two renames of the fallback swap
    orphan.mkdir()
    (orphan / "f16.gguf").write_text("previous")
    assert [p.name for p in remove_leftovers(tmp_path / "adapter")] == [f".adapter.{dead}.abcd1234.tmp"]
    with atomic_file(tmp_path / "run.json") as handle:
        handle.write("{}")
    with atomic_dir(tmp_path / "export") as work:  # the orphan comes back, then is replaced whole
        assert (tmp_path / "export" / "f16.gguf").read_text() == "previous"
        (work / "q8_0.gguf").write_text("new")
    assert sorted(os.listdir(tmp_path)) == [f".adapter.{live}.efgh5678.tmp", "export", "run.json"]


def test_disk_full_is_found_behind_other_errors_and_only_there(tmp_path):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "x.bin")
        except OSError as exc:
            raise RuntimeError("save failed") from exc
    except RuntimeError as outer:
        assert disk_full(outer).filename == "x.bin"
    assert disk_full(RuntimeError("unrelated"), tmp_path) is None  # plenty of space here
    # safetensors (Rust) and torch.save name no file: the folder being written is named instead.
    bare = disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "run")
    assert bare.filename == str(tmp_path / "run") and bare.errno == errno.ENOSPC
    rust = disk_full(RuntimeError("Error while serializing: No space left on device (os error 28)"), tmp_path / "run")
    assert rust.filename == str(tmp_path / "run") and rust.errno == errno.ENOSPC
    assert disk_full(OSError(errno.ENOSPC, "No space left on device")).filename is None  # no folder given
    assert disk_full(OSError(errno.EACCES, "denied")) is None


# ----------------------------------------------------------------------------- one writer per run directory

def test_a_second_writer_is_refused_until_the_first_releases(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first = WriterLock("train")
    first.acquire(run)
    first.acquire(run)  # again by the same holder: fine
    with pytest.raises(UserError, match=r"another ducktune process .* before running export on it"):
        WriterLock("export").acquire(run)
    moved = tmp_path / "run.old"
    run.rename(moved)  # --overwrite moves the run aside: the lock goes with the folder
    with pytest.raises(UserError):
        WriterLock("train").acquire(moved)
    first.release()
    with WriterLock("train") as again:
        again.acquire(moved)


def test_a_killed_writer_never_blocks_the_next(tmp_path):
    code = ("import sys, time; from ducktune.rundir import WriterLock; lock = WriterLock('train'); "
            "lock.acquire(sys.argv[1]); print('locked', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError):
        WriterLock("train").acquire(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = WriterLock("train")
    lock.acquire(tmp_path)
    lock.release()


def test_a_full_disk_in_any_command_is_one_line_and_exit_2(tmp_path):
    """ENOSPC injected at the write of `ducktune data identity`'s output (the CLI in a child process)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"event": "open", "match": "*/.out.json.*.tmp", "fail": "ENOSPC"}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "crash_child.py"), str(spec), "--", "data", "identity",
                           "--name", "Nova", "--author", "Acme", str(tmp_path / "out.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path}/.out.json") and "no space left on device" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["spec.json"]
    assert time.monotonic() - started < 60


def test_ctrl_c_saves_the_step_it_stops_at_and_the_rerun_ends_bit_identical(tmp_path, tiny_qwen):
    """Ctrl-C lost every step since the last save_steps checkpoint (a probe lost 288 steps). The first
    SIGINT now finishes the step, saves a checkpoint of it and stops (run.json: interrupted); the same
    command resumes from that step, and the adapter equals an uninterrupted run's, byte for byte."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": f"q{i}", "output": f"answer {i}"} for i in range(8)]))

    def argv(out):
        return [sys.executable, "-m", "ducktune", "train", "--set", f"model.name_or_path={tiny_qwen}",
                "--set", f"data.datasets=[{data}]", "--set", "train.max_steps=150", "--set", "train.save_steps=1000",
                "--set", "train.num_threads=1", "--set", "train.logging_steps=1", "-o", str(tmp_path / out),
                "--set", "eval.max_new_tokens=2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv("run"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and \
            (not metrics.is_file() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Stopping after this step" in out and "interrupted; rerun the same command" in out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    saved = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert len(saved) == 1 and 5 <= int(saved[0].name.split("-")[1]) < 150  # the step it stopped at, not a save_steps one
    rerun = subprocess.run(argv("run"), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0 and f"Resuming from {saved[0]}" in rerun.stdout + rerun.stderr
    reference = subprocess.run(argv("reference"), capture_output=True, text=True, env=env, timeout=600)
    assert reference.returncode == 0, reference.stderr
    adapter = "adapter/adapter_model.safetensors"
    assert (tmp_path / "run" / adapter).read_bytes() == (tmp_path / "reference" / adapter).read_bytes()


def test_sigterm_stops_training_like_ctrl_c_resumable(tmp_path, tiny_qwen):
    """A scheduler's or the UI's SIGTERM: the run is marked interrupted (not left "running") and the
    same command finishes it."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": f"q{i}", "output": f"answer {i}"} for i in range(8)]))
    argv = [sys.executable, "-m", "ducktune", "train", "--set", f"model.name_or_path={tiny_qwen}",
            "--set", f"data.datasets=[{data}]", "--set", "train.max_steps=400", "--set", "train.save_steps=5",
            "--set", "train.num_threads=1", "--set", "eval.max_new_tokens=2", "-o", str(tmp_path / "run"),
            "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    # Stop once a checkpoint is complete (its trainer_state.json is written last), so the rerun resumes from it.
    state = tmp_path / "run" / "checkpoints" / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not state.is_file() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "interrupted; rerun the same command" in out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    rerun = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0 and "Resuming from" in rerun.stdout + rerun.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"
