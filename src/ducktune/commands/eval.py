from ducktune.commands import add_parser


def register(sub) -> None:
    p = add_parser(sub, "eval", "did it work, and what did it break? held-out loss, metrics, multiple choice, bleed",
                   "Evaluate a run, base (adapter off) vs tuned: loss and perplexity on held-out data (the run's "
                   "validation split and --data chat files; trained tokens only, same masks as training); how often "
                   "base and tuned prefer the chosen answer of held-out pairs (a preference run's validation split "
                   "and --data pair files) with DPO's implied reward against the model the run started from; greedy "
                   "answers to --data chat files scored by exact match, BLEU-4 and ROUGE-1/2/L (Chinese as "
                   "LLaMA-Factory does: characters / jieba words; words otherwise); accuracy on multiple-choice --data files "
                   "in the MMLU / C-Eval / CMMLU layout (question, A-D, answer; by the log-likelihood of the answer "
                   "letter), per subject; and the forgetting / bleed report on 52 bundled general prompts. Writes "
                   "RUN_DIR/eval/eval.json, eval/predictions.jsonl, eval/eval.png and a report.md section.",
                   "  ducktune eval runs/quickstart\n"
                   "  ducktune eval runs/my-run --data test.jsonl --base\n"
                   "  ducktune eval runs/my-run --data mmlu/data/test --data ceval/val --json")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--data", action="append", default=[], metavar="FILE",
                   help="held-out chat data or preference pairs (any training format), or a multiple-choice file/folder; "
                        "repeatable")
    p.add_argument("--base", action="store_true",
                   help="also generate the base model's answers for the generation metrics (loss, multiple choice "
                        "and bleed always compare with the base model)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="token limit for generated answers, the forgetting check's too (default 128; "
                        "another limit generates the base model's answers again)")
    p.add_argument("--json", action="store_true", help="print eval.json instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from ducktune.errors import UserError
    from ducktune.eval.runner import run_eval

    if args.max_new_tokens <= 0:
        raise UserError("--max-new-tokens: must be at least 1")
    import sys

    # With --json, stdout carries the JSON alone: progress and notes go to stderr.
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    run_eval(args.run_dir, data=args.data, with_base=args.base, max_new_tokens=args.max_new_tokens,
             as_json=args.json, log=log)
    return 0
