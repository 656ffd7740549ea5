"""Tool-calling data: which parts of it each family's chat template writes, and the loss masks on the
real templates: calls trained like answers, definitions and results context, prompts as trained."""

from __future__ import annotations

import functools
import json

import pytest

from ducktune.data.formats import normalize
from ducktune.data.schema import Record
from ducktune.data.template import IGNORE_INDEX, ChatFormat
from ducktune.data.template_rules import tool_parts
from ducktune.models.families import FAMILIES, family, template_text
from ducktune.models.standin_tokenizers import build_tokenizer

ALL_PARTS = {"definitions", "calls", "results"}
# The families whose published templates write tool definitions, structured calls and results.
TOOL_FAMILIES = ["qwen2.5", "qwen3", "qwen3-moe", "gpt-oss", "qwen3.5", "llama3", "mistral-v0.3", "mistral-nemo",
                 "ministral3", "mistral-small3", "gemma4", "granite4", "granite4h", "nemotron-h", "olmo3", "exaone4",
                 "apertus", "minicpm3"]
RECORD = {
    "messages": [
        {"role": "user", "content": "USERASKS weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "TWENTYDEGREES"},
        {"role": "assistant", "content": "It is warm."}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "DEFINITIONTEXT",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
}


@functools.lru_cache(maxsize=None)
def chat_format(family_id: str) -> ChatFormat:
    spec = family(family_id)
    return ChatFormat(build_tokenizer(spec.tokenizer, spec.specials, template_text(spec.template)))


def sample():
    issues = []
    found = normalize(Record(json.loads(json.dumps(RECORD)), "tools.json", 1), "messages", issues)
    assert issues == []
    return found


def test_which_families_write_which_parts_of_tool_calling():
    parts = {spec.id: tool_parts(chat_format(spec.id)) for spec in FAMILIES}
    assert sorted(f for f, p in parts.items() if p == ALL_PARTS) == sorted(TOOL_FAMILIES)
    # Granite 3 / LFM2 take calls as the answer's text; Falcon 3 writes calls into the user's turn.
    for family_id in ("granite", "lfm2", "falcon3"):
        assert parts[family_id] == {"definitions", "results"}, family_id
    assert parts["deepseek-r1-distill-qwen"] == {"calls", "results"}  # no definitions in R1's template
    assert parts["smollm2"] == {"results"}  # ChatML prints any role: a tool turn, nothing else
    assert parts["gemma3"] == parts["llama2-chat"] == frozenset()  # alternation: the tool role raises


@pytest.mark.parametrize("family_id", TOOL_FAMILIES)
def test_calls_are_trained_and_definitions_and_results_are_context(family_id):
    fmt = chat_format(family_id)
    encoded = fmt.encode(sample(), 4096)
    runs = fmt.decode_spans(encoded)
    trained = [text for text, is_trained in runs if is_trained]
    context = "".join(text for text, is_trained in runs if not is_trained)
    assert len(trained) == 2, trained
    call, answer = trained
    assert "get_weather" in call and "Paris" in call  # the call in the template's own syntax
    assert answer.rstrip().endswith(tuple(fmt.stop_tokens)) and "It is warm." in answer
    assert any(call.rstrip().endswith(stop) for stop in fmt.stop_tokens) or family_id in ("gpt-oss", "gemma4", "apertus")
    for text in ("DEFINITIONTEXT", "TWENTYDEGREES", "USERASKS"):
        assert text in context and not any(text in run for run in trained), text
    messages = sample().message_dicts()  # the training text is the template's rendering, nothing added or lost
    rendered = fmt.tokenize(fmt.render(messages, tools=sample().tools), messages)[0]
    # Apertus: training closes the last answer with EOS, which render() leaves to the continuing prompt.
    assert rendered + ([fmt.tokenizer.eos_token_id] if fmt.eos_closes_earlier else []) == encoded.input_ids


# The templates' own inconsistencies, kept as the templates write them (strict: a fix shows up here).
PROMPT_MISMATCH = {
    # Prompts open answers with `<think>\n`, which the template writes into the last answer only: an earlier
    # answer (a call followed by its result) is trained without it.
    "nemotron-h": "the generation prompt's <think> is not written before a call that has a result after it",
    # A result is written inside the assistant's turn and the answer goes on there; a prompt after a result
    # opens a new assistant turn instead.
    "apertus": "a prompt after a tool result opens a new assistant turn that training never shows",
}


@pytest.mark.parametrize("family_id", [
    pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=PROMPT_MISMATCH[f])) if f in PROMPT_MISMATCH else f
    for f in TOOL_FAMILIES])
def test_prompts_with_tools_are_the_trained_prefixes(family_id):
    """At inference the model is prompted with the tools (and, after a result, with the call and result)
    exactly as training showed them before each trained turn."""
    fmt = chat_format(family_id)
    chat = sample()
    encoded = fmt.encode(chat, 4096)
    starts = [i for i, label in enumerate(encoded.labels)
              if label != IGNORE_INDEX and (i == 0 or encoded.labels[i - 1] == IGNORE_INDEX)]
    messages = chat.message_dicts()
    assert fmt.prompt_ids(messages[:1], tools=chat.tools) == encoded.input_ids[:starts[0]]
    assert fmt.prompt_ids(messages[:3], tools=chat.tools) == encoded.input_ids[:starts[1]]


def test_a_call_in_a_template_without_end_of_turn_is_refused_in_one_line(tiny_qwen):
    from ducktune.errors import DataError
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_qwen)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% if m.tool_calls %}"
                               "CALL {{ m.tool_calls[0].function.name }}{% endif %}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    fmt = ChatFormat(tokenizer)
    assert fmt.eot_token is None
    with pytest.raises(DataError, match="no end-of-turn token, so where a tool call ends is unknown"):
        fmt.encode(sample(), 4096)


