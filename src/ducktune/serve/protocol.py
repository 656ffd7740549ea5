"""The OpenAI chat-completions wire format: request validation, responses, error bodies.

Requests are parsed here (not by FastAPI's own validation) so that every client mistake
becomes a 4xx with OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`,
which the `openai` package, Dify and Open WebUI show to their users as is.
Parameters that clients send routinely but that do not change the answer (user, metadata,
penalties of 0...) are accepted and ignored, so those clients work unchanged; a parameter
whose answer ducktune cannot give (n > 1, logprobs, a JSON response_format, a logit_bias, a
non-zero presence or frequency penalty, image or audio content) is rejected, since a client that
asked for it would read a reply without it. A forced tool_choice ("required", or a named function)
is answered by starting the answer with the template's call opening (chat/tool_calls.forced_call_prefix).

Tools: a request's `tools` (and the conversation's calls and tool results) are written into the
prompt by the chat template; an answer that calls tools in the syntax the template writes
(chat/tool_calls.py) is returned as OpenAI's `tool_calls` with finish_reason "tool_calls".
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


MAX_STOP_CHARS = 1000  # OpenAI sets no figure; longer ones are not stop sequences anyone means


# Parameters whose answer ducktune cannot give: (refused when, why), per field.
_CANNOT_ANSWER = {
    "tool_choice": (lambda v: v not in ("none", "auto", "required") and not (
        isinstance(v, dict) and v.get("type") == "function" and isinstance(v.get("function"), dict)
        and isinstance(v["function"].get("name"), str)),
                    "must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}"),
    "logprobs": (bool, "log probabilities are not returned by ducktune serve; leave logprobs off"),
    "response_format": (lambda v: v.get("type") != "text",
                        "only {'type': 'text'} is supported: ducktune serve does not constrain answers to JSON"),
    "logit_bias": (bool, "logit_bias is not supported by ducktune serve"),
    "presence_penalty": (bool, "presence_penalty is not applied by ducktune serve; send 0 or leave it out"),
    "frequency_penalty": (bool, "frequency_penalty is not applied by ducktune serve; send 0 or leave it out"),
}


class APIError(Exception):
    """An error answered to the client with an HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _encodable(text: str) -> str:
    """The text, refused when it cannot become UTF-8 (a lone surrogate such as "\\ud800" in JSON): the
    tokenizer would fail on it mid-request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds an unpaired surrogate (not valid Unicode text)") from None
    return text


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str

    @field_validator("text")
    @classmethod
    def _valid_text(cls, value):
        return _encodable(value)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    # "developer" is OpenAI's newer name for the system role; "function" the older one of "tool".
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None  # None (or left out): an assistant turn that only calls tools
    tool_calls: list | None = None  # an assistant turn's calls (read by data.formats.request_conversation)
    function_call: dict | None = None  # the older single call
    tool_call_id: str | None = None  # a tool turn: the call it answers
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _calls_need_no_content(cls, value):
        if isinstance(value, dict) and "content" not in value and (value.get("tool_calls") or value.get("function_call")):
            return {**value, "content": None}
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, value):
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError("must be a string or a list of text parts")
        return _encodable(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _content_or_calls(self):
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.function_call)):
            raise ValueError("content must be a string or a list of text parts (null only beside tool_calls)")
        return self

    def as_dict(self) -> dict:
        content = self.content if isinstance(self.content, str) or self.content is None else \
            "".join(p.text for p in self.content)
        message = {"role": "system" if self.role == "developer" else self.role, "content": content}
        fields = {"tool_calls": self.tool_calls, "function_call": self.function_call,
                  "tool_call_id": self.tool_call_id, "name": self.name}
        return {**message, **{key: value for key, value in fields.items() if value is not None}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # strict: "0.7" is not a temperature and 1.0 is not a token count; ints are fine for floats.
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None  # each at most MAX_STOP_CHARS
    seed: int | None = Field(None, ge=-(2 ** 63), le=2 ** 64 - 1)  # what torch.manual_seed takes
    stream: bool | None = False  # null (allowed by OpenAI's spec) means the default
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    tools: list | None = None
    functions: list | None = None  # the legacy name of tools
    tool_choice: str | dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict | None = None
    logit_bias: dict | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in ([value] if isinstance(value, str) else value or [])):
            raise ValueError("stop sequences must not be empty")
        for text in [value] if isinstance(value, str) else value or []:
            _encodable(text)
            if len(text) > MAX_STOP_CHARS:
                raise ValueError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value):
        if value not in (1, None):
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("tool_choice", "logprobs", "response_format", "logit_bias",
                     "presence_penalty", "frequency_penalty")
    @classmethod
    def _answerable(cls, value, info):
        refused, message = _CANNOT_ANSWER[info.field_name]
        if value is not None and refused(value):
            raise ValueError(message)
        return value

    def sampling_temperature(self) -> float:
        """The temperature to sample at; 0 (greedy) for none and for values so small that dividing the
        logits by them overflows (the answer at such a temperature is the greedy one anyway)."""
        from ducktune.chat.engine import MIN_TEMPERATURE

        return self.temperature if self.temperature and self.temperature >= MIN_TEMPERATURE else 0.0

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop) or None

    def message_dicts(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]

    def forced_tool(self) -> str | None:
        """The call tool_choice forces: "" for any function ("required"), a function's name, None for none."""
        if self.tool_choice == "required":
            return ""
        return self.tool_choice["function"]["name"] if isinstance(self.tool_choice, dict) else None

    def offered_tools(self) -> list | None:
        """The tools the model is offered as sent (`tools`, or the older `functions`); None under
        tool_choice "none"."""
        return (self.tools or self.functions or None) if self.tool_choice != "none" else None

    def conversation(self) -> tuple[list[dict], list[dict] | None]:
        """(messages, tools) as the chat template takes them: calls' JSON arguments parsed, results linked
        to their calls; tools None under tool_choice "none" (the model is not offered them). A 400 names
        the first problem's field."""
        from ducktune.data.formats import request_conversation

        messages, tools, issues = request_conversation(self.message_dicts(), self.offered_tools())
        if issues:  # named as the API names fields: messages.1.tool_calls.0.arguments
            field = re.sub(r"\[(\d+)\]", r".\1", issues[0].field)
            raise APIError(400, f"'{field}': {issues[0].message}", param=field, code="invalid_value")
        return messages, tools

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def check_combinations(self) -> None:
        """Parameters that only mean something beside another one (OpenAI refuses them alone too)."""
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "'top_logprobs': only allowed with logprobs: true (and log probabilities are not "
                                "returned by ducktune serve)", param="top_logprobs", code="invalid_value")
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "'stream_options': only allowed when 'stream' is true", param="stream_options",
                           code="invalid_value")


