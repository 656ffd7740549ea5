"""bench/run.py end to end in its smallest configuration, so the benchmark script cannot rot,
and the SFT report rendered from a measurement (medians, min-max, ratios, generated blocks).

The slow test runs `bench/run.py --quick` (two tiny models, Qwen2- and Llama-shaped, 12 short
chats each; TRL's SFTTrainer at its defaults and tuned, ducktune's recipe, then TRL's DPOTrainer
against ducktune's DPO, each run in its own subprocess), checks the printed lines against the JSON
it wrote, then re-renders README/RESULTS blocks from that JSON with `--from-json`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["throughput_ratio", "throughput_ratio_tuned", "memory_ratio", "useful_flops_fraction"]


def parse(line: str) -> tuple[str, float]:
    name, value = line.split(": ")
    return name, float(value)


def expected_lines(measured: dict) -> dict[str, float]:
    """The machine-readable lines, recomputed here from the raw runs in the JSON."""
    peak = max(measured["matmul_peak"])
    out = {}
    for index, r in enumerate(measured["results"]):
        prefix = "" if index == 0 else r["key"].replace("-", "_") + "_"
        tps = {side: statistics.median(x["tokens_per_s"] for x in runs) for side, runs in r["runs"].items()}
        mem = {side: statistics.median(x["peak_bytes"] for x in runs) for side, runs in r["runs"].items()}
        out[prefix + "throughput_ratio"] = tps["ducktune"] / tps["baseline"]
        out[prefix + "throughput_ratio_tuned"] = tps["ducktune"] / tps["tuned"]
        out[prefix + "memory_ratio"] = mem["ducktune"] / mem["baseline"]
        out[prefix + "useful_flops_fraction"] = r["flops"] * tps["ducktune"] / r["trained_tokens"] / peak
    return out


@pytest.mark.slow
def test_bench_quick_three_sides_json_and_rendering(tmp_path):
    pytest.importorskip("trl")
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    committed = [(ROOT / name).read_bytes() for name in ("README.md", "bench/RESULTS.md", "bench/results/bench.json")]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # --json alone writes that file and renders nothing: the committed results stay as they were.
    assert [(ROOT / name).read_bytes() for name in ("README.md", "bench/RESULTS.md", "bench/results/bench.json")] \
        == committed
    lines = proc.stdout.strip().splitlines()
    measured = json.loads(out.read_text())
    # The last lines: DPO's two, then the main model's four, then the second model's four, prefixed.
    printed = dict(parse(line) for line in lines[-10:])
    assert list(printed) == ["dpo_throughput_ratio", "dpo_memory_ratio", *NAMES, *(f"tiny_llama_{n}" for n in NAMES)]
    for name, value in expected_lines(measured).items():
        assert abs(printed[name] - value) < 1e-3 * max(1.0, value), name
    assert min(printed.values()) > 0
    for r in measured["results"]:
        runs = r["runs"]
        assert set(runs) == {"baseline", "tuned", "ducktune"}
        # Every run trained the data's tokens and did at least --quick's 3 steps.
        assert {x["counted_trained_tokens"] for rs in runs.values() for x in rs} == {r["trained_tokens"]}
        assert min(x["steps"] for rs in runs.values() for x in rs) >= 3
        assert runs["baseline"][0]["gradient_checkpointing"] and not runs["tuned"][0]["gradient_checkpointing"]
        check = runs["tuned"][0]["packing_check"]
        assert runs["tuned"][0]["packing"] == check["isolated"]
        assert check["control_diff"] > check["max_abs_diff"]  # the leaking control is visible to the check
        for side in ("TRL SFTTrainer, defaults", "TRL SFTTrainer, tuned", "ducktune"):
            assert sum(line.startswith(f"| {r['label']} | {side} |") for line in lines) == 1
    # --from-json re-renders the generated blocks from the JSON alone and prints the same lines.
    md, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    sys.path.insert(0, str(ROOT / "bench"))
    import sft_report

    md.write_text(f"# r\n\n{sft_report.SFT_BEGIN}\nold\n{sft_report.SFT_END}\n\ntail\n", encoding="utf-8")
    readme.write_text(f"# p\n\n{sft_report.README_BEGIN}\nold\n{sft_report.README_END}\n", encoding="utf-8")
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--from-json", str(out),
                            "--results-md", str(md), "--readme", str(readme)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-10:] == lines[-10:]
    text = md.read_text(encoding="utf-8")
    assert "old" not in text and text.rstrip().endswith("tail")
    assert all(line in text for line in lines[-8:])
    assert "| tiny-llama | TRL SFTTrainer, tuned |" in text and "| tiny | **ducktune / TRL tuned** |" in text
    table = [line for line in readme.read_text(encoding="utf-8").splitlines() if line.startswith("| tiny")]
    assert [line.split(" | ")[0] for line in table] == ["| tiny", "| tiny-llama"]
    # The table rounds the full-precision ratio (the printed line is already rounded to 3 places, and
    # rounding 0.955 again to 2 places can part from the table's 0.9553 -> 0.96).
    assert f"**{expected_lines(measured)['throughput_ratio_tuned']:.2f}x**" in table[0]


def fake_run(tps: float, peak: int, steps: int = 25, tokens: int = 1000) -> dict:
    return {"tokens_per_s": tps, "peak_bytes": peak, "steps": steps, "counted_trained_tokens": tokens,
            "dataset_trained_tokens": tokens, "dataset_tokens": 1600, "lengths": [100] * 16, "losses": [2.0, 1.5],
            "heldout_loss": 1.7, "gradient_checkpointing": False, "packing": False, "packing_check": None,
            "plan_bytes": 2 * 2**30, "batching": "packed",
            "plan": {"batch_size": 1, "grad_accum": 1, "gradient_checkpointing": False, "loss_chunk_size": 4096}}


def fake_summary(monkeypatch, runs: dict, min_steps: int = 20) -> dict:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import run

    monkeypatch.setattr(run, "model_flops", lambda *a: 5e12)
    case = run.ModelCase("smollm2-135m", "smollm2-135m", 16, 3, 128, min_steps)
    train = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "batch_size": 1, "grad_accum": 1,
             "learning_rate": 2e-4, "warmup_ratio": 0.03, "seed": 42}
    spec = {"cutoff": 128, "threads": 2, "device": "cpu", "dtype": "float32", "train": train}
    return run.summarize(case, runs, {}, spec)


def test_sides_rotate_and_the_report_uses_medians(monkeypatch, tmp_path):
    """Each side runs first, second and third once in 3 alternations; the ratios, the min-max and the
    rendered blocks come from the medians (not the means, not the last run)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import run
    import sft_report

    orders = [run.side_order(i) for i in range(3)]
    assert all(sorted(o) == sorted(run.SIDES) for o in orders)
    assert [sorted(o[i] for o in orders) for i in range(3)] == [sorted(run.SIDES)] * 3
    g = 2**30
    runs = {"baseline": [fake_run(10, 4 * g), fake_run(11, 5 * g), fake_run(30, 4 * g)],
            "tuned": [fake_run(20, 3 * g), fake_run(12, 3 * g), fake_run(14, 6 * g)],
            "ducktune": [fake_run(50, 2 * g), fake_run(44, 2 * g), fake_run(40, 1 * g)]}
    r = fake_summary(monkeypatch, runs)
    base = r["sides"]["baseline"]
    assert (base["tps"], base["tps_min"], base["tps_max"]) == (11, 10, 30)
    measured = {"date": "2026-12-03", "seconds": 2400, "machine": ["CPU: test"], "matmul_peak": [1e11, 2e11],
                "results": [r, {**r, "key": "smollm2-135m", "label": "second"}], "dpo": None}
    measured["results"][0] = {**r, "key": "qwen2-scaled", "label": "first"}
    lines = sft_report.ratio_lines(measured["results"], sft_report.peak_flops(measured))
    # 44/11, 44/14, 2/4 GiB, 5e12 FLOPs x 44 tok/s / 1000 tokens / the higher matmul peak 2e11.
    assert lines[:4] == ["throughput_ratio: 4.000", "throughput_ratio_tuned: 3.143", "memory_ratio: 0.500",
                         "useful_flops_fraction: 1.100"]
    assert lines[4:] == ["smollm2_" + line for line in lines[:4]]
    table = sft_report.table(measured["results"], 2e11)
    assert "| first | TRL SFTTrainer, defaults | 11.0 (10.0-30.0) | 4.00 (4.00-5.00) GiB | 25 |" in "\n".join(table)
    assert sum(line.startswith("| second |") for line in table) == 5  # three sides, two ratio rows
    md, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    md.write_text(f"{sft_report.SFT_BEGIN}\nold\n{sft_report.SFT_END}\n", encoding="utf-8")
    readme.write_text(f"x\n{sft_report.README_BEGIN}\nold\n{sft_report.README_END}\ny\n", encoding="utf-8")
    sft_report.render(measured, md, readme)
    assert "useful_flops_fraction: 1.100" in md.read_text() and "old" not in md.read_text()
    assert "| first | 11.0 | 14.0 | 44.0 | **4.00x** | **3.14x** | 0.50x | 110 % |" in readme.read_text()
    assert "2 threads, cpu float32" in readme.read_text()
    assert readme.read_text().startswith("x\n") and readme.read_text().endswith("y\n")


