from ducktune.commands import add_parser


def register(sub) -> None:
    p = add_parser(sub, "models", "which model families train, quantize and export to Ollama (and why not)",
                   "For every model family ducktune knows, what works: training, QLoRA, GGUF, k-quants and the "
                   "Ollama TEMPLATE. The answers come from the code that does each step, run on a tiny offline "
                   "stand-in of each family (built once into ~/.cache/ducktune/standins). --check asks the same "
                   "questions about your own model.",
                   "  ducktune models\n"
                   "  ducktune models --check ./my-model\n"
                   "  ducktune models --check Qwen/Qwen2.5-0.5B-Instruct --json")
    p.add_argument("--check", metavar="MODEL", help="a model folder, hub id or built-in name to check instead")
    p.add_argument("--trust-remote-code", action="store_true", help="with --check: allow the model's own code")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ducktune.export.support import STAGES, STAGE_TITLES, family_table, model_support

    if args.check:
        from ducktune.models.sources import resolve_model

        support = model_support(resolve_model(args.check), trust_remote_code=args.trust_remote_code,
                                name=args.check).to_dict()
        if args.json:
            print(json.dumps(support, indent=2))
            return 0
        for stage in STAGES:
            print(f"{STAGE_TITLES[stage]:<20} {'yes' if support[stage] is None else 'no: ' + support[stage]}")
        return 0
    rows = family_table(log=print if not args.json else (lambda *a: None))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    from ducktune.models.device import choose_placement

    print(f"On this machine ({choose_placement('auto', 'auto').device}; QLoRA and k-quants depend on it):\n")
    print(render_family_table(rows, STAGES, STAGE_TITLES))
    return 0


def render_family_table(rows: list[dict], stages, titles) -> str:
    """Aligned text: yes/no per stage, then the reasons behind every no."""
    header = ["family", "models", *[titles[s] for s in stages]]
    body = [[r["family"], r["title"], *["yes" if r["support"][s] is None else "no*" for s in stages]] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    reasons = [f"  {r['family']}: {titles[s]}: {r['support'][s]}" for r in rows for s in stages
               if r["support"][s] is not None]
    if reasons:
        lines += ["", "* why not:", *reasons]
    return "\n".join(lines)
