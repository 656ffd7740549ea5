"""Start the API server: load the models, then hand the app to uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys

from ducktune.errors import UserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None, what: str = "serving") -> str | None:
    """The warning a server bound beyond this machine without an API key prints, or None."""
    if is_loopback(host) or api_key:
        return None
    return (f"warning: {what} on {host} without --api-key: anyone who can reach this machine "
            "can use the model")


def check_server_deps(extra: str) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(f"this command needs FastAPI and uvicorn: pip install 'ducktune[{extra}]'") from None


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a one-line UserError naming the option to change: a taken port is
    --port's fault, an address this machine does not have (or cannot resolve) is --host's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        wrong_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
        option = ("--host (127.0.0.1: this machine only; 0.0.0.0: every network interface)" if wrong_host
                  else "--port")
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another {option}") from None
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail in one line before loading a model, rather than after, when the port is taken."""
    bind_socket(host, port).close()


def run_uvicorn(app, host: str, port: int, sock: socket.socket | None = None) -> None:
    """`sock`: serve on this bound socket (held since before the models loaded) instead of binding."""
    import uvicorn

    # Single process, no reload: the models live in this process's memory.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn shut down gracefully, then re-raised the signal
        pass


def runtime_label(engine) -> str:
    """'transformers', or llama.cpp and the GGUF file it runs: an export holds several quants, each answering
    a little differently from the run, so the user sees which one answers."""
    gguf = getattr(engine, "gguf", None)
    if gguf is None:
        return "transformers"
    return f"llama.cpp: {gguf.name}" + (f", the {engine.quant} quant" if getattr(engine, "quant", None) else "")


def other_quants_hint(path: str | None, model) -> str | None:
    """How to serve another of an export folder's GGUFs than the one picked (its Modelfile's), or None."""
    from pathlib import Path

    from ducktune.serve.llamacpp import export_ggufs

    served = getattr(model.engine, "gguf", None)
    if path is None or served is None:
        return None
    others = {quant: file for quant, file in export_ggufs(Path(path).expanduser()).items() if file.name != served.name}
    if not others:
        return None
    quant, file = next(iter(others.items()))
    return (f"This export also has {', '.join(others)}; to serve {quant} instead: "
            f"ducktune serve --gguf {file} --name {model.id}")


def serve(path: str | None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          with_base: bool = False, name: str | None = None, device: str = "auto", max_queue: int = 64,
          gguf: str | None = None, engine: str = "auto") -> None:
    check_server_deps("serve")
    from ducktune.serve.app import create_app
    from ducktune.serve.registry import StaticRegistry, load_path

    # Bound before the models load (minutes, maybe): a port or address it cannot have fails at once, and
    # --port 0 has its real port to print.
    sock = bind_socket(host, port)
    models = []
    try:
        warning = exposure_warning(host, api_key)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        models = load_path(path, with_base=with_base, name=name, device=device, max_queue=max_queue, gguf=gguf,
                           engine=engine)
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        print(f"Serving {', '.join(m.id for m in models)} ({runtime_label(models[0].engine)}; OpenAI-compatible) "
              f"at http://{shown}:{sock.getsockname()[1]}/v1" + (" (API key required)" if api_key else ""), flush=True)
        hint = other_quants_hint(path, models[0]) if gguf is None else None
        if hint:
            print(hint, flush=True)
        run_uvicorn(create_app(StaticRegistry(models), api_key=api_key), host, port, sock)
    finally:
        sock.close()
        for model in models:  # llama.cpp contexts freed before the interpreter tears its bindings down
            getattr(model.engine, "close", lambda: None)()