def _tool_data(path):
    record = json.loads(json.dumps(RECORD))
    call_only = {"messages": record["messages"][:2], "tools": record["tools"]}  # a sample may end with the call
    path.write_text("".join(json.dumps(r) + "\n" for r in (record, call_only)), encoding="utf-8")
    return path


def test_tool_data_trains_end_to_end_and_templates_without_tools_refuse_it(tmp_path, capsys, tiny_qwen):
    from ducktune.cli import main
    from ducktune.models.families import standin_dir

    data = _tool_data(tmp_path / "tools.jsonl")
    # ChatML (tiny_qwen) writes a tool turn but no definitions or calls: each record named, nothing written.
    assert main(["data", "check", str(data), "--model", str(tiny_qwen)]) == 2
    out = capsys.readouterr().out
    assert f"{data}:1: tools: this model's chat template does not write tool definitions" in out
    assert f"{data}:2: tools: this model's chat template does not write tool definitions" in out
    model = standin_dir("qwen2.5", tmp_path / "standins", log=lambda *a: None)
    assert main(["data", "check", str(data), "--model", str(model)]) == 0
    assert ("tools:   2 samples use tools (2 calls: trained like answers; definitions and results are context); "
            "the model's chat template writes definitions, calls, results") in capsys.readouterr().out
    assert main(["data", "check", str(data), "--model", str(tiny_qwen), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    # Both records refused (counted as bad, not as samples); ChatML writes a tool turn and nothing else.
    assert report["tools"] == {"samples": 0, "calls": 0, "template_writes": ["results"]} and report["bad_records"] == 2
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {model}\ndata:\n  datasets: [{data}]\noutput:\n  dir: {tmp_path / 'run'}\n"
                      "train:\n  max_steps: 1\n  save_steps: 100\neval:\n  max_new_tokens: 2\n", encoding="utf-8")
    assert main(["train", str(config)]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    # Both samples train: the call of each (and the final answer of the first).
    assert info["data"]["train_samples"] == 2 and info["data"]["skipped_bad"] == 0
    assert info["data"]["tool_samples"] == 2 and (tmp_path / "run" / "adapter").is_dir()
    # The probe prompt (both records ask the same) is asked with its sample's tools, as it was trained.
    assert info["probe_prompts"] == ["USERASKS weather in Paris?"] and info["probe_tools"] == [RECORD["tools"]]


PREFERENCE = {  # TRL's conversational pair with tools: the right call is chosen, a call with wrong arguments rejected
    "prompt": [{"role": "user", "content": "USERASKS weather in Paris?"}],
    "chosen": [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}],
    "rejected": [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}]}],
    "tools": RECORD["tools"],
}


