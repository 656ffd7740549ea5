"""transformers' Trainer, extended only through its documented hooks (compute_loss, log).

Adds what the stock Trainer does not report: trained tokens (labels != -100) and trained
tokens per second, the throughput figure that matters for fine-tuning. The micro-batch loss
is a parameter, `loss(model, inputs, num_items_in_batch)` (as mlx-lm's trainer takes one):
ducktune passes its chunked cross-entropy over trained positions (train/loss.py); None keeps
the model's own full-logits loss. A loss may also return (loss, {metric: value}) (the
preference objectives of train/preference.py): the metrics are averaged over each logging
window, as TRL's trainers do, and logged with the loss (eval_-prefixed in evaluation). Such a
loss says whether it is already scaled for gradient accumulation (`scaled_for_accumulation`)
and whether it can be given a model wrapped for distributed training (`handles_wrapped_models`).
"""

from __future__ import annotations

import time
from collections import defaultdict

from transformers import Trainer

from ducktune.data.template import IGNORE_INDEX


class DucktuneTrainer(Trainer):
    # Both loss paths divide by the Trainer's token count over all accumulated micro-batches.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, loss=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.micro_batch_loss = loss
        # A per-micro-batch mean (preference losses) is divided by the accumulation steps by the Trainer.
        self.loss_is_scaled_for_ga = getattr(loss, "scaled_for_accumulation", True)
        self._loss_metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        # Makes the Trainer count trained tokens across gradient accumulation (num_items_in_batch),
        # so a packed step weighs every trained token the same as an unpacked one.
        self.model_accepts_loss_kwargs = True
        self._trained_tokens = 0
        self._tokens_since_log = 0
        self._last_log_time = None
        self._flops_per_token = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            if self._last_log_time is None:  # throughput counts from the first step, not from construction
                self._last_log_time = time.perf_counter()
            n = int((inputs["labels"] != IGNORE_INDEX).sum())
            self._trained_tokens += n
            self._tokens_since_log += n
        # The chunked loss calls the decoder and reads the head's weight directly: only on the
        # unwrapped model (not under DDP, unless the loss says it handles wrapped models), and not
        # under FSDP, whose weights are gathered only inside the wrapped model's own forward.
        usable = (self.micro_batch_loss is not None and not self.is_fsdp_enabled
                  and (getattr(self.micro_batch_loss, "handles_wrapped_models", False)
                       or self.accelerator.unwrap_model(model) is model))
        if usable:
            # accelerate autocasts the wrapped model's forward in mixed precision; the chunked loss calls
            # the decoder itself, so it takes the same autocast here (else its adapters ran in fp32).
            with self.accelerator.autocast():
                loss = self.micro_batch_loss(model, inputs, num_items_in_batch)
            if isinstance(loss, tuple):  # a preference objective: (loss, its reward metrics); per pair, not per token
                loss, metrics = loss
                for key, value in metrics.items():
                    self._loss_metrics["train" if model.training else "eval"][key].append(value)
            elif num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # The Trainer counts num_items_in_batch over every process (evaluation reaches this path
                # under DDP too) and its own loss path multiplies by the process count to match; so here.
                loss = loss * self.accelerator.num_processes
            return (loss, {"loss": loss}) if return_outputs else loss
        # use_cache=False: no KV cache in training (memory), and packed position ids are honoured.
        with self.accelerator.autocast():  # as above; a no-op where accelerate already wrapped the forward
            return super().compute_loss(model, {**inputs, "use_cache": False}, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's own estimate (6 x input tokens x non-embedding parameters, its total_flos),
        with the parameter count taken once: the Trainer recounts it every step by walking every
        module and parameter (~5 ms a step on SmolLM2 with 210 LoRA layers), and it cannot change
        while training (its documented hook for models that need their own count)."""
        key = getattr(self.model, "main_input_name", "input_ids")
        if key not in inputs:
            return super().floating_point_ops(inputs)
        if self._flops_per_token is None:  # the Trainer's estimate for a one-token input
            self._flops_per_token = super().floating_point_ops({key: inputs[key].new_zeros(1)})
        return self._flops_per_token * inputs[key].numel()

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's scheduler, except that a warm-up given as a ratio (train.warmup_ratio) never
        spans the whole run. transformers rounds ratio x steps up, and its warm-up starts at a rate of
        0: a one-step run (a smoke test, `train.max_steps: 1`) took its only step at lr 0 and saved an
        untrained adapter. The ratio's warm-up is capped at steps - 1; explicit warmup_steps are kept."""
        ratio = self.args.warmup_steps
        if not 0 < ratio < 1 or self.args.get_warmup_steps(num_training_steps) < num_training_steps:
            return super().create_scheduler(num_training_steps, optimizer)
        self.args.warmup_steps = max(num_training_steps - 1, 0)  # read by the Trainer's create_scheduler only
        try:
            return super().create_scheduler(num_training_steps, optimizer)
        finally:
            self.args.warmup_steps = ratio

    @property
    def autocasts_every_forward(self) -> bool:
        """Whether every training and evaluation forward runs under autocast (mixed precision, and
        not FSDP, whose own mixed-precision policy casts instead): adapters may then skip their
        input casts (train/lora.adapter_input_casting)."""
        return bool(self.accelerator.native_amp) and not self.is_fsdp_enabled

    def log(self, logs, start_time=None):
        now = time.perf_counter()
        for mode, prefix, marker in (("train", "", "loss"), ("eval", "eval_", "eval_loss")):
            if marker in logs and self._loss_metrics[mode]:
                logs.update({prefix + key: sum(values) / len(values) for key, values in self._loss_metrics[mode].items()})
                self._loss_metrics[mode].clear()
        if "loss" in logs:
            # Every process logs here together (the Trainer gathers the loss first), so the
            # token counts can be summed over all of them: the figures are the whole run's.
            since_log = self._sum_over_processes(self._tokens_since_log)
            if self._last_log_time is not None:
                elapsed = max(now - self._last_log_time, 1e-9)
                logs["tokens_per_s"] = round(since_log / elapsed, 2)
            logs["trained_tokens"] = self._sum_over_processes(self._trained_tokens)
            self._tokens_since_log = 0
            self._last_log_time = now
        super().log(logs, start_time)

    def count_trained_tokens_from(self, tokens: int) -> None:
        """Start this process's trained-token count at `tokens` (a resumed run's earlier total)."""
        self._trained_tokens = tokens

    def total_trained_tokens(self) -> int:
        """Trained tokens over all processes (call on every process: it is a collective)."""
        return self._sum_over_processes(self._trained_tokens)

    def _sum_over_processes(self, count: int) -> int:
        if self.accelerator.num_processes == 1:
            return count
        import torch

        return int(self.accelerator.reduce(torch.tensor(count, device=self.accelerator.device), "sum"))
