"""`ducktune chat`: a multi-turn, streaming terminal chat."""

from __future__ import annotations

import re
import sys


COMMAND = re.compile(r"/[A-Za-z]+")  # "/usr/bin is..." or "/ 2" are messages, not commands
HELP = "Commands: /reset (new conversation), /system TEXT (set the system prompt), /exit. Ctrl-D also exits."


def chat_repl(run_dir: str, base_only: bool = False, max_new_tokens: int = 256, temperature: float = 0.0,
              system: str | None = None, stdin=None, stdout=None, engine=None) -> None:
    """`engine`: answer with this one (e.g. llama.cpp on an export) instead of loading the run's."""
    from ducktune.chat.compare import terminal_text
    from ducktune.chat.engine import ChatEngine

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    engine = engine or ChatEngine.from_run(run_dir, base_only=base_only)
    label = "base" if base_only else "tuned"
    interactive = stdin.isatty()
    if interactive:
        print(f"Chatting with {engine.name} ({label}). {HELP}", file=stdout)
    history: list[dict] = []
    while True:
        if interactive:
            print("\nyou> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        command, _, argument = text.partition(" ")
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            history = []
            print("(new conversation)", file=stdout)
            continue
        if command == "/system":
            system = argument.strip() or None
            history = []
            print(f"(system prompt: {system or 'template default'}; new conversation)", file=stdout)
            continue
        if COMMAND.fullmatch(command):  # a mistyped command, not a message: the model would answer it
            print(f"unknown command {command}; {HELP[0].lower()}{HELP[1:]}", file=stdout)
            continue
        messages = ([{"role": "system", "content": system}] if system else []) + history + [{"role": "user", "content": text}]
        print(f"{label}> " if interactive else "", end="", file=stdout, flush=True)
        pieces = []
        for piece in engine.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature):
            pieces.append(piece)
            print(terminal_text(piece), end="", file=stdout, flush=True)
        print(file=stdout, flush=True)
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(pieces)}]
