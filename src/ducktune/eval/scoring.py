"""What a model does on held-out data: loss and perplexity on trained tokens, greedy answers,
and multiple-choice answers by log-likelihood.

Every function takes a ChatEngine and scores whatever model it holds; callers switch the
adapter off (`engine.adapter_disabled()`) to score the base model with the same weights.
"""

from __future__ import annotations

from ducktune.data.template import IGNORE_INDEX
from ducktune.eval.choices import LETTERS, ChoiceItem, choice_prompt


def _device(engine):
    return next(engine.model.parameters()).device


def _logits_at(engine, ids: list[int], positions: list[int]):
    """Logits [len(positions), vocab] of one sequence; the LM head runs only at `positions`
    (a 152k vocabulary times a long sequence would not fit otherwise)."""
    import torch

    input_ids = torch.tensor([ids], device=_device(engine))
    keep = torch.tensor(positions, device=input_ids.device)
    with torch.inference_mode():
        logits = engine.model(input_ids=input_ids, logits_to_keep=keep).logits[0]
    if logits.shape[0] != len(positions):  # a model that ignores logits_to_keep returns every position
        logits = logits[keep]
    return logits.float()


def sample_nll(engine, input_ids: list[int], labels: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of the trained tokens of one encoded sample, and their count.

    `labels` are the training labels (IGNORE_INDEX where untrained); position t-1 predicts token t.
    """
    import torch

    targets = [t for t in range(1, len(labels)) if labels[t] != IGNORE_INDEX]
    if not targets:
        return 0.0, 0
    logits = _logits_at(engine, input_ids, [t - 1 for t in targets])
    gold = torch.tensor([labels[t] for t in targets], device=logits.device)
    nll = torch.nn.functional.cross_entropy(logits, gold, reduction="sum")
    return float(nll), len(targets)


def heldout_loss(engine, samples, cutoff: int, train_on: str) -> dict:
    """Mean loss per trained token over samples (masks exactly as training builds them)."""
    total, count, used = 0.0, 0, 0
    for sample in samples:
        encoded = engine.chat_format.encode(sample, cutoff, train_on)
        labels = [IGNORE_INDEX] + list(encoded.labels[1:])  # as in training: nothing predicts the first token
        nll, n = sample_nll(engine, encoded.input_ids, labels)
        total, count, used = total + nll, count + n, used + (1 if n else 0)
    return {"loss": total / count if count else None, "tokens": count, "samples": used, "nll_sum": total}


def prompt_and_reference(sample) -> tuple[list[dict], str, tuple] | None:
    """A chat sample split for generation: the conversation before its last assistant answer, that answer's
    text, and its tool calls (ToolCall objects; empty for an answer without)."""
    messages = sample.message_dicts()
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if sample.kind != "chat" or last is None or last == 0:
        return None
    return messages[:last], messages[last]["content"], sample.messages[last].tool_calls


def choice_letter_ids(tokenizer) -> list[int]:
    """The token each answer letter starts with, as the model would write it right after the generation prompt."""
    ids = []
    for letter in LETTERS:
        encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        ids.append(encoded[0])
    return ids


def choice_logprobs(engine, items: list[ChoiceItem], batch_size: int = 16) -> list[list[float]]:
    """Log-probabilities of the letters A-D as the first answer token, per question (left-padded batches)."""
    import torch

    from ducktune.chat.engine import left_padded

    letter_ids = choice_letter_ids(engine.tokenizer)
    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = []
    for start in range(0, len(items), batch_size):
        prompts = [engine.chat_format.prompt_ids([{"role": "user", "content": choice_prompt(item)}])
                   for item in items[start:start + batch_size]]
        ids, mask = left_padded(prompts, pad, _device(engine))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        with torch.inference_mode():
            logits = engine.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        logprobs = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, letter_ids]
        out += logprobs.tolist()
    return out


def choice_results(engine, items: list[ChoiceItem]) -> list[dict]:
    """Per question: the predicted letter (highest log-likelihood) and whether it is right."""
    rows = []
    for item, logprobs in zip(items, choice_logprobs(engine, items)):
        predicted = LETTERS[max(range(4), key=lambda i: logprobs[i])]
        rows.append({"where": item.where, "subject": item.subject, "answer": item.answer,
                     "predicted": predicted, "correct": predicted == item.answer})
    return rows


def accuracy_by_subject(rows: list[dict]) -> dict:
    """{'overall': %, 'subjects': {subject: %}, 'questions': n} in percent."""
    subjects: dict[str, list[bool]] = {}
    for row in rows:
        subjects.setdefault(row["subject"], []).append(row["correct"])
    percent = lambda xs: round(100 * sum(xs) / len(xs), 2) if xs else None  # noqa: E731
    return {"overall": percent([r["correct"] for r in rows]), "questions": len(rows),
            "subjects": {s: percent(v) for s, v in sorted(subjects.items())}}
