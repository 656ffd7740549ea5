"""Detect a record's format and normalize it to a `Sample`.

Formats (what people's tutorials produce):
- alpaca:     {instruction, input?, output, system?, history?: [[q, a], ...]}; or the same under other
              names (Dolly's instruction/context/response, prompt/completion, question/answer,
              query/response, problem/solution: QUESTION_FIELDS...)
- sharegpt:   {conversations: [{from, value}], system?}      from: human/gpt/system (or user/assistant)
- messages:   {messages: [{role, content}]}                   OpenAI; content may be a list of text parts;
                                                              from/value items are accepted too; Gemini's
                                                              {contents: [{role, parts}], systemInstruction}
- firefly:    {conversation: [{human, assistant}], system?}
- xlam:       {query, answers, tools}                         Salesforce xLAM function calling: the answer is
                                                              the calls (JSON text of [{name, arguments}])
- glaive:     {system, chat}                                  Glaive function calling v2: "USER:" /
                                                              "ASSISTANT: <functioncall> ..." / "FUNCTION
                                                              RESPONSE:" turns in one text (data/glaive.py)
- transcript: {text}                                          a chat rendered as one text in a known prompt
                                                              format (Llama 2 [INST], ChatML, Llama 3, Gemma,
                                                              Zephyr/Phi-3, Vicuna, ### Human/### Assistant,
                                                              HH, Alpaca prompt): its
                                                              conversation (data/transcripts.py)
- text:       {text}                                          continued pre-training, every token trained
- preference: {prompt|instruction+input|messages|conversations, chosen, rejected}, or chosen and
              rejected as whole conversations (UltraFeedback)  pairs for DPO/ORPO/SimPO
- unpaired:   {prompt, completion, label: true/false}, or {messages|conversations, label}
                                                              KTO samples
Pair and unpaired records are normalized in pair_formats.py.

Tool calling (sharegpt and messages records): a record's `tools` (OpenAI's list, or LLaMA-Factory's
JSON text of bare function descriptions) lists the functions; an assistant turn calls them with
OpenAI's `tool_calls` (or the older `function_call`), or is a LLaMA-Factory `function_call` turn whose
text is the JSON call; a `tool` turn (`function`, `observation`, Llama 3.1's `ipython`) holds a result.
Tool use written as text in Hermes' markup (functions between `<tools>` tags in the system message,
`<tool_call>`/`<tool_response>` blocks; or `<tool_call>` text beside the record's `tools`) is read as
tools, calls and results where the template writes them (data/hermes.py; format "sharegpt+hermes").
Calls are trained like answers; definitions and results are context.

Normalizers never raise on odd input: every problem becomes an `Issue` naming the field.
`NormalizeOptions` carries what depends on the dataset or the model: LLaMA-Factory style
role/content tags, and the chat template's limits (strict user/assistant alternation, no
system role), so those problems are reported per record before training.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Callable

from ducktune.data.columns import UNSUPPORTED_COLUMNS
from ducktune.data.schema import THINK_CLOSE, THINK_OPEN, Issue, Message, Record, Sample, ToolCall

FORMATS = ("alpaca", "sharegpt", "messages", "firefly", "xlam", "glaive", "transcript", "text", "preference",
           "unpaired")

USER_ROLES = {"user", "human"}
ASSISTANT_ROLES = {"assistant", "gpt", "model", "bot", "chatbot", "chatgpt", "bard", "bing"}  # chatbot: Cohere's
SYSTEM_ROLES = {"system", "developer"}  # developer: OpenAI's newer name for it


_ROLE_NAMES = {**{r: "user" for r in USER_ROLES}, **{r: "assistant" for r in ASSISTANT_ROLES},
               **{r: "system" for r in SYSTEM_ROLES}}


def canonical_role(role: object) -> str | None:
    if not isinstance(role, str):
        return None
    found = _ROLE_NAMES.get(role)  # the common case, without stripping and lowering
    return found if found is not None else _ROLE_NAMES.get(role.strip().lower())


@dataclass(frozen=True)
class TurnTags:
    """LLaMA-Factory's sharegpt `tags`: which keys hold a turn's role and text, and which role
    values mean user / assistant / system. Unset tags fall back to ducktune's defaults."""

    role_tag: str | None = None
    content_tag: str | None = None
    user_tag: str | None = None
    assistant_tag: str | None = None
    system_tag: str | None = None
    observation_tag: str | None = None
    function_tag: str | None = None

    @classmethod
    def from_dict(cls, tags: dict[str, str] | None) -> "TurnTags | None":
        return cls(**tags) if tags else None

    def role(self, value: object) -> str | None:
        for role, tag in (("user", self.user_tag), ("assistant", self.assistant_tag), ("system", self.system_tag)):
            if tag is not None and value == tag:
                return role
        return canonical_role(value)

    def tool_tag(self, value: object) -> str | None:
        for name, tag in (("observation_tag", self.observation_tag), ("function_tag", self.function_tag)):
            if tag is not None and value == tag:
                return name
        return None


TOOL_PARTS = ("definitions", "calls", "results")


