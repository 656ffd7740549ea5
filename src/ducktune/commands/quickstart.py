from ducktune.commands import add_parser


def register(sub) -> None:
    p = add_parser(sub, "quickstart", "fine-tune the built-in model on the Duckling persona, compare, export",
                   "Fine-tune the built-in SmolLM2-135M on a bundled identity dataset (Duckling / 小鸭, made by "
                   "the ducktune team, English and Chinese), print base vs tuned answers side by side, write a run "
                   "directory and export it.",
                   "  ducktune quickstart\n  ducktune quickstart --out runs/demo --no-export\n"
                   "  ducktune quickstart --replay 0        # without the guard against forgetting\n"
                   "  ducktune quickstart --method dpo --adapter runs/quickstart   # then DPO on top of the SFT run")
    p.add_argument("--out", default="runs/quickstart", help="run directory (default: runs/quickstart)")
    p.add_argument("--epochs", type=float, default=None, help="training epochs (default: the demo setting)")
    p.add_argument("--no-export", action="store_true", help="skip the GGUF/Ollama export at the end")
    p.add_argument("--replay", type=float, default=None, metavar="RATIO",
                   help="data.replay: mix in the base model's own answers to general prompts, RATIO per persona "
                        "example, against forgetting (default 0.8: bleed ~54 %% -> under 10 %%; 0 = off, faster)")
    p.add_argument("--method", choices=["sft", "dpo"], default="sft",
                   help="sft: supervised on the persona answers (default); dpo: preference pairs, chosen = the persona "
                        "answer, rejected = the base model's own greedy answer (generated once, cached), with the "
                        "reward accuracy on held-out pairs; pass --adapter with the SFT run (from the base alone "
                        "DPO ranks the pairs right but the persona does not show in the answers)")
    p.add_argument("--adapter", default=None, metavar="RUN",
                   help="--method dpo: continue this SFT run's adapter (e.g. runs/quickstart) instead of the base")
    p.set_defaults(func=run)


def run(args) -> int:
    from ducktune.errors import UserError
    from ducktune.quickstart import run_preference_quickstart, run_quickstart

    if args.method == "dpo":
        if args.replay is not None:
            raise UserError("--replay is for --method sft (DPO's reference already anchors the base model's answers)")
        run_preference_quickstart(out=args.out if args.out != "runs/quickstart" else "runs/quickstart-dpo",
                                  adapter=args.adapter, epochs=args.epochs, export=not args.no_export)
        return 0
    if args.adapter:
        raise UserError("--adapter is for --method dpo")
    from ducktune.quickstart import GUARD_REPLAY

    replay = GUARD_REPLAY if args.replay is None else args.replay
    run_quickstart(out=args.out, epochs=args.epochs, export=not args.no_export, replay=replay)
    return 0
