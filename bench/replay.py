"""What the guard against forgetting (`data.replay`) buys and costs on the demo.

    python bench/replay.py [--ratios 0,0.6,0.8,1.0] [--write] [--append]

Runs `ducktune quickstart --no-export --replay R` for each ratio (the built-in SmolLM2, the
bundled persona data, the demo's settings) and reports per ratio: replayed answers, training
steps and tokens, persona learned (of 28) and bleed (of the 52 general prompts of the
forgetting report) and the mean KL(tuned || base). Steps and tokens measure the cost without
timing noise; `--write` saves bench/results/replay.json and the README block between the
REPLAY markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "replay.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- REPLAY:BEGIN (bench/replay.py --write) -->", "<!-- REPLAY:END -->"


def run_ratio(ratio: float, workdir: Path) -> dict:
    out = workdir / f"replay-{ratio}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "ducktune", "quickstart", "--no-export", "--replay", str(ratio),
                           "--out", str(out)], cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"quickstart --replay {ratio} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    q, data, result = info["quickstart"], info["data"], info["result"]
    return {"replay": ratio, "train_samples": data["train_samples"], "steps": result["global_step"],
            "tokens": data["tokens"], "trained_tokens": data["trained_tokens"],
            "persona": [q["persona_hits"], q["persona_total"]], "bleed": [q["bleed"], q["bleed_prompts"]],
            "mean_kl": q["mean_kl"], "seconds": q["seconds"]}


def readme_block(result: dict) -> str:
    rows = result["rows"]
    base = next((r for r in rows if r["replay"] == 0), rows[0])
    lines = [BEGIN, "| `data.replay` | samples | steps | tokens (x without) | persona learned | bleed | mean KL |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bleed = r["bleed"]
        lines.append(f"| {r['replay']} | {r['train_samples']} | {r['steps']} | {r['tokens']} "
                     f"({r['tokens'] / base['tokens']:.2f}x) | {r['persona'][0]}/{r['persona'][1]} | "
                     f"{bleed[0]}/{bleed[1]} ({100 * bleed[0] / bleed[1]:.0f} %) | {r['mean_kl']:.3f} |")
    lines += ["", f"Measured by `bench/replay.py` on {result['date']} ({result['cores']} cores; one run per ratio, "
              "so single prompts can move between runs).", END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default="0,0.6,0.8,1.0")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of bench/results/replay.json for other ratios (measure one ratio again)")
    args = parser.parse_args()
    ratios = [float(r) for r in args.ratios.split(",")]
    with tempfile.TemporaryDirectory(prefix="ducktune-replay-") as tmp:
        rows = []
        for ratio in ratios:
            rows.append(run_ratio(ratio, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.append and RESULT.is_file():
        kept = [r for r in json.loads(RESULT.read_text(encoding="utf-8"))["rows"] if r["replay"] not in ratios]
        rows = sorted(kept + rows, key=lambda r: r["replay"])
    result = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "rows": rows}
    print(readme_block(result))
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        from blocks import replace_block

        text = README.read_text(encoding="utf-8")
        README.write_text(replace_block(text, BEGIN, END, readme_block(result)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