def test_summary_refuses_too_few_steps_or_different_work(monkeypatch):
    g = 2**30
    runs = {side: [fake_run(10, g)] for side in ("baseline", "tuned", "ducktune")}
    runs["ducktune"] = [fake_run(10, g, steps=19)]
    with pytest.raises(SystemExit, match="fewer than 20"):
        fake_summary(monkeypatch, runs)
    runs["ducktune"] = [{**fake_run(10, g), "counted_trained_tokens": 999}]
    with pytest.raises(SystemExit, match="the work differs"):
        fake_summary(monkeypatch, runs)


def test_dpo_results_block_is_generated_from_the_measurement(tmp_path, monkeypatch):
    """bench/RESULTS.md's DPO block is rewritten from the JSON, between its markers, numbers included."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import dpo_bench

    side = lambda tps, peak: {"tokens_per_s": tps, "peak_bytes": peak, "losses": [0.69, 0.5],  # noqa: E731
                              "heldout_reward_accuracy": 0.75}
    dpo = {"label": "m", "pairs": 8, "trained_tokens": 1000, "tokens": 1500, "baseline_tps": 10.0,
           "ducktune_tps": 25.0, "baseline_peak": 4 * 2**30, "ducktune_peak": 2 * 2**30, "plan": 2.2 * 2**30,
           "baseline_steps": 4, "ducktune_steps": 4, "baseline_checkpointing": True, "ducktune_checkpointing": False,
           "loss_max_difference": 2e-6, "runs": {"baseline": [side(10.0, 4 * 2**30)], "ducktune": [side(25.0, 2 * 2**30)]},
           "settings": {"cutoff": 512, "threads": 2, "train": {"lora_r": 16, "lora_alpha": 32, "batch_size": 2,
                                                               "grad_accum": 1, "learning_rate": 5e-5,
                                                               "warmup_ratio": 0.03, "beta": 0.1, "seed": 42}}}
    measured = {"date": "2026-12-03", "seconds": 300, "machine": ["CPU: test"], "matmul_peak": 1e11, "dpo": dpo}
    target = tmp_path / "RESULTS.md"
    target.write_text(f"# head\n\n{dpo_bench.BEGIN}\nold numbers\n{dpo_bench.END}\n\ntail\n", encoding="utf-8")
    monkeypatch.setattr(dpo_bench, "RESULT_JSON", tmp_path / "dpo.json")
    monkeypatch.setattr(dpo_bench, "RESULTS_MD", target)
    dpo_bench.write_results(measured)
    text = target.read_text(encoding="utf-8")
    assert "old numbers" not in text and text.startswith("# head") and text.rstrip().endswith("tail")
    assert "dpo_throughput_ratio: 2.500" in text and "dpo_memory_ratio: 0.500" in text
    assert "| m | **ratio** | **2.50x** | **0.50x** |" in text
    assert json.loads((tmp_path / "dpo.json").read_text())["dpo"]["pairs"] == 8


def test_cpu_bf16_block_is_rendered_from_its_committed_measurement():
    """bench/RESULTS.md's CPU-BF16 numbers are bench/cpu_bf16.py's rendering of its JSON, not typed."""
    sys.path.insert(0, str(ROOT / "bench"))
    import cpu_bf16

    measured = json.loads(cpu_bf16.RESULTS_JSON.read_text(encoding="utf-8"))
    block = cpu_bf16.render(measured)
    assert block in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    ratios = measured["speed"]["ratios"]
    assert len(ratios) >= 3 and f"median {statistics.median(ratios):.2f}x" in block
    assert all(r == round(b / f, 3) for r, f, b in zip(ratios, measured["speed"]["float32"], measured["speed"]["bfloat16"]))


def test_compile_block_is_rendered_from_its_committed_measurement():
    """bench/RESULTS.md's torch.compile numbers are bench/compile_probe.py's rendering of its JSON."""
    sys.path.insert(0, str(ROOT / "bench"))
    import compile_probe

    measured = json.loads(compile_probe.RESULTS_JSON.read_text(encoding="utf-8"))
    assert compile_probe.render(measured) in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    again = compile_probe.summarize(measured["runs"])
    assert again == measured["summary"] and len(again["speedups"]) >= 3
    # The summary is medians after the warm-up, pair by pair: a run 2x slower halves its pair's ratio.
    runs = {"eager": [[9.0, 1.0, 1.0, 2.0, 2.0, 2.0]], "compiled": [[30.0, 1.0, 1.0, 1.0, 1.0, 1.0]]}
    summary = compile_probe.summarize(runs)
    assert summary["speedups"] == [2.0] and summary["break_even_steps"] == 29


def test_memory_floor_block_is_rendered_from_its_measurement_and_the_bench_peaks():
    """bench/RESULTS.md's memory floor is bench/memory_floor.py's rendering of its JSON against the
    committed SFT measurement (a new bench.json without `memory_floor.py --render` fails here), and its
    ratios are the floor's and ducktune's peaks over TRL's."""
    sys.path.insert(0, str(ROOT / "bench"))
    import memory_floor

    measured = json.loads(memory_floor.RESULTS_JSON.read_text(encoding="utf-8"))
    bench = json.loads(memory_floor.BENCH_JSON.read_text(encoding="utf-8"))
    rendered = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    assert memory_floor.render(measured, bench) in rendered, "after a new bench.json: bench/memory_floor.py --render"
    rows = {row["model"]: row for row in memory_floor.summarize(measured, bench)}
    assert set(rows) == {"qwen2-scaled", "smollm2-135m"}
    for result in bench["results"]:
        row, floor = rows[result["label"]], measured["models"][result["key"]]
        assert len(floor["weights"]) >= 3 and row["floor"] == statistics.median(floor["weights"])
        assert row["imports"] < row["floor"] <= result["sides"]["ducktune"]["peak"]  # a floor: nothing peaks below it
        assert row["floor_ratio"] == row["floor"] / result["sides"]["baseline"]["peak"]
    # Three processes, one an outlier: the median, not the mean or the last, is the floor.
    fake = {"models": {"qwen2-scaled": {"imports": [1, 2, 3], "weights": [10, 40, 20], "parameters": 1}}}
    peaks = {"results": [{"key": "qwen2-scaled", "label": "q", "sides": {"baseline": {"peak": 80},
                                                                          "ducktune": {"peak": 40}}}]}
    assert memory_floor.summarize(fake, peaks) == [{"model": "q", "imports": 2, "floor": 20, "trl_defaults": 80,
                                                    "ducktune": 40, "floor_ratio": 0.25, "ducktune_ratio": 0.5}]


