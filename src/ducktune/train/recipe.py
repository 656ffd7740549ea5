"""One training run, top to bottom.

    config -> device/dtype -> base model folder -> tokenizer + chat format
    -> data (load, validate, mix) -> tokens + loss masks -> memory plan (refuse what cannot fit)
    -> run directory -> model + LoRA -> batching (packed rows, proven isolated) + chunked loss
    -> Trainer -> (resume from the last complete checkpoint) -> train -> adapter -> report

`train()` is that list of steps; each `_setup_*` step takes what it needs as arguments and
calls into the module that owns the work (tokenize.py, plan.py, packing.py, loss.py, ...).
The Trainer loop itself is transformers' own. How rows are batched and the micro-batch loss
are parameters (`choose_batching`, `choose_loss`), as mlx-lm's trainer takes
`iterate_batches` and `loss`. Preference objectives (train.objective dpo | orpo | simpo | kto)
take the same steps with their own data rows, batching and loss (train/preference.py).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ducktune.config import REFERENCE_OBJECTIVES, RunConfig, dump_config, load_config
from ducktune.errors import ConfigError, DataError, UserError
from ducktune.io import atomic_dir, disk_full, holds_working_folder, write_json, write_text
from ducktune.rundir import RunDir, WriterLock
from ducktune.train.distributed import DistributedRun, do_nothing


@dataclass
class TrainResult:
    run_dir: Path
    info: dict
    comparison: list[dict]


# ----------------------------------------------------------------------------- run directory

# Options a resumed run may change: they do not touch the training trajectory (CPU threads; the
# length of the answers compared after training; how often checkpoints are saved, how many are kept
# and how often the loss is logged).
RESUME_MAY_CHANGE = (("output", "overwrite"), ("train", "num_threads"), ("eval", "max_new_tokens"),
                     ("train", "save_steps"), ("train", "save_total_limit"), ("train", "logging_steps"))


def _config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for cfg in (a, b):
        for section, key in RESUME_MAY_CHANGE:
            cfg[section].pop(key, None)
        # The same folder, named relative to the working folder or absolutely.
        cfg["output"]["dir"] = os.path.abspath(os.path.expanduser(cfg["output"]["dir"]))
    diffs = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{prefix}{key}.")
        elif x != y:
            diffs.append(f"{prefix[:-1]}: {x!r} -> {y!r}")

    walk(a, b, "")
    return diffs


def prepare_run_dir(config: RunConfig, log=print, require_resume: bool = False,
                    lock: WriterLock | None = None, data_fingerprint: str | None = None) -> tuple[RunDir, bool]:
    """Create the run directory, or decide to resume the run already in it, holding `lock` on it
    (a second writer is refused). A resume needs the same config and, when `data_fingerprint` is
    given, the same tokenized data as the run recorded. Returns (run, resuming)."""
    run = RunDir(config.output.dir)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"{run.path}: output.dir is a file, not a folder; choose another output.dir (-o)")
    if lock is not None and run.path.is_dir():
        lock.acquire(run.path)  # before looking inside
    fresh = refuse_output_dir(config, require_resume)
    if fresh or config.output.overwrite:
        if run.path.exists() and config.output.overwrite and any(run.path.iterdir()):
            # Keep the old run until the new one replaces it: move it aside, never delete on the user's behalf.
            here = Path(os.path.abspath(run.path))  # "." has no name to put ".old-..." after
            if holds_working_folder(here):
                raise UserError(f"{run.path}: output.overwrite would move the current folder aside; "
                                "run from another folder or choose another output.dir (-o)")
            aside = _unused_name(here.with_name(f"{here.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
            try:
                run.path.rename(aside)
            except OSError as exc:  # a mount point (EBUSY), a read-only parent folder
                where = " (a mount point cannot be moved)" if exc.errno == errno.EBUSY else ""
                raise UserError(f"{run.path}: output.overwrite cannot move the previous run aside: {exc.strerror}"
                                f"{where}; choose another output.dir (-o), or empty this folder yourself") from None
            log(f"Moved the previous run aside to {aside}")
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, a read-only or virtual file system
            raise UserError(f"{run.path}: cannot create output.dir ({exc.strerror}); choose another output.dir (-o)") from None
        if lock is not None:
            lock.acquire(run.path)
        for leftover in [p for p in run.path.iterdir() if _before_run_json(run, p)]:
            leftover.unlink()  # a start killed before run.json; this writer holds the lock now
        if lock is not None and any(run.path.iterdir()):
            raise UserError(f"{run.path}: another process started writing to it at the same moment; run this again")
        return run, False
    info = run.info()
    recorded = (info.get("data") or {}).get("fingerprint")
    if data_fingerprint and recorded and recorded != data_fingerprint:
        samples = (info.get("data") or {}).get("train_samples")
        raise ConfigError(f"{run.path}: cannot resume: the training data changed since the run started "
                          f"(it had {samples} training samples; the steps already taken were on that data); "
                          "restore the data, or set output.overwrite=true to start afresh")
    return run, True


def refuse_output_dir(config: RunConfig, require_resume: bool = False) -> bool:
    """Raise what output.dir refuses before anything is written: a file, a foreign folder, a finished
    run (without output.overwrite), an unfinished one whose config differs, --resume with nothing to
    resume. Reads only, so `train` asks it first, before loading the model and data (a refusal after
    minutes of data loading), and again under the run's lock. Returns whether the folder is fresh."""
    run = RunDir(config.output.dir)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"{run.path}: output.dir is a file, not a folder; choose another output.dir (-o)")
    fresh = not run.path.exists() or not any(p for p in run.path.iterdir() if not _before_run_json(run, p))
    if require_resume and (fresh or config.output.overwrite or not run.exists()):
        raise UserError(f"{run.path}: no unfinished run to resume; drop --resume to start one")
    if fresh or config.output.overwrite:
        return fresh
    if not run.exists():
        raise UserError(f"{run.path}: folder exists and is not a ducktune run; choose another output.dir (-o)")
    finished, diffs = continuation_problem(run, config)
    if finished:
        raise UserError(f"{run.path}: already holds a finished run; pass --overwrite (output.overwrite=true) to move "
                        "it aside and train again, or choose another output.dir (-o)")
    if diffs:
        raise ConfigError(f"{run.path}: cannot resume with a different config ({'; '.join(diffs[:3])}); "
                          "set output.overwrite=true or choose another output.dir (-o)")
    return False


