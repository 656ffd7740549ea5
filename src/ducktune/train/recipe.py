"""One training run, top to bottom.

    config -> device/dtype -> base model folder -> tokenizer + chat format
    -> data (load, validate, mix) -> tokens + loss masks -> memory plan (refuse what cannot fit)
    -> run directory -> model + LoRA -> batching (packed rows, proven isolated) + chunked loss
    -> Trainer -> (resume from the last complete checkpoint) -> train -> adapter -> report

Each step is a plain function call into the module that owns it; the Trainer loop itself is
transformers' own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ducktune.config import RunConfig, dump_config, load_config
from ducktune.data.template import IGNORE_INDEX
from ducktune.errors import ConfigError, DataError, UserError
from ducktune.io import atomic_dir, write_json, write_text
from ducktune.rundir import RunDir


@dataclass
class TrainResult:
    run_dir: Path
    info: dict
    comparison: list[dict]


# ----------------------------------------------------------------------------- run directory

def _config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for cfg in (a, b):
        cfg["output"].pop("overwrite", None)
    diffs = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{prefix}{key}.")
        elif x != y:
            diffs.append(f"{prefix[:-1]}: {x!r} -> {y!r}")

    walk(a, b, "")
    return diffs


def prepare_run_dir(config: RunConfig, log=print, require_resume: bool = False) -> tuple[RunDir, bool]:
    """Create the run directory, or decide to resume the run already in it. Returns (run, resuming)."""
    run = RunDir(config.output.dir)
    fresh = not run.path.exists() or not any(run.path.iterdir())
    if require_resume and (fresh or config.output.overwrite or not run.exists()):
        raise UserError(f"{run.path}: no unfinished run to resume; drop --resume to start one")
    if fresh or config.output.overwrite:
        if run.path.exists() and config.output.overwrite and any(run.path.iterdir()):
            # Keep the old run until the new one replaces it: move it aside, never delete on the user's behalf.
            aside = run.path.with_name(f"{run.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            run.path.rename(aside)
            log(f"Moved the previous run aside to {aside}")
        run.path.mkdir(parents=True, exist_ok=True)
        return run, False
    if not run.exists():
        raise UserError(f"{run.path}: folder exists and is not a ducktune run; choose another output.dir")
    info = run.info()
    if info.get("status") == "completed":
        raise UserError(f"{run.path}: already holds a finished run; set output.overwrite=true or choose another output.dir")
    previous = load_config(run.config_yaml)
    diffs = _config_differences(previous, config)
    if diffs:
        raise ConfigError(f"{run.path}: cannot resume with a different config ({'; '.join(diffs[:3])}); "
                          "set output.overwrite=true or choose another output.dir")
    return run, True


# ----------------------------------------------------------------------------- data -> tokens

@dataclass
class TokenizedData:
    train: list[dict]
    val: list[dict]
    stats: dict


def tokenize_samples(samples, chat_format, cutoff: int, train_on: str, skip_bad: bool) -> tuple[list[dict], dict, list[str]]:
    rows, problems = [], []
    truncated = dropped = 0
    for sample in samples:
        try:
            encoded = chat_format.encode(sample, cutoff, train_on)
        except DataError as exc:
            problems.append(f"{sample.where}: messages: {exc.message}")
            continue
        truncated += encoded.truncated
        labels = [IGNORE_INDEX] + list(encoded.labels[1:])  # no position predicts the first token
        if all(label == IGNORE_INDEX for label in labels):
            dropped += 1  # everything trainable was cut off by the cutoff
            continue
        rows.append({"input_ids": encoded.input_ids, "labels": labels})
    if problems and not skip_bad:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError("\n".join(shown + [f"{len(problems)} samples cannot be rendered with the chat template; "
                                          "fix them or pass --skip-bad"]))
    lengths = sorted(len(r["input_ids"]) for r in rows)
    stats = {
        "samples": len(rows),
        "truncated": truncated,
        "dropped": dropped,
        "template_errors": len(problems),
        "tokens": sum(lengths),
        "trained_tokens": sum(sum(1 for x in r["labels"] if x != -100) for r in rows),
        "max_len": lengths[-1] if lengths else 0,
        "median_len": lengths[len(lengths) // 2] if lengths else 0,
    }
    return rows, stats, problems


def probe_prompts(config: RunConfig, samples, limit: int = 5) -> list[str]:
    if config.eval.probe_prompts:
        return list(config.eval.probe_prompts)
    prompts: list[str] = []
    for sample in samples:
        users = [m.content for m in sample.messages if m.role == "user"]
        if users and users[-1] not in prompts:
            prompts.append(users[-1])
        if len(prompts) >= limit:
            break
    return prompts


# ----------------------------------------------------------------------------- several processes

def _do_nothing(*args, **kwargs) -> None:
    """Stands in for `log` and `write_json` on processes other than the main one."""


@dataclass
class DistributedRun:
    """This process's place in a torchrun / accelerate launch (one process: rank 0 of 1).

    The process group is accelerate's (the engine the Trainer runs on), set up here early so the
    run directory can be prepared by the main process before the others read it.
    """

    rank: int = 0
    world_size: int = 1

    @staticmethod
    def rank_from_environment() -> int:
        import os

        return int(os.environ.get("RANK", "0"))

    @classmethod
    def from_environment(cls, cpu: bool) -> "DistributedRun":
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        # cpu=True as the Trainer will ask (use_cpu): without it accelerate sees no GPU and no
        # process group, and every process would think it is the only one.
        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.world_size > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()  # the state set up in from_environment

    def on_main_then_shared(self, work):
        """Run `work` on the main process only; every process gets its result (or its error)."""
        if self.world_size == 1:
            return work()
        import torch.distributed as torch_dist

        box = [None]
        if self.is_main:
            try:
                box[0] = ("ok", work())
            except Exception as exc:  # the other processes stop with the same message
                box[0] = ("error", exc)
        torch_dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value


# ----------------------------------------------------------------------------- memory plan

def plan_memory(config: RunConfig, base_folder: Path, placement, train_rows: list[dict], log=print):
    """Plan this run's memory (train/plan.py) within train.memory_budget or the free memory.

    A run being resumed keeps the micro-batch, accumulation and checkpointing it started with.
    Raises ConfigError, in one line saying what to change, when nothing fits.
    """
    from ducktune.models.loading import model_config
    from ducktune.train import plan

    try:
        budget = plan.parse_memory(config.train.memory_budget) if config.train.memory_budget \
            else plan.available_memory(placement.device)
    except ValueError as exc:
        raise ConfigError(f"train.memory_budget: {exc}") from None
    previous = _previous_plan(config)
    memory = plan.plan_run(config, model_config(base_folder), placement.device, placement.dtype,
                           train_rows, budget, keep=previous)
    if not memory.fits:
        raise ConfigError(f"memory plan: {memory.problem}")
    log(memory.summary())
    for note in memory.notes:
        log(f"  {note}")
    return memory


def _previous_plan(config: RunConfig) -> dict | None:
    run_json = Path(config.output.dir) / "run.json"
    if config.output.overwrite or not run_json.is_file():
        return None
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return info.get("memory_plan") if info.get("status") != "completed" else None


# ----------------------------------------------------------------------------- the run

def train(config: RunConfig, log=print, progress: bool = True, compare: bool = True,
          require_resume: bool = False) -> TrainResult:
    import torch
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ducktune.data.loader import load_data
    from ducktune.data.template import ChatFormat
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import estimate_params, load_model, load_tokenizer, model_config
    from ducktune.models.sources import resolve_model
    from ducktune.train.callbacks import MetricsWriter, ProgressBar
    from ducktune.train.checkpoints import checkpoint_step, latest_complete
    from ducktune.train.lora import attach_lora
    from ducktune.train.loss import choose_loss
    from ducktune.train.packing import choose_batching, restore_attention
    from ducktune.train.plan import peak_rss, return_freed_memory_to_os
    from ducktune.train.report import plot_loss, write_report
    from ducktune.train.trainer import DucktuneTrainer

    tc = config.train
    # Under torchrun / accelerate launch, every process runs this file; only the main one writes
    # the run directory (the Trainer itself writes checkpoints from the main process only).
    if DistributedRun.rank_from_environment() != 0:
        log = _do_nothing
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    set_seed(tc.seed)

    # 1. Base model folder, device and dtype, tokenizer and chat format.
    base_folder = resolve_model(config.model.name_or_path, config.model.revision, log=log)
    n_params = estimate_params(model_config(base_folder))
    placement = choose_placement(config.model.device, config.model.dtype, n_params)
    dist = DistributedRun.from_environment(cpu=placement.device == "cpu")
    if placement.device == "cpu":
        return_freed_memory_to_os()  # peak RSS then follows live tensors, as the memory plan predicts
    tokenizer = load_tokenizer(base_folder, config.model.chat_template, config.model.trust_remote_code,
                               config.model.enable_thinking)
    chat_format = ChatFormat(tokenizer, system_prompt=config.model.system_prompt)

    # 2. Data: every problem is reported before anything is written or loaded.
    data = load_data(config.data, seed=tc.seed, chat_format=chat_format)
    train_rows, train_stats, problems = tokenize_samples(
        data.train, chat_format, config.data.cutoff_len, config.data.train_on, config.data.skip_bad)
    val_rows, val_stats, _ = tokenize_samples(
        data.val, chat_format, config.data.cutoff_len, config.data.train_on, config.data.skip_bad)
    if not train_rows:
        raise DataError("no training samples left after templating and the cutoff "
                        f"(data.cutoff_len={config.data.cutoff_len}); raise the cutoff or check the data")
    log(f"Data: {len(train_rows)} train / {len(val_rows)} validation samples, {train_stats['trained_tokens']} trained tokens"
        + (f"; {train_stats['truncated']} truncated at {config.data.cutoff_len} tokens" if train_stats["truncated"] else "")
        + (f"; {data.skipped + len(problems)} bad records skipped" if data.skipped or problems else ""))

    # 3. Memory plan from the model's config: choose micro-batch / accumulation / checkpointing
    #    within the budget, or refuse now rather than run out of memory an hour in.
    memory = plan_memory(config, base_folder, placement, train_rows, log=log)
    batch_size, grad_accum = memory.setup.batch_size, memory.setup.grad_accum
    gradient_checkpointing = memory.setup.checkpointing

    # 4. Run directory (after validation and planning, so refused input leaves nothing behind).
    run, resuming = dist.on_main_then_shared(lambda: prepare_run_dir(config, log=log, require_resume=require_resume))
    save_json = write_json if dist.is_main else _do_nothing
    if dist.is_main:
        write_text(run.config_yaml, dump_config(config))
    info = {
        "status": "running",
        "method": tc.method,
        "base_model": {"name_or_path": config.model.name_or_path, "resolved": str(base_folder), "params": n_params},
        "placement": {"device": placement.device, "dtype": placement.dtype, "reason": placement.reason},
        "chat_format": {"stop_tokens": chat_format.stop_tokens, "eot_token": chat_format.eot_token,
                        "inserted_eos": chat_format.inserted_eos, "system_prompt": config.model.system_prompt},
        "data": {"train_samples": len(train_rows), "val_samples": len(val_rows), "cutoff_len": config.data.cutoff_len,
                 "truncated": train_stats["truncated"], "dropped": train_stats["dropped"],
                 "skipped_bad": data.skipped + len(problems), "duplicates_removed": data.duplicates_removed,
                 "trained_tokens": train_stats["trained_tokens"], "tokens": train_stats["tokens"]},
        "probe_prompts": probe_prompts(config, data.train),
        "memory_plan": memory.to_json(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    save_json(run.run_json, info)

    # 5. Model and adapters.
    log(f"Loading {config.model.name_or_path} on {placement.device} ({placement.dtype}: {placement.reason})")
    model = load_model(base_folder, placement, quantize_4bit=tc.method == "qlora",
                       trust_remote_code=config.model.trust_remote_code)
    if tc.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if tc.method in ("lora", "qlora"):
        model, targets = attach_lora(model, config.lora)
        info["lora_targets"] = targets
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"LoRA r={config.lora.r} on {', '.join(targets)}: {trainable:,} trainable parameters")
    if gradient_checkpointing:
        model.enable_input_require_grads()

    # 6. Batching and loss, each switched on only after it is proven exact on this very model:
    #    packed rows (or padding-free batches) with attention confined to each sample, and the
    #    chunked cross-entropy on trained positions only.
    batching = choose_batching(model, tc.packing, placement.device, log=log)
    loss_chunk_size = choose_loss(model, memory.setup.loss_chunk_size, log=log)
    info["batching"] = {"mode": batching.mode, "reason": batching.reason, "chunked_loss": bool(loss_chunk_size)}
    train_set = batching.dataset(train_rows, config.data.cutoff_len)
    val_set = batching.dataset(val_rows, config.data.cutoff_len) if val_rows else None
    save_json(run.run_json, info)

    # 7. The Trainer, configured from the one schema.
    half = {"bf16": placement.dtype == "bfloat16", "fp16": placement.dtype == "float16" and placement.device == "cuda"}
    has_val = bool(val_rows)
    args = TrainingArguments(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=tc.learning_rate,
        num_train_epochs=tc.num_epochs,
        max_steps=tc.max_steps or -1,
        lr_scheduler_type=tc.scheduler,
        warmup_steps=tc.warmup_steps if tc.warmup_steps is not None else tc.warmup_ratio,
        weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm,
        optim=tc.optimizer,
        seed=tc.seed,
        data_seed=tc.seed,
        logging_steps=tc.logging_steps,
        save_strategy="steps",
        save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit,
        eval_strategy="steps" if has_val else "no",
        eval_steps=(tc.eval_steps or tc.save_steps) if has_val else None,
        activation_checkpointing=gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        use_cpu=placement.device == "cpu",
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length" if batching.mode == "padded" else "random",
        dataloader_num_workers=0,
        **half,
    )
    # Only the main process renames half-written checkpoints aside; the others then see the same list.
    resume_from = dist.on_main_then_shared(lambda: latest_complete(run.checkpoints, quarantine=dist.is_main)) \
        if resuming else None
    if resuming:
        log(f"Resuming from {resume_from}" if resume_from else "No complete checkpoint yet: starting this run from step 0")
    trainer = DucktuneTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=batching.collator(tokenizer.pad_token_id),
        loss_chunk_size=loss_chunk_size,
        callbacks=[MetricsWriter(run.metrics, checkpoint_step(resume_from) or 0 if resume_from else 0),
                   ProgressBar(enabled=progress)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    # 8. Train. An interruption leaves the last complete checkpoint to resume from.
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        info["status"] = "interrupted"
        save_json(run.run_json, info)
        raise UserError(f"interrupted; rerun the same command to resume {run.path} from its last checkpoint") from None
    except BaseException:
        info["status"] = "failed"
        save_json(run.run_json, info)
        raise
    train_seconds = time.perf_counter() - started
    trained_tokens = trainer.total_trained_tokens()
    restore_attention(trainer.model, batching.previous_attention)

    # 9. Save the adapter (or full model) with the tokenizer and chat template, atomically.
    if not dist.is_main:
        dist.wait()  # the main process saves, compares and reports; the others are done
        return TrainResult(run.path, info, [])
    target = run.full_model if tc.method == "full" else run.adapter
    with atomic_dir(target) as tmp:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    metrics = run.read_metrics()
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    evals = [m["eval_loss"] for m in metrics if m.get("eval_loss") is not None]
    if has_val:
        evals.append(trainer.evaluate()["eval_loss"])
    info["result"] = {
        "global_step": trainer.state.global_step,
        "final_loss": losses[-1] if losses else output.training_loss,
        "first_loss": losses[0] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "train_seconds": train_seconds,
        "trained_tokens": trained_tokens,
        "tokens_per_s": trained_tokens / train_seconds if train_seconds else 0.0,
        "peak_rss_bytes": peak_rss() if placement.device == "cpu" else None,
    }
    plot_loss(metrics, run.loss_png)

    # 10. Base vs tuned answers on the probe prompts, into the report.
    comparison = []
    if compare and info["probe_prompts"] and tc.method != "full":
        from ducktune.chat.compare import compare_answers
        from ducktune.chat.engine import ChatEngine

        engine = ChatEngine(trainer.model, tokenizer, chat_format, name=run.path.name, has_adapter=True)
        comparison = compare_answers(engine, info["probe_prompts"], config.eval.max_new_tokens)
        write_json(run.path / "comparison.json", comparison)
    info["status"] = "completed"
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    save_json(run.run_json, info)
    write_report(run.report, info, dump_config(config), comparison)
    log(f"Done: {run.path} (final loss {info['result']['final_loss']:.4f}, {train_seconds:.0f} s)")
    dist.wait()
    return TrainResult(run.path, info, comparison)
