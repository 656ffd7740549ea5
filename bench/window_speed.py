"""Packed vs padded training of a sliding-window model at a real shape: what packing within the window buys.

    python3 bench/window_speed.py --json OUT.json                 # on a lent GPU (bench/gpu_check.sh runs it)
    .venv/bin/python bench/window_speed.py --render               # the WINDOW block of bench/RESULTS.md, from
                                                                  # bench/results/gpu/window_speed.json
    .venv/bin/python bench/window_speed.py --shape standin --samples 8 --cutoff 64 --repeats 1 --json /tmp/w.json

The model: Gemma 3 1B's shape (26 layers, hidden 1152, MLP 6912, 4 query heads and 1 KV head of 256, a
512-token sliding window in five of every six layers, 262,144-row tied embedding) with random weights, on the
gemma3 stand-in's tokenizer and chat template (`--shape standin`: the stand-in itself, window 8, for a smoke
run on a CPU). Two sides, each run in its own process, in ABBA order, at ducktune's defaults otherwise:
- packed: train.packing=on, which packs rows of `cutoff` tokens and applies each layer's window within every
  sample (train/packing.py; a sample longer than the window gets a banded mask). On CUDA, `auto` now picks padded
  batches for such data because of what this script measured there (packing.CUDA_BAND_BLOCKER);
- padded: the same run on length-grouped padded batches (the recipe's `choose_batching` parameter), which is how
  every sliding-window model trained before the packed attention applied windows.
Both train on the same chats (bench/synthetic.py: lengths lognormal around half the cutoff), so on the same
trained tokens; the script refuses to report otherwise. Medians (min-max) of trained tokens/s over the
recipe's train time, and peak memory (max allocated on CUDA, VmHWM on a CPU). The JSON is rewritten after every
run, so a run cut off by a lease keeps what it measured; `--from-log` reads the runs back from the lines this script
printed (bench/gpu_check.sh's log) when even that is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

RESULTS_JSON = HERE / "results" / "gpu" / "window_speed.json"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- WINDOW:BEGIN (bench/window_speed.py --render) -->", "<!-- WINDOW:END -->"
SIDES = ("packed", "padded")
# Gemma 3 1B (google/gemma-3-1b-it config.json): what differs from the gemma3 stand-in's config
GEMMA3_1B = {"hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4,
             "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512,
             "vocab_size": 262_144,
             "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)]}


def build_model(folder: Path, shape: str) -> Path:
    """The gemma3 stand-in (tokenizer, chat template), at Gemma 3 1B's shape unless `shape` is 'standin'."""
    from ducktune.models.families import build_standin

    build_standin("gemma3", folder)
    if shape == "standin":
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    for key, value in GEMMA3_1B.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def padded_batching(model, packing: str, device: str, log=print):
    """choose_batching's padded outcome, chosen up front: the model keeps its own attention."""
    from ducktune.train.packing import Batching, unwrap_peft

    return Batching("padded", "bench/window_speed.py: the padded side", unwrap_peft(model).config._attn_implementation)


def run_side(side: str, model: str, data: str, cutoff: int, workdir: Path) -> dict:
    """One training run at ducktune's defaults (one epoch), packed or padded; what it measured."""
    from sides import peak_memory

    from ducktune.config import RunConfig
    from ducktune.train.recipe import train

    config = RunConfig.model_validate({
        "model": {"name_or_path": model},
        "data": {"datasets": [data], "cutoff_len": cutoff, "val_ratio": 0.0},
        "train": {"num_epochs": 1, "logging_steps": 1, "save_steps": 100_000, "seed": 42,
                  "packing": "on" if side == "packed" else "auto"},
        "output": {"dir": str(workdir / side), "overwrite": True}})
    result = train(config, log=lambda *_: None, progress=False, compare=False,
                   choose_batching=None if side == "packed" else padded_batching)
    info = result.info
    plan = info["memory_plan"]
    trained, seconds = info["result"]["trained_tokens"], info["result"]["train_seconds"]
    return {"side": side, "batching": info["batching"]["mode"], "device": info["placement"]["device"],
            "dtype": info["placement"]["dtype"], "trained_tokens": trained, "train_seconds": seconds,
            "tokens_per_s": trained / seconds, "steps": info["result"]["global_step"],
            "peak_bytes": peak_memory(info["placement"]["device"]), "plan_bytes": plan["peak_bytes"],
            "batch_size": plan["batch_size"], "checkpointing": bool(plan["gradient_checkpointing"])}


