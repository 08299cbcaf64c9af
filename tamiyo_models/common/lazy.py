"""Lazy package exports: a package names what it exports and from which submodule, and the submodule is
imported on first use. `tamiyo --help` and test collection import the packages without paying for polars,
duckdb, pandera, torch or mlflow until a name is actually used."""

from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module-level `__getattr__` resolving `exports` (name -> submodule) inside `package`."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