def test_preference_pairs_of_calls_train_the_calls_as_sft_trains_them(tmp_path, capsys, tiny_qwen):
    """DPO on tool calls: each answer's row is the row SFT trains for that call (the call in the template's
    syntax trained, the definitions context); a template without tools refuses the records by field; a DPO
    run on them completes."""
    from ducktune.cli import main
    from ducktune.data.preference import answer_chat, answers, encode_preference
    from ducktune.models.families import standin_dir

    fmt = chat_format("qwen2.5")
    issues = []
    sample = normalize(Record(json.loads(json.dumps(PREFERENCE)), "p.json", 1), "preference", issues)
    assert issues == [] and sample.turns["rejected"].tool_calls[0].arguments == {"city": "Lyon"}
    row = encode_preference(fmt, sample, 4096)
    for name, answer in answers(sample):
        encoded = fmt.encode(answer_chat(sample, answer), 4096, "last_assistant")
        assert row[f"{name}_input_ids"] == encoded.input_ids
        trained = fmt.tokenizer.decode([t for t, label in zip(row[f"{name}_input_ids"], row[f"{name}_labels"])
                                        if label != IGNORE_INDEX])
        city = "Paris" if name == "chosen" else "Lyon"
        assert trained.startswith("<tool_call>") and f'"city": "{city}"' in trained, trained
        prompt = fmt.tokenizer.decode(row[f"{name}_input_ids"][:row["prompt_len"]])
        assert "DEFINITIONTEXT" in prompt and "<tool_call>" not in prompt.split("<|im_start|>assistant")[-1]

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps(PREFERENCE) + "\n", encoding="utf-8")
    assert main(["data", "check", str(data), "--model", str(tiny_qwen)]) == 2
    assert f"{data}:1: tools: this model's chat template does not write tool definitions" in capsys.readouterr().out
    model = standin_dir("qwen2.5", tmp_path / "standins", log=lambda *a: None)
    assert main(["data", "check", str(data), "--model", str(model), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["tools"]["samples"], report["tools"]["calls"]) == (1, 2)  # the chosen call and the rejected one
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: {model}\ndata:\n  datasets: [{data}]\noutput:\n  dir: {tmp_path / 'run'}\n"
                      "train:\n  objective: dpo\n  max_steps: 1\n  save_steps: 100\neval:\n  max_new_tokens: 2\n",
                      encoding="utf-8")
    assert main(["train", str(config)]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["objective"] == "dpo"
    # Counted for the export's Ollama caveat, and probed with the sample's tools, as SFT runs are.
    assert info["data"]["tool_samples"] == 1 and info["probe_tools"] == [RECORD["tools"]]


def test_glaive_records_train_in_the_models_own_call_syntax():
    """A Glaive function-calling record trains the template's own call (Qwen's <tool_call> JSON), not Glaive's
    <functioncall> markers; its function list and the function's response are context."""
    from data_support import GLAIVE_CHAT, GLAIVE_SYSTEM

    issues = []
    glaive = normalize(Record({"system": GLAIVE_SYSTEM, "chat": GLAIVE_CHAT}, "g.json", 1), "glaive", issues)
    assert issues == []
    fmt = chat_format("qwen2.5")
    runs = fmt.decode_spans(fmt.encode(glaive, 4096))
    trained = [text for text, is_trained in runs if is_trained]
    context = "".join(text for text, is_trained in runs if not is_trained)
    assert len(trained) == 3 and trained[0].startswith('<tool_call>\n{"name": "get_exchange_rate", "arguments": '
                                                        '{"base": "USD"}}'), trained
    assert '"description": "Exchange rate of two currencies"' in context and '{"rate": 0.85}' in context
    assert not any(marker in "".join(trained) + context for marker in ("<functioncall>", "FUNCTION RESPONSE", "USER:"))


def test_hermes_records_train_in_the_models_own_call_syntax():
    """A Hermes function-calling record (<tool_call> markup as text) trains Llama 3.1's own call, its JSON with
    "parameters", not Hermes' markup; the function list and the results are context written Llama's way."""
    from data_support import HERMES_RECORD

    record = json.loads(json.dumps(HERMES_RECORD))
    conversations = record["conversations"]  # one call and its result: Llama 3.1's template calls one at a time
    conversations[2]["value"] = conversations[2]["value"].split("</tool_call>")[0] + "</tool_call>"
    conversations[3]["value"] = conversations[3]["value"].split("</tool_response>")[0] + "</tool_response>"
    issues = []
    hermes = normalize(Record(record, "h.json", 1), "sharegpt", issues)
    assert issues == []
    fmt = chat_format("llama3")
    runs = fmt.decode_spans(fmt.encode(hermes, 4096))
    trained = "".join(text for text, is_trained in runs if is_trained)
    context = "".join(text for text, is_trained in runs if not is_trained)
    assert '{"name": "search_flights", "parameters": {"city": "Auckland", "flexible": true}}' in trained, trained
    # The result is JSON (Python's None read as null), which Llama's template quotes once more.
    assert '"description": "Searches for flights."' in context and 'price\\": null' in context and "None" not in context
    assert not any(mark in trained + context for mark in ("<tool_call>", "<tool_response>", "<tools>", "XML tags"))


def test_parallel_calls_a_template_refuses_are_said_with_what_to_do():
    """Llama 3.1/3.2's template raises on two calls in one answer (Hermes and xLAM data have many): the data
    check names the answer and says to give each call its own turn."""
    from data_support import HERMES_RECORD
    from ducktune.data.lengths import token_stats

    hermes = normalize(Record(json.loads(json.dumps(HERMES_RECORD)), "h.json", 1), "sharegpt", [])
    _, issues = token_stats([hermes, sample()], chat_format("llama3"), 4096, "last")
    assert [str(i) for i in issues] == [
        "h.json:1: (template): the chat template refused this conversation: This model only supports single tool-calls "
        "at once! (conversations[2] makes 2 calls at once: where the template writes one call per answer, give each "
        "call its own assistant turn, followed by its result)"]


def test_probe_prompts_keep_their_samples_tools():
    from types import SimpleNamespace

    from ducktune.train.tokenize import probe_prompts, probe_tools

    plain = normalize(Record({"instruction": "Hi", "output": "Hello"}, "a.json", 1), "alpaca", [])
    samples = [sample(), plain]
    config = SimpleNamespace(eval=SimpleNamespace(probe_prompts=[]))
    prompts = probe_prompts(config, samples)
    assert prompts == ["USERASKS weather in Paris?", "Hi"]
    assert probe_tools(config, samples, prompts) == [RECORD["tools"], None]
    assert probe_tools(config, [plain], ["Hi"]) is None  # no tools anywhere: run.json stays as it was
    config.eval.probe_prompts = ["Hi"]
    assert probe_tools(config, samples, ["Hi"]) is None  # the user's own prompts come without tools


def test_export_says_which_ollama_serves_tools_when_the_run_trained_on_them():
    from ducktune.export.pipeline import template_caveats

    fmt = chat_format("qwen2.5")
    (caveat,) = template_caveats(fmt, ["gguf", "ollama"], tool_samples=3)
    assert "trained on tool calls (3 samples)" in caveat and "ducktune serve" in caveat
    # Qwen2.5's template declares tools, so Ollama 0.30+ prompts with it (ollama_select): tools work there.
    assert "Ollama 0.30 and later prompt this model with the GGUF's chat template" in caveat
    assert "Ollama before 0.30 uses the TEMPLATE, which has no tool section" in caveat
    assert template_caveats(fmt, ["gguf", "ollama"], tool_samples=0) == []
    assert template_caveats(fmt, ["gguf"], tool_samples=3) == []  # no Modelfile written: nothing to say


class ScriptedEngine:
    """An engine whose answer is fixed text (a real template's chat format: prompts and call syntax are
    measured from it), recording the conversation and tools each request was prompted with."""

    batches = False

    def __init__(self, family_id: str, raw_answer: str):
        self.chat_format = chat_format(family_id)
        self.raw_answer = raw_answer
        self.prompts: list[tuple[list, list | None]] = []

    def adapter_disabled(self, base):
        import contextlib

        return contextlib.nullcontext()

    def generate(self, messages, max_new_tokens=256, temperature=0.0, top_p=1.0, seed=None, stop=None, cancel=None,
                 tools=None, answer_start=""):
        from ducktune.chat.engine import Generation

        self.prompts.append((messages, tools))
        self.answer_start = answer_start
        n_prompt = len(self.chat_format.prompt_ids(messages, tools, answer_start))
        return Generation(self.visible(), n_prompt, 7, "stop", self.raw_answer)

    def visible(self) -> str:
        """The answer as a stream shows it: its special tokens left out."""
        tokenizer = self.chat_format.tokenizer
        return tokenizer.decode(tokenizer(self.raw_answer, add_special_tokens=False)["input_ids"],
                                skip_special_tokens=True)

    def stream(self, messages, max_new_tokens=256, cancel=None, on_finish=None, tools=None, on_reasoning=None,
               **sampling):
        """The answer's tokens through the real engine's AnswerText (the pieces a generation streams: the
        stand-in's small tokens split every marker), then the finish."""
        from ducktune.chat.engine import AnswerText

        result = self.generate(messages, max_new_tokens, tools=tools)
        tokenizer = self.chat_format.tokenizer
        row = AnswerText.for_format(tokenizer, self.chat_format, max_new_tokens, None, tools)
        for token in tokenizer(self.raw_answer, add_special_tokens=False)["input_ids"]:
            if piece := row.add(token):
                yield piece
        on_finish(result)


@pytest.fixture
def tool_server():
    from fastapi.testclient import TestClient

    from ducktune.serve.app import create_app
    from ducktune.serve.registry import ServedModel
    from ducktune.serve.worker import GenerationWorker

    engines = {}

    class Registry:
        def get(self, model_id):
            engine = engines.get(model_id)
            return None if engine is None else ServedModel(model_id, engine, worker, False, 0, 4096)

        def list(self):
            return [{"id": name} for name in engines]

        def stats(self):
            return {}

    worker = GenerationWorker("m", gather_s=0.0)
    with TestClient(create_app(Registry())) as client:
        yield client, engines
    worker.shutdown()


WEATHER = RECORD["tools"]
ASK = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": WEATHER}


def test_serve_answers_a_call_as_openai_tool_calls(tool_server):
    client, engines = tool_server
    engines["qwen"] = engine = ScriptedEngine(
        "qwen2.5", 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    body = client.post("/v1/chat/completions", json={"model": "qwen", **ASK}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}  # JSON text, as OpenAI sends
    # The prompt had the tools, written by the template where it writes them.
    messages, tools = engine.prompts[-1]
    assert tools == WEATHER and "DEFINITIONTEXT" in engine.chat_format.render(messages, True, tools)

    # The client sends the call back with its result (arguments as JSON text, content null): read as training does.
    follow = {"model": "qwen", "tools": WEATHER, "messages": ASK["messages"] + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "TWENTYDEGREES"}]}
    engine.raw_answer = "It is 20C."
    body = client.post("/v1/chat/completions", json=follow).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "It is 20C."}
    assert body["choices"][0]["finish_reason"] == "stop"
    messages, _ = engine.prompts[-1]
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert messages[2] == {"role": "tool", "content": "TWENTYDEGREES", "name": "get_weather", "tool_call_id": call["id"]}