@dataclass(frozen=True)
class NormalizeOptions:
    tags: TurnTags | None = None
    # Set from the chat template (see data/template_rules.py), never from a model list.
    require_alternation: bool = False
    allow_system: bool = True
    # The parts of tool calling the chat template writes (template_rules.tool_parts): "definitions",
    # "calls", "results". A record using a part the template drops would train on a conversation with it
    # missing (most templates of models not trained for tools write none).
    tool_parts: frozenset[str] = frozenset(TOOL_PARTS)
    # The names of the tokenizer's other chat templates (models/loading._named_template: Hermes 3's
    # "tool_use" beside the "default" in use), which model.chat_template can pick: named in advice.
    other_templates: tuple[str, ...] = ()
    # False when the template drops an answer's separate reasoning ("reasoning_content"): it is then
    # written into the answer's text as <think>...</think>, instead of being lost.
    writes_reasoning: bool = True
    # True when the template's prompts open every answer with a closed, empty reasoning block (Qwen3 and
    # SmolLM3 with model.enable_thinking false): reasoning in the data would be context, never trained.
    reasoning_closed: bool = False


DEFAULT_OPTIONS = NormalizeOptions()


# ----------------------------------------------------------------------------- detection

def mismatch(fmt: str, value: object, detecting: bool = False) -> str | None:
    """Why `value` does not look like format `fmt` (for "no known format" errors); None when it does.
    `detecting`: stricter where a format given by the user may be lenient (KTO labels)."""
    if not isinstance(value, dict):
        return f"a record is a {type(value).__name__}, not an object"
    keys = value.keys()
    if fmt == "preference":
        # Either answer makes a pair record: the other one is then reported missing by name. PKU-SafeRLHF's
        # two responses and which one is better are a pair too (pair_formats.ranked_pair).
        ranked = "response_0" in keys and "response_1" in keys and keys & {"better_response_id", "safer_response_id"}
        return None if "chosen" in keys or "rejected" in keys or ranked else "no 'chosen' and 'rejected' fields"
    if fmt == "unpaired":
        if not ("label" in keys and keys & {"completion", "messages", "conversations", "output"}):
            return "no 'label' field with a 'completion' (or 'messages')"
        # Only a true/false label makes a KTO record (a chat with "label": "positive" is a chat).
        return "'label' is not true or false" if detecting and not _is_boolean_label(value["label"]) else None
    if fmt == "sharegpt":
        return None if "conversations" in keys else "no 'conversations' field"
    if fmt == "messages":  # or Gemini's (Vertex AI tuning data) contents: [{role, parts: [{text}]}]
        return None if "messages" in keys or "contents" in keys else "no 'messages' field"
    if fmt == "firefly":
        return None if "conversation" in keys else "no 'conversation' field"
    if fmt == "xlam":
        return None if "query" in keys and "answers" in keys else "no 'query' and 'answers' fields"
    if fmt == "glaive":  # detected by its turns; given, a chat of other text is told what it lacks
        from ducktune.data.glaive import looks_like_glaive

        fits = looks_like_glaive(value) if detecting else "chat" in keys
        return None if fits else "no 'chat' text of 'USER:' / 'ASSISTANT:' turns"
    if fmt == "alpaca":
        question, context, answer = alpaca_fields(value)
        if detecting and "label" in keys and answer not in (None, "output"):  # KTO data under other names
            return (f"a 'label' beside {answer!r} (KTO data names its answer 'completion' and labels it true or "
                    "false; set format alpaca to train it as a question and its answer)")
        if answer is not None and (question is not None or context is not None):
            return None
        if answer is not None:
            return "no 'instruction' or 'input' field (the question; prompt, question, query or problem also work)"
        if question is not None or context is not None:
            return "no 'output' field (the answer; response, completion, answer or solution also work)"
        return "no 'instruction'/'input' and 'output' fields"
    if fmt == "transcript":  # detected by its markers; given, any text is read (and told what it lacks)
        from ducktune.data.transcripts import read_transcript

        fits = "text" in keys and (read_transcript(value["text"]) is not None if detecting else True)
        return None if fits else "no 'text' that is a chat transcript (Llama 2 [INST], ChatML, ### Human:, ...)"
    if fmt == "text":
        return None if "text" in keys else "no 'text' field"
    raise ValueError(fmt)


# Order matters: preference records may also carry 'messages' or 'prompt'; KTO records are
# chats or prompt/completion records with a true/false label.
_DETECTION_ORDER = ("preference", "unpaired", "sharegpt", "messages", "firefly", "xlam", "glaive", "alpaca",
                    "transcript", "text")


def detect_record(value: object) -> str | None:
    for fmt in _DETECTION_ORDER:
        if mismatch(fmt, value, detecting=True) is None:
            return fmt
    return None


