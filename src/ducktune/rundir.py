"""The run directory: the contract between training, chat, export and serving.

    runs/NAME/
      config.yaml      resolved config (every default filled in)
      run.json         status, base model, chat format (stop tokens), data stats, results
      adapter/         PEFT adapter + tokenizer + chat template   (LoRA / QLoRA runs)
      model/           full weights + tokenizer                   (full fine-tuning runs)
      checkpoints/     checkpoint-N folders (Trainer format), last K kept
      metrics.jsonl    one line per logging step: loss, lr, grad_norm, tokens_per_s, eval_loss
      loss.png         loss curve
      report.md        settings, final loss, base vs tuned answers

`ducktune chat/compare/export/serve RUN_DIR` need nothing but this folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from ducktune.errors import UserError


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_yaml = property(lambda self: self.path / "config.yaml")
    run_json = property(lambda self: self.path / "run.json")
    adapter = property(lambda self: self.path / "adapter")
    full_model = property(lambda self: self.path / "model")
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    loss_png = property(lambda self: self.path / "loss.png")
    report = property(lambda self: self.path / "report.md")

    def exists(self) -> bool:
        return self.run_json.is_file()

    def info(self) -> dict:
        if not self.run_json.is_file():
            raise UserError(f"{self.path}: not a ducktune run directory (no run.json); train one with `ducktune train`")
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.run_json}: corrupt ({exc})") from None

    def weights_dir(self) -> Path:
        """The adapter (LoRA) or full model folder of a finished run."""
        info = self.info()
        folder = self.full_model if info.get("method") == "full" else self.adapter
        if not folder.is_dir():
            status = info.get("status", "unknown")
            raise UserError(f"{self.path}: no trained weights in {folder.name}/ (run status: {status}); "
                            f"finish or resume the run with `ducktune train {self.config_yaml}`")
        return folder

    def config(self):
        from ducktune.config import load_config

        return load_config(self.config_yaml)

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        rows = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return rows
