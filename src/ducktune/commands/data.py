"""`ducktune data check|preview|convert|identity`."""

from __future__ import annotations

import argparse
import sys

from ducktune.commands import add_parser
from ducktune.errors import UserError

SOURCE_HELP = "a data file, a folder of files, hf:org/name, or a dataset name from dataset_info.json"


def register(sub) -> None:
    p = add_parser(sub, "data", "check, preview, convert data; write an identity dataset",
                   "Work with training data before training on it.",
                   "  ducktune data check my.jsonl\n"
                   "  ducktune data preview my.json -n 3\n"
                   "  ducktune data convert my.json out.jsonl --to messages\n"
                   "  ducktune data identity --name Nova --author Acme identity.json")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _missing_action(p))

    c = add_parser(data_sub, "check", "counts, token lengths and every problem; exit 0 usable, 2 not",
                   "Read every record, report counts per file, format and role, token lengths with the model's "
                   "tokenizer (min/median/p95/max) and how many samples the cutoff truncates, and every problem "
                   "as `file:line: field: what is wrong`. Exit code 0 when training can use the data, 2 when not.",
                   "  ducktune data check train.jsonl\n"
                   "  ducktune data check a.json b.csv --model ./my-model --cutoff 512\n"
                   "  ducktune data check alpaca_zh_demo --dataset-dir LLaMA-Factory/data\n"
                   "  ducktune data check --config my.yaml            the data of a training config, mixed\n"
                   "  ducktune data check big.jsonl --no-tokens       structure only, no tokenizer")
    _source_args(c)
    _model_args(c)
    c.add_argument("--no-tokens", action="store_true", help="skip token statistics (no tokenizer is loaded)")
    c.add_argument("--skip-bad", action="store_true", help="usable if the good records are (as `train --skip-bad`)")
    c.add_argument("--max-problems", type=int, default=50, metavar="N", help="problems to list (0 = all; default 50)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=check)

    v = add_parser(data_sub, "preview", "samples as the model sees them, trained tokens highlighted",
                   "Show samples after templating exactly as training encodes them. Tokens that carry the loss "
                   "are coloured on a terminal and marked «like this» otherwise.",
                   "  ducktune data preview train.json\n"
                   "  ducktune data preview train.json -n 5 --start 100 --model ./my-model\n"
                   "  ducktune data preview --config my.yaml --plain | less")
    _source_args(v)
    _model_args(v)
    v.add_argument("-n", type=int, default=3, help="how many samples (default 3)")
    v.add_argument("--start", type=int, default=0, help="skip this many samples first")
    colour = v.add_mutually_exclusive_group()
    colour.add_argument("--color", "--colour", dest="colour", action="store_true", default=None,
                        help="colour even when not writing to a terminal")
    colour.add_argument("--plain", dest="colour", action="store_false", help="mark trained tokens with « »")
    v.set_defaults(func=preview)

    t = add_parser(data_sub, "convert", "rewrite data as messages, alpaca or sharegpt",
                   "Convert every record to another format, losslessly: reading the output back gives the same "
                   "training samples. Records the target cannot hold are named and nothing is written.",
                   "  ducktune data convert old.json new.jsonl --to messages\n"
                   "  ducktune data convert chats.jsonl chats_alpaca.json --to alpaca\n"
                   "  ducktune data convert table.csv out.json --to sharegpt --column output=answer")
    t.add_argument("input", help=SOURCE_HELP)
    t.add_argument("output", help="output file: .json (array) or .jsonl")
    t.add_argument("--to", required=True, choices=("messages", "alpaca", "sharegpt"), help="target format")
    _shaping_args(t)
    t.add_argument("--skip-bad", action="store_true", help="convert the good records, leave out the bad ones")
    t.add_argument("--force", action="store_true", help="replace the output file if it exists")
    t.set_defaults(func=convert)

    i = add_parser(data_sub, "identity", "write a self-cognition ('who are you?') dataset",
                   "Write an alpaca dataset of 'who are you / who made you' questions answered with your model's "
                   "name and author, from ducktune's bundled template (English and Chinese). Mix it into a "
                   "training config to give the model its identity.",
                   "  ducktune data identity --name Nova --author 'Acme Labs' identity.json\n"
                   "  ducktune data identity --name 小新 --author 某公司 --lang zh identity_zh.jsonl")
    i.add_argument("output", help="output file: .json or .jsonl")
    i.add_argument("--name", required=True, help="the model's name")
    i.add_argument("--author", required=True, help="who made it")
    i.add_argument("--lang", default=None, help="comma-separated languages (default: all: en,zh)")
    i.add_argument("--force", action="store_true", help="replace the output file if it exists")
    i.set_defaults(func=identity)


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _shaping_args(p) -> None:
    p.add_argument("--format", choices=("auto", "alpaca", "sharegpt", "messages", "firefly", "xlam", "glaive",
                                        "transcript", "text", "preference", "unpaired"),
                   default=None, help="record format (default: detected)")
    p.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read ducktune's FIELD from the file's COLUMN, e.g. output=answer (repeatable)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG=VALUE",
                   help="LLaMA-Factory style turn tag, e.g. role_tag=speaker or user_tag=USER (repeatable)")
    p.add_argument("--dataset-dir", default=None, metavar="DIR",
                   help="folder with a LLaMA-Factory dataset_info.json for dataset names (default: data)")
    p.add_argument("--text-unit", choices=("paragraph", "line", "file"), default=None,
                   help=".txt files: one sample per paragraph (default), line or file")