def _is_boolean_label(value: object) -> bool:
    """true/false, as JSON or text, or the numbers 1/0 (KTO datasets use both)."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return True
    return isinstance(value, str) and value.strip().lower() in ("true", "false")


def detect_format(records: list[Record], sample_size: int = 200) -> tuple[str | None, str]:
    """The format most of the first records fit; else None and why each format was rejected."""
    counts: dict[str, int] = {}
    for record in records[:sample_size]:
        fmt = detect_record(record.value)
        if fmt:
            counts[fmt] = counts.get(fmt, 0) + 1
    if counts:
        return max(counts, key=lambda f: (counts[f], -_DETECTION_ORDER.index(f))), ""
    first = records[0].value if records else None
    reasons = "; ".join(f"{fmt}: {mismatch(fmt, first, detecting=True)}" for fmt in _DETECTION_ORDER)
    hint = ""
    if isinstance(first, dict):
        names = sorted(str(k) for k in first)
        described = f"fields {names[:8]}" if names else "no fields"
        wrapper = next((k for k, v in first.items() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
        completions = first.get("completions")
        if isinstance(completions, list) and completions and isinstance(completions[0], dict) and any(
                key in completions[0] for key in ("overall_score", "fine-grained_score", "annotations")):
            hint = (" It looks like raw UltraFeedback (scored 'completions' per record): binarize it into "
                    "prompt/chosen/rejected pairs first (e.g. the best and a worse completion by overall_score, as "
                    "HuggingFaceH4/ultrafeedback_binarized does).")
        elif wrapper is not None and len(records) == 1 and not detect_record(first):  # {"data": [records...]}
            hint = (f" It looks like an object holding the records under {wrapper!r}: put the records at the top "
                    "level (a JSON array, or JSON Lines).")
    else:
        described = f"a {type(first).__name__}"
        if isinstance(first, list):
            hint = " Each record must be one JSON object; this one is an array (in JSON Lines: one object per line)."
    return None, f"no known format fits (the first record has {described}).{hint} Tried {reasons}"


# ----------------------------------------------------------------------------- helpers

# A JSON escape can hold half of a UTF-16 pair ("\ud83d": an emoji cut by a scraper); Python keeps it as a
# lone surrogate, which no tokenizer, UTF-8 file or web response accepts.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> bool:
    """No lone surrogate in `text`: ASCII costs nothing; other text is encoded (faster than a regex search)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _invalid_unicode(text: str) -> str | None:
    """Why `text` cannot be trained on as Unicode, or None."""
    if _encodable(text):
        return None
    found = _SURROGATE.search(text)
    return f"invalid Unicode (a lone surrogate \\u{ord(found.group()):04x}, e.g. half of an emoji); fix or remove it"


def _text(value: object, record: Record, field: str, issues: list[Issue], required: bool = True) -> str | None:
    """A string field; OpenAI-style lists of text parts are joined. Every text a record contributes
    passes here, so this is where it must be valid Unicode."""
    if value is None:
        if required:
            issues.append(record.issue(field, "missing"))
        return None
    if isinstance(value, str):
        invalid = _invalid_unicode(value)
        if invalid:
            issues.append(record.issue(field, invalid))
            return None
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict):
                kind = part.get("type", next((k for k in part if k != "text"), None))  # Gemini's parts are keyed
                issues.append(record.issue(f"{field}[{i}]", f"only text parts are supported (got {kind!r})"))
                return None
            else:  # ["glad", "joyful"] is not one text: joined, it trained "gladjoyful"
                issues.append(record.issue(field, "must be a string (or a list of {'type': 'text'} parts), "
                                                  f"got a list holding a {type(part).__name__}"))
                return None
        return _text("".join(parts), record, field, issues)
    issues.append(record.issue(field, f"must be a string, got {type(value).__name__}"))
    return None


def _json_list(value: object) -> object:
    """CSV cells hold lists as JSON text: '[{"from": "human", ...}]'. Anything else is returned as is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _finish_chat(messages: list[Message], fields: list[str], record: Record, fmt: str, issues: list[Issue],
                 field: str, options: NormalizeOptions, tools: list[dict] | None = None) -> Sample | None:
    """Common checks: turn order, a user turn, a non-empty assistant answer last, template limits."""
    if issues:
        return None
    has_user = False
    last = -1  # index of the last user/assistant/tool turn
    for i, message in enumerate(messages):  # one pass: this runs for every record
        role = message.role
        if role == "system":
            if i:
                issues.append(record.issue(fields[i], f"a system message must come first (it is at position {i})"))
                return None
            if not options.allow_system:
                issues.append(record.issue(fields[0], "this model's chat template does not accept a system message"))
                return None
            continue
        if role == "tool" and (last < 0 or messages[last].role == "user"):
            issues.append(record.issue(fields[i], "a tool result must follow the assistant turn that called the tool"))
            return None
        last = i
        if role == "user":
            if not message.content.strip():  # as alpaca's empty instruction and a pair's empty prompt are
                issues.append(record.issue(fields[i], "empty user message: the answer after it answers nothing"))
                return None
            has_user = True
        elif role == "assistant" and not message.content.strip() and not message.tool_calls:
            issues.append(record.issue(fields[i], "empty assistant answer"))
            return None
    if last < 0:
        issues.append(record.issue(field, "no user or assistant turns"))
        return None
    if not has_user:
        issues.append(record.issue(field, "no user turn"))
        return None
    if messages[last].role != "assistant":
        issues.append(record.issue(field, "no assistant answer: the last turn is " +
                                   ("a tool result" if messages[last].role == "tool" else "from the user")))
        return None
    uses_tools = tools or any(m.role == "tool" or m.tool_calls for m in messages)
    if uses_tools and not _tools_fit(messages, fields, tools, record, issues, options):
        return None
    if options.require_alternation:
        # Tool results and the turns that call tools sit outside the alternation (Mistral's templates count so).
        turns = [i for i, m in enumerate(messages) if m.role in ("user", "assistant") and not m.tool_calls]
        if not _alternates(messages, fields, turns, record, issues):
            return None
    if uses_tools:
        _link_tool_turns(messages)
    if options.reasoning_closed and not _reasoning_trainable(messages, fields, record, issues):
        return None
    if not options.writes_reasoning:
        _fold_reasoning(messages)
    return Sample("chat", messages=messages, where=record.where, format=fmt, fields=fields, tools=tools)


def _reasoning_trainable(messages: list[Message], fields: list[str], record: Record, issues: list[Issue]) -> bool:
    for i, message in enumerate(messages):
        if message.carries_reasoning:
            issues.append(record.issue(fields[i], (
                "this answer carries reasoning, but the chat template's prompts open every answer with an empty "
                "<think></think> (model.enable_thinking: false), so it would be context, never trained; set "
                "model.enable_thinking: true")))
            return False
    return True


def _fold_reasoning(messages: list[Message]) -> None:
    """A template that drops separate reasoning gets it in the answer's text, as reasoning models write it."""
    for message in messages:
        if message.reasoning is not None:
            message.content = f"{THINK_OPEN}\n{message.reasoning.strip()}\n{THINK_CLOSE}\n\n{message.content.lstrip()}"
            message.reasoning = None


