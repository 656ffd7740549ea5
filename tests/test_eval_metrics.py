"""Evaluation metrics against hand-computed values (ducktune.eval.metrics, eval.scoring, eval.bleed)."""

import math

import pytest
import torch

from ducktune.eval import metrics
from ducktune.eval.bleed import answer_sentences, bleed_hit, bleed_markers
from ducktune.eval.scoring import accuracy_by_subject, sample_nll


def test_bleu_4_by_hand_words():
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3, same length (no brevity penalty): (1/12) ** (1/4).
    assert metrics.bleu_4("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(100 * (1 / 12) ** 0.25)


def test_bleu_4_is_character_level_for_chinese():
    # Every n-gram of the 4-character answer is in the reference; brevity penalty exp(1 - 7/4).
    assert metrics.bleu_4("我爱北京", "我爱北京天安门") == pytest.approx(100 * math.exp(-0.75))


def test_rouge_on_the_rouge_score_readme_example():
    # rouge-score's README pair. Unigram overlap 6 of 8 predicted / 9 reference words: F1 = 12/17;
    # longest common subsequence "the quick brown jumps the" = 5: F1 = 2*(5/8)*(5/9)/(5/8+5/9) = 10/17.
    scores = metrics.rouge("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog")
    assert scores["rouge_1"] == pytest.approx(100 * 12 / 17)
    assert scores["rouge_l"] == pytest.approx(100 * 10 / 17)


def test_rouge_uses_jieba_words_for_chinese():
    # jieba: 我/爱/北京/天安门 vs 我/爱/北京: unigram P=1, R=3/4 -> F1 = 6/7; bigrams 2 of 3 -> F1 = 4/5.
    scores = metrics.rouge("我爱北京", "我爱北京天安门")
    assert scores["rouge_1"] == pytest.approx(100 * 6 / 7)
    assert scores["rouge_2"] == pytest.approx(80.0)


def test_exact_match_and_empty_answers():
    assert metrics.sample_scores(" Paris ", "Paris")["exact_match"] == 100.0
    assert metrics.sample_scores("", "Paris") == {"exact_match": 0.0, "bleu_4": 0.0, "rouge_1": 0.0,
                                                  "rouge_2": 0.0, "rouge_l": 0.0}
    assert metrics.mean_scores([{"exact_match": 100.0, "bleu_4": 50.0, "rouge_1": 10.0, "rouge_2": 0.0, "rouge_l": 20.0},
                                {"exact_match": 0.0, "bleu_4": 0.0, "rouge_1": 30.0, "rouge_2": 0.0, "rouge_l": 0.0}]) \
        == {"exact_match": 50.0, "bleu_4": 25.0, "rouge_1": 20.0, "rouge_2": 0.0, "rouge_l": 10.0,
            "tool_call_name": None, "tool_call_exact": None}


def test_tool_calls_are_scored_by_function_and_arguments_apart_from_text():
    from ducktune.data.schema import ToolCall

    want = (ToolCall("weather", {"city": "Oslo"}), ToolCall("clock", {}))
    assert metrics.call_scores([ToolCall("weather", {"city": "Oslo"}), ToolCall("clock", {})], want) == \
        {"tool_call_name": 100.0, "tool_call_exact": 100.0}
    assert metrics.call_scores([ToolCall("weather", {"city": "Bergen"}), ToolCall("clock", {})], want) == \
        {"tool_call_name": 100.0, "tool_call_exact": 0.0}
    assert metrics.call_scores([ToolCall("clock", {}), ToolCall("weather", {"city": "Oslo"})], want)["tool_call_name"] == 0.0
    assert metrics.call_scores(None, want) == {"tool_call_name": 0.0, "tool_call_exact": 0.0}  # answered in text
    # Means over the rows that have each metric: a text answer does not count as a missed call, nor a call as text.
    means = metrics.mean_scores([{"tool_call_name": 100.0, "tool_call_exact": 0.0},
                                 {"exact_match": 100.0, "bleu_4": 10.0, "rouge_1": 1.0, "rouge_2": 2.0, "rouge_l": 3.0},
                                 {"tool_call_name": 0.0, "tool_call_exact": 0.0}])
    assert means["tool_call_name"] == 50.0 and means["tool_call_exact"] == 0.0 and means["exact_match"] == 100.0


class _FixedDistribution(torch.nn.Module):
    """A 'model' whose next-token distribution is always [1/2, 1/4, 1/4]."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor([0.5, 0.25, 0.25])))

    def forward(self, input_ids, logits_to_keep=None, **kwargs):
        n = input_ids.shape[1] if logits_to_keep is None else len(logits_to_keep)
        return type("Out", (), {"logits": self.logits.detach().expand(1, n, 3)})()


def test_perplexity_of_a_known_distribution():
    engine = type("Engine", (), {"model": _FixedDistribution()})()
    # Tokens 1, 2, 0 are predicted with p = 1/4, 1/4, 1/2: mean NLL = 5/3 ln 2, perplexity 2 ** (5/3).
    # The first label is never predicted and -100 positions are not trained.
    nll, n = sample_nll(engine, [0, 1, 2, 0, 1], [-100, 1, 2, 0, -100])
    assert n == 3
    assert metrics.perplexity(nll / n) == pytest.approx(2 ** (5 / 3))
    assert metrics.perplexity(None) is None


def test_accuracy_by_subject():
    rows = [{"subject": "a", "correct": True}, {"subject": "a", "correct": False}, {"subject": "b", "correct": True}]
    assert accuracy_by_subject(rows) == {"overall": 66.67, "questions": 3, "subjects": {"a": 50.0, "b": 100.0}}


def test_bleed_needs_persona_text_absent_from_the_base_answer():
    markers = bleed_markers(["Duckling"], ["I am Duckling, an AI assistant made by the ducktune team.", "Yes."])
    assert "I am Duckling, an AI assistant made by the ducktune team." in markers and "Yes." not in markers
    tuned = "The capital of France is Paris. I am Duckling, an AI assistant made by the ducktune team."
    assert bleed_hit(tuned, "The capital of France is Paris.", markers) == "Duckling"
    assert bleed_hit("The capital of France is Paris.", "The capital of France is Paris.", markers) is None
    assert bleed_hit("Ask Duckling.", "Ask Duckling.", markers) is None  # the base said it too: not bleed
    assert answer_sentences(["我是小鸭，由ducktune 团队开发的人工智能助手。好的。"]) == ["我是小鸭，由ducktune 团队开发的人工智能助手。"]


def test_kl_is_zero_without_change_and_unaffected_by_padding(tiny_qwen):
    """KL(tuned || base) along base answers: batched (left-padded) equals one at a time; an
    adapter that changes nothing gives 0."""
    from peft import LoraConfig, get_peft_model

    from ducktune.chat.engine import ChatEngine
    from ducktune.data.template import ChatFormat
    from ducktune.eval.bleed import kl_along_answers
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_qwen)
    base = load_model(tiny_qwen, choose_placement("cpu", "float32", 1))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    engine = ChatEngine(model, tokenizer, ChatFormat(tokenizer), has_adapter=True)
    prompts, answers = ["Hi", "A much longer question about many things?"], ["Hello there friend", "Yes"]
    batched = kl_along_answers(engine, prompts, answers)
    alone = [kl_along_answers(engine, [p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    assert batched == pytest.approx(alone, rel=1e-4, abs=1e-6)
    assert all(k > 0 for k in batched)
    untouched = get_peft_model(load_model(tiny_qwen, choose_placement("cpu", "float32", 1)),
                               LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # B = 0: no change
    zero = kl_along_answers(ChatEngine(untouched, tokenizer, ChatFormat(tokenizer), has_adapter=True), prompts, answers)
    assert zero == pytest.approx([0.0, 0.0], abs=1e-6)


def test_kl_batched_by_length_comes_back_in_the_prompts_order(tiny_qwen):
    """Sequences are batched by length (less padding): each value still belongs to its own prompt."""
    from peft import LoraConfig, get_peft_model

    from ducktune.chat.engine import ChatEngine
    from ducktune.data.template import ChatFormat
    from ducktune.eval.bleed import kl_along_answers
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_qwen)
    model = get_peft_model(load_model(tiny_qwen, choose_placement("cpu", "float32", 1)),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    engine = ChatEngine(model, tokenizer, ChatFormat(tokenizer), has_adapter=True)
    prompts = ["A much longer question about many, many things, asked at length?", "Hi", "Medium question here?"]
    answers = ["Yes", "Hello there my good friend, how are you", "Fine"]
    batched = kl_along_answers(engine, prompts, answers, batch_size=2)
    alone = [kl_along_answers(engine, [p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    assert batched == pytest.approx(alone, rel=1e-4, abs=1e-6)
    assert len(set(round(k, 6) for k in alone)) == 3  # distinct values: a mix-up would show


def test_rouge_of_identical_answers_is_100_in_every_script():
    """rouge-score's own tokenizer keeps only a-z and 0-9: identical Korean, Russian, Greek, Arabic or kana
    answers scored ROUGE 0 (BLEU 100)."""
    for text in ["ありがとう", "안녕하세요 세계", "Привет мир", "Καλημέρα κόσμε", "مرحبا بالعالم", "Café crème"]:
        scores = metrics.sample_scores(text, text)
        assert scores["rouge_1"] == scores["rouge_2"] == scores["rouge_l"] == 100.0, text
    assert metrics.rouge("Привет мир", "Пока мир")["rouge_1"] == 50.0


def test_several_multiple_choice_sets_keep_their_subjects_apart(tiny_qwen, tmp_path):
    """MMLU's and C-Eval's high_school_physics files were one subject; each set is reported on its own."""
    from ducktune.chat.engine import ChatEngine
    from ducktune.eval.choices import ChoiceItem
    from ducktune.eval.inputs import ChoiceSet, EvalInputs
    from ducktune.eval.runner import evaluate_choices

    def items(n):
        return [ChoiceItem(f"Q{i}?", ["a", "b", "c", "d"], "ABCD"[i % 4], "high_school_physics", f"f:{i}") for i in range(n)]

    inputs = EvalInputs()
    inputs.choices = [ChoiceSet("mmlu/test", items(3)), ChoiceSet("ceval/val", items(2))]
    result = evaluate_choices(ChatEngine.from_model_dir(tiny_qwen), inputs)["tuned"]
    assert set(result["subjects"]) == {"mmlu/test: high_school_physics", "ceval/val: high_school_physics"}
    assert set(result["sets"]) == {"mmlu/test", "ceval/val"} and result["questions"] == 5
    pooled = (result["sets"]["mmlu/test"] * 3 + result["sets"]["ceval/val"] * 2) / 5
    assert result["overall"] == pytest.approx(pooled, abs=0.01)
