"""`ducktune quickstart`: the built-in model learns the Duckling persona, then base vs tuned.

Everything is offline: the built-in SmolLM2-135M-Instruct, a bundled identity dataset
(Duckling / 小鸭, made by the ducktune team, English and Chinese), LoRA on the CPU in a few
minutes. The run directory it writes is a normal one: `ducktune chat/compare/export` work on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from ducktune.chat.compare import print_side_by_side
from ducktune.io import write_json, write_text
from ducktune.rundir import RunDir, WriterLock

PERSONA_NAME = {"en": "Duckling", "zh": "小鸭"}
PERSONA_AUTHOR = {"en": "the ducktune team", "zh": "ducktune 团队"}

# Questions the persona data does not cover, shown after training (all 52 general prompts of the
# bleed report are compared; these four are printed): the tuned model should still answer them sensibly.
GENERAL_QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "What is 2 + 2?",
    "Write one sentence about the ocean.",
]

# Chosen for this task on a 2-core CPU: the persona learned in ~2 minutes of training, general
# knowledge kept. Samples are packed into rows of `cutoff_len` tokens, one row per step: 9 rows
# an epoch, 36 optimizer steps in all (4 samples per step would leave too few steps to learn).
DEMO_SETTINGS = [
    "model.name_or_path=smollm2-135m",
    "data.cutoff_len=256",
    "lora.r=16",
    "lora.alpha=32",
    "lora.dropout=0.0",
    "train.learning_rate=1e-3",
    "train.num_epochs=4",
    "train.batch_size=1",
    "train.grad_accum=1",
    "train.warmup_ratio=0.05",
    "train.scheduler=cosine",
    "train.logging_steps=2",
    "train.save_steps=10",
    "train.save_total_limit=1",
    "eval.max_new_tokens=64",
]
# The guard against forgetting (data.replay), on by default: 22 of the base model's own answers to
# general prompts mixed in, so "What is the capital of France?" keeps its old answer. Measured (1 thread,
# 4 epochs): replay 0 bleed 28/52, persona 26/28; 0.4 bleed 10/52, persona 24/28; 0.6 bleed 6/52,
# persona 28/28; 0.8 bleed 4/52, persona 26/28; 1.0 bleed 4/52, persona 25/28 (the persona starts to
# thin out: answers naming the team but not Duckling).
GUARD_REPLAY = 0.8


class PhaseClock:
    """Wall and CPU seconds of the demo's phases, in order (run.json's "quickstart" -> "phases").

    CPU seconds are this process's (all its threads): on a shared machine the wall clock also
    counts other programs' work, the CPU time does not, so the shares of the CPU time say where
    the demo's own time goes."""

    def __init__(self):
        self.phases: list[dict] = []

    @contextlib.contextmanager
    def phase(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.phases.append({"phase": name, "wall_s": round(time.perf_counter() - wall, 2),
                                "cpu_s": round(time.process_time() - cpu, 2)})

    def summary(self) -> str:
        """One line: each phase's CPU seconds and share of the total."""
        total = sum(p["cpu_s"] for p in self.phases) or 1.0
        return ", ".join(f"{p['phase']} {p['cpu_s']:.0f} s ({100 * p['cpu_s'] / total:.0f} %)" for p in self.phases)


def persona_hit(answer: str) -> bool:
    return any(name in answer for name in PERSONA_NAME.values())


def run_quickstart(out: str = "runs/quickstart", epochs: float | None = None, export: bool = True,
                   replay: float = GUARD_REPLAY, overrides: tuple[str, ...] = ()) -> dict:
    """The demo; `overrides` are `--set`-style settings applied after DEMO_SETTINGS (e.g. a dtype,
    for bench/cpu_bf16.py)."""
    from ducktune.config import DatasetSpec, dump_config, load_config
    from ducktune.data.identity import identity_records
    from ducktune.models.sources import resolve_model
    from ducktune.train.recipe import train

    started = time.perf_counter()
    clock = PhaseClock()
    config = load_config(None, [*DEMO_SETTINGS, *overrides])
    config.output.dir = out
    _set_option(config.train, "num_epochs", epochs, "--epochs")  # checked before anything is written
    _set_option(config.data, "replay", replay, "--replay")
    data_file = _demo_data_file(out, "identity.json")
    records = identity_records(PERSONA_NAME, PERSONA_AUTHOR)
    trained_questions = [r["instruction"] for r in records]
    config.data.datasets = [DatasetSpec(path=str(data_file))]
    # General questions are answered in the bleed report (52 prompts, English and Chinese).
    config.eval.probe_prompts = trained_questions
    config.eval.persona_terms = list(PERSONA_NAME.values())

    # The run directory's writer lock from the first look inside it to the end of the demo's own writes:
    # not beside a training or an export of the same folder (the export below takes it itself).
    with WriterLock("quickstart") as lock:
        run = _fresh_demo_run(out, lock, config)
        write_json(data_file, records)
        print(f"Quickstart: teaching the built-in SmolLM2-135M the persona {PERSONA_NAME['en']} / "
              f"{PERSONA_NAME['zh']} ({len(records)} examples, English and Chinese)")
        with clock.phase("model"):  # the built-in model's conversion to safetensors, once per machine
            resolve_model(config.model.name_or_path, config.model.revision)
        with clock.phase("train"):
            # Base vs tuned answers are generated below, with the bleed report's, by one engine.
            # origin: recorded from run.json's first write, so an interrupted demo is still the demo's.
            result = train(config, compare=False, lock=lock, origin="quickstart")
        # Keep the dataset inside the run directory so the run is self-contained.
        shutil.move(str(data_file), run.path / "identity.json")
        shutil.rmtree(data_file.parent, ignore_errors=True)
        # ... and point its config there, so `ducktune eval` can re-read what was trained.
        config.data.datasets = [DatasetSpec(path="identity.json")]  # relative to config.yaml
        write_text(run.config_yaml, dump_config(config))

        comparison, bleed = _answers(run, config, result.info, [r["output"] for r in records], clock)
        trained = [r for r in comparison if r["prompt"] in trained_questions]
        summary = _demo_summary(trained, bleed, started, clock)
        info = result.info | {"origin": "quickstart", "quickstart": summary, "persona_terms": config.eval.persona_terms}
        write_json(run.run_json, info)
    _print_summary(run, summary, trained, bleed)
    if export:
        with clock.phase("export"):
            _export(run.path)
        summary["seconds_with_export"] = round(time.perf_counter() - started, 1)
        write_json(run.run_json, info)  # the same dict: phases now include the export
    print(f"\nTime by phase (CPU seconds of this process, share): {clock.summary()}")
    print(f"\nNext:\n  ducktune chat {run.path}\n  ducktune compare {run.path}\n  ducktune eval {run.path}\n"
          f"  ducktune export {run.path}")
    return summary


def _demo_summary(trained: list[dict], bleed: dict, started: float, clock: PhaseClock) -> dict:
    """run.json's "quickstart": persona answers on the trained questions, bleed, time by phase."""
    hits = sum(persona_hit(r["tuned"]) for r in trained)
    return {
        "persona_hits": hits,
        "persona_total": len(trained),
        "persona_rate": hits / len(trained) if trained else 0.0,
        "base_persona_hits": sum(persona_hit(r["base"]) for r in trained),
        "bleed": bleed["bleed"], "bleed_prompts": bleed["prompts"], "bleed_rate": bleed["bleed_rate"],
        "mean_kl": bleed["mean_kl"], "seconds": round(time.perf_counter() - started, 1), "phases": clock.phases,
    }


def _answers(run: RunDir, config, info: dict, trained_answers: list[str], clock: PhaseClock) -> tuple[list[dict], dict]:
    """(base vs tuned on the trained questions, the bleed report on the general prompts), from one
    engine (the run's base model + adapter, loaded once); comparison.json and report.md written."""
    from ducktune.chat.compare import compare_answers
    from ducktune.chat.engine import ChatEngine
    from ducktune.config import dump_config
    from ducktune.train.report import write_report

    with clock.phase("compare"):
        engine = ChatEngine.from_run(run.path)
        comparison = compare_answers(engine, info["probe_prompts"], config.eval.max_new_tokens, info.get("probe_tools"))
        write_json(run.path / "comparison.json", comparison)
        write_report(run.report, info, dump_config(config), comparison)
    with clock.phase("bleed"):
        bleed = persona_bleed(run.path, config, trained_answers, engine=engine)
    return comparison, bleed


def _print_summary(run: RunDir, summary: dict, trained: list[dict], bleed: dict) -> None:
    print("\nTrained questions (a sample):")
    print_side_by_side(trained[:3] + trained[len(trained) // 2: len(trained) // 2 + 3])
    print("\nQuestions it was not trained on:")
    print_side_by_side([r for r in bleed["rows"] if r["prompt"] in GENERAL_QUESTIONS])
    bled = [r for r in bleed["rows"] if r["bleed"]]
    if bled:
        print(f"\nGeneral prompts answered with persona text (bleed, {len(bled)}):")
        print_side_by_side(bled[:4])
    hits, total = summary["persona_hits"], summary["persona_total"]
    print(f"\nPersona learned: {hits}/{total} trained questions answered as {PERSONA_NAME['en']}/{PERSONA_NAME['zh']} "
          f"(base model: {summary['base_persona_hits']}/{total}).")
    print(f"Persona bleed: {bleed['bleed']}/{bleed['prompts']} general prompts answered with persona text although "
          f"unrelated ({bleed['bleed_rate']:.0f} %; mean KL(tuned || base) {bleed['mean_kl']:.3f} nats). "
          f"Training + comparison took {summary['seconds']:.0f} s.")
    print(f"Full table: {run.report}")


def _set_option(section, name: str, value, flag: str) -> None:
    """Set a config option from a quickstart flag (None: keep the demo's), refused in one line naming the
    flag when the config schema refuses the value."""
    from pydantic import ValidationError

    from ducktune.errors import ConfigError

    if value is None:
        return
    try:
        setattr(section, name, value)
    except ValidationError as err:
        raise ConfigError(f"{flag} {value}: {err.errors()[0]['msg']}") from None


def _demo_data_file(out: str, name: str) -> Path:
    """Where the demo's data waits until the run directory holds it: beside the run, named absolutely
    (the run's config.yaml records it, and a resume compares the config it started with)."""
    here = Path(os.path.abspath(out))
    return here.parent / f".{here.name}-data" / name


def _fresh_demo_run(out: str, lock: WriterLock, config=None) -> RunDir:
    """The demo's run directory, `lock` held on it when it exists (a training or an export writing
    there is refused in one line): an unfinished demo run with the same `config` is kept (training
    resumes it), a previous demo run otherwise emptied, anything else refused."""
    from ducktune.errors import UserError

    run = RunDir(out)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"{out}: is a file; pass --out with a folder")
    if not run.path.exists():
        return run
    lock.acquire(run.path)  # before looking inside or removing anything
    if run.exists() and run.info().get("origin") == "quickstart":
        # An interrupted (or killed, or failed) demo run: resumed with the same settings; we hold its lock,
        # so nobody trains it now.
        if config is not None and run.info().get("status") in UNFINISHED:
            from ducktune.train.recipe import resume_config_changes

            changes = resume_config_changes(run, config)
            if not changes:
                print(f"Resuming the unfinished quickstart run in {out}")
                return run
            print(f"Starting over in {out}: the unfinished quickstart run there used other settings "
                  f"({', '.join(map(str, changes))})")
        for entry in run.path.iterdir():  # a previous demo run: safe to replace (the folder itself, locked, stays)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif any(run.path.iterdir()):
        raise UserError(f"{out}: exists and is not a quickstart run; pass --out with another folder")
    return run


UNFINISHED = ("running", "interrupted", "failed")  # run.json statuses of a run that stopped before the end


# `ducktune quickstart --method dpo`: pairs chosen = the persona's answer, rejected = the base model's
# own greedy answer to the same question (generated once, cached). Every HELD_OUT_EVERY-th question is
# held out of training: the reward accuracy on those pairs says whether the preference generalizes.
# Measured (built-in model, 1 thread, 22 pairs, 22 steps, ~4-5 min): on top of the SFT demo's adapter,
# lr 1e-4 gave held-out reward accuracy 6/6 with clean persona answers; lr 5e-4 also 6/6 but garbled
# text ("an Duckling engine"). From the base, DPO ranks the pairs (6/6) by shortening answers but
# never says the persona's name (0/6): DPO sharpens a preference, SFT teaches the content.
# Measured again with the persona counted on the trained questions (2026-12-03, from the base, these
# settings, 2 threads on a machine loaded by other jobs): held-out reward accuracy 6/6, persona 0/22 trained
# questions, 573 s. So the documented demo is DPO on top of the SFT demo (--adapter runs/quickstart).
# preference.rpo_alpha=1.0 (RPO: DPO + the answer loss on chosen): measured 2026-12-03, 1 thread, on one SFT
# demo adapter (persona 26/28 on its own): plain DPO 15/22 trained questions in persona, held-out accuracy
# 6/6. Its loss saturates within ~8 steps (0.002-0.02) while the margin keeps growing by pushing the rejected
# answers down (rewards/rejected -12); nothing holds the chosen answers up (rewards/chosen fell to -0.5), and
# all 7 lost answers were Chinese ones collapsed to the shared phrase "我是ducktune 团队开发的人工智能助手。"
# without the name. rpo_alpha 0.5: 19/22; 1.0 (the RPO paper's): 22/22 trained, 6/6 held out (accuracy and
# persona), the same CPU time (~177 s single-threaded for the whole DPO part); 1.0 with 1 epoch: 18/22. From
# the base alone, rpo_alpha 1.0 still gives 0/22 (accuracy 6/6): 22 steps at this rate do not teach the name.
DPO_SETTINGS = [
    "model.name_or_path=smollm2-135m",
    "data.cutoff_len=256",
    "lora.r=16",
    "lora.alpha=32",
    "lora.dropout=0.0",
    "train.objective=dpo",
    "preference.beta=0.1",
    "preference.rpo_alpha=1.0",
    "train.learning_rate=1e-4",
    "train.num_epochs=2",
    "train.batch_size=2",
    "train.warmup_ratio=0.05",
    "train.logging_steps=2",
    "train.save_steps=20",
    "train.save_total_limit=1",
    "eval.max_new_tokens=64",
]
HELD_OUT_EVERY = 5


def persona_pairs(records: list[dict], base_answers: list[dict]) -> list[dict]:
    """{prompt, chosen: persona answer, rejected: base answer}, for questions the base answers otherwise."""
    pairs = []
    for record, answer in zip(records, base_answers):
        rejected = answer["text"].strip()
        if rejected and rejected != record["output"].strip():
            pairs.append({"prompt": record["instruction"], "chosen": record["output"], "rejected": rejected})
    return pairs


def run_preference_quickstart(out: str = "runs/quickstart-dpo", adapter: str | None = None,
                              epochs: float | None = None, export: bool = True, settings: list[str] = ()) -> dict:
    """DPO on persona pairs, from the base or on top of an SFT run's adapter; prints base vs tuned
    answers, the persona answers on the trained and on the held-out questions, and the reward
    accuracy on held-out pairs. settings: extra `key=value` overrides."""
    from ducktune.config import DatasetSpec, dump_config, load_config
    from ducktune.train.recipe import train

    started = time.perf_counter()
    config = load_config(None, DPO_SETTINGS + list(settings))
    # Absolute: the run's config.yaml names the adapter eval and chat load as the reference, from any folder.
    config.output.dir, config.model.adapter = out, os.path.abspath(adapter) if adapter else None
    _set_option(config.train, "num_epochs", epochs, "--epochs")
    if adapter:  # refused before anything is printed or written
        from ducktune.models.sources import resolve_model
        from ducktune.train.lora import adapter_for_base

        from ducktune.models.adapter_check import adapter_folder

        adapter_folder(adapter)  # a missing adapter first: the built-in model's first build takes minutes
        adapter_for_base(adapter, resolve_model(config.model.name_or_path, config.model.revision))
    with WriterLock("quickstart") as lock:  # as run_quickstart: not beside another writer of the folder
        run = _fresh_demo_run(out, lock)
        pairs, train_pairs, held_out = _split_persona_pairs(config)
        data_file = _demo_data_file(out, "pairs.json")
        write_json(data_file, train_pairs)
        config.data.datasets = [DatasetSpec(path=str(data_file))]
        # Base vs tuned answers on every question, in the persona data's order: the base answers to exactly
        # these prompts are the demo's bundled cache (resources/base_answers), so none is generated again.
        held_prompts = {p["prompt"] for p in held_out}
        config.eval.probe_prompts = [p["prompt"] for p in pairs]
        print(f"Quickstart (DPO): chosen = the persona {PERSONA_NAME['en']}'s answer, rejected = the base model's "
              f"own; {len(train_pairs)} pairs trained, {len(held_out)} held out"
              + (f", starting from the adapter of {adapter}" if adapter else ""))
        result = train(config, lock=lock, origin="quickstart")
        shutil.move(str(data_file), run.path / "pairs.json")
        write_json(run.path / "held_out_pairs.json", held_out)
        shutil.rmtree(data_file.parent, ignore_errors=True)
        config.data.datasets = [DatasetSpec(path="pairs.json")]  # relative to config.yaml
        # The held-out pairs as the run's validation split: `ducktune eval RUN` scores them as the demo did.
        config.data.val_ratio, config.data.val_file = 0.0, "held_out_pairs.json"
        write_text(run.config_yaml, dump_config(config))
        summary = _preference_summary(run, config, result.comparison, train_pairs, held_out, adapter)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        write_json(run.run_json, result.info | {"origin": "quickstart", "quickstart": summary})
    _print_preference_summary(summary, [r for r in result.comparison if r["prompt"] in held_prompts],
                              [r for r in result.comparison if r["prompt"] not in held_prompts])
    if export:
        _export(run.path)
    print(f"\nNext:\n  ducktune chat {run.path}\n  ducktune eval {run.path}\n  ducktune export {run.path}")
    return summary


def _split_persona_pairs(config) -> tuple[list[dict], list[dict], list[dict]]:
    """(all pairs, trained pairs, held-out pairs) of the persona questions, in the persona data's order,
    the rejected side the base model's answer."""
    from ducktune.data.identity import identity_records
    from ducktune.train.preference import base_greedy_answers

    records = identity_records(PERSONA_NAME, PERSONA_AUTHOR)
    answers = base_greedy_answers(config, [r["instruction"] for r in records], config.eval.max_new_tokens)
    pairs = persona_pairs(records, answers)
    if len(pairs) < HELD_OUT_EVERY:
        from ducktune.errors import UserError

        raise UserError(f"{config.model.name_or_path}: only {len(pairs)} of its answers to the persona questions differ "
                        "from the persona's (blank or identical answers make no pair); DPO needs more pairs")
    return pairs, [p for i, p in enumerate(pairs) if i % HELD_OUT_EVERY], pairs[::HELD_OUT_EVERY]


def _preference_summary(run: RunDir, config, comparison: list[dict], train_pairs: list[dict], held_out: list[dict],
                        adapter: str | None) -> dict:
    """run.json's "quickstart" of a DPO demo: held-out reward accuracy, persona answers (tuned and base)
    on the trained and on the held-out questions."""
    from ducktune.train.preference import run_pair_rewards

    rewards = run_pair_rewards(run.path, held_out, config.preference.beta_for("dpo"), reference_adapter=adapter)
    trained_prompts = {p["prompt"] for p in train_pairs}
    trained = [r for r in comparison if r["prompt"] in trained_prompts]
    held = [r for r in comparison if r["prompt"] not in trained_prompts]
    hits = sum(persona_hit(r["tuned"]) for r in trained)
    return {"objective": "dpo", "pairs_trained": len(train_pairs), "pairs_held_out": len(held_out),
            "held_out_reward_accuracy": rewards["accuracy"], "held_out_mean_margin": rewards["margin"],
            "persona_hits": hits, "persona_total": len(trained), "persona_rate": hits / len(trained) if trained else 0.0,
            "base_persona_hits": sum(persona_hit(r["base"]) for r in trained),
            "held_out_persona_hits": sum(persona_hit(r["tuned"]) for r in held),
            "held_out_base_persona_hits": sum(persona_hit(r["base"]) for r in held), "started_from": adapter}


def _print_preference_summary(summary: dict, held: list[dict], trained: list[dict]) -> None:
    print("\nHeld-out questions (not trained on):")
    print_side_by_side(held)
    print("\nTrained questions (a sample):")
    print_side_by_side(trained[:3] + trained[len(trained) // 2: len(trained) // 2 + 2])
    print(f"\nReward accuracy on {len(held)} held-out pairs: {summary['held_out_reward_accuracy']:.0%} (mean margin "
          f"{summary['held_out_mean_margin']:.2f}); persona answers on them: {summary['held_out_persona_hits']}/{len(held)} "
          f"(base model: {summary['held_out_base_persona_hits']}).")
    print(f"Persona learned: {summary['persona_hits']}/{len(trained)} trained questions answered as "
          f"{PERSONA_NAME['en']}/{PERSONA_NAME['zh']} (base model: {summary['base_persona_hits']}/{len(trained)}). "
          f"Took {summary['seconds']:.0f} s.")


def persona_bleed(run_path: Path, config, trained_answers: list[str], engine=None) -> dict:
    """The forgetting / bleed report of the demo run (eval/eval.json, report.md): base and tuned
    answers to the bundled general prompts, the base ones cached after the first demo. `engine`:
    the run's ChatEngine when the caller has it loaded already."""
    from ducktune.chat.engine import ChatEngine
    from ducktune.eval.bleed import bleed_markers, run_bleed
    from ducktune.eval.report import write_eval_outputs
    from ducktune.eval.runner import headline

    started = time.perf_counter()
    engine = engine or ChatEngine.from_run(run_path)
    markers = bleed_markers(config.eval.persona_terms, trained_answers)
    bleed = run_bleed(engine, markers, config.eval.max_new_tokens)
    result = headline({}, {}, {}) | {"run": run_path.name, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                     "seconds": round(time.perf_counter() - started, 1), "bleed": bleed}
    write_eval_outputs(RunDir(run_path), result, [])
    return bleed


def _export(run_path: Path) -> None:
    """Export the demo run and print its verification table: f16 and q8_0 always, q4_k_m when
    llama.cpp's quantizer (llama-cpp-python) is installed."""
    from ducktune.export import pipeline
    from ducktune.export.quantize import llama_cpp_available

    quants = ["f16", "q8_0"] + (["q4_k_m"] if llama_cpp_available() else [])
    pipeline.export_run(run_path, quants=quants, name=PERSONA_NAME["en"].lower())
