from ducktune.commands import add_parser
from ducktune.errors import UserError


def register(sub) -> None:
    p = add_parser(sub, "train", "train a LoRA / QLoRA / full fine-tune (SFT, DPO, ORPO, SimPO, KTO) from a YAML config",
                   "Train from a YAML config (every option: --help-config). train.objective picks supervised "
                   "fine-tuning (sft, default) or preference tuning on {prompt, chosen, rejected} data (dpo, orpo, "
                   "simpo, kto; settings under preference.*). Rerunning the same command on the "
                   "same output directory resumes from the latest complete checkpoint with the same data order.",
                   "  ducktune train examples/identity.yaml\n"
                   "  ducktune train my.yaml --set train.max_steps=100 --set lora.r=8\n"
                   "  ducktune train --set data.datasets=[data.json] -o runs/mine\n"
                   "  ducktune train --set data.datasets=[pairs.json] --set train.objective=dpo --set model.adapter=runs/mine\n"
                   "  ducktune train --help-config")
    p.add_argument("config", nargs="?", help="YAML config file")
    add_set_argument(p)
    p.add_argument("--output", "-o", help="run directory (same as --set output.dir=...)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", dest="resume", action="store_true", default=None,
                       help="continue the unfinished run in the output directory (an error if there is none; "
                            "rerunning without --resume also resumes an unfinished run)")
    group.add_argument("--overwrite", dest="resume", action="store_false",
                       help="start afresh (the previous run is moved aside, not deleted)")
    p.add_argument("--skip-bad", action="store_true", help="train on the good records and report how many were skipped")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--help-config", action="store_true", help="list every config option with its documentation")
    p.set_defaults(func=run)


def add_set_argument(p) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.learning_rate=1e-4 (repeatable); text options "
                        "(model.system_prompt, paths) take the value as written, null clears an optional one; "
                        "other values are read as YAML ([a, b], true, 1e-4)")


def run(args) -> int:
    from ducktune.config import REQUIRED, describe_options, load_config

    if args.help_config:
        for key, type_name, default, description in describe_options(entries=True):
            default_text = "required" if default is REQUIRED else f"default {default!r}"
            print(f"{key} ({type_name}; {default_text})\n    {description}")
        return 0
    overrides = list(args.overrides)
    if args.resume is False:
        overrides.append("output.overwrite=true")
    if args.skip_bad:
        overrides.append("data.skip_bad=true")
    if args.output is not None:
        if not args.output.strip():  # not a silent fall-back to the config's output.dir
            raise UserError("--output: empty; give the run directory")
        overrides.append(f"output.dir={args.output}")
    if args.config is None and not overrides:
        raise UserError("ducktune train: give a config file (see examples/) or --set options")
    config = load_config(args.config, overrides)

    import sys

    from ducktune.chat.compare import print_side_by_side
    from ducktune.export.support import export_warnings
    from ducktune.train.recipe import train

    from ducktune.train.distributed import DistributedRun

    # Under torchrun every process runs this command: the main one speaks for the run.
    main_process = DistributedRun.rank_from_environment() == 0
    for warning in export_warnings(config.model, log=lambda message: print(message, file=sys.stderr)):
        if main_process:
            print(f"warning: {warning}", file=sys.stderr)
    result = train(config, progress=not args.no_progress, require_resume=bool(args.resume))
    if not main_process:
        return 0
    if result.comparison:
        print_side_by_side(result.comparison)
    print(f"\nRun directory: {result.run_dir}\n  chat:    ducktune chat {result.run_dir}\n"
          f"  eval:    ducktune eval {result.run_dir}  (what improved, what it forgot)\n"
          f"  export:  ducktune export {result.run_dir}")
    return 0
