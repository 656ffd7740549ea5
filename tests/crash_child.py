"""Run the ducktune CLI in this process and SIGKILL it at a chosen point (the crash harness's child).

    python tests/crash_child.py SPEC.json -- train cfg.yaml --no-progress

SPEC.json says where to die, through documented observation points only (no patching):

- Python's audit hooks (`sys.addaudithook`): the Nth write-side event whose path matches a
  glob: `open` for writing, `os.mkdir`, `os.rename` (rename and replace), `os.remove`,
  `shutil.rmtree`, and ducktune's own `ducktune.replace_dir` (the folder swap in ducktune.io).
  Writes done inside C/Rust (torch.save, safetensors) raise no event; the events around them do.
- torch's global hooks: the Nth optimizer step (after backward, before the weights change;
  `torch.optim.optimizer.register_optimizer_step_pre_hook`) or the Mth module forward call
  after the Nth optimizer step (`torch.nn.modules.module.register_module_forward_hook`).
- a timer: `after_s` seconds after the first training forward pass.

{"trace": "events.jsonl"} kills nothing and records every write-side event instead; the harness
picks its kill points from such a trace. Before dying the child writes SPEC["marker"] (outside the
run directory) with the event it died at, so the harness knows the kill happened where meant.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
import threading

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
        self.timer_started = False

    def die(self, where: str) -> None:
        marker = self.spec.get("marker")
        if marker:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, where.encode("utf-8", "replace"))
            os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    def audit(self, event: str, args: tuple) -> None:
        path = _write_side(event, args)
        if path is None:
            return
        if event == "os.rename" or event == "ducktune.replace_dir":
            path = f"{path} -> {os.fsdecode(args[1])}"
        if self.trace is not None:
            self.trace.write(json.dumps({"event": event, "path": path, "step": self.steps}) + "\n")
            self.trace.flush()
            return
        want = self.spec.get("event")
        if want and event == want and fnmatch.fnmatch(path, self.spec["match"]):
            self.count += 1
            if self.count == self.spec.get("nth", 1):
                self.die(f"{event} {path}")

    def optimizer_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if self.spec.get("hook") == "optimizer_step" and self.steps == self.spec["nth"]:
            self.die(f"optimizer step {self.steps} (before the update)")

    def forward(self, module, args, output) -> None:
        if self.spec.get("after_s") and not self.timer_started and module.training:
            self.timer_started = True
            timer = threading.Timer(self.spec["after_s"], self.die, args=(f"timer {self.spec['after_s']} s",))
            timer.daemon = True
            timer.start()
        if self.spec.get("hook") == "forward" and self.steps == self.spec.get("after_step", 0) and module.training:
            self.forwards += 1
            if self.forwards == self.spec["nth"]:
                self.die(f"forward call {self.forwards} of step {self.steps + 1} ({type(module).__name__})")


def main(argv: list[str]) -> int:
    spec_path, rest = argv[0], argv[argv.index("--") + 1:]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    killer = Killer(spec)
    sys.addaudithook(killer.audit)
    if spec.get("hook") or spec.get("after_s") or spec.get("trace"):
        from torch.nn.modules.module import register_module_forward_hook
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        register_optimizer_step_pre_hook(killer.optimizer_step)
        if not spec.get("trace"):
            register_module_forward_hook(killer.forward)
    from ducktune.cli import main as cli_main

    return cli_main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
