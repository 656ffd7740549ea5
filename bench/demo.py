"""The demo's numbers for the README, measured side by side with an earlier release.

    python bench/demo.py [--baseline REV] [--runs N] [--write]

Runs `ducktune quickstart` (training, base-vs-tuned comparison, bleed report and the export
with its verification; what `make demo` runs after setting up) of this tree and, with
`--baseline`, of the release at git revision REV (checked out into a temporary worktree,
run with this virtual environment), alternating the two N times. Reports each side's wall
time (median and min-max), the demo time ratio, and the persona and bleed lines the demo
prints. `--write` saves bench/results/demo.json and rewrites the README's block between
the DEMO markers from it; nothing in that block is typed by hand.
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

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "demo.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- DEMO:BEGIN (bench/demo.py --write) -->", "<!-- DEMO:END -->"
PERSONA = re.compile(r"^Persona learned: (\d+)/(\d+).*$", re.M)
BLEED = re.compile(r"^Persona bleed: (\d+)/(\d+).*$", re.M)


def run_side(src: Path, workdir: Path) -> dict:
    """One quickstart of the code in `src`, timed end to end; its printed lines kept."""
    env = {**os.environ, "PYTHONPATH": str(src), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ducktune", "quickstart", "--out", str(workdir / "runs" / "quickstart")],
                          cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"quickstart of {src} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    persona, bleed = PERSONA.search(proc.stdout), BLEED.search(proc.stdout)
    return {"seconds": round(seconds, 1), "persona": [int(persona[1]), int(persona[2])] if persona else None,
            "bleed": [int(bleed[1]), int(bleed[2])] if bleed else None,
            "persona_line": persona[0] if persona else None, "bleed_line": bleed[0] if bleed else None,
            "export_passed": "Export verification: all checks passed" in proc.stdout}


def summary(runs: list[dict]) -> dict:
    times = [r["seconds"] for r in runs]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def measure(baseline: str | None, n: int) -> dict:
    sides = {"current": ROOT / "src"}
    with tempfile.TemporaryDirectory(prefix="ducktune-demo-") as tmp:
        if baseline:
            old = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), baseline],
                           check=True, capture_output=True)
            sides["baseline"] = old / "src"
        try:
            results: dict[str, list] = {name: [] for name in sides}
            for i in range(n):
                # Alternate which side goes first, so drift in the machine's load hits both.
                for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                    work = Path(tmp) / f"{name}-{i}"
                    work.mkdir()
                    results[name].append(run_side(sides[name], work))
                    print(f"{name} run {i + 1}: {results[name][-1]['seconds']} s", file=sys.stderr)
        finally:
            if baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(sides["baseline"].parent)],
                               capture_output=True)
    out = {"threads": os.environ.get("OMP_NUM_THREADS") or "default", "cores": os.cpu_count(), "baseline_rev": baseline,
           "date": time.strftime("%Y-%m-%d"), **{name: summary(runs) for name, runs in results.items()}}
    if baseline:
        # Ratio of medians, and the spread of the per-alternation ratios.
        ratios = [c["seconds"] / b["seconds"] for c, b in zip(results["current"], results["baseline"])]
        out["time_ratio"] = round(out["current"]["median_s"] / out["baseline"]["median_s"], 3)
        out["time_ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    return out


def readme_block(result: dict) -> str:
    cur = result["current"]
    last = cur["runs"][-1]
    lines = [BEGIN, "```text", last["persona_line"], last["bleed_line"], "```", ""]
    personas = ", ".join(f"{r['persona'][0]}/{r['persona'][1]}" for r in cur["runs"])
    bleeds = ", ".join(f"{r['bleed'][0]}/{r['bleed'][1]}" for r in cur["runs"])
    text = (f"Measured by `bench/demo.py` on {result['date']} ({result['cores']} cores, "
            f"{len(cur['runs'])} runs): `ducktune quickstart` with its export took {cur['median_s']:.0f} s "
            f"(median; {cur['min_s']:.0f}-{cur['max_s']:.0f} s); persona {personas}, bleed {bleeds}; "
            f"export verification (llama.cpp, transformers' GGUF loader, Go) passed in "
            f"{sum(bool(r['export_passed']) for r in cur['runs'])} of {len(cur['runs'])} runs")
    if result.get("baseline_rev"):
        base = result["baseline"]
        text += (f". The release at `{result['baseline_rev']}`, alternated with it on the same machine: "
                 f"{base['median_s']:.0f} s (median; {base['min_s']:.0f}-{base['max_s']:.0f} s): "
                 f"time ratio {result['time_ratio']:.2f} (per alternation "
                 f"{result['time_ratio_range'][0]:.2f}-{result['time_ratio_range'][1]:.2f})")
    lines += [text + ".", END]
    return "\n".join(lines)


def write_readme(result: dict) -> None:
    from blocks import replace_block

    text = README.read_text(encoding="utf-8")
    README.write_text(replace_block(text, BEGIN, END, readme_block(result)), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision of the release to compare with")
    parser.add_argument("--runs", type=int, default=2, help="alternations (default 2)")
    parser.add_argument("--write", action="store_true", help="write bench/results/demo.json and the README block")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the README block from demo.json")
    args = parser.parse_args()
    if args.from_json:
        write_readme(json.loads(RESULT.read_text(encoding="utf-8")))
        return 0
    result = measure(args.baseline, args.runs)
    print(json.dumps({k: v for k, v in result.items() if k not in ("current", "baseline")} |
                     {"current_median_s": result["current"]["median_s"]}, indent=2))
    if args.write:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_readme(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
