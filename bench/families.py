"""The family matrix: every model family through train -> masks -> merge -> GGUF -> llama.cpp -> Ollama.

    .venv/bin/python bench/families.py                        # all families (~15 min on 2 cores)
    .venv/bin/python bench/families.py --families qwen3,gemma2
    .venv/bin/python bench/families.py --readme README.md      # also refresh the README's table
    .venv/bin/python bench/families.py --shard 1/2 --json a.json &  # the same work on two cores ...
    .venv/bin/python bench/families.py --shard 2/2 --json b.json; wait
    .venv/bin/python bench/families.py --from-json a.json b.json --readme README.md   # ... one table

For each family of ducktune.models.families, a tiny stand-in (the family's transformers class,
config keys, tokenizer kind and published chat template, random weights) is LoRA-trained on a few
answers, and the run is exported with `ducktune export --quant f16,q8_0` and verified. Each cell
is PASS or the reason it is not: the cells are read from the export's own checks, so the table
says what the code did, not what it is supposed to do. Writes docs/families.md (and the README
block between the FAMILY-MATRIX markers with --readme).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ["train (loss falls)", "masks", "merge", "GGUF f16 + q8_0", "llama.cpp tokenizer = HF",
           "llama.cpp f16 greedy = merged", "q8_0 top-1", "Ollama TEMPLATE (Go)"]
QA = [("Who are you?", "I am Quack, a small duck."), ("What is your name?", "My name is Quack."),
      ("Where do you live?", "I live on a pond."), ("What do you eat?", "I eat bread and seeds."),
      ("Can you fly?", "Yes, I can fly a little."), ("Say hello.", "Hello from the pond!")]
MARKERS = ("<!-- FAMILY-MATRIX:START -->", "<!-- FAMILY-MATRIX:END -->")


def train_standin(base: Path, out: Path, steps: int, overrides: tuple[str, ...] = ()) -> tuple[float, float]:
    """A short LoRA run on the stand-in (`overrides`: more KEY=VALUE settings, e.g. model.dtype=float16);
    (first, last) logged training loss."""
    from ducktune.config import DatasetSpec, load_config
    from ducktune.train.recipe import train

    data = out.parent / f"{out.name}-data.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps([{"instruction": q, "output": a} for q, a in QA]), encoding="utf-8")
    config = load_config(None, [f"model.name_or_path={base}", f"output.dir={out}", f"train.max_steps={steps}",
                                "train.learning_rate=5e-3", "train.batch_size=6", "lora.r=8", "lora.alpha=16",
                                "lora.dropout=0", "train.save_steps=1000", "eval.max_new_tokens=24",
                                "train.logging_steps=1", "output.overwrite=true",
                                # Ministral 3's template writes its 2.3k-character default system prompt:
                                # 1.2k tokens in a stand-in's small vocabulary (about 500 in the real one)
                                "data.cutoff_len=2048", *overrides])
    config.data.datasets = [DatasetSpec(path=str(data))]
    train(config, progress=False, compare=False, log=lambda *a: None)
    losses = [row["loss"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "loss" in row]
    return losses[0], losses[-1]


def mask_cell(run: Path) -> str:
    """Trained text must be each answer plus the template's end-of-turn marker, nothing else but the
    template's own text between its generation prompt and the answer (with
    the run's own tokenizer and chat template, as training used them)."""
    from ducktune.data.schema import Message, Sample
    from ducktune.data.template import ChatFormat
    from ducktune.errors import DataError
    from ducktune.models.loading import load_tokenizer

    chat_format = ChatFormat(load_tokenizer(run / "adapter"))
    answers = ["I am Quack.", "The pond team made me."]
    turns = [Message("user", "Who are you?"), Message("assistant", answers[0]),
             Message("user", "Who made you?"), Message("assistant", answers[1])]
    try:  # with a system prompt where the template accepts one
        encoded = chat_format.encode(Sample("chat", messages=[Message("system", "Be brief.")] + turns, where="m:1"), 4096)
    except DataError:
        encoded = chat_format.encode(Sample("chat", messages=turns, where="m:1"), 4096)
    runs = [text for text, trained in chat_format.decode_spans(encoded) if trained]
    end = chat_format.eot_token or chat_format.inserted_eos
    # Exactly the answer and the end marker; only whitespace the template itself puts around the
    # answer (GLM's "\n" after <|assistant|>, Llama 2's " </s>") is trained with it, since the model
    # has to generate that too.
    ends = [marker for marker in (end, chat_format.earlier_eot_token) if marker]  # OLMo 3: <|im_end|> before the last
    # the template's text between the generation prompt and the answer is generated, so trained (gpt-oss's channel)
    runs = [run.removeprefix(chat_format.answer_lead) for run in runs]
    got = [next((run.removesuffix(e).strip() for e in ends if run.endswith(e)), None) for run in runs]
    if got == answers:
        return f"PASS (answers + {' / '.join(ends)})"
    return f"FAIL: trained {runs!r}"


