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


def _argument_type(convert, invalid: str, allowed, out_of_range: str):
    """An argparse type: `convert(text)`, refused with argparse's usage error unless `allowed(value)`."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{invalid}: {text!r}") from None
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"{out_of_range} (got {text})")
        return value
    return parse


# --port: 0-65535 (0: any free port).
port_number = _argument_type(int, "invalid port", lambda v: 0 <= v <= 65535, "must be 0-65535")
# --temperature: 0 (greedy) to 2, as OpenAI's API takes.
temperature = _argument_type(float, "invalid number", lambda v: 0.0 <= v <= 2.0, "must be 0 (greedy) to 2")
# A count where 0 means "all": an int of at least 0.
count_or_all = _argument_type(int, "invalid int value", lambda v: v >= 0, "must be 0 (all) or more")
# Counts and token limits: an int of at least 1.
positive_int = _argument_type(int, "invalid int value", lambda v: v >= 1, "must be at least 1")