def _link_tool_turns(messages: list[Message]) -> None:
    """Give calls without an id one (`call00001`: nine letters and digits, as Mistral's templates demand),
    and each result without one the id and function name of the call it answers: the pending call of its
    name, else the first pending one. Templates that print ids or names then render data that has none."""
    pending: list = []
    count = 0
    for message in messages:
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                count += 1
                calls.append(call if call.id else dataclasses.replace(call, id=f"call{count:05d}"))
            message.tool_calls = tuple(calls)
            pending = list(calls)
        elif message.role == "tool" and pending:
            call = next((c for c in pending if c.name == message.name), pending[0])
            if message.name is None or message.name == call.name:
                pending.remove(call)
                message.tool_call_id = message.tool_call_id or call.id
                message.name = message.name or call.name


def tool_uses(tools: list[dict] | None, messages: list[dict]) -> list[tuple[str, int | None]]:
    """The parts of tool calling a conversation uses (TOOL_PARTS order), each with the index of the first
    message using it (None for the definitions, which are the conversation's `tools`)."""
    uses = [("definitions", None)] if tools else []
    for part, uses_it in (("calls", lambda m: m.get("tool_calls")), ("results", lambda m: m["role"] == "tool")):
        at = next((i for i, m in enumerate(messages) if uses_it(m)), None)
        if at is not None:
            uses.append((part, at))
    return uses


def _tools_fit(messages: list[Message], fields: list[str], tools: list[dict] | None, record: Record,
               issues: list[Issue], options: NormalizeOptions) -> bool:
    """A record with tools: the template writes each part it uses, and every call names a function the
    record defines."""
    for part, at in tool_uses(tools, [m.as_dict() for m in messages]):
        if part not in options.tool_parts:
            field = "tools" if at is None else fields[at]
            advice = (" (write each call as the answer's text, in the model's own syntax)" if part == "calls"
                      and options.tool_parts else "")
            other = (f"set model.chat_template to one of its other templates ({', '.join(options.other_templates)}), "
                     if options.other_templates else "")
            issues.append(record.issue(field, f"this model's chat template does not write tool {part}{advice}; {other}"
                                              "use a model whose template does (Qwen2.5/3, Llama 3.1+, Mistral v0.3+, "
                                              "...) or set model.chat_template to one"))
            return False
    if not tools:
        return True
    defined = [tool["function"]["name"] for tool in tools]
    for i, message in enumerate(messages):
        for call in message.tool_calls:
            if call.name not in defined:
                issues.append(record.issue(fields[i], (
                    f"calls {call.name!r}, which the record's tools do not define (defined: {', '.join(defined)})")))
                return False
    return True


def _alternates(messages: list[Message], fields: list[str], turns: list[int], record: Record,
                issues: list[Issue]) -> bool:
    if messages[turns[0]].role != "user":
        issues.append(record.issue(fields[turns[0]], "the conversation starts with an assistant turn; "
                                                     "this model's chat template requires it to start with a user turn"))
        return False
    for previous, current in zip(turns, turns[1:]):
        role = messages[current].role
        if role == messages[previous].role:
            between = "assistant answer" if role == "user" else "user turn"
            issues.append(record.issue(
                fields[current],
                f"two {role} turns in a row ({fields[previous]} and {fields[current]}) with no {between} between them; "
                "this model's chat template requires alternating user and assistant turns"))
            return False
    return True


def _system(value: dict, record: Record, issues: list[Issue], field: str = "system") -> tuple[list[Message], list[str]]:
    raw = value.get(field)
    if field == "system" and "system" not in value:
        if "system_prompt" in value:
            field, raw = "system_prompt", value["system_prompt"]  # OpenOrca's name (system_prompt, question, response)
        elif isinstance(value.get("systemInstruction"), dict):  # Gemini's: {role?, parts: [{text}]}
            field, raw = "systemInstruction.parts", value["systemInstruction"].get("parts")
    system = _text(raw, record, field, issues, required=False)
    if system and system.strip():
        return [Message("system", system)], [field]
    return [], []


def read_tools(value: object, source: str) -> tuple[list[dict] | None, list[Issue]]:
    """A tools list given on its own (a `--tools` file's JSON: OpenAI's list, or bare function descriptions)
    as OpenAI's list, and its problems named under `source`."""
    issues: list[Issue] = []
    tools = _tools({"tools": value}, Record({"tools": value}, source, None), issues)
    return tools, issues


