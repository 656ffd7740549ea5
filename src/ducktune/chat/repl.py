"""`ducktune chat`: a multi-turn, streaming terminal chat."""

from __future__ import annotations

import json
import re
import sys


COMMAND = re.compile(r"/[A-Za-z]+")  # "/usr/bin is..." or "/ 2" are messages, not commands
HELP = "Commands: /reset (new conversation), /system TEXT (set the system prompt), /exit. Ctrl-D also exits."
TOOLS_HELP = "/result TEXT answers the model's tool call with TEXT (the tool's result)."


def chat_repl(run_dir: str, base_only: bool = False, max_new_tokens: int = 256, temperature: float = 0.0,
              system: str | None = None, stdin=None, stdout=None, engine=None, tools: list[dict] | None = None) -> None:
    """`engine`: answer with this one (e.g. llama.cpp on an export) instead of loading the run's. `tools`:
    functions the model is offered (OpenAI's list); its calls are shown, and /result answers them."""
    from ducktune.chat.engine import ChatEngine

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    engine = engine or ChatEngine.from_run(run_dir, base_only=base_only)
    label = "base" if base_only else "tuned"
    interactive = stdin.isatty()
    if interactive:
        print(f"Chatting with {engine.name} ({label}). {HELP}" + (f" {TOOLS_HELP}" if tools else ""), file=stdout)
    history: list[dict] = []
    pending: list[dict] = []  # the calls of the last answer that no /result has answered yet
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
            history, pending = [], []
            print("(new conversation)", file=stdout)
            continue
        if command == "/system":
            system = argument.strip() or None
            history, pending = [], []
            print(f"(system prompt: {system or 'template default'}; new conversation)", file=stdout)
            continue
        if command == "/result" and tools:
            if not pending:
                print("(no tool call to answer)", file=stdout)
                continue
            call = pending.pop(0)
            turn = {"role": "tool", "content": argument.strip(), "tool_call_id": call["id"], "name": call["function"]["name"]}
            if pending:  # parallel calls: the model answers once every result is in
                history.append(turn)
                print(f"(result of {call['function']['name']} noted; {len(pending)} more to answer)", file=stdout)
                continue
        elif COMMAND.fullmatch(command):  # a mistyped command, not a message: the model would answer it
            print(f"unknown command {command}; {HELP[0].lower()}{HELP[1:]}", file=stdout)
            continue
        else:
            turn = {"role": "user", "content": text}
        messages = ([{"role": "system", "content": system}] if system else []) + history + [turn]
        print(f"{label}> " if interactive else "", end="", file=stdout, flush=True)
        answer = _answer(engine, messages, max_new_tokens, temperature, tools, stdout)
        pending = list(answer.get("tool_calls") or [])
        history += [turn, answer]


def _answer(engine, messages: list[dict], max_new_tokens: int, temperature: float, tools: list[dict] | None,
            stdout) -> dict:
    """Stream one answer to the terminal; the assistant message for the history (with its calls, which
    are shown, when it made any)."""
    from ducktune.chat.call_gate import CallGate
    from ducktune.chat.compare import terminal_text
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls

    pieces, finished, thought = [], [], []
    # Offered tools: the answer's text is shown up to its calls (never their markup), the calls once read.
    gate = (CallGate.for_format(engine.chat_format) or CallGate(None)) if tools else CallGate(None)

    def show_reasoning(text: str) -> None:  # the generating thread, before the answer's first piece
        print(("(thinking) " if not thought else "") + terminal_text(text), end="", file=stdout, flush=True)
        thought.append(text)

    for piece in engine.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature,
                               on_finish=finished.append, tools=tools, on_reasoning=show_reasoning):
        if thought and not pieces:
            print("\n", file=stdout, flush=True)  # the answer starts below its reasoning
        pieces.append(piece)
        print(terminal_text(gate.feed(piece)), end="", file=stdout, flush=True)
    parsed = parse_tool_calls(finished[0].raw_text, call_syntax(engine.chat_format), engine.chat_format.answer_frame,
                              tools) if tools and finished else None
    print(terminal_text(gate.rest()) if parsed is None else "", file=stdout, flush=True)
    if parsed is None:
        return {"role": "assistant", "content": "".join(pieces)}
    calls = [{"id": f"call{i:05d}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
             for i, c in enumerate(parsed[1], start=len(messages))]
    for call in calls:
        print(f"(calls {call['function']['name']}({json.dumps(call['function']['arguments'], ensure_ascii=False)}): "
              "answer with /result TEXT)", file=stdout)
    return {"role": "assistant", "content": parsed[0], "tool_calls": calls}
