"""`ducktune data check`: is this data usable, and what does it look like to the model?

One pass over every configured dataset: counts per file, format, kind and role; every
problem as `file:line: field: what is wrong` (also what the chat template cannot render);
token lengths with the model's tokenizer (min / median / p95 / max) and how many samples
the cutoff truncates or empties; the mix training would use (repeats, weights, validation).

Token lengths are computed in batches (templates rendered per batch, tokenized with the
fast tokenizer's batch encoder), which keeps 100,000 records to seconds. Samples near or
over the cutoff are encoded exactly as training does, so the truncation counts match.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from dataclasses import dataclass, field

from ducktune.config import DatasetSpec, RunConfig
from ducktune.data.formats import DEFAULT_OPTIONS
from ducktune.data.loader import LoadedData, assemble, read_datasets
from ducktune.data.schema import Issue, Sample
from ducktune.data.sources import FileData, read_spec
from ducktune.errors import DataError

BATCH = 8192
# Samples whose fast length is this close to the cutoff are encoded exactly (EOS insertion
# and token merges at the inserted EOS can move a length by a token or two).
EXACT_MARGIN = 8
# Batches at least this large are tokenized on every core.
PARALLEL_FROM = 4096


@dataclass
class TokenStats:
    samples: int
    min: int
    median: int
    p95: int
    max: int
    cutoff: int
    truncated: int  # longer than the cutoff: cut to it in training
    emptied: int  # truncated so far that no trained token is left: dropped in training


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

    @property
    def samples(self) -> int:
        return sum(self.kinds.values())


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def check_data(config: RunConfig, chat_format=None, skip_bad: bool = False, seed: int | None = None) -> CheckReport:
    """Read, validate and measure the data of `config` (never raises for bad data)."""
    from ducktune.data.template_rules import template_options

    options = template_options(chat_format) if chat_format is not None else DEFAULT_OPTIONS
    per_dataset = read_datasets(config.data, options)
    files = [f for d in per_dataset for f in d.files]
    if config.data.val_file:
        files += read_spec(DatasetSpec(path=config.data.val_file), config.data.dataset_dir, options)
    report = CheckReport(files, [i for f in files for i in f.issues])
    samples = [s for f in files for s in f.samples]
    report.records = sum(f.records + f.lost for f in files)
    report.bad_records = sum(f.bad_records for f in files)
    seen: set = set()
    for sample in samples:
        report.formats[sample.format] += 1
        report.kinds[sample.kind] += 1
        for message in sample.messages:
            report.roles[message.role] += 1
        key = sample.key()
        if key in seen:
            report.duplicates += 1
        else:
            seen.add(key)

    if chat_format is not None:
        trainable = [s for s in samples if s.kind != "preference"]
        report.tokenizer = config.model.name_or_path
        report.tokens, template_issues = token_stats(trainable, chat_format, config.data.cutoff_len,
                                                     config.data.train_on)
        report.issues += template_issues
        report.bad_records += len(template_issues)

    report.issues.sort(key=Issue.sort_key)
    _decide(report, config, per_dataset, skip_bad, seed if seed is not None else config.train.seed, options)
    return report


def _decide(report: CheckReport, config: RunConfig, per_dataset, skip_bad: bool, seed: int, options) -> None:
    issues = report.issues
    n = f"{len(issues):,} problem{'s' if len(issues) != 1 else ''}"
    if any(i.fatal for i in issues):
        report.verdict = (f"{n}; some make a whole file or dataset unreadable: fix those "
                          "(--skip-bad skips bad records, not files)")
        return
    if issues and not skip_bad:
        good = report.samples - sum(1 for i in issues if i.field == "(template)")
        report.verdict = f"{n}; fix them, or pass --skip-bad to train on the {good:,} good samples"
        return
    try:
        report.loaded = assemble(config.data, per_dataset, seed, skip_bad, options)
    except DataError as exc:
        report.verdict = str(exc).splitlines()[-1]
        return
    tokens = report.tokens
    if tokens is not None and tokens.samples and tokens.emptied == tokens.samples:
        report.verdict = (f"every sample loses all its trained tokens at the cutoff ({tokens.cutoff}); "
                          "raise data.cutoff_len")
        return
    report.usable = True


# ----------------------------------------------------------------------------- token lengths

class ShapeRenderer:
    """Renders conversations fast by their shape (the sequence of roles).

    The template is rendered once per shape with placeholder contents; each conversation of
    that shape is then the skeleton with its contents filled in. That is exact only for
    templates that copy contents verbatim, so each shape is first verified against real
    renderings of probe contents (whitespace, empty text, reasoning tags, Jinja syntax) and
    of its first conversation; a shape that fails (a template that trims or inspects
    contents) is rendered conversation by conversation with the template.
    """

    PROBES = ("Hello there", "  padded \n", "", "<think>a</think>b", "{{ x }} {% y %}", "line\n\nbreak")

    def __init__(self, chat_format):
        self.chat_format = chat_format
        self.tokenizer = chat_format.tokenizer
        self.skeletons: dict[tuple, list[str] | None] = {}

    def _render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def _skeleton(self, roles: tuple, first: list[dict]) -> list[str] | None:
        marks = [f"\ue000{i}\ue001" for i in range(len(roles))]
        try:
            text = self._render([{"role": r, "content": m} for r, m in zip(roles, marks)])
        except Exception:
            return None
        pieces = []
        for mark in marks:
            before, found, text = text.partition(mark)
            if not found or mark in text:
                return None
            pieces.append(before)
        pieces.append(text)
        try:
            for probe in self.PROBES:
                messages = [{"role": r, "content": probe} for r in roles]
                if self._render(messages) != self._fill(pieces, messages):
                    return None
            if self._render(first) != self._fill(pieces, first):
                return None
        except Exception:
            return None
        return pieces

    @staticmethod
    def _fill(pieces: list[str], messages: list[dict]) -> str:
        out = [pieces[0]]
        for message, piece in zip(messages, pieces[1:]):
            out.append(message["content"])
            out.append(piece)
        return "".join(out)

    def render(self, sample: Sample) -> str:
        messages = self.chat_format.with_system(sample.message_dicts())
        roles = tuple(m["role"] for m in messages)
        if roles not in self.skeletons:
            self.skeletons[roles] = self._skeleton(roles, messages)
        pieces = self.skeletons[roles]
        if pieces is None:
            return self._render(messages)
        return self._fill(pieces, messages)


def _count_tokens(tokenizer, texts: list[str], add_special_tokens: bool) -> list[int]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]
    with _tokenizer_threads(len(texts) >= PARALLEL_FROM):
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=add_special_tokens)]


@contextlib.contextmanager
def _tokenizer_threads(enabled: bool):
    """Let the fast tokenizer use every core for one large batch.

    The CLI turns tokenizers' thread pool off (it would deadlock in forked processes);
    `ducktune data check` forks nothing, so big batches may use it. tokenizers reads
    TOKENIZERS_PARALLELISM on every call.
    """
    if not enabled:
        yield
        return
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def token_stats(samples: list[Sample], chat_format, cutoff: int, train_on: str) -> tuple[TokenStats | None, list[Issue]]:
    """Token length of every sample as training would build it, and what the template refuses."""
    tokenizer = chat_format.tokenizer
    eos_bonus = 1 if tokenizer.eos_token_id is not None else 0
    lengths: list[int] = []
    measured: list[Sample] = []
    issues: list[Issue] = []
    chats = [s for s in samples if s.kind == "chat"]
    texts = [s for s in samples if s.kind == "text"]
    renderer = ShapeRenderer(chat_format)
    for start in range(0, len(chats), BATCH):
        batch = chats[start:start + BATCH]
        good: list[tuple[Sample, str]] = []
        for sample in batch:
            try:
                good.append((sample, renderer.render(sample)))
            except Exception as exc:  # the template refuses this conversation (jinja raise_exception)
                first = str(exc).strip().splitlines()
                issues.append(Issue(sample.where, None, "(template)",
                                    f"the chat template refused this conversation: {first[0] if first else type(exc).__name__}"))
        counts = _count_tokens(tokenizer, [r for _, r in good], add_special_tokens=False)
        for (sample, _), n in zip(good, counts):
            if chat_format.inserted_eos:
                n += sum(1 for m in sample.messages if m.role == "assistant")
            lengths.append(n)
            measured.append(sample)
    for start in range(0, len(texts), BATCH):
        batch = texts[start:start + BATCH]
        for n in _count_tokens(tokenizer, [s.text for s in batch], add_special_tokens=True):
            lengths.append(n + eos_bonus)
        measured += batch
    if not lengths:
        return None, issues

    truncated = emptied = 0
    for i, (sample, n) in enumerate(zip(measured, lengths)):
        if n <= cutoff - EXACT_MARGIN:
            continue
        try:
            encoded = chat_format.encode(sample, 1 << 30, train_on)
        except DataError as exc:
            issues.append(Issue(sample.where, None, "(template)", exc.message))
            continue
        lengths[i] = n = len(encoded.input_ids)
        if n > cutoff:
            truncated += 1
            if all(label == -100 for label in encoded.labels[:cutoff]):
                emptied += 1
    ordered = sorted(lengths)
    stats = TokenStats(len(ordered), ordered[0], percentile(ordered, 0.5), percentile(ordered, 0.95), ordered[-1],
                       cutoff, truncated, emptied)
    return stats, issues


# ----------------------------------------------------------------------------- report

def _count(n: int) -> str:
    return f"{n:,}"


def _counter(counter: Counter, order: tuple = ()) -> str:
    keys = [k for k in order if k in counter] + sorted(k for k in counter if k not in order)
    return " · ".join(f"{k} {_count(counter[k])}" for k in keys) or "none"


def render_report(report: CheckReport, max_problems: int = 50, skip_bad: bool = False) -> str:
    lines = []
    files = report.files
    lines.append(f"Checked {len(files)} file{'s' if len(files) != 1 else ''}: {_count(report.records)} records")
    for f in files[:20]:
        detail = f"{f.format or 'unreadable'}, {_count(f.records + f.lost)} records"
        if f.bad_records:
            detail += f", {_count(f.bad_records)} bad"
        lines.append(f"  {f.path}  ({detail})")
    if len(files) > 20:
        lines.append(f"  ... and {len(files) - 20} more files")
    lines.append(f"Samples: {_count(report.samples)} usable, {_count(report.bad_records)} bad")
    lines.append(f"  formats: {_counter(report.formats)}")
    lines.append(f"  kinds:   {_counter(report.kinds, ('chat', 'text', 'preference'))}")
    lines.append(f"  roles:   {_counter(report.roles, ('system', 'user', 'assistant'))}  (messages)")
    if report.kinds.get("preference"):
        lines.append(f"  {_count(report.kinds['preference'])} preference pairs are checked but not trained "
                     "by supervised fine-tuning")
    if report.duplicates:
        lines.append(f"  {_count(report.duplicates)} exact duplicates (data.dedupe=true drops them)")
    t = report.tokens
    if t is not None:
        lines.append(f"Tokens ({report.tokenizer} tokenizer): min {t.min} · median {t.median} · p95 {t.p95} "
                     f"· max {t.max}  over {_count(t.samples)} samples")
        cut = f"  cutoff {t.cutoff}: {_count(t.truncated)} sample{'s' if t.truncated != 1 else ''} would be truncated"
        if t.emptied:
            cut += f", {_count(t.emptied)} of them lose every trained token and are dropped"
        lines.append(cut)
    loaded = report.loaded
    if loaded is not None:
        lines.append(f"Mix: {_count(len(loaded.train))} training samples, {_count(len(loaded.val))} validation")
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
        lines.append(f"Usable: yes{extra}")
    else:
        lines.append(f"Usable: no: {report.verdict}")
    return "\n".join(lines)


def report_json(report: CheckReport) -> dict:
    """The report as plain data (for `--json` and the web UI)."""
    t = report.tokens
    loaded = report.loaded
    return {
        "usable": report.usable,
        "verdict": report.verdict,
        "records": report.records,
        "samples": report.samples,
        "bad_records": report.bad_records,
        "files": [{"path": f.path, "format": f.format, "records": f.records + f.lost, "bad": f.bad_records}
                  for f in report.files],
        "formats": dict(report.formats),
        "kinds": dict(report.kinds),
        "roles": dict(report.roles),
        "duplicates": report.duplicates,
        "tokens": None if t is None else {**t.__dict__, "tokenizer": report.tokenizer},
        "mix": None if loaded is None else {
            "train": len(loaded.train), "val": len(loaded.val), "skipped": loaded.skipped,
            "datasets": [m.__dict__ for m in loaded.mix]},
        "problems": [str(i) for i in report.issues],
    }
