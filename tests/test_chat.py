"""Chat: streaming equals non-streaming, multi-turn history, stop tokens, the terminal REPL."""

import io
import json

import pytest

from ducktune.chat.engine import ChatEngine
from ducktune.chat.repl import chat_repl
from ducktune.config import DatasetSpec, load_config
from ducktune.train.recipe import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama):
    tmp = tmp_path_factory.mktemp("chat-run")
    data = tmp / "d.json"
    data.write_text(json.dumps([{"instruction": "Who are you?", "output": "I am Duckling."}] * 4))
    config = load_config(None, ["train.max_steps=20", "train.learning_rate=0.01", "train.batch_size=4",
                                "lora.dropout=0", f"output.dir={tmp / 'run'}", f"model.name_or_path={tiny_llama}"])
    config.data.datasets = [DatasetSpec(path=str(data))]
    train(config, progress=False, compare=False)
    return tmp / "run"


def test_stream_equals_generate(run_dir):
    engine = ChatEngine.from_run(run_dir)
    messages = [{"role": "user", "content": "Who are you?"}]
    whole = engine.generate(messages, max_new_tokens=16)
    streamed = "".join(engine.stream(messages, max_new_tokens=16))
    assert streamed == whole.text
    # Batched generation (used by reports) agrees with one-by-one generation.
    batch = engine.generate_batch([messages, [{"role": "user", "content": "hello there, friend"}]], max_new_tokens=16)
    assert batch[0].text == whole.text
    assert batch[1].text == engine.generate([{"role": "user", "content": "hello there, friend"}], max_new_tokens=16).text


def test_stops_at_end_of_turn_token(run_dir):
    engine = ChatEngine.from_run(run_dir)
    result = engine.generate([{"role": "user", "content": "Who are you?"}], max_new_tokens=40)
    assert result.finish_reason == "stop" and result.completion_tokens < 40
    assert "<|eot_id|>" not in result.text
    capped = engine.generate([{"role": "user", "content": "Who are you?"}], max_new_tokens=2)
    assert capped.finish_reason == "length" and capped.completion_tokens == 2


