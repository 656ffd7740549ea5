"""Render an Ollama TEMPLATE with Go's real text/template.

The Go program (go/main.go, standard library only) is built once with the local Go
toolchain, offline (GOPROXY=off), into ducktune's cache; the binary's name carries a hash
of its source so an edited program is rebuilt. Without a `go` command the check is skipped
with a message saying how to get one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from ducktune.models.builtin import cache_root


class GoUnavailable(Exception):
    """No Go toolchain (or the build failed); the reason is the message."""


def _source_dir() -> Path:
    return Path(str(resources.files("ducktune.export").joinpath("go")))


def renderer_binary() -> Path:
    go = shutil.which("go")
    if go is None:
        raise GoUnavailable("Go is not installed (Debian/Ubuntu: apt-get install golang-go; macOS: brew install go)")
    source = _source_dir()
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((source / name).read_bytes())
    target = cache_root() / "bin" / f"ollama-template-{digest.hexdigest()[:12]}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ducktune-go-") as work:
        # Build from a copy: the installed package folder may be read-only.
        build_dir = Path(work) / "src"
        shutil.copytree(source, build_dir)
        tmp_out = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod", GO111MODULE="on", CGO_ENABLED="0")
        env.setdefault("GOCACHE", str(cache_root() / "go-build"))
        result = subprocess.run([go, "build", "-o", str(tmp_out), "."], cwd=build_dir, env=env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            tmp_out.unlink(missing_ok=True)
            raise GoUnavailable(f"building the Go template renderer failed: {result.stderr.strip()[:400]}")
        os.replace(tmp_out, target)
    return target


def render_with_go(template: str, conversations: list[list[dict]], system: str | None = None) -> list[str]:
    """Render `template` for each conversation as Ollama's chat endpoint would (SYSTEM prepended,
    same-role messages merged). Raises GoUnavailable, or ValueError when Go rejects the template."""
    binary = renderer_binary()
    request = json.dumps({"template": template, "system": system or "", "conversations": conversations})
    result = subprocess.run([str(binary)], input=request, capture_output=True, text=True, timeout=60)
    try:
        reply = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ValueError(f"the Go renderer failed: {result.stderr.strip()[:400] or result.stdout[:400]}") from None
    if reply.get("error"):
        raise ValueError(reply["error"])
    return reply["renders"]
