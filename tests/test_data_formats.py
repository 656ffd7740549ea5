"""Every record format normalizes to the conversation (or text / pair) it means."""

from __future__ import annotations

import json

import pytest
from data_support import GLAIVE_CHAT, GLAIVE_SYSTEM, HERMES_RECORD, HERMES_SYSTEM

from ducktune.data.formats import NormalizeOptions, TurnTags, detect_format, normalize
from ducktune.data.schema import Record


def norm(value, fmt=None, options=NormalizeOptions()):
    record = Record(value, "f.json", 1)
    if fmt is None:
        fmt, why = detect_format([record])
        assert fmt, why
    issues = []
    sample = normalize(record, fmt, issues, options)
    return sample, [str(i) for i in issues]


def turns(sample):
    return [(m.role, m.content) for m in sample.messages]


def test_alpaca_with_system_and_history():
    sample, issues = norm({"instruction": "Translate", "input": "hello", "output": "bonjour", "system": "Be brief.",
                           "history": [["Hi", "Hello!"]]})
    assert issues == []
    assert sample.format == "alpaca"
    assert turns(sample) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                             ("user", "Translate\nhello"), ("assistant", "bonjour")]
    assert sample.fields == ["system", "history[0][0]", "history[0][1]", "instruction", "output"]


def test_an_empty_user_message_is_a_problem_as_an_empty_instruction_is(tmp_path, capsys):
    """A chat record whose user turn is empty or blank was trained (an answer to nothing), while the same
    record as alpaca (empty instruction and input) or as a preference pair was refused."""
    from data_support import run_cli, write_jsonl

    path = write_jsonl(tmp_path / "e.jsonl", [
        {"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "Hi"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                      {"role": "user", "content": ""}, {"role": "assistant", "content": "b"}]}])
    code, out, _ = run_cli(capsys, "data", "check", str(path), "--no-tokens")
    assert code == 2
    assert f"{path}:1: messages[0]: empty user message: the answer after it answers nothing" in out
    assert f"{path}:2: messages[2]: empty user message: the answer after it answers nothing" in out
    assert out.splitlines()[-1] == "Usable: no: 2 problems; no record can be trained as it is: fix them"


def test_alpaca_empty_instruction_with_question_in_input():
    sample, issues = norm({"instruction": "", "input": "What is 2+2?", "output": "4"})
    assert issues == []
    assert turns(sample) == [("user", "What is 2+2?"), ("assistant", "4")]
    assert sample.fields == ["input", "output"]


def test_sharegpt_human_gpt_with_top_level_system():
    sample, issues = norm({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                                             {"from": "user", "value": "q2"}, {"from": "assistant", "value": "a2"}],
                           "system": "sys"})
    assert issues == [] and sample.format == "sharegpt"
    assert turns(sample) == [("system", "sys"), ("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2")]


def test_sharegpt_system_turn():
    sample, _ = norm({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"},
                                        {"from": "gpt", "value": "a"}]})
    assert turns(sample)[0] == ("system", "s")


def test_messages_with_text_parts_and_multi_turn():
    sample, issues = norm({"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "More?"},
        {"role": "assistant", "content": "Yes"}]})
    assert issues == [] and sample.format == "messages"
    assert turns(sample) == [("system", "sys"), ("user", "Hello there"), ("assistant", "Hi"), ("user", "More?"),
                             ("assistant", "Yes")]


def test_messages_image_part_is_refused():
    _, issues = norm({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                                   {"role": "assistant", "content": "a"}]})
    assert issues == ["f.json:1: messages[0].content[0]: only text parts are supported (got 'image_url')"]


def test_firefly_ignores_id_and_category():
    sample, issues = norm({"conversation_id": 7, "category": "Brainstorming",
                           "conversation": [{"human": "q1", "assistant": "a1"}, {"human": "q2", "assistant": "a2"}]})
    assert issues == [] and sample.format == "firefly"
    assert turns(sample) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]


def test_text():
    sample, issues = norm({"text": "Once upon a time."})
    assert issues == [] and sample.kind == "text" and sample.text == "Once upon a time."


@pytest.mark.parametrize("record,prompt", [
    ({"prompt": "q", "chosen": "good", "rejected": "bad"}, [("user", "q")]),
    ({"instruction": "q", "input": "more", "chosen": "good", "rejected": "bad"}, [("user", "q\nmore")]),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
      "chosen": "good", "rejected": "bad"}, [("system", "s"), ("user", "q")]),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
      "rejected": {"from": "gpt", "value": "bad"}}, [("user", "q")]),
])
def test_preference_pairs(record, prompt):
    sample, issues = norm(record)
    assert issues == []
    assert sample.kind == "preference" and turns(sample) == prompt
    assert (sample.chosen, sample.rejected) == ("good", "bad")


def test_preference_prompt_must_end_with_user():
    _, issues = norm({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                      "chosen": "good", "rejected": "bad"})
    assert issues == ["f.json:1: messages[1]: the prompt must end with a non-empty user turn"]


def test_tags_map_keys_and_role_values():
    tags = TurnTags(role_tag="speaker", content_tag="text", user_tag="USER", assistant_tag="BOT", system_tag="SYS")
    sample, issues = norm({"conversations": [{"speaker": "SYS", "text": "s"}, {"speaker": "USER", "text": "q"},
                                             {"speaker": "BOT", "text": "a"}]}, "sharegpt", NormalizeOptions(tags))
    assert issues == []
    assert turns(sample) == [("system", "s"), ("user", "q"), ("assistant", "a")]
    tool_tags = TurnTags(role_tag="speaker", content_tag="text", user_tag="USER", assistant_tag="BOT",
                         function_tag="CALL", observation_tag="TOOL")
    sample, issues = norm({"conversations": [{"speaker": "USER", "text": "q"},
                                             {"speaker": "CALL", "text": '{"name": "f", "arguments": {}}'},
                                             {"speaker": "TOOL", "text": "x"}, {"speaker": "BOT", "text": "a"}]},
                          "sharegpt", NormalizeOptions(tool_tags))
    assert issues == []
    assert turns(sample) == [("user", "q"), ("assistant", ""), ("tool", "x"), ("assistant", "a")]
    assert sample.messages[1].tool_calls[0].name == "f"


def test_detection_prefers_the_majority_and_names_the_odd_record():
    records = [Record({"instruction": "q", "output": "a"}, "f.jsonl", i) for i in (1, 2)]
    records.append(Record({"text": "x"}, "f.jsonl", 3))
    fmt, _ = detect_format(records)
    assert fmt == "alpaca"
    issues = []
    assert normalize(records[2], fmt, issues) is None
    assert [str(i) for i in issues] == [
        "f.jsonl:3: (record): does not fit the alpaca format: no 'instruction'/'input' and 'output' fields; "
        "it looks like text"]