def request_conversation(messages: list[dict], tools: object) -> tuple[list[dict], list[dict] | None, list[Issue]]:
    """A chat request's messages (OpenAI's shape: calls, tool results) and tools as the chat template
    takes them, read as training reads records (calls' JSON arguments parsed, ids linked); the problems
    name the request's fields ("messages[1].tool_calls[0].arguments"). The conversation may end anywhere."""
    record = Record({"messages": messages, "tools": tools}, "request", 0)
    issues: list[Issue] = []
    parsed = _turn_list(record.value, record, issues, "messages", "role", "content", None, None)
    found_tools = _tools(record.value, record, issues)
    if parsed is None or issues:
        return [], None, issues
    turns, _ = parsed
    _link_tool_turns(turns)
    return [m.as_dict() for m in turns], found_tools, issues


# ----------------------------------------------------------------------------- normalizers

# Alpaca's three fields under the other names that question-answer datasets give them: Dolly's
# instruction/context/response, TRL's and OpenAI's older prompt/completion, GSM8K's question/answer,
# ModelScope Swift's query/response (with alpaca's history and system), problem/solution, FLAN's and
# xP3's inputs/targets, firefly-train-1.1M's input/target, a chat's one exchange as human (or user)/assistant. A record's first name of each
# list present is the one read.
QUESTION_FIELDS = ("instruction", "prompt", "question", "query", "problem", "inputs", "human", "user")
CONTEXT_FIELDS = ("input", "context")
ANSWER_FIELDS = ("output", "response", "completion", "answer", "solution", "targets", "target", "assistant")


def alpaca_fields(value: dict) -> tuple[str | None, str | None, str | None]:
    """The names a question-answer record uses for its (question, context, answer); None where it has none.
    Spreadsheet headers match whatever their case ("Question", "Answer", "Context", "Response")."""
    if all(type(k) is str and k.islower() for k in value):  # the common case: no key to fold
        return tuple(next((k for k in names if k in value), None) for names in (QUESTION_FIELDS, CONTEXT_FIELDS,
                                                                               ANSWER_FIELDS))
    folded = {}
    for key in value:
        folded.setdefault(str(key).strip().lower(), key)
    return tuple(next((folded[k] for k in names if k in folded), None) for names in (QUESTION_FIELDS, CONTEXT_FIELDS,
                                                                                    ANSWER_FIELDS))


def normalize_alpaca(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                     ) -> Sample | None:
    question_key, context_key, answer_key = alpaca_fields(value)
    question_key, answer_key = question_key or "instruction", answer_key or "output"
    question = _json_list(value.get(question_key))
    if isinstance(question, list) and question and all(isinstance(turn, dict) for turn in question):
        from ducktune.data.pair_formats import normalize_prompt_completion  # a conversation as the prompt (TRL)
        return normalize_prompt_completion(value, question_key, answer_key, record, issues, options)
    instruction = _text(value.get(question_key), record, question_key, issues, required=False) or ""
    extra = (_text(value.get(context_key), record, context_key, issues, required=False) or "") if context_key else ""
    output = _text(value.get(answer_key), record, answer_key, issues)
    if issues:
        return None
    # Colab notebooks often leave instruction empty and put the question in input. Dolly's context (a
    # passage the answer draws on) follows the question, as alpaca's input does.
    prompt = "\n".join(part for part in (instruction, extra) if part.strip())
    if not prompt.strip():
        other = context_key or ("input" if question_key == "instruction" else None)
        issues.append(record.issue(question_key, f"empty: neither {question_key} nor {other} has text" if other
                                   else "empty: the question has no text"))
        return None
    if not output.strip():
        issues.append(record.issue(answer_key, "empty assistant answer"))
        return None
    messages, fields = _system(value, record, issues)
    history = _history(value, record, issues)
    if history is None:
        return None
    for m, f in history:
        messages.append(m)
        fields.append(f)
    messages += [Message("user", prompt), Message("assistant", output)]
    fields += [question_key if instruction.strip() else context_key, answer_key]
    return _finish_chat(messages, fields, record, "alpaca", issues, answer_key, options)


def _history(value: dict, record: Record, issues: list[Issue]) -> list[tuple[Message, str]] | None:
    history = _json_list(value.get("history"))
    if history is None or history == "":
        return []
    if not isinstance(history, list):
        issues.append(record.issue("history", f"must be a list of [question, answer] pairs, got {type(history).__name__}"))
        return None
    out = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            issues.append(record.issue(f"history[{i}]", "must be a [question, answer] pair"))
            return None
        q = _text(pair[0], record, f"history[{i}][0]", issues)
        a = _text(pair[1], record, f"history[{i}][1]", issues)
        if issues:
            return None
        out += [(Message("user", q), f"history[{i}][0]"), (Message("assistant", a), f"history[{i}][1]")]
    return out