def side_in_process(side: str, model: Path, data: Path, cutoff: int, workdir: Path) -> dict:
    result = workdir / f"result-{side}.json"
    result.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, __file__, "--side", side, "--model", str(model), "--data", str(data),
                           "--cutoff", str(cutoff), "--workdir", str(workdir), "--json", str(result)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text(encoding="utf-8"))


def measure(shape: str, samples: int, cutoff: int, repeats: int, root: Path, log, save=lambda measured: None) -> dict:
    """Every run of both sides; `save(measured so far)` after each."""
    from run import write_chats

    model = build_model(root / f"gemma3-{shape}", shape)
    data = root / "chats.jsonl"
    write_chats(model, data, samples, seed=0, cutoff=cutoff)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    measured = {"shape": shape, "samples": samples, "cutoff": cutoff, "repeats": repeats, "runs": runs}
    for repeat in range(repeats):
        for side in (SIDES if repeat % 2 == 0 else SIDES[::-1]):  # ABBA: neither side always runs first
            started = time.perf_counter()
            run = side_in_process(side, model, data, cutoff, root)
            if run["batching"] != side:
                raise SystemExit(f"the {side} side trained on {run['batching']} batches")
            runs[side].append(run)
            save(measured)
            log(f"  {side} #{repeat + 1}: {run['tokens_per_s']:.1f} trained tok/s, "
                f"peak {run['peak_bytes'] / 2**30:.2f} GiB, {run['steps']} steps, batch {run['batch_size']} "
                f"({time.perf_counter() - started:.0f} s)")
    tokens = {run["trained_tokens"] for side in SIDES for run in runs[side]}
    if len(tokens) != 1:
        raise SystemExit(f"the sides trained different token counts {sorted(tokens)}: the work differs")
    return measured


def summarize(measured: dict) -> dict:
    """Medians (min-max) of trained tok/s and peak GiB per side; packed over padded."""
    row = {}
    for side in SIDES:
        tps = [run["tokens_per_s"] for run in measured["runs"][side]]
        peaks = [run["peak_bytes"] / 2**30 for run in measured["runs"][side]]
        row[side] = {"tps": statistics.median(tps), "tps_min": min(tps), "tps_max": max(tps),
                     "peak": statistics.median(peaks), "steps": measured["runs"][side][0]["steps"],
                     "batch_size": measured["runs"][side][0]["batch_size"]}
    row["speedup"] = row["packed"]["tps"] / row["padded"]["tps"]
    row["memory_ratio"] = row["packed"]["peak"] / row["padded"]["peak"]
    return row


def render(measured: dict) -> str:
    row, env = summarize(measured), measured["environment"]
    done = min(len(measured["runs"][side]) for side in SIDES)
    shape = ("Gemma 3 1B's shape (random weights)" if measured["shape"] == "gemma3-1b"
             else "The gemma3 stand-in (window 8)")
    cut = (f"; {done} of {measured['repeats']} alternations ran within its time limit in bench/gpu_check.sh (runs "
           f"read back from {measured['from_log']})" if measured.get("from_log") else f"; {done} alternations (ABBA)")
    lines = [BEGIN, "",
             f"Measured {measured['date']} by `bench/window_speed.py` on {env['device']} ({measured['dtype']}; "
             f"{env['versions']}; source: bench/results/gpu/window_speed.json). {shape}, "
             f"{measured['samples']} synthetic chats at cutoff {measured['cutoff']}, the same trained tokens on both "
             f"sides, one epoch at ducktune's defaults, each run its own process{cut}; medians (min-max).", "",
             "| side | trained tok/s | peak memory | steps | batch |", "|---|---:|---:|---:|---:|"]
    for side in SIDES:
        s = row[side]
        lines.append(f"| {side} | {s['tps']:.0f} ({s['tps_min']:.0f}-{s['tps_max']:.0f}) | {s['peak']:.2f} GiB | "
                     f"{s['steps']} | {s['batch_size']} |")
    lines += ["", f"Packed over padded: **{row['speedup']:.2f}x** trained tokens/s at {row['memory_ratio']:.2f}x "
              "the peak memory.", "", "```text", f"window_packing_speedup: {row['speedup']:.3f}", "```", "", END]
    return "\n".join(lines)


