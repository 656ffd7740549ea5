"""`ducktune data preview`: the templated sample with exactly the trained tokens marked."""

from __future__ import annotations

from data_support import chat, run_cli, write_json, write_jsonl


def test_plain_output_marks_answers_and_end_of_turn(tmp_path, tiny_qwen, capsys):
    path = write_json(tmp_path / "d.json", [
        {"instruction": "Who are you?", "output": "I am Nova.", "history": [["Hi", "Hello!"]]}])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Trained tokens (the loss) are marked «like this»; the rest is context."
    assert lines[2].startswith(f"── {path}:2 · alpaca · ") and " trained (" in lines[2]
    body = "\n".join(lines[3:])
    assert body == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n«Hello!<|im_end|>»\n"
                    "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n«I am Nova.<|im_end|>»")


def test_llama3_template_trains_the_eot_token_not_eos(tmp_path, tiny_llama, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("Hi", "Hello")])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_llama, "--plain")
    assert code == 0
    assert "<|start_header_id|>assistant<|end_header_id|>\n\n«Hello<|eot_id|>»" in out
    assert out.split("\n", 1)[1].count("«") == 1  # only the answer; the legend line aside


def test_train_on_all_and_text_samples(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "Plain words."}])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen)
    assert code == 0
    assert "«Plain words.<|im_end|>»" in out  # every token trained, EOS appended


def test_colour_on_request_and_n_start(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", f"a{i}") for i in range(5)])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen, "--color", "-n", "2", "--start", "3")
    assert code == 0
    assert "\x1b[1;32ma3<|im_end|>\x1b[0m" in out and "\x1b[1;32ma4<|im_end|>\x1b[0m" in out
    assert "a2" not in out and "«" not in out
    assert out.count("── ") == 2


def test_nothing_to_preview_is_an_error(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "")])
    code, _, err = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen)
    assert code == 2
    assert err.splitlines() == [f"error: {path}:1: messages[1]: empty assistant answer",
                                "error: no usable samples to preview (after skipping 0)"]


def test_preference_pair_previews_both_answers(tmp_path, tiny_qwen, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}])
    code, out, _ = run_cli(capsys, "data", "preview", path, "--model", tiny_qwen)
    assert code == 0
    assert "«Hello!<|im_end|>»" in out and "«Go away.<|im_end|>»" in out  # more in test_data_preference.py
