"""The package's import graph has no cycles, and the library never imports Dagster.

A reader should find any behaviour by following the data flow: `tamiyo_models` subpackages (and top-level
modules) form a DAG, `assets` may import `tamiyo_models` and `pipelines` may import `assets`, never the
reverse. Imports inside functions count too: a late import hides a cycle from Python, not from the reader.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tamiyo_models", "assets", "pipelines")


def _unit(module: str) -> str:
    # The library is compared by subpackage or top-level module; assets and pipelines as whole packages.
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tamiyo_models" else parts[0]


def _module_files() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in _module_files().items():
        for target in _imports(name, path):
            if target.split(".")[0] in PACKAGES and _unit(target) != _unit(name):
                graph.setdefault(_unit(name), set()).add(_unit(target))
    return graph


def test_no_import_cycles_between_subpackages():
    graph = _graph()
    assert "tamiyo_models.warehouse" in graph and "assets" in graph  # the scan saw the real packages
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_library_never_imports_dagster_and_assets_never_import_pipelines():
    for name, path in _module_files().items():
        imported = {t.split(".")[0] for t in _imports(name, path)}
        if name.startswith("tamiyo_models"):
            assert not imported & {"dagster", "dagster_mlflow", "assets", "pipelines"}, f"{path} imports {imported}"
        if name.startswith("assets"):
            assert "pipelines" not in imported, f"{path} imports pipelines"
