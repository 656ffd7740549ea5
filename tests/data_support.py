"""Helpers shared by the data tests (test_data_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ducktune.cli import main


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def chat(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `ducktune ARGS` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def problem_lines(output: str) -> list[str]:
    """The `file:line: field: what` lines of a `data check` report."""
    lines = output.splitlines()
    if not any(line.startswith("Problems (") for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if line.startswith("Problems ("))
    out = []
    for line in lines[start + 1:]:
        if line.startswith(("Usable:", "... and")):
            break
        out.append(line)
    return out


ALTERNATING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# A record of glaiveai/glaive-function-calling-v2: two functions listed in the system text, a call (its
# arguments JSON text in single quotes), the function's response, the answer, and a turn more.
GLAIVE_SYSTEM = ("SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
                 + json.dumps({"name": "get_exchange_rate", "description": "Exchange rate of two currencies",
                               "parameters": {"type": "object", "properties": {"base": {"type": "string"}}}}, indent=4)
                 + "\n" + json.dumps({"name": "get_news", "parameters": {"type": "object", "properties": {}}}, indent=4))
GLAIVE_CHAT = ("USER: Rate from USD to EUR?\n\n\nASSISTANT: <functioncall> {\"name\": \"get_exchange_rate\", "
               "\"arguments\": '{\"base\": \"USD\"}'} <|endoftext|>\n\n\nFUNCTION RESPONSE: {\"rate\": 0.85}\n\n\n"
               "ASSISTANT: It is 0.85. <|endoftext|>\n\n\nUSER: Thanks!\n\n\nASSISTANT: You're welcome! <|endoftext|>\n")
