"""One side of the DPO benchmark, run in its own process so its peak memory is its own.

    python bench/dpo_sides.py SPEC.json RESULT.json

SPEC names the side ("baseline": TRL's DPOTrainer, or "ducktune": train.objective dpo), the
model folder, the pairs file, the held-out pairs file and the shared settings (sides.py is the
SFT counterpart). Both sides train on the same token ids: the pairs are tokenized once by
ducktune's chat format (data/preference.py, the rows its recipe trains on, in the same order)
and handed to TRL pre-tokenized as prompt_ids / chosen_ids / rejected_ids. TRL 1.16's
DPOTrainer has no switch for pre-tokenized data (it always renders prompt/chosen/rejected text
with the chat template in `_prepare_dataset`), so `PreTokenizedDPOTrainer` leaves that one step
out; its collator, reference pass, loss, metrics and defaults are TRL's own. The completion TRL
trains is exactly the span ducktune labels: the answer and its end-of-turn marker (ducktune's
rows also keep the template's untrained newline after it, one token per sequence that TRL's
rows do not have).

Timed around `trainer.train()` only. The result: trained tokens (both answers of every pair,
counted in the collated batches), train seconds, peak memory (VmHWM on CPU), per-step losses
and reward accuracies, and the held-out pairs' DPO reward accuracy and margin, computed by the
same plain code (ducktune.train.preference.pair_rewards) for both sides.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from sides import peak_memory

from ducktune.data.template import IGNORE_INDEX

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def tokenized_pairs(spec: dict, path: str):
    """(pair rows, tokenizer) exactly as ducktune's recipe builds them (same shuffle, same cutoff)."""
    from ducktune.config import DataConfig
    from ducktune.data.loader import load_data
    from ducktune.data.preference import tokenize_preference
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(spec["model"])
    chat_format = ChatFormat(tokenizer)
    data = load_data(DataConfig(datasets=[path], cutoff_len=spec["cutoff"], val_ratio=0.0),
                     seed=spec["train"]["seed"], chat_format=chat_format, objective="preference")
    rows, _stats, _problems = tokenize_preference(data.train, chat_format, spec["cutoff"], False)
    return rows, tokenizer


def trained_tokens(rows: list[dict]) -> int:
    return sum(1 for r in rows for side in ("chosen", "rejected") for x in r[f"{side}_labels"] if x != IGNORE_INDEX)


def trl_example(row: dict) -> dict:
    """A ducktune pair row as TRL's tokenized columns: the shared prompt, then each answer's
    trained span (TRL trains every completion token). Refuses a row whose trained tokens are not
    one run from prompt_len (TRL could not train the same tokens)."""
    out = {"prompt_ids": row["chosen_input_ids"][:row["prompt_len"]]}
    for side in ("chosen", "rejected"):
        ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
        trained = [i for i, x in enumerate(labels) if x != IGNORE_INDEX]
        if trained[0] != row["prompt_len"] or trained != list(range(trained[0], trained[-1] + 1)):
            raise SystemExit(f"a {side} answer's trained tokens do not follow the prompt in one run: "
                             "TRL would train other tokens")
        if ids[:row["prompt_len"]] != out["prompt_ids"]:
            raise SystemExit("chosen and rejected rows do not share their prompt tokens")
        out[f"{side}_ids"] = ids[row["prompt_len"]:trained[-1] + 1]
    return out


def run_config(spec: dict, output_dir: str):
    from ducktune.config import RunConfig

    s = spec["train"]
    return RunConfig.model_validate({
        "model": {"name_or_path": spec["model"], "device": spec["device"], "dtype": spec["dtype"]},
        "data": {"datasets": [spec["data"]], "cutoff_len": spec["cutoff"], "val_ratio": 0.0},
        "lora": {"r": s["lora_r"], "alpha": s["lora_alpha"], "dropout": s["lora_dropout"]},
        "preference": {"beta": s["beta"]},
        "train": {"objective": "dpo", "batch_size": s["batch_size"], "grad_accum": s["grad_accum"],
                  "learning_rate": s["learning_rate"], "num_epochs": 1, "warmup_ratio": s["warmup_ratio"],
                  "scheduler": "cosine", "optimizer": "adamw_torch", "seed": s["seed"], "logging_steps": 1,
                  "save_steps": 10_000, "num_threads": spec["threads"]},
        "output": {"dir": output_dir, "overwrite": True},
    })


