"""Column mapping: files whose fields have other names.

`columns` maps ducktune's field name to the file's field name ({output: answer}).
LLaMA-Factory's names are accepted too (prompt, query, response, messages), so a
dataset_info.json entry's `columns` can be used as is. Problems are reported with the
file's own field names: a renamed field is renamed back in every issue.
"""

from __future__ import annotations

import re

from ducktune.data.schema import Issue, Record

# Fields a file may lack although a dataset_info.json entry maps them (LLaMA-Factory lists them for
# every file of a kind): any other mapped column that no record has is a mistake to report.
OPTIONAL_FIELDS = ("system", "history", "input", "tools")
# LLaMA-Factory column name -> ducktune field name.
LLAMA_FACTORY_ALIASES = {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"}
# Columns LLaMA-Factory knows that ducktune cannot use (yet): reported, not silently dropped, whether a
# dataset_info.json entry maps them or a record holds them (formats.normalize).
UNSUPPORTED_COLUMNS = {"images": "images", "videos": "videos", "audios": "audio"}

_HEAD = re.compile(r"^[^\[.]+")


def canonical_columns(columns: dict[str, str], fmt: str) -> dict[str, str]:
    """{ducktune field: file field} with LLaMA-Factory names translated for format `fmt`."""
    out: dict[str, str] = {}
    for target, source in columns.items():
        if target == "messages":
            # LLaMA-Factory's "messages" column is the turn list, whatever the format calls it.
            target = "conversations" if fmt == "sharegpt" else "messages"
        else:
            target = LLAMA_FACTORY_ALIASES.get(target, target)
        out[target] = source
    return out


def rename_fields(records: list[Record], mapping: dict[str, str]) -> None:
    """Rename each record's fields in place: mapping is {ducktune field: file field}."""
    if all(t == s for t, s in mapping.items()):
        return
    sources = set(mapping.values())
    for record in records:
        value = record.value
        if not isinstance(value, dict):
            continue
        # A field that a mapping fills is taken only from its mapped column: the file's own field of
        # that name is dropped, so a mapping to a missing column fails instead of being ignored.
        renamed = {k: v for k, v in value.items() if k not in sources and (k not in mapping or mapping[k] == k)}
        for target, source in mapping.items():
            if source in value:
                renamed[target] = value[source]
        record.value = renamed


def file_field_names(issues: list[Issue], mapping: dict[str, str]) -> list[Issue]:
    """Issues with ducktune's field names replaced by the file's (`output` -> `answer`)."""
    mapping = {t: s for t, s in mapping.items() if t != s}
    if not mapping:
        return issues
    out = []
    for issue in issues:
        match = _HEAD.match(issue.field)
        if match and match.group(0) in mapping:
            field = mapping[match.group(0)] + issue.field[match.end():]
            issue = Issue(issue.file, issue.line, field, issue.message, fatal=issue.fatal)
        out.append(issue)
    return out
