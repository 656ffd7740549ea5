"""`data.replay`: a guard against forgetting by self-distillation.

The base model's own greedy answers to bundled general prompts (English and Chinese: facts,
arithmetic, writing, code) are mixed into the training data, so while the model learns the
new data it is also shown, in the same batches, that unrelated questions keep their old
answers. No outside data, works offline; the answers are generated once per base model
and cached (chat/general.py), so a rerun costs nothing.

Answers cut by the token limit are used up to their last finished sentence (a cut answer
would teach the model to stop mid-sentence); answers with no finished sentence are skipped.
"""

from __future__ import annotations

from pathlib import Path

from ducktune.chat.general import base_model_fingerprint, cached_base_answers, complete_part, general_prompts
from ducktune.data.schema import Message, Sample

REPLAY_MAX_NEW_TOKENS = 48


def replay_count(ratio: float, n_train: int, available: int) -> int:
    """Replay samples for `n_train` training samples: round(ratio x n_train), at least 1 when
    the ratio is on, at most the answers available."""
    if ratio <= 0 or n_train <= 0:
        return 0
    return min(available, max(1, round(ratio * n_train)))


def replay_samples(config, n_train: int, base_folder: str | Path, chat_format, log=print) -> list[Sample]:
    """The replay samples for a run (empty when data.replay is 0).

    The base model is loaded only when its answers are not cached yet.
    """
    ratio = config.data.replay
    if not ratio:
        return []
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import estimate_params, model_config

    prompts = [p["prompt"] for p in general_prompts("replay")]
    placement = choose_placement(config.model.device, config.model.dtype, estimate_params(model_config(base_folder)))

    def engine_factory():
        from ducktune.chat.engine import ChatEngine
        from ducktune.models.loading import load_model

        model = load_model(base_folder, placement, trust_remote_code=config.model.trust_remote_code)
        return ChatEngine(model, chat_format.tokenizer, chat_format, name="base")

    model_key = f"{base_model_fingerprint(base_folder)}/{placement.device}/{placement.dtype}"
    answers = cached_base_answers(model_key, chat_format, prompts, REPLAY_MAX_NEW_TOKENS, engine_factory, log=log)
    usable = [(a["prompt"], replay_answer(a)) for a in answers]
    usable = [(p, a) for p, a in usable if a]
    chosen = usable[:replay_count(ratio, n_train, len(usable))]  # the bundled order alternates languages and kinds
    log(f"Replay: {len(chosen)} of the base model's own answers to general prompts mixed in "
        f"(data.replay={ratio}; guards against forgetting)")
    return [Sample(kind="chat", messages=[Message("user", prompt), Message("assistant", answer)],
                   where=f"replay:{i + 1}", format="replay", fields=["instruction", "output"])
            for i, (prompt, answer) in enumerate(chosen)]


def replay_answer(row: dict) -> str:
    """The answer to train on: a finished answer whole; one cut by the token limit up to its last
    finished sentence (training on a cut answer would teach stopping mid-sentence)."""
    text = row["text"].strip()
    return text if row["finish_reason"] == "stop" else complete_part(text)
