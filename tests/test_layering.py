"""Imports between ducktune's subpackages go one way, down the pipeline; no function is too long."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ducktune"

# Lowest first. A module may import from its own layer's package and from any lower layer.
# Layer 0 is the foundation (errors < io/config < rundir, checked by its own order below).
LAYERS = [
    ["errors", "resources"], ["io", "config"], ["rundir"],
    ["models"],
    ["data"],
    ["chat"],
    ["train", "export", "eval"],
    ["serve"],
    ["ui"],
    ["quickstart"],
    ["commands"],
    ["cli"],
    ["__main__"],
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_FUNCTION_LINES = 80


def _unit(path: Path, src: Path) -> str:
    """The layer unit of a source file: its top-level subpackage or module name."""
    return path.relative_to(src).parts[0].removesuffix(".py")


def _imported_units(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ducktune."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "ducktune":
            # `from ducktune import __version__` reads the package root, which every layer may.
            found.update(alias.name for alias in node.names if not alias.name.startswith("__"))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ducktune."))
    return found


def import_violations(src: Path = SRC) -> list[str]:
    problems = []
    for path in sorted(src.rglob("*.py")):
        unit = _unit(path, src)
        if unit == "__init__":
            continue
        if unit not in LEVEL:
            problems.append(f"{path.relative_to(src)}: '{unit}' has no layer in LAYERS")
            continue
        for target in _imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if target == unit or target == "__init__":
                continue
            if target not in LEVEL:
                problems.append(f"{path.relative_to(src)} imports unknown unit '{target}'")
            elif LEVEL[target] >= LEVEL[unit]:
                problems.append(f"{path.relative_to(src)}: {unit} (layer {LEVEL[unit]}) imports {target} "
                                f"(layer {LEVEL[target]})")
    return problems


def test_imports_only_go_down_the_layers():
    assert import_violations() == []


def test_the_check_catches_a_back_edge(tmp_path):
    """A model module importing the data layer (the cycle this check exists to prevent) is reported."""
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "models" / "loading.py").write_text("from ducktune.data.template import ChatFormat\n")
    (tmp_path / "data" / "template.py").write_text("def f():\n    from ducktune.models.loading import x\n")
    assert import_violations(tmp_path) == ["models/loading.py: models (layer 3) imports data (layer 4)"]


def long_functions(src: Path = SRC) -> list[str]:
    """Functions over MAX_FUNCTION_LINES lines, unless a comment on the `def` line's previous line
    says why (`# long: <reason>`)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - first + 1
                justified = first >= 2 and lines[first - 2].strip().startswith("# long:")
                if length > MAX_FUNCTION_LINES and not justified:
                    found.append(f"{path.relative_to(src)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_80_lines():
    assert long_functions() == []


def test_the_length_check_catches_a_long_function_unless_justified(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def long_one():\n{body}\n\n\n# long: a table\ndef justified():\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:1 long_one ({MAX_FUNCTION_LINES + 1} lines)"]
