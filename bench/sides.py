"""One side of the benchmark, run in its own process so its peak memory is its own.

    python bench/sides.py SPEC.json RESULT.json

SPEC names the side ("baseline" or "ducktune"), the model folder, the data file, the
held-out file and the shared training settings. Both sides tokenize with ducktune's chat
format (same token ids, same label masks, same sample order), train with transformers'
Trainer underneath, and are timed around `trainer.train()` only. The result: trained tokens,
train seconds, peak memory (VmHWM on CPU, max allocated on CUDA), per-step losses, and the
loss on the held-out samples computed by the same plain code for both sides.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ducktune.data.template import IGNORE_INDEX

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_config(spec: dict, output_dir: str, packing: str):
    from ducktune.config import RunConfig

    s = spec["train"]
    return RunConfig.model_validate({
        "model": {"name_or_path": spec["model"], "device": spec["device"], "dtype": spec["dtype"]},
        "data": {"datasets": [spec["data"]], "cutoff_len": spec["cutoff"], "val_ratio": 0.0},
        "lora": {"r": s["lora_r"], "alpha": s["lora_alpha"], "dropout": s["lora_dropout"]},
        "train": {"batch_size": s["batch_size"], "grad_accum": s["grad_accum"], "learning_rate": s["learning_rate"],
                  "max_steps": s["max_steps"], "num_epochs": 1, "warmup_ratio": s["warmup_ratio"],
                  "scheduler": "cosine", "optimizer": "adamw_torch", "seed": s["seed"], "logging_steps": 1,
                  "save_steps": 10_000, "packing": packing, "num_threads": spec["threads"]},
        "output": {"dir": output_dir, "overwrite": True},
    })


def tokenized(spec: dict, path: str):
    """(rows, tokenizer, chat format) exactly as ducktune's recipe builds them (same shuffle, same cutoff)."""
    from ducktune.config import DataConfig
    from ducktune.data.loader import load_data
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.train.tokenize import tokenize_samples

    tokenizer = load_tokenizer(spec["model"])
    chat_format = ChatFormat(tokenizer)
    data = load_data(DataConfig(datasets=[path], cutoff_len=spec["cutoff"], val_ratio=0.0),
                     seed=spec["train"]["seed"], chat_format=chat_format)
    rows, _stats, _problems = tokenize_samples(data.train, chat_format, spec["cutoff"], "assistant", False)
    return rows, tokenizer


def trained_tokens(rows: list[dict]) -> int:
    from ducktune.train.tokenize import trained_token_count

    return sum(trained_token_count(r["labels"]) for r in rows)


def peak_memory(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    from ducktune.train.memory_probe import peak_rss

    return peak_rss()


def heldout_loss(model, rows: list[dict]) -> float:
    """Mean next-token cross-entropy over the trained positions of the held-out rows: the
    model's own full-logits loss, one sample at a time, weighted by trained tokens."""
    import torch

    device = model.get_input_embeddings().weight.device
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor([row["labels"]], device=device)
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())
            if n:
                total += float(model(input_ids=ids, labels=labels, use_cache=False).loss) * n
                count += n
    return total / max(count, 1)


# ----------------------------------------------------------------------------- the two sides

def run_ducktune(spec: dict, workdir: Path) -> dict:
    """ducktune's own recipe, as `ducktune train` runs it."""
    from ducktune.rundir import RunDir
    from ducktune.train.recipe import train

    config = run_config(spec, str(workdir / "ducktune-run"), spec.get("packing", "auto"))
    result = train(config, log=lambda *_: None, progress=False, compare=False)
    info = result.info
    peak = peak_memory(spec["device"])  # before anything else is loaded
    metrics = RunDir(result.run_dir).read_metrics()
    model = _adapter_model(spec, result.run_dir / "adapter")
    return {
        "train_seconds": info["result"]["train_seconds"],
        "counted_trained_tokens": info["result"]["trained_tokens"],
        "steps": info["result"]["global_step"],
        "losses": [m["loss"] for m in metrics if m.get("loss") is not None],
        "peak_bytes": peak,
        "plan_bytes": info["memory_plan"]["peak_bytes"],
        "plan": {k: info["memory_plan"][k] for k in ("batch_size", "grad_accum", "gradient_checkpointing",
                                                      "loss_chunk_size", "row_tokens")},
        "batching": info["batching"]["mode"],
        "model_for_eval": model,
    }


def _adapter_model(spec: dict, adapter: Path):
    from peft import PeftModel

    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model

    base = load_model(spec["model"], choose_placement(spec["device"], spec["dtype"]))
    return PeftModel.from_pretrained(base, str(adapter))


class TrainedTokenCounter:
    """Wraps a collator and counts labels != IGNORE_INDEX in what it hands out (as DucktuneTrainer does)."""

    def __init__(self, collator):
        self.collator = collator
        self.trained = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.trained += int((batch["labels"] != IGNORE_INDEX).sum())
        return batch


def run_baseline(spec: dict, workdir: Path) -> dict:
    """TRL's SFTTrainer with a PEFT LoRA config, at TRL's defaults (padded batches, no packing,
    its gradient-checkpointing default, its LM-head loss) except where the shared settings say."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTConfig, SFTTrainer


    s = spec["train"]
    torch.set_num_threads(spec["threads"])
    set_seed(s["seed"])
    rows, tokenizer = tokenized(spec, spec["data"])
    cuda = spec["device"] == "cuda"
    dtype = torch.bfloat16 if cuda and spec["dtype"] != "float32" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=dtype)
    if cuda:
        model = model.to("cuda")
    peft_config = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                             target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(workdir / "baseline-run"),
        per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=s["grad_accum"],
        learning_rate=s["learning_rate"],
        num_train_epochs=1,
        max_steps=s["max_steps"] or -1,
        lr_scheduler_type="cosine",
        warmup_steps=s["warmup_ratio"],
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=s["seed"],
        data_seed=s["seed"],
        max_length=spec["cutoff"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        bf16=dtype == torch.bfloat16,  # SFTConfig's default bf16=True is 9x slower on this kind of CPU
        use_cpu=not cuda,
        dataloader_num_workers=0,
    )
    train_set = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                         peft_config=peft_config)
    counter = TrainedTokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    peak = peak_memory(spec["device"])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "train_seconds": seconds,
        "counted_trained_tokens": counter.trained,
        "steps": trainer.state.global_step,
        "losses": losses,
        "peak_bytes": peak,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "model_for_eval": trainer.model,
    }


def main(spec_path: str, result_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    workdir = Path(spec["workdir"])
    side = {"baseline": run_baseline, "ducktune": run_ducktune}[spec["side"]]
    result = side(spec, workdir)
    model = result.pop("model_for_eval")
    heldout_rows, _ = tokenized(spec, spec["heldout"])
    result["heldout_loss"] = heldout_loss(model, heldout_rows)
    rows, _ = tokenized(spec, spec["data"])
    result["dataset_trained_tokens"] = trained_tokens(rows)
    result["lengths"] = [len(r["input_ids"]) for r in rows]
    result["dataset_tokens"] = sum(result["lengths"])
    result["threads"] = torch.get_num_threads()
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
