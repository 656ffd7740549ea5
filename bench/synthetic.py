"""A synthetic chat set with realistic mixed lengths, from a fixed seed.

Conversation lengths in tokens follow a lognormal distribution clipped to [20, 1500]: many
short exchanges, a long tail of long ones, like real instruction data. (Lengths are drawn in
tokens and converted with the tokenizer's measured tokens-per-word on the same text.)
Words come from ducktune's bundled corpus, so every tokenizer in the benchmark covers them.
A quarter of the conversations have two exchanges; the user's share of each is 20-60 %.
"""

from __future__ import annotations

import math
import random
import re

from ducktune.models.tiny import corpus_lines


def corpus_words() -> list[str]:
    return [w for line in corpus_lines() for w in re.findall(r"[A-Za-z]+[.,]?", line)]


def tokens_per_word(tokenizer) -> float:
    words = corpus_words()
    return len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) / len(words)


def synthetic_chats(n: int, seed: int = 0, tokens_per_word: float = 1.0, median_tokens: int = 300,
                    sigma: float = 0.9, low: int = 20, high: int = 1500) -> list[dict]:
    rng = random.Random(seed)
    words = corpus_words()

    def text(count: int) -> str:
        start = rng.randrange(len(words))
        return " ".join(words[(start + k) % len(words)] for k in range(max(1, count)))

    chats = []
    for _ in range(n):
        tokens = min(high, max(low, rng.lognormvariate(math.log(median_tokens), sigma)))
        total = int(tokens / tokens_per_word)
        turns = 2 if rng.random() < 0.25 and total > 80 else 1
        messages = []
        for _turn in range(turns):
            share = total // turns
            user = max(3, int(share * rng.uniform(0.2, 0.6)))
            messages.append({"role": "user", "content": text(user)})
            messages.append({"role": "assistant", "content": text(share - user)})
        chats.append({"messages": messages})
    return chats


def synthetic_pairs(n: int, seed: int = 0, tokens_per_word: float = 1.0, median_tokens: int = 160,
                    sigma: float = 0.6, low: int = 24, high: int = 400) -> list[dict]:
    """Preference pairs {prompt, chosen, rejected} with mixed lengths: a prompt of 20-50 % of the
    drawn length, and two different answers whose lengths vary independently around the rest
    (0.5-1.5x), so the padded batches of a pair hold rows of unequal length, as in real pairs."""
    rng = random.Random(seed)
    words = corpus_words()

    def text(count: int) -> str:
        start = rng.randrange(len(words))
        return " ".join(words[(start + k) % len(words)] for k in range(max(1, count)))

    pairs = []
    for _ in range(n):
        total = int(min(high, max(low, rng.lognormvariate(math.log(median_tokens), sigma))) / tokens_per_word)
        prompt = max(3, int(total * rng.uniform(0.2, 0.5)))
        answer = max(2, total - prompt)
        pairs.append({"prompt": text(prompt), "chosen": text(int(answer * rng.uniform(0.5, 1.5))),
                      "rejected": text(int(answer * rng.uniform(0.5, 1.5)))})
    return pairs
