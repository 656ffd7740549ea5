"""Writing a reliability part from a test: docs/reliability/<part>.json and the page rendered from all parts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def reliability_report():
    """bench/reliability_report.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("reliability_report", ROOT / "bench" / "reliability_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_reliability_part(path: Path, data) -> None:
    reliability_report().save_part(Path(path), data)