def _source_args(p) -> None:
    p.add_argument("sources", nargs="*", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("--config", default=None, help="a training config: check its data, model and cutoff")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.val_ratio=0.1 (repeatable); text options "
                        "(model.system_prompt, paths) take the value as written, null clears an optional one; "
                        "other values are read as YAML ([a, b], true, 1e-4)")
    _shaping_args(p)


def _model_args(p) -> None:
    p.add_argument("--model", default=None, help="whose tokenizer and chat template to use (default: the built-in model)")
    p.add_argument("--chat-template", default=None, help="a Jinja chat template or .jinja file instead of the model's")
    p.add_argument("--cutoff", type=int, default=None, help="maximum tokens per sample (data.cutoff_len)")
    p.add_argument("--train-on", choices=("assistant", "last_assistant", "all"), default=None,
                   help="which tokens carry the loss (data.train_on)")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, column = value.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise UserError(f"{option} {value}: expected NAME=VALUE, e.g. {option} output=answer")
        out[key.strip()] = column.strip()
    return out


def build_config(args, sources: list[str]):
    """A RunConfig from --config/--set, with the command line's sources and options applied."""
    from pydantic import ValidationError

    from ducktune.config import TAG_NAMES, DatasetSpec, format_validation_error, load_config, unknown_column_field
    from ducktune.errors import ConfigError

    overrides = list(getattr(args, "overrides", []))
    for option, key in (("cutoff", "data.cutoff_len"), ("train_on", "data.train_on")):
        value = getattr(args, option, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config(getattr(args, "config", None), overrides)
    # Names, paths and templates are set as given: YAML parsing could turn them into numbers or mappings.
    for option, section, key in (("model", config.model, "name_or_path"), ("chat_template", config.model, "chat_template"),
                                 ("dataset_dir", config.data, "dataset_dir")):
        value = getattr(args, option, None)
        if value:
            setattr(section, key, value)
    shaping = {"format": args.format, "text_unit": args.text_unit}
    shaping = {k: v for k, v in shaping.items() if v is not None}
    if args.column:
        shaping["columns"] = _pairs(args.column, "--column")
        for field, column in shaping["columns"].items():
            unknown = unknown_column_field(field)
            if unknown:  # FIELD=COLUMN is easily given the wrong way round: say which side is which
                raise UserError(f"--column {field}={column}: {unknown} "
                                "(FIELD=COLUMN: ducktune's field, then the file's column)")
    if args.tag:
        shaping["tags"] = _pairs(args.tag, "--tag")
        unknown = sorted(set(shaping["tags"]) - set(TAG_NAMES))
        if unknown:
            raise UserError(f"--tag {unknown[0]}: unknown tag (known: {', '.join(TAG_NAMES)})")
    try:
        if sources:
            config.data.datasets = [DatasetSpec(path=source, **shaping) for source in sources]
        elif shaping:
            config.data.datasets = [DatasetSpec(**{**spec.model_dump(exclude_unset=True), **shaping})
                                    for spec in config.data.datasets]
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "command line")) from None
    if not config.data.datasets:
        raise UserError("give a data file (or a dataset name), or --config with data.datasets")
    return config


