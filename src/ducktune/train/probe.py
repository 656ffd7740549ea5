"""Generation probe during training: a few greedy answers every eval_steps, in metrics.jsonl.

A loss curve says the model fits the data; it does not say what the model now answers.
Every `every` optimizer steps this callback answers a handful of prompts with the model
being trained (greedy, batched, adapter on) and appends one line to metrics.jsonl:

    {"step": 20, "time": ..., "probe": [{"prompt": "Who are you?", "answer": "I am ..."}, ...]}

The UI's run page shows these lines as a table of answers by step. Lines without `loss`
are ignored by the loss chart and plot_loss.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class GenerationProbe(TrainerCallback):
    def __init__(self, path: Path, tokenizer, chat_format, prompts: list[str], every: int,
                 max_new_tokens: int = 64, tools: list | None = None):
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.prompts = list(prompts)
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.tools = tools  # each prompt's tools list (or None): a run trained on calls is probed with them

    def probe_row(self, model, step: int) -> dict:
        """Greedy answers of `model` to the probe prompts (the model is left in training mode)."""
        from ducktune.chat.engine import ChatEngine
        from ducktune.train.lora import adapter_input_casting

        was_training = model.training
        engine = ChatEngine(model, self.tokenizer, self.chat_format, name="probe")  # switches to eval mode
        try:
            # Generation runs without autocast: adapters cast their input again (training may have turned that off).
            with adapter_input_casting(model, enabled=True):
                generations = engine.generate_batch([[{"role": "user", "content": p}] for p in self.prompts],
                                                    max_new_tokens=self.max_new_tokens, tools=self.tools)
        finally:
            if was_training:
                model.train()
        return {"step": step, "time": round(time.time(), 3),
                "probe": [{"prompt": p, "answer": g.text} for p, g in zip(self.prompts, generations)]}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.prompts or model is None or not state.is_world_process_zero:
            return
        if state.global_step == 0 or state.global_step % self.every:
            return
        row = self.probe_row(model, state.global_step)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def generation_probe(config, run_metrics: Path, tokenizer, chat_format, prompts: list[str],
                     tools: list | None = None) -> GenerationProbe | None:
    """The probe callback for a run, or None when eval.probe_during_training is off."""
    if not config.eval.probe_during_training or not prompts:
        return None
    every = config.train.eval_steps or config.train.save_steps
    count = config.eval.probe_count
    return GenerationProbe(run_metrics, tokenizer, chat_format, prompts[:count], every,
                           max_new_tokens=min(config.eval.max_new_tokens, 64), tools=tools[:count] if tools else None)
