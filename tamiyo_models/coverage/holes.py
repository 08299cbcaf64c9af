"""Holes in the coverage: clusters where fewer than two actions have m samples, written by the analysis and
read by the generator, which forks branch runs exactly there (active filling of holes).

The file names the saved k-means abstraction it refers to, so the generator assigns live states to the same
clusters the analysis counted.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Mapping

import polars as pl

from .abstraction import KMeansAbstraction
from .analysis import CoverageResult


def write_holes(path: str | Path, abstraction_file: str | Path, result: CoverageResult) -> Path:
    holes = result.clusters.filter(~pl.col("covered"))["cluster"].to_list()
    payload = {
        "abstraction": str(Path(abstraction_file).resolve()),
        "min_samples": result.summary["min_samples"],
        "clusters": result.summary["clusters"],
        "holes": sorted(int(h) for h in holes),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)
    return path


class HoleFinder:
    """A fork predicate: true when the state falls in a cluster the last analysis found under-covered."""

    def __init__(self, holes_file: str | Path):
        try:
            payload = json.loads(Path(holes_file).read_text())
            self.abstraction = KMeansAbstraction.load(payload["abstraction"])
            self.holes = frozenset(payload["holes"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{holes_file}: not a coverage holes file ({exc})") from None

    def __call__(self, features: Mapping[str, float], legal, step: int) -> bool:
        return self.abstraction.assign_one(features) in self.holes


@functools.lru_cache(maxsize=4)
def hole_finder(holes_file: str) -> HoleFinder:
    return HoleFinder(holes_file)
