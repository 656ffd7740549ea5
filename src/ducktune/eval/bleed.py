"""What fine-tuning broke: base vs tuned answers to general prompts the run never trained on.

- bleed: a tuned answer that contains persona text (`eval.persona_terms`, e.g. the new name) or
  a trained answer's sentence verbatim (chat answers; a preference run's chosen answers), where
  the base model's answer to the same unrelated prompt did not. "The capital of France is Paris.
  I am Duckling, ..." is bleed. With nothing to look for, bleed and bleed_rate are None (not measured).
- mean KL divergence KL(tuned || base) of the next-token distributions, teacher-forced along
  the first 32 tokens of the base model's own answer (averaged per prompt, then over prompts):
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


KL_TOKENS = 32  # answer positions compared per prompt: where persona text shows up, at a bounded cost


def _kl_batch(engine, sequences: list[tuple[list[int], int]]) -> list[float]:
    """Mean KL(tuned || base) per sequence over its last `n` positions' predictions (left-padded batch)."""
    import torch

    from ducktune.chat.engine import left_padded

    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else 0
    keep = max(n for _, n in sequences)
    input_ids, mask = left_padded([ids for ids, _ in sequences], pad, next(engine.model.parameters()).device)
    kwargs = dict(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  logits_to_keep=keep + 1)
    with torch.inference_mode():
        # Position t predicts token t+1: the last `n` predictions used are those before the final token.
        tuned = torch.log_softmax(engine.model(**kwargs).logits[:, :-1].float(), dim=-1)
        with engine.adapter_disabled():
            base = torch.log_softmax(engine.model(**kwargs).logits[:, :-1].float(), dim=-1)
    kl = (tuned.exp() * (tuned - base)).sum(-1)  # [batch, keep]
    return [float(kl[i, keep - n:].mean()) for i, (_, n) in enumerate(sequences)]


def kl_along_answers(engine, prompts: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
    """Per prompt: mean KL(tuned || base) of the next-token distributions along the first KL_TOKENS
    tokens of the base model's answer (teacher-forced), including the first answer token's."""
    sequences = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids = engine.chat_format.prompt_ids([{"role": "user", "content": prompt}])
        answer_ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"][:KL_TOKENS] if answer else []
        # The sequence ends one token after the last predicted position (a dummy when the answer is empty).
        sequences.append((prompt_ids + answer_ids + [0], len(answer_ids) + 1))
    # Batched by length, so a batch is padded to a length close to each of its sequences' own
    # (in the prompts' order, short and long ones would share batches: padding is computed too).
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    out: list[float] = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for i, kl in zip(chunk, _kl_batch(engine, [sequences[i] for i in chunk])):
            out[i] = kl
    return out


def bleed_report(engine, prompts: list[dict], base_answers: list[str], tuned_answers: list[str],
                 markers: list[str]) -> dict:
    """The forgetting / bleed section of eval.json."""
    rows = []
    for item, base, tuned in zip(prompts, base_answers, tuned_answers):
        hit = bleed_hit(tuned, base, markers)
        rows.append({"prompt": item["prompt"], "lang": item.get("lang"), "kind": item.get("kind"),
                     "base": base, "tuned": tuned, "changed": base.strip() != tuned.strip(),
                     "bleed": hit is not None, "bleed_text": hit})
    kls = kl_along_answers(engine, [r["prompt"] for r in rows], [r["base"] for r in rows]) if engine.has_adapter else []
    for row, kl in zip(rows, kls):
        row["kl"] = round(kl, 5)
    # Nothing to look for (no persona terms, no trained answers re-read) is "not measured", never 0 %.
    n_bleed = sum(r["bleed"] for r in rows) if markers else None
    if not markers:
        for row in rows:
            row["bleed"] = None
    return {
        "prompts": len(rows),
        "bleed": n_bleed,
        "bleed_rate": round(100 * n_bleed / len(rows), 2) if rows and n_bleed is not None else None,
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
