"""One side of the benchmark, run in its own process so its peak memory is its own.

    python bench/sides.py SPEC.json RESULT.json

SPEC names the side ("baseline": TRL SFTTrainer at its defaults; "tuned": TRL SFTTrainer with
gradient checkpointing off and its BFD packing when the isolation check passes; "ducktune"; "bound":
ducktune's recipe with a loss that costs nothing, `FreeLoss`, for bench/ceiling.py), the
model folder, the data file, the held-out file and the shared training settings. All sides
tokenize with ducktune's chat format (same token ids, same label masks, same sample order), train
with transformers' Trainer underneath, and are timed around `trainer.train()` only. The result:
trained tokens, train seconds, peak memory (VmHWM on CPU, max allocated on CUDA), per-step losses,
gradient checkpointing and packing as used (with TRL's packing check for "tuned"), and the loss on
the held-out samples computed by the same plain code for every side.
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
        "lora": {"r": s["lora_r"], "alpha": s["lora_alpha"], "dropout": s["lora_dropout"],
                 "fused": s.get("lora_fused", True)},  # bench/lora_addmm.py compares both
        "train": {"batch_size": s["batch_size"], "grad_accum": s["grad_accum"], "learning_rate": s["learning_rate"],
                  "max_steps": s["max_steps"], "num_epochs": 1, "warmup_ratio": s["warmup_ratio"],
                  "scheduler": "cosine", "seed": s["seed"], "logging_steps": 1,
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


# ----------------------------------------------------------------------------- the sides

class FreeLoss:
    """A micro-batch loss with no LM head and no cross-entropy: the final hidden states of the trained
    positions (those whose next token is trained, as the real loss keeps) times a fixed vector, over their
    count. Its gradient reaches every adapter through the whole decoder as the real loss's does, so a step
    with it is a real step's decoder forward and backward, optimizer and Trainer work, minus the loss."""

    def __call__(self, model, batch: dict, num_items=None):
        from ducktune.train.loss import forward_hidden

        hidden = forward_hidden(model, batch)
        keep = batch["labels"][:, 1:] != IGNORE_INDEX
        kept = hidden[:, :-1][keep]
        direction = kept.new_full((kept.shape[-1],), 1.0 / kept.shape[-1])
        return (kept @ direction).sum() / keep.sum().clamp_min(1)


def run_ducktune(spec: dict, workdir: Path, free_loss: bool = False) -> dict:
    """ducktune's own recipe, as `ducktune train` runs it (free_loss: with `FreeLoss` as its loss)."""
    from ducktune.rundir import RunDir
    from ducktune.train.recipe import train

    config = run_config(spec, str(workdir / f"{spec['side']}-run"), spec.get("packing", "auto"))
    choose = (lambda model, chunk_size, log=print: FreeLoss()) if free_loss else None
    result = train(config, log=lambda *_: None, progress=False, compare=False, choose_loss=choose)
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
        "optimizer": info["memory_plan"]["optimizer"],
        "gradient_checkpointing": bool(info["memory_plan"]["gradient_checkpointing"]),
        "packing": info["batching"]["mode"] == "packed",
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


def trl_config(spec: dict, workdir: Path, tuned: bool, packing: bool):
    """SFTConfig at TRL's defaults except the shared settings and what the CPU needs; `tuned`
    turns gradient checkpointing off, `packing` turns on TRL's BFD packing (padding-free rows)."""
    import torch
    from trl import SFTConfig

    s = spec["train"]
    cuda = spec["device"] == "cuda"
    bf16 = cuda and spec["dtype"] != "float32"
    extra = {"gradient_checkpointing": False} if tuned else {}
    if packing:
        extra |= {"packing": True, "packing_strategy": "bfd"}
    return SFTConfig(
        output_dir=str(workdir / ("tuned-run" if tuned else "baseline-run")),
        per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=s["grad_accum"],
        learning_rate=s["learning_rate"],
        num_train_epochs=1,
        max_steps=s["max_steps"] or -1,
        lr_scheduler_type="cosine",
        warmup_steps=s["warmup_ratio"],
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=s["seed"],  # optim: TRL's (transformers') default, recorded in the result
        data_seed=s["seed"],
        max_length=spec["cutoff"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        bf16=bf16,  # SFTConfig's default bf16=True is 9x slower on this kind of CPU
        use_cpu=not cuda,
        dataloader_num_workers=0,
        **extra,
    ), (torch.bfloat16 if bf16 else torch.float32)


def packing_isolation(trainer) -> dict:
    """Does TRL's packed batch give each sample the logits it gets alone, on this attention backend?

    Takes the packed row holding the most samples, collates it with the
    trainer's own collator (padding-free: position_ids, no attention mask), and compares the
    model's logits on each sample's positions with a forward of that sample alone. The control
    runs the same packed row with an all-ones attention mask (samples see each other): it must
    differ by far more, or the check could not see a leak."""
    import torch

    dataset = trainer.train_dataset
    counts = [len(lengths) for lengths in dataset["seq_lengths"]]
    index = counts.index(max(counts))
    batch = trainer.data_collator([dataset[index]])
    lengths = dataset[index]["seq_lengths"]
    model = trainer.model
    device = model.get_input_embeddings().weight.device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
    model.eval()
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]
        leaky = model(input_ids=inputs["input_ids"], attention_mask=torch.ones_like(inputs["input_ids"]),
                      use_cache=False).logits[0]
        diff = control = 0.0
        start = 0
        for n in lengths:
            alone = model(input_ids=inputs["input_ids"][:, start:start + n], use_cache=False).logits[0]
            diff = max(diff, float((packed[start:start + n] - alone).abs().max()))
            control = max(control, float((leaky[start:start + n] - alone).abs().max()))
            start += n
    model.train()
    isolated = len(lengths) > 1 and diff < 1e-3 and control > 100 * max(diff, 1e-7)
    return {"samples_in_row": len(lengths), "max_abs_diff": diff, "control_diff": control, "isolated": isolated}


def run_trl(spec: dict, workdir: Path, tuned: bool) -> dict:
    """TRL's SFTTrainer with a PEFT LoRA config. Defaults (`tuned` False): padded batches, no
    packing, its gradient-checkpointing default, its LM-head loss, except where the shared settings
    say. Tuned: gradient checkpointing off, and TRL's BFD packing if `packing_isolation` passes on
    this model and backend (else padded batches, with the reason recorded)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTTrainer

    s = spec["train"]
    torch.set_num_threads(spec["threads"])
    rows, tokenizer = tokenized(spec, spec["data"])
    train_set = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])

    def build(packing: bool):
        set_seed(s["seed"])
        args, dtype = trl_config(spec, workdir, tuned, packing)
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=dtype)
        if spec["device"] == "cuda":
            model = model.to("cuda")
        peft_config = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                                 target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                             peft_config=peft_config)
        return trainer, args

    check = None
    trainer, args = build(packing=tuned and spec.get("trl_packing", True))
    if args.packing:
        check = packing_isolation(trainer)
        if not check["isolated"]:
            trainer, args = build(packing=False)
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
        "packing": bool(args.packing),
        "packing_check": check,
        "optimizer": getattr(args.optim, "value", str(args.optim)),
        "model_for_eval": trainer.model,
    }


def main(spec_path: str, result_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    workdir = Path(spec["workdir"])
    if spec["side"] in ("ducktune", "bound"):
        result = run_ducktune(spec, workdir, free_loss=spec["side"] == "bound")
    else:
        result = run_trl(spec, workdir, tuned=spec["side"] == "tuned")
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