@pytest.mark.parametrize("record, question, answer", [
    ({"instruction": "Summarize.", "context": "Dolly is a sheep.", "response": "A sheep.", "category": "summarization"},
     "Summarize.\nDolly is a sheep.", "A sheep."),  # databricks-dolly-15k
    ({"prompt": "Hi ->", "completion": " Hello!\n"}, "Hi ->", " Hello!\n"),  # TRL / OpenAI's older fine-tuning
    ({"question": "2+2?", "answer": "Two and two.\n#### 4"}, "2+2?", "Two and two.\n#### 4"),  # GSM8K
    ({"query": "Hi", "response": "Hello", "system": "Be nice.", "history": [["a", "b"]]}, "Hi", "Hello"),  # Swift
    ({"problem": "1+1", "solution": "2"}, "1+1", "2"),
    ({"prompt": "Hi", "response": "Hello"}, "Hi", "Hello"),
    ({"inputs": "Translate: hi", "targets": "salut", "task": "flan"}, "Translate: hi", "salut"),  # FLAN, xP3
    ({"human": "Hi", "assistant": "Hello"}, "Hi", "Hello"),
    ({"kind": "Translation", "input": "Translate: hi", "target": "你好"}, "Translate: hi", "你好"),  # firefly-1.1M
])
def test_question_answer_records_under_other_field_names(record, question, answer):
    """The datasets people bring name alpaca's fields otherwise; each is detected and read as a question and
    its answer (Swift's history and system too), and the fields named are the file's own."""
    sample, issues = norm(record)
    assert issues == [] and sample.format == "alpaca"
    assert turns(sample)[-2:] == [("user", question), ("assistant", answer)]
    if "history" in record:
        assert turns(sample)[:3] == [("system", "Be nice."), ("user", "a"), ("assistant", "b")]
    q, a = (next(k for k in keys if k in record) for keys in (("instruction", "prompt", "question", "query", "problem",
                                                                 "inputs", "human", "input"),
                                                                ("response", "completion", "answer", "solution",
                                                                 "targets", "target", "assistant")))
    assert sample.fields[-2:] == [q, a]
    blank = dict(record, **{a: " "})
    assert norm(blank, "alpaca")[1] == [f"f.json:1: {a}: empty assistant answer"]
    wrong = {k: v for k, v in record.items() if k != a}
    assert norm(wrong, "alpaca")[1] == ["f.json:1: (record): does not fit the alpaca format: no 'output' field (the "
                                        "answer; response, completion, answer or solution also work)"]


def test_spreadsheet_headers_in_any_case_name_the_question_and_answer():
    """A hand-made CSV's "Question,Answer" header (or Amod/mental_health_counseling_conversations' Context and
    Response): the fields are found whatever their case, and named as the file writes them."""
    sample, issues = norm({"Question": "2+2?", "Answer ": "4"})
    assert issues == [] and turns(sample) == [("user", "2+2?"), ("assistant", "4")]
    assert sample.fields == ["Question", "Answer "]
    sample, issues = norm({"Context": "I feel sad.", "Response": "I hear you."})
    assert issues == [] and turns(sample) == [("user", "I feel sad."), ("assistant", "I hear you.")]
    _, issues = norm({"Question": "q", "Response": ""})
    assert issues == ["f.json:1: Response: empty assistant answer"]


def test_openorca_system_prompt_and_cohere_chatbot_role():
    sample, issues = norm({"id": "niv.242684", "system_prompt": "You are an AI assistant.", "question": "Q?",
                           "response": "A."})  # Open-Orca/OpenOrca
    assert issues == [] and turns(sample) == [("system", "You are an AI assistant."), ("user", "Q?"), ("assistant", "A.")]
    assert sample.fields[0] == "system_prompt"
    sample, issues = norm({"messages": [{"role": "System", "content": "Be brief."}, {"role": "User", "content": "Hi"},
                                        {"role": "Chatbot", "content": "Hello."}]})  # Cohere's fine-tuning data
    assert issues == [] and turns(sample) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello.")]


def test_gemini_tuning_records_are_messages():
    """Vertex AI's Gemini tuning data: contents of {role: user/model, parts: [{text}]}, a systemInstruction."""
    sample, issues = norm({"systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}]},
                           "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                                        {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo."}]}]})
    assert issues == [] and sample.format == "messages"
    assert turns(sample) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello.")]
    assert sample.fields == ["systemInstruction.parts", "contents[0]", "contents[1]"]
    _, issues = norm({"contents": [{"role": "user", "parts": [{"text": "Who?"}, {"inlineData": {"data": "..."}}]},
                                   {"role": "model", "parts": [{"text": "Kane."}]}]})
    assert issues == ["f.json:1: contents[0].parts[1]: only text parts are supported (got 'inlineData')"]


def test_prompt_completion_with_a_label_that_is_no_boolean_is_not_trained_as_sft():
    """KTO records whose label is not true/false are said to be so, never read as SFT pairs (which would train
    the undesirable completions as answers)."""
    fmt, why = detect_format([Record({"prompt": "q", "completion": "a", "label": "positive"}, "f.json", 1)])
    assert fmt is None and "unpaired: 'label' is not true or false" in why
    assert ("alpaca: a 'label' beside 'completion' (KTO data names its answer 'completion' and labels it true or "
            "false; set format alpaca to train it as a question and its answer)") in why
    assert detect_format([Record({"prompt": "q", "completion": "a", "label": True}, "f.json", 1)])[0] == "unpaired"
    fmt, why = detect_format([Record({"prompt": "q", "response": "a", "label": False}, "f.json", 1)])
    assert fmt is None and "alpaca: a 'label' beside 'response'" in why  # not SFT on an undesirable answer
    sample, issues = norm({"question": "q", "answer": "a", "label": "easy"}, "alpaca")  # given: read as asked
    assert issues == [] and turns(sample) == [("user", "q"), ("assistant", "a")]
    # alpaca's own output with a label that is no true/false (a category) stays a question and its answer
    assert detect_format([Record({"instruction": "q", "output": "a", "label": "math"}, "f.json", 1)])[0] == "alpaca"