def test_stop_strings_and_cancel(run_dir):
    import threading

    engine = ChatEngine.from_run(run_dir)
    messages = [{"role": "user", "content": "Who are you?"}]
    full = engine.generate(messages, max_new_tokens=16).text
    cut_at = full[len(full) // 2:][:3]
    assert cut_at
    stopped = engine.generate(messages, max_new_tokens=16, stop=[cut_at])
    assert stopped.text == full[: full.find(cut_at)] and stopped.finish_reason == "stop"
    streamed = "".join(engine.stream(messages, max_new_tokens=16, stop=[cut_at]))
    assert streamed == stopped.text
    cancel = threading.Event()
    cancel.set()
    assert engine.generate(messages, max_new_tokens=16, cancel=cancel).completion_tokens <= 1


def test_base_answers_differ_from_tuned(run_dir):
    tuned = ChatEngine.from_run(run_dir)
    base = ChatEngine.from_run(run_dir, base_only=True)
    messages = [{"role": "user", "content": "Who are you?"}]
    tuned_answer = tuned.generate(messages, max_new_tokens=12).text
    assert tuned_answer != base.generate(messages, max_new_tokens=12).text
    with tuned.adapter_disabled():
        assert tuned.generate(messages, max_new_tokens=12).text == base.generate(messages, max_new_tokens=12).text


def test_repl_multi_turn_and_reset(run_dir, monkeypatch):
    engine = ChatEngine.from_run(run_dir)
    seen = []
    original = engine.stream

    def recording_stream(messages, **kwargs):
        seen.append([m["content"] for m in messages])
        return original(messages, **kwargs)

    engine.stream = recording_stream
    stdin = io.StringIO("Who are you?\nAnd then?\n/reset\nWho are you?\n/exit\nnever read\n")
    stdout = io.StringIO()
    monkeypatch.setattr(ChatEngine, "from_run", classmethod(lambda cls, *a, **k: engine))
    chat_repl(str(run_dir), stdin=stdin, stdout=stdout, max_new_tokens=12)
    first_answer = engine.generate([{"role": "user", "content": "Who are you?"}], max_new_tokens=12).text
    assert seen == [["Who are you?"], ["Who are you?", first_answer, "And then?"], ["Who are you?"]]
    out = stdout.getvalue()
    assert out.count(first_answer) >= 2 and "(new conversation)" in out


def test_batched_decoding_drops_rows_that_finished(run_dir):
    """generate_batch/generate_rows decode a batch with a KV cache and a row leaves it when it is done:
    later steps run on fewer rows (generate's fixed batch carries every row to the end), and the
    answers are those of one-by-one generation."""
    from ducktune.chat.engine import BatchRequest

    engine = ChatEngine.from_run(run_dir)
    conversations = [[{"role": "user", "content": "Who are you?"}], [{"role": "user", "content": "hello there, friend"}]]
    alone = [engine.generate(c, max_new_tokens=24) for c in conversations]
    assert all(g.finish_reason == "stop" and g.completion_tokens > 3 for g in alone)
    rows_per_forward = []
    hook = engine.model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: rows_per_forward.append(args[0].shape[0]))
    try:
        batch = engine.generate_batch(conversations, max_new_tokens=24)
        assert rows_per_forward == [2] * alone[0].completion_tokens  # prefill + one step per further token
        rows_per_forward.clear()
        short = engine.generate_rows([BatchRequest(conversations[0], 2), BatchRequest(conversations[1], 24)])
    finally:
        hook.remove()
    assert [(g.text, g.finish_reason) for g in batch] == [(g.text, g.finish_reason) for g in alone]
    assert rows_per_forward[:2] == [2, 2] and set(rows_per_forward[2:]) == {1}  # the capped row left after 2 tokens
    assert short[0].completion_tokens == 2 and short[0].finish_reason == "length" and short[1].text == alone[1].text
    ids = engine.greedy_ids([engine.chat_format.prompt_ids(c) for c in conversations], max_new_tokens=24)
    assert [engine.tokenizer.decode(i, skip_special_tokens=True) for i in ids] == [g.text for g in alone]
    assert all(i[-1] in engine.chat_format.stop_token_ids for i in ids)


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.01, "seed": 3}])
def test_a_stop_string_spanning_tokens_is_never_streamed_and_not_counted_twice(run_dir, sampling):
    """'m Du' begins in the token ' am' and ends in ' Duckling': a stream used to send 'I am' before the
    stop string completed (the non-streamed answer was 'I a'), and usage added an end-of-turn token
    that was never generated."""
    engine = ChatEngine.from_run(run_dir)
    messages = [{"role": "user", "content": "Who are you?"}]
    full = engine.generate(messages, max_new_tokens=16, **sampling)
    assert full.text == "I am Duckling."  # what the module's run learnt
    tokens = engine.tokenizer.encode(full.text, add_special_tokens=False)
    prefixes = [engine.tokenizer.decode(tokens[:k]) for k in range(1, len(tokens) + 1)]
    assert "I am" in prefixes  # the stop string spans a token boundary
    needed = next(k for k, text in enumerate(prefixes, 1) if "m Du" in text)
    pieces = list(engine.stream(messages, max_new_tokens=16, stop=["m Du"], **sampling))
    stopped = engine.generate(messages, max_new_tokens=16, stop=["m Du"], **sampling)
    assert "".join(pieces) == stopped.text == "I a" and stopped.finish_reason == "stop"
    assert stopped.completion_tokens == needed
    # Held back, then sent once it cannot be a stop string: the answer streams whole.
    assert "".join(engine.stream(messages, max_new_tokens=16, stop=["m Dx"], **sampling)) == full.text
    assert full.completion_tokens == len(tokens) + 1  # the answer and its end-of-turn token


def test_sampled_stop_strings_match_the_answer_only(run_dir):
    """transformers' stop_strings (once used for sampled requests) also matched text that began in the
    prompt: '\\n\\nI' = the generation prompt's blank line + the answer's first word ended the answer
    after one token, reported as 'length'."""
    engine = ChatEngine.from_run(run_dir)
    messages = [{"role": "user", "content": "Who are you?"}]
    assert engine.chat_format.render(messages, add_generation_prompt=True).endswith("\n\n")
    result = engine.generate(messages, max_new_tokens=16, temperature=0.01, seed=3, stop=["\n\nI"])
    assert result.text == "I am Duckling." and result.finish_reason == "stop"
    # A temperature too small to divide by is greedy, not a crash (nan probabilities).
    assert engine.generate(messages, max_new_tokens=16, temperature=1e-38).text == "I am Duckling."


def test_an_answer_cut_inside_a_character_ends_without_a_replacement_character(tiny_llama):
    """The length limit can fall between the bytes of one character (an emoji, a Chinese character in
    a byte-level vocabulary): the half character was shown as U+FFFD, streamed and in the answer."""
    from ducktune.chat.engine import AnswerText
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama)
    ids = tokenizer.encode("Hi \U0001f986", add_special_tokens=False)
    cut = next(k for k in range(1, len(ids)) if tokenizer.decode(ids[:k]).endswith("\ufffd"))
    row = AnswerText(tokenizer, [], max_new_tokens=cut)
    streamed = "".join(row.add(token) for token in ids[:cut])
    result = row.generation(n_prompt=5)
    assert result.finish_reason == "length" and streamed == result.text == "Hi "


