"""CLI subcommands. Each module defines `register(subparsers)` and keeps heavy imports
inside its handlers, so building the parser (and `ducktune --help`) stays instant."""

import argparse

# Order = order in `ducktune --help`.
MODULES = [
    "ducktune.commands.quickstart",
    "ducktune.commands.train",
    "ducktune.commands.plan",
    "ducktune.commands.chat",
    "ducktune.commands.eval",
    "ducktune.commands.data",
    "ducktune.commands.serve",
    "ducktune.commands.ui",
    "ducktune.commands.export",
    "ducktune.commands.models",
]


def add_parser(sub, name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand parser whose --help ends with examples."""
    return sub.add_parser(name, help=help, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def port_number(text: str) -> int:
    """argparse type for --port: 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (got {value})")
    return value


def temperature(text: str) -> float:
    """argparse type for --temperature: a number from 0 (greedy) to 2, as OpenAI's API takes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be 0 (greedy) to 2 (got {text})")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts and token limits: an int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value
