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


def test_a_preference_runs_metrics_and_objective_reach_the_runs_tab(tmp_path):
    """/api/runs/NAME/metrics kept only loss keys (TRL's rewards/*, logps/*, kl were dropped) and the
    run row had no objective (a DPO run read as "method": "lora")."""
    from fastapi.testclient import TestClient

    from ducktune.ui.app import create_ui_app

    run = tmp_path / "dpo"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "completed", "method": "lora", "objective": "dpo"}))
    rows = [{"step": 1, "loss": 0.69, "time": 1.0, "rewards/chosen": 0.1, "rewards/rejected": -0.1,
             "rewards/margins": 0.2, "rewards/accuracies": 1.0, "logps/chosen": -5.0, "logps/rejected": -9.0, "kl": 0.0},
            {"step": 1, "eval_loss": 0.6, "eval_rewards/margins": 0.3, "eval_rewards/accuracies": 0.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with TestClient(create_ui_app(tmp_path), base_url="http://127.0.0.1:7860") as client:
        assert client.get("/api/runs").json()[0]["objective"] == "dpo"
        metrics = client.get("/api/runs/dpo/metrics").json()
    assert metrics[0] == {k: v for k, v in rows[0].items() if k != "time"}
    assert metrics[1] == rows[1]
