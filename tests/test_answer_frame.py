"""What a template writes around an answer's own words (data.template_rules.AnswerFrame), measured per
template: gpt-oss's channel header and analysis message, <think> blocks. Answers are shown without them,
the reasoning is returned apart (chat, serve's reasoning_content), and gpt-oss's <|end|>, which closes
its analysis message, no longer stops generation before the final answer."""

from __future__ import annotations

import functools
import io

import pytest

from ducktune.data.template import ChatFormat
from ducktune.data.template_rules import AnswerFrame
from ducktune.models.families import family, template_text
from ducktune.models.standin_tokenizers import build_tokenizer
from ducktune.serve.llamacpp import LlamaCppEngine

USER = [{"role": "user", "content": "Hi"}]
GPT_OSS = ("<|channel|>analysis<|message|>The user greets. Greet back.<|end|><|start|>assistant<|channel|>final"
           "<|message|>Hello! How can I help?<|return|>")
QWEN3 = "<think>\nA greeting: answer briefly.\n</think>\n\nHello there.<|im_end|>"


@functools.lru_cache(maxsize=None)
def chat_format(family_id: str) -> ChatFormat:
    spec = family(family_id)
    return ChatFormat(build_tokenizer(spec.tokenizer, spec.specials, template_text(spec.template)))


