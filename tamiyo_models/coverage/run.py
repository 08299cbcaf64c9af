"""One coverage analysis of a warehouse, end to end: load decision states, assign clusters (a saved k-means
model when there is one, so clusters stay the same from night to night), analyse overall and per slice,
write the report, and store the results as warehouse tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import duckdb
import polars as pl

from .abstraction import AbstractionConfig, build_abstraction
from .analysis import CoverageConfig, CoverageResult, analyse_coverage, coverage_by_slice
from .data import load_decision_states
from .holes import write_holes
from .report import write_coverage_report

SLICE_COLUMNS = ("controller_kind", "dataset", "ingest_date", "is_branch")


@dataclass(frozen=True)
class CoverageRunConfig:
    abstraction: AbstractionConfig = field(default_factory=AbstractionConfig)
    coverage: CoverageConfig = field(default_factory=CoverageConfig)
    horizon: int = 5  # epochs over which outcome_h is measured (the default branch horizon)
    out_dir: str = "var/reports/coverage"
    model_dir: str = "var/coverage"  # saved k-means abstractions, one per (k, feature set)

    @classmethod
    def from_settings(
        cls, *, abstraction: str, k: int, feature_set: str, min_samples: int, action_level: str, horizon: int,
        out_dir: str, model_dir: str,
    ) -> "CoverageRunConfig":
        """From the flat settings the command line and the Dagster asset both expose."""
        return cls(
            abstraction=AbstractionConfig(kind=abstraction, k=k, feature_set=feature_set),
            coverage=CoverageConfig(min_samples=min_samples, action_level=action_level),
            horizon=horizon, out_dir=out_dir, model_dir=model_dir,
        )  # fmt: skip

    def to_dict(self) -> dict:
        return {"abstraction": self.abstraction.to_dict(), "coverage": self.coverage.to_dict(), **{
            k: v for k, v in asdict(self).items() if k not in ("abstraction", "coverage")}}  # fmt: skip


@dataclass
class CoverageRun:
    result: CoverageResult
    slices: pl.DataFrame
    abstraction: dict
    files: dict[str, Path]
    states: int


def analyse_warehouse(warehouse: str | Path, config: CoverageRunConfig, title: str = "warehouse") -> CoverageRun:
    a = config.abstraction
    states = load_decision_states(warehouse, feature_set="full", horizon=config.horizon)
    if states.is_empty():
        raise ValueError(f"{warehouse}: no decision states to analyse (ingest some runs first)")
    if a.kind == "kmeans" and states.height < 5 * a.k:
        # Too few states for k clusters to mean anything (a first night, a test warehouse): use fewer, and say so.
        a = replace(a, k=max(2, states.height // 5))
    saved = Path(config.model_dir) / f"kmeans-k{a.k}-{a.feature_set}-seed{a.seed}.json" if a.kind == "kmeans" else None
    model = build_abstraction(a, states, saved)
    labels = model.assign(states)
    result = analyse_coverage(states, labels, config.coverage)
    slices = coverage_by_slice(states, labels, list(SLICE_COLUMNS), config.coverage)
    files = write_coverage_report(result, model.describe(), config.out_dir, title, slices)
    if saved is not None:
        # Where the next generation batch should fork (BranchConfig(fork_rule="holes", holes_file=...)).
        files["holes"] = write_holes(Path(config.model_dir) / "holes.json", saved, result)
    return CoverageRun(result, slices, model.describe(), files, states.height)


def store_coverage(con: duckdb.DuckDBPyConnection, run: CoverageRun, analysis_id: str) -> None:
    """Replace the coverage tables with this analysis (one transaction; the previous one stays on failure)."""
    clusters = run.result.clusters.with_columns(pl.lit(analysis_id).alias("analysis_id"))
    actions = run.result.actions.with_columns(pl.lit(analysis_id).alias("analysis_id"))
    summary = pl.DataFrame([{"analysis_id": analysis_id, "slice": "all", "value": "all", **{
        k: run.result.summary[k] for k in ("clusters", "covered_clusters", "coverage_clusters", "states",
                                            "coverage_states", "single_action_share")}}]  # fmt: skip
    ).vstack(
        run.slices.with_columns(pl.lit(analysis_id).alias("analysis_id"))
        .select("analysis_id", "slice", "value", "clusters", "covered_clusters", "coverage_clusters", "states",
                "coverage_states", "single_action_share")  # fmt: skip
        if run.slices.height else pl.DataFrame()
    )
    con.execute("BEGIN TRANSACTION")
    try:
        for name, frame in (("coverage_clusters", clusters), ("coverage_actions", actions), ("coverage_summary", summary)):
            con.register("_frame", frame.to_arrow())
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")
            con.unregister("_frame")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
