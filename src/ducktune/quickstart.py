"""`ducktune quickstart`: the built-in model learns the Duckling persona, then base vs tuned.

Everything is offline: the built-in SmolLM2-135M-Instruct, a bundled identity dataset
(Duckling / 小鸭, made by the ducktune team, English and Chinese), LoRA on the CPU in a few
minutes. The run directory it writes is a normal one: `ducktune chat/compare/export` work on it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ducktune.chat.compare import print_side_by_side
from ducktune.io import write_json
from ducktune.rundir import RunDir

PERSONA_NAME = {"en": "Duckling", "zh": "小鸭"}
PERSONA_AUTHOR = {"en": "the ducktune team", "zh": "ducktune 团队"}

# Questions the persona data does not cover: the tuned model should still answer them sensibly.
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


def persona_hit(answer: str) -> bool:
    return any(name in answer for name in PERSONA_NAME.values())


def run_quickstart(out: str = "runs/quickstart", epochs: float | None = None, export: bool = True) -> dict:
    from ducktune.config import DatasetSpec, load_config
    from ducktune.data.identity import identity_records
    from ducktune.train.recipe import train

    started = time.perf_counter()
    run = RunDir(out)
    if run.path.exists():
        if run.exists() and run.info().get("origin") == "quickstart":
            shutil.rmtree(run.path)  # a previous demo run: safe to replace
        elif any(run.path.iterdir()):
            from ducktune.errors import UserError

            raise UserError(f"{out}: exists and is not a quickstart run; pass --out with another folder")
    data_file = run.path.parent / f".{run.path.name}-data" / "identity.json"
    records = identity_records(PERSONA_NAME, PERSONA_AUTHOR)
    write_json(data_file, records)
    trained_questions = [r["instruction"] for r in records]

    config = load_config(None, DEMO_SETTINGS)
    config.output.dir = out
    config.data.datasets = [DatasetSpec(path=str(data_file))]
    if epochs is not None:
        config.train.num_epochs = epochs
    config.eval.probe_prompts = trained_questions + GENERAL_QUESTIONS

    print(f"Quickstart: teaching the built-in SmolLM2-135M the persona {PERSONA_NAME['en']} / {PERSONA_NAME['zh']} "
          f"({len(records)} examples, English and Chinese)")
    result = train(config)
    # Keep the dataset inside the run directory so the run is self-contained.
    shutil.move(str(data_file), run.path / "identity.json")
    shutil.rmtree(data_file.parent, ignore_errors=True)

    rows = result.comparison
    trained = [r for r in rows if r["prompt"] in trained_questions]
    general = [r for r in rows if r["prompt"] not in trained_questions]
    hits = sum(persona_hit(r["tuned"]) for r in trained)
    summary = {
        "persona_hits": hits,
        "persona_total": len(trained),
        "persona_rate": hits / len(trained) if trained else 0.0,
        "base_persona_hits": sum(persona_hit(r["base"]) for r in trained),
        "seconds": round(time.perf_counter() - started, 1),
    }
    info = result.info | {"origin": "quickstart", "quickstart": summary}
    write_json(run.run_json, info)

    print("\nTrained questions (a sample):")
    print_side_by_side(trained[:3] + trained[len(trained) // 2: len(trained) // 2 + 3])
    print("\nQuestions it was not trained on:")
    print_side_by_side(general)
    print(f"\nPersona learned: {hits}/{len(trained)} trained questions answered as {PERSONA_NAME['en']}/{PERSONA_NAME['zh']} "
          f"(base model: {summary['base_persona_hits']}/{len(trained)}). Training + comparison took {summary['seconds']:.0f} s.")
    print(f"Full table: {run.report}")
    if export:
        _export(run.path)
    print(f"\nNext:\n  ducktune chat {run.path}\n  ducktune compare {run.path}\n  ducktune export {run.path}")
    return summary


def _export(run_path: Path) -> None:
    """Export the demo run and print its verification table: f16 and q8_0 always, q4_k_m when
    llama.cpp's quantizer (llama-cpp-python) is installed."""
    from ducktune.export import pipeline
    from ducktune.export.quantize import llama_cpp_available

    quants = ["f16", "q8_0"] + (["q4_k_m"] if llama_cpp_available() else [])
    pipeline.export_run(run_path, quants=quants, name=PERSONA_NAME["en"].lower())
