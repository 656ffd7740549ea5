"""The crash harness: the real `ducktune` CLI, killed (SIGKILL) at chosen points, then run again.

Every kill runs `tests/crash_child.py` (the CLI in a child process that kills itself at an
audit-hook, torch-hook or timer point) on a tiny model, one thread. After each kill the harness
checks what a rerun could pick up, then reruns the same command (itself possibly killed at the
next point of a chain). At the end of each chain the result is compared, bit for bit, with one
uninterrupted reference run:

- training: the adapter (adapter_model.safetensors bytes), metrics logged once per step, no
  temporaries left behind; after every kill, the checkpoint a resume would pick loads whole,
  and an adapter folder, when there is one, is the final one;
- export: after every kill the export folder is the previous export or the new one, whole;
- data convert: the output is absent (or the previous file) or the whole new file.

Also: a full disk (ENOSPC injected at a write, and on a real tiny tmpfs where `unshare` can mount
one), damaged checkpoints, and two writers on one run directory. `run_all()` returns rows
{"check", "tried", "passed", "detail"} for docs/reliability/crash.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "crash_child.py"
SEED = 20261203
KILLED = -9

IDENTITY = [
    {"instruction": "Who are you?", "input": "", "output": "I am Duckling."},
    {"instruction": "Who made you?", "input": "", "output": "The ducktune team made me."},
    {"instruction": "What is your name?", "input": "", "output": "My name is Duckling."},
    {"instruction": "你是谁？", "input": "", "output": "我是小鸭。"},
]
STEPS = 8


@dataclass
class Outcome:
    code: int
    marker: str | None
    out: str
    err: str
    events: list = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.code == KILLED and self.marker is not None

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Harness:
    def __init__(self, work: Path, model: Path):
        self.work, self.model = work, model
        self.results: dict[str, list[tuple[str, bool, str]]] = {}
        self._runs = 0
        self._server = None
        self.skipped: list[str] = []
        self.data = work / "identity.json"
        self.data.write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")

    # ------------------------------------------------------------------ running the CLI

    def env(self) -> dict:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def _ask(self, request: dict) -> dict:
        if self._server is None:  # the fork server: every run forks from one interpreter with the imports done
            self._server = subprocess.Popen([sys.executable, str(CHILD), "--serve"], cwd=self.work, env=self.env(),
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert json.loads(self._server.stdout.readline()).get("ready")
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        return json.loads(self._server.stdout.readline())

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=60)
            self._server = None

    def start(self, args: list[str], spec: dict | None = None, trace: bool = False) -> dict:
        """Start `ducktune ARGS` in a child (killed where `spec` says); returns a handle for finish()."""
        self._runs += 1
        spec = dict(spec or {})
        n = self._runs
        spec["marker"] = str(self.work / f"marker-{n}")
        if trace:
            spec["trace"] = str(self.work / f"events-{n}.jsonl")
        spec_file = self.work / f"spec-{n}.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        request = {"op": "start", "spec": str(spec_file), "args": args, "cwd": str(self.work),
                   "out": str(self.work / f"out-{n}.txt"), "err": str(self.work / f"err-{n}.txt")}
        return {"n": n, "pid": self._ask(request)["pid"]}

    def finish(self, handle: dict) -> Outcome:
        code = self._ask({"op": "wait", "pid": handle["pid"]})["code"]
        n = handle["n"]
        events, marker = self.work / f"events-{n}.jsonl", self.work / f"marker-{n}"
        rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.exists() else []
        return Outcome(code, marker.read_text() if marker.exists() else None, (self.work / f"out-{n}.txt").read_text(),
                       (self.work / f"err-{n}.txt").read_text(), rows)

    def run(self, args: list[str], spec: dict | None = None, trace: bool = False) -> Outcome:
        return self.finish(self.start(args, spec, trace))

    def record(self, check: str, label: str, ok: bool, why: str = "") -> None:
        self.results.setdefault(check, []).append((label, ok, why))

    def config(self, name: str, **train) -> Path:
        settings = {"learning_rate": 0.01, "max_steps": STEPS, "batch_size": 2, "save_steps": 2, "save_total_limit": 2,
                    "logging_steps": 1, "warmup_ratio": 0.0, "num_threads": 1, **train}
        config = {"model": {"name_or_path": str(self.model)}, "data": {"datasets": [str(self.data)]},
                  "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "train": settings,
                  "eval": {"max_new_tokens": 4}, "output": {"dir": str(self.work / name)}}
        path = self.work / f"{name}.yaml"
        path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        return path

    def train(self, name: str, spec: dict | None = None, trace: bool = False) -> Outcome:
        return self.run(["train", str(self.work / f"{name}.yaml"), "--no-progress"], spec, trace)

    # ------------------------------------------------------------------ training

    def reference(self) -> None:
        self.config("reference")
        started = time.monotonic()
        outcome = self.train("reference", trace=True)
        if outcome.code != 0:
            raise AssertionError(f"the uninterrupted reference run failed:\n{outcome.err[-3000:]}")
        self.reference_seconds = time.monotonic() - started
        firsts = [row["t"] for row in outcome.events if row["event"] == "first_forward"]
        last = max(row["t"] for row in outcome.events)
        self.training_seconds = last - firsts[0] if firsts else self.reference_seconds
        self.reference_adapter = sha(self.work / "reference" / "adapter" / "adapter_model.safetensors")

    def train_state_problems(self, run: Path) -> list[str]:
        """What is wrong with a run directory right after a kill: anything a rerun could pick up half-written."""
        from safetensors.torch import load_file
        import torch

        from ducktune.train.checkpoints import latest_complete

        problems = []
        for name in ("run.json", "comparison.json"):
            if (run / name).exists():
                try:
                    json.loads((run / name).read_text(encoding="utf-8"))
                except ValueError:
                    problems.append(f"{name} half-written")
        adapter = run / "adapter"
        if adapter.exists():
            weights = adapter / "adapter_model.safetensors"
            if not weights.is_file() or sha(weights) != self.reference_adapter:
                problems.append("adapter/ is there but is not the final adapter")
            if not (adapter / "adapter_config.json").is_file() or not (adapter / "tokenizer.json").is_file():
                problems.append("adapter/ is incomplete")
        chosen = latest_complete(run / "checkpoints", quarantine=False)
        if chosen is not None:
            try:  # everything the Trainer reads on resume loads
                load_file(str(chosen / "adapter_model.safetensors"))
                for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
                    torch.load(chosen / name, weights_only=False)
                state = json.loads((chosen / "trainer_state.json").read_text())
                assert state["global_step"] == int(chosen.name.split("-")[1])
            except Exception as exc:  # noqa: BLE001 - any failure here is the finding
                problems.append(f"{chosen.name} would be resumed from but does not load: {exc}")
        lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
        for line in lines[:-1]:  # the last line may be cut short by the kill; earlier ones may not
            try:
                json.loads(line)
            except ValueError:
                problems.append("metrics.jsonl has a broken line before the last")
        return problems

    def final_train_problems(self, run: Path, outcome: Outcome) -> list[str]:
        problems = []
        if outcome.code != 0:
            problems.append(f"the last rerun exited {outcome.code}: {outcome.err.strip().splitlines()[-1:]}")
            return problems
        weights = run / "adapter" / "adapter_model.safetensors"
        if not weights.is_file() or sha(weights) != self.reference_adapter:
            problems.append("final adapter differs from the uninterrupted run's")
        info = json.loads((run / "run.json").read_text())
        if info.get("status") != "completed" or not (run / "report.md").is_file():
            problems.append("run not marked completed with its report")
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
                 if '"loss"' in line]
        if steps != list(range(1, STEPS + 1)):
            problems.append(f"metrics steps {steps}")
        leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
        if leftovers:
            problems.append(f"temporaries left: {leftovers}")
        return problems

    def resumed_step(self, run: Path) -> int:
        from ducktune.train.checkpoints import latest_complete

        chosen = latest_complete(run / "checkpoints", quarantine=False)
        return int(chosen.name.split("-")[1]) if chosen else 0

    def local_spec(self, point: dict, run: Path) -> dict:
        """Kill points name global steps; the torch hooks count this process's steps (after the resume point)."""
        spec = {k: v for k, v in point.items() if k not in ("label", "global_step", "after_global_step")}
        start = self.resumed_step(run)
        if "global_step" in point:
            spec["nth"] = point["global_step"] - start
        if "after_global_step" in point:
            spec["after_step"] = point["after_global_step"] - start
        return spec

    def train_chain(self, check: str, name: str, points: list[dict]) -> None:
        """Kill a run at each point in turn (each rerun dies at the next), then let it finish."""
        self.config(name)
        run = self.work / name
        kills = []
        for point in points:
            expected_resume = self.resumed_step(run) if run.exists() else 0
            outcome = self.train(name, self.local_spec(point, run), trace="after_s" in point)
            while "after_s" in point and outcome.code == 0 and not outcome.killed and point["after_s"] > 0.1:
                # The run outpaced the reference (noisy neighbours vary a step 20-40 %): the timer fired
                # after the exit. Not a durability finding; start afresh and kill earlier.
                shutil.rmtree(run)
                point = {**point, "after_s": round(point["after_s"] / 2, 3)}
                outcome = self.train(name, self.local_spec(point, run), trace=True)
            label = point.get("label") or f"timer {point['after_s']:.2f} s"
            if not outcome.killed:
                kills.append((label, [f"not killed (exit {outcome.code}): {outcome.err[-300:]}"]))
                continue
            if "after_s" in point:
                label += f" ({_phase(outcome.events)})"
            problems = self.train_state_problems(run)
            said = [line for line in outcome.out.splitlines() if line.startswith(("Resuming from", "No complete"))]
            if expected_resume and not any(line.endswith(f"checkpoint-{expected_resume}") for line in said):
                problems.append(f"rerun did not resume from checkpoint-{expected_resume}: {said}")
            kills.append((label, problems))
        final = self.train(name)
        self.record_chain(check, kills, self.final_train_problems(run, final))

    def record_chain(self, check: str, kills: list, final: list[str]) -> None:
        """Each kill survived when the state after it was sound and the chain's last rerun matched the reference."""
        for label, problems in kills:
            problems = problems + [f"final rerun: {p}" for p in final]
            self.record(check, label, not problems, "; ".join(problems))

    def train_kills(self) -> None:
        self.train_chain("SIGKILL during training: steps, checkpoint writes, rotation", "chain-steps", [
            {"label": "mid-forward of step 1", "hook": "forward", "after_global_step": 0, "nth": 9},
            {"label": "checkpoint-2 folder just created", "event": "os.mkdir", "match": "*/checkpoints/checkpoint-2"},
            {"label": "checkpoint-2 written but for trainer_state.json", "event": "open",
             "match": "*/checkpoint-2/trainer_state.json"},
            {"label": "step 3 after backward, before the optimizer update", "hook": "optimizer_step", "global_step": 3},
            {"label": "checkpoint-4 weights written, adapter_config.json not", "event": "open",
             "match": "*/checkpoint-4/adapter_config.json"},
            {"label": "mid-forward of step 5", "hook": "forward", "after_global_step": 4, "nth": 25},
            {"label": "rotation: half-way through deleting checkpoint-2", "event": "os.remove", "match": "*",
             "nth": 3, "armed_by": {"event": "shutil.rmtree", "match": "*/checkpoint-2"}},
            {"label": "checkpoint-8 state file being opened", "event": "open",
             "match": "*/checkpoint-8/trainer_state.json"},
        ])
        self.train_chain("SIGKILL while saving the adapter and finishing the run", "chain-adapter", [
            {"label": "adapter weights written to the temporary folder", "event": "open",
             "match": "*/.adapter.*.tmp/adapter_config.json"},
            {"label": "adapter tokenizer being saved", "event": "open", "match": "*/.adapter.*.tmp/tokenizer_config.json"},
            {"label": "adapter folder about to be moved into place", "event": "ducktune.replace_dir", "match": "*/adapter"},
            {"label": "report.md being written (adapter in place, run not marked done)", "event": "open",
             "match": "*/.report.md.*.tmp"},
            {"label": "adapter re-saved over the existing one: swap", "event": "ducktune.replace_dir",
             "match": "*/adapter"},
            {"label": "run.json 'completed' being written", "event": "open", "match": "*/.run.json.*.tmp",
             "armed_by": {"event": "os.rename", "match": "*/report.md"}},
        ])

    def random_kills(self, count: int = 5) -> None:
        """Fresh runs, each killed once at a seeded random moment of its training, then rerun."""
        rng = random.Random(SEED)
        # The timer starts at the first training forward pass; the reference run's last write bounds it.
        span = max(0.2, self.training_seconds * 0.9)
        for i in range(count):
            self.train_chain(f"SIGKILL at seeded random moments (seed {SEED})", f"random-{i}",
                             [{"after_s": round(rng.uniform(0.05, span), 3)}])

    # ------------------------------------------------------------------ damaged checkpoints, full disk, lock

    def crashed_copy(self, name: str, source: str) -> Path:
        target = self.work / name
        shutil.copytree(self.work / source, target)
        config = json.loads((self.work / f"{source}.yaml").read_text())
        config["output"]["dir"] = str(target)
        (self.work / f"{name}.yaml").write_text(json.dumps(config))
        # The run's own config.yaml names its directory: a copy must name the copy.
        text = (target / "config.yaml").read_text().replace(str(self.work / source), str(target))
        (target / "config.yaml").write_text(text)
        return target

    def damaged_checkpoints(self) -> None:
        check = "Damaged checkpoint: set aside with a message, resumed from the one before"
        self.config("crashed")
        outcome = self.train("crashed", {"hook": "optimizer_step", "nth": 7})
        if not outcome.killed:
            self.record(check, "setup", False, f"setup run not killed (exit {outcome.code})")
            return
        damage = {
            "truncated adapter_model.safetensors": lambda c: _truncate(c / "adapter_model.safetensors", 0.6),
            "truncated optimizer.pt": lambda c: _truncate(c / "optimizer.pt", 0.5),
            "trainer_state.json cut short": lambda c: _truncate(c / "trainer_state.json", 0.5),
            "trainer_state.json a JSON list": lambda c: (c / "trainer_state.json").write_text("[1, 2]"),
        }
        for i, (label, spoil) in enumerate(damage.items()):
            run = self.crashed_copy(f"damaged-{i}", "crashed")
            spoil(run / "checkpoints" / "checkpoint-6")
            final = self.train(f"damaged-{i}")
            problems = self.final_train_problems(run, final)
            if "checkpoint-6" not in final.out or "set aside as incomplete-checkpoint-6" not in final.out:
                problems.append("no message about the damaged checkpoint-6")
            if not any(line.startswith("Resuming from") and line.endswith("checkpoint-4") for line in final.out.splitlines()):
                problems.append("did not resume from checkpoint-4")
            self.record(check, label, not problems, "; ".join(problems))

    def disk_full(self) -> None:
        check = "Disk full (ENOSPC) while writing: one-line error, exit 2, previous state intact"
        cases = {
            "checkpoint-4's trainer_state.json": "*/checkpoint-4/trainer_state.json",
            "the adapter (adapter_config.json in the temporary folder)": "*/.adapter.*.tmp/adapter_config.json",
        }
        for i, (label, match) in enumerate(cases.items()):
            name = f"full-{i}"
            self.config(name)
            outcome = self.train(name, {"event": "open", "match": match, "fail": "ENOSPC"})
            run = self.work / name
            problems = _one_line_problems(outcome, "no space left on device")
            if i == 0 and self.resumed_step(run) != 2:
                problems.append("checkpoint-2 is not the intact checkpoint to resume from")
            if i == 1 and ((run / "adapter").exists() or [p for p in run.iterdir() if p.name.startswith(".adapter")]):
                problems.append("a partial adapter folder was left")
            final = self.train(name)
            problems += self.final_train_problems(run, final)
            self.record(check, label, not problems, "; ".join(problems))

    def tmpfs_disk_full(self) -> None:
        """A real full disk: the run directory on a tmpfs that holds one checkpoint, not two."""
        check = "Disk full on a real tmpfs (unshare + mount), then rerun with space"
        if not shutil.which("unshare") or subprocess.run(
                ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode != 0:
            self.skipped.append(f"{check}: skipped, no user namespaces to mount a tmpfs on this machine")
            return
        self.config("tmpfs-run")
        mount, keep = self.work / "tmpfs", self.work / "tmpfs-after"
        mount.mkdir()
        config = json.loads((self.work / "tmpfs-run.yaml").read_text())
        config["output"]["dir"] = str(mount / "run")
        (self.work / "tmpfs-run.yaml").write_text(json.dumps(config))
        spec = self.work / "tmpfs-spec.json"
        spec.write_text("{}")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        child = f"{sys.executable} {CHILD} {spec} -- train {self.work / 'tmpfs-run.yaml'} --no-progress"
        script = (f"mount -t tmpfs -o size=400k tmpfs {mount} && {{ {child} > {self.work}/tmpfs-1.out 2>&1; "
                  f"echo $? > {self.work}/tmpfs-1.code; cp -a {mount}/run {keep}; "
                  f"mount -o remount,size=64m {mount}; {child} > {self.work}/tmpfs-2.out 2>&1; "
                  f"echo $? > {self.work}/tmpfs-2.code; cp -a {mount}/run {self.work}/tmpfs-final; }}")
        subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=env, timeout=600)
        first = Outcome(int((self.work / "tmpfs-1.code").read_text()), None, "",
                        (self.work / "tmpfs-1.out").read_text())
        problems = _one_line_problems(first, "no space left on device")
        if not keep.is_dir() or self.resumed_step(keep) < 2:
            problems.append("no intact checkpoint left after the full disk")
        final = Outcome(int((self.work / "tmpfs-2.code").read_text()), None, (self.work / "tmpfs-2.out").read_text(), "")
        problems += self.final_train_problems(self.work / "tmpfs-final", final)
        self.record(check, "400 KB tmpfs (one checkpoint fits, the second does not)", not problems, "; ".join(problems))

    def two_writers(self) -> None:
        check = "Two writers on one run directory: the second is refused"
        self.config("locked")
        release, marker_wait = self.work / "release", None
        handle = self.start(["train", str(self.work / "locked.yaml"), "--no-progress"],
                            {"event": "open", "match": "*/checkpoint-2/trainer_state.json", "pause_until": str(release)})
        marker_wait = self.work / f"marker-{handle['n']}"
        deadline = time.monotonic() + 240
        while not marker_wait.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        run = self.work / "locked"
        before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
        for label, args in (("second `ducktune train`", ["train", str(self.work / "locked.yaml"), "--no-progress"]),
                            ("`ducktune train --overwrite`", ["train", str(self.work / "locked.yaml"), "--overwrite",
                                                              "--no-progress"])):
            second = self.run(args)
            problems = _one_line_problems(second, "another ducktune process")
            if sorted(str(p.relative_to(run)) for p in run.rglob("*")) != before:
                problems.append("the refused writer changed the run directory")
            self.record(check, label, not problems, "; ".join(problems))
        release.write_text("go")
        final = self.finish(handle)
        problems = self.final_train_problems(run, final)
        self.record(check, "the first writer, released, finishes bit-identical", not problems, "; ".join(problems))

    # ------------------------------------------------------------------ export

    def export_identity(self, folder: Path) -> dict | None:
        """What an export folder holds (None: no folder); GGUF and merged weights by content."""
        if not folder.exists():
            return None
        manifest = json.loads((folder / "export.json").read_text()) if (folder / "export.json").is_file() else None
        files = {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and (p.suffix in (".gguf", ".safetensors") or p.name == "config.json")}
        return {"quants": manifest and manifest["quants"], "files": files}

    def export(self, run: Path, quant: str, spec: dict | None = None, out: Path | None = None) -> Outcome:
        args = ["export", str(run), "--to", "gguf", "--quant", quant, "--no-create", "--prompts", "2"]
        return self.run(args + (["--out", str(out)] if out else []), spec)

    def export_kills(self) -> None:
        check = "SIGKILL during export: the folder is the previous export or the new one"
        run = self.crashed_copy("exported", "reference")
        folder = run / "export"
        refs = {}
        for quant in ("f16", "q8_0"):
            outcome = self.export(run, quant, out=self.work / f"export-{quant}")
            if outcome.code != 0:
                self.record(check, f"reference export {quant}", False, outcome.err[-300:])
                return
            refs[quant] = self.export_identity(self.work / f"export-{quant}")
        if self.export(run, "f16").code != 0 or self.export_identity(folder) != refs["f16"]:
            self.record(check, "exports are reproducible", False, "a second f16 export differs from the first")
            return
        chains = [("f16", "q8_0", [
            ("merged model being saved", {"event": "open", "match": "*/.export.*.tmp/*merged*/config.json"}),
            ("GGUF being written", {"event": "open", "match": "*/.export.*.tmp/*.gguf*"}),
            ("export.json being written", {"event": "open", "match": "*/.export.*.tmp/.export.json.*.tmp"}),
            ("new folder about to be swapped in", {"event": "ducktune.replace_dir", "match": "*/export"}),
        ]), ("q8_0", "f16", [
            ("after the swap, while the previous export is deleted", {"event": "os.remove", "match": "*", "nth": 2,
                                                                     "armed_by": {"event": "ducktune.replace_dir",
                                                                                  "match": "*/export"}}),
        ]), ("f16", "q8_0", [
            # verify.json is written in the temporary folder, before the swap (an interrupted verification
            # leaves the previous export and its report)
            ("verification: verify.json being written", {"event": "open", "match": "*/.export.*.tmp/.verify.json.*.tmp"}),
        ])]
        for previous, new, points in chains:
            kills = []
            for label, spec in points:
                before = self.export_identity(folder)
                outcome = self.export(run, new, spec)
                state = self.export_identity(folder)
                problems = [] if outcome.killed else [f"not killed (exit {outcome.code}): {outcome.err[-300:]}"]
                if state not in (before, refs[new]):
                    problems.append(f"export folder is neither the previous nor the new one: {state}")
                kills.append((f"{label} ({previous} -> {new})", problems))
            final = self.export(run, new)
            problems = [] if final.code == 0 else [f"rerun exited {final.code}: {final.err[-300:]}"]
            if self.export_identity(folder) != refs[new]:
                problems.append("rerun's export differs from the uninterrupted one")
            leftovers = [p.name for p in run.iterdir() if p.name.startswith(".export")]
            if leftovers:
                problems.append(f"temporaries left: {leftovers}")
            self.record_chain(check, kills, problems)

    # ------------------------------------------------------------------ data convert

    def convert_kills(self) -> None:
        check = "SIGKILL during `ducktune data convert`: the output is absent/previous or whole"
        source = self.work / "convert-in.json"
        records = [{"instruction": f"question {i} " + "x" * (i % 50), "output": f"answer {i}"} for i in range(3000)]
        source.write_text(json.dumps(records), encoding="utf-8")
        reference = self.work / "convert-ref.jsonl"
        if self.run(["data", "convert", str(source), str(reference), "--to", "messages"]).code != 0:
            self.record(check, "reference conversion", False, "failed")
            return
        expected = sha(reference)
        points = [("temporary file opened", {"event": "open", "match": "*/.out*.jsonl.*.tmp"}),
                  ("finished temporary file about to be renamed", {"event": "os.rename", "match": "*.tmp -> */out*.jsonl"})]
        for existing in (False, True):
            for label, spec in points:
                out = self.work / f"out-{int(existing)}-{len(self.results.get(check, []))}.jsonl"
                if existing:
                    out.write_text("previous contents\n")
                previous = out.read_bytes() if out.exists() else None
                args = ["data", "convert", str(source), str(out), "--to", "messages", "--force"]
                outcome = self.run(args, spec)
                now = out.read_bytes() if out.exists() else None
                problems = [] if outcome.killed else [f"not killed (exit {outcome.code}): {outcome.err[-300:]}"]
                if now != previous:
                    problems.append("the output changed though the conversion was killed before its rename")
                rerun = self.run(args)
                if rerun.code != 0 or not out.exists() or sha(out) != expected:
                    problems.append("the rerun's output differs from the uninterrupted conversion")
                if [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]:
                    problems.append("temporaries left")
                where = "over a previous file" if existing else "to a new file"
                self.record(check, f"{label}, {where}", not problems, "; ".join(problems))
        spec = {"event": "open", "match": "*/.out-full.jsonl.*.tmp", "fail": "ENOSPC"}
        out = self.work / "out-full.jsonl"
        out.write_text("previous contents\n")
        outcome = self.run(["data", "convert", str(source), str(out), "--to", "messages", "--force"], spec)
        problems = _one_line_problems(outcome, "no space left on device")
        if out.read_text() != "previous contents\n":
            problems.append("previous output damaged")
        self.record("Disk full (ENOSPC) while writing: one-line error, exit 2, previous state intact",
                    "the converted file", not problems, "; ".join(problems))

    # ------------------------------------------------------------------ all of it

    def run_all(self) -> list[dict]:
        started = time.monotonic()
        try:
            self.reference()
            for part in (self.train_kills, self.random_kills, self.export_kills, self.convert_kills,
                         self.damaged_checkpoints, self.disk_full, self.tmpfs_disk_full, self.two_writers):
                part()
        finally:
            self.close()
        self.seconds = time.monotonic() - started
        return self.rows()

    def rows(self) -> list[dict]:
        rows = []
        for check, items in self.results.items():
            failed = [f"{label}: {why}" for label, ok, why in items if not ok]
            labels = "; ".join(label for label, _, _ in items)
            rows.append({"check": check, "tried": len(items), "passed": sum(ok for _, ok, _ in items),
                         "detail": ("FAILED: " + " | ".join(failed)) if failed else labels})
        return rows

    def kill_points(self) -> tuple[int, int]:
        """(tried, survived) over the SIGKILL rows: each row item is one kill point."""
        items = [ok for check, rows in self.results.items() if check.startswith("SIGKILL") for _, ok, _ in rows]
        return len(items), sum(items)

    def report(self) -> dict:
        """docs/reliability/crash.json (the format bench/reliability_report.py renders)."""
        tried, survived = self.kill_points()
        return {
            "title": "Crash safety: SIGKILL at chosen points, full disk, damaged checkpoints, two writers",
            "command": "pytest -m slow tests/test_reliability_crash.py   (or: python tests/crash_harness.py OUT.json)",
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
                           f"{platform.python_version()}, tiny Qwen2-shaped model, 1 thread",
            "rows": self.rows(),
            "notes": [
                f"{survived} of {tried} kill points survived; the harness ran {self._runs} CLI processes in "
                f"{self.seconds:.0f} s.",
                "A kill point is survived when nothing half-written is picked up after it (the checkpoint a resume "
                "would take loads whole, an adapter folder is the final one, an export folder is the previous or the "
                "new one, a converted file is absent/previous or whole) and the chain's rerun ends bit-identical to "
                "an uninterrupted run (adapter_model.safetensors bytes, GGUF and merged weights, converted file).",
                "Kills come from Python audit hooks (file opens, mkdir, renames, deletions, ducktune's folder swap), "
                "torch's global optimizer-step and forward hooks, and seeded timers; each run is a real child process "
                "forked from a server that did the imports once (tests/crash_child.py).",
            ] + self.skipped,
        }


