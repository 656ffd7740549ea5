"""`ducktune eval RUN_DIR`: did it work, and what did it break?

    held-out loss / perplexity (validation split + --data chat files; trained tokens, training masks)
    preference accuracy and margins on held-out pairs (a preference run's validation split + --data
        pair files; reward accuracy against the model the run started from: eval/preference.py)
    generation metrics on --data chat files (greedy, batched; exact match, BLEU-4, ROUGE-1/2/L)
    multiple-choice accuracy on --data files in the MMLU / C-Eval / CMMLU layout
    forgetting / bleed on the bundled general prompts (always; base answers cached per base model)

Base and tuned are the same loaded weights with the adapter off and on. Results go to
RUN_DIR/eval/eval.json, eval/predictions.jsonl, eval/eval.png and a section of report.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ducktune.errors import UserError
from ducktune.eval import metrics
from ducktune.eval.inputs import EvalInputs, read_eval_inputs
from ducktune.io import unwritable

HEADLINE_KEYS = ("loss", "perplexity", "exact_match", "bleu_4", "rouge_1", "rouge_2", "rouge_l", "choice_accuracy")


def _both(engine, work, with_base: bool = True) -> dict:
    """{'base': work() with the adapter off, 'tuned': work()}; base None without an adapter."""
    tuned = work()
    base = None
    if with_base and engine.has_adapter:
        with engine.adapter_disabled():
            base = work()
    return {"base": base, "tuned": tuned}


def run_samples(config, chat_format, log=print):
    """The run's training and validation samples, re-read from its config as its objective read them
    (preference runs: pairs and KTO samples, split as training split them); None when its data files moved."""
    from ducktune.data.loader import load_data

    objective = "sft" if config.train.objective == "sft" else "preference"
    try:
        return load_data(config.data, seed=config.train.seed, chat_format=chat_format, objective=objective)
    except UserError as exc:
        log(f"note: the run's training data cannot be re-read ({exc.message.splitlines()[-1]}); "
            "skipping its validation split")
        return None


def evaluate_loss(engine, sets: list[tuple[str, list]], cutoff: int, train_on: str) -> dict:
    """Loss and perplexity per held-out set and over all of them, base and tuned."""
    from ducktune.eval.scoring import heldout_loss

    rows, sums = [], {"base": [0.0, 0], "tuned": [0.0, 0]}
    for name, samples in sets:
        result = _both(engine, lambda: heldout_loss(engine, samples, cutoff, train_on))
        row = {"name": name, "samples": result["tuned"]["samples"], "tokens": result["tuned"]["tokens"]}
        for side in ("base", "tuned"):
            if result[side] is not None and result[side]["loss"] is not None:
                row[side] = round(result[side]["loss"], 5)
                sums[side][0] += result[side]["nll_sum"]
                sums[side][1] += result[side]["tokens"]
        rows.append(row)
    loss = {side: (s / n if n else None) for side, (s, n) in sums.items()}
    return {"loss": {k: (round(v, 5) if v is not None else None) for k, v in loss.items()},
            "perplexity": {k: (round(metrics.perplexity(v), 4) if v is not None else None) for k, v in loss.items()},
            "sets": rows}


def evaluate_generation(engine, inputs: EvalInputs, max_new_tokens: int, with_base: bool) -> tuple[dict, list[dict]]:
    """Greedy answers to every chat sample's last question, scored against its answer: text by exact match,
    BLEU and ROUGE; an answer that should call tools (prompted with the sample's tools) by whether it calls
    the same functions, and with the same arguments (read in the template's call syntax)."""
    from ducktune.chat.tool_calls import call_syntax, parse_tool_calls
    from ducktune.eval.scoring import prompt_and_reference

    cases = []
    for chat_set in inputs.chat:
        for sample in chat_set.samples:
            split = prompt_and_reference(sample)
            if split is not None:
                cases.append({"file": chat_set.name, "where": sample.where, "messages": split[0], "reference": split[1],
                              "calls": split[2], "tools": sample.tools})
    if not cases:
        return {}, []
    conversations, tools = [c["messages"] for c in cases], [c["tools"] for c in cases]
    answers = _both(engine, lambda: engine.generate_batch(conversations, max_new_tokens, tools=tools), with_base)
    syntax = call_syntax(engine.chat_format) if any(c["calls"] for c in cases) else None
    predictions, scores = [], {"base": [], "tuned": []}
    for i, case in enumerate(cases):
        row = {"file": case["file"], "where": case["where"], "prompt": case["messages"][-1]["content"],
               "reference": case["reference"]}
        if case["calls"]:
            row["reference_calls"] = [call.as_dict()["function"] for call in case["calls"]]
        for side in ("tuned", "base"):
            if answers[side] is not None:
                answer = answers[side][i]
                if case["calls"]:
                    parsed = parse_tool_calls(answer.raw_text, syntax, engine.chat_format.answer_frame, case["tools"])
                    score = metrics.call_scores(parsed[1] if parsed else None, case["calls"])
                else:
                    score = metrics.sample_scores(answer.text, case["reference"])
                scores[side].append(score)
                row[side] = answer.raw_text if case["calls"] else answer.text
                row[f"{side}_scores"] = {k: round(v, 4) for k, v in score.items()}
        predictions.append(row)
    means = {side: metrics.mean_scores(rows) if rows else None for side, rows in scores.items()}
    return {"samples": len(cases), "means": means}, predictions


def evaluate_choices(engine, inputs: EvalInputs) -> dict:
    """Accuracy per subject and overall (every question pooled), per side. With several --data sets
    (MMLU and C-Eval share subject names such as high_school_physics), each subject is named with its
    set, and "sets" gives each set's own accuracy."""
    from dataclasses import replace

    from ducktune.eval.scoring import accuracy_by_subject, choice_results

    sets = [s for s in inputs.choices if s.items]
    if not sets:
        return {}
    several = len(sets) > 1
    items = [replace(item, subject=f"{s.name}: {item.subject}") if several else item for s in sets for item in s.items]
    owners = [s.name for s in sets for _ in s.items]
    results = _both(engine, lambda: choice_results(engine, items))
    out = {}
    for side, rows in results.items():
        out[side] = accuracy_by_subject(rows) if rows is not None else None
        if several and rows is not None:
            out[side]["sets"] = {s.name: accuracy_by_subject([r for r, o in zip(rows, owners) if o == s.name])["overall"]
                                 for s in sets}
    return out


def started_from_persona_terms(config) -> list[str]:
    """persona_terms recorded by the run that model.adapter continued (a quickstart persona trained on
    with DPO keeps its name); [] when there is none or it cannot be read."""
    from ducktune.models.adapter_check import adapter_folder
    from ducktune.rundir import RunDir

    if not config.model.adapter:
        return []
    try:
        info = RunDir(adapter_folder(config.model.adapter).parent).info()
    except UserError:
        return []
    return [t for t in info.get("persona_terms") or [] if isinstance(t, str)]


def trained_answers(samples) -> list[str]:
    """The answers a run trained towards: assistant turns of chat samples, chosen answers of pairs and
    desirable KTO completions (a preference run's persona lives in those)."""
    answers = []
    for sample in samples.train if samples is not None else []:
        answers += [m.content for m in sample.messages if m.role == "assistant" and sample.kind == "chat"]
        if sample.kind == "preference":
            answers.append(sample.chosen)
        elif sample.kind == "unpaired" and sample.label:
            answers.append(sample.completion)
    return [a for a in answers if a]


def bleed_markers_for(run_info: dict, config, samples) -> list[str]:
    from ducktune.eval.bleed import bleed_markers

    terms = list(config.eval.persona_terms) + list(run_info.get("persona_terms") or []) + \
        started_from_persona_terms(config)
    return bleed_markers(list(dict.fromkeys(terms)), list(dict.fromkeys(trained_answers(samples))))


def headline(loss: dict, generation: dict, choices: dict, preference: dict | None = None) -> dict:
    """The eval.json keys every reader can rely on: each {'base': x, 'tuned': y} (None when not measured)."""
    out = {"loss": loss.get("loss", {"base": None, "tuned": None}),
           "perplexity": loss.get("perplexity", {"base": None, "tuned": None})}
    means = generation.get("means") or {}
    for key in ("exact_match", "bleu_4", "rouge_1", "rouge_2", "rouge_l", "tool_call_name", "tool_call_exact"):
        out[key] = {side: (means.get(side) or {}).get(key) for side in ("base", "tuned")}
    out["choice_accuracy"] = {side: (choices.get(side) or {}).get("overall") for side in ("base", "tuned")}
    for key, field in (("preference_accuracy", "accuracy"), ("preference_margin", "margin")):
        out[key] = {side: ((preference or {}).get(side) or {}).get(field) for side in ("base", "tuned")}
    return out


def _named_sets(val: list, kinds, files: list) -> list[tuple[str, list]]:
    """[(name, samples)]: the validation samples of these kinds, then the --data files' sets; empty ones left out."""
    named = [("validation", [s for s in val if s.kind in kinds])] + [(f.name, f.samples) for f in files]
    return [(name, samples) for name, samples in named if samples]


def run_eval(run_dir: str, data: list[str] | None = None, with_base: bool = False, max_new_tokens: int = 128,
             as_json: bool = False, log=print) -> dict:
    from ducktune.chat.engine import ChatEngine
    from ducktune.data.schema import PREFERENCE_KINDS
    from ducktune.eval.bleed import run_bleed
    from ducktune.eval.preference import evaluate_preference
    from ducktune.eval.report import print_summary, write_eval_outputs
    from ducktune.rundir import RunDir

    run = RunDir(run_dir)
    info = run.info()
    run.weights_dir()
    for folder in (run.path, run.path / "eval"):  # eval/ and report.md are written in the run folder
        if folder.is_dir() and (why := unwritable(folder)):
            raise UserError(f"{folder}: {why}; eval writes eval/ and report.md there: evaluate a writable copy "
                            "of the run (cp -r)")
    config = run.config()
    inputs = read_eval_inputs(list(data or []))  # every file checked before any model loads
    started = time.perf_counter()
    engine = ChatEngine.from_run(run_dir, log=log)
    samples = run_samples(config, engine.chat_format, log=log)
    val = samples.val if samples is not None else []
    sets = _named_sets(val, ("chat", "text"), inputs.chat)
    loss = evaluate_loss(engine, sets, config.data.cutoff_len, config.data.train_on) if sets else {}
    pair_sets = _named_sets(val, PREFERENCE_KINDS, inputs.pairs)
    preference = evaluate_preference(engine, pair_sets, config.data.cutoff_len, config.model.adapter,
                                     config.preference.beta_for("dpo"), log=log)
    generation, predictions = evaluate_generation(engine, inputs, max_new_tokens, with_base)
    choices = evaluate_choices(engine, inputs)
    bleed = run_bleed(engine, bleed_markers_for(info, config, samples), min(max_new_tokens, 64), log=log) \
        if engine.has_adapter else None
    result = headline(loss, generation, choices, preference) | {
        "run": run.path.name, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(time.perf_counter() - started, 1), "max_new_tokens": max_new_tokens,
        "loss_sets": loss.get("sets", []), "generation_samples": generation.get("samples", 0),
        "choices": choices, "bleed": bleed, "preference": preference or None,
    }
    write_eval_outputs(run, result, predictions)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_summary(result, run.path / "eval", log=log)
    return result


def read_eval(run_dir: str | Path) -> dict | None:
    """eval/eval.json of a run, or None when it was never evaluated (the UI reads it)."""
    path = Path(run_dir) / "eval" / "eval.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None

