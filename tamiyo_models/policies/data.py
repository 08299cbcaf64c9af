"""Training data for policies: decisions read from the warehouse with SQL, split by episode.

`load_decisions` joins `steps` with `observations` (the features the decision was based on; the final
observation, the next state of the last transition, has no decision and is left out) and with the episode
outcome and configuration, into one polars frame: one row per decision.

`split_episodes` assigns whole episodes (optionally whole configuration groups) to train or validation. The
reference split shuffled *decisions*, so steps of one episode landed on both sides and its 98% partly measured
memorised episodes; here no episode is ever on both sides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..world.actions import COARSE_ACTIONS
from ..world.blueprint_names import BLUEPRINTS
from ..world.features import FEATURE_SETS

# Columns every decision frame carries besides the features (what training, weighting and lineage need).
DECISION_COLUMNS = (
    "run_id", "step", "action_fine", "action_coarse", "blueprint", "action_index", "propensity", "reward",
    "accuracy_change", "controller_kind", "dataset", "seed", "dataset_config", "host_widths",
    "final_val_accuracy",
)  # fmt: skip


def feature_names(feature_set: str) -> tuple[str, ...]:
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[feature_set]


def decisions_sql(feature_set: str, controllers: tuple[str, ...] | None = None, datasets: tuple[str, ...] | None = None) -> str:
    from .relabel import HEURISTIC_INPUTS

    features = ", ".join(f"o.{name}" for name in feature_names(feature_set))
    heuristic_inputs = ", ".join(f"o.{name} AS h_{name}" for name in HEURISTIC_INPUTS)
    # Truncated runs (branches stopped at their horizon) hold real transitions too.
    filters = ["e.status IN ('complete', 'truncated')", "o.is_final = false"]
    if controllers:
        filters.append("r.controller_kind IN (" + ", ".join(_quote(c) for c in controllers) + ")")
    if datasets:
        filters.append("r.dataset IN (" + ", ".join(_quote(d) for d in datasets) + ")")
    return f"""
        SELECT s.run_id, s.step, s.action_fine, s.action_coarse, s.blueprint, s.action_index, s.propensity,
               s.reward, s.accuracy_change, r.controller_kind, r.dataset, r.seed, s.legal_actions,
               coalesce(b.parent_run_id, s.run_id) AS episode_family,
               {heuristic_inputs},
               CAST(json_extract(r.config_json, '$.dataset') AS VARCHAR) AS dataset_config,
               CAST(json_extract(r.config_json, '$.host.widths') AS VARCHAR) AS host_widths,
               e.final_val_accuracy, {features}
        FROM steps s
        JOIN observations o USING (run_id, step)
        JOIN runs r USING (run_id)
        JOIN episodes e USING (run_id)
        LEFT JOIN branches b USING (run_id)
        WHERE {' AND '.join(filters)}
        ORDER BY s.run_id, s.step
    """


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def load_decisions(
    warehouse_path: str | Path,
    feature_set: str = "base",
    *,
    controllers: tuple[str, ...] | None = None,
    datasets: tuple[str, ...] | None = None,
) -> pl.DataFrame:
    """One row per decision of complete episodes: the DECISION_COLUMNS, then the feature set's columns."""
    from ..warehouse import query

    frame = query(warehouse_path, decisions_sql(feature_set, controllers, datasets))
    if frame.is_empty():
        raise ValueError(f"no decisions in {warehouse_path} (feature set {feature_set}, controllers {controllers})")
    return frame


def raw_runs(warehouse_path: str | Path, run_ids: list[str]) -> pl.DataFrame:
    """The raw runs behind a training set, with their generation configuration (for lineage)."""
    from ..warehouse import lineage_runs

    return lineage_runs(warehouse_path, run_ids)


def frame_digest(frame: pl.DataFrame, feature_set: str) -> str:
    """SHA-256 of the exact rows used (keys, labels, weights-relevant columns and features, in row order)."""
    digest = hashlib.sha256()
    keyed = frame.select("run_id", "step", "action_fine").sort("run_id", "step")
    digest.update("\n".join(f"{r}|{s}|{a}" for r, s, a in keyed.iter_rows()).encode())
    ordered = frame.sort("run_id", "step")
    for column in ("reward", "final_val_accuracy", *feature_names(feature_set)):
        digest.update(np.ascontiguousarray(ordered[column].fill_null(float("nan")).to_numpy(), dtype=np.float64).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EpisodeSplit:
    train_runs: tuple[str, ...]
    val_runs: tuple[str, ...]
    group_by: str | None = None

    def frames(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        return (
            frame.filter(pl.col("run_id").is_in(list(self.train_runs))),
            frame.filter(pl.col("run_id").is_in(list(self.val_runs))),
        )


def split_episodes(frame: pl.DataFrame, val_fraction: float = 0.2, seed: int = 0, group_by: str | None = None) -> EpisodeSplit:
    """Hold out whole episodes (or, with `group_by` = a column such as "dataset_config" or "host_widths", whole
    configuration groups, to measure generalisation to unseen configurations). A branch run and its parent
    share the state at their fork, so they always fall on the same side (`episode_family`)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if group_by is None and "episode_family" in frame.columns and frame["episode_family"].n_unique() < frame["run_id"].n_unique():
        group_by = "episode_family"
    episodes = frame.select("run_id", *([group_by] if group_by else [])).unique().sort("run_id")
    rng = np.random.default_rng(seed)
    if group_by is None:
        runs = episodes["run_id"].to_list()
        order = rng.permutation(len(runs))
        n_val = max(1, round(val_fraction * len(runs)))
        if n_val >= len(runs):
            raise ValueError(f"{len(runs)} episodes are too few to hold out {val_fraction:.0%} and keep some to train")
        val = {runs[i] for i in order[:n_val]}
    else:
        groups = sorted(episodes[group_by].cast(pl.Utf8).fill_null("null").unique().to_list())
        if len(groups) < 2:
            raise ValueError(f"split by {group_by} needs at least 2 groups, found {len(groups)}")
        order = rng.permutation(len(groups))
        n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
        held = {groups[i] for i in order[:n_val]}
        keyed = episodes.with_columns(pl.col(group_by).cast(pl.Utf8).fill_null("null").alias("_group"))
        val = set(keyed.filter(pl.col("_group").is_in(list(held)))["run_id"].to_list())
    train = tuple(r for r in episodes["run_id"].to_list() if r not in val)
    return EpisodeSplit(train_runs=train, val_runs=tuple(sorted(val)), group_by=group_by)


def arrays(frame: pl.DataFrame, features: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Features, coarse labels, blueprint labels (-1 unless GERMINATE) as numpy arrays."""
    coarse_index = {a: i for i, a in enumerate(COARSE_ACTIONS)}
    blueprint_index = {b: i for i, b in enumerate(BLUEPRINTS)}
    return {
        "x": frame.select(features).fill_null(0.0).to_numpy().astype(np.float32),
        "coarse": np.array([coarse_index[a] for a in frame["action_coarse"].to_list()], dtype=np.int64),
        "blueprint": np.array([blueprint_index.get(b, -1) if b else -1 for b in frame["blueprint"].to_list()], dtype=np.int64),
    }
