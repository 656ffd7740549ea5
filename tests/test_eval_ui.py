"""The Runs tab's evaluation data (ui/runs.py): eval.json, the bleed table and probe answers."""

import json

from ducktune.eval.report import section, update_report
from ducktune.eval.runner import headline
from ducktune.ui import runs


def make_run(tmp_path):
    run = tmp_path / "r1"
    (run / "eval").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "completed", "method": "lora"}), encoding="utf-8")
    rows = [{"prompt": "What is 2 + 2?", "lang": "en", "kind": "arithmetic", "base": "4", "tuned": "4. I am <b>Duckling</b>.",
             "changed": True, "bleed": True, "bleed_text": "Duckling"}]
    result = headline({}, {}, {}) | {"run": "r1", "finished": "2026-12-03T12:00:00", "seconds": 3.0,
                                     "bleed": {"prompts": 1, "bleed": 1, "bleed_rate": 100.0, "changed": 1,
                                               "mean_kl": 0.5, "markers": ["Duckling"], "rows": rows}}
    (run / "eval" / "eval.json").write_text(json.dumps(result), encoding="utf-8")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "loss": 1.0}) + "\n" + json.dumps(
        {"step": 2, "probe": [{"prompt": "Who are you?", "answer": "Duck"}]}) + "\n", encoding="utf-8")
    (run / "report.md").write_text("# run\n\n## Base vs tuned (greedy)\n\nx\n\n## Config\n\n```yaml\na: 1\n```\n",
                                   encoding="utf-8")
    update_report(run / "report.md", section(result, has_plot=False))
    return run, result


def test_run_evaluation_and_report(tmp_path):
    run, result = make_run(tmp_path)
    report = (run / "report.md").read_text(encoding="utf-8")
    assert report.index("## Base vs tuned") < report.index("## Evaluation") < report.index("## Config")
    assert "| What is 2 + 2? | 4 | 4. I am <b>Duckling</b>. | yes: Duckling |" in report
    evaluation = runs.run_evaluation(run)
    assert evaluation["eval"]["bleed"]["bleed_rate"] == 100.0
    assert evaluation["probes"] == [{"step": 2, "probe": [{"prompt": "Who are you?", "answer": "Duck"}]}]
    assert runs.run_summary(run)["bleed_rate"] == 100.0
    # The page shows eval.json itself: the report's copy of the section is left out, and the
    # answers it contains would be escaped anyway.
    rendered = runs.report_html(run, "r1")
    assert "Evaluation" not in rendered and "Base vs tuned" in rendered and "<b>" not in rendered


def test_no_evaluation_yet(tmp_path):
    run = tmp_path / "r2"
    run.mkdir()
    (run / "run.json").write_text("{}", encoding="utf-8")
    assert runs.run_evaluation(run) is None
    assert runs.run_summary(run)["bleed_rate"] is None