def test_demo_block_says_in_how_many_runs_the_export_verified():
    sys.path.insert(0, str(ROOT / "bench"))
    import demo

    run = lambda passed: {"seconds": 200.0, "persona": [26, 28], "bleed": [4, 52], "persona_line": "Persona learned: 26/28",  # noqa: E731
                          "bleed_line": "Persona bleed: 4/52", "export_passed": passed}
    result = {"date": "2026-12-03", "cores": 2, "current": {"median_s": 200.0, "min_s": 200.0, "max_s": 200.0,
                                                           "runs": [run(True), run(False)]}}
    block = demo.readme_block(result)
    assert "export verification (llama.cpp, transformers' GGUF loader, Go) passed in 1 of 2 runs" in block
    assert block.startswith(demo.BEGIN) and block.endswith(demo.END)


def test_a_cuda_measurement_renders_only_the_gpu_block_and_parts_merge(monkeypatch, tmp_path):
    """A measurement on CUDA goes to RESULTS.md's GPU block (TRL in bf16 there), leaving the CPU SFT
    block and the README's table alone; per-model JSONs merge into one measurement in order."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import run
    import sft_report

    g = 2**30
    runs = {"baseline": [fake_run(10, 4 * g)] * 3, "tuned": [fake_run(20, 3 * g)] * 3,
            "ducktune": [fake_run(30, 2 * g)] * 3}
    r = fake_summary(monkeypatch, runs)
    r["settings"] = {**r["settings"], "device": "cuda", "dtype": "bfloat16"}
    part = lambda res, peak, load: {"date": "2026-12-04", "seconds": 100, "command": f"--models {res['label']}",  # noqa: E731
                                    "machine": ["GPU: test"], "load_average": load, "matmul_peak": peak,
                                    "results": [res], "dpo": None}
    measured = run.merged([part({**r, "label": "a"}, [5e14, 6e14], [1.0, 2.0]),
                           part({**r, "label": "b", "key": "smollm2-shape"}, [7e14, 4e14], [3.0, 4.0])])
    assert [x["label"] for x in measured["results"]] == ["a", "b"]
    assert measured["matmul_peak"] == [5e14, 6e14, 7e14, 4e14] and sft_report.peak_flops(measured) == 7e14
    assert measured["load_average"] == [1.0, 4.0] and measured["seconds"] == 200
    md, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    cpu_block = f"{sft_report.SFT_BEGIN}\ncpu numbers\n{sft_report.SFT_END}"
    md.write_text(f"{cpu_block}\n## GPU\n{sft_report.GPU_BEGIN}\nold\n{sft_report.GPU_END}\n", encoding="utf-8")
    readme.write_text(f"{sft_report.README_BEGIN}\ncpu table\n{sft_report.README_END}\n", encoding="utf-8")
    sft_report.render(measured, md, readme)
    text = md.read_text(encoding="utf-8")
    assert cpu_block in text and "\nold\n" not in text
    assert readme.read_text(encoding="utf-8") == f"{sft_report.README_BEGIN}\ncpu table\n{sft_report.README_END}\n"
    gpu = text[text.index(sft_report.GPU_BEGIN):]
    assert "`bf16=True`" in gpu and "use_cpu" not in gpu and "| b | **ducktune / TRL tuned** | **1.50x** |" in gpu
    assert "smollm2_shape_throughput_ratio: 3.000" in gpu


GPU_LOG = """CPU: test, 16 logical cores; torch threads: 16
GPU: NVIDIA H200
matmul peak (bfloat16, 16 threads): 780000.0 GFLOP/s
m: 40 chats, cutoff 2048, batch 1 x accum 1, 3 alternation(s) of baseline, tuned, ducktune

  m baseline #1: 100.0 trained tok/s, peak 1.00 GiB, 40 steps, held-out loss 2.0000 (30 s)
  m tuned #1: 200.0 trained tok/s, peak 2.00 GiB, 40 steps, held-out loss 2.0000 (25 s)
  m ducktune #1: 400.0 trained tok/s, peak 0.50 GiB, 22 steps, held-out loss 2.1000 (20 s)
  m tuned #2: 300.0 trained tok/s, peak 2.00 GiB, 40 steps, held-out loss 2.0000 (26 s)
  m ducktune #2: 500.0 trained tok/s, peak 0.50 GiB, 22 steps, held-out loss 2.1000 (21 s)
  m baseline #2: 300.0 trained tok/s, peak 1.00 GiB, 40 steps, held-out loss 2.0000 (31 s)