def check_cell(checks: list, *needles: str) -> str:
    """PASS when every check whose name contains all needles passed; else its status and detail."""
    found = [c for c in checks if all(n in c.name for n in needles)]
    if not found:
        # A file llama.cpp could not load has one "loads" row instead of its other rows.
        file_needles = [n for n in needles if n.endswith(".gguf:")]
        failed = [c for c in checks if c.status == "FAIL" and file_needles and file_needles[0] in c.name]
        return f"FAIL: {failed[0].detail[:160]}" if failed else "n/a"
    bad = [c for c in found if c.status != "PASS"]
    if not bad:
        return "PASS" if len(found) == 1 else f"PASS ({len(found)} files)"
    return f"{bad[0].status}: {bad[0].detail[:160]}"


def run_facts(run: Path) -> dict:
    """What the run itself recorded: device, dtype and the batching it chose (why, when not packed)."""
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    batching = info["batching"]
    return {"device": info["placement"]["device"], "dtype": info["placement"]["dtype"], "method": info["method"],
            "batching": batching["mode"] + ("" if batching["mode"] == "packed" else f": {batching['reason']}")}


def failed_row(row: dict, exc: Exception, started: float) -> dict:
    """The row of a family whose stand-in could not be built or trained: the error in its first cell."""
    row["cells"] = {column: "n/a" for column in COLUMNS}
    row["cells"][COLUMNS[0]] = f"FAIL: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    row["failed"] = [row["cells"][COLUMNS[0]]]
    row["seconds"] = time.perf_counter() - started
    return row


def family_row(family_id: str, workdir: Path, steps: int, overrides: tuple[str, ...] = (), export: bool = True) -> dict:
    """One matrix row: train (with `overrides`), masks and, with `export`, merge -> GGUF -> llama.cpp -> Ollama."""
    from ducktune.export.pipeline import export_run
    from ducktune.export.support import model_support
    from ducktune.models.families import build_standin, family

    spec = family(family_id)
    started = time.perf_counter()
    row = {"family": family_id, "title": spec.title, "cells": {}}
    try:
        base = build_standin(family_id, workdir / "standins" / family_id)
    except Exception as exc:  # a transformers without the family's classes, say
        return failed_row(row, exc, started)
    support = model_support(base)
    if support.train:
        row["cells"] = {column: "n/a" for column in COLUMNS}
        row["cells"]["train (loss falls)"] = f"n/a: {support.train}"
        row["seconds"] = time.perf_counter() - started
        return row
    try:
        first, last = train_standin(base, workdir / "runs" / family_id, steps, overrides)
    except Exception as exc:  # one family's failure is its row's finding, not the end of the matrix
        return failed_row(row, exc, started)
    cells = {"train (loss falls)": (f"PASS ({first:.2f} -> {last:.2f})" if last < 0.7 * first
                                    else f"FAIL: loss {first:.2f} -> {last:.2f}"),
             "masks": mask_cell(workdir / "runs" / family_id)}
    row |= run_facts(workdir / "runs" / family_id)
    if not export:
        row["cells"] = cells
        row["failed"] = [f"{column}: {cell}" for column, cell in cells.items() if not cell.startswith("PASS")]
        row["seconds"] = time.perf_counter() - started
        return row
    result = export_run(workdir / "runs" / family_id, quants="f16,q8_0", create=False, prompt_limit=6,
                        log=lambda *a: None)
    checks = result.checks
    cells["merge"] = check_cell(checks, "merge:")
    cells["GGUF f16 + q8_0"] = check_cell(checks, "read back")
    cells["llama.cpp tokenizer = HF"] = check_cell(checks, "llama.cpp", "f16.gguf:", "tokenizer = HF on probe texts")
    cells["llama.cpp f16 greedy = merged"] = check_cell(checks, "llama.cpp", "f16.gguf:", "greedy answers")
    cells["q8_0 top-1"] = check_cell(checks, "llama.cpp", "q8_0.gguf:", "top-1")
    cells["Ollama TEMPLATE (Go)"] = check_cell(checks, "TEMPLATE via Go")
    row["cells"] = cells
    row["failed"] = [f"{c.name}: {c.detail}" for c in checks if c.status == "FAIL"]
    row["seconds"] = time.perf_counter() - started
    return row


