"""Shared by the warehouse and Dagster tests (no tests here): a few real raw runs, generated once per session,
and small writers for corrupted copies and legacy reference files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

_GENERATED: list[Path] = []


def generated_runs(cache_dir: Path) -> list[Path]:
    """Three real 8-epoch raw runs (random, epsilon-heuristic, heuristic controllers), generated once."""
    if not _GENERATED:
        from tamiyo_models.controllers import ControllerConfig
        from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
        from tamiyo_models.world.datasets import DatasetConfig

        for seed, kind in enumerate(("random", "epsilon-heuristic", "heuristic")):
            config = EpisodeConfig(
                max_epochs=8, seed=seed, dataset=DatasetConfig(name="synthetic"), controller=ControllerConfig(kind=kind)
            )
            _GENERATED.append(Path(run_episode(config, cache_dir).path))
    return list(_GENERATED)


def copy_runs(runs: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in runs]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return path
