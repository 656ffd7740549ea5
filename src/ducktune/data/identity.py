"""Self-cognition ("who are you?") datasets from a bundled template with placeholders.

The template (resources/identity_template.json) holds questions and answers in English
and Chinese with `{name}` and `{author}` placeholders, like LLaMA-Factory's identity.json
(written fresh for ducktune).
"""

from __future__ import annotations

import json
from importlib import resources

from ducktune.errors import UserError


def identity_records(name: str | dict[str, str], author: str | dict[str, str], langs: list[str] | None = None) -> list[dict]:
    """Alpaca records; `name`/`author` may be per-language dicts, e.g. {'en': 'Duckling', 'zh': '小鸭'}."""
    template = json.loads(resources.files("ducktune.resources").joinpath("identity_template.json").read_text(encoding="utf-8"))
    available = sorted({item["lang"] for item in template})
    langs = langs or available
    unknown = [lang for lang in langs if lang not in available]
    if unknown:
        raise UserError(f"--lang: unknown language {', '.join(unknown)} (available: {', '.join(available)})")
    records = []
    for item in template:
        if item["lang"] not in langs:
            continue
        lang = item["lang"]
        n = name.get(lang, next(iter(name.values()))) if isinstance(name, dict) else name
        a = author.get(lang, next(iter(author.values()))) if isinstance(author, dict) else author
        records.append({
            "instruction": item["instruction"].replace("{name}", n).replace("{author}", a),
            "input": item.get("input", ""),
            "output": item["output"].replace("{name}", n).replace("{author}", a),
        })
    return records
