"""Held-out preference pairs (a DPO / ORPO / SimPO run's validation split, --data pair files): does
each model prefer the chosen answer?

- accuracy: the share of pairs (%) whose chosen answer has the higher sequence log-probability
  (summed over the answer's tokens, prompt masked as training masks it); margin: the mean of
  log p(chosen) - log p(rejected), in nats. Per side: base (adapter off), tuned and, for a run
  that continued an adapter (model.adapter), "started_from" (that adapter: the model DPO began at).
- reward_accuracy / reward_margin: DPO's implied reward of the tuned model against its reference,
  beta * (tuned margin - reference margin) per pair, TRL's rewards/accuracies and rewards/margins on
  held-out pairs. The reference is the model the run started from: model.adapter when set, else
  the base ("reference" says which).

KTO's unpaired samples hold no pair to compare: they are counted ("unpaired_skipped"), not scored.
"""

from __future__ import annotations

from contextlib import contextmanager

from ducktune.eval.scoring import sample_nll

STARTED_FROM = "started_from"  # the adapter name model.adapter is loaded under, beside the trained "default"


def pair_margins(engine, rows: list[dict]) -> list[float]:
    """Per tokenized pair: log p(chosen) - log p(rejected) under the engine's model (answer tokens only)."""
    margins = []
    for row in rows:
        chosen = -sample_nll(engine, row["chosen_input_ids"], row["chosen_labels"])[0]
        rejected = -sample_nll(engine, row["rejected_input_ids"], row["rejected_labels"])[0]
        margins.append(chosen - rejected)
    return margins


def margin_summary(margins: list[float]) -> dict:
    """{'accuracy': % of pairs with a positive margin, 'margin': mean margin}."""
    return {"accuracy": round(100 * sum(m > 0 for m in margins) / len(margins), 2),
            "margin": round(sum(margins) / len(margins), 4)}


@contextmanager
def started_from_adapter(engine, adapter: str):
    """The engine answering as model.adapter (the adapter the run continued), loaded beside the trained one."""
    from ducktune.models.adapter_check import adapter_folder

    engine.model.load_adapter(str(adapter_folder(adapter)), adapter_name=STARTED_FROM)
    engine.model.set_adapter(STARTED_FROM)
    try:
        yield
    finally:
        engine.model.set_adapter("default")
        engine.model.delete_adapter(STARTED_FROM)


def pair_rows(engine, sets: list[tuple[str, list]], cutoff: int) -> tuple[list[dict], list[dict], int]:
    """(tokenized pairs, [{name, pairs}] per set, unpaired KTO samples left out); pairs the template
    cannot render or the cutoff leaves no answer are left out as training leaves them."""
    from ducktune.data.preference import tokenize_preference

    rows, counts, unpaired = [], [], 0
    for name, samples in sets:
        pairs = [s for s in samples if s.kind == "preference"]
        unpaired += sum(1 for s in samples if s.kind == "unpaired")
        tokenized = tokenize_preference(pairs, engine.chat_format, cutoff, skip_bad=True)[0] if pairs else []
        rows += tokenized
        if pairs:
            counts.append({"name": name, "pairs": len(tokenized)})
    return rows, counts, unpaired


def evaluate_preference(engine, sets: list[tuple[str, list]], cutoff: int, adapter: str | None, beta: float,
                        log=print) -> dict:
    """eval.json's "preference" section ({} without held-out pairs or KTO samples)."""
    rows, counts, unpaired = pair_rows(engine, sets, cutoff)
    if not rows:
        return {"pairs": 0, "unpaired_skipped": unpaired} if unpaired else {}
    sides = {"tuned": pair_margins(engine, rows), "base": None, STARTED_FROM: None}
    if engine.has_adapter:
        with engine.adapter_disabled():
            sides["base"] = pair_margins(engine, rows)
        if adapter:
            try:
                with started_from_adapter(engine, adapter):
                    sides[STARTED_FROM] = pair_margins(engine, rows)
            except Exception as exc:  # moved or unreadable: the base still serves as a reference
                log(f"note: model.adapter {adapter} cannot be loaded ({str(exc).splitlines()[0]}); "
                    "the preference rewards use the base model as reference")
    reference = STARTED_FROM if sides[STARTED_FROM] is not None else "base"
    out = {"pairs": len(rows), "sets": counts, "unpaired_skipped": unpaired, "beta": beta,
           "reference": f"model.adapter: {adapter}" if reference == STARTED_FROM else "base"}
    out |= {side: margin_summary(m) if m is not None else None for side, m in sides.items()}
    if sides[reference] is not None:
        rewards = [beta * (t - r) for t, r in zip(sides["tuned"], sides[reference])]
        out["reward_accuracy"] = round(100 * sum(r > 0 for r in rewards) / len(rewards), 2)
        out["reward_margin"] = round(sum(rewards) / len(rewards), 4)
    return out
