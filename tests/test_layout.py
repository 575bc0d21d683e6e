"""The house a newcomer walks: packages by role, no cycle between them, no two modules with one name, no module
too long to read (docs/design.md, "Layout")."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "adamml"
TOP_MODULES = {"__init__", "errors", "modalities", "stages"}
PACKAGES = {"cli", "config", "data", "inference", "interop", "models", "prepare", "report", "runtime", "train",
            "workflows"}
# what each package may import (besides the top modules); cli may import everything and nothing imports cli
ALLOWED = {
    "config": set(),
    "runtime": {"config"},
    "data": {"config", "runtime"},
    "models": {"config", "data"},
    "prepare": {"data", "runtime"},
    "report": {"data", "inference", "runtime"},  # inference: the evaluation report's type
    "inference": {"config", "data", "models", "prepare", "runtime"},
    "train": {"config", "data", "models", "inference", "runtime"},
    "interop": {"config", "models", "inference", "prepare"},
    "workflows": {"config", "data", "prepare", "inference", "train", "report", "runtime"},
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _node(module: str) -> str:
    """adamml.inference.evaluation -> inference; adamml.stages -> stages."""
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        rel = path.relative_to(SRC.parent).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 2:
            continue  # the public API's lazy table
        me = _node(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adamml."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("adamml.")]
            edges[me].update(_node(n) for n in names if _node(n) != me)
    return edges


def test_the_top_holds_a_handful_of_modules_and_packages_by_role():
    top = {p.stem for p in SRC.glob("*.py")}
    assert top == TOP_MODULES
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert packages == PACKAGES


def test_packages_import_only_downwards_and_nothing_imports_the_command_line():
    for package, uses in _imports().items():
        assert "cli" not in uses or package == "cli", package
        if package in ALLOWED:
            extra = uses - ALLOWED[package] - TOP_MODULES
            assert not extra, f"{package} imports {sorted(extra)}"


def test_no_two_modules_share_a_name_and_none_is_too_long():
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        if path.name != "__init__.py":
            by_name[path.stem].append(str(path.relative_to(SRC)))
        lines = path.read_text(encoding="utf-8").count("\n")
        assert lines <= 500, f"{path.relative_to(SRC)}: {lines} lines"
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
