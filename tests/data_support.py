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


# A record of NousResearch/hermes-function-calling-v1 (sharegpt): the functions between <tools> tags in the
# system text as a Python literal, two calls in one answer (Python literals: single quotes, True), both
# results in one tool turn, the answer.
HERMES_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools> </tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    "values to plug into functions.\n<tools>\n[{'type': 'function', 'function': {'name': 'search_flights', "
    "'description': 'Searches for flights.', 'parameters': {'type': 'object', 'properties': {'city': {'type': "
    "'string'}, 'flexible': {'type': 'boolean'}}, 'required': ['city']}}}, {'type': 'function', 'function': "
    "{'name': 'book_flight', 'description': 'Books a flight.', 'parameters': {'type': 'object', 'properties': "
    "{'number': {'type': 'string'}}}}}]\n</tools>\nFor each function call return a json object with function name "
    "and arguments within <tool_call> </tool_call> tags with the following schema:\n<tool_call>\n"
    "{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>\n")
HERMES_RECORD = {"id": "753d8365", "conversations": [
    {"from": "system", "value": HERMES_SYSTEM},
    {"from": "human", "value": "Flights to Auckland or Sydney, flexible?"},
    {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Auckland', 'flexible': True}, 'name': "
                             "'search_flights'}\n</tool_call>\n<tool_call>\n{'arguments': {'city': 'Sydney'}, "
                             "'name': 'search_flights'}\n</tool_call>\n"},
    {"from": "tool", "value": "<tool_response>\n{\"name\": \"search_flights\", \"content\": {'flights': ['NZ6'], "
                              "'price': None}}\n</tool_response>\n<tool_response>\n{\"name\": \"search_flights\", "
                              "\"content\": \"no flights\"}\n</tool_response>\n"},
    {"from": "gpt", "value": "NZ6 flies to Auckland; nothing to Sydney."}],
    "category": "E-commerce Platforms", "task": "Flight Search"}
