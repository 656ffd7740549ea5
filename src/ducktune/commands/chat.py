import sys

from ducktune.commands import add_parser, positive_int, temperature


def register(sub) -> None:
    p = add_parser(sub, "chat", "chat with a tuned model (base + adapter, streaming, multi-turn)",
                   "Multi-turn streaming chat with a run's model: the base model plus the adapter, unmerged, with "
                   "the run's chat template and stop tokens. An export folder (or --gguf FILE) runs its GGUF with "
                   "llama.cpp when llama-cpp-python is installed (faster on CPU), with the same template and stop "
                   "tokens. Inside: /reset, /system TEXT, /exit.",
                   "  ducktune chat runs/quickstart\n  ducktune chat runs/quickstart --base\n"
                   "  ducktune chat runs/quickstart/export\n  ducktune chat --gguf runs/quickstart/export/duckling-q4_k_m.gguf\n"
                   "  echo 'Who are you?' | ducktune chat runs/quickstart")
    p.add_argument("run_dir", metavar="RUN_DIR|EXPORT_DIR", nargs="?", help="run directory or export folder")
    p.add_argument("--gguf", metavar="FILE", help="chat with this GGUF file through llama.cpp")
    p.add_argument("--engine", default="auto", choices=["auto", "transformers", "llama.cpp"],
                   help="for an export folder: auto (default) runs its GGUF with llama.cpp when installed")
    p.add_argument("--base", action="store_true", help="chat with the untuned base model")
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--temperature", type=temperature, default=0.0, help="0 = greedy (default)")
    p.add_argument("--system", default=None, help="system prompt for this session")
    p.add_argument("--tools", metavar="FILE", default=None,
                   help="a JSON file of tools the model may call (OpenAI's tools list, or function descriptions); "
                        "its calls are shown and /result TEXT answers them")
    p.set_defaults(func=chat)

    p = add_parser(sub, "compare", "base vs tuned answers side by side",
                   "Answer prompts with the base and the tuned model (greedy) and print them side by side.",
                   "  ducktune compare runs/quickstart\n  ducktune compare runs/quickstart --prompts questions.txt --json")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--prompts", help="a text file, one prompt per line (default: the run's probe prompts)")
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=compare)


def chat(args) -> int:
    from ducktune.chat.repl import chat_repl
    from ducktune.errors import UserError

    if args.run_dir is None and args.gguf is None:
        raise UserError("chat: give a run directory, an export folder, or --gguf FILE")
    engine = None
    if args.gguf is not None or _is_export(args.run_dir):
        from ducktune.serve.registry import load_engine

        engine = load_engine(args.run_dir, args.gguf, args.engine, log=lambda *a: None)
        if engine is not None and args.base:
            raise UserError("--base needs a run directory (a GGUF has no separate base)")
        if engine is None:  # an export folder without llama.cpp, or --engine transformers: its merged/ model
            from ducktune.serve.registry import load_path

            engine = load_path(args.run_dir, with_base=args.base, engine="transformers", log=lambda *a: None)[0].engine
        from ducktune.serve.server import runtime_label

        # An export holds several quants, each answering a little differently: say which file answers
        # (on stderr: piped chat's stdout is the answers alone).
        print(f"Chatting with {runtime_label(engine)}", file=sys.stderr)
    tools = _read_tools(args.tools) if args.tools else None
    try:
        if engine is None and tools:
            from ducktune.chat.engine import ChatEngine

            engine = ChatEngine.from_run(args.run_dir, base_only=args.base)
        if tools:
            _refuse_unwritten_tools(engine.chat_format, args.tools)
        chat_repl(args.run_dir, base_only=args.base, max_new_tokens=args.max_new_tokens,
                  temperature=args.temperature, system=args.system, engine=engine, tools=tools)
    finally:
        getattr(engine, "close", lambda: None)()  # llama.cpp's context, before interpreter shutdown
    return 0


def _read_tools(path: str) -> list[dict]:
    """--tools FILE: read before any model loads; a bad file is one line naming it."""
    import json
    from pathlib import Path

    from ducktune.data.formats import read_tools
    from ducktune.errors import UserError

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--tools {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UserError(f"--tools {path}: not valid JSON ({exc})") from None
    tools, issues = read_tools(value, path)
    if issues:
        raise UserError(f"--tools {issues[0].file}: {issues[0].field}: {issues[0].message}")
    if not tools:
        raise UserError(f"--tools {path}: no tools in it (a JSON list of function descriptions)")
    return tools


def _refuse_unwritten_tools(chat_format, path: str) -> None:
    from ducktune.chat.tool_calls import template_tool_parts
    from ducktune.data.formats import TOOL_PARTS
    from ducktune.errors import UserError

    missing = [part for part in TOOL_PARTS if part not in template_tool_parts(chat_format)]
    if missing:
        raise UserError(f"--tools {path}: this model's chat template does not write tool {', '.join(missing)}")


def _is_export(path: str | None) -> bool:
    from pathlib import Path

    return path is not None and (Path(path) / "export.json").is_file()


def compare(args) -> int:
    from ducktune.chat.compare import run_compare

    run_compare(args.run_dir, prompts_file=args.prompts, max_new_tokens=args.max_new_tokens, as_json=args.json)
    return 0
