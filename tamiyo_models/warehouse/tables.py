"""Column names and polars dtypes of every warehouse table, in one place.

`sql/schema.sql` holds the DuckDB definitions (with a comment on every column); this module holds the
same columns as polars dtypes, because ingestion builds polars frames, validates them with pandera and inserts
them by name. `tests/test_warehouse_schema.py` checks that the two agree, so neither can drift alone.

Columns whose name starts with `_` (`_unit`, `_position`) travel with a frame during ingestion only: they say
which parsed file (unit) and which line or decision a row came from, so a validation failure can be traced
back to its source. They are dropped before the insert.
"""

from __future__ import annotations

import polars as pl

from ..world.actions import ALL_ACTIONS
from ..world.features import ALL_FEATURES

PERCENTILES: tuple[str, ...] = ("1", "5", "10", "25", "50", "75", "90", "95", "99")
PROBABILITY_COLUMNS: dict[str, str] = {action: f"prob_{action.lower()}" for action in ALL_ACTIONS}

PROVENANCE: dict[str, pl.DataType] = {"_unit": pl.Int64, "_position": pl.String}

RUNS: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "source_format": pl.String,
    "source_file": pl.String,
    "source_sha256": pl.String,
    "source_position": pl.String,
    "content_sha256": pl.String,
    "feature_schema_version": pl.String,
    "format_version": pl.Int64,
    "code_package": pl.String,
    "code_source_sha256": pl.String,
    "git_commit": pl.String,
    "git_dirty": pl.Boolean,
    "controller_kind": pl.String,
    "controller_name": pl.String,
    "dataset": pl.String,
    "max_epochs": pl.Int64,
    "seed": pl.Int64,
    "learning_rate": pl.Float64,
    "reward_scale": pl.Float64,
    "reward_shaped": pl.Boolean,
    "host_parameters": pl.Int64,
    "torch_version": pl.String,
    "started_at": pl.String,
    "ended_at": pl.String,
    "config_json": pl.String,
    "controller_json": pl.String,
    "task_json": pl.String,
    "regime": pl.String,
    "data_order_seed": pl.Int64,
    "controller_label": pl.String,
    "rent": pl.Float64,
}

EPISODES: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "status": pl.String,
    "error": pl.String,
    "steps": pl.Int64,
    "final_val_accuracy": pl.Float64,
    "best_val_accuracy": pl.Float64,
    "seeds_created": pl.Int64,
    "seeds_fossilized": pl.Int64,
    "seeds_culled": pl.Int64,
    "return": pl.Float64,
    "final_parameters": pl.Int64,
    "wall_seconds": pl.Float64,
    "final_test_accuracy": pl.Float64,
    "final_test_loss": pl.Float64,
    "test_accuracy_last": pl.Float64,
    "final_legal_actions": pl.List(pl.String),
    "score": pl.Float64,
}

STEPS: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "step": pl.Int64,
    "epoch": pl.Int64,
    "action_fine": pl.String,
    "action_coarse": pl.String,
    "blueprint": pl.String,
    "action_index": pl.Int64,
    "propensity": pl.Float64,
    **{column: pl.Float64 for column in PROBABILITY_COLUMNS.values()},
    "legal_actions": pl.List(pl.String),
    "controller": pl.String,
    "reason": pl.String,
    "greedy_fine": pl.String,
    "explored": pl.Boolean,
    "applied": pl.Boolean,
    "gate_passed": pl.Boolean,
    "gate_reason": pl.String,
    "gate_from_stage": pl.String,
    "seed_stage": pl.String,
    "val_accuracy_before": pl.Float64,
    "val_accuracy_after": pl.Float64,
    "best_val_accuracy_before": pl.Float64,
    "best_val_accuracy_after": pl.Float64,
    "val_loss_after": pl.Float64,
    "train_loss_after": pl.Float64,
    "accuracy_change": pl.Float64,
    "shaping": pl.Float64,
    "reward": pl.Float64,
    "reward_as_logged": pl.Float64,
    "is_last": pl.Boolean,
    "step_seconds": pl.Float64,
    "telemetry_seconds": pl.Float64,
    "source_line": pl.Int64,
    "forced": pl.Boolean,
    "stochastic": pl.Boolean,
}

OBSERVATIONS: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "step": pl.Int64,
    "is_final": pl.Boolean,
    "feature_schema_version": pl.String,
    **{name: pl.Float64 for name in ALL_FEATURES},
}

LAYER_GRADIENTS: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "step": pl.Int64,
    "layer": pl.String,
    # float32: the generator's precision (see schema.sql), half the bytes of the widest table
    "norm": pl.Float32,
    "norm_std": pl.Float32,
    "mean": pl.Float32,
    "std": pl.Float32,
    "vanishing_share": pl.Float32,
    "exploding_share": pl.Float32,
    **{f"p{p}": pl.Float32 for p in PERCENTILES},
}

LIFECYCLE_EVENTS: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "step": pl.Int64,
    "event_index": pl.Int64,
    "epoch": pl.Int64,
    "slot": pl.Int64,
    "seed_id": pl.String,
    "from_stage": pl.String,
    "to_stage": pl.String,
    "cause": pl.String,
    "detail": pl.String,
}

QUARANTINE: dict[str, pl.DataType] = {
    "ingest_id": pl.String,
    "source_file": pl.String,
    "source_sha256": pl.String,
    "source_format": pl.String,
    "position": pl.String,
    "line": pl.Int64,
    "run_id": pl.String,
    "field": pl.String,
    "rule": pl.String,
    "reason": pl.String,
    "original_text": pl.String,
    "parser_version": pl.Int64,
}

INGEST_LOG: dict[str, pl.DataType] = {
    "ingest_id": pl.String,
    "source_file": pl.String,
    "source_sha256": pl.String,
    "size_bytes": pl.Int64,
    "source_format": pl.String,
    "outcome": pl.String,
    "run_ids": pl.List(pl.String),
    "runs_loaded": pl.Int64,
    "steps_loaded": pl.Int64,
    "records_quarantined": pl.Int64,
    "message": pl.String,
    "parser_version": pl.Int64,
    "non_finite_values": pl.Int64,
    "non_finite_unexpected": pl.Int64,
}

BRANCHES: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "parent_run_id": pl.String,
    "fork_step": pl.Int64,
    "forced_action": pl.String,
    "horizon": pl.Int64,
}

NON_FINITE_VALUES: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "step": pl.Int64,
    "position": pl.String,
    "field": pl.String,
    "raw_text": pl.String,
    "expected": pl.Boolean,
}

# Episode data, in insert order (parents first); quarantine and ingest_log are bookkeeping.
EPISODE_TABLES: dict[str, dict[str, pl.DataType]] = {
    "runs": RUNS,
    "branches": BRANCHES,
    "episodes": EPISODES,
    "steps": STEPS,
    "observations": OBSERVATIONS,
    "layer_gradients": LAYER_GRADIENTS,
    "lifecycle_events": LIFECYCLE_EVENTS,
    "non_finite_values": NON_FINITE_VALUES,
}
ALL_TABLES: dict[str, dict[str, pl.DataType]] = {
    **EPISODE_TABLES,
    "quarantine": QUARANTINE,
    "ingest_log": INGEST_LOG,
}
