"""The family matrix on a lent CUDA machine: RESULTS.md's FAMILIES-GPU block, from what bench/gpu_check.sh wrote.

    .venv/bin/python bench/gpu_families.py            # print the block
    .venv/bin/python bench/gpu_families.py --write    # and put it in bench/RESULTS.md

Reads bench/results/gpu/: families_bf16_*.json (every family's stand-in LoRA-trained in the machine's default
dtype, bf16, in four shards), families_fp16.json and families_qlora.json (subsets trained in fp16, and as QLoRA
with bitsandbytes' 4-bit CUDA kernels), and gpu_check_log.txt (the machine and versions). A family the JSONs do
not hold was not reached on that machine (its shard stopped earlier) and is listed as such, never as a pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

RESULTS = HERE / "results" / "gpu"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- FAMILIES-GPU:BEGIN (bench/gpu_families.py --write) -->", "<!-- FAMILIES-GPU:END -->"
TRAIN, MASKS, MERGE, GGUF = "train (loss falls)", "masks", "merge", "GGUF f16 + q8_0"


def load(folder: Path = RESULTS) -> dict:
    """Rows per run kind (bf16 / fp16 / qlora, by family id) and the machine's lines from the log."""
    rows = {kind: {} for kind in ("bf16", "fp16", "qlora")}
    for path in sorted(folder.glob("families_*.json")):
        kind = path.stem.split("_")[1]
        for row in json.loads(path.read_text(encoding="utf-8")):
            rows[kind][row["family"]] = row
    log = (folder / "gpu_check_log.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    machine = next(line for line in log if line.startswith("NVIDIA"))
    versions = next(line for line in log if line.startswith("torch "))
    bnb = next((line for line in log if line.startswith("bitsandbytes ")), "bitsandbytes: not installed")
    return {"rows": rows, "machine": machine, "versions": f"{versions.removesuffix(' cuda True')}, {bnb}"}


def cell(row: dict | None, column: str) -> str:
    if row is None:
        return "not run"
    value = row["cells"].get(column, "n/a").replace("|", "\\|")
    return "PASS" if value.startswith("PASS") and column != TRAIN else value


def batching(row: dict | None) -> str:
    if row is None or "batching" not in row:
        return "-"
    mode, _, reason = row["batching"].partition(": ")
    return mode if mode == "packed" else f"{mode}: {reason}"


def render(measured: dict, order: list[str], titles: dict[str, str], date: str) -> str:
    rows = measured["rows"]
    bf16 = rows["bf16"]
    passed = [f for f in order if f in bf16 and bf16[f]["cells"].get(TRAIN, "").startswith("PASS")
              and all(cell(bf16[f], c) == "PASS" for c in (MASKS, MERGE, GGUF))]
    refused = [f for f in order if f in bf16 and bf16[f]["cells"].get(TRAIN, "").startswith("n/a")]
    failed = [f for f in order if f in bf16 and f not in passed and f not in refused]
    missing = [f for f in order if f not in bf16]
    packed = [f for f in passed if bf16[f].get("batching") == "packed"]
    lines = [BEGIN, "",
             f"Run {date} by `bench/gpu_check.sh` on {measured['machine']} ({measured['versions']}), rendered by "
             "`bench/gpu_families.py` from bench/results/gpu/. Every family's stand-in (bench/families.py: the "
             "family's transformers class, tokenizer and chat template, random weights) LoRA-trained 30 steps on "
             "CUDA in bf16 (ducktune's `auto` dtype there), its loss masks checked, merged and written as f16 + "
             "q8_0 GGUF; a subset also trained in fp16 (GPUs without bf16) and as QLoRA (bitsandbytes' 4-bit CUDA "
             "kernels), QLoRA runs merged and exported too. llama.cpp and Go are not on that machine, so those "
             "columns of the CPU matrix (docs/families.md) were not read here.", "",
             f"- bf16: **{len(passed)} of {len(order)} families passed** train, masks, merge and GGUF "
             f"({len(packed)} on packed rows, proven isolated on CUDA; {len(passed) - len(packed)} padded for the "
             f"reason given); failed: {', '.join(failed) or 'none'}; refused as on the CPU: {', '.join(refused) or 'none'}; "
             f"not reached: {', '.join(missing) or 'none'}.",
             f"- fp16: {sum(cell(r, TRAIN).startswith('PASS') for r in rows['fp16'].values())} of "
             f"{len(rows['fp16'])} trained with falling loss; QLoRA: "
             f"{sum(cell(r, TRAIN).startswith('PASS') and cell(r, GGUF) == 'PASS' for r in rows['qlora'].values())}"
             f" of {len(rows['qlora'])} trained and exported.", "",
             "| family | batching (bf16) | bf16: train | masks | merge | GGUF | fp16: train | QLoRA: train | QLoRA: merge + GGUF |",
             "|---|---|---|---|---|---|---|---|---|"]
    for family_id in order:
        row, fp16, qlora = bf16.get(family_id), rows["fp16"].get(family_id), rows["qlora"].get(family_id)
        lora_export = "-" if qlora is None else ("PASS" if cell(qlora, MERGE) == cell(qlora, GGUF) == "PASS"
                                                 else f"{cell(qlora, MERGE)} / {cell(qlora, GGUF)}")
        lines.append(f"| {family_id} ({titles[family_id]}) | {batching(row)} | {cell(row, TRAIN)} | {cell(row, MASKS)} "
                     f"| {cell(row, MERGE)} | {cell(row, GGUF)} | {'-' if fp16 is None else cell(fp16, TRAIN)} | "
                     f"{'-' if qlora is None else cell(qlora, TRAIN)} | {lora_export} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    from blocks import show_block

    from ducktune.models.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="put the block in bench/RESULTS.md")
    parser.add_argument("--date", default="2026-12-05", help="the day bench/gpu_check.sh ran")
    args = parser.parse_args()
    block = render(load(), [f.id for f in FAMILIES], {f.id: f.title for f in FAMILIES}, args.date)
    show_block(block, args.write, RESULTS_MD, BEGIN, END, missing=block)


if __name__ == "__main__":
    main()
