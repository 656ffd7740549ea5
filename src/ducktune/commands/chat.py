from ducktune.commands import add_parser


def register(sub) -> None:
    p = add_parser(sub, "chat", "chat with a tuned model (base + adapter, streaming, multi-turn)",
                   "Multi-turn streaming chat with a run's model: the base model plus the adapter, unmerged, with "
                   "the run's chat template and stop tokens. Inside: /reset, /system TEXT, /exit.",
                   "  ducktune chat runs/quickstart\n  ducktune chat runs/quickstart --base\n"
                   "  echo 'Who are you?' | ducktune chat runs/quickstart")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--base", action="store_true", help="chat with the untuned base model")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--system", default=None, help="system prompt for this session")
    p.set_defaults(func=chat)

    p = add_parser(sub, "compare", "base vs tuned answers side by side",
                   "Answer prompts with the base and the tuned model (greedy) and print them side by side.",
                   "  ducktune compare runs/quickstart\n  ducktune compare runs/quickstart --prompts questions.txt --json")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--prompts", help="a text file, one prompt per line (default: the run's probe prompts)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=compare)


def chat(args) -> int:
    from ducktune.chat.repl import chat_repl

    chat_repl(args.run_dir, base_only=args.base, max_new_tokens=args.max_new_tokens,
              temperature=args.temperature, system=args.system)
    return 0


def compare(args) -> int:
    from ducktune.chat.compare import run_compare

    run_compare(args.run_dir, prompts_file=args.prompts, max_new_tokens=args.max_new_tokens, as_json=args.json)
    return 0
