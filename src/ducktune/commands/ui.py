import sys

from ducktune.commands import add_parser, port_number


def register(sub) -> None:
    p = add_parser(sub, "ui", "web UI: data, training, chat, export and past runs in the browser",
                   "A web page for the whole pipeline: check and preview a dataset, train with a form generated "
                   "from the config schema (it saves the YAML and runs `ducktune train` on it), watch the loss, "
                   "chat with the base and tuned models side by side, export, and browse past runs. English and "
                   "Chinese. Works offline; binds 127.0.0.1 unless --host says otherwise. Dataset uploads up to 4 GiB, "
                   "other request bodies up to 8 MiB (else 413); uploads only ever land in RUNS_DIR/.ui/uploads.",
                   "  ducktune ui\n  ducktune ui --port 8080 --runs-dir ~/ducktune-runs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--runs-dir", default="runs", help="folder of run directories (default: runs)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where the Chat tab runs models")
    p.set_defaults(func=run)


def run(args) -> int:
    from ducktune.serve.server import check_port_free, check_server_deps, is_loopback, run_uvicorn

    check_server_deps("ui")
    check_port_free(args.host, args.port)
    from ducktune.ui.app import create_ui_app

    if not is_loopback(args.host):
        print(f"warning: the UI on {args.host} lets anyone who can reach this machine train and run models "
              "(it has no login)", file=sys.stderr, flush=True)
    app = create_ui_app(args.runs_dir, device=args.device, loopback_only=is_loopback(args.host))
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    print(f"ducktune UI at http://{shown}:{args.port}/  (runs folder: {args.runs_dir})", flush=True)
    run_uvicorn(app, args.host, args.port)
    return 0