"""


def test_gpu_block_from_a_cut_off_log_counts_only_finished_runs(monkeypatch, tmp_path):
    """bench/gpu_log.py renders the side runs a lease-cut log holds: medians over those, how many of
    the planned runs each side is, ratios of the medians, and says the run was cut off; a log with
    every run says so instead. The committed GPU block is this script's rendering of the committed logs."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_log
    import sft_report

    log = gpu_log.parse_log(GPU_LOG)
    assert [r["side"] for r in log["runs"]] == ["baseline", "tuned", "ducktune", "tuned", "ducktune", "baseline"]
    block = gpu_log.gpu_block({"log_m.txt": log})
    assert "| m | TRL SFTTrainer, defaults | 2 of 3 | 200.0 (100.0-300.0) | 1.00 (1.00-1.00) GiB | 40 |" in block
    assert "| m | **ducktune / TRL defaults** | | **2.25x** | **0.50x** |" in block  # 450 / 200
    assert "| m | **ducktune / TRL tuned** | | **1.80x** | **0.25x** |" in block  # 450 / 250
    assert "Cut off by the lease" in block and "m 6 of 9 side runs" in block
    extra = "".join(f"  m {side} #3: 100.0 trained tok/s, peak 1.00 GiB, 40 steps, held-out loss 2.0000 (30 s)\n"
                    for side in ("baseline", "tuned", "ducktune"))
    whole = gpu_log.gpu_block({"log_m.txt": gpu_log.parse_log(GPU_LOG + extra)})
    assert "Cut off" not in whole and "Every alternation finished." in whole and "| 3 of 3 |" in whole
    with pytest.raises(SystemExit, match="no bench/run.py case line"):
        gpu_log.parse_log("CPU: x\n")


