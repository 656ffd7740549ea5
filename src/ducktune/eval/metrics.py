"""Text-similarity metrics, as LLaMA-Factory's `do_predict` reports them for Chinese and the usual
word-level way otherwise.

Per sample, then averaged over samples, in percent (0-100):
- exact match: the answer equals the reference after trimming whitespace;
- BLEU-4: sentence BLEU with exponential smoothing (sacrebleu's `exp`), over characters when the
  text is Chinese or Japanese (sacrebleu's `zh` tokenizer: every CJK character is a token, as
  LLaMA-Factory's character lists) and over words otherwise (sacrebleu's standard `13a`
  tokenizer). On answers shorter than four tokens sacrebleu uses the n-gram orders that exist,
  where LLaMA-Factory's NLTK `method3` smooths the missing ones: such answers score higher here;
- ROUGE-1/2/L F1 (Google's rouge-score package, which counts repeated n-grams as ROUGE defines):
  over jieba's words for Chinese, as LLaMA-Factory does, and over lower-cased Unicode words
  otherwise (rouge-score's own tokenizer keeps only a-z and 0-9, so Korean, Russian or Greek
  answers scored 0 even when identical).
LLaMA-Factory scores English by characters (BLEU) and jieba pieces (ROUGE) too; its English
figures are not comparable with these.

The packages are imported lazily and named in the error when missing (`pip install 'ducktune[eval]'`).
"""

from __future__ import annotations

import math
import re

from ducktune.errors import UserError

# CJK ideographs, kana and full-width forms: text written without spaces between words.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_WORD = re.compile(r"\w+")


def is_chinese(*texts: str) -> bool:
    """Chinese (or Japanese) text: any CJK character decides the tokenization."""
    return any(_CJK.search(t or "") for t in texts)


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"generation metrics need the package {package}: pip install 'ducktune[eval]'") from None


def exact_match(prediction: str, reference: str) -> float:
    return 100.0 if prediction.strip() == reference.strip() else 0.0


def bleu_4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 in percent; characters for Chinese, words otherwise."""
    sacrebleu = _require("sacrebleu", "sacrebleu")
    if not prediction.strip() or not reference.strip():
        return 0.0
    tokenize = "zh" if is_chinese(prediction, reference) else "13a"
    return float(sacrebleu.sentence_bleu(prediction, [reference], tokenize=tokenize, smooth_method="exp").score)


class _JiebaTokenizer:
    """rouge-score tokenizer for Chinese: jieba words, whitespace dropped."""

    def tokenize(self, text: str) -> list[str]:
        jieba = _require("jieba", "jieba")
        jieba.setLogLevel(60)  # jieba prints its dictionary loading to stderr otherwise
        return [w.strip().lower() for w in jieba.cut(text) if w.strip()]


class _WordTokenizer:
    """rouge-score tokenizer for other languages: lower-cased Unicode words (its own drops non-ASCII letters)."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 in percent: {'rouge_1', 'rouge_2', 'rouge_l'}."""
    if not prediction.strip() or not reference.strip():
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}
    _require("rouge_score", "rouge-score")
    from rouge_score import rouge_scorer

    tokenizer = _JiebaTokenizer() if is_chinese(prediction, reference) else _WordTokenizer()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=tokenizer)
    scores = scorer.score(reference, prediction)  # (target, prediction)
    return {"rouge_1": 100 * scores["rouge1"].fmeasure, "rouge_2": 100 * scores["rouge2"].fmeasure,
            "rouge_l": 100 * scores["rougeL"].fmeasure}


def sample_scores(prediction: str, reference: str) -> dict[str, float]:
    """Every generation metric for one answer."""
    return {"exact_match": exact_match(prediction, reference), "bleu_4": bleu_4(prediction, reference),
            **rouge(prediction, reference)}


def call_scores(predicted: list | None, reference) -> dict[str, float]:
    """A tool-calling answer against the calls it should make (ToolCall objects, in order): the right
    functions (names), and the right functions with the right arguments (equal as JSON objects), in percent."""
    names = [c.name for c in predicted or []] == [c.name for c in reference]
    exact = names and [c.arguments for c in predicted or []] == [c.arguments for c in reference]
    return {"tool_call_name": 100.0 if names else 0.0, "tool_call_exact": 100.0 if exact else 0.0}


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """Each metric's mean over the rows that have it (text answers and tool calls are scored apart)."""
    keys = ("exact_match", "bleu_4", "rouge_1", "rouge_2", "rouge_l", "tool_call_name", "tool_call_exact")
    scored = {k: [r[k] for r in rows if k in r] for k in keys}
    return {k: round(sum(v) / len(v), 4) if v else None for k, v in scored.items()}


def perplexity(mean_nll: float | None) -> float | None:
    """exp(mean negative log-likelihood per trained token); None when there were no tokens."""
    if mean_nll is None:
        return None
    return math.exp(mean_nll) if mean_nll < 700 else math.inf