def test_conversational_prompt_completion_is_a_chat_to_train():
    """TRL's conversational prompt-completion records: the prompt a conversation, the completion its answer."""
    sample, issues = norm({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                           "completion": [{"role": "assistant", "content": "Hello."}]})
    assert issues == [] and sample.kind == "chat" and sample.format == "prompt-completion"
    assert turns(sample) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello.")]
    sample, issues = norm({"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello."})
    assert issues == [] and turns(sample) == [("user", "Hi"), ("assistant", "Hello.")]
    _, issues = norm({"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                      "completion": "Hello."})
    assert issues == ["f.json:1: prompt[1]: the prompt must end with a non-empty user turn"]
    _, issues = norm({"prompt": [{"role": "user", "content": "Hi"}], "completion": [
        {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]})
    assert issues == ["f.json:1: completion: must hold one assistant message, got 2 messages"]


def test_a_turn_list_of_exchanges_under_a_chat_key_is_read_turn_by_turn():
    sample, issues = norm({"conversations": [{"human": "Hi", "assistant": "Yo"}, {"user": "Again", "assistant": "Yo!"}]})
    assert issues == [] and turns(sample) == [("user", "Hi"), ("assistant", "Yo"), ("user", "Again"), ("assistant", "Yo!")]
    assert sample.fields == ["conversations[0].human", "conversations[0].assistant", "conversations[1].user",
                             "conversations[1].assistant"]
    _, issues = norm({"messages": [{"human": "Hi", "assistant": 3}]})
    assert issues == ["f.json:1: messages[0].assistant: must be a string, got int"]


def test_a_turn_list_under_firefly_key_is_read_as_messages():
    sample, issues = norm({"conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
    assert issues == [] and turns(sample) == [("user", "Hi"), ("assistant", "Yo")]
    _, issues = norm({"conversation": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Yo"}]})
    assert issues == ["f.json:1: conversation[1].role: unknown role 'robot' (use system, user, assistant or tool)"]


@pytest.mark.parametrize("text, expected", [
    ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s>",  # mlabonne/guanaco-llama2-1k
     [("system", "Be brief."), ("user", "What is 2+2?"), ("assistant", "4")]),
    ("<s>[INST] Hi [/INST] Hello! </s><s>[INST] Again [/INST] Hello again. </s>",
     [("user", "Hi"), ("assistant", "Hello!"), ("user", "Again"), ("assistant", "Hello again.")]),
    ("### Human: A haiku?### Assistant: Leaves fall.### Human: Another?### Assistant: Snow melts.",  # Guanaco
     [("user", "A haiku?"), ("assistant", "Leaves fall."), ("user", "Another?"), ("assistant", "Snow melts.")]),
    ("<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n",
     [("system", "Be nice"), ("user", "hi"), ("assistant", "yo")]),
    ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nyo<|eot_id|>", [("user", "hi"), ("assistant", "yo")]),
    ("\n\nHuman: hi\n\nAssistant: yo", [("user", "hi"), ("assistant", "yo")]),
    ("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>",
     [("user", "hi"), ("assistant", "yo")]),  # an empty system turn is none
    ("<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n",
     [("user", "hi"), ("assistant", "yo")]),
    ("<|system|>\nBe nice</s>\n<|user|>\nhi</s>\n<|assistant|>\nyo</s>",  # Zephyr, TinyLlama-chat
     [("system", "Be nice"), ("user", "hi"), ("assistant", "yo")]),
    ("<|user|>\nhi<|end|>\n<|assistant|>\nyo<|end|>\n<|user|>\nagain<|end|>\n<|assistant|>\nyo again<|end|>",  # Phi-3
     [("user", "hi"), ("assistant", "yo"), ("user", "again"), ("assistant", "yo again")]),
    ("A chat between a curious user and an artificial intelligence assistant. USER: hi ASSISTANT: yo</s>"
     "USER: again ASSISTANT: yo again</s>",  # Vicuna v1.1
     [("system", "A chat between a curious user and an artificial intelligence assistant."), ("user", "hi"),
      ("assistant", "yo"), ("user", "again"), ("assistant", "yo again")]),
    ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
     "### Instruction:\nSay hi\n\n### Input:\nto Bob\n\n### Response:\nHi Bob!",
     [("user", "Say hi\nto Bob"), ("assistant", "Hi Bob!")]),
])
def test_chats_rendered_as_one_text_are_read_as_conversations(text, expected):
    """Pre-rendered chats (the text of a prompt format) are their turns, so the model's own template writes
    them and only the answers are trained; `format: text` keeps them plain text."""
    sample, issues = norm({"text": text})
    assert issues == [] and sample.format == "transcript" and sample.kind == "chat"
    assert turns(sample) == expected
    plain, issues = norm({"text": text}, "text")
    assert issues == [] and plain.kind == "text" and plain.text == text


@pytest.mark.parametrize("text", [
    "Once upon a time [INST] was a word.",
    "### Human: only a question",  # no answer
    "### Human: q### Assistant: a### Assistant: a again",  # no alternation
    "<s>[INST] q [/INST] a </s> and then some prose",  # more than the transcript
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<|im_end|>",  # an empty answer
    "The Human: said hi.\n\nAssistant: replied.",
])
def test_text_that_is_not_wholly_a_transcript_stays_text(text):
    sample, issues = norm({"text": text})
    assert issues == [] and sample.kind == "text" and sample.text == text
    _, issues = norm({"text": text}, "transcript")
    assert len(issues) == 1 and issues[0].startswith("f.json:1: text: not a chat transcript in a known format (ChatML, ")


def test_unknown_format_says_what_was_tried():
    fmt, why = detect_format([Record({"q": "q", "a": "a"}, "f.json", 1)])
    assert fmt is None
    assert why == (
        "no known format fits (the first record has fields ['a', 'q']). Tried "
        "preference: no 'chosen' and 'rejected' fields; unpaired: no 'label' field with a 'completion' "
        "(or 'messages'); sharegpt: no 'conversations' field; "
        "messages: no 'messages' field; firefly: no 'conversation' field; xlam: no 'query' and 'answers' fields; "
        "glaive: no 'chat' text of 'USER:' / 'ASSISTANT:' turns; "
        "alpaca: no 'instruction'/'input' and 'output' fields; transcript: no 'text' that is a chat transcript "
        "(Llama 2 [INST], ChatML, ### Human:, ...); text: no 'text' field")


def test_several_problems_in_one_record_are_all_reported():
    _, issues = norm({"instruction": 3, "input": ["x", 1], "output": None}, "alpaca")
    assert issues == ["f.json:1: instruction: must be a string, got int",
                      "f.json:1: input: must be a string (or a list of {'type': 'text'} parts), got a list holding a str",
                      "f.json:1: output: missing"]


def test_later_records_are_checked_after_a_bad_one():
    """One bad record must not hide the next ones (issues are collected per record)."""
    issues = []
    bad = normalize(Record({"instruction": "q", "output": ""}, "f.json", 1), "alpaca", issues)
    good = normalize(Record({"instruction": "q", "output": "a"}, "f.json", 2), "alpaca", issues)
    assert bad is None and good is not None and len(issues) == 1


def test_kto_labels_one_and_zero_are_detected_as_unpaired():
    """"label": 1/0 read as a chat trained the answers marked bad."""
    sample, issues = norm({"instruction": "Say hi", "input": "", "output": "Get lost.", "label": 0})
    assert not issues and sample.kind == "unpaired" and sample.label is False
    sample, _ = norm({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}], "label": 1})
    assert sample.kind == "unpaired" and sample.label is True


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
OPENAI_CALL = {"id": "abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def tool_chat(call_turn, result_turn, tools=(WEATHER_TOOL,)):
    record = {"messages": [{"role": "user", "content": "Weather in Paris?"}, call_turn, result_turn,
                           {"role": "assistant", "content": "It is 20C."}]}
    return {**record, "tools": list(tools)} if tools is not None else record


@pytest.mark.parametrize("call_turn, result_turn, call_id", [
    # OpenAI: arguments as JSON text, content null; the result names the call it answers.
    ({"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]},
     {"role": "tool", "tool_call_id": "abc", "content": "20C"}, "abc"),
    # arguments as an object, text beside the call, no ids anywhere: ids are given in order.
    ({"role": "assistant", "content": "Let me check.", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "20C"}, "call00001"),
    # OpenAI's older function_call / function role.
    ({"role": "assistant", "content": "", "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
     {"role": "function", "name": "get_weather", "content": "20C"}, "call00001"),
    # Llama 3.1: bare call with "parameters", the result from the ipython role.
    ({"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "parameters": {"city": "Paris"}}]},
     {"role": "ipython", "content": "20C"}, "call00001"),
])
def test_openai_and_llama_tool_turns_become_calls_and_results(call_turn, result_turn, call_id):
    sample, issues = norm(tool_chat(call_turn, result_turn))
    assert issues == []
    assert [m["role"] for m in sample.message_dicts()] == ["user", "assistant", "tool", "assistant"]
    call = sample.message_dicts()[1]["tool_calls"][0]
    # Chat templates print arguments with `| tojson`: an object, never the JSON text quoted again.
    assert call == {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    result = sample.messages[2]
    assert (result.content, result.tool_call_id, result.name) == ("20C", call_id, "get_weather")
    assert sample.tools == [WEATHER_TOOL] and sample.uses_tools


def test_llama_factory_function_call_and_observation_turns_with_json_text_tools():
    tools = json.dumps([{"name": "get_weather", "description": "w", "parameters": {"type": "object"}},
                        {"name": "get_time", "description": "t", "parameters": {}}])
    sample, issues = norm({"conversations": [
        {"from": "human", "value": "Weather and time?"},
        {"from": "function_call", "value": '[{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
                                           '{"name": "get_time", "arguments": {}}]'},
        {"from": "observation", "value": '{"time": "noon"}'}, {"from": "observation", "value": "3C"},
        {"from": "gpt", "value": "3C at noon."}], "tools": tools})
    assert issues == []
    assert turns(sample) == [("user", "Weather and time?"), ("assistant", ""), ("tool", '{"time": "noon"}'),
                             ("tool", "3C"), ("assistant", "3C at noon.")]
    calls = sample.messages[1].tool_calls
    assert [(c.name, c.arguments, c.id) for c in calls] == [("get_weather", {"city": "Oslo"}, "call00001"),
                                                            ("get_time", {}, "call00002")]
    # Bare function descriptions are wrapped as OpenAI's tools list (what chat templates print).
    assert [t["type"] for t in sample.tools] == ["function", "function"]
    assert sample.tools[1]["function"]["name"] == "get_time"
    # Results without ids answer the pending calls in order.
    assert [(m.tool_call_id, m.name) for m in sample.messages[2:4]] == [("call00001", "get_weather"),
                                                                       ("call00002", "get_time")]


def test_arguments_encoded_twice_are_decoded_twice():
    twice = json.dumps(json.dumps({"city": "Paris"}))
    sample, issues = norm(tool_chat({"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": twice}}]}, {"role": "tool", "content": "20C"}))
    assert issues == [] and sample.messages[1].tool_calls[0].arguments == {"city": "Paris"}
    _, issues = norm(tool_chat({"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps("Paris")}}]}, {"role": "tool", "content": "x"}))
    assert issues == ["f.json:1: messages[1].tool_calls[0].arguments: must be a JSON object, got str"]


def test_a_tool_result_given_as_an_object_is_its_json_text():
    sample, issues = norm(tool_chat({"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]},
                                    {"role": "tool", "content": {"temp": "20C", "sky": "clear"}}))
    assert issues == [] and sample.messages[2].content == '{"temp": "20C", "sky": "clear"}'


CALL = {"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]}
RESULT = {"role": "tool", "content": "20C"}


@pytest.mark.parametrize("record, expected", [
    ({"messages": [{"role": "user", "content": "q"}, RESULT, {"role": "assistant", "content": "a"}]},
     "messages[1]: a tool result must follow the assistant turn that called the tool"),
    ({"messages": [{"role": "user", "content": "q"}, CALL, RESULT]},
     "messages: no assistant answer: the last turn is a tool result"),
    (tool_chat({"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "get_weather", "arguments": "{city: Paris}"}}]}, RESULT),
     "messages[1].tool_calls[0].arguments: is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
    (tool_chat({"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "get_weather", "arguments": '["Paris"]'}}]}, RESULT),
     "messages[1].tool_calls[0].arguments: must be a JSON object, got list"),
    (tool_chat({"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}, RESULT),
     'messages[1].tool_calls[0]: must be a function call {"name": ..., "arguments": {...}} with a function name'),
    (tool_chat({"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "get_time", "arguments": "{}"}}]}, RESULT),
     "messages[1]: calls 'get_time', which the record's tools do not define (defined: get_weather)"),
    (tool_chat({"role": "user", "content": "x", "tool_calls": [OPENAI_CALL]}, RESULT),
     "messages[1]: only an assistant turn can call tools (this one is 'user')"),
    ({**tool_chat(CALL, RESULT, None), "tools": "[{not json"},
     "tools: is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 3 (char 2))"),
    ({**tool_chat(CALL, RESULT, None), "tools": [{"description": "no name"}]},
     'tools[0]: must describe a function: {"name": ..., "description": ..., "parameters": {...}}'),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "get_weather(Paris)"},
                        {"from": "observation", "value": "20C"}, {"from": "gpt", "value": "a"}]},
     'conversations[1].value: must be a JSON function call {"name": ..., "arguments": {...}} (or a list of them)'),
])
def test_tool_mistakes_are_named_by_field(record, expected):
    _, issues = norm(record)
    assert issues == [f"f.json:1: {expected}"]


def test_preference_records_with_tool_calls_keep_the_calls_the_results_and_the_tools():
    """TRL's conversational pairs with tools: the prompt's call and result, a chosen answer that calls, a
    rejected one in text; the implicit-prompt and LLaMA-Factory sharegpt shapes; a KTO completion that calls."""
    prompt = [{"role": "user", "content": "Weather in Paris and Oslo?"}, CALL, RESULT]
    oslo = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
    sample, issues = norm({"prompt": prompt, "chosen": [oslo], "rejected": [{"role": "assistant", "content": "Cold."}],
                           "tools": [WEATHER_TOOL]})
    assert issues == [] and sample.kind == "preference" and sample.tools == [WEATHER_TOOL]
    assert [m.role for m in sample.messages] == ["user", "assistant", "tool"]
    assert sample.messages[2].tool_call_id == "abc" and sample.messages[2].name == "get_weather"  # linked
    assert set(sample.turns) == {"chosen"} and sample.rejected == "Cold."
    assert [(c.name, c.arguments) for c in sample.turns["chosen"].tool_calls] == [("get_weather", {"city": "Oslo"})]
    implicit, issues = norm({"chosen": prompt + [oslo], "rejected": prompt + [{"role": "assistant", "content": "Cold."}],
                             "tools": [WEATHER_TOOL]})
    assert issues == [] and implicit.key() == sample.key()
    sharegpt, issues = norm({"conversations": [{"from": "human", "value": "Weather in Oslo?"}],
                             "chosen": {"from": "function_call", "value": '{"name": "get_weather", "arguments": '
                                                                          '{"city": "Oslo"}}'},
                             "rejected": {"from": "gpt", "value": "No idea."},
                             "tools": '[{"name": "get_weather", "parameters": {}}]'})
    assert issues == [] and sharegpt.turns["chosen"].tool_calls[0].arguments == {"city": "Oslo"}
    kto, issues = norm({"prompt": prompt, "completion": [oslo], "label": True, "tools": [WEATHER_TOOL]})
    assert issues == [] and kto.kind == "unpaired" and kto.turns["completion"].tool_calls[0].name == "get_weather"


def test_a_preference_answers_reasoning_is_kept_apart_or_folded_as_for_chat_records():
    """A chosen answer's reasoning_content was dropped: it is kept for templates that write reasoning, folded
    into the text as <think> where the template has no field, refused where the prompts close reasoning."""
    record = {"prompt": "2+2?", "chosen": [{"role": "assistant", "content": "4", "reasoning_content": "Add."}],
              "rejected": "5"}
    sample, issues = norm(record)
    assert issues == [] and sample.turns["chosen"].reasoning == "Add." and sample.chosen == "4"
    folded, issues = norm(record, options=NormalizeOptions(writes_reasoning=False))
    assert issues == [] and folded.chosen == "<think>\nAdd.\n</think>\n\n4" and folded.turns is None
    _, issues = norm(record, options=NormalizeOptions(reasoning_closed=True))
    assert len(issues) == 1 and issues[0].startswith("f.json:1: chosen: this answer carries reasoning")


@pytest.mark.parametrize("record, expected", [
    # The same call twice is no pair.
    ({"prompt": "Weather?", "chosen": [CALL], "rejected": [CALL], "tools": [WEATHER_TOOL]},
     "rejected: identical to chosen: a pair needs two different answers"),
    ({"prompt": "Weather?", "chosen": [{**CALL, "tool_calls": [{"function": {"name": "get_time", "arguments": {}}}]}],
      "rejected": "No.", "tools": [WEATHER_TOOL]},
     "chosen: calls 'get_time', which the record's tools do not define (defined: get_weather)"),
    ({"prompt": "Weather?", "chosen": [RESULT], "rejected": "No."},
     "chosen[0]: must be the assistant's answer, got role 'tool'"),
    ({"prompt": [{"role": "user", "content": "q"}, RESULT], "chosen": "a", "rejected": "b"},
     "prompt[1]: a tool result must follow the assistant turn that called the tool"),
    # A KTO completion (the last turn of a kto_tag conversation) is named by its own field.
    ({"messages": [{"role": "user", "content": "Weather?"}, {**CALL, "tool_calls": [
        {"function": {"name": "get_time", "arguments": {}}}]}], "label": True, "tools": [WEATHER_TOOL]},
     "messages[1]: calls 'get_time', which the record's tools do not define (defined: get_weather)"),
])
def test_tool_mistakes_in_preference_records_are_named_by_field(record, expected):
    _, issues = norm(record)
    assert issues == [f"f.json:1: {expected}"]


def test_a_template_without_tools_refuses_tool_records_and_alternation_skips_calls():
    """A template that drops tools would train calls the model never saw defined (or no calls at all)."""
    none = NormalizeOptions(tool_parts=frozenset())
    _, issues = norm(tool_chat(CALL, RESULT), options=none)
    assert len(issues) == 1 and issues[0].startswith("f.json:1: tools: this model's chat template does not write tool "
                                                     "definitions; use a model whose template does")
    _, issues = norm(tool_chat(CALL, RESULT, None), options=none)
    assert len(issues) == 1 and issues[0].startswith("f.json:1: messages[1]: this model's chat template does not "
                                                     "write tool calls; use")
    # Granite 3 / LFM2: definitions and results, calls only as the answer's text.
    no_calls = NormalizeOptions(tool_parts=frozenset({"definitions", "results"}))
    _, issues = norm(tool_chat(CALL, RESULT), options=no_calls)
    assert len(issues) == 1 and issues[0].startswith(
        "f.json:1: messages[1]: this model's chat template does not write tool calls (write each call as the "
        "answer's text, in the model's own syntax)")
    text_call = {"role": "assistant", "content": '<tool_call>[{"name": "get_weather"}]'}
    sample, issues = norm(tool_chat(text_call, RESULT), options=no_calls)
    assert issues == [] and sample.messages[2].role == "tool"
    # Mistral's templates alternate user and answer turns with calls and results outside the count.
    sample, issues = norm(tool_chat(CALL, RESULT), options=NormalizeOptions(require_alternation=True))
    assert issues == [] and sample is not None
    _, issues = norm({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}, CALL, RESULT,
                                   {"role": "assistant", "content": "a"}]}, options=NormalizeOptions(require_alternation=True))
    assert len(issues) == 1 and "two user turns in a row" in issues[0]


def test_tool_samples_differ_by_their_calls_and_tools_for_duplicate_removal():
    first, _ = norm(tool_chat(CALL, RESULT))
    other_call = {**CALL, "tool_calls": [{**OPENAI_CALL, "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}
    second, _ = norm(tool_chat(other_call, RESULT))
    third, _ = norm(tool_chat(CALL, RESULT, [WEATHER_TOOL, {"name": "get_time"}]))
    again, _ = norm(tool_chat(CALL, RESULT))
    assert len({first.key(), second.key(), third.key()}) == 3 and again.key() == first.key()


def test_a_list_of_strings_is_not_one_text():
    """["glad", "joyful"] as an answer trained "gladjoyful"."""
    _, issues = norm({"instruction": "Two synonyms of happy", "input": "", "output": ["glad", "joyful"]}, "alpaca")
    assert issues == ["f.json:1: output: must be a string (or a list of {'type': 'text'} parts), got a list holding a str"]


def test_weight_zero_turns_stay_context_and_developer_is_system(tiny_qwen):
    """OpenAI's per-message weight: 0 = in the conversation, no loss on it (it was trained as weight 1)."""
    from ducktune.data.convert import to_messages, to_sharegpt
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer

    sample, issues = norm({"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                        {"role": "assistant", "content": "Hey", "weight": 0},
                                        {"role": "user", "content": "Again"},
                                        {"role": "assistant", "content": "Hey again", "weight": 1}]})
    assert not issues and turns(sample)[0] == ("system", "Be brief.")
    chat_format = ChatFormat(load_tokenizer(tiny_qwen))
    encoded = chat_format.encode(sample, 512)
    trained = "".join(text for text, is_trained in chat_format.decode_spans(encoded) if is_trained)
    assert trained.startswith("Hey again") and "Hey<|im_end|>" not in trained.replace("Hey again", "")
    assert to_messages(sample)["messages"][2] == {"role": "assistant", "content": "Hey", "weight": 0}
    assert to_sharegpt(sample)["conversations"][1] == {"from": "gpt", "value": "Hey", "weight": 0}
    _, issues = norm({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey", "weight": 0.5}]})
    assert issues == ["f.json:1: messages[1].weight: must be 0 (not trained) or 1 (trained), got 0.5"]


def test_a_wrapped_or_arrayed_file_gets_a_hint():
    fmt, why = detect_format([Record({"data": [{"instruction": "q", "output": "a"}], "version": "1.0"}, "f.json", 1)])
    assert fmt is None and "It looks like an object holding the records under 'data'" in why
    fmt, why = detect_format([Record([{"instruction": "q", "output": "a"}], "f.jsonl", 1)])
    assert fmt is None and "Each record must be one JSON object; this one is an array" in why
    # Raw UltraFeedback: each line is a record whose 'completions' are its scored answers, not records.
    raw = {"instruction": "q", "completions": [{"response": "a", "overall_score": 8.0}, {"response": "b", "overall_score": 3.0}]}
    fmt, why = detect_format([Record(raw, "uf.jsonl", i) for i in (1, 2)])
    assert fmt is None and "It looks like raw UltraFeedback (scored 'completions' per record)" in why
    assert "holding the records under" not in why
    fmt, why = detect_format([Record({"id": 1, "items": [{"x": 1}]}, "f.jsonl", i) for i in (1, 2)])
    assert fmt is None and "holding the records under" not in why  # many records: none of them is a wrapper


HALF = "Hi \ud83d"  # a JSON "\ud83d" escape: the first half of an emoji, cut off
SURROGATE = "invalid Unicode (a lone surrogate \\ud83d, e.g. half of an emoji); fix or remove it"


@pytest.mark.parametrize("value, field", [
    ({"messages": [{"role": "user", "content": HALF}, {"role": "assistant", "content": "Yo"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": HALF}]},
                   {"role": "assistant", "content": "Yo"}]}, "messages[0].content"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": HALF}]}, "conversations[1].value"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}], "system": HALF}, "system"),
    ({"instruction": "Hi", "input": HALF, "output": "Yo"}, "input"),
    ({"instruction": "Hi", "output": "Yo", "history": [[HALF, "a"]]}, "history[0][0]"),
    ({"conversation": [{"human": "Hi", "assistant": HALF}]}, "conversation[0].assistant"),
    ({"text": HALF}, "text"),
    ({"prompt": "Hi", "chosen": HALF, "rejected": "No"}, "chosen"),
    ({"prompt": HALF, "completion": "Yo", "label": True}, "prompt"),
])
def test_a_lone_surrogate_in_any_text_is_a_problem_naming_the_field(value, field):
    """A truncated emoji ("\\ud83d" in JSON) reached the tokenizer (a TypeError) and `data convert` (a
    UnicodeEncodeError); it was 'usable' to `data check --no-tokens`."""
    sample, issues = norm(value)
    assert sample is None and issues == [f"f.json:1: {field}: {SURROGATE}"]
    # A whole emoji (both halves: one character) is fine.
    whole = json.loads(json.dumps(value).replace("\\ud83d", "\\ud83d\\ude00"))
    sample, issues = norm(whole)
    assert issues == [] and sample is not None


@pytest.mark.parametrize("key, what", [("images", "images"), ("videos", "videos"), ("audios", "audio")])
def test_media_in_a_record_is_refused_never_dropped(key, what):
    """A record's images were dropped and its '<image>' trained as text ('usable'); the same data mapped by
    dataset_info.json's columns was refused."""
    chat = [{"role": "user", "content": f"<{key[:-1]}>Who?"}, {"role": "assistant", "content": "Kane."}]
    expected = [f"f.json:1: {key}: {what} data is not supported (ducktune fine-tunes on text only); "
                f"remove it and the <{key[:-1]}> tags from the text, or the record"]
    for value in ({"messages": chat, key: ["1.jpg"]},
                  {"conversations": [{"from": "human", "value": "Who?"}, {"from": "gpt", "value": "Kane."}], key: ["1.jpg"]},
                  {"instruction": "Who?", "output": "Kane.", key: '["1.jpg"]'}):  # a CSV cell
        sample, issues = norm(value)
        assert sample is None and issues == expected
    sample, issues = norm({"messages": chat, key: []})  # an empty list holds no media
    assert issues == [] and sample is not None


def test_glaive_function_calling_records_become_tool_calling_chats():
    """glaiveai/glaive-function-calling-v2: the functions listed in the system text are the tools, a
    <functioncall> (arguments as JSON text in single quotes) a call, FUNCTION RESPONSE its result; Glaive's
    own markers are gone, so the model's template writes them its way."""
    sample, issues = norm({"system": GLAIVE_SYSTEM, "chat": GLAIVE_CHAT})
    assert issues == [] and sample.format == "glaive"
    assert turns(sample) == [
        ("system", "You are a helpful assistant with access to the following functions. Use them if required"),
        ("user", "Rate from USD to EUR?"), ("assistant", ""), ("tool", '{"rate": 0.85}'), ("assistant", "It is 0.85."),
        ("user", "Thanks!"), ("assistant", "You're welcome!")]
    assert [(c.name, c.arguments) for c in sample.messages[2].tool_calls] == [("get_exchange_rate", {"base": "USD"})]
    assert sample.messages[3].name == "get_exchange_rate"  # the result answers the call
    assert [t["function"]["name"] for t in sample.tools] == ["get_exchange_rate", "get_news"]
    plain, issues = norm({"system": "SYSTEM: You are a helpful assistant, with no access to external functions.",
                          "chat": "USER: Hi\n\n\nASSISTANT: Hello! <|endoftext|>"})
    assert issues == [] and plain.tools is None and turns(plain)[1:] == [("user", "Hi"), ("assistant", "Hello!")]


@pytest.mark.parametrize("chat, expected", [
    ("USER: q\n\n\nASSISTANT: <functioncall> get_exchange_rate(USD) <|endoftext|>",
     'chat turn 2 (ASSISTANT): the <functioncall> is not a call {"name": ..., "arguments": ...}'),
    ("USER: q\n\n\nASSISTANT: <functioncall> {\"name\": \"get_exchange_rate\", \"arguments\": '{base: USD}'}",
     "chat turn 2 (ASSISTANT).arguments: is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
    ("USER: q\n\n\nASSISTANT: <functioncall> {\"name\": \"convert\", \"arguments\": '{}'}",
     "chat turn 2 (ASSISTANT): calls 'convert', which the record's tools do not define "
     "(defined: get_exchange_rate, get_news)"),
    ("Hello\nUSER: q\n\n\nASSISTANT: a", "chat: must start with a 'USER:', 'ASSISTANT:' or 'FUNCTION RESPONSE:' turn"),
    ("USER: q\n\n\nFUNCTION RESPONSE: {}\n\n\nASSISTANT: a",
     "chat turn 2 (FUNCTION RESPONSE): a tool result must follow the assistant turn that called the tool"),
])
def test_glaive_mistakes_name_the_turn(chat, expected):
    _, issues = norm({"system": GLAIVE_SYSTEM, "chat": chat}, "glaive")
    assert issues == [f"f.json:1: {expected}"]


def test_hermes_tool_markup_becomes_tool_calls():
    """NousResearch/hermes-function-calling-v1: sharegpt whose system text lists the functions between <tools>
    tags and whose turns write calls and results as <tool_call>/<tool_response> text (Python literals). Read as
    tools, calls and results, so the model's template writes them; the system keeps its non-markup sentences."""
    sample, issues = norm(HERMES_RECORD)
    assert issues == [] and sample.format == "sharegpt+hermes"
    assert turns(sample) == [
        ("system", "You are a function calling AI model. You may call one or more functions to assist with the "
                   "user query. Don't make assumptions about what values to plug into functions."),
        ("user", "Flights to Auckland or Sydney, flexible?"), ("assistant", ""),
        ("tool", '{"flights": ["NZ6"], "price": null}'), ("tool", "no flights"),
        ("assistant", "NZ6 flies to Auckland; nothing to Sydney.")]
    assert [(c.name, c.arguments) for c in sample.messages[2].tool_calls] == [
        ("search_flights", {"city": "Auckland", "flexible": True}), ("search_flights", {"city": "Sydney"})]
    # Each result answers its own call, in order (the ids the data layer gives the calls).
    assert [(m.name, m.tool_call_id) for m in sample.messages[3:5]] == [
        ("search_flights", sample.messages[2].tool_calls[0].id), ("search_flights", sample.messages[2].tool_calls[1].id)]
    assert [t["function"]["name"] for t in sample.tools] == ["search_flights", "book_flight"]
    assert sample.tools[0]["function"]["parameters"]["required"] == ["city"]
    assert sample.fields == ["conversations[0]", "conversations[1]", "conversations[2]", "conversations[3]",
                             "conversations[3]", "conversations[4]"]


def test_hermes_2_pro_system_prompt_keeps_only_its_prose():
    """Hermes 2 Pro's published prompt: the list after "Here are the available tools:", then a pydantic schema
    and the <tool_call> format on one line with it: none of it is left in the system text."""
    system = ("You are a function calling AI model. You are provided with function signatures within <tools></tools> "
              "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions "
              "about what values to plug into functions. Here are the available tools: <tools> [{'type': 'function', "
              "'function': {'name': 'get_stock', 'description': 'Data.', 'parameters': {'type': 'object', "
              "'properties': {'symbol': {'type': 'string'}}}}}] </tools> Use the following pydantic model json schema "
              "for each tool call you will make: {'title': 'FunctionCall', 'type': 'object', 'properties': "
              "{'arguments': {'title': 'Arguments', 'type': 'object'}}} For each function call return a json object "
              "with function name and arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
              "{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>")
    sample, issues = norm({"conversations": [{"from": "system", "value": system}, {"from": "human", "value": "TSLA?"},
                                             {"from": "gpt", "value": "<tool_call>\n{'arguments': {'symbol': 'TSLA'}, "
                                                                      "'name': 'get_stock'}\n</tool_call>"}]})
    assert issues == [] and sample.messages[0].content == (
        "You are a function calling AI model. You may call one or more functions to assist with the user query. "
        "Don't make assumptions about what values to plug into functions.")
    assert sample.tools[0]["function"]["name"] == "get_stock"


def test_hermes_markup_in_messages_json_text_and_text_before_a_call():
    tools = [{"name": "get_price", "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}}}]
    system = f"You are a trading bot.\n<tools>\n{json.dumps(tools[0])}\n</tools>"  # one function, not in a list
    sample, issues = norm({"messages": [
        {"role": "system", "content": system}, {"role": "user", "content": "TSLA?"},
        {"role": "assistant", "content": 'Checking.\n<tool_call>\n{"name": "get_price", "arguments": {"symbol": "TSLA"}}'
                                         "\n</tool_call>"},
        {"role": "tool", "content": "191.97"},  # a result without the tags stays as it is
        {"role": "assistant", "content": "191.97 dollars."}]})
    assert issues == [] and sample.format == "messages+hermes"
    assert turns(sample) == [("system", "You are a trading bot."), ("user", "TSLA?"), ("assistant", "Checking."),
                             ("tool", "191.97"), ("assistant", "191.97 dollars.")]
    assert sample.messages[2].tool_calls[0].arguments == {"symbol": "TSLA"} and sample.tools[0]["function"] == tools[0]
    # Only the markup in the system text: the prose left empty, no system message.
    bare, issues = norm({"conversations": [{"from": "system", "value": f"<tools>{json.dumps(tools)}</tools>"},
                                           {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]})
    assert issues == [] and turns(bare) == [("user", "Hi"), ("assistant", "Hello")] and bare.tools is not None


def test_chats_without_a_tools_list_keep_their_markup():
    """Hermes' json-mode records (a <schema> in the system text, no calls) are not read as tool markup: their
    text is what the data says."""
    schema_chat = {"conversations": [{"from": "system", "value": "Answer in JSON.\n<schema>\n{}\n</schema>"},
                                     {"from": "human", "value": "q"}, {"from": "gpt", "value": '{"a": 1}'}]}
    sample, issues = norm(schema_chat)
    assert issues == [] and sample.format == "sharegpt" and sample.messages[0].content.endswith("</schema>")


def test_tool_call_text_beside_the_records_own_tools_is_read_as_calls():
    """A record with its own `tools` whose answers write Qwen's <tool_call> markup as text (and results in
    <tool_response>): the calls are read, the record's tools kept, a <tools> list in its system text dropped."""
    own = json.loads(json.dumps(HERMES_RECORD))
    own["tools"] = [{"name": "search_flights", "parameters": {"type": "object", "properties": {}}}]
    sample, issues = norm(own)
    assert issues == [] and sample.format == "sharegpt+hermes"
    assert sample.tools == [{"type": "function", "function": own["tools"][0]}]
    assert [c.name for c in sample.messages[2].tool_calls] == ["search_flights", "search_flights"]
    assert "<tools>" not in sample.messages[0].content
    plain = {"conversations": [{"from": "human", "value": "TSLA?"}, {"from": "gpt", "value": (
        '<tool_call>\n{"name": "get_price", "arguments": {"symbol": "TSLA"}}\n</tool_call>')},
        {"from": "tool", "value": "191.97"}, {"from": "gpt", "value": "191.97 dollars."}],
        "tools": json.dumps([{"name": "get_price", "parameters": {}}])}  # LLaMA-Factory's tools: JSON text
    sample, issues = norm(plain)
    assert issues == [] and turns(sample) == [("user", "TSLA?"), ("assistant", ""), ("tool", "191.97"),
                                              ("assistant", "191.97 dollars.")]
    assert sample.messages[2].name == "get_price"  # the result answers the call read from the text
    # A template that writes no calls (Granite 3's: calls are the answer's text), or no tools at all (ChatML's
    # SmolLM2): the markup is the text to train, as Hermes models were trained on ChatML.
    sample, issues = norm(plain, "sharegpt", NormalizeOptions(tool_parts=frozenset({"definitions", "results"})))
    assert issues == [] and "<tool_call>" in sample.messages[1].content and sample.format == "sharegpt"
    hermes, issues = norm(HERMES_RECORD, "sharegpt", NormalizeOptions(tool_parts=frozenset({"results"})))
    assert issues == [] and hermes.tools is None and "<tools>" in hermes.messages[0].content
    assert hermes.messages[2].content.startswith("<tool_call>")


@pytest.mark.parametrize("turn, expected", [
    ("<tool_call>\n{'arguments': {'city': 'Oslo'}, 'name': 'search_flights'}\n",
     "conversations[2] <tool_call> 1: has no </tool_call>"),
    ("<tool_call>\nsearch_flights(city='Oslo')\n</tool_call>",
     "conversations[2] <tool_call> 1: is not a call {'name': ..., 'arguments': {...}} (neither JSON nor a Python "
     "literal)"),
    ("<tool_call>{'arguments': {}, 'name': 'search_flights'}</tool_call><tool_call>{'arguments': 3, "
     "'name': 'book_flight'}</tool_call>",
     "conversations[2] <tool_call> 2.arguments: must be a JSON object, got int"),
    ("<tool_call>{'arguments': {}, 'name': 'search_flights'}</tool_call> Done.",
     "conversations[2]: has text between or after its <tool_call>s ('Done.'); a chat template writes an answer's "
     "text before its calls only"),
    ("<tool_call>{'arguments': {}, 'name': 'cancel'}</tool_call>",
     "conversations[2]: calls 'cancel', which the record's tools do not define (defined: search_flights, book_flight)"),
])
def test_hermes_mistakes_name_the_turn_and_the_call(turn, expected):
    record = json.loads(json.dumps(HERMES_RECORD))
    record["conversations"][2]["value"] = turn
    sample, issues = norm(record)
    assert sample is None and issues == [f"f.json:1: {expected}"]


def test_a_hermes_tools_list_that_cannot_be_read_is_named():
    record = json.loads(json.dumps(HERMES_RECORD))
    record["conversations"][0]["value"] = HERMES_SYSTEM.replace("'required': ['city']", "'required': ['city'", 1)
    sample, issues = norm(record)
    assert sample is None and len(issues) == 1 and issues[0].startswith(
        "f.json:1: conversations[0]: the functions between <tools> and </tools> are neither JSON nor a Python literal")
    record["conversations"][0]["value"] = "Tools: <tools>[{'description': 'no name'}]</tools>"
    sample, issues = norm(record)
    assert sample is None and issues == ['f.json:1: conversations[0]: function 1 between <tools> and </tools> must '
                                         'describe a function: {"name": ..., "description": ..., "parameters": {...}}']


def test_xlam_function_calling_records_are_a_question_answered_by_calls():
    """Salesforce/xlam-function-calling-60k: answers and tools are JSON text; parameters are not JSON Schema."""
    tools = json.dumps([{"name": "live_giveaways_by_type", "description": "Giveaways by type.",
                         "parameters": {"type": {"description": "beta or game", "type": "str", "default": "game"}}}])
    answers = json.dumps([{"name": "live_giveaways_by_type", "arguments": {"type": "beta"}},
                          {"name": "live_giveaways_by_type", "arguments": {"type": "game"}}])
    sample, issues = norm({"id": 0, "query": "Beta and game giveaways?", "answers": answers, "tools": tools})
    assert issues == [] and sample.format == "xlam"
    assert turns(sample) == [("user", "Beta and game giveaways?"), ("assistant", "")]
    assert [(c.name, c.arguments) for c in sample.messages[1].tool_calls] == [
        ("live_giveaways_by_type", {"type": "beta"}), ("live_giveaways_by_type", {"type": "game"})]
    assert sample.tools[0]["function"]["name"] == "live_giveaways_by_type"
    _, issues = norm({"query": "q", "answers": "[]", "tools": tools})
    assert issues == ["f.json:1: answers: an empty list of calls"]
    _, issues = norm({"query": "q", "answers": json.dumps([{"name": "nope", "arguments": {}}]), "tools": tools})
    assert issues == ["f.json:1: answers: calls 'nope', which the record's tools do not define "
                      "(defined: live_giveaways_by_type)"]
