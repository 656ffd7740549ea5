"""Chats written out as one text (`{"text": ...}`) in a known prompt format -> conversations.

Many tutorials' datasets hold each chat already rendered in one model's or one project's format:
- Llama 2's `<s>[INST] <<SYS>>\\nsystem\\n<</SYS>>\\n\\nquestion [/INST] answer </s>` (mlabonne/guanaco-llama2-1k);
- ChatML's `<|im_start|>user\\n...<|im_end|>` and Llama 3's `<|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>`;
- Gemma's `<start_of_turn>user\\n...<end_of_turn>`, Zephyr's `<|user|>\\n...</s>` and Phi-3's `<|user|>\\n...<|end|>`;
- Vicuna's `SYSTEM TEXT USER: ... ASSISTANT: ...</s>`;
- Guanaco's `### Human: ... ### Assistant: ...` (timdettmers/openassistant-guanaco, QLoRA's data);
- Anthropic HH's `\\n\\nHuman: ...\\n\\nAssistant: ...`;
- the Alpaca prompt, `### Instruction:\\n...\\n\\n### Input:\\n...\\n\\n### Response:\\n...` after its preamble.

Trained as plain text, every token (the prompt's too) would be trained and the model would learn that
format instead of its own chat template, which `ducktune chat`, `serve` and Ollama prompt it with. So a
text that is wholly such a transcript (it starts with the format's first marker, its turns alternate
and the last is a non-empty answer) is read as the conversation, and the model's own template writes
it. Any other text stays plain text; `format: text` keeps transcripts as text too.
"""

from __future__ import annotations

import re
from typing import Callable

from ducktune.data.pair_formats import hh_transcript

Turns = list[tuple[str, str]]  # (role, text)

_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)
_LLAMA3 = re.compile(r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)",
                     re.DOTALL)
_LLAMA2 = re.compile(r"(?:<s>)?\s*\[INST\](.*?)\[/INST\](.*?)(?:</s>|(?=<s>|\s*\[INST\])|$)", re.DOTALL)
_LLAMA2_SYSTEM = re.compile(r"^\s*<<SYS>>\n?(.*?)\n?<</SYS>>\s*", re.DOTALL)
_GUANACO = re.compile(r"### (Human|Assistant):")
_GEMMA = re.compile(r"<start_of_turn>(user|model)\n(.*?)(?:<end_of_turn>|$)", re.DOTALL)
# Zephyr's and TinyLlama-chat's (each turn closed by </s>) and Phi-3's (closed by <|end|>).
_ZEPHYR = re.compile(r"<\|(system|user|assistant)\|>\n(.*?)(?:</s>|<\|end\|>|(?=<\|(?:system|user|assistant)\|>)|$)",
                     re.DOTALL)
_VICUNA = re.compile(r"(?:^|\s|</s>)(USER|ASSISTANT):")
_ALPACA = re.compile(r"^(?P<preamble>.*?)### Instruction:\s*\n(?P<instruction>.*?)\n\s*"
                     r"(?:### Input:\s*\n(?P<input>.*?)\n\s*)?### Response:\s*\n(?P<response>.*)$", re.DOTALL)
_ROLES = {"Human": "user", "Assistant": "assistant"}


def _whole(pattern: re.Pattern, text: str) -> list[re.Match] | None:
    """The pattern's matches when they cover the text (whitespace between them aside), else None."""
    matches, at = [], 0
    for match in pattern.finditer(text):
        if text[at:match.start()].strip():
            return None
        matches.append(match)
        at = match.end()
    return matches if matches and not text[at:].strip() else None


def _tagged(pattern: re.Pattern, text: str) -> Turns | None:
    matches = _whole(pattern, text.strip().removeprefix("<|begin_of_text|>"))
    return None if matches is None else [(m.group(1), m.group(2).strip()) for m in matches]


def _llama2(text: str) -> Turns | None:
    matches = _whole(_LLAMA2, text.strip())
    if matches is None:
        return None
    turns: Turns = []
    for i, match in enumerate(matches):
        question, answer = match.group(1).strip(), match.group(2).strip()
        system = _LLAMA2_SYSTEM.match(question) if i == 0 else None
        if system:
            turns.append(("system", system.group(1).strip()))
            question = question[system.end():].strip()
        turns += [("user", question), ("assistant", answer)]
    return turns


def _vicuna(text: str) -> Turns | None:
    """Vicuna v1.1's `SYSTEM TEXT USER: question ASSISTANT: answer</s>USER: ...`: what precedes the first
    USER: is the system prompt."""
    parts = _VICUNA.split(text.strip())
    if len(parts) < 5:
        return None
    turns = [("system", parts[0].strip())] if parts[0].strip() else []
    return turns + [({"USER": "user", "ASSISTANT": "assistant"}[role], content.strip().removesuffix("</s>").strip())
                    for role, content in zip(parts[1::2], parts[2::2])]


def _marked(pattern: re.Pattern, text: str) -> Turns | None:
    """Turns after role markers ("### Human:"): the text must begin with the first."""
    parts = pattern.split(text.strip())
    if parts[0].strip() or len(parts) < 5:
        return None
    return [(_ROLES[role], content.strip()) for role, content in zip(parts[1::2], parts[2::2])]


def _alpaca_prompt(text: str) -> Turns | None:
    match = _ALPACA.match(text.strip())
    if match is None or "###" in match.group("response") or "###" in match.group("preamble"):
        return None
    question = "\n".join(p.strip() for p in (match.group("instruction"), match.group("input") or "") if p.strip())
    return [("user", question), ("assistant", match.group("response").strip())]


SCHEMES: dict[str, Callable[[str], Turns | None]] = {
    "ChatML": lambda text: _tagged(_CHATML, text),
    "Llama 3": lambda text: _tagged(_LLAMA3, text),
    "Llama 2 [INST]": _llama2,
    "Gemma": lambda text: [("assistant" if role == "model" else role, content)
                           for role, content in _tagged(_GEMMA, text.strip().removeprefix("<bos>")) or ()] or None,
    "Zephyr/Phi-3": lambda text: _tagged(_ZEPHYR, text.strip().removeprefix("<s>")),
    "### Human/### Assistant": lambda text: _marked(_GUANACO, text),
    "Human:/Assistant:": lambda text: [(t["role"], t["content"].strip()) for t in hh_transcript(text) or ()] or None,
    "Alpaca prompt": _alpaca_prompt,
    "Vicuna USER:/ASSISTANT:": _vicuna,
}
# A cheap look before the parsers: a text holding none of these is no transcript (most text records).
_HINTS = ("<|im_start|>", "<|start_header_id|>", "[INST]", "<start_of_turn>", "<|user|>", "### Human:", "Human:",
          "### Instruction:", "USER:")


def read_transcript(text: object) -> tuple[str, Turns] | None:
    """(the scheme's name, its turns) of a text that is wholly a chat transcript in one scheme: turns
    alternate user/assistant (a system turn first at most), the last a non-empty answer; else None."""
    if not isinstance(text, str) or not any(hint in text for hint in _HINTS):
        return None
    for name, parse in SCHEMES.items():
        turns = parse(text)
        if turns and _well_formed(turns):
            return name, turns
    return None


def _well_formed(turns: Turns) -> bool:
    body = turns[1:] if turns[0][0] == "system" else turns
    return len(body) >= 2 and len(body) % 2 == 0 and all(
        role == ("user" if i % 2 == 0 else "assistant") and content for i, (role, content) in enumerate(body))