def test_committed_gpu_block_is_the_rendering_of_the_committed_gpu_json_and_its_logs_agree(monkeypatch):
    """RESULTS.md's GPU block is bench/run.py's rendering of bench/results/bench_gpu.json (merged
    from the per-model JSONs beside the logs), and each committed log's side runs are that JSON's runs."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_log
    import run
    import sft_report

    measured = json.loads((ROOT / "bench" / "results" / "bench_gpu.json").read_text(encoding="utf-8"))
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(gpu_log.LOGS.glob("bench_gpu_*.json"))]
    assert len(parts) == 2 and sorted(json.dumps(r, sort_keys=True) for r in run.merged(parts)["results"]) == \
        sorted(json.dumps(r, sort_keys=True) for r in measured["results"])
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    assert results.count(sft_report.GPU_BEGIN) == 1 and sft_report.results_block(measured) in results
    for r in measured["results"]:
        log = gpu_log.parse_log((gpu_log.LOGS / f"log_{r['label']}.txt").read_text(encoding="utf-8"))
        assert len(log["runs"]) == 3 * r["repeats"]  # every alternation finished
        for side in sft_report.SIDES:
            logged = sorted(x["tps"] for x in log["runs"] if x["side"] == side)
            assert logged == sorted(round(x["tokens_per_s"], 1) for x in r["runs"][side])


@pytest.mark.slow
def test_profile_step_runs_ducktunes_training_path_and_reports_useful_flops(tmp_path):
    """bench/profile_step.py (RESULTS.md's profile) on the tiny model, printing only: it once broke
    unnoticed when bench/run.py's helpers changed, as no test ran it."""
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_step.py"), "--models", "tiny", "--steps", "2",
                           "--batch-size", "1", "--cutoff", "128", "--samples", "12", "--no-write"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("tiny: 2 steps,") for line in lines), proc.stdout
    useful = next(line for line in lines if line.startswith("tiny: useful "))
    assert float(useful.split()[2]) > 0  # GFLOP/s of the recorded steps' work
    ops = [line.split()[0] for line in lines if line.startswith("   ")]
    assert "aten::mm" in ops and len(ops) == 15