def _turn_list(value: dict, record: Record, issues: list[Issue], field: str, role_key: str, content_key: str,
               alt_keys: tuple[str, str] | None, tags: TurnTags | None) -> tuple[list[Message], list[str]] | None:
    turns = _json_list(value.get(field))
    if not isinstance(turns, list):
        issues.append(record.issue(field, f"must be a list of turns, got {type(turns).__name__}"))
        return None
    if tags is not None:
        role_key, content_key = tags.role_tag or role_key, tags.content_tag or content_key
    role_of = tags.role if tags is not None else canonical_role
    messages: list[Message] = []
    fields: list[str] = []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            issues.append(record.issue(where, f"must be an object, got {type(turn).__name__}"))
            return None
        rk, ck = role_key, content_key
        if rk not in turn and alt_keys and alt_keys[0] in turn:
            rk, ck = alt_keys
        if rk not in turn and "assistant" in turn and ("human" in turn or "user" in turn):
            # One exchange per item, firefly's way ({human, assistant}): its two turns.
            asked = "human" if "human" in turn else "user"
            pair = [(asked, "user"), ("assistant", "assistant")]
            texts = [_text(turn.get(key), record, f"{where}.{key}", issues) for key, _ in pair]
            if issues:
                return None
            messages += [Message(role, text) for (_, role), text in zip(pair, texts)]
            fields += [f"{where}.{key}" for key, _ in pair]
            continue
        if rk not in turn:
            issues.append(record.issue(f"{where}.{role_key}", "missing"))
            return None
        raw_role = turn[rk]
        role = role_of(raw_role)
        tool = _tool_turn(turn, raw_role, tags)
        if role is None and not tool:
            issues.append(record.issue(f"{where}.{rk}", f"unknown role {raw_role!r} (use system, user, assistant or tool)"))
            return None
        trained = _turn_weight(turn, "assistant" if tool and tool[0] != "result" else role, record, where, issues)
        if trained is None:
            return None
        if tool:
            message = _tool_message(turn, tool[0], role, ck, trained, record, where, issues)
            if message is None:
                return None
            messages.append(message)
            fields.append(where)
            continue
        content = turn.get(ck)
        # The common case (a string without a lone surrogate) skips the general path and its field name.
        if type(content) is not str or not (content.isascii() or _encodable(content)):
            content = _text(content, record, f"{where}.{ck}", issues)
            if content is None:
                return None
        message = Message(role, content, trained)
        if role == "assistant" and not _read_reasoning(turn, message, record, where, issues):
            return None
        messages.append(message)
        fields.append(where)
    return messages, fields


REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")  # DeepSeek's API / OpenAI-style names


def _read_reasoning(turn: dict, message: Message, record: Record, where: str, issues: list[Issue]) -> bool:
    """Set an answer's separate reasoning; False after an issue (not text)."""
    key = next((k for k in REASONING_KEYS if turn.get(k) not in (None, "")), None)
    if key is None:
        return True
    reasoning = _text(turn[key], record, f"{where}.{key}", issues)
    if reasoning is None:
        return False
    message.reasoning = reasoning if reasoning.strip() else None
    return True


# Role names of tool turns in the formats people bring: a function's result (OpenAI's tool and older function,
# LLaMA-Factory's observation, Llama 3.1's ipython), or LLaMA-Factory's function_call, a turn that is the call.
RESULT_ROLES = ("tool", "function", "observation", "ipython")
CALL_ROLES = ("function_call",)


def _tool_turn(turn: dict, raw_role: object, tags: TurnTags | None) -> tuple[str, str | None, str] | None:
    """(kind, the field to name, how to describe it) when a turn is a tool's result ("result"), a turn whose
    text is a call ("call_turn"), or a turn carrying calls beside its text ("calls"); None otherwise."""
    tag = tags.tool_tag(raw_role) if tags is not None else None
    name = raw_role.strip().lower() if isinstance(raw_role, str) else None
    if tag or (name in RESULT_ROLES + CALL_ROLES and (tags is None or tags.role(raw_role) is None)):
        kind = "call_turn" if tag == "function_tag" or (tag is None and name in CALL_ROLES) else "result"
        return kind, None, f"{raw_role!r}" + (f" ({tag})" if tag else "")
    for key in ("tool_calls", "function_call"):
        if turn.get(key):
            return "calls", key, f"an assistant turn with {key}"
    return None


def _tool_message(turn: dict, kind: str, role: str | None, content_key: str, trained: bool, record: Record,
                  where: str, issues: list[Issue]) -> Message | None:
    """The Message of a tool turn (see _tool_turn): a tool's result, or an assistant turn with its calls."""
    raw = turn.get(content_key)
    if kind == "result":
        name, call_id = turn.get("name"), turn.get("tool_call_id")
        content = _text(raw, record, f"{where}.{content_key}", issues) if raw is None or isinstance(raw, (str, list)) \
            else json.dumps(raw, ensure_ascii=False)  # a result given as a JSON object is shown as JSON text
        if content is None:
            return None
        return Message("tool", content, name=name if isinstance(name, str) else None,
                       tool_call_id=call_id if isinstance(call_id, str) else None)
    if kind == "call_turn":  # LLaMA-Factory: the turn's text is the call, as JSON (a list for parallel calls)
        calls = _tool_calls(_json_list(raw), record, f"{where}.{content_key}", issues)
        return None if calls is None else Message("assistant", "", trained, tool_calls=calls)
    if role != "assistant":
        issues.append(record.issue(where, f"only an assistant turn can call tools (this one is {role!r})"))
        return None
    key = "tool_calls" if turn.get("tool_calls") else "function_call"
    calls = _tool_calls(turn[key] if key == "tool_calls" else [turn[key]], record, f"{where}.{key}", issues)
    content = "" if raw is None else _text(raw, record, f"{where}.{content_key}", issues)
    if calls is None or content is None:
        return None
    message = Message("assistant", content, trained, tool_calls=calls)
    return message if _read_reasoning(turn, message, record, where, issues) else None


_CALL_SHAPE = '{"name": ..., "arguments": {...}}'


