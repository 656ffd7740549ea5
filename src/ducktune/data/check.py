"""`ducktune data check`: is this data usable, and what does it look like to the model?

One pass over every configured dataset: counts per file, format, kind and role; every
problem as `file:line: field: what is wrong` (also what the chat template cannot render);
token lengths with the model's tokenizer (min / median / p95 / max) and how many samples
the cutoff truncates or empties; the mix training would use (repeats, weights, validation).

Preference data (pairs, unpaired KTO samples) is measured answer by answer: each answer with
its prompt, as preference training encodes it (data/preference.py). Whether the data is
checked for supervised or preference training is the `objective`; by default it is
preference when the data holds only pairs and KTO samples.

Token lengths come from lengths.py (fast, and exact where the cutoff is concerned).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ducktune.config import DatasetSpec, RunConfig
from ducktune.data.formats import DEFAULT_OPTIONS, TOOL_PARTS
from ducktune.data.lengths import TokenStats, token_stats
from ducktune.data.loader import LoadedData, assemble, data_objective, objective_kinds, read_datasets
from ducktune.data.preference import answer_chat, answers
from ducktune.data.schema import PREFERENCE_KINDS, Issue, Sample
from ducktune.data.dataset_files import FileData, read_spec
from ducktune.errors import DataError


@dataclass
class CheckReport:
    files: list[FileData]
    issues: list[Issue]
    records: int = 0
    bad_records: int = 0
    formats: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    duplicates: int = 0
    tokens: TokenStats | None = None
    tokenizer: str | None = None
    loaded: LoadedData | None = None  # the mix training would use (None when unusable)
    verdict: str = ""
    usable: bool = False
    objective: str = "sft"  # "sft" or "preference": which samples training would use
    desirable: int = 0  # unpaired KTO samples labelled true
    tool_samples: int = 0  # samples with tool definitions, calls or results
    tool_calls: int = 0
    tool_parts: frozenset | None = None  # what the model's template writes of tool calling (None: no model)
    reasoning: int = 0  # answers with reasoning: a separate field the template writes, or <think> in the text
    reasoning_field: bool = True  # whether the model's template writes separate reasoning (else it is inlined)

    @property
    def samples(self) -> int:
        return sum(self.kinds.values())

    @property
    def good_samples(self) -> int:
        """Samples skipping bad records keeps (those the chat template renders)."""
        return self.samples - sum(1 for i in self.issues if i.field == "(template)")

    @property
    def skipping_helps(self) -> bool:
        """Whether skipping bad records (--skip-bad, data.skip_bad) leaves data to train on: not past a
        problem with a whole file (UTF-16, invalid JSON: it skips records, not files), nor with no good sample."""
        return bool(self.issues) and not any(i.fatal for i in self.issues) and self.good_samples > 0


def check_data(config: RunConfig, chat_format=None, skip_bad: bool = False, seed: int | None = None,
               objective: str | None = None, skip_bad_option: str = "--skip-bad") -> CheckReport:
    """Read, validate and measure the data of `config` (never raises for bad data). `objective`:
    "sft" or "preference"; None decides from the data (see loader.data_objective). `skip_bad_option`:
    how the verdict names skipping bad records where it is read (the CLI's flag; the web UI's option)."""
    from ducktune.data.template_rules import template_options

    options = template_options(chat_format) if chat_format is not None else DEFAULT_OPTIONS
    report_parts = options.tool_parts if chat_format is not None else None
    per_dataset = read_datasets(config.data, options)
    files = [f for d in per_dataset for f in d.files]
    if config.data.val_file:
        files += read_spec(DatasetSpec(path=config.data.val_file), config.data.dataset_dir, options)
    report = CheckReport(files, [i for f in files for i in f.issues], tool_parts=report_parts,
                         reasoning_field=options.writes_reasoning)
    samples = [s for f in files for s in f.samples]
    report.records = sum(f.records + f.lost for f in files)
    report.bad_records = sum(f.bad_records for f in files)
    report.objective = objective or data_objective(samples)
    seen: set = set()
    for sample in samples:
        report.formats[sample.format] += 1
        report.kinds[sample.kind] += 1
        report.desirable += sample.label is True
        for message in sample.messages:
            report.roles[message.role] += 1
            report.tool_calls += len(message.tool_calls)
            report.reasoning += message.carries_reasoning
        for answer in (sample.turns or {}).values():  # a preference answer's calls and reasoning
            report.tool_calls += len(answer.tool_calls)
            report.reasoning += answer.carries_reasoning
        report.tool_samples += sample.uses_tools
        key = sample.key()
        if key in seen:
            report.duplicates += 1
        else:
            seen.add(key)

    if chat_format is not None:
        report.tokenizer = config.model.name_or_path
        report.tokens, template_issues = _token_stats(samples, report.objective, chat_format, config)
        report.issues += template_issues
        report.bad_records += len({(i.file, i.line) for i in template_issues})

    report.issues.sort(key=Issue.sort_key)
    _decide(report, config, per_dataset, skip_bad, seed if seed is not None else config.train.seed, options,
            skip_bad_option)
    return report


def _token_stats(samples: list[Sample], objective: str, chat_format, config: RunConfig):
    """Token lengths of what training would build: samples for SFT, each answer with its prompt
    (trained as SFT trains a last answer) for preference tuning."""
    kinds = objective_kinds(objective)
    trainable = [s for s in samples if s.kind in kinds]
    if objective == "sft":
        return token_stats(trainable, chat_format, config.data.cutoff_len, config.data.train_on)
    chats = [answer_chat(s, answer, name) for s in trainable for name, answer in answers(s)]
    stats, issues = token_stats(chats, chat_format, config.data.cutoff_len, "last_assistant")
    return stats, list(dict.fromkeys(issues))  # a pair's two answers report one template problem once


def _decide(report: CheckReport, config: RunConfig, per_dataset, skip_bad: bool, seed: int, options,
            skip_bad_option: str) -> None:
    issues = report.issues
    n = f"{len(issues):,} problem{'s' if len(issues) != 1 else ''}"
    if any(i.fatal for i in issues):
        report.verdict = (f"{n}; some make a whole file or dataset unreadable: fix those "
                          f"({skip_bad_option} skips bad records, not files)")
        return
    if issues and not skip_bad:
        good = report.good_samples
        turn_on = "pass" if skip_bad_option.startswith("--") else "turn on"
        report.verdict = f"{n}; fix them, or {turn_on} {skip_bad_option} to train on the {good:,} good sample{'s' if good != 1 else ''}" \
            if good else f"{n}; no record can be trained as it is: fix them"
        return
    try:
        report.loaded = assemble(config.data, per_dataset, seed, skip_bad, options, report.objective)
    except DataError as exc:
        report.verdict = str(exc).splitlines()[-1]
        return
    tokens = report.tokens
    if tokens is not None and tokens.samples and tokens.untrained and tokens.dropped + tokens.untrained == tokens.samples:
        report.verdict = (f"no sample leaves anything to train: {tokens.untrained:,} mark every answer untrained "
                          "(\"weight\": 0)" + (f", {tokens.dropped:,} lose their trained tokens at the cutoff"
                                                 if tokens.dropped else ""))
        return
    if tokens is not None and tokens.samples and tokens.dropped == tokens.samples:
        what = "answer" if report.objective == "preference" else "sample"
        report.verdict = (f"every {what} loses all its trained tokens at the cutoff ({tokens.cutoff}); "
                          "raise data.cutoff_len")
        return
    report.usable = True


# ----------------------------------------------------------------------------- report

def _count(n: int) -> str:
    return f"{n:,}"


def _counter(counter: Counter, order: tuple = ()) -> str:
    keys = [k for k in order if k in counter] + sorted(k for k in counter if k not in order)
    return " · ".join(f"{k} {_count(counter[k])}" for k in keys) or "none"


def _objective_lines(report: CheckReport) -> list[str]:
    """Preference counts, and the samples the objective leaves aside."""
    kinds = report.kinds
    pairs, unpaired = kinds.get("preference", 0), kinds.get("unpaired", 0)
    other = sum(n for kind, n in kinds.items() if kind not in PREFERENCE_KINDS)
    lines = []
    if pairs or unpaired:
        labels = f" ({_count(report.desirable)} desirable, {_count(unpaired - report.desirable)} undesirable)" \
            if unpaired else ""
        lines.append(f"Preference data: {_count(pairs)} pair{'s' if pairs != 1 else ''} · {_count(unpaired)} "
                     f"unpaired (KTO){labels}")
    if report.objective == "sft" and (pairs or unpaired):
        lines.append(f"  {_count(pairs + unpaired)} preference pairs and KTO samples are checked but not trained "
                     "by supervised fine-tuning")
    elif report.objective == "preference" and other:
        lines.append(f"  {_count(other)} chat/text samples are checked but not trained by preference tuning")
    return lines


def render_report(report: CheckReport, max_problems: int = 50) -> str:
    lines = []
    files = report.files
    lines.append(f"Checked {len(files)} file{'s' if len(files) != 1 else ''}: {_count(report.records)} "
                 f"record{'s' if report.records != 1 else ''}")
    for f in files[:20]:
        records = f.records + f.lost
        detail = f"{f.format or 'unreadable'}, {_count(records)} record{'s' if records != 1 else ''}"
        if f.bad_records:
            detail += f", {_count(f.bad_records)} bad"
        lines.append(f"  {f.path}  ({detail})")
    if len(files) > 20:
        lines.append(f"  ... and {len(files) - 20} more files")
    # Usable: read, and rendered by the chat template (a record it refuses is one of the bad ones).
    lines.append(f"Samples: {_count(report.good_samples)} usable, {_count(report.bad_records)} bad")
    lines.append(f"  formats: {_counter(report.formats)}")
    lines.append(f"  kinds:   {_counter(report.kinds, ('chat', 'text', 'preference', 'unpaired'))}")
    lines.append(f"  roles:   {_counter(report.roles, ('system', 'user', 'assistant', 'tool'))}  (messages)")
    if report.tool_samples:
        writes = "" if report.tool_parts is None else "; the model's chat template writes " + (
            ", ".join(p for p in TOOL_PARTS if p in report.tool_parts) or "none of them")
        lines.append(f"  tools:   {_count(report.tool_samples)} samples use tools ({_count(report.tool_calls)} calls: "
                     f"trained like answers; definitions and results are context){writes}")
    if report.reasoning:
        where = ("its own field, which the chat template writes before the answer" if report.reasoning_field else
                 "<think>...</think> before the answer text (the chat template has no reasoning field)")
        lines.append(f"  reasoning: {_count(report.reasoning)} answers carry reasoning, trained as {where}")
    lines += _objective_lines(report)
    if report.duplicates:
        lines.append(f"  {_count(report.duplicates)} exact duplicates (data.dedupe=true drops them)")
    t = report.tokens
    if t is not None:
        preference = report.objective == "preference"
        what = "answer" if preference else "sample"
        lines.append(f"Tokens ({report.tokenizer} tokenizer): min {t.min} · median {t.median} · p95 {t.p95} "
                     f"· max {t.max}  over {_count(t.samples)} {what}s"
                     + ("  (each answer with its prompt)" if preference else ""))
        cut = f"  cutoff {t.cutoff}: {_count(t.truncated)} {what}{'s' if t.truncated != 1 else ''} would be truncated"
        if preference and t.truncated:
            cut += " (the prompt is kept, the answer cut)"
        if t.dropped:
            cut += f", {_count(t.dropped)} of them lose every trained token and are dropped"
        lines.append(cut)
        if t.untrained:
            lines.append(f"  {_count(t.untrained)} sample{'s mark' if t.untrained != 1 else ' marks'} every answer untrained "
                         "(\"weight\": 0): training leaves them out")
    loaded = report.loaded
    if loaded is not None:
        cut = _dropped_from_training(report)
        train = len(loaded.train)
        lines.append(f"Mix: {_count(train)} training sample{'s' if train != 1 else ''}, {_count(len(loaded.val))} validation"
                     + (f" ({_count(cut)} of the training samples left out for the cutoff or \"weight\": 0: "
                        f"{_count(train - cut)} trained)" if cut else ""))
        if len(loaded.mix) > 1 or any(m.train != m.usable - m.val for m in loaded.mix):
            for m in loaded.mix:
                lines.append(f"  {m.name}: {_count(m.usable)} samples -> {_count(m.train)} in training"
                             + (f", {_count(m.val)} held out" if m.val else ""))
    problems = report.issues
    if problems:
        lines.append(f"Problems ({_count(len(problems))}):")
        shown = problems if max_problems <= 0 else problems[:max_problems]
        lines += [str(issue) for issue in shown]
        if len(shown) < len(problems):
            lines.append(f"... and {_count(len(problems) - len(shown))} more (--max-problems 0 shows all)")
    if report.usable:
        extra = f"; {_count(loaded.skipped)} bad records will be skipped" if loaded and loaded.skipped else ""
        purpose = ", for preference tuning" if report.objective == "preference" else ""
        lines.append(f"Usable: yes{purpose}{extra}")
    else:
        lines.append(f"Usable: no: {report.verdict}")
    return "\n".join(lines)


def _dropped_from_training(report: CheckReport) -> int:
    """How many samples of the training mix the cutoff or their "weight": 0 answers leave without a
    trained token (training drops them; a sample repeated by the mix counts each time)."""
    if report.tokens is None or report.loaded is None or not report.tokens.dropped_keys:
        return 0
    dropped = report.tokens.dropped_keys
    if report.objective == "preference":  # measured per answer: a pair goes when one answer keeps nothing
        return sum(1 for sample in report.loaded.train
                   if sample.kind in PREFERENCE_KINDS
                   and any(answer_chat(sample, answer).key() in dropped for _, answer in answers(sample)))
    return sum(1 for sample in report.loaded.train if sample.key() in dropped)


def report_json(report: CheckReport) -> dict:
    """The report as plain data (for `--json` and the web UI)."""
    t = report.tokens
    loaded = report.loaded
    return {
        "usable": report.usable,
        "verdict": report.verdict,
        "objective": report.objective,
        "preference": {"pairs": report.kinds.get("preference", 0), "unpaired": report.kinds.get("unpaired", 0),
                       "desirable": report.desirable},
        "records": report.records,
        "samples": report.samples,
        "bad_records": report.bad_records,
        "files": [{"path": f.path, "format": f.format, "records": f.records + f.lost, "bad": f.bad_records}
                  for f in report.files],
        "formats": dict(report.formats),
        "kinds": dict(report.kinds),
        "roles": dict(report.roles),
        "reasoning_answers": report.reasoning,
        "tools": {"samples": report.tool_samples, "calls": report.tool_calls,
                  "template_writes": None if report.tool_parts is None else
                  [p for p in TOOL_PARTS if p in report.tool_parts]},
        "duplicates": report.duplicates,
        "tokens": None if t is None else {**t.as_json(), "tokenizer": report.tokenizer},
        "mix": None if loaded is None else {
            "train": len(loaded.train), "val": len(loaded.val), "skipped": loaded.skipped,
            "dropped_by_cutoff": _dropped_from_training(report),
            "datasets": [m.__dict__ for m in loaded.mix]},
        "problems": [str(i) for i in report.issues],
    }
