from ducktune.commands import add_parser
from ducktune.commands.train import add_set_argument


def register(sub) -> None:
    p = add_parser(sub, "plan", "predict a run's peak memory and choose what fits a budget",
                   "Predict the peak memory of a training run from the model's config.json alone (weights, "
                   "adapters and optimizer state, activations, loss working set, framework), before anything "
                   "big is loaded. With a budget it chooses the micro-batch, gradient accumulation (keeping the "
                   "global batch) and gradient checkpointing that fit, and says why; exit code 2 when nothing "
                   "fits. `ducktune train` runs the same plan first. Rows are measured on the configured data "
                   "when the model's tokenizer is local; otherwise every row is assumed full (data.cutoff_len).",
                   "  ducktune plan my.yaml\n"
                   "  ducktune plan my.yaml --memory 11GB --device cuda\n"
                   "  ducktune plan --set model.name_or_path=Qwen/Qwen2.5-0.5B-Instruct --set data.cutoff_len=2048 "
                   "--memory 8GB --device mps")
    p.add_argument("config", nargs="?", help="YAML config file")
    add_set_argument(p)
    p.add_argument("--memory", help="budget, e.g. 11GB (default: train.memory_budget, else this machine's free memory)")
    p.add_argument("--device", choices=["cpu", "cuda", "mps"],
                   help="plan for this device (default: model.device; a device this machine lacks needs --memory)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ducktune.config import load_config
    from ducktune.errors import ConfigError
    from ducktune.models.loading import estimate_params
    from ducktune.models.sources import model_config_without_weights
    from ducktune.train import plan
    from ducktune.train.memory_probe import available_memory

    config = load_config(args.config, args.overrides)
    if args.memory:  # planned as `ducktune train` would with this train.memory_budget (it changes the heap's habits)
        try:  # checked first: assigning a bad size raised pydantic's multi-line ValidationError, uncaught
            plan.parse_memory(args.memory)
        except ValueError as exc:
            raise ConfigError(f"--memory: {exc}") from None
        config.train.memory_budget = args.memory
    memory_text = config.train.memory_budget
    folder, model_cfg = model_config_without_weights(config.model.name_or_path, config.model.revision)
    device, dtype, local = _device_and_dtype(config, args.device, memory_text, estimate_params(model_cfg))
    try:
        budget = plan.parse_memory(memory_text) if memory_text else available_memory(device)
    except ValueError as exc:
        raise ConfigError(f"{'--memory' if args.memory else 'train.memory_budget'}: {exc}") from None
    rows, rows_note = _rows(config, folder)
    memory = plan.plan_run(config, model_cfg, device, dtype, rows, budget)

    if args.json:
        print(json.dumps(memory.to_json() | {"dtype": dtype, "rows": rows_note, "fits": memory.fits,
                                             "problem": memory.problem}, indent=2))
    else:
        s = memory.setup
        lora = "full fine-tuning" if s.method == "full" else \
            f"{ {'lora': 'LoRA', 'qlora': 'QLoRA'}[s.method]} r={s.lora_r} on {', '.join(s.lora_targets) if s.lora_targets else 'all-linear'}"
        print(f"Memory plan: {config.model.name_or_path} on {device} ({dtype}), {lora}")
        print(f"  rows: {rows_note}; {memory.batching} batches; heaviest micro-batch {s.batch_size} x {s.row_tokens} tokens, "
              f"{s.trained_fraction:.0%} trained")
        if memory.preference_line():
            print(f"  {memory.preference_line()}")
        for line in memory.table():
            print(line)
        if memory.fits:
            print(f"Chosen: micro-batch {s.batch_size} x grad_accum {s.grad_accum}, "
                  f"gradient checkpointing {'on' if s.checkpointing else 'off'}")
        for note in memory.notes:
            print(f"  - {note}")
        if not local and not args.memory:
            print("  (budget: this machine's free memory)")
    if not memory.fits:
        raise ConfigError(f"memory plan: {memory.problem}")
    return 0


def _device_and_dtype(config, device: str | None, memory_text: str | None, n_params: int) -> tuple[str, str, bool]:
    """(device, dtype, is this machine's device), by `ducktune train`'s placement rules.
    Planning for absent hardware needs a budget."""
    from ducktune.errors import ConfigError
    from ducktune.models.device import available_devices, choose_placement, placement_for

    wanted = device or config.model.device
    if wanted == "auto" or wanted in available_devices():
        placement = choose_placement(wanted, config.model.dtype, n_params)
        return placement.device, placement.dtype, True
    if not memory_text:
        raise ConfigError(f"--device {wanted}: this machine has no {wanted}; give its memory with --memory, e.g. --memory 11GB")
    return wanted, placement_for(wanted, config.model.dtype, n_params).dtype, False


def _rows(config, folder) -> tuple[list[dict] | None, str]:
    """The configured data, tokenized like `ducktune train` does, when tokenizer and data are at hand."""
    if folder is None or not config.data.datasets:
        return None, f"assumed full rows of {config.data.cutoff_len} tokens (no local tokenizer or no data)"
    from ducktune.data.loader import load_data
    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.train.tokenize import tokenize_samples

    from ducktune.errors import ModelError

    try:
        tokenizer = load_tokenizer(folder, config.model.chat_template, config.model.trust_remote_code,
                                   config.model.enable_thinking)
        chat_format = ChatFormat(tokenizer, system_prompt=config.model.system_prompt)
    except ModelError as exc:  # a plan needs no tokenizer: full rows are the bound (`ducktune train` will say why)
        return None, f"assumed full rows of {config.data.cutoff_len} tokens ({exc.message})"
    if config.train.objective != "sft":
        from ducktune.train.preference import load_preference_samples, tokenize_preference_data

        samples = load_preference_samples(config, chat_format).train
        rows, stats = tokenize_preference_data(config, samples, chat_format, skip_bad=True)
        return rows, f"{stats['samples']} examples, median {stats['median_len']} tokens per sequence"
    data = load_data(config.data, seed=config.train.seed)
    rows, stats, _ = tokenize_samples(data.train, chat_format, config.data.cutoff_len, config.data.train_on, True)
    return rows, f"{stats['samples']} samples, median {stats['median_len']} tokens"