# Content part types OpenAI's chat API takes besides text: a text-only model cannot read them.
NON_TEXT_PARTS = ("image_url", "input_audio", "file", "image", "audio", "video")


def refuse_non_text_parts(data: dict) -> None:
    """A 400 naming the first image/audio/file content part: pydantic's own error for one is
    "Input should be a valid string (and 2 more problems)", about the other member of the union."""
    messages = data.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        parts = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in NON_TEXT_PARTS:
                raise APIError(400, f"'messages.{i}.content.{j}': {kind} content parts are not supported: this is a "
                                    "text-only model", param=f"messages.{i}.content.{j}", code="invalid_value")


def parse_json_body(raw: bytes) -> Any:
    if not raw.strip():
        raise APIError(400, "the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # arrays/objects nested deeper than the parser's recursion limit
        raise APIError(400, "the request body is nested too deeply to parse", code="invalid_json") from None


def parse_chat_request(raw: bytes) -> ChatCompletionRequest:
    data = parse_json_body(raw)
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object")
    refuse_non_text_parts(data)
    try:
        req = ChatCompletionRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p)) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = f"'{param}' is a required property"
        else:
            message = f"'{param}': {message}"
        extra = len(err.errors()) - 1
        if extra:
            message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
        raise APIError(400, message, param=param, code="invalid_value" if first["type"] != "missing" else "missing_required_parameter") from None
    req.check_combinations()
    return req


def _is_union_tag(part) -> bool:
    """pydantic names the union member that failed in the location ('stop.list[str]'); clients want 'stop'."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "TextPart"))


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int,
                    tool_calls: list | None = None, reasoning: str | None = None) -> dict:
    """A chat.completion; with `tool_calls` (ToolCall objects) the message carries them in OpenAI's shape
    (arguments as JSON text), `text` is what the answer said before them (null when nothing). `reasoning`:
    what the model thought before answering, as `reasoning_content` (vLLM's and llama-server's field)."""
    message = {"role": "assistant", "content": text}
    if tool_calls:
        message = {"role": "assistant", "content": text or None, "tool_calls": tool_call_bodies(tool_calls)}
        finish_reason = "tool_calls"
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def tool_call_bodies(calls: list) -> list[dict]:
    return [{"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
             "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}
            for call in calls]


def chunk_body(cid: str, model: str, created: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode("utf-8")