def _tool_calls(value: object, record: Record, field: str, issues: list[Issue]) -> tuple[ToolCall, ...] | None:
    """Calls in OpenAI's form ({id?, type, function: {name, arguments}}) or bare ({name, arguments}, Llama
    3.1's "parameters" too); arguments may be a JSON object or JSON text of one (OpenAI sends text)."""
    if isinstance(value, str):
        issues.append(record.issue(field, f"must be a JSON function call {_CALL_SHAPE} (or a list of them)"))
        return None
    calls = []
    for j, item in enumerate(value if isinstance(value, list) else [value]):
        at = f"{field}[{j}]" if isinstance(value, list) else field
        inner = item.get("function") if isinstance(item, dict) and isinstance(item.get("function"), dict) else item
        if not isinstance(inner, dict) or not isinstance(inner.get("name"), str) or not inner["name"].strip():
            issues.append(record.issue(at, f"must be a function call {_CALL_SHAPE} with a function name"))
            return None
        arguments = inner.get("arguments", inner.get("parameters"))
        for attempt in range(2):  # JSON text, or JSON text of JSON text (datasets that encoded the arguments twice)
            if not isinstance(arguments, str):
                break
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                if attempt:  # JSON text of a plain string: not an object, said below
                    break
                issues.append(record.issue(f"{at}.arguments", f"is not valid JSON ({exc})"))
                return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            issues.append(record.issue(f"{at}.arguments", f"must be a JSON object, got {type(arguments).__name__}"))
            return None
        call_id = item.get("id") if isinstance(item, dict) else None
        calls.append(ToolCall(inner["name"], arguments, call_id if isinstance(call_id, str) else None))
    if not calls:
        issues.append(record.issue(field, "an empty list of calls"))
        return None
    return tuple(calls)


def _tools(value: dict, record: Record, issues: list[Issue]) -> list[dict] | None:
    """A record's tool definitions as OpenAI's list ({"type": "function", "function": {...}}); bare function
    descriptions (LLaMA-Factory's, OpenAI's older `functions`) are wrapped. None: no tools."""
    key = "tools" if value.get("tools") not in (None, "", []) else "functions"
    raw = value.get(key)
    if raw in (None, "", []):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            issues.append(record.issue(key, f"is not valid JSON ({exc})"))
            return None
    if not isinstance(raw, list):
        raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list):
        issues.append(record.issue(key, f"must be a list of function descriptions, got {type(raw).__name__}"))
        return None
    tools = []
    for i, entry in enumerate(raw):
        function = entry.get("function") if isinstance(entry, dict) and isinstance(entry.get("function"), dict) else entry
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"].strip():
            issues.append(record.issue(f"{key}[{i}]", 'must describe a function: {"name": ..., "description": ..., '
                                                     '"parameters": {...}}'))
            return None
        tools.append({"type": "function", "function": function})
    return tools


def _turn_weight(turn: dict, role: str, record: Record, where: str, issues: list[Issue]) -> bool | None:
    """Whether an assistant turn is trained: OpenAI's per-message "weight" 1 (or none) or 0; None after
    an issue for any other weight."""
    weight = turn.get("weight")
    if weight is None or role != "assistant":
        return True
    if isinstance(weight, bool) or weight not in (0, 1):
        issues.append(record.issue(f"{where}.weight", f"must be 0 (not trained) or 1 (trained), got {weight!r}"))
        return None
    return weight == 1


def _chat_turns(value: dict, record: Record, issues: list[Issue], field: str, options: NormalizeOptions
                ) -> tuple[list[Message], list[str]] | None:
    """A record's turn list (tool turns included), after its `system` field if its first turn is no system
    message."""
    if field == "conversations":
        parsed = _turn_list(value, record, issues, field, "from", "value", ("role", "content"), options.tags)
    elif field == "contents":  # Gemini's
        parsed = _turn_list(value, record, issues, field, "role", "parts", ("role", "content"), options.tags)
    else:
        parsed = _turn_list(value, record, issues, field, "role", "content", ("from", "value"), options.tags)
    if parsed is None:
        return None
    turns, fields = parsed
    if turns and turns[0].role == "system":
        return turns, fields
    system, system_fields = _system(value, record, issues)
    return system + turns, system_fields + fields


def normalize_sharegpt(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                       ) -> Sample | None:
    return _finish_turns(value, record, issues, "conversations", "sharegpt", options)


def normalize_messages(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                       ) -> Sample | None:
    return _finish_turns(value, record, issues, "messages" if "messages" in value else "contents", "messages", options)


def _finish_turns(value: dict, record: Record, issues: list[Issue], field: str, fmt: str, options: NormalizeOptions
                  ) -> Sample | None:
    """A turn-list record as a Sample; one whose system message lists functions in Hermes' <tools> markup
    (or with `tools` and answers holding <tool_call> text) has that markup read as tools, calls and results
    (data/hermes.py)."""
    parsed = _chat_turns(value, record, issues, field, options)
    tools = _tools(value, record, issues)
    if parsed is None or issues:
        return None
    messages, fields = parsed
    from ducktune.data import hermes
    if hermes.uses_hermes_markup(messages, tools, options.tool_parts):
        read = hermes.read_hermes(messages, fields, tools, record, issues)
        if read is None:
            return None
        messages, fields, tools = read
        fmt += hermes.FORMAT_SUFFIX
    return _finish_chat(messages, fields, record, fmt, issues, field, options, tools)


