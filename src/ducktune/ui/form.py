"""The Train tab's form, generated from the one config schema (no second list of options).

Each option of `RunConfig` becomes one field: its widget follows from the JSON schema
(enum -> select, boolean -> checkbox, integer/number -> number, string -> text, anything
structured -> YAML text), its help text and default from `describe_options`. The page
posts the values back as {dotted key: value}; they are validated by the same
`build_config` the CLI uses, so the form cannot accept what `ducktune train` would refuse.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from ducktune.config import RunConfig, build_config, describe_options
from ducktune.errors import ConfigError

# Shown first and open; the rest are folded under "advanced" by the page. train.objective picks
# supervised vs preference tuning (what the data must look like), so it is never folded away;
# preference.beta is the one preference setting most runs change; model.adapter continues an
# SFT run's adapter (preference tuning on top of it).
ESSENTIAL = {
    "model.name_or_path", "model.system_prompt", "model.adapter", "data.datasets", "data.cutoff_len",
    "train.method", "train.objective", "train.learning_rate", "train.num_epochs", "train.max_steps",
    "train.batch_size", "lora.r", "lora.alpha", "preference.beta", "output.dir",
}


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    return defs[ref.rsplit("/", 1)[-1]] if ref else schema


def _widget(field: dict) -> tuple[str, list | None, bool]:
    """(widget, choices, nullable) for one property of the JSON schema."""
    variants = field.get("anyOf", [field])
    nullable = any(v.get("type") == "null" for v in variants)
    concrete = [v for v in variants if v.get("type") != "null"]
    if len(concrete) == 1:
        only = concrete[0]
        if "enum" in only:
            return "select", list(only["enum"]), nullable
        kind = only.get("type")
        if kind == "boolean":
            return "checkbox", None, nullable
        if kind == "integer":
            return "integer", None, nullable
        if kind == "number":
            return "number", None, nullable
        if kind == "string":
            return "text", None, nullable
    return "yaml", None, nullable


def _bounds(field: dict) -> dict:
    variants = [v for v in field.get("anyOf", [field]) if v.get("type") != "null"]
    out = {}
    for v in variants:
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in v:
                out[key] = v[key]
    return out


def form_schema() -> list[dict]:
    """Sections of fields, in the schema's order, each with widget, default and documentation."""
    schema = RunConfig.model_json_schema()
    defs = schema.get("$defs", {})
    documented = {key: (type_name, default, text) for key, type_name, default, text in describe_options()}
    sections = []
    for section, ref in schema["properties"].items():
        props = _resolve(ref, defs).get("properties", {})
        fields = []
        for name, field in props.items():
            key = f"{section}.{name}"
            type_name, default, text = documented[key]
            widget, choices, nullable = _widget(field)
            fields.append({"key": key, "name": name, "widget": widget, "choices": choices, "nullable": nullable,
                           "default": default, "type": type_name, "description": text, "bounds": _bounds(field),
                           "essential": key in ESSENTIAL})
        sections.append({"name": section, "fields": fields})
    return sections


@lru_cache(maxsize=1)
def _widgets() -> dict[str, str]:
    # The schema is fixed for the process: building it takes ~15 ms, once per form post before.
    return {f["key"]: f["widget"] for s in form_schema() for f in s["fields"]}


def nest(values: dict[str, Any]) -> dict:
    """{'train.learning_rate': 1e-4} -> {'train': {'learning_rate': 1e-4}}; YAML fields are parsed."""
    widgets = _widgets()
    data: dict = {}
    problems = []
    for key, value in values.items():
        if key not in widgets:
            problems.append(f"form: {key}: unknown option")
            continue
        if widgets[key] == "yaml" and isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError as exc:
                problems.append(f"form: {key}: invalid YAML ({str(exc).splitlines()[0]})")
                continue
        if value is None or value == "":
            continue  # left empty: the schema's default
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    if problems:
        raise ConfigError("\n".join(problems))
    return data


def form_values(config: RunConfig) -> dict[str, Any]:
    """The form's values of a config (nest's inverse): {'train.learning_rate': 0.0001, ...}."""
    dumped = config.model_dump(mode="json")
    values = {key: dumped[key.split(".", 1)[0]][key.split(".", 1)[1]] for key in _widgets()}
    values["data.datasets"] = [_dataset_entry(spec) for spec in config.data.datasets]
    return values


def _dataset_entry(spec) -> str | dict:
    """One dataset as a person writes it in the form: its path alone (`- data.json`), or only the options
    it sets ({path, repeat: 2}); every default spelled out ({"format": "auto", "columns": {}, ...}) buried
    the path in a reloaded form."""
    entry = spec.model_dump(mode="json", exclude_defaults=True)
    return entry["path"] if list(entry) == ["path"] else entry


def config_from_form(values: dict[str, Any]) -> RunConfig:
    return build_config(nest(values), source="form")
