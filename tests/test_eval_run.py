"""`ducktune eval` on tiny local models: a model trained to answer 'B' scores >= 90 % on a
multiple-choice file; eval.json, predictions.jsonl, report.md; replay and the generation probe."""

import json

import pytest

from ducktune.config import DatasetSpec, load_config
from ducktune.eval.choices import choice_prompt, read_choices
from ducktune.rundir import RunDir
from ducktune.train import recipe

QUESTIONS = [
    ("Which is a fruit?", "stone", "apple", "chair", "cloud"),
    ("Which animal barks?", "cat", "dog", "fish", "bird"),
    ("What colour is the sky on a clear day?", "green", "blue", "red", "black"),
    ("Which number is even?", "3", "4", "5", "7"),
    ("Which one is a planet?", "Moon", "Mars", "Sun", "Comet"),
    ("What do bees make?", "milk", "honey", "silk", "wax paper"),
    ("Which is a vehicle?", "tree", "car", "cup", "shoe"),
    ("Which season is coldest?", "summer", "winter", "spring", "autumn"),
    ("Which is a metal?", "wood", "iron", "glass", "paper"),
    ("Which is used to write?", "spoon", "pen", "plate", "sock"),
]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "cache"))


def mc_file(tmp_path):
    lines = [",Question,A,B,C,D,Answer"] + [f"{i},{q},{a},{b},{c},{d},B" for i, (q, a, b, c, d) in enumerate(QUESTIONS)]
    path = tmp_path / "quiz_test.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_b(tmp_path, model, **extra):
    """LoRA on a tiny model: every multiple-choice question answered 'B' (and a few chats)."""
    quiz = mc_file(tmp_path)
    records = [{"instruction": choice_prompt(item), "output": "B"} for item in read_choices(quiz)]
    records += [{"instruction": "Who are you?", "output": "I am Duckling, made by the ducktune team."}] * 2
    data = tmp_path / "train.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    config = load_config(None, [])
    config.model.name_or_path = str(model)
    config.data.datasets = [DatasetSpec(path=str(data))]
    config.output.dir = str(tmp_path / "run")
    for section, name, value in [("train", "max_steps", 60), ("train", "learning_rate", 5e-3), ("train", "batch_size", 4),
                                 ("train", "logging_steps", 10), ("train", "save_steps", 30), ("train", "warmup_ratio", 0.0),
                                 ("lora", "r", 16), ("lora", "alpha", 32), ("lora", "dropout", 0.0),
                                 ("eval", "max_new_tokens", 8), ("eval", "persona_terms", ["Duckling"])] + list(extra.items()):
        setattr(getattr(config, section), name, value)
    return recipe.train(config, progress=False, compare=False), quiz


