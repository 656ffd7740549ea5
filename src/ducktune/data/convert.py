"""`ducktune data convert`: rewrite normalized samples as messages, alpaca or sharegpt.

Lossless means: reading the output back gives the same samples (the same conversations
the model trains on). Where the target cannot hold a record, the conversion is refused
for the whole file, naming every record that does not fit:
- alpaca holds a system prompt, [question, answer] history and one last question/answer
  (a preference pair: the last question, then chosen/rejected, LLaMA-Factory's ranking shape);
  conversations whose turns do not alternate user/assistant and plain text do not fit;
- messages and sharegpt hold every conversation, and preference pairs (prompt turns plus
  chosen/rejected answers); plain text has no turns and fits none of the three;
- unpaired KTO samples are written as their conversation (the completion last) plus `label`,
  LLaMA-Factory's KTO shape, in all three;
- tool calling: messages holds it in OpenAI's shape (`tools`, `tool_calls`, `tool` turns), sharegpt in
  LLaMA-Factory's (`tools` as JSON text, `function_call` and `observation` turns; an answer with both
  text and calls does not fit), alpaca not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from ducktune.data.schema import Issue, Message, Sample
from ducktune.errors import UserError
from ducktune.io import atomic_file

TARGETS = ("messages", "alpaca", "sharegpt")
OUTPUT_SUFFIXES = (".json", ".jsonl")
_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


class DoesNotFit(Exception):
    """A sample the target format cannot hold; the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _unpaired_as_chat(sample: Sample) -> Sample:
    """A KTO sample as the conversation it labels: its prompt, then the completion (its calls included)."""
    completion = (sample.turns or {}).get("completion") or Message("assistant", sample.completion or "")
    fields = list(sample.fields) + ["completion"] if sample.fields else []
    return Sample("chat", messages=list(sample.messages) + [completion], where=sample.where, format=sample.format,
                  fields=fields, tools=sample.tools)


def _labelled(convert):
    """Converters write an unpaired sample as its conversation plus its label."""
    def converted(sample: Sample) -> dict:
        if sample.kind != "unpaired":
            return convert(sample)
        return {**convert(_unpaired_as_chat(sample)), "label": bool(sample.label)}
    converted.__name__ = convert.__name__
    return converted


def to_messages(sample: Sample) -> dict:
    if sample.kind == "text":
        raise DoesNotFit("text", "plain text (continued pre-training) has no conversation turns")
    record = {"messages": sample.message_dicts()}
    if sample.tools:
        record["tools"] = sample.tools
    if sample.kind == "preference":
        turns = sample.turns or {}  # an answer with calls or reasoning: TRL's one-message list
        record.update({name: [turns[name].as_dict()] if name in turns else getattr(sample, name)
                       for name in ("chosen", "rejected")})
    return record


def _refuse_reasoning(sample: Sample, target: str) -> None:
    fields = (sample.fields or [f"turn {i}" for i in range(len(sample.messages))]) + list(sample.turns or {})
    for message, field in zip(list(sample.messages) + list((sample.turns or {}).values()), fields):
        if message.reasoning is not None:
            raise DoesNotFit(field, f"an answer's separate reasoning (reasoning_content) has no {target} field; "
                                    "convert --to messages")


def to_sharegpt(sample: Sample) -> dict:
    if sample.kind == "text":
        raise DoesNotFit("text", "plain text (continued pre-training) has no conversation turns")
    _refuse_reasoning(sample, "sharegpt")
    messages = sample.messages
    record: dict = {}
    if messages and messages[0].role == "system":
        record["system"] = messages[0].content
        messages = messages[1:]
    record["conversations"] = [_sharegpt_turn(m, sample.fields[i + len(sample.messages) - len(messages)]
                                              if sample.fields else f"turn {i}") for i, m in enumerate(messages)]
    if sample.tools:  # LLaMA-Factory's tools column: JSON text of the function descriptions
        record["tools"] = json.dumps([tool["function"] for tool in sample.tools], ensure_ascii=False)
    if sample.kind == "preference":
        for name in ("chosen", "rejected"):
            turn = (sample.turns or {}).get(name)
            record[name] = _sharegpt_turn(turn, name) if turn else {"from": "gpt", "value": getattr(sample, name)}
    return dict(sorted(record.items(), key=lambda kv: kv[0] != "conversations"))