def test_loss_blocks_block_is_rendered_from_its_committed_measurement():
    """bench/RESULTS.md's loss-walker numbers are bench/loss_blocks.py's rendering of its JSON, and
    the script times both walkers on the same work (their gradients agree)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import loss_blocks

    measured = json.loads(loss_blocks.RESULTS_JSON.read_text(encoding="utf-8"))
    assert loss_blocks.render(measured) in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    assert len(measured["cases"]) == len(loss_blocks.CASES)
    assert all(len(c["seconds"]["one_block"]) == len(c["seconds"]["vocab_blocks"]) >= 5 for c in measured["cases"])
    assert max(c["max_gradient_difference"] for c in measured["cases"]) < 1e-4
    # Ratios pair by pair: a slower second alternation of one walker moves only that pair.
    assert loss_blocks.ratios({"seconds": {"one_block": [2.0, 1.0], "vocab_blocks": [1.0, 1.0]}}) == [0.5, 1.0]
    small = loss_blocks.measure_case(rows=8, hidden=64, vocab=20_000, repeats=2)  # 16,384-row blocks: two
    assert len(small["seconds"]["vocab_blocks"]) == 2 and small["max_gradient_difference"] < 1e-5
    assert small["chunks"] == {"one_block": 2048, "vocab_blocks": 2048}  # both at the default chunk


def test_committed_lora_addmm_block_is_the_rendering_of_its_json(monkeypatch):
    """RESULTS.md's "LoRA as one addmm" block is bench/lora_addmm.py's rendering of the committed JSON,
    whose ratios are the pair-by-pair tokens/s of its runs, and both forwards reached the same
    held-out loss up to float rounding (else the addmm layer computes something else)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import lora_addmm

    measured = json.loads(lora_addmm.RESULTS_JSON.read_text(encoding="utf-8"))
    block = lora_addmm.render(measured)
    assert block.startswith(lora_addmm.BEGIN) and block.endswith(lora_addmm.END)
    assert (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8").count(block) == 1
    assert {m["key"] for m in measured["models"]} == {"qwen2-scaled", "smollm2-135m"}
    for m in measured["models"]:
        runs = m["runs"]
        assert len(runs["addmm"]) == len(runs["peft"]) == m["repeats"] >= 3
        assert m["ratios"] == [round(a["tps"] / p["tps"], 3) for a, p in zip(runs["addmm"], runs["peft"])]
        for a, p in zip(runs["addmm"], runs["peft"]):
            assert a["heldout"] == pytest.approx(p["heldout"], rel=1e-5) and a["steps"] == p["steps"]


def test_family_matrix_shards_cover_every_family_once_and_render_as_one_table_in_the_families_order(tmp_path):
    """bench/families.py runs on two cores as two shards (--shard K/N --json) and renders one table from
    their rows (--from-json): every family once, in ducktune.models.families' order, the README block
    replaced."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import families as matrix
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from ducktune.models.families import FAMILIES

    order = [f.id for f in FAMILIES]
    shards = [matrix.shard_of(order, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(order) and all(shards)
    cells = {column: "PASS" for column in matrix.COLUMNS}
    for index, shard in enumerate(shards[:2]):  # written out of order: the last family first
        rows = [{"family": fid, "title": fid.upper(), "cells": cells, "seconds": 1.0} for fid in reversed(shard)]
        (tmp_path / f"{index}.json").write_text(json.dumps(rows), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + "\n".join(matrix.MARKERS) + "\nafter\n", encoding="utf-8")
    out = tmp_path / "families.md"
    code = subprocess.run([sys.executable, str(ROOT / "bench" / "families.py"), "--from-json", str(tmp_path / "1.json"),
                           str(tmp_path / "0.json"), "--out", str(out), "--readme", str(readme)],
                          capture_output=True, text=True, cwd=ROOT).returncode
    assert code == 0
    listed = [line.split(" (")[0].strip("| ") for line in out.read_text(encoding="utf-8").splitlines()
              if line.startswith("| ") and "(" in line.split("|")[1]]
    assert listed == [fid for fid in order if fid in shards[0] + shards[1]]
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("after\n") and f"| {listed[0]} (" in text


def test_committed_ceiling_block_is_the_rendering_of_its_json_and_its_ratios_are_the_medians():
    """bench/RESULTS.md's CEILING block is bench/ceiling.py's rendering of its committed JSON, and the
    ratios it reports are ratios of per-side medians (an outlier run, here the mean's pull, moves none)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import ceiling

    measured = json.loads(ceiling.RESULTS_JSON.read_text(encoding="utf-8"))
    assert ceiling.render(measured) in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8"), \
        "after a new bench/results/ceiling.json: bench/ceiling.py --render"
    assert measured["repeats"] >= 3 and all(len(m["runs"][side]) == measured["repeats"]
                                            for m in measured["models"] for side in ceiling.SIDES)
    fake = {"key": "m", "trained_tokens": 100, "decoder_flops": 1e12,
            "runs": {"tuned": [{"tokens_per_s": v} for v in (40, 50, 500)],
                     "ducktune": [{"tokens_per_s": v} for v in (60, 70, 80)],
                     "bound": [{"tokens_per_s": v} for v in (1, 100, 110)]}}
    row = ceiling.summarize(fake, peak=2e12)
    assert row["median"] == {"tuned": 50, "ducktune": 70, "bound": 100}
    assert row["bound_over_tuned"] == 2.0 and row["ducktune_over_bound"] == 0.7
    # 1e12 decoder FLOPs in 100 / 100 = 1 s: 1e12 FLOP/s, half the peak.
    assert row["bound_decoder_flops_per_s"] == 1e12 and row["bound_decoder_fraction"] == 0.5


def test_the_bound_sides_free_loss_backpropagates_into_every_adapter_without_the_lm_head(tiny_qwen):
    """bench/sides.py's FreeLoss (bench/ceiling.py's bound) must cost a real step's decoder work and
    nothing of the loss: a gradient in every LoRA weight through the whole decoder, and no LM-head call."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "bench"))
    from sides import FreeLoss

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    head_calls = []
    model.get_output_embeddings().register_forward_hook(lambda *args: head_calls.append(1))
    ids = torch.randint(0, 100, (1, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    loss = FreeLoss()(model, {"input_ids": ids, "labels": labels})
    loss.backward()
    adapters = [(name, p) for name, p in model.named_parameters() if "lora_" in name]
    assert adapters and not head_calls
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for _, p in adapters), \
        [name for name, p in adapters if p.grad is None or not float(p.grad.abs().sum())]


@pytest.mark.slow
def test_ceiling_script_runs_its_three_sides_and_renders_what_it_measured(tmp_path):
    """bench/ceiling.py end to end on the tiny model, one alternation, its JSON outside the repo."""
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ceiling.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ceiling.py"), "--models", "tiny", "--repeats", "1",
                           "--threads", "1", "--json", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(out.read_text(encoding="utf-8"))
    (model,) = measured["models"]
    assert {side: len(runs) for side, runs in model["runs"].items()} == {"tuned": 1, "ducktune": 1, "bound": 1}
    assert model["decoder_flops"] > 0 and all(r["tokens_per_s"] > 0 for runs in model["runs"].values() for r in runs)
    sys.path.insert(0, str(ROOT / "bench"))
    import ceiling

    assert ceiling.render(measured) in proc.stdout
    row = ceiling.summarize(model, max(measured["matmul_peak"]))
    assert f"tiny_ceiling_ratio_tuned: {row['bound_over_tuned']:.3f}" in proc.stdout


def test_committed_gpu_family_block_is_the_rendering_of_its_json_and_never_passes_a_family_not_run(tmp_path):
    """bench/RESULTS.md's FAMILIES-GPU block is bench/gpu_families.py's rendering of bench/results/gpu/, and a
    family the JSONs lack (its shard stopped first) is "not run" and counted as not reached, never as passed."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_families

    from ducktune.models.families import FAMILIES

    order, titles = [f.id for f in FAMILIES], {f.id: f.title for f in FAMILIES}
    committed = gpu_families.render(gpu_families.load(), order, titles, "2026-12-05")
    assert committed in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8"), \
        "after new bench/results/gpu/ files: bench/gpu_families.py --write"
    passing = {"train (loss falls)": "PASS (9.0 -> 1.0)", "masks": "PASS (answers + </s>)", "merge": "PASS",
               "GGUF f16 + q8_0": "PASS (2 files)"}
    rows = [{"family": "a", "cells": passing, "batching": "packed"},
            {"family": "b", "cells": {**passing, "merge": "FAIL: logits differ"}, "batching": "packed"}]
    (tmp_path / "families_bf16_1.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "gpu_check_log.txt").write_text("NVIDIA X, 1 MiB\ntorch 1 transformers 2 cuda True\n",
                                                encoding="utf-8")
    block = gpu_families.render(gpu_families.load(tmp_path), ["a", "b", "c"], {"a": "A", "b": "B", "c": "C"}, "d")
    assert "**1 of 3 families passed**" in block and "failed: b;" in block and "not reached: c." in block
    assert "| c (C) | - | not run | not run |" in block and "| b (B) | packed | PASS (9.0 -> 1.0) | PASS | FAIL" in block


def test_committed_window_block_is_the_rendering_of_its_json_read_back_from_the_log():
    """bench/RESULTS.md's WINDOW block is bench/window_speed.py's rendering of its JSON, whose runs are the ones
    the committed log printed (`--from-log`), and the speedup it reports is packed over padded of the medians."""
    sys.path.insert(0, str(ROOT / "bench"))
    import window_speed

    measured = json.loads(window_speed.RESULTS_JSON.read_text(encoding="utf-8"))
    assert window_speed.render(measured) in (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8"), \
        "after a new bench/results/gpu/window_speed.json: bench/window_speed.py --render"
    again = window_speed.from_log(ROOT / measured["from_log"], measured["date"], measured["samples"],
                                  measured["cutoff"], measured["repeats"])
    assert again["runs"] == measured["runs"] and all(measured["runs"].values())
    row = window_speed.summarize(measured)
    medians = {side: statistics.median(r["tokens_per_s"] for r in measured["runs"][side]) for side in ("packed", "padded")}
    assert row["speedup"] == medians["packed"] / medians["padded"]
    assert f"window_packing_speedup: {row['speedup']:.3f}" in window_speed.render(measured)


@pytest.mark.slow
def test_window_speed_script_trains_both_sides_on_the_same_tokens(tmp_path):
    """bench/window_speed.py end to end on the gemma3 stand-in (window 8, on the CPU): the packed side packs (with
    samples longer than the window), the padded side pads, both on the same trained tokens; JSON outside the repo."""
    out = tmp_path / "window.json"
    env = {**os.environ, "DUCKTUNE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "window_speed.py"), "--shape", "standin", "--samples",
                           "16", "--cutoff", "256", "--repeats", "1", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(out.read_text(encoding="utf-8"))
    runs = {side: measured["runs"][side][0] for side in ("packed", "padded")}
    assert {side: run["batching"] for side, run in runs.items()} == {"packed": "packed", "padded": "padded"}
    assert runs["packed"]["trained_tokens"] == runs["padded"]["trained_tokens"] > 0
    assert runs["packed"]["steps"] < runs["padded"]["steps"]  # packed rows hold several samples
    sys.path.insert(0, str(ROOT / "bench"))
    import window_speed

    assert window_speed.render(measured) in proc.stdout


def test_family_matrix_records_what_each_run_chose_and_goes_on_past_a_family_that_fails(tmp_path):
    """bench/families.py as bench/gpu_check.sh runs it (--set, --train-only, rows rewritten after each family): a
    family that cannot train (QLoRA on the CPU refuses Qwen2's biased layers) gets its error in its row and the next
    family still runs; a trained row says the device, dtype, method and batching its run.json recorded."""
    sys.path.insert(0, str(ROOT / "bench"))
    import families as matrix

    rows_file = tmp_path / "rows.json"
    rows = matrix.run_rows(["qwen2.5", "llama3"], str(tmp_path / "work"), 3, ("train.method=qlora",), export=False,
                           json_path=str(rows_file))
    assert json.loads(rows_file.read_text(encoding="utf-8")) == rows
    failed, trained = rows
    assert failed["cells"]["train (loss falls)"].startswith("FAIL: ModelError:") and "bias" in failed["failed"][0]
    assert {k: trained[k] for k in ("device", "dtype", "method", "batching")} == \
        {"device": "cpu", "dtype": "float32", "method": "qlora", "batching": "packed"}
    assert set(trained["cells"]) == {"train (loss falls)", "masks"} and trained["cells"]["masks"].startswith("PASS")


@pytest.mark.slow
def test_window_probe_runs_both_backend_choices_on_the_cpu(tmp_path):
    """bench/window_probe.py (a GPU probe) cannot rot unnoticed: its CPU smoke run prints a timing for both SDPA
    backend choices, causal and banded, a packed and a padded step, and the profile table."""
    from ducktune.models.families import build_standin

    folder = build_standin("gemma3", tmp_path / "gemma3")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "window_probe.py"), "--cpu-smoke", "--folder",
                           str(folder)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for needle in ("causal    ducktune's backends", "band 512  ducktune's backends", "band 512  PyTorch's order",
                   "packed, ducktune's backends", "packed, PyTorch's order", "padded through sdpa", "Self CPU time total"):
        assert needle in proc.stdout, needle
