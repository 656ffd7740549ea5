"""Run the ducktune CLI in this process and SIGKILL it at a chosen point (the crash harness's child).

    python tests/crash_child.py SPEC.json -- train cfg.yaml --no-progress
    python tests/crash_child.py --serve      a fork server for many such runs (see serve())

SPEC.json says where to die, through documented observation points only (no patching):

- Python's audit hooks (`sys.addaudithook`): the Nth write-side event whose path matches a
  glob: `open` for writing, `os.mkdir`, `os.rename` (rename and replace), `os.remove`,
  `shutil.rmtree`, and ducktune's own `ducktune.replace_dir` (the folder swap in ducktune.io).
  Writes done inside C/Rust (torch.save, safetensors) raise no event; the events around them do.
- torch's global hooks: the Nth optimizer step (after backward, before the weights change;
  `torch.optim.optimizer.register_optimizer_step_pre_hook`) or the Mth module forward call
  after the Nth optimizer step (`torch.nn.modules.module.register_module_forward_hook`).
- a timer: `after_s` seconds after the first training forward pass.

"armed_by": {event, match} counts matching events only after that event; "fail": "ENOSPC" makes
the chosen write fail (a full disk) instead of killing; "pause_until": PATH holds the process at
the chosen event until PATH exists (a writer caught in the middle of its run).
"trace": "events.jsonl" records every write-side event (the harness reads the last one before a
kill). At the chosen point the child writes SPEC["marker"] (outside the run directory) with the
event, so the harness knows the kill happened where meant.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import signal
import sys
import threading
import time

WRITE_EVENTS = ("open", "os.mkdir", "os.rename", "os.remove", "shutil.rmtree", "ducktune.replace_dir")


def _write_side(event: str, args: tuple) -> str | None:
    """The path a write-side audit event touches (None for reads and other events)."""
    if event not in WRITE_EVENTS or not args:
        return None
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        if isinstance(mode, str):
            writes = any(c in mode for c in "wax+")
        else:
            writes = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if not writes:
            return None
    path = args[0]
    if isinstance(path, int):
        return None
    return os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else None


class Killer:
    def __init__(self, spec: dict):
        self.spec = spec
        self.count = 0
        self.steps = 0
        self.forwards = 0
        self.trace = open(spec["trace"], "a", encoding="utf-8") if spec.get("trace") else None
        self.started = False
        self.armed = False

    def mark(self, where: str) -> None:
        marker = self.spec.get("marker")
        if marker:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, where.encode("utf-8", "replace"))
            os.close(fd)

    def die(self, where: str) -> None:
        self.mark(where)
        os.kill(os.getpid(), signal.SIGKILL)

    def act(self, where: str, path: str) -> None:
        """At the chosen event: die, fail the write (a full disk), or wait (a writer caught mid-run)."""
        if self.spec.get("fail"):
            self.mark(where)
            code = getattr(errno, self.spec["fail"])
            raise OSError(code, os.strerror(code), path)
        if self.spec.get("pause_until"):
            self.mark(where)
            deadline = time.monotonic() + 300
            while not os.path.exists(self.spec["pause_until"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            return
        self.die(where)

    def audit(self, event: str, args: tuple) -> None:
        path = _write_side(event, args)
        if path is None:
            return
        shown = f"{path} -> {os.fsdecode(args[1])}" if event in ("os.rename", "ducktune.replace_dir") else path
        if self.trace is not None:
            self.trace.write(json.dumps({"event": event, "path": shown, "step": self.steps, "t": time.time()}) + "\n")
            self.trace.flush()
        armed_by = self.spec.get("armed_by")
        if armed_by and not self.armed:
            self.armed = event == armed_by["event"] and fnmatch.fnmatch(shown, armed_by["match"])
            return
        if event == self.spec.get("event") and fnmatch.fnmatch(shown, self.spec["match"]):
            self.count += 1
            if self.count == self.spec.get("nth", 1):
                self.act(f"{event} {shown}", path)

    def optimizer_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if self.spec.get("hook") == "optimizer_step" and self.steps == self.spec["nth"]:
            self.die(f"optimizer step {self.steps} (before the update)")

    def forward(self, module, args, output) -> None:
        if not module.training:  # generation for the report, not training
            return
        if not self.started:
            self.started = True
            if self.trace is not None:  # the harness times its random kills from here
                self.trace.write(json.dumps({"event": "first_forward", "path": "", "step": 0, "t": time.time()}) + "\n")
                self.trace.flush()
            if self.spec.get("after_s"):
                timer = threading.Timer(self.spec["after_s"], self.die, args=(f"timer {self.spec['after_s']} s",))
                timer.daemon = True
                timer.start()
        if self.spec.get("hook") == "forward" and self.steps == self.spec.get("after_step", 0):
            self.forwards += 1
            if self.forwards == self.spec["nth"]:
                self.die(f"forward call {self.forwards} of step {self.steps + 1} ({type(module).__name__})")


def run_cli(spec: dict, args: list[str]) -> int:
    killer = Killer(spec)
    sys.addaudithook(killer.audit)
    if spec.get("hook") or spec.get("after_s") or spec.get("trace"):
        from torch.nn.modules.module import register_module_forward_hook
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        register_optimizer_step_pre_hook(killer.optimizer_step)
        register_module_forward_hook(killer.forward)
    from ducktune.cli import main as cli_main

    return cli_main(args)


# What every run imports anyway; the server imports it once, and each run forks from there.
PRELOAD = ["torch", "transformers", "peft", "safetensors.torch", "ducktune.cli", "ducktune.train.recipe",
           "ducktune.train.trainer", "ducktune.export.pipeline", "ducktune.export.merge", "ducktune.data.convert",
           "ducktune.chat.engine"]


def serve() -> None:
    """Fork server: import once, then per request fork a child that runs one CLI command.

    Requests are JSON lines on stdin: {"op": "start", "spec", "args", "cwd", "out", "err"} answers
    {"pid"}; {"op": "wait", "pid"} answers {"code"} (-9 for a SIGKILLed child). Each child is a
    real process, killed for real; it only skips the interpreter start and the imports.
    """
    import importlib
    import traceback

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"code": code}), flush=True)
            continue
        pid = os.fork()
        if pid:
            print(json.dumps({"pid": pid}), flush=True)
            continue
        code = 1
        try:
            os.chdir(request["cwd"])
            for fd, path in ((1, request["out"]), (2, request["err"])):
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            sys.stdin = open(os.devnull)
            with open(request["spec"], encoding="utf-8") as handle:
                spec = json.load(handle)
            code = run_cli(spec, request["args"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is a finding: print it as the CLI would
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        serve()
        return 0
    spec_path, rest = argv[0], argv[argv.index("--") + 1:]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    return run_cli(spec, rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