def test_a_forced_tool_choice_begins_the_answer_with_the_call(tool_server):
    """tool_choice naming a function (LangChain's with_structured_output) or "required": the answer is begun
    in the prompt with the template's call opening (and the name), the model writes the rest, and the whole
    is read as the call; streamed, it comes whole. A function not offered, or no tools, is a 400."""
    client, engines = tool_server
    engines["qwen"] = engine = ScriptedEngine("qwen2.5", '", "arguments": {"city": "Paris"}}\n</tool_call>')
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = client.post("/v1/chat/completions", json={"model": "qwen", **ASK, "tool_choice": named}).json()
    assert engine.answer_start == '<tool_call>\n{"name": "get_weather'
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in choice["message"]["tool_calls"]] == [
        ("get_weather", {"city": "Paris"})]
    engine.raw_answer = 'get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    choices = stream_chunks(client, {"model": "qwen", **ASK, "tool_choice": "required"})
    assert engine.answer_start == '<tool_call>\n{"name": "'
    (calls,) = [c["delta"]["tool_calls"] for c in choices if "tool_calls" in c["delta"]]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome"} and choices[-1]["finish_reason"] == "tool_calls"
    for tool_choice, tools, message in (
            ({"type": "function", "function": {"name": "get_time"}}, WEATHER,
             "'tool_choice': 'get_time' is not among the tools offered (get_weather)"),
            ("required", None, "'tool_choice': forces a call, but no tools are offered")):
        response = client.post("/v1/chat/completions", json={"model": "qwen", "messages": ASK["messages"],
                                                             "tool_choice": tool_choice, "tools": tools})
        assert response.status_code == 400 and response.json()["error"]["message"] == message
    response = client.post("/v1/chat/completions", json={"model": "qwen", **ASK, "tool_choice": "always"})
    assert response.status_code == 400 and "must be 'auto', 'none', 'required' or" in response.json()["error"]["message"]


def test_serve_reads_keyed_calls_typed_by_the_requests_tools(tool_server):
    """Qwen3.5 writes argument values as they are: the API types them by the tools the request declares (a
    declared string "75" stays a string; two calls, both returned)."""
    client, engines = tool_server
    engines["qwen35"] = ScriptedEngine("qwen3.5", "\n</think>\n\n" + "\n".join(
        f"<tool_call>\n<function={name}>\n<parameter=city>\nParis\n</parameter>\n<parameter=code>\n75\n"
        "</parameter>\n</function>\n</tool_call>" for name in ("get_weather", "get_alerts")))
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "code": {"type": t}}}}} for name, t in (("get_weather", "string"),
                                                                             ("get_alerts", "integer"))]
    body = client.post("/v1/chat/completions", json={"model": "qwen35", "tools": tools,
                                                     "messages": ASK["messages"]}).json()
    assert body["choices"][0]["finish_reason"] == "tool_calls", body
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
             for c in body["choices"][0]["message"]["tool_calls"]]
    assert calls == [("get_weather", {"city": "Paris", "code": "75"}), ("get_alerts", {"city": "Paris", "code": 75})]