def _chat_format(config, log=None):
    from ducktune.data.template import model_chat_format

    return model_chat_format(config.model, log=log or (lambda message: print(message, file=sys.stderr)))


def check(args) -> int:
    import json

    from ducktune.data.check import check_data, render_report, report_json

    config = build_config(args, args.sources)
    chat_format = None if args.no_tokens else _chat_format(config)
    # With a config, the objective it trains decides which samples count (as `ducktune train` would);
    # without one, the data decides.
    objective = None
    if getattr(args, "config", None):
        from ducktune.config import PREFERENCE_OBJECTIVES

        objective = "preference" if config.train.objective in PREFERENCE_OBJECTIVES else "sft"
    # A config's data.skip_bad counts as the flag: `ducktune train` with that config skips the bad records.
    report = check_data(config, chat_format, skip_bad=args.skip_bad or config.data.skip_bad, objective=objective)
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        print(render_report(report, args.max_problems))
    return 0 if report.usable else 2


def preview(args) -> int:
    from ducktune.data.loader import read_datasets
    from ducktune.data.preview import legend, preview_samples, render_item
    from ducktune.data.template_rules import template_options
    from ducktune.errors import DataError

    if args.n < 1 or args.start < 0:
        raise UserError("-n must be at least 1 and --start at least 0")
    config = build_config(args, args.sources)
    chat_format = _chat_format(config)
    files = [f for d in read_datasets(config.data, template_options(chat_format)) for f in d.files]
    samples = [s for f in files for s in f.samples][args.start: args.start + args.n]
    issues = [i for f in files for i in f.issues]
    if not samples:
        lines = [str(i) for i in issues[:20]]
        raise DataError("\n".join(lines + [f"no usable samples to preview (after skipping {args.start})"]))
    colour = sys.stdout.isatty() if args.colour is None else args.colour
    print(legend(colour))
    for item in preview_samples(samples, chat_format, config.data.cutoff_len, config.data.train_on):
        print()
        print(render_item(item, colour))
    if issues:
        print(f"\n{len(issues)} problem{'s' if len(issues) != 1 else ''} in this data: "
              "ducktune data check lists them", file=sys.stderr)
    return 0


def convert(args) -> int:
    from pathlib import Path

    from ducktune.data.convert import check_output_path, convert_samples, write_records
    from ducktune.data.loader import data_error, read_datasets, refuse_on

    output = Path(args.output)
    check_output_path(output, args.force)
    config = build_config(args, [args.input])
    if Path(args.input).expanduser().resolve() == output.expanduser().resolve():
        raise UserError(f"{output}: the output would overwrite the input; choose another file")
    files = [f for d in read_datasets(config.data) for f in d.files]
    refuse_on([i for f in files for i in f.issues], args.skip_bad, "input")
    samples = [s for f in files for s in f.samples]
    records, refusals = convert_samples(samples, args.to)
    if refusals:
        raise data_error(refusals, f"{len(refusals)} of {len(samples)} records cannot be written as {args.to}; "
                                   "nothing was written")
    write_records(output, records)
    skipped = sum(f.bad_records for f in files)
    print(f"Wrote {len(records)} records as {args.to} to {output}"
          + (f" ({skipped} bad records left out)" if skipped else ""))
    return 0


def identity(args) -> int:
    from pathlib import Path

    from ducktune.data.convert import check_output_path, write_records
    from ducktune.data.identity import identity_records

    output = Path(args.output)
    check_output_path(output, args.force)
    if not args.name.strip() or not args.author.strip():
        raise UserError("--name and --author must not be empty")
    langs = [lang.strip() for lang in args.lang.split(",") if lang.strip()] if args.lang else None
    records = identity_records(args.name.strip(), args.author.strip(), langs)
    write_records(output, records)
    print(f"Wrote {len(records)} identity examples for {args.name} by {args.author} to {output}")
    print(f"Train on them, e.g. repeated 3 times:  --set 'data.datasets=[{{path: {output}, repeat: 3}}]'")
    return 0
