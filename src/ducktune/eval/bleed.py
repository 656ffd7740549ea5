"""What fine-tuning broke: base vs tuned answers to general prompts the run never trained on.

- bleed: a tuned answer that contains persona text (`eval.persona_terms`, e.g. the new name) or
  a trained answer's sentence verbatim, where the base model's answer to the same unrelated
  prompt did not. "The capital of France is Paris. I am Duckling, ..." is bleed.
- mean KL divergence KL(tuned || base) of the next-token distributions, teacher-forced along
  the base model's own answer (every answer position, averaged per prompt, then over prompts):
  0 when fine-tuning left general behaviour untouched, in nats.
- the changed answers (tuned differs from base), side by side.
"""

from __future__ import annotations

import re

from ducktune.eval.metrics import is_chinese

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")
MIN_SENTENCE_CHARS = {"en": 16, "zh": 6}


def answer_sentences(answers: list[str]) -> list[str]:
    """Distinctive sentences of trained answers: long enough that quoting one is not chance."""
    found: set[str] = set()
    for answer in answers:
        for sentence in _SENTENCE_END.split(answer or ""):
            sentence = sentence.strip()
            minimum = MIN_SENTENCE_CHARS["zh" if is_chinese(sentence) else "en"]
            if len(sentence) >= minimum:
                found.add(sentence)
    return sorted(found, key=len, reverse=True)


def bleed_markers(persona_terms: list[str], trained_answers: list[str]) -> list[str]:
    return [t for t in persona_terms if t.strip()] + answer_sentences(trained_answers)


def bleed_hit(tuned: str, base: str, markers: list[str]) -> str | None:
    """The marker a tuned answer bleeds (present in it, absent from the base answer), or None."""
    for marker in markers:
        if marker in tuned and marker not in base:
            return marker
    return None


def kl_along_answer(engine, prompt: str, answer: str) -> float | None:
    """Mean KL(tuned || base) over the positions predicting `answer` (teacher-forced) after `prompt`."""
    import torch

    from ducktune.eval.scoring import _logits_at

    prompt_ids = engine.chat_format.prompt_ids([{"role": "user", "content": prompt}])
    answer_ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    ids = prompt_ids + answer_ids
    positions = list(range(len(prompt_ids) - 1, len(ids)))  # the first answer token's prediction too
    tuned = torch.log_softmax(_logits_at(engine, ids, positions), dim=-1)
    with engine.adapter_disabled():
        base = torch.log_softmax(_logits_at(engine, ids, positions), dim=-1)
    kl = (tuned.exp() * (tuned - base)).sum(-1)
    return float(kl.mean())


def bleed_report(engine, prompts: list[dict], base_answers: list[str], tuned_answers: list[str],
                 markers: list[str]) -> dict:
    """The forgetting / bleed section of eval.json."""
    rows = []
    for item, base, tuned in zip(prompts, base_answers, tuned_answers):
        hit = bleed_hit(tuned, base, markers)
        rows.append({"prompt": item["prompt"], "lang": item.get("lang"), "kind": item.get("kind"),
                     "base": base, "tuned": tuned, "changed": base.strip() != tuned.strip(),
                     "bleed": hit is not None, "bleed_text": hit})
    kls = []
    if engine.has_adapter:
        for row in rows:
            kls.append(kl_along_answer(engine, row["prompt"], row["base"]))
            row["kl"] = round(kls[-1], 5)
    n_bleed = sum(r["bleed"] for r in rows)
    return {
        "prompts": len(rows),
        "bleed": n_bleed,
        "bleed_rate": round(100 * n_bleed / len(rows), 2) if rows else None,
        "changed": sum(r["changed"] for r in rows),
        "mean_kl": round(sum(kls) / len(kls), 5) if kls else None,
        "markers": markers[:20],
        "rows": rows,
    }


def run_bleed(engine, markers: list[str], max_new_tokens: int, log=print) -> dict:
    """Base (cached per base model) and tuned greedy answers to the bundled general prompts, compared."""
    from ducktune.chat.general import engine_base_answers, general_prompts

    prompts = general_prompts("bleed")
    texts = [p["prompt"] for p in prompts]
    conversations = [[{"role": "user", "content": t}] for t in texts]
    base = engine_base_answers(engine, texts, max_new_tokens, log=log)
    if base is None:
        with engine.adapter_disabled():
            base = [g.text for g in engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=64)]
    tuned = engine.generate_batch(conversations, max_new_tokens=max_new_tokens, batch_size=64)
    return bleed_report(engine, prompts, base, [t.text for t in tuned], markers)