def test_serve_streams_calls_as_indexed_deltas_and_tool_choice_none_offers_no_tools(tool_server):
    client, engines = tool_server
    engines["mistral"] = engine = ScriptedEngine(
        "mistral-v0.3", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                        '{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    response = client.post("/v1/chat/completions", json={"model": "mistral", "stream": True, **ASK})
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = next(d["tool_calls"] for d in deltas if "tool_calls" in d)
    assert [(c["index"], json.loads(c["function"]["arguments"])["city"]) for c in calls] == [(0, "Paris"), (1, "Oslo")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and response.text.rstrip().endswith("[DONE]")
    # tool_choice "none": the model is not offered the tools, and its text is text.
    body = client.post("/v1/chat/completions", json={"model": "mistral", "tool_choice": "none", **ASK}).json()
    assert engine.prompts[-1][1] is None and body["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]


def test_the_call_gate_sends_text_up_to_the_calls():
    """What a stream offering tools may send: text before the opening (held while it may begin one, and
    whitespace until text follows), nothing from the opening on; all of it when no call comes."""
    from ducktune.chat.call_gate import CallGate

    gate = CallGate("<tool_call>")
    assert [gate.feed(p) for p in ("Check", "ing.\n<to", "ol_call>\n{", '"name": 1}')] == ["Check", "ing.", "", ""]
    assert gate.calling
    gate = CallGate("<tool_call>")
    assert [gate.feed(p) for p in ("a <to", "o much", "\n\n")] == ["a", " <too much", ""]
    assert gate.rest() == "\n\n" and not gate.calling
    bare = CallGate("")  # Llama 3.1: an answer that is a JSON object is a call
    assert [bare.feed(p) for p in ("\n", '{"na', 'me"')] == ["", "", ""] and bare.calling
    text = CallGate("")
    assert [text.feed(p) for p in ("Hi", ' {"x"}')] == ["Hi", ' {"x"}'] and not text.calling
    assert CallGate(None).feed("<tool_call>") == "<tool_call>"  # a template whose calls are not read


def stream_chunks(client, body):
    response = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200 and response.text.rstrip().endswith("[DONE]")
    return [json.loads(line[6:])["choices"][0] for line in response.text.splitlines() if line.startswith("data: {")]


def test_a_stream_offering_tools_sends_the_text_as_it_comes_and_then_the_calls(tool_server):
    """Qwen's <tool_call> is visible text: the answer's words stream in pieces, the call's markup never, the
    calls come as one indexed delta with finish_reason tool_calls. Where the opening is a special token
    the text leaves out (Ministral 3's [TOOL_CALLS]), the text before it streams all the same."""
    client, engines = tool_server
    engines["qwen"] = ScriptedEngine("qwen2.5", 'Let me check that for you.\n<tool_call>\n{"name": "get_weather", '
                                                '"arguments": {"city": "Paris"}}\n</tool_call>')
    choices = stream_chunks(client, {"model": "qwen", **ASK})
    contents = [c["delta"]["content"] for c in choices if c["delta"].get("content")]
    assert len(contents) > 3 and "".join(contents) == "Let me check that for you."
    (calls,) = [c["delta"]["tool_calls"] for c in choices if "tool_calls" in c["delta"]]
    assert [(c["index"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (0, "get_weather", {"city": "Paris"})]
    assert choices[-1]["finish_reason"] == "tool_calls"
    # An answer that only looks like it may call: everything is sent, a stop.
    engines["qwen"].raw_answer = "Use <tool_ names with care."
    choices = stream_chunks(client, {"model": "qwen", **ASK})
    assert "".join(c["delta"].get("content") or "" for c in choices) == "Use <tool_ names with care."
    assert choices[-1]["finish_reason"] == "stop"
    engines["ministral"] = ScriptedEngine("ministral3", 'Let me check that for you.[TOOL_CALLS]get_weather[ARGS]'
                                                       '{"city": "Paris"}')
    choices = stream_chunks(client, {"model": "ministral", **ASK})
    contents = [c["delta"]["content"] for c in choices if c["delta"].get("content")]
    assert len(contents) > 3 and "".join(contents) == "Let me check that for you."
    assert [c["delta"]["tool_calls"][0]["function"]["name"] for c in choices if "tool_calls" in c["delta"]] == [
        "get_weather"] and choices[-1]["finish_reason"] == "tool_calls"
    # No tools offered: the same answer is text, and the special token is not shown.
    choices = stream_chunks(client, {"model": "ministral", "messages": ASK["messages"]})
    assert "".join(c["delta"].get("content") or "" for c in choices) == engines["ministral"].visible()


def test_eval_scores_calls_by_function_and_arguments_prompted_with_the_tools():
    """`ducktune eval --data tools.jsonl`: an answer that should call is prompted with the sample's tools and
    scored by the calls it makes (read in the template's syntax); a text answer by the text metrics."""
    import contextlib

    from ducktune.chat.engine import Generation
    from ducktune.eval.inputs import ChatSet, EvalInputs
    from ducktune.eval.runner import evaluate_generation, headline

    first = sample()
    call_only = normalize(Record({"messages": RECORD["messages"][:2], "tools": RECORD["tools"]}, "t.json", 2),
                          "messages", [])
    wrong_city = normalize(Record({"messages": [RECORD["messages"][0], {**RECORD["messages"][1], "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}],
        "tools": RECORD["tools"]}, "t.json", 3), "messages", [])

    class Engine:
        chat_format = chat_format("qwen2.5")
        has_adapter = False
        prompted: list = []

        def adapter_disabled(self):
            return contextlib.nullcontext()

        def generate_batch(self, conversations, max_new_tokens, tools=None):
            self.prompted = list(zip(conversations, tools))
            call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            return [Generation("It is warm.", 1, 1, "stop", "It is warm."), Generation("", 1, 1, "stop", call),
                    Generation("", 1, 1, "stop", call)]

    engine = Engine()
    summary, predictions = evaluate_generation(engine, EvalInputs(chat=[ChatSet("t", [first, call_only, wrong_city])]),
                                               16, with_base=False)
    assert all(tools == RECORD["tools"] for _, tools in engine.prompted)
    assert engine.prompted[0][0][-1]["role"] == "tool"  # the final answer is asked after the call's result
    result = headline({}, summary, {})
    assert result["tool_call_name"]["tuned"] == 100.0 and result["tool_call_exact"]["tuned"] == 50.0
    assert result["exact_match"]["tuned"] == 100.0  # the text answer, scored apart
    assert predictions[2]["reference_calls"] == [{"name": "get_weather", "arguments": {"city": "Rome"}}]
    assert predictions[2]["tuned_scores"] == {"tool_call_name": 100.0, "tool_call_exact": 0.0}


def test_export_verifies_a_tool_run_on_prompts_offering_its_tools():
    """The export's checks (merged vs adapter, llama.cpp vs merged) ask the run's probe prompts with the tools
    each was probed with in training, in the same spread of at most 12 prompts."""
    from types import SimpleNamespace

    from ducktune.export.pipeline import _verification_probes
    from ducktune.export.verify import Reference, ollama_prompt_text, spread_indices

    fmt = chat_format("qwen2.5")
    source = SimpleNamespace(probe_prompts=[f"q{i}" for i in range(20)],
                             probe_tools=[WEATHER if i % 2 else None for i in range(20)])
    prompts, tools = _verification_probes(source, 12)
    assert prompts == [source.probe_prompts[i] for i in spread_indices(20, 12)]
    assert [t is WEATHER for t in tools] == [int(p[1:]) % 2 == 1 for p in prompts] and any(tools)
    reference = Reference(None, fmt.tokenizer, fmt, prompts, 8, tools)
    for prompt, offered, ids in zip(prompts, tools, reference.prompt_ids):
        assert ("DEFINITIONTEXT" in fmt.tokenizer.decode(ids)) == (offered is not None)
        text = ollama_prompt_text(fmt, [{"role": "user", "content": prompt}], False, offered)
        assert fmt.tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # No probe offered tools (or the run had none): none are kept.
    assert _verification_probes(SimpleNamespace(probe_prompts=["a", "b"], probe_tools=[None, None]), 12) == (["a", "b"], None)
    assert _verification_probes(SimpleNamespace(probe_prompts=["a"], probe_tools=None), 12) == (["a"], None)


@pytest.mark.slow
@pytest.mark.requires_llama_cpp
@pytest.mark.requires_go
def test_a_model_trained_on_calls_makes_them_through_eval_the_api_and_its_export(tmp_path, tiny_qwen_wide, tool_server):
    """End to end on a model that learns: Qwen2.5's tool template on the wide tiny model, three prompts each
    answered by a call with its own argument. After training, eval prompts with the tools and reads the calls
    (all right; the base model makes none), the OpenAI API answers the same prompt with tool_calls, streamed
    too, and so does the exported f16 GGUF in llama.cpp, prompted by its own chat template with the tools
    (what Ollama 0.30+ and llama-server do)."""
    from ducktune.chat.engine import ChatEngine
    from ducktune.config import DatasetSpec, load_config
    from ducktune.eval.runner import run_eval
    from ducktune.train import recipe

    tools = RECORD["tools"]
    records = [{"messages": [{"role": "user", "content": f"Weather in {city}?"}, {
        "role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": city})}}]}], "tools": tools}
        for city in ("Paris", "Oslo", "Rome")]
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    config = load_config(None, [])
    config.model.name_or_path, config.model.chat_template = str(tiny_qwen_wide), "qwen2.5"
    config.data.datasets = [DatasetSpec(path=str(data))]
    config.output.dir = str(tmp_path / "run")
    for section, name, value in [("train", "max_steps", 300), ("train", "learning_rate", 5e-3), ("train", "batch_size", 3),
                                 ("train", "save_steps", 1000), ("train", "warmup_ratio", 0.0), ("lora", "r", 16),
                                 ("lora", "alpha", 32), ("lora", "dropout", 0.0), ("eval", "max_new_tokens", 8)]:
        setattr(getattr(config, section), name, value)
    run_dir = recipe.train(config, progress=False, compare=False).run_dir
    out = run_eval(str(run_dir), data=[str(data)], with_base=True, max_new_tokens=90, log=lambda *a: None)
    assert out["tool_call_exact"] == {"base": 0.0, "tuned": 100.0}, out["tool_call_exact"]

    client, engines = tool_server
    engines["tuned"] = ChatEngine.from_run(str(run_dir), log=lambda *a: None)
    body = client.post("/v1/chat/completions", json={
        "model": "tuned", "max_tokens": 90, "tools": tools,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]}).json()
    assert body["choices"][0]["finish_reason"] == "tool_calls", body
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    # Streamed: the same call as one indexed delta, none of its markup as text.
    choices = stream_chunks(client, {"model": "tuned", "max_tokens": 90, "tools": tools,
                                     "messages": [{"role": "user", "content": "Weather in Oslo?"}]})
    assert choices[-1]["finish_reason"] == "tool_calls" and not any(c["delta"].get("content") for c in choices)
    (calls,) = [c["delta"]["tool_calls"] for c in choices if "tool_calls" in c["delta"]]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo"}]
    _export_calls_in_llama_cpp(run_dir, tools, engines["tuned"].chat_format)


def _export_calls_in_llama_cpp(run_dir, tools, fmt):
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls
    from ducktune.export.pipeline import export_run
    from ducktune.export.verify import _greedy, _jinja_renderer, _open_llama, gguf_string_field

    result = export_run(run_dir, quants="f16", name="toolduck", create=False, log=lambda *a: None)
    checks = {c.name: c for c in result.checks}
    assert not [f"{c.name}: {c.detail}" for c in result.checks if c.status == "FAIL"]
    # Verified on the run's probe prompts offering their tools: llama.cpp tokenized those prompts as HF did.
    manifest = json.loads((run_dir / "export" / "export.json").read_text())
    assert manifest["probe_tools"] and all(t == tools for t in manifest["probe_tools"] if t)
    assert checks["llama.cpp toolduck-f16.gguf: prompt token ids = HF"].status == "PASS"
    embedded = checks["Chat template in merged/ and the GGUFs = trained format"]
    assert embedded.status == "PASS" and "tool calls" in embedded.detail, embedded.detail
    assert checks["Modelfile: template Ollama prompts with"].detail.startswith("Ollama 0.30 and later prompt with "
                                                                               "the GGUF's chat template")
    assert any("trained on tool calls (3 samples)" in note for note in result.caveats)
    gguf = run_dir / "export" / "toolduck-f16.gguf"
    _, render = _jinja_renderer(gguf_string_field(gguf, "tokenizer.chat_template"), fmt.tokenizer)
    prompt = render([{"role": "user", "content": "Weather in Oslo?"}], tools)
    llm = _open_llama(gguf, 512, logits_all=True, n_threads=1)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    stops = {llm.token_eos(), *(llm.tokenize(t.encode(), add_bos=False, special=True)[0] for t in fmt.stop_tokens)}
    answer = llm.detokenize(_greedy(llm, ids, stops, 90), special=True).decode()
    _, calls = parse_tool_calls(answer, call_syntax(fmt))
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})], answer