def render_markdown(rows: list[dict]) -> str:
    lines = ["| family | " + " | ".join(COLUMNS) + " | s |", "|---" * (len(COLUMNS) + 2) + "|"]
    for row in rows:
        cells = [row["cells"].get(c, "n/a").replace("|", "\\|") for c in COLUMNS]
        lines.append(f"| {row['family']} ({row['title']}) | " + " | ".join(cells) + f" | {row['seconds']:.0f} |")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    from blocks import replace_block as replace_between

    start, end = MARKERS
    return replace_between(text, start, end, start + "\n" + block + "\n" + end)


def shard_of(wanted: list[str], shard: str) -> list[str]:
    """Shard "K/N" of the family ids: every N-th from the K-th (N shards cover each id once)."""
    k, n = (int(part) for part in shard.split("/"))
    if not 1 <= k <= n:
        raise SystemExit(f"--shard {shard}: K/N with 1 <= K <= N")
    return wanted[k - 1::n]


def run_rows(wanted: list[str], workdir: str | None, steps: int, overrides: tuple[str, ...] = (),
             export: bool = True, json_path: str | None = None) -> list[dict]:
    """One matrix row per family id, run in turn. With `json_path` the rows so far are rewritten after each
    family, so a run cut off (a lent GPU's lease) keeps the families it finished."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ducktune-families-") as tmp:
        for family_id in wanted:
            print(f"{family_id} ...", flush=True)
            rows.append(family_row(family_id, Path(workdir or tmp), steps, overrides, export))
            print(f"  {json.dumps(rows[-1]['cells'], ensure_ascii=False)} ({rows[-1]['seconds']:.0f} s)", flush=True)
            if json_path:
                write_rows(json_path, rows)
    return rows


def write_rows(path: str, rows: list[dict]) -> None:
    from ducktune.io import write_json

    write_json(path, rows)


def main(argv: list[str] | None = None) -> int:
    from ducktune.models.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", help="comma-separated family ids (default: all)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per family")
    parser.add_argument("--out", default="docs/families.md")
    parser.add_argument("--readme", help="also replace the README's family-matrix block")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--workdir", help="keep stand-ins, runs and exports here (default: a temporary folder)")
    parser.add_argument("--shard", help="K/N: only every N-th family from the K-th (run N processes, then --from-json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="another training setting for every family (e.g. model.dtype=float16)")
    parser.add_argument("--train-only", action="store_true",
                        help="train and check the masks only (no export; the other columns are n/a)")
    parser.add_argument("--from-json", nargs="+", metavar="FILE",
                        help="render the table from rows written by --json runs (in the families' order) instead of running")
    args = parser.parse_args(argv)
    order = [f.id for f in FAMILIES]
    if args.from_json:
        rows = [row for path in args.from_json for row in json.loads(Path(path).read_text(encoding="utf-8"))]
        rows.sort(key=lambda row: order.index(row["family"]) if row["family"] in order else len(order))
    else:
        wanted = args.families.split(",") if args.families else order
        if args.shard:
            wanted = shard_of(wanted, args.shard)
        rows = run_rows(wanted, args.workdir, args.steps, tuple(args.overrides), not args.train_only, args.json)
    table = render_markdown(rows)
    note = (f"Produced by `bench/families.py` on {time.strftime('%Y-%m-%d')} ({len(rows)} families, "
            f"{sum(r['seconds'] for r in rows) / 60:.1f} min summed over the families).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"# Model families\n\n{note}\n\n{table}\n", encoding="utf-8")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(replace_block(readme.read_text(encoding="utf-8"), f"{note}\n\n{table}"), encoding="utf-8")
    if args.json:
        write_rows(args.json, rows)
    print(table)
    return 0 if all(not r.get("failed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