def normalize_firefly(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                      ) -> Sample | None:
    turns = _json_list(value.get("conversation"))
    if not isinstance(turns, list) or not turns:
        issues.append(record.issue("conversation", "must be a non-empty list of {human, assistant} turns"))
        return None
    if all(isinstance(t, dict) and ("role" in t or "from" in t) and "human" not in t for t in turns):
        # A turn list under firefly's key ({role, content} or {from, value}): read as a messages record.
        parsed = _chat_turns(value, record, issues, "conversation", options)
        tools = _tools(value, record, issues)
        return None if parsed is None else _finish_chat(*parsed, record, "messages", issues, "conversation", options,
                                                        tools)
    messages, fields = _system(value, record, issues)
    for i, turn in enumerate(turns):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            issues.append(record.issue(where, f"must be an object, got {type(turn).__name__}"))
            return None
        human = _text(turn.get("human"), record, f"{where}.human", issues)
        answer = _text(turn.get("assistant"), record, f"{where}.assistant", issues)
        if issues:
            return None
        messages += [Message("user", human), Message("assistant", answer)]
        fields += [f"{where}.human", f"{where}.assistant"]
    return _finish_chat(messages, fields, record, "firefly", issues, "conversation", options)


def normalize_xlam(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                   ) -> Sample | None:
    """Salesforce's xLAM function-calling records: a question answered by calls alone."""
    query = _text(value.get("query"), record, "query", issues)
    calls = _tool_calls(_json_list(value.get("answers")), record, "answers", issues)
    tools = _tools(value, record, issues)
    if issues:
        return None
    messages = [Message("user", query), Message("assistant", "", tool_calls=calls)]
    return _finish_chat(messages, ["query", "answers"], record, "xlam", issues, "answers", options, tools)


def normalize_text(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                   ) -> Sample | None:
    text = _text(value.get("text"), record, "text", issues)
    if text is None:
        return None
    if not text.strip():
        issues.append(record.issue("text", "empty"))
        return None
    return Sample("text", text=text, where=record.where, format="text")


def normalize_transcript(value: dict, record: Record, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
                         ) -> Sample | None:
    """A chat written out as one text in a known prompt format, as its conversation (data/transcripts.py)."""
    from ducktune.data.transcripts import SCHEMES, read_transcript

    text = _text(value.get("text"), record, "text", issues)
    if text is None:
        return None
    found = read_transcript(text)
    if found is None:
        issues.append(record.issue("text", f"not a chat transcript in a known format ({', '.join(SCHEMES)}): its turns "
                                           "must alternate user/assistant and end with an answer; use format text to "
                                           "train it as plain text"))
        return None
    _, turns = found
    messages = [Message(role, content) for role, content in turns if content]  # an empty system turn: none
    return _finish_chat(messages, [f"text turn {n}" for n in range(1, len(messages) + 1)], record, "transcript",
                        issues, "text", options)


def normalize_preference(value: dict, record: Record, issues: list[Issue],
                         options: NormalizeOptions = DEFAULT_OPTIONS) -> Sample | None:
    # Imported here: pair_formats builds on this module's helpers.
    from ducktune.data.pair_formats import normalize_pair

    return normalize_pair(value, record, issues, options)


def normalize_unpaired(value: dict, record: Record, issues: list[Issue],
                       options: NormalizeOptions = DEFAULT_OPTIONS) -> Sample | None:
    from ducktune.data.pair_formats import normalize_unpaired as normalize

    return normalize(value, record, issues, options)


def normalize_glaive(value: dict, record: Record, issues: list[Issue],
                     options: NormalizeOptions = DEFAULT_OPTIONS) -> Sample | None:
    from ducktune.data.glaive import normalize_glaive as normalize

    return normalize(value, record, issues, options)


Normalizer = Callable[[dict, Record, list[Issue], NormalizeOptions], "Sample | None"]

NORMALIZERS: dict[str, Normalizer] = {
    "alpaca": normalize_alpaca,
    "sharegpt": normalize_sharegpt,
    "messages": normalize_messages,
    "firefly": normalize_firefly,
    "xlam": normalize_xlam,
    "glaive": normalize_glaive,
    "transcript": normalize_transcript,
    "text": normalize_text,
    "preference": normalize_preference,
    "unpaired": normalize_unpaired,
}


def normalize(record: Record, fmt: str, issues: list[Issue], options: NormalizeOptions = DEFAULT_OPTIONS
              ) -> Sample | None:
    """Normalize one record as `fmt`; problems are appended to `issues`."""
    value = record.value
    if not isinstance(value, dict):
        issues.append(record.issue("(record)", f"must be a JSON object, got {type(value).__name__}"))
        return None
    reason = mismatch(fmt, value)
    if reason is not None:
        other = detect_record(value)
        hint = f"; it looks like {other}" if other else ""
        issues.append(record.issue("(record)", f"does not fit the {fmt} format: {reason}{hint}"))
        return None
    for key, what in UNSUPPORTED_COLUMNS.items():
        # Dropping the media would train the text around them: "<image>Who is this?" answered blind.
        if key in value and _json_list(value[key]):
            issues.append(record.issue(key, f"{what} data is not supported (ducktune fine-tunes on text only); "
                                            f"remove it and the <{key[:-1]}> tags from the text, or the record"))
            return None
    own: list[Issue] = []
    sample = NORMALIZERS[fmt](value, record, own, options)
    issues += own
    return sample
