"""A tiny real warehouse for the policy tests: synthetic episodes under the heuristic and a random controller
(the heuristic alone only waits in 8 synthetic epochs; the random controller gives every action), ingested
with the warehouse's own ingestion."""

from __future__ import annotations

from pathlib import Path

from tamiyo_models.controllers import ControllerConfig
from tamiyo_models.episodes.episode import EpisodeConfig
from tamiyo_models.episodes.generation import generate
from tamiyo_models.warehouse import ingest_folder
from tamiyo_models.world.datasets import DatasetConfig

TRAINING_SEEDS = range(10)
RANDOM_WEIGHTS = {"WAIT": 3.0, "GERMINATE": 1.0, "ADVANCE": 2.0, "CULL": 1.0}


def tiny_config(seed: int, controller: ControllerConfig | None = None, max_epochs: int = 8) -> EpisodeConfig:
    return EpisodeConfig(
        dataset=DatasetConfig(name="synthetic"), max_epochs=max_epochs, seed=seed,
        controller=controller or ControllerConfig(kind="random", random_weights=RANDOM_WEIGHTS),
    )  # fmt: skip


def build_warehouse(root: Path) -> Path:
    raw, warehouse = root / "raw", root / "warehouse.duckdb"
    configs = [tiny_config(s) for s in TRAINING_SEEDS]
    results = generate(configs, raw, workers=1)
    assert all(r.status == "complete" for r in results), [r.error for r in results]
    summary = ingest_folder(raw, warehouse)
    assert summary.runs_loaded == len(configs), summary.line()
    return warehouse