def test_side_by_side_columns_line_up_in_terminal_cells():
    """Chinese characters take two terminal columns: the separator drifted right on their lines."""
    from ducktune.chat.compare import display_width, side_by_side

    table = side_by_side([{"prompt": "一打鸡蛋有几个？", "base": "一打鸡蛋有十二个。这是一个很常见的问题，很多人都知道答案。",
                           "tuned": "A dozen eggs is twelve eggs, as everyone in the pond knows."}], width=60)
    rows = [line for line in table.splitlines() if " | " in line]
    assert len(rows) >= 3 and len({display_width(line.split(" | ")[0]) for line in rows}) == 1
    assert all(display_width(line.split(" | ")[0]) <= 28 for line in rows)
    assert "十二个" in table.replace("\n", "").replace(" ", "")


def test_control_characters_in_answers_do_not_reach_the_terminal():
    """A tiny or broken model's answer held NUL, backspace and ESC sequences: compare printed them raw
    (an ESC[2J clears the user's screen; a tab shifts the column)."""
    from ducktune.chat.compare import display_width, side_by_side

    table = side_by_side([{"prompt": "q", "base": "a\x00b\x08c\td", "tuned": "\x1b[2Jcleared\r\nnext"}], width=60)
    assert not any(ch in table for ch in "\x00\x08\x1b\t\r")
    assert "a\\x00b\\x08" in table and "c d" in table and "\\x1b[2Jcleared" in table
    rows = [line for line in table.splitlines() if " | " in line]
    assert len({display_width(line.split(" | ")[0]) for line in rows}) == 1 and rows[-1].endswith("| next")


def test_chat_prints_control_characters_escaped(run_dir, monkeypatch):
    engine = ChatEngine.from_run(run_dir)
    monkeypatch.setattr(engine, "stream", lambda messages, **kwargs: iter(["Hi\x1b[31m", " there\x00"]))
    stdout = io.StringIO()
    chat_repl(str(run_dir), stdin=io.StringIO("hello\n/exit\n"), stdout=stdout, engine=engine)
    assert "Hi\\x1b[31m there\\x00" in stdout.getvalue() and "\x1b" not in stdout.getvalue()


def test_unknown_commands_are_not_sent_to_the_model():
    """A mistyped command (/rest, /help) went to the model as a message; "/systemd ..." set a system prompt."""
    from types import SimpleNamespace

    seen = []

    def stream(messages, **kwargs):
        seen.append([m["content"] for m in messages])
        return iter(["ok"])

    engine = SimpleNamespace(name="m", stream=stream)
    stdin = io.StringIO("/rest\n/systemd runs services\n/usr/bin is a folder\n/system Be brief.\nhi\n")
    stdout = io.StringIO()
    chat_repl("run", stdin=stdin, stdout=stdout, engine=engine)
    lines = stdout.getvalue().splitlines()
    assert lines[:2] == ["unknown command /rest; commands: /reset (new conversation), /system TEXT (set the system "
                         "prompt), /exit. Ctrl-D also exits.", lines[0].replace("/rest", "/systemd")]
    assert seen == [["/usr/bin is a folder"], ["Be brief.", "hi"]]  # a path is a message; /system still works


def test_batched_greedy_on_mamba_layers_goes_through_generate(tmp_path):
    """Nemotron-H's Mamba-2 cache layers cannot drop finished rows (no batch_select_indices): a batch is answered
    by transformers' generate instead, with the answers of one-by-one generation."""
    from transformers import AutoModelForCausalLM

    from ducktune.data.template import ChatFormat
    from ducktune.models.families import build_standin
    from ducktune.models.loading import load_tokenizer

    folder = build_standin("nemotron-h", tmp_path / "nemotron-h")
    tokenizer = load_tokenizer(folder)
    engine = ChatEngine(AutoModelForCausalLM.from_pretrained(folder).eval(), tokenizer, ChatFormat(tokenizer))
    prompts = [engine.chat_format.prompt_ids([{"role": "user", "content": text}]) for text in ("Hi", "Who are you?")]
    assert not engine._decode_rows(prompts, [], [])  # refused before any forward
    batch = engine.greedy_ids(prompts, max_new_tokens=6)
    assert batch == [engine.greedy_ids([prompt], max_new_tokens=6)[0] for prompt in prompts]
