from ducktune.commands import add_parser, count_or_all


def register(sub) -> None:
    p = add_parser(sub, "export", "merge, write GGUF (f16/q8_0/q4_k_m) and an Ollama Modelfile, verified",
                   "Merge the run's LoRA adapter into the base model, write GGUF files and an Ollama Modelfile whose "
                   "TEMPLATE renders exactly like the training chat template, then prove the result: the merge is "
                   "exact, the GGUF reads back and matches the merged model in transformers and llama.cpp, and the "
                   "TEMPLATE renders byte for byte like the chat template under Go's text/template. The table is "
                   "printed, saved as verify.json and appended to the run's report.md. q4_k_m and other k-quants "
                   "need the optional extra: pip install 'ducktune[verify]'.",
                   "  ducktune export runs/quickstart\n"
                   "  ducktune export runs/my-run --quant f16,q8_0 --name duckling\n"
                   "  ducktune export runs/my-run --to merged --out exports/my-run\n"
                   "  ollama create duckling -f runs/quickstart/export/Modelfile")
    p.add_argument("run_dir", help="run directory (from ducktune train or quickstart)")
    p.add_argument("--to", default=None, metavar="TARGETS",
                   help="comma-separated: merged, gguf, ollama (default: all three; each needs the one before)")
    p.add_argument("--quant", default=None, metavar="QUANTS",
                   help="comma-separated GGUF types: f16, q8_0 (written directly), q4_k_m, q5_k_m, q6_k, ... "
                        "(llama.cpp's quantizer); default f16,q4_k_m, or f16,q8_0 without llama-cpp-python")
    p.add_argument("--out", default=None, help="export folder (default: RUN_DIR/export)")
    p.add_argument("--name", default=None, help="model name for files and Ollama (default: the name of the export it replaces, else "
                        "the run folder's name)")
    p.add_argument("--allow-default-template", action="store_true",
                   help="when the chat template has no exact Ollama TEMPLATE, write the Modelfile without one "
                        "(Ollama then uses its default prompt format) instead of stopping")
    p.add_argument("--prompts", type=count_or_all, default=12, metavar="N",
                   help="run the checks on at most N of the run's probe prompts, spread evenly (0 = all; default 12)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--create", dest="create", action="store_true", default=None,
                       help="run `ollama create` afterwards (when ollama is installed) without asking")
    group.add_argument("--no-create", dest="create", action="store_false", help="never run `ollama create`")
    p.set_defaults(func=export)

    p = add_parser(sub, "verify", "re-run an export's checks and print the table",
                   "Re-run the verification of an export folder: GGUF read-back and transformers' GGUF loader vs the "
                   "merged model, llama.cpp (when llama-cpp-python is installed), the Modelfile's grammar and its "
                   "TEMPLATE rendered by Go. Exit code 1 when a check fails.",
                   "  ducktune verify runs/quickstart/export")
    p.add_argument("export_dir", help="an export folder (holds export.json)")
    p.set_defaults(func=verify)


def export(args) -> int:
    from ducktune.export.pipeline import export_run

    result = export_run(args.run_dir, to=args.to, quants=args.quant, out=args.out, name=args.name, create=args.create,
                        prompt_limit=args.prompts, allow_default_template=args.allow_default_template)
    return 0 if result.verified else 1


def verify(args) -> int:
    from ducktune.export.pipeline import verify_export

    return 0 if verify_export(args.export_dir).verified else 1
