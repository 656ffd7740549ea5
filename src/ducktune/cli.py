"""The `ducktune` command line.

Subcommands live in `ducktune.commands.*`; heavy libraries (torch, transformers) are
imported inside their handlers, so `ducktune --help` answers instantly. User mistakes
(`UserError`) print one line per problem and exit with code 2, without a traceback; so does
a full disk (ENOSPC), whatever wrote.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

EXAMPLES = """\
examples:
  ducktune quickstart                              fine-tune the built-in model on a persona, compare, export
  ducktune train my.yaml --set train.learning_rate=1e-4
  ducktune chat runs/my-run                        chat with the tuned model (streaming, multi-turn)
  ducktune compare runs/my-run --prompts q.txt     base vs tuned, side by side
"""


def build_parser() -> argparse.ArgumentParser:
    from ducktune import __version__
    from ducktune.commands import MODULES

    parser = argparse.ArgumentParser(
        prog="ducktune",
        description="Fine-tune small chat models with LoRA on a laptop, a Mac or one small GPU, and ship them to Ollama.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ducktune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _quiet_libraries()
    from ducktune.errors import UserError

    try:
        return args.func(args) or 0
    except UserError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `ducktune ... | head`: the reader went away; not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        from ducktune.io import disk_full

        full = disk_full(exc)
        if full is None:
            raise
        # A full disk is the user's to fix, not a bug: one line, and what to do next.
        print(f"error: {disk_full_message(full)}", file=sys.stderr)
        return 2


def disk_full_message(full: OSError) -> str:
    """One line for a write that failed for lack of space (or over the file size limit): where, what to do."""
    import errno

    where = f"{full.filename}: " if full.filename else ""
    again = "run the same command again (an interrupted `ducktune train` resumes from its last complete checkpoint)"
    if full.errno == errno.EFBIG:
        return (f"{where}file too large for this file system or for the file size limit (ulimit -f; FAT32 holds "
                f"at most 4 GB); write to another file system (e.g. export --out) or raise the limit, then {again}")
    return f"{where}no space left on device; free some space and {again}"


def _quiet_libraries() -> None:
    """Library chatter (weight-loading bars, deprecation notices) hides ducktune's own output."""
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for module in ("transformers", "peft", "torch", "accelerate", "trl"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    import logging

    # bitsandbytes (imported by PEFT whenever it is installed) warns on import, on CPUs with AVX-512
    # bf16, that an optional kernel package is missing: nothing a LoRA user needs to act on.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
