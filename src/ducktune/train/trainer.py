"""transformers' Trainer, extended only through its documented hooks (compute_loss, log).

Adds what the stock Trainer does not report: trained tokens (labels != -100) and trained
tokens per second, the throughput figure that matters for fine-tuning.
"""

from __future__ import annotations

import time

from transformers import Trainer

from ducktune.data.template import IGNORE_INDEX


class DucktuneTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._trained_tokens = 0
        self._tokens_since_log = 0
        self._last_log_time = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            if self._last_log_time is None:  # throughput counts from the first step, not from construction
                self._last_log_time = time.perf_counter()
            n = int((inputs["labels"] != IGNORE_INDEX).sum())
            self._trained_tokens += n
            self._tokens_since_log += n
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def log(self, logs, start_time=None):
        now = time.perf_counter()
        if "loss" in logs:
            if self._last_log_time is not None:
                elapsed = max(now - self._last_log_time, 1e-9)
                logs["tokens_per_s"] = round(self._tokens_since_log / elapsed, 2)
            logs["trained_tokens"] = self._trained_tokens
            self._tokens_since_log = 0
            self._last_log_time = now
        super().log(logs, start_time)