def run_ducktune(spec: dict, workdir: Path) -> dict:
    """ducktune's own recipe with train.objective dpo, as `ducktune train` runs it."""
    from sides import _adapter_model

    from ducktune.rundir import RunDir
    from ducktune.train.recipe import train

    result = train(run_config(spec, str(workdir / "ducktune-dpo-run")), log=lambda *_: None, progress=False,
                   compare=False)
    info = result.info
    peak = peak_memory(spec["device"])  # before anything else is loaded
    metrics = RunDir(result.run_dir).read_metrics()
    return {
        "train_seconds": info["result"]["train_seconds"],
        "counted_trained_tokens": info["result"]["trained_tokens"],
        "steps": info["result"]["global_step"],
        "losses": [m["loss"] for m in metrics if m.get("loss") is not None],
        "accuracies": [m["rewards/accuracies"] for m in metrics if m.get("rewards/accuracies") is not None],
        "peak_bytes": peak,
        "plan_bytes": info["memory_plan"]["peak_bytes"],
        "gradient_checkpointing": bool(info["memory_plan"]["gradient_checkpointing"]),
        "model_for_eval": _adapter_model(spec, result.run_dir / "adapter"),
    }


class CompletionTokenCounter:
    """Wraps TRL's preference collator and counts the completion tokens it hands out (what TRL trains)."""

    def __init__(self, collator):
        self.collator = collator
        self.trained = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.trained += int(batch["completion_mask"].sum())
        return batch


def pretokenized_trainer_class():
    from trl import DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer on a dataset that already holds prompt_ids / chosen_ids / rejected_ids."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PreTokenizedDPOTrainer


def run_baseline(spec: dict, workdir: Path) -> dict:
    """TRL's DPOTrainer with a PEFT LoRA config, at TRL's defaults (padded batches, gradient
    checkpointing on, the reference as the adapter switched off, its fused LM head on every
    position) except the shared settings and what the CPU needs (bf16=False, use_cpu=True)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, set_seed
    from trl import DPOConfig

    s = spec["train"]
    torch.set_num_threads(spec["threads"])
    set_seed(s["seed"])
    rows, tokenizer = tokenized_pairs(spec, spec["data"])
    cuda = spec["device"] == "cuda"
    dtype = torch.bfloat16 if cuda and spec["dtype"] != "float32" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=dtype)
    if cuda:
        model = model.to("cuda")
    peft_config = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                             target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    args = DPOConfig(
        output_dir=str(workdir / "baseline-dpo-run"),
        per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=s["grad_accum"],
        learning_rate=s["learning_rate"],
        beta=s["beta"],
        num_train_epochs=1,
        lr_scheduler_type="cosine",
        warmup_steps=s["warmup_ratio"],
        weight_decay=0.0,
        optim="adamw_torch",
        seed=s["seed"],
        data_seed=s["seed"],
        max_length=spec["cutoff"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        bf16=dtype == torch.bfloat16,  # DPOConfig's default bf16=True is ~9x slower on this kind of CPU
        use_cpu=not cuda,
        dataloader_num_workers=0,
    )
    train_set = Dataset.from_list([trl_example(r) for r in rows])
    trainer = pretokenized_trainer_class()(model=model, args=args, train_dataset=train_set,
                                           processing_class=tokenizer, peft_config=peft_config)
    counter = CompletionTokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    peak = peak_memory(spec["device"])
    history = trainer.state.log_history
    return {
        "train_seconds": seconds,
        "counted_trained_tokens": counter.trained,
        "steps": trainer.state.global_step,
        "losses": [h["loss"] for h in history if "loss" in h],
        "accuracies": [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h],
        "peak_bytes": peak,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "model_for_eval": trainer.model,
    }


def main(spec_path: str, result_path: str) -> None:
    import torch

    from ducktune.train.preference import pair_rewards

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    workdir = Path(spec["workdir"])
    side = {"baseline": run_baseline, "ducktune": run_ducktune}[spec["side"]]
    result = side(spec, workdir)
    model = result.pop("model_for_eval")
    heldout_rows, tokenizer = tokenized_pairs(spec, spec["heldout"])
    rewards = pair_rewards(model, heldout_rows, tokenizer.pad_token_id, beta=spec["train"]["beta"])
    result["heldout_reward_accuracy"], result["heldout_margin"] = rewards["accuracy"], rewards["margin"]
    rows, _ = tokenized_pairs(spec, spec["data"])
    result["dataset_trained_tokens"] = trained_tokens(rows)
    result["pairs"] = len(rows)
    result["lengths"] = [len(r[f"{side}_input_ids"]) for r in rows for side in ("chosen", "rejected")]
    result["dataset_tokens"] = sum(result["lengths"])
    result["threads"] = torch.get_num_threads()
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(*sys.argv[1:3])
