"""From `data:` in the config to the samples a run trains on.

    read every dataset (dataset_files.py) -> refuse on problems (or skip bad records)
    -> keep the samples the objective trains on -> dedupe
    -> per-dataset max_samples -> hold out validation samples -> mix by repeat or weight
    -> deterministic shuffle -> global max_samples

Validation samples are taken from each dataset before repeats, so no copy of a validation
sample is trained on. Every random choice uses one `random.Random(seed)`.

The objective decides which samples are kept: "sft" trains chats and plain text (pairs
and KTO samples are counted, not used); "preference" trains pairs and unpaired KTO samples
(chats and text are counted, not used).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ducktune.config import DataConfig, DatasetSpec
from ducktune.data.formats import DEFAULT_OPTIONS, NormalizeOptions
from ducktune.data.schema import PREFERENCE_KINDS, Issue, Sample
from ducktune.data.dataset_files import DatasetRead, FileData, read_dataset, read_spec
from ducktune.errors import DataError

MAX_ISSUES_SHOWN = 20


@dataclass
class DatasetMix:
    """How one configured dataset ended up in the mix."""

    name: str
    usable: int  # samples after dedupe and its max_samples (before the validation split)
    train: int = 0  # samples in the training mix (repeats counted)
    val: int = 0
    unused: int = 0  # valid samples of a kind the objective does not train


def unused_note(loaded: "LoadedData") -> str | None:
    """One line naming the datasets whose samples the objective leaves out (pairs in a supervised run,
    chats in a preference run), or None: a mix of kinds across files is allowed, never silent."""
    left = [f"{m.name}: {m.unused}" for m in loaded.mix if m.unused]
    if not left:
        return None
    kinds = "preference pairs / KTO samples" if loaded.objective == "sft" else "chat / text samples"
    trains = "supervised fine-tuning" if loaded.objective == "sft" else "preference tuning"
    return f"not used: {', '.join(left)} {kinds}, which {trains} does not train"


@dataclass
class LoadedData:
    train: list[Sample]
    val: list[Sample]
    files: list[FileData]
    issues: list[Issue]
    skipped: int = 0  # bad records left out (with skip_bad)
    duplicates_removed: int = 0
    mix: list[DatasetMix] = field(default_factory=list)
    preference_pairs: int = 0  # parsed and valid, but not trained by supervised fine-tuning
    objective: str = "sft"
    unused: int = 0  # valid samples of a kind the objective does not train (pairs for sft, chats for preference)


def read_datasets(config: DataConfig, options: NormalizeOptions = DEFAULT_OPTIONS) -> list[DatasetRead]:
    """Every configured dataset read and normalized, problems collected (never raises on bad data)."""
    return [read_dataset(spec, config.dataset_dir, options) for spec in config.datasets]


def load_file(path, fmt: str = "auto", columns: dict[str, str] | None = None) -> FileData:
    """One file read and normalized, problems collected (the web UI's Data tab uses this)."""
    return read_spec(DatasetSpec(path=str(path), format=fmt, columns=columns or {}))[0]


def load_data(config: DataConfig, seed: int = 42, skip_bad: bool | None = None, chat_format=None,
              options: NormalizeOptions | None = None, objective: str = "sft") -> LoadedData:
    """Load, validate and mix every dataset. Raises DataError listing every problem when unusable.

    `objective`: "sft" (chat and text samples) or "preference" (pairs and unpaired KTO samples).

    With `chat_format`, records the chat template cannot render (turns that do not alternate
    when the template requires it, a system message it does not accept) are problems too.
    """
    skip_bad = config.skip_bad if skip_bad is None else skip_bad
    if not config.datasets:
        raise DataError("data.datasets: no training data configured (add a file, e.g. data.datasets=[my.json])")
    if options is None:
        from ducktune.data.template_rules import template_options

        options = template_options(chat_format) if chat_format is not None else DEFAULT_OPTIONS
    return assemble(config, read_datasets(config, options), seed, skip_bad, options, objective)


PREFERENCE_DATA_SHAPES = ("pairs such as {prompt, chosen, rejected} (TRL), chosen and rejected conversations "
                          "sharing a prompt (UltraFeedback) or LLaMA-Factory ranking datasets; for KTO, "
                          "{prompt, completion, label: true/false}")


def data_objective(samples: list[Sample]) -> str:
    """"preference" for data made only of pairs and KTO samples, else "sft"."""
    kinds = {sample.kind for sample in samples}
    return "preference" if kinds and kinds <= set(PREFERENCE_KINDS) else "sft"


def objective_kinds(objective: str) -> tuple[str, ...]:
    """The sample kinds an objective trains on."""
    if objective == "sft":
        return ("chat", "text")
    if objective == "preference":
        return PREFERENCE_KINDS
    raise ValueError(f"unknown objective {objective!r}")


def _nothing_to_train(issues: list[Issue], objective: str, unused: int) -> DataError:
    if objective == "preference":
        held = f" (it holds {unused} chat/text samples, which supervised fine-tuning trains on)" if unused else ""
        return data_error(issues, f"no preference data{held}: preference tuning needs {PREFERENCE_DATA_SHAPES}")
    if unused:
        return data_error(issues, f"the data holds only preference pairs or KTO samples ({unused}); supervised "
                                  "fine-tuning needs chat or text samples; train pairs with train.objective: dpo, orpo or "
                                  "simpo (kto for unpaired samples)")
    return data_error(issues, "no usable training samples")


def assemble(config: DataConfig, datasets: list[DatasetRead], seed: int, skip_bad: bool,
             options: NormalizeOptions = DEFAULT_OPTIONS, objective: str = "sft") -> LoadedData:
    """Datasets already read -> train and validation samples (raises DataError when unusable)."""
    kinds = objective_kinds(objective)
    files = [f for d in datasets for f in d.files]
    issues = [i for f in files for i in f.issues]
    refuse_on(issues, skip_bad, "training")

    rng = random.Random(seed)
    pools, mix, duplicates, unused = _pools(config, datasets, kinds)
    if not any(pools):
        raise _nothing_to_train(issues, objective, unused)

    val: list[Sample] = []
    if config.val_file:
        val_files = read_spec(DatasetSpec(path=config.val_file), config.dataset_dir, options)
        refuse_on([i for f in val_files for i in f.issues], skip_bad, "validation")
        files += val_files
        val = [s for f in val_files for s in f.samples if s.kind in kinds]
    elif config.val_ratio > 0:
        val = _hold_out(pools, mix, config.val_ratio, rng)

    specs = [d.spec for d in datasets]
    train = _mix(config, specs, pools, mix, rng)
    if config.shuffle:
        rng.shuffle(train)
    if config.max_samples is not None and all(spec.weight is None for spec in specs):
        train = train[: config.max_samples]
    skipped = sum(f.bad_records for f in files) if skip_bad else 0
    return LoadedData(train, val, files, issues, skipped=skipped, duplicates_removed=duplicates, mix=mix,
                      preference_pairs=unused if objective == "sft" else 0, objective=objective, unused=unused)


def refuse_on(issues: list[Issue], skip_bad: bool, what: str) -> None:
    fatal = [i for i in issues if i.fatal]
    if fatal:
        raise data_error(issues, f"the {what} data cannot be read as a whole; fix these files "
                                 "(--skip-bad skips bad records, not unreadable files)")
    if issues and not skip_bad:
        use = "convert" if what == "input" else "train on"  # `data convert` reads "input" data
        raise data_error(issues, f"the {what} data has problems; fix them or pass --skip-bad to {use} the good records")


def _pools(config: DataConfig, datasets: list[DatasetRead], kinds: tuple[str, ...] = ("chat", "text")
           ) -> tuple[list[list[Sample]], list[DatasetMix], int, int]:
    """Samples of `kinds` per dataset after dedupe (across datasets) and each one's max_samples;
    duplicates removed; samples of other kinds (not counted in the pools)."""
    seen: set = set()
    pools: list[list[Sample]] = []
    mix: list[DatasetMix] = []
    duplicates = 0
    for dataset in datasets:
        spec = dataset.spec
        samples = []
        left_out = 0
        for f in dataset.files:
            for sample in f.samples:
                if sample.kind in kinds:
                    samples.append(sample)
                else:
                    left_out += 1
        if config.dedupe:
            unique = []
            for sample in samples:
                key = sample.key()
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                unique.append(sample)
            samples = unique
        if spec.max_samples is not None:
            samples = samples[: spec.max_samples]
        pools.append(samples)
        mix.append(DatasetMix(spec.path, len(samples), unused=left_out))
    return pools, mix, duplicates, sum(m.unused for m in mix)


def _hold_out(pools: list[list[Sample]], mix: list[DatasetMix], ratio: float, rng: random.Random) -> list[Sample]:
    """Take `ratio` of each dataset (at least one sample overall) out for validation, in place."""
    counts = [int(len(pool) * ratio) for pool in pools]
    if not any(counts):
        largest = max(range(len(pools)), key=lambda i: len(pools[i]))
        counts[largest] = 1
    val: list[Sample] = []
    for i, (pool, n) in enumerate(zip(pools, counts)):
        if not n:
            continue
        if n >= len(pool) and len(pools) == 1:
            raise DataError(f"data.val_ratio: {ratio} leaves no training samples out of {len(pool)}")
        order = list(range(len(pool)))
        rng.shuffle(order)
        held = set(order[:n])
        val += [pool[j] for j in sorted(held)]
        pools[i] = [s for j, s in enumerate(pool) if j not in held]
        mix[i].val = n
    if not any(pools):
        raise DataError(f"data.val_ratio: {ratio} leaves no training samples")
    return val


def _take(pool: list[Sample], n: int, rng: random.Random) -> list[Sample]:
    """n samples from pool: whole copies, then a random part without replacement."""
    if not pool or n <= 0:
        return []
    whole, rest = divmod(n, len(pool))
    return pool * whole + (rng.sample(pool, rest) if rest else [])


def _mix(config: DataConfig, specs: list[DatasetSpec], pools: list[list[Sample]], mix: list[DatasetMix],
         rng: random.Random) -> list[Sample]:
    if all(spec.weight is None for spec in specs):
        counts = [round(len(pool) * spec.repeat) for spec, pool in zip(specs, pools)]
    else:
        for spec, pool in zip(specs, pools):
            if not pool:
                raise DataError(f"data.datasets: {spec.path} has weight {spec.weight:g} but no usable samples")
        total = config.max_samples or sum(len(pool) for pool in pools)
        counts = _apportion(total, [spec.weight for spec in specs])
    train: list[Sample] = []
    for pool, entry, n in zip(pools, mix, counts):
        taken = _take(pool, n, rng)
        entry.train = len(taken)
        train += taken
    return train


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split `total` in proportion to `weights`, rounding so the parts add up exactly."""
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def data_error(issues: list[Issue], headline: str) -> DataError:
    """One line per problem (up to MAX_ISSUES_SHOWN) and a summary line; a single problem is one line,
    the headline's advice in brackets after it."""
    if len(issues) == 1:
        return DataError(f"{issues[0]} ({headline})", issues)
    shown = [str(i) for i in issues[:MAX_ISSUES_SHOWN]]
    more = len(issues) - len(shown)
    lines = shown + ([f"... and {more} more problems (ducktune data check lists them all)"] if more > 0 else [])
    if issues:
        lines.append(f"{len(issues)} problem{'s' if len(issues) != 1 else ''}: {headline}")
    else:
        lines.append(headline)
    return DataError("\n".join(lines), issues)