ONE_CALL_PER_TURN = {"llama3", "gpt-oss"}  # templates that write (or raise past) the first call only
# Every family whose template writes calls (DeepSeek-R1-Distill-Qwen's writes no definitions).
CALL_FAMILIES = TOOL_FAMILIES + ["deepseek-r1-distill-qwen"]


def test_the_call_families_are_the_templates_that_write_calls():
    assert sorted(CALL_FAMILIES) == sorted(spec.id for spec in FAMILIES if "calls" in tool_parts(chat_format(spec.id)))


def rendered_turn(fmt, wanted, declared=None) -> str:
    """What a model trained on `fmt` generates for a turn making the `wanted` calls: the template's own
    rendering of that turn, stop token left out. `declared`: the tools' parameter types."""
    tools = [{"type": "function", "function": {"name": name, "description": "d", "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in (declared or {}).get(name, {}).items()}}}}
        for name in dict(wanted)]
    calls = [{"id": f"abcdefgh{i}", "type": "function", "function": {"name": n, "arguments": a}}
             for i, (n, a) in enumerate(wanted)]
    text, spans = fmt.assistant_spans([{"role": "user", "content": "q"},
                                       {"role": "assistant", "content": "", "tool_calls": calls}], tools)
    generated = text[slice(*spans[-1])]
    for stop in fmt.stop_tokens:
        generated = generated.removesuffix(stop)
    return generated


@pytest.mark.parametrize("family_id", CALL_FAMILIES)
def test_calls_written_in_the_templates_syntax_are_read_back(family_id):
    """What a model trained on a template generates for a turn with calls is read back as the same calls, in
    order, with their arguments' types: several calls in one turn, a call without arguments, and a string
    argument that reads as a number (the tool declares it a string)."""
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls

    fmt = chat_format(family_id)
    syntax = call_syntax(fmt)
    wanted = [("get_weather", {"city": "Paris", "days": 2, "code": "42", "tags": ["a", "b"], "metric": True,
                               "where": {"lat": 48.85, "near": None}}),
              ("get_time", {}), ("get_news", {"topic": 'the "duck"\nfeed'})]
    declared = {"get_weather": {"city": "string", "days": "integer", "code": "string", "tags": "array",
                                "metric": "boolean", "where": "object"}, "get_news": {"topic": "string"}}
    if family_id in ONE_CALL_PER_TURN:
        wanted = wanted[:1]
    tools = [{"type": "function", "function": {"name": n, "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in declared.get(n, {}).items()}}}} for n, _ in wanted]
    parsed = parse_tool_calls(rendered_turn(fmt, wanted, declared), syntax, fmt.answer_frame, tools)
    assert parsed is not None, (syntax, rendered_turn(fmt, wanted, declared))
    assert [(c.name, c.arguments) for c in parsed[1]] == wanted
    assert parsed[0] == ""  # nothing said before the calls
    assert parse_tool_calls("It is sunny in Paris.", syntax) is None  # a text answer is text


@pytest.mark.parametrize("family_id", CALL_FAMILIES)
def test_a_forced_call_begun_as_the_template_writes_it_reads_back(family_id):
    """For every family that writes calls, the forced opening (with a name, and without: "required") is how the
    trained turn begins, and that turn reads back as the call."""
    from ducktune.chat.tool_calls import call_syntax, forced_call_prefix, parse_tool_calls

    fmt = chat_format(family_id)
    turn = rendered_turn(fmt, [("get_weather", {"city": "Paris"})])
    for name in ("get_weather", ""):
        start = forced_call_prefix(fmt, name)
        assert start is not None and turn.startswith(start) and start.endswith(name), (start, turn)
        _, calls = parse_tool_calls(start + turn[len(start):], call_syntax(fmt), fmt.answer_frame, WEATHER)
        assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    ids = fmt.prompt_ids(ASK["messages"], WEATHER, start)
    assert fmt.tokenizer.decode(ids, skip_special_tokens=False).endswith(start)


# Nemotron-H's template writes an answer's text and its calls as two assistant turns (no text before a call).
@pytest.mark.parametrize("family_id", [f for f in CALL_FAMILIES if f not in ("llama3", "gpt-oss", "nemotron-h")])
def test_a_stream_shows_the_text_before_the_calls_and_never_their_markup(family_id):
    """Every family's answer with text and a call, token by token through the engine's AnswerText and the
    stream's CallGate: the text before the call streams (also where the call opens with a special token the
    text leaves out: Ministral 3, Granite 4, Gemma 4, Apertus), the call's markup never; the whole answer
    reads back as that text and the call. (Llama 3.1's answer is a call only when it is nothing else;
    gpt-oss calls in a channel header, sent when whole.)"""
    from ducktune.chat.call_gate import CallGate
    from ducktune.chat.engine import AnswerText
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls

    fmt = chat_format(family_id)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = {"id": "abcdefgh0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    text, spans = fmt.assistant_spans([{"role": "user", "content": "q"}, {"role": "assistant",
                                       "content": "Let me check that.", "tool_calls": [call]}], tools)
    tokenizer = fmt.tokenizer
    row = AnswerText.for_format(tokenizer, fmt, 10_000, None, tools)
    gate = CallGate.for_format(fmt)
    shown = "".join(gate.feed(piece) for token in tokenizer(text[slice(*spans[-1])], add_special_tokens=False)[
        "input_ids"] if (piece := row.add(token)))
    before, calls = parse_tool_calls(row.generation(0).raw_text, call_syntax(fmt), fmt.answer_frame, tools)
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert shown.strip() == before.strip() and "get_weather" not in shown and "Paris" not in shown
    assert before.strip() in ("Let me check that.", "")  # "": a template that writes no text beside calls


def test_keyed_calls_read_text_before_them_and_types_by_the_declared_tools():
    """Qwen3.5's `<parameter=…>` values are written as they are: a declared string stays a string, an
    undeclared value reads as JSON where it is JSON; text before the calls is the answer's content; a call
    cut off mid-way is text, not a half-read call."""
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls

    fmt = chat_format("qwen3.5")
    syntax = call_syntax(fmt)
    assert syntax.style == "keyed"
    turn = rendered_turn(fmt, [("lookup", {"zip": "0150", "n": "7", "flag": "True"})])
    declared = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
        "zip": {"type": "string"}, "n": {"type": "string"}, "flag": {"type": "string"}}}}}]
    assert parse_tool_calls(turn, syntax, fmt.answer_frame, declared)[1][0].arguments == {
        "zip": "0150", "n": "7", "flag": "True"}
    # Undeclared: "7" is the number 7, "True" the template's str() of a bool, "0150" no JSON: a string.
    assert parse_tool_calls(turn, syntax, fmt.answer_frame)[1][0].arguments == {"zip": "0150", "n": 7, "flag": True}
    text, calls = parse_tool_calls(turn.replace("<tool_call>", "Let me look.\n\n<tool_call>"), syntax,
                                   fmt.answer_frame)
    assert text == "Let me look." and [c.name for c in calls] == ["lookup"]
    assert parse_tool_calls(turn[:turn.index("</parameter>")], syntax, fmt.answer_frame) is None
    gemma = chat_format("gemma4")  # its own notation: strings in <|"|>, bare keys, numbers as written
    assert call_syntax(gemma).keyed.quote == '<|"|>'
    turn = rendered_turn(gemma, [("lookup", {"q": "a,b:{c}", "at": {"x": [1, -2.5e3, True]}})])
    assert "call:lookup{" in turn and parse_tool_calls(turn, call_syntax(gemma), gemma.answer_frame)[1][0].arguments == {
        "q": "a,b:{c}", "at": {"x": [1, -2500.0, True]}}
    assert parse_tool_calls('<|tool_call>call:lookup{q:<|"|>open', call_syntax(gemma)) is None
    assert parse_tool_calls('<|tool_call>call:lookup{n:007}<tool_call|>', call_syntax(gemma))[1][0].arguments == {"n": 7}
    olmo = chat_format("olmo3")
    turn = rendered_turn(olmo, [("lookup", {"q": "a(b)=c, d", "n": 2})])
    assert "lookup(" in turn and parse_tool_calls(turn, call_syntax(olmo))[1][0].arguments == {"q": "a(b)=c, d", "n": 2}