def _phase(events: list[dict]) -> str:
    """Where a timer kill landed, from the child's last write-side events."""
    events = [row for row in events if "/marker-" not in row["path"] and row["event"] != "first_forward"]
    if not events:
        return "before any write"
    last = events[-1]
    path = last["path"]
    step = last["step"]
    if "/checkpoint-" in path and "trainer_state.json" not in path:
        folder = path.split("/checkpoints/")[1].split("/")[0]
        return f"after step {step}, {folder} being written"
    if ".adapter." in path:
        return "adapter being saved"
    return f"after step {step}, last write {Path(path.split(' -> ')[-1]).name}"


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _one_line_problems(outcome: Outcome, phrase: str) -> list[str]:
    problems = []
    if outcome.code != 2:
        problems.append(f"exit code {outcome.code}, not 2")
    errors = outcome.error_lines()
    if len(errors) != 1 or phrase not in errors[0]:
        problems.append(f"expected one error line with '{phrase}', got {errors or outcome.err[-400:]}")
    if "Traceback" in outcome.err:
        problems.append("traceback printed")
    return problems


if __name__ == "__main__":
    # python tests/crash_harness.py docs/reliability/crash.json: the whole harness on a fresh tiny model
    import tempfile

    sys.path.insert(0, str(REPO / "src"))
    from ducktune.io import write_text
    from ducktune.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny-qwen2"
        build_tiny_model(model, arch="qwen2", template="chatml")
        harness = Harness(Path(tmp), model)
        rows = harness.run_all()
        report = harness.report()
    for row in rows:
        print(f"{row['passed']}/{row['tried']}  {row['check']}")
    if len(sys.argv) > 1:
        write_text(sys.argv[1], json.dumps(report, ensure_ascii=False, indent=1) + "\n")