class ScriptedLlama:
    """A llama.cpp stand-in whose generation is fixed text (then more tokens, should nothing stop it)."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = token_ids

    def generate(self, prompt, **kwargs):
        yield from self.token_ids
        while True:
            yield self.token_ids[0]

    def set_seed(self, seed):
        pass

    def reset(self):
        pass


def scripted_engine(family_id: str, raw: str) -> LlamaCppEngine:
    fmt = chat_format(family_id)
    ids = fmt.tokenizer.encode(raw, add_special_tokens=False)
    return LlamaCppEngine(ScriptedLlama(ids), fmt.tokenizer, fmt, family_id, 4096)


def test_frames_are_measured_from_each_template():
    oss = chat_format("gpt-oss").answer_frame
    assert oss == AnswerFrame("<|channel|>final<|message|>", "<|channel|>analysis<|message|>",
                              "<|end|><|start|>assistant<|channel|>final<|message|>")
    assert chat_format("qwen3").answer_frame.reasoning_close == "\n</think>\n\n"
    # Qwen3.5's generation prompt opens the reasoning itself: it is open from the answer's first token.
    assert chat_format("qwen3.5").answer_frame.reasoning_open == ""
    assert chat_format("gemma4").answer_frame.reasoning_open == "<|channel>thought\n"
    assert chat_format("smollm2").answer_frame == AnswerFrame()  # the <think> form, written by reasoning models
    # gpt-oss's <|end|> ends earlier answers in a conversation, and the analysis message inside one answer: it
    # stops an answer only after its reasoning.
    oss = chat_format("gpt-oss")
    assert {"<|end|>", "<|return|>"} <= set(oss.stop_tokens)
    assert oss.reasoning_stop_token_ids == [oss.tokenizer.convert_tokens_to_ids("<|end|>")]
    assert chat_format("qwen3").reasoning_stop_token_ids == chat_format("smollm2").reasoning_stop_token_ids == []


@pytest.mark.parametrize("raw, reasoning, answer", [
    ("Hello", None, "Hello"),
    ("  <b>bold</b>", None, "  <b>bold</b>"),
    ("\n<think>x</think>y", None, "\n<think>x</think>y"),  # whitespace first: not a frame, shown at once
    ("<think>\nplan\n</think>\n\nDone.", "plan", "Done."),
    ("<think>still thinking", "still thinking", ""),       # cut by the length limit inside the reasoning
    ("<thi", None, "<thi"),                                 # ended inside what could have been an opening
])
def test_a_finished_answer_splits_into_reasoning_and_text(raw, reasoning, answer):
    assert AnswerFrame().answer(raw) == (reasoning, answer)


def test_while_generating_a_possible_opening_is_held_back():
    frame = chat_format("gpt-oss").answer_frame
    assert frame.split("<|channel|>") == (None, None)
    assert frame.split("<|channel|>analysis<|message|>Thinking") == ("Thinking", None)
    assert frame.split("<|channel|>final<|message|>Hi") == (None, len("<|channel|>final<|message|>"))
    # A call on gpt-oss's commentary channel is not a frame: the text is kept whole for the call parser.
    assert frame.split("<|channel|>commentary to=functions.f") == (None, 0)
    assert AnswerFrame(reasoning_open="", reasoning_close="\n</think>\n\n").split("plan\n</think>\n\nOK") == ("plan", 15)


@pytest.mark.parametrize("family_id, raw, reasoning, answer", [
    ("gpt-oss", GPT_OSS, "The user greets. Greet back.", "Hello! How can I help?"),
    ("gpt-oss", "<|channel|>final<|message|>Just this.<|return|>", None, "Just this."),
    ("qwen3", QWEN3, "A greeting: answer briefly.", "Hello there."),
    ("smollm2", "<b>Bold</b> move.<|im_end|>", None, "<b>Bold</b> move."),
])
def test_engines_show_the_answer_and_return_the_reasoning_apart(family_id, raw, reasoning, answer):
    engine = scripted_engine(family_id, raw)
    result = engine.generate(USER, max_new_tokens=200)
    assert (result.reasoning, result.text, result.finish_reason) == (reasoning, answer, "stop")
    assert result.raw_text + engine.chat_format.stop_tokens[0] == raw  # everything generated, for the call parser
    finished, thought = [], []
    pieces = list(engine.stream(USER, max_new_tokens=200, on_finish=finished.append, on_reasoning=thought.append))
    assert "".join(pieces) == answer and ("".join(thought) or None) == reasoning
    assert finished[0].text == answer


def test_gpt_oss_answers_after_its_analysis_instead_of_stopping_there():
    # Before: <|end|> stopped it, so the answer was the analysis with its channel's name: "analysisThe user...".
    engine = scripted_engine("gpt-oss", GPT_OSS)
    assert engine.generate(USER, max_new_tokens=200).text == "Hello! How can I help?"
    # A final answer closed with <|end|> (as earlier answers are written, and trained) still ends there.
    engine = scripted_engine("gpt-oss", "<|channel|>final<|message|>Bye.<|end|><|start|>user<|message|>more")
    result = engine.generate(USER, max_new_tokens=200)
    assert (result.text, result.finish_reason, result.completion_tokens) == ("Bye.", "stop", 10)


def test_chat_shows_the_reasoning_then_the_answer():
    from ducktune.chat.repl import _answer

    out = io.StringIO()
    message = _answer(scripted_engine("qwen3", QWEN3), USER, 200, 0.0, None, out)
    assert out.getvalue() == "(thinking) A greeting: answer briefly.\n\nHello there.\n"
    assert message == {"role": "assistant", "content": "Hello there."}


def test_serve_returns_reasoning_content_whole_and_streamed():
    from fastapi.testclient import TestClient

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import ServedModel
    from ducktune.serve.worker import GenerationWorker

    worker = GenerationWorker("m", gather_s=0.0)
    engine = scripted_engine("gpt-oss", GPT_OSS)

    class Registry:
        def get(self, model_id):
            return ServedModel(model_id, engine, worker, False, 0, 4096) if model_id == "oss" else None

        def list(self):
            return [{"id": "oss"}]

        def stats(self):
            return {}

    ask = {"model": "oss", "messages": USER, "max_tokens": 200}
    try:
        with TestClient(create_app(Registry())) as client:
            message = client.post("/v1/chat/completions", json=ask).json()["choices"][0]["message"]
            assert message == {"role": "assistant", "content": "Hello! How can I help?",
                               "reasoning_content": "The user greets. Greet back."}
            with client.stream("POST", "/v1/chat/completions", json={**ask, "stream": True}) as response:
                body = "".join(response.iter_text())
    finally:
        worker.shutdown()
    import json

    deltas = [json.loads(line[6:])["choices"][0]["delta"] for line in body.splitlines()
              if line.startswith("data: {") and json.loads(line[6:])["choices"]]
    thought = "".join(d.get("reasoning_content", "") for d in deltas)
    said = "".join(d.get("content", "") or "" for d in deltas)
    assert (thought, said) == ("The user greets. Greet back.", "Hello! How can I help?")
    first_said = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get("reasoning_content") for d in deltas[first_said:])  # the reasoning comes first


def test_calls_after_the_reasoning_are_read_and_the_reasoning_is_not_their_text():
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls

    fmt = chat_format("qwen3")
    raw = '<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    text, calls = parse_tool_calls(raw, call_syntax(fmt), fmt.answer_frame)
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("f", {"x": 1})]
    # Llama 3.1 answers a call with the JSON object alone: after a <think> block it is still read.
    llama = chat_format("llama3")
    assert parse_tool_calls('{"name": "f", "parameters": {"x": 2}}', call_syntax(llama), llama.answer_frame)[1]
    text, calls = parse_tool_calls('<think>plan</think>\n{"name": "f", "parameters": {"x": 2}}', call_syntax(llama),
                                   llama.answer_frame)
    assert text == "" and calls[0].arguments == {"x": 2}
    assert parse_tool_calls('<think>plan</think>\n{"name": "f", "parameters": {"x": 2}}', call_syntax(llama)) is None


def test_gpt_oss_trains_the_call_after_its_reasoning():
    """gpt-oss writes a call's reasoning as an analysis message closed by <|end|>, then the call: both are the
    answer (before, the span ended at that <|end|> and the call went untrained). Once a final answer follows,
    the template drops that reasoning from the conversation; the call is still found (it was refused)."""
    fmt = chat_format("gpt-oss")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = {"role": "assistant", "content": "", "reasoning_content": "Need the weather.", "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
    result = {"role": "tool", "content": "4 degrees", "name": "get_weather", "tool_call_id": "call00001"}
    text, spans = fmt.assistant_spans([USER[0], call], tools)
    (trained,) = [text[a:b] for a, b in spans]
    assert trained.startswith("<|channel|>analysis<|message|>Need the weather.<|end|>")
    assert trained.endswith('to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}<|call|>')
    text, spans = fmt.assistant_spans([USER[0], call, result, {"role": "assistant", "content": "It is 4."}], tools)
    first, last = [text[a:b] for a, b in spans]
    assert first.endswith('{"city": "Oslo"}<|call|>') and "Need the weather." not in text
    assert last.startswith("It is 4.")