def test_chat_offers_tools_shows_the_calls_and_result_answers_them(tmp_path, capsys, tiny_qwen):
    """`ducktune chat --tools tools.json`: the model's calls are shown, /result gives the tool's result,
    and the model answers after it with the call and result in its prompt."""
    import io

    from ducktune.chat.engine import Generation
    from ducktune.chat.repl import chat_repl
    from ducktune.cli import main

    class Engine:
        name = "scripted"

        def __init__(self):
            self.chat_format = chat_format("qwen2.5")
            self.asked = []
            self.answers = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
                            "It is 20C."]

        def stream(self, messages, max_new_tokens, temperature, on_finish=None, tools=None, on_reasoning=None):
            self.asked.append((messages, tools))
            raw = self.answers.pop(0)
            yield raw
            on_finish(Generation(raw, 1, 1, "stop", raw))

    engine, out = Engine(), io.StringIO()
    chat_repl("unused", stdin=io.StringIO("Weather in Paris?\n/result 20C\n/result again\n"), stdout=out,
              engine=engine, tools=WEATHER)
    text = out.getvalue()
    assert '(calls get_weather({"city": "Paris"}): answer with /result TEXT)' in text
    assert "<tool_call>" not in text and '"arguments"' not in text  # the call is shown once, not its markup
    assert "It is 20C." in text and "(no tool call to answer)" in text
    messages, tools = engine.asked[1]
    assert tools == WEATHER and [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"] and messages[2]["content"] == "20C"
    # The result is in the prompt where Qwen2.5 writes results; the call's id is one Mistral's templates accept.
    assert "<tool_response>\n20C\n</tool_response>" in engine.chat_format.render(messages, True, tools)
    assert len(messages[2]["tool_call_id"]) == 9 and messages[2]["tool_call_id"].isalnum()

    # A bad tools file, or a template without tools: one line each, before any answer.
    bad = tmp_path / "tools.json"
    bad.write_text('[{"description": "no name"}]', encoding="utf-8")
    assert main(["chat", str(tiny_qwen), "--tools", str(bad)]) == 2
    assert 'tools[0]: must describe a function' in capsys.readouterr().err
    from ducktune.commands.chat import _refuse_unwritten_tools
    from ducktune.errors import UserError
    from ducktune.models.loading import load_tokenizer

    with pytest.raises(UserError, match="does not write tool definitions, calls$"):  # ChatML writes a tool turn only
        _refuse_unwritten_tools(ChatFormat(load_tokenizer(tiny_qwen)), str(bad))
    _refuse_unwritten_tools(engine.chat_format, str(bad))  # Qwen2.5's writes all three