def _sharegpt_turn(message: Message, field: str) -> dict:
    """One turn as LLaMA-Factory writes it: a call is a function_call turn whose text is the JSON call."""
    weight = {} if message.trained else {"weight": 0}
    if message.role == "tool":
        return {"from": "observation", "value": message.content}
    if not message.tool_calls:
        return {"from": _SHAREGPT_ROLE[message.role], "value": message.content, **weight}
    if message.content.strip():
        raise DoesNotFit(field, "an answer with both text and tool calls has no sharegpt turn (a function_call turn "
                                "holds the calls alone); convert --to messages")
    calls = [{"name": c.name, "arguments": c.arguments, **({"id": c.id} if c.id else {})} for c in message.tool_calls]
    return {"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False),
            **weight}


def to_alpaca(sample: Sample) -> dict:
    if sample.kind == "text":
        raise DoesNotFit("text", "plain text (continued pre-training) cannot be an alpaca instruction/output pair")
    if sample.uses_tools:
        raise DoesNotFit("tools", "tool definitions, calls and results have no alpaca field; "
                                  "convert --to messages or --to sharegpt")
    _refuse_reasoning(sample, "alpaca")
    if sample.kind == "preference":  # LLaMA-Factory's alpaca ranking shape: the answers instead of output
        fields = (sample.fields or [""] * len(sample.messages)) + ["chosen"]
        record = _alpaca_record(list(sample.messages) + [Message("assistant", "")], fields)
        del record["output"]
        return {**record, "chosen": sample.chosen, "rejected": sample.rejected}
    return _alpaca_record(sample.messages, sample.fields or [""] * len(sample.messages))


def _alpaca_record(messages: list[Message], fields: list[str]) -> dict:
    """{instruction, input, output, system?, history?} of a conversation ending with an answer."""
    if not all(m.trained for m in messages):
        raise DoesNotFit("weight", "a turn marked untrained (weight 0) cannot be an alpaca chat; "
                                   "convert it --to messages or --to sharegpt")
    system = None
    if messages[0].role == "system":
        system, messages, fields = messages[0].content, messages[1:], fields[1:]
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.role != expected:
            where = fields[i] or f"turn {i}"
            article = "a user" if expected == "user" else "an assistant"
            raise DoesNotFit(where, f"turns do not alternate user/assistant here ({message.role} turn where "
                                    f"{article} turn belongs); alpaca holds only question/answer pairs, "
                                    "convert --to messages or --to sharegpt")
    pairs = [(messages[i].content, messages[i + 1].content) for i in range(0, len(messages), 2)]
    record = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system is not None:
        record["system"] = system
    if len(pairs) > 1:
        record["history"] = [list(pair) for pair in pairs[:-1]]
    return record


CONVERTERS = {"messages": _labelled(to_messages), "alpaca": _labelled(to_alpaca), "sharegpt": _labelled(to_sharegpt)}


def convert_samples(samples: list[Sample], target: str) -> tuple[list[dict], list[Issue]]:
    """Records in the target format, and one issue per sample that does not fit it."""
    convert = CONVERTERS[target]
    records, refusals = [], []
    for sample in samples:
        try:
            records.append(convert(sample))
        except DoesNotFit as exc:
            refusals.append(Issue(sample.where, None, exc.field, f"cannot be written as {target}: {exc.message}"))
    return records, refusals


def check_output_path(path: Path, force: bool) -> None:
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"{path}: the output must end with .json (a JSON array) or .jsonl (JSON Lines)")
    if path.exists() and not force:
        raise UserError(f"{path}: already exists; pass --force to replace it")


def write_records(path: Path, records: list[dict]) -> None:
    """A .json array (one record per line group, readable) or .jsonl, written atomically."""
    with atomic_file(path) as handle:
        if path.suffix.lower() == ".jsonl":
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            json.dump(records, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
