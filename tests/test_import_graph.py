"""The package's import graph has no cycles, and the library never imports Dagster.

A reader should find any behaviour by following the data flow: `tamiyo_models` subpackages (and top-level
modules) form a DAG, no two modules import each other (directly or round a loop), `assets` may import
`tamiyo_models` and `pipelines` may import `assets`, never the reverse. Imports inside functions count too: a
late import hides a cycle from Python, not from the reader. So do registries: a string naming a module
("tamiyo_models.agents.networks", imported by importlib on first use) is an edge like any import.
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


def _registry_strings(path: Path, modules: set[str]) -> set[str]:
    """String constants that name a module of the project: what a registry hands to importlib."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in modules}


def _edges(name: str, path: Path, modules: set[str]) -> set[str]:
    return _imports(name, path) | _registry_strings(path, modules)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    files = _module_files()
    for name, path in files.items():
        for target in _edges(name, path, set(files)):
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


def _module_graph() -> dict[str, set[str]]:
    """Module to module: `from .x import y` names module x (or x.y when y is a module itself)."""
    files = _module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        for target in _edges(name, path, set(files)):
            module = target if target in files else target.rsplit(".", 1)[0]
            if module in files and module != name:
                graph.setdefault(name, set()).add(module)
    return graph


def test_no_two_modules_import_each_other():
    graph = _module_graph()
    assert "tamiyo_models.episodes.episode" in graph  # the scan resolved real modules
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"module import cycle: {' -> '.join(exc.args[1])}") from None


def test_registries_are_edges_of_the_graph():
    # agents.saved names the modules that define each network kind; the scan must see those names as edges.
    graph = _module_graph()
    assert "tamiyo_models.agents.networks" in graph["tamiyo_models.agents.saved"]
    assert "tamiyo_models.agents.imitation_network" in graph["tamiyo_models.agents.saved"]


def test_the_library_has_no_flat_modules_beyond_the_entry_point():
    # Modules are grouped by what they are (world, episodes, controllers, agents, ...); only the CLI sits flat.
    flat = sorted(p.name for p in (ROOT / "tamiyo_models").glob("*.py") if p.name != "__init__.py")
    assert flat == ["cli.py", "cli_reference.py"]


def test_library_never_imports_dagster_and_assets_never_import_pipelines():
    for name, path in _module_files().items():
        imported = {t.split(".")[0] for t in _imports(name, path)}
        if name.startswith("tamiyo_models"):
            assert not imported & {"dagster", "dagster_mlflow", "assets", "pipelines"}, f"{path} imports {imported}"
        if name.startswith("assets"):
            assert "pipelines" not in imported, f"{path} imports pipelines"