def test_trained_to_answer_b_scores_at_least_90_percent(tmp_path, tiny_qwen_wide, capsys):
    from ducktune.eval.runner import run_eval

    result, quiz = train_b(tmp_path, tiny_qwen_wide)
    chat = tmp_path / "held_out.jsonl"
    chat.write_text(json.dumps({"instruction": "Who are you?", "output": "I am Duckling, made by the ducktune team."}) + "\n",
                    encoding="utf-8")
    out = run_eval(str(result.run_dir), data=[str(quiz), str(chat)], with_base=True, max_new_tokens=8, log=lambda *a: None)
    assert out["choice_accuracy"]["tuned"] >= 90.0
    assert out["choice_accuracy"]["base"] is not None and out["choice_accuracy"]["base"] < out["choice_accuracy"]["tuned"]
    assert out["choices"]["tuned"]["subjects"] == {"quiz": out["choice_accuracy"]["tuned"]}
    # Loss on the held-out chat falls with tuning; the headline keys all carry base and tuned.
    assert out["loss"]["tuned"] < out["loss"]["base"]
    assert out["perplexity"]["tuned"] == pytest.approx(2.718281828 ** out["loss"]["tuned"], rel=1e-3)
    run = RunDir(result.run_dir)
    saved = json.loads((run.path / "eval" / "eval.json").read_text(encoding="utf-8"))
    for key in ("loss", "perplexity", "exact_match", "bleu_4", "rouge_l", "choice_accuracy"):
        assert set(saved[key]) == {"base", "tuned"}, key
    predictions = [json.loads(line) for line in (run.path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 1 and {"prompt", "reference", "tuned", "base", "tuned_scores"} <= set(predictions[0])
    assert saved["bleed"]["prompts"] >= 50 and saved["bleed"]["mean_kl"] > 0
    report = run.report.read_text(encoding="utf-8")
    assert report.count("## Evaluation") == 1 and report.index("## Evaluation") < report.index("## Config")
    # A second evaluation replaces the section instead of adding another.
    run_eval(str(result.run_dir), data=[str(quiz)], max_new_tokens=4, log=lambda *a: None)
    assert run.report.read_text(encoding="utf-8").count("## Evaluation") == 1
    # --json: stdout is the JSON alone, although the base answers are generated (and said so) first.
    from ducktune.cli import main

    capsys.readouterr()
    assert main(["eval", str(result.run_dir), "--data", str(quiz), "--max-new-tokens", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["choice_accuracy"]["tuned"] >= 90.0 and "base model's answers" in err


def test_replay_mixes_in_the_base_models_own_answers_once(tmp_path, tiny_qwen, monkeypatch):
    from ducktune.chat import general
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.train.replay import replay_count, replay_samples

    assert [replay_count(r, 28, 16) for r in (0, 0.01, 0.2, 1.0)] == [0, 1, 6, 16]
    config = load_config(None, ["data.replay=0.5", f"model.name_or_path={tiny_qwen}"])
    chat_format = ChatFormat(load_tokenizer(tiny_qwen))
    calls = []
    real = general.cached_base_answers

    def fake_answers(fingerprint, chat_format, prompts, max_new_tokens, engine_factory, log=print):
        calls.append(len(prompts))
        return real(fingerprint, chat_format, prompts, max_new_tokens, engine_factory, log)

    monkeypatch.setattr("ducktune.train.replay.cached_base_answers", fake_answers)
    first = replay_samples(config, 6, tiny_qwen, chat_format, log=lambda *a: None)
    # Random-init tiny models rarely stop on their own: only finished answers are replayed.
    assert all(s.messages[0].role == "user" and s.format == "replay" for s in first)
    assert len(first) <= 3
    cache = list((tmp_path / "cache" / "base-answers").glob("*.json"))
    assert len(cache) == 1
    rows = json.loads(cache[0].read_text(encoding="utf-8"))
    assert [r["prompt"] for r in rows] == [p["prompt"] for p in general.general_prompts("replay")]
    # Second time: from the cache, the model is not loaded.
    monkeypatch.setattr("ducktune.models.loading.load_model", lambda *a, **k: pytest.fail("model loaded again"))
    second = replay_samples(config, 6, tiny_qwen, chat_format, log=lambda *a: None)
    assert [s.messages[1].content for s in second] == [s.messages[1].content for s in first]
    assert replay_samples(load_config(None, []), 6, tiny_qwen, chat_format) == []


def test_generation_probe_appends_answers_to_metrics(tmp_path, tiny_qwen):
    from transformers import TrainerControl, TrainerState

    from ducktune.data.template import ChatFormat
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer
    from ducktune.train.probe import generation_probe

    config = load_config(None, ["eval.probe_during_training=true", "train.eval_steps=2", "eval.probe_count=2",
                                "eval.max_new_tokens=4"])
    tokenizer = load_tokenizer(tiny_qwen)
    model = load_model(tiny_qwen, choose_placement("cpu", "float32", 1))
    model.train()
    metrics = tmp_path / "metrics.jsonl"
    probe = generation_probe(config, metrics, tokenizer, ChatFormat(tokenizer), ["Who are you?", "Hi", "Third"])
    state = TrainerState()
    for step in (1, 2, 3, 4):
        state.global_step = step
        probe.on_step_end(None, state, TrainerControl(), model=model)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert [p["prompt"] for p in rows[0]["probe"]] == ["Who are you?", "Hi"]
    assert model.training  # training continues in training mode
    assert generation_probe(load_config(None, []), metrics, tokenizer, ChatFormat(tokenizer), ["x"]) is None
