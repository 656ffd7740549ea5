"""Trainer callbacks: a progress bar with ETA and loss, and metrics.jsonl."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


def _clean(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


class StopRequest(TrainerCallback):
    """A stop asked for while training runs (Ctrl-C, SIGTERM): the step in progress finishes, a
    checkpoint of it is saved and training stops, so the same command resumes from that very step
    instead of the last save_steps checkpoint (up to save_steps - 1 steps of work lost). Listed
    before RunTotals, which records its totals in the checkpoints it sees asked for."""

    def __init__(self):
        self.requested = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True


class MetricsWriter(TrainerCallback):
    """Append one JSON line per log event to metrics.jsonl (flushed, so a crash keeps what was logged)."""

    KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "eval_loss": "eval_loss",
            "tokens_per_s": "tokens_per_s", "trained_tokens": "trained_tokens", "epoch": "epoch"}

    # The preference objectives' metrics, under TRL's names (eval_-prefixed in evaluation).
    PREFIXES = ("rewards/", "logps/", "eval_rewards/", "eval_logps/")
    PLAIN = ("kl", "eval_kl")

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = path
        self._truncate_after(resume_step)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint we resume from (they will be logged again)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                keep.append(line)
        from ducktune.io import write_text

        write_text(self.path, "".join(line + "\n" for line in keep))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "time": round(time.time(), 3)}
        for key, name in self.KEYS.items():
            if key in logs:
                value = logs[key]
                row[name] = _clean(float(value)) if isinstance(value, (int, float)) else value
        for key, value in logs.items():
            if (key.startswith(self.PREFIXES) or key in self.PLAIN) and isinstance(value, (int, float)):
                row[key] = _clean(float(value))
        if len(row) <= 3:  # only step/time/epoch: end-of-training summary, not a metrics row
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


class ProgressBar(TrainerCallback):
    """A tqdm bar over optimizer steps, with ETA and the latest loss."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        shown = {}
        if "loss" in logs:
            shown["loss"] = f"{logs['loss']:.4f}"
        if "eval_loss" in logs:
            shown["eval"] = f"{logs['eval_loss']:.4f}"
        if "rewards/accuracies" in logs:  # preference runs: how often chosen beats rejected
            shown["acc"] = f"{logs['rewards/accuracies']:.2f}"
        if "tokens_per_s" in logs:
            shown["tok/s"] = f"{logs['tokens_per_s']:.0f}"
        if shown:
            self.bar.set_postfix(shown)  # redrawn now: the step's own bar update came before its log

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunTotals(TrainerCallback, ExportableState):
    """The whole run's trained tokens and training seconds, carried across resumes: the Trainer saves
    this callback's state() in every checkpoint's trainer_state.json (its documented way for callbacks),
    and `restored_totals` reads it back. It also asks for a log line at the last step, so the final
    loss is the last step's whatever train.logging_steps is."""

    def __init__(self, trained_tokens: int = 0, train_seconds: float = 0.0):
        self.trained_tokens = trained_tokens  # at the last checkpoint
        self.restored_seconds = train_seconds
        # The all-process token total (a collective: every process calls it), set once the Trainer exists.
        self.count_tokens = None
        self._began: float | None = None

    def start_clock(self) -> None:
        """Called right before `trainer.train()`: the session's seconds are that call's wall time,
        as a benchmark times the Trainer it compares with."""
        self._began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # Every process runs this (state() below runs on the main one only, inside the save).
        if control.should_save and self.count_tokens is not None:
            self.trained_tokens = self.count_tokens()
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_log = True

    def seconds(self) -> float:
        """Training seconds of the whole run so far (earlier sessions included)."""
        return self.restored_seconds + (time.perf_counter() - self._began if self._began is not None else 0.0)

    def state(self) -> dict:
        return {"args": {"trained_tokens": self.trained_tokens, "train_seconds": round(self.seconds(), 3)},
                "attributes": {}}


def restored_totals(checkpoint: Path | None) -> tuple[int, float]:
    """(trained tokens, training seconds) saved by RunTotals in a checkpoint; (0, 0.0) for none (a
    checkpoint written before ducktune saved them)."""
    if checkpoint is None:
        return 0, 0.0
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
        saved = state["stateful_callbacks"]["RunTotals"]["args"]
        return int(saved["trained_tokens"]), float(saved["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0.0