RUN_LINE = re.compile(r"^  (?P<side>packed|padded) #\d+: (?P<tps>[\d.]+) trained tok/s, peak (?P<peak>[\d.]+) GiB, "
                      r"(?P<steps>\d+) steps, batch (?P<batch>\d+) \(\d+ s\)$")


def from_log(path: Path, date: str, samples: int, cutoff: int, repeats: int) -> dict:
    """A measurement read back from the lines `measure` printed (and bench/gpu_check.sh's header): for a run the
    lease ended before its JSON was written."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for line in text:
        if match := RUN_LINE.match(line):
            runs[match["side"]].append({"tokens_per_s": float(match["tps"]), "steps": int(match["steps"]),
                                        "batch_size": int(match["batch"]),
                                        "peak_bytes": float(match["peak"]) * 2**30})
    if not all(runs.values()):
        raise SystemExit(f"{path}: no run of both sides in it")
    gpu = next(line.split(",")[0] for line in text if line.startswith("NVIDIA"))
    versions = next(re.match(r"torch (\S+) transformers (\S+)", line) for line in text if line.startswith("torch "))
    return {"shape": "gemma3-1b", "samples": samples, "cutoff": cutoff, "repeats": repeats, "runs": runs,
            "date": date, "dtype": "bfloat16", "from_log": str(path.relative_to(HERE.parent)),
            "environment": {"device": gpu, "versions": f"torch {versions[1]}, transformers {versions[2]}"}}


def environment() -> dict:
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"a CPU ({os.cpu_count()} cores)"
    return {"device": device, "versions": f"torch {torch.__version__}, transformers {transformers.__version__}"}


def main() -> None:
    import datetime

    from blocks import show_block

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["gemma3-1b", "standin"], default="gemma3-1b")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--cutoff", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2, help="alternations (each runs both sides)")
    parser.add_argument("--json", type=Path, default=RESULTS_JSON, help="where the measurement goes")
    parser.add_argument("--render", action="store_true", help="measure nothing: render the block of bench/RESULTS.md "
                                                              "from the JSON")
    parser.add_argument("--from-log", type=Path, metavar="LOG",
                        help="measure nothing: read the runs from LOG into the JSON (with --date), then --render")
    parser.add_argument("--date", help="the day the --from-log runs were measured")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one run, in its own process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from ducktune.io import write_json

    if args.side:
        write_json(args.json, run_side(args.side, args.model, args.data, args.cutoff, args.workdir))
        return
    if args.repeats < 1 or args.samples < 2:
        parser.error("--repeats: at least 1; --samples: at least 2")
    if args.from_log:
        if not args.date:
            parser.error("--from-log needs --date")
        write_json(args.json, from_log(args.from_log.resolve(), args.date, args.samples, args.cutoff, args.repeats))
        args.render = True
    if args.render:
        measured = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        stamp = {"date": datetime.date.today().isoformat(), "environment": environment(),
                 "dtype": "bfloat16" if "CPU" not in environment()["device"] else "float32"}
        with tempfile.TemporaryDirectory() as tmp:
            measured = measure(args.shape, args.samples, args.cutoff, args.repeats, Path(tmp), print,
                               save=lambda so_far: write_json(args.json, so_far | stamp))
        measured |= stamp
        write_json(args.json, measured)
    show_block(render(measured), args.render, RESULTS_MD, BEGIN, END, missing=render(measured))


if __name__ == "__main__":
    main()