def continuation_problem(run: RunDir, config: RunConfig) -> tuple[bool, list[str]]:
    """Why `config` cannot continue the run in `run`: (it is finished, what `config` changes of the
    config it started with). Training and the web UI's form refuse on it, each in its own words."""
    if run.info().get("status") == "completed":
        return True, []
    return False, resume_config_changes(run, config)


def resume_config_changes(run: RunDir, config: RunConfig) -> list[str]:
    """What `config` changes from the config the unfinished run in `run` started with: what a resume
    refuses ('key: old -> new' each); none without a recorded config."""
    if not run.config_yaml.is_file():
        return []
    return _config_differences(load_config(run.config_yaml), config)


def _before_run_json(run: RunDir, path: Path) -> bool:
    """What a start killed before run.json existed leaves: config.yaml (written first) and a dead
    writer's temporary. Such a folder starts afresh instead of passing for a stranger's folder."""
    return not run.run_json.exists() and (path == run.config_yaml or (path.name.startswith(".")
                                                                       and path.name.endswith(".tmp")))


def _unused_name(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, ... : the first that does not exist (two overwrites in one second)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


# ----------------------------------------------------------------------------- the steps

@dataclass
class BaseModel:
    """The resolved base model before any weights are loaded."""

    folder: Path
    params: int
    placement: object  # models.device.Placement
    tokenizer: object
    chat_format: object  # data.template.ChatFormat


def _setup_base_model(config: RunConfig, log) -> BaseModel:
    """Base model folder, device and dtype, tokenizer and chat format (no weights loaded).

    Checks that need only the resolved folder and tokenizer belong here, before data is read or
    anything is written (whether the model exports to GGUF is asked by `ducktune train` before this:
    the export layer sits beside this one).
    """
    from ducktune.data.template import prompting_chat_format
    from ducktune.errors import ModelError
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import (check_weights, estimate_params, load_tokenizer,
                                         model_config, qlora_support)
    from ducktune.models.prequant import bnb_bits, is_bitsandbytes
    from ducktune.models.sources import resolve_model

    folder = resolve_model(config.model.name_or_path, config.model.revision, log=log)
    model_json = model_config(folder)
    check_weights(folder, config.model.trust_remote_code, config.model.name_or_path)
    params = estimate_params(model_json)
    placement = choose_placement(config.model.device, config.model.dtype, params)
    prequantized = is_bitsandbytes(model_json)
    if prequantized and config.train.method == "full":
        raise ModelError(f"{folder / 'config.json'}: the weights are bitsandbytes {bnb_bits(model_json)}-bit, which a full "
                         "fine-tune cannot update: use train.method=lora (it trains as QLoRA) or the full-precision repository")
    problem = qlora_support(model_json, placement.device) if config.train.method == "qlora" or prequantized else None
    if problem:
        raise ModelError(f"{folder}: QLoRA {problem}")
    if config.train.packing == "on":
        from ducktune.train.packing import config_packing_blocker, packing_on_error

        blocker = config_packing_blocker(model_json, config.model.trust_remote_code)
        if blocker:
            raise ConfigError(packing_on_error(blocker))
    if config.model.adapter:  # a missing or foreign adapter is refused before anything is written
        from ducktune.train.lora import adapter_for_base

        adapter_for_base(config.model.adapter, folder)
    elif config.train.method != "full":
        from ducktune.train.lora import check_lora_targets

        check_lora_targets(model_json, config.lora)
    tokenizer = load_tokenizer(folder, config.model.chat_template, config.model.trust_remote_code,
                               config.model.enable_thinking)
    chat_format = prompting_chat_format(tokenizer, folder, config.model.system_prompt)
    return BaseModel(folder, params, placement, tokenizer, chat_format)


@dataclass
class PreparedData:
    train_rows: list[dict]
    val_rows: list[dict]
    train_stats: dict
    skipped: int  # bad records skipped while loading or templating
    duplicates_removed: int
    probe_prompts: list[str]
    tool_samples: int = 0  # training samples with tool definitions, calls or results (export names what Ollama lacks)
    probe_tools: list | None = None  # each probe prompt's tools (train.tokenize.probe_tools), None without any


def _setup_data(config: RunConfig, base: "BaseModel", dist: DistributedRun, log) -> PreparedData:
    """Load, validate and tokenize the data (plus data.replay's base-model answers): every problem is
    reported before anything is written."""
    from ducktune.data.loader import load_data, unused_note
    from ducktune.train.replay import replay_samples
    from ducktune.train.tokenize import probe_prompts, probe_tools, tokenize_samples

    dc, chat_format = config.data, base.chat_format
    if config.train.objective != "sft":  # preference pairs: train/preference.py
        from ducktune.train.preference import prepare_preference_data

        return PreparedData(*prepare_preference_data(config, chat_format, log))
    data = load_data(dc, seed=config.train.seed, chat_format=chat_format)
    # Generated once per base model and cached: the main process makes them, the others read them.
    replay = dist.on_main_then_shared(lambda: replay_samples(config, len(data.train), base.folder, chat_format, log=log))
    train_rows, train_stats, problems = tokenize_samples(data.train + replay, chat_format, dc.cutoff_len, dc.train_on,
                                                         dc.skip_bad)
    val_rows, _, _ = tokenize_samples(data.val, chat_format, dc.cutoff_len, dc.train_on, dc.skip_bad)
    if not train_rows:
        if train_stats["untrained"] and not train_stats["dropped"]:
            raise DataError(f"no training samples: every answer of the {train_stats['untrained']} samples is marked "
                            "untrained (\"weight\": 0); mark the answers to learn with weight 1")
        raise DataError("no training samples left after templating and the cutoff "
                        f"(data.cutoff_len={dc.cutoff_len}); raise the cutoff or check the data")
    skipped = data.skipped + len(problems)
    log(f"Data: {len(train_rows)} train / {len(val_rows)} validation samples, {train_stats['trained_tokens']} trained tokens"
        + (f"; {train_stats['truncated']} truncated at {dc.cutoff_len} tokens" if train_stats["truncated"] else "")
        + (f"; {train_stats['untrained']} with no trained answer (\"weight\": 0) left out" if train_stats["untrained"]
           else "")
        + (f"; {skipped} bad records skipped" if skipped else "")
        + (f"; {data.duplicates_removed} duplicates removed (data.dedupe)" if data.duplicates_removed else ""))
    if note := unused_note(data):
        log(f"Note: {note}")
    prompts = probe_prompts(config, data.train)
    return PreparedData(train_rows, val_rows, train_stats, skipped, data.duplicates_removed, prompts,
                        sum(1 for s in data.train if s.uses_tools), probe_tools(config, data.train, prompts))


def data_fingerprint(data: PreparedData) -> str:
    """A hash of the tokenized training and validation rows, in training order: what a resume must
    find unchanged (the config alone does not show an edited data file)."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for rows in (data.train_rows, data.val_rows):
        for row in rows:
            digest.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"|")
    return digest.hexdigest()[:16]


def _run_info(config: RunConfig, base: BaseModel, data: PreparedData, memory) -> dict:
    """run.json at the start of a run (status running)."""
    placement, chat_format, stats = base.placement, base.chat_format, data.train_stats
    return {
        "status": "running",
        "method": config.train.method,
        "objective": config.train.objective,
        "base_model": {"name_or_path": config.model.name_or_path, "resolved": str(base.folder), "params": base.params},
        "started_from": config.model.adapter,  # the adapter this run continued (model.adapter), if any
        "placement": {"device": placement.device, "dtype": placement.dtype, "reason": placement.reason},
        "chat_format": {"stop_tokens": chat_format.stop_tokens, "eot_token": chat_format.eot_token,
                        "inserted_eos": chat_format.inserted_eos, "system_prompt": config.model.system_prompt},
        "data": {"train_samples": len(data.train_rows), "val_samples": len(data.val_rows),
                 "cutoff_len": config.data.cutoff_len, "truncated": stats["truncated"], "dropped": stats["dropped"],
                 "skipped_bad": data.skipped, "duplicates_removed": data.duplicates_removed,
                 "trained_tokens": stats["trained_tokens"], "tokens": stats["tokens"],
                 "tool_samples": data.tool_samples, "fingerprint": data_fingerprint(data)},
        "probe_prompts": data.probe_prompts,
        **({"probe_tools": data.probe_tools} if data.probe_tools else {}),
        "memory_plan": memory.to_json(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _setup_model(config: RunConfig, base: BaseModel, checkpointing: bool, log) -> tuple[object, list[str] | None]:
    """The base model on its device with LoRA attached (QLoRA: 4-bit first). Returns (model, LoRA targets)."""
    from ducktune.models.loading import load_model, model_config
    from ducktune.models.prequant import bnb_bits, is_bitsandbytes
    from ducktune.train.lora import attach_lora, unadapted_note

    method, placement = config.train.method, base.placement
    log(f"Loading {config.model.name_or_path} on {placement.device} ({placement.dtype}: {placement.reason})")
    model = load_model(base.folder, placement, quantize_4bit=method == "qlora",
                       trust_remote_code=config.model.trust_remote_code)
    model_json = model_config(base.folder)
    if prequantized := is_bitsandbytes(model_json):
        log(f"The checkpoint is already bitsandbytes {bnb_bits(model_json)}-bit: "
            f"train.method={method} trains on it as QLoRA")
    if method == "qlora" or prequantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    targets = None
    if method in ("lora", "qlora"):
        model, targets = attach_lora(model, config.lora, start_from=config.model.adapter,
                                     reference_copy=config.train.objective in REFERENCE_OBJECTIVES)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"LoRA r={config.lora.r} on {', '.join(targets)}: {trainable:,} trainable parameters")
        if config.lora.target_modules == "all-linear" and (note := unadapted_note(model)):
            log(note)  # a target list leaves out what the user chose to
    if checkpointing:
        model.enable_input_require_grads()
    return model, targets


def default_batching_choice(rows: list[dict]):
    """packing.choose_batching told the data's longest sample, which decides whether it outruns a sliding window
    (packing.cuda_band_blocker)."""
    from ducktune.train.packing import choose_batching, longest_sample_tokens

    return functools.partial(choose_batching, longest_sample=longest_sample_tokens(rows))


def _setup_batching_and_loss(model, config: RunConfig, base: BaseModel, rows: list[dict], memory, keep: dict | None,
                             choose_batching, choose_loss, log):
    """Batching and loss, each switched on only after it is proven exact on this very model:
    packed rows (or padding-free batches) with attention confined to each sample, and the
    chunked cross-entropy on trained positions only. When the batching differs from the mode
    the memory was planned for, plans again for it. Returns (Batching, loss or None, plan)."""
    from ducktune.models.loading import model_config
    from ducktune.train.plan import plan_memory

    if config.train.objective != "sft":  # padded pairs and the preference loss: train/preference.py
        from ducktune.train.preference import choose_preference_batching_and_loss

        return choose_preference_batching_and_loss(model, config, memory, choose_loss, log) + (memory,)
    if choose_batching is None:
        choose_batching = default_batching_choice(rows)
    if choose_loss is None:
        from ducktune.train.loss import choose_loss
    batching = choose_batching(model, config.train.packing, base.placement.device, log=log)
    if batching.mode != memory.batching:
        log(f"Planning memory again for {batching.mode} batches")
        checkpointing_was_planned = memory.setup.checkpointing
        memory = plan_memory(config, model_config(base.folder), base.placement, rows, keep=keep,
                             batching=batching.mode, log=log)
        if memory.setup.checkpointing and not checkpointing_was_planned:
            model.enable_input_require_grads()  # as _setup_model does for checkpointed runs
    loss = choose_loss(model, memory.setup.loss_chunk_size, log=log)
    return batching, loss, memory


def checkpointing_argument(arguments_class=None) -> str:
    """TrainingArguments' name for activation checkpointing: `activation_checkpointing` in newer
    transformers 5 releases (5.24, ducktune's floor, has both), `gradient_checkpointing` in older ones (5.17 has
    only that)."""
    import dataclasses

    if arguments_class is None:
        from transformers import TrainingArguments as arguments_class

    names = {f.name for f in dataclasses.fields(arguments_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def sharding_arguments(distributed: str, checkpointing: bool, processes: int) -> dict:
    """TrainingArguments entries for how a multi-process run shards (train.distributed).

    fsdp: FSDP2 (`fully_shard`) through the Trainer's accelerate plugin, one shard unit per
    decoder layer (the model's `_no_split_modules`). Saving gathers a full state dict, so
    checkpoints and the final adapter are ordinary files. Activation checkpointing is FSDP's
    own there (the Trainer's would all-gather every layer a second time in backward).
    """
    name = checkpointing_argument()
    checkpointing_args = {name: checkpointing, f"{name}_kwargs": {"use_reentrant": False} if checkpointing else None}
    if distributed != "fsdp" or processes <= 1:
        return checkpointing_args
    return {"fsdp": True,
            "fsdp_config": {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
                            "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False,
                            "activation_checkpointing": checkpointing}}


def training_arguments(config: RunConfig, output_dir: Path, setup, placement, batching_mode: str, has_val: bool,
                       processes: int = 1):
    """transformers TrainingArguments for this run, from the one config schema and the memory
    plan's Setup (micro-batch, accumulation, checkpointing). Needs no model."""
    from transformers import TrainingArguments

    tc = config.train
    checkpointing = setup.checkpointing
    half = {"bf16": placement.dtype == "bfloat16", "fp16": placement.dtype == "float16" and placement.device == "cuda"}
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=setup.batch_size,
        gradient_accumulation_steps=setup.grad_accum,
        learning_rate=tc.learning_rate,
        num_train_epochs=tc.num_epochs,
        max_steps=tc.max_steps or -1,
        # transformers' "constant" ignores the warm-up; ours is the rate after it, as for the other schedules.
        lr_scheduler_type="constant_with_warmup" if tc.scheduler == "constant" else tc.scheduler,
        warmup_steps=tc.warmup_steps if tc.warmup_steps is not None else tc.warmup_ratio,
        weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm,
        optim=setup.optimizer,  # train.optimizer resolved by the plan (auto -> fused where torch has it)
        seed=tc.seed,
        data_seed=tc.seed,
        logging_steps=tc.logging_steps,
        save_strategy="steps",
        save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit,
        eval_strategy="steps" if has_val else "no",
        eval_steps=(tc.eval_steps or tc.save_steps) if has_val else None,
        **sharding_arguments(tc.distributed, checkpointing, processes),
        use_cpu=placement.device == "cpu",
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        prediction_loss_only=True,
        train_sampling_strategy="group_by_length" if batching_mode == "padded" else "random",
        dataloader_num_workers=0,
        **half,
    )


def _setup_run_dir(config: RunConfig, info: dict, dist: DistributedRun, require_resume: bool,
                   lock: WriterLock | None, log) -> tuple[RunDir, bool, object]:
    """The run directory made (or found to resume), with config.yaml and run.json written by the main
    process. Returns (run, resuming, save_json: the main process's JSON writer, a no-op elsewhere)."""
    run, resuming = dist.on_main_then_shared(
        lambda: prepare_run_dir(config, log, require_resume, lock, info["data"]["fingerprint"]))
    save_json = write_json if dist.is_main else do_nothing
    if resuming:  # the run began earlier: keep when, and say that it was resumed
        previous = run.info()
        info["started"] = previous.get("started", info["started"])
        info["resumed"] = list(previous.get("resumed") or []) + [time.strftime("%Y-%m-%dT%H:%M:%S")]
    if dist.is_main:
        write_text(run.config_yaml, dump_config(config))
    save_json(run.run_json, info)
    return run, resuming, save_json


def _setup_trainer(model, args, batching, loss, data: PreparedData, config: RunConfig, base: "BaseModel", run: RunDir,
                   resume_from: Path | None, progress: bool, log=print):
    """The Trainer over this run's datasets, writing metrics.jsonl (continued when resuming), with the
    optional generation probe (eval.probe_during_training)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ducktune.train.callbacks import MetricsWriter, ProgressBar, RunTotals, StopRequest, restored_totals
    from ducktune.train.checkpoints import checkpoint_step
    from ducktune.train.probe import generation_probe
    from ducktune.train.trainer import DucktuneTrainer

    probe = generation_probe(config, run.metrics, base.tokenizer, base.chat_format, data.probe_prompts,
                             data.probe_tools)
    cutoff = config.data.cutoff_len
    tokens_before, seconds_before = restored_totals(resume_from)
    totals = RunTotals(tokens_before, seconds_before)

    trainer = DucktuneTrainer(
        model=model,
        args=args,
        train_dataset=batching.dataset(data.train_rows, cutoff),
        eval_dataset=batching.dataset(data.val_rows, cutoff) if data.val_rows else None,
        data_collator=batching.collator(base.tokenizer.pad_token_id),
        loss=loss,
        callbacks=[StopRequest(), MetricsWriter(run.metrics, checkpoint_step(resume_from) or 0 if resume_from else 0),
                   ProgressBar(enabled=progress), totals] + ([probe] if probe else []),
    )
    totals.count_tokens = trainer.total_trained_tokens
    if trainer.args.process_index == 0:  # the counts are summed over processes: the earlier total once
        trainer.count_trained_tokens_from(tokens_before)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if probe is not None and trainer.is_fsdp_enabled:
        # The probe generates on the main process alone, which would wait forever for the other shards.
        trainer.remove_callback(probe)
        log("Generation probe off: the model is sharded (FSDP)")
    return trainer


def _resume_point(run: RunDir, resuming: bool, dist: DistributedRun, log) -> Path | None:
    """The last complete checkpoint of a run being resumed (None: start from step 0)."""
    if not resuming:
        return None
    # Only the main process renames half-written checkpoints aside; the others then see the same list.
    from ducktune.train.checkpoints import latest_complete

    resume_from = dist.on_main_then_shared(lambda: latest_complete(run.checkpoints, quarantine=dist.is_main, log=log))
    log(f"Resuming from {resume_from}" if resume_from else "No complete checkpoint yet: starting this run from step 0")
    return resume_from


def _run_training(trainer, resume_from: Path | None, run: RunDir, info: dict, save_json, log=print):
    """Train; an interruption leaves the last complete checkpoint to resume from and marks run.json.
    Returns (TrainOutput, seconds)."""
    from ducktune.train.callbacks import RunTotals, StopRequest
    from ducktune.train.lora import adapter_input_casting, restore_trained_adapter

    totals = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, RunTotals)), None)
    stop = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopRequest)), None)
    started = time.perf_counter()
    if totals is not None:
        totals.start_clock()
    try:
        if resume_from:
            restore_trained_adapter(trainer.model, resume_from)
        if resume_from and _reached_max_steps(trainer, resume_from):
            output = _finish_from_final_checkpoint(trainer, resume_from)
        else:
            # Under autocast, adapters use the half-precision input as it is (no fp32 copy for autograd to keep).
            with adapter_input_casting(trainer.model, enabled=not trainer.autocasts_every_forward), \
                    _stop_after_the_step(stop, trainer.args.world_size, log):
                output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            if stop is not None and stop.requested and trainer.state.global_step < trainer.state.max_steps:
                raise KeyboardInterrupt  # stopped early, its checkpoint saved: marked interrupted, resumable
    except KeyboardInterrupt:
        raise  # not a failure: train() marks the run interrupted
    except BaseException as exc:
        info["status"] = "failed"
        full = disk_full(exc, run.path)  # torch.save reports a full disk without errno
        reason = str(full if full is not None else exc).strip().splitlines()
        info["error"] = f"{type(exc).__name__}: {reason[0] if reason else ''}"[:300]  # what `ducktune runs` can say
        try:
            save_json(run.run_json, info)
        except OSError:
            if full is None:
                raise
        if full is not None and full is not exc:
            raise full from exc
        raise
    # The whole run's training time: earlier sessions' (from the checkpoint) and this one's.
    return output, totals.seconds() if totals is not None else time.perf_counter() - started


@contextlib.contextmanager
def _stop_after_the_step(stop, world_size: int, log):
    """The first Ctrl-C or SIGTERM during training asks `stop` (a StopRequest) to end it after the step
    in progress, with a checkpoint of that step; a second one interrupts at once. One process only:
    under torchrun every rank must stop at the same step, which a signal per process cannot promise."""
    import signal
    import threading

    if stop is None or world_size > 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        log("\nStopping after this step and saving a checkpoint to resume from (Ctrl-C again stops at once)")

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reached_max_steps(trainer, checkpoint: Path) -> bool:
    """Whether `checkpoint` is the run's last step (train.max_steps). transformers' Trainer checks the
    limit only after a step, so resuming from it would train one step more and overwrite the result."""
    import json

    if trainer.args.max_steps <= 0:  # epochs: the Trainer's epoch loop is already empty then
        return False
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0)) >= trainer.args.max_steps


def _finish_from_final_checkpoint(trainer, checkpoint: Path):
    """The result of a run stopped after its last checkpoint (while saving or comparing): that
    checkpoint's weights (a LoRA adapter is already restored) and trainer state; nothing to train."""
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    if not getattr(trainer.model, "peft_config", None):  # a full fine-tune: the checkpoint's weights
        from transformers.modeling_utils import load_sharded_checkpoint

        if (checkpoint / "model.safetensors.index.json").is_file():
            load_sharded_checkpoint(trainer.model, str(checkpoint), strict=False)
        else:
            from safetensors.torch import load_file

            result = trainer.model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
            if result.unexpected_keys:
                raise RuntimeError(f"{checkpoint}: weights the model does not have: {result.unexpected_keys[:3]}")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainOutput(trainer.state.global_step, losses[-1] if losses else 0.0, {})


def _save_model(trainer, tokenizer, target: Path, state_dict: dict) -> None:
    """The adapter (or full model) with the tokenizer and chat template, atomically. `state_dict` is the
    model's full one (accelerate's get_state_dict: gathered from the shards under FSDP); PEFT keeps the
    adapter's entries of it."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    # A continued adapter's frozen reference copy (preference runs) is not part of the result.
    only_trained = {"selected_adapters": ["default"]} if len(getattr(model, "peft_config", {})) > 1 else {}
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True, **only_trained)
        tokenizer.save_pretrained(tmp)


def _check_sharding(config: RunConfig, placement, dist: DistributedRun) -> None:
    """Refuse, before anything is written, a sharding the engine would not do: FSDP asked by
    train.distributed, or (auto) by an `accelerate launch` FSDP config, over CPU processes."""
    import os

    asked = config.train.distributed
    from_launcher = asked == "auto" and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if (asked == "fsdp" or from_launcher) and dist.world_size > 1 and placement.device == "cpu":
        # accelerate sets up FSDP only for accelerator devices; on CPU processes it drops the plugin and
        # the run would silently be DDP.
        where = "the accelerate config's FSDP" if from_launcher else "train.distributed: fsdp"
        raise ConfigError(f"{where} runs on GPUs (accelerate does not shard over CPU processes, it would "
                          "silently fall back to DDP); use train.distributed: ddp on CPU")


def _done_line(path: Path, result: dict, seconds: float) -> str:
    """The run's last line; for preference runs with the reward accuracy, which the loss alone does not
    say (the held-out one when evaluated)."""
    accuracy = result.get("preference", {}).get("rewards/accuracies") or {}
    shown = [f"reward accuracy {accuracy[k]:.0%}{' (eval)' if k == 'eval' else ''}" for k in ("eval", "last")
             if isinstance(accuracy.get(k), (int, float))][:1]
    return f"Done: {path} (final loss {result['final_loss']:.4f}, {', '.join(shown + [''])}{seconds:.0f} s)"


def _training_result(trainer, output, metrics: list[dict], final_eval_loss: float | None, seconds: float,
                     trained_tokens: int, device: str) -> dict:
    """run.json's "result": steps, losses, throughput and peak memory."""
    from ducktune.train.memory_probe import peak_rss
    from ducktune.train.report import preference_result

    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    evals = [m["eval_loss"] for m in metrics if m.get("eval_loss") is not None]
    if final_eval_loss is not None:
        evals.append(final_eval_loss)
    return {
        "global_step": trainer.state.global_step,
        "final_loss": losses[-1] if losses else output.training_loss,
        "first_loss": losses[0] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "train_seconds": seconds,
        "trained_tokens": trained_tokens,
        "tokens_per_s": trained_tokens / seconds if seconds else 0.0,
        "peak_rss_bytes": peak_rss() if device == "cpu" else None,
    } | preference_result(metrics)


def _collect_after_training(trainer, has_val: bool) -> tuple[int, float | None, dict]:
    """What every process computes together after training, as each is a collective: the trained tokens
    over all processes, the final evaluation loss (its losses are gathered) and the model's full state
    dict (gathered from the shards under FSDP). Returns (trained_tokens, eval_loss or None, state_dict)."""
    trained_tokens = trainer.total_trained_tokens()
    # The last step's evaluation when train.eval_steps already ran it (else it was logged twice).
    done = [entry["eval_loss"] for entry in trainer.state.log_history
            if "eval_loss" in entry and entry.get("step") == trainer.state.global_step]
    final_eval_loss = (done[-1] if done else trainer.evaluate()["eval_loss"]) if has_val else None
    return trained_tokens, final_eval_loss, trainer.accelerator.get_state_dict(trainer.model)


def _compare_answers(config: RunConfig, trainer, base: BaseModel, run: RunDir, prompts: list[str], log,
                     tools: list | None = None) -> list[dict]:
    """Base vs tuned answers on the probe prompts, each with its sample's `tools` (written to comparison.json)."""
    from ducktune.chat.compare import compare_answers
    from ducktune.chat.engine import ChatEngine

    if trainer.is_fsdp_enabled:  # generating on the main process alone would wait for the other shards
        log(f"Answers not compared in training (the model is sharded): `ducktune compare {run.path}` compares them")
        return []

    engine = ChatEngine(trainer.model, base.tokenizer, base.chat_format, name=run.path.name, has_adapter=True)
    comparison = compare_answers(engine, prompts, config.eval.max_new_tokens, tools)
    write_json(run.path / "comparison.json", comparison)
    return comparison


# ----------------------------------------------------------------------------- the run

def train(config: RunConfig, *args, lock: WriterLock | None = None, **kwargs) -> TrainResult:
    """Run one training to completion (or resume it); the arguments are `_train`'s. The run
    directory's WriterLock is held from its preparation to the end: a second `ducktune train`
    (or an export) on it is refused, and the OS releases the lock if this process dies. `lock`:
    the caller's, already held on the run directory (the quickstart's), released by the caller."""
    own = lock is None
    lock = WriterLock("train") if own else lock
    try:
        with _terminate_as_interrupt():
            try:
                return _train(config, *args, lock=lock, **kwargs)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM, in training or around it (setup, final save, comparison)
                run = RunDir(config.output.dir)
                if not run.exists():
                    raise UserError("interrupted before training started; nothing was written") from None
                if DistributedRun.rank_from_environment() == 0 and run.exists() and \
                        run.info().get("status") == "running":
                    write_json(run.run_json, {**run.info(), "status": "interrupted"})
                # The same command with output.overwrite (--overwrite) would start afresh, not resume.
                how = "rerun it without --overwrite (output.overwrite)" if config.output.overwrite \
                    else "rerun the same command"
                raise UserError(f"interrupted; {how} to resume {run.path} from its last checkpoint") from None
    finally:
        if own:
            lock.release()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a job scheduler, a container or the web UI stopping the run) stops training as Ctrl-C
    does: the run is marked interrupted and the same command resumes it. Without this, SIGTERM's
    default action ends the process at once, leaving run.json saying "running"."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(config: RunConfig, log=print, progress: bool = True, compare: bool = True, require_resume: bool = False,
           *, choose_batching=None, choose_loss=None, lock: WriterLock | None = None,
           origin: str | None = None) -> TrainResult:
    """choose_batching(model, packing, device, log) -> Batching and choose_loss(model, chunk_size, log)
    -> loss | None default to packing.choose_batching and loss.choose_loss. `origin` (e.g. "quickstart")
    is recorded in run.json from its first write, so an interrupted run still says who made it."""
    import torch
    from transformers import set_seed

    from ducktune.models.loading import model_config
    from ducktune.train.memory_probe import return_freed_memory_to_os
    from ducktune.train.packing import restore_attention
    from ducktune.train.plan import heap_returns_memory, plan_memory, recorded_plan
    from ducktune.train.report import plot_loss, write_report

    tc = config.train
    # Under torchrun / accelerate launch, every process runs this file; only the main one writes
    # the run directory (the Trainer itself writes checkpoints from the main process only).
    if DistributedRun.rank_from_environment() != 0:
        log = do_nothing
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    set_seed(tc.seed)

    if DistributedRun.rank_from_environment() == 0:
        refuse_output_dir(config, require_resume)  # seconds, not after the model and data have loaded
    base = _setup_base_model(config, log)
    placement = base.placement
    dist = DistributedRun.from_environment(cpu=placement.device == "cpu")
    _check_sharding(config, placement, dist)
    if placement.device == "cpu" and heap_returns_memory(config):
        return_freed_memory_to_os()  # under a budget: peak RSS then follows live tensors, as planned
    data = _setup_data(config, base, dist, log)
    # Micro-batch / accumulation / checkpointing within the budget, or refuse now rather than
    # run out of memory an hour in.
    keep = recorded_plan(config)  # a resumed run keeps its micro-batch, accumulation and checkpointing
    memory = plan_memory(config, model_config(base.folder), placement, data.train_rows, keep=keep, log=log)

    # The run directory only after validation and planning, so refused input leaves nothing behind.
    info = _run_info(config, base, data, memory) | ({"origin": origin} if origin else {})
    run, resuming, save_json = _setup_run_dir(config, info, dist, require_resume, lock, log)

    model, targets = _setup_model(config, base, memory.setup.checkpointing, log)
    if targets is not None:
        info["lora_targets"] = targets
    batching, loss, memory = _setup_batching_and_loss(model, config, base, data.train_rows, memory, keep,
                                                      choose_batching, choose_loss, log)
    info["memory_plan"] = memory.to_json()
    info["batching"] = {"mode": batching.mode, "reason": batching.reason, "chunked_loss": loss is not None}
    save_json(run.run_json, info)

    has_val = bool(data.val_rows)
    args = training_arguments(config, run.checkpoints, memory.setup, placement, batching.mode, has_val, dist.world_size)
    resume_from = _resume_point(run, resuming, dist, log)
    trainer = _setup_trainer(model, args, batching, loss, data, config, base, run, resume_from, progress, log)
    output, train_seconds = _run_training(trainer, resume_from, run, info, save_json, log)
    trained_tokens, final_eval_loss, state_dict = _collect_after_training(trainer, has_val)
    restore_attention(trainer.model, batching.previous_attention)

    if not dist.is_main:
        dist.wait()  # the main process saves, compares and reports; the others are done
        return TrainResult(run.path, info, [])
    _save_model(trainer, base.tokenizer, run.full_model if tc.method == "full" else run.adapter, state_dict)
    del state_dict
    metrics = run.read_metrics()
    info["result"] = _training_result(trainer, output, metrics, final_eval_loss, train_seconds, trained_tokens,
                                      placement.device)
    plot_loss(metrics, run.loss_png)
    comparison = []
    if compare and info["probe_prompts"] and tc.method != "full":
        comparison = _compare_answers(config, trainer, base, run, info["probe_prompts"], log, info.get("probe_tools"))
    info["status"] = "completed"
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    # The report before run.json says "completed": a crash between the two leaves a run that a rerun
    # finishes, never a finished run without its report.
    write_report(run.report, info, dump_config(config), comparison)
    save_json(run.run_json, info)
    log(_done_line(run.path, info["result"], train_seconds))
    dist.wait()
    return TrainResult(run.path, info, comparison)
