"""Coverage of a set of decision states under a state abstraction.

A cluster (abstract state) is *covered* when at least two actions were each taken from it at least m times
(m = `min_samples`, default 5): only then does the data say what happens under one action *instead of*
another there. Coverage is the share of clusters that are covered, and the share of states lying in covered
clusters. Per cluster and action the table keeps the count and the mean outcome with a 95% confidence
interval (normal approximation; none below 2 samples).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

ACTION_LEVELS = {"coarse": "action_coarse", "fine": "action_fine"}
Z95 = 1.959964


@dataclass(frozen=True)
class CoverageConfig:
    min_samples: int = 5  # m: samples an action needs in a cluster to count
    action_level: str = "coarse"  # coarse (WAIT/GERMINATE/ADVANCE/CULL) or fine (per blueprint)
    outcome: str = "outcome_h"  # outcome_h, reward_to_go or final_accuracy

    def __post_init__(self):
        if self.action_level not in ACTION_LEVELS:
            raise ValueError(f"action_level must be one of {', '.join(ACTION_LEVELS)}")
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CoverageResult:
    actions: pl.DataFrame  # one row per (cluster, action)
    clusters: pl.DataFrame  # one row per cluster
    contrasts: pl.DataFrame  # covered clusters: best alternative vs WAIT
    summary: dict


def analyse_coverage(states: pl.DataFrame, labels: np.ndarray, config: CoverageConfig = CoverageConfig()) -> CoverageResult:
    action_col = ACTION_LEVELS[config.action_level]
    m = config.min_samples
    frame = states.select(pl.Series("cluster", labels), pl.col(action_col).alias("action"), pl.col(config.outcome).alias("outcome"))
    actions = (
        frame.group_by("cluster", "action")
        .agg(
            pl.len().alias("n"),
            pl.col("outcome").mean().alias("mean_outcome"),
            pl.col("outcome").std().alias("sd_outcome"),
        )
        .with_columns(
            half=pl.when(pl.col("n") >= 2).then(Z95 * pl.col("sd_outcome") / pl.col("n").sqrt()).otherwise(None)
        )
        .with_columns(ci_low=pl.col("mean_outcome") - pl.col("half"), ci_high=pl.col("mean_outcome") + pl.col("half"))
        .drop("half")
        .sort("cluster", "n", "action", descending=[False, True, False])
    )
    clusters = (
        actions.group_by("cluster")
        .agg(
            pl.col("n").sum().alias("states"),
            pl.len().alias("distinct_actions"),
            (pl.col("n") >= m).sum().alias("actions_with_m"),
            pl.col("n").max().alias("top_action_count"),
            pl.col("n").alias("_counts"),
        )
        .with_columns(
            entropy_bits=pl.col("_counts").map_elements(_entropy_bits, return_dtype=pl.Float64),
            covered=pl.col("actions_with_m") >= 2,
            top_action_share=pl.col("top_action_count") / pl.col("states"),
        )
        .drop("_counts", "top_action_count")
        .sort("cluster")
    )
    contrasts = _contrasts(actions, m)
    n_clusters, n_states = clusters.height, int(clusters["states"].sum() or 0)
    covered = clusters.filter(pl.col("covered"))
    summary = {
        "clusters": n_clusters,
        "covered_clusters": covered.height,
        "coverage_clusters": covered.height / n_clusters if n_clusters else 0.0,
        "states": n_states,
        "covered_states": int(covered["states"].sum() or 0),
        "coverage_states": int(covered["states"].sum() or 0) / n_states if n_states else 0.0,
        "single_action_clusters": clusters.filter(pl.col("distinct_actions") == 1).height,
        "single_action_share": clusters.filter(pl.col("distinct_actions") == 1).height / n_clusters if n_clusters else 0.0,
        "min_samples": m,
        "action_level": config.action_level,
        "outcome": config.outcome,
    }
    return CoverageResult(actions, clusters, contrasts, summary)


def _entropy_bits(counts) -> float:
    counts = np.asarray(list(counts), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) > 1 else 0.0


def _contrasts(actions: pl.DataFrame, m: int) -> pl.DataFrame:
    """In clusters where WAIT and another action both have >= m samples: the best alternative's mean outcome
    minus WAIT's, with a Welch 95% interval. This is the signal offline RL can learn from."""
    rows = []
    for (cluster,), group in actions.filter(pl.col("n") >= m).group_by("cluster", maintain_order=True):
        wait = group.filter(pl.col("action") == "WAIT")
        others = group.filter(pl.col("action") != "WAIT")
        if wait.is_empty() or others.is_empty():
            continue
        best = others.sort("mean_outcome", descending=True).row(0, named=True)
        w = wait.row(0, named=True)
        se = math.sqrt((best["sd_outcome"] or 0) ** 2 / best["n"] + (w["sd_outcome"] or 0) ** 2 / w["n"])
        diff = best["mean_outcome"] - w["mean_outcome"]
        rows.append(
            {"cluster": cluster, "alternative": best["action"], "n_alternative": best["n"], "n_wait": w["n"],
             "difference": diff, "ci_low": diff - Z95 * se, "ci_high": diff + Z95 * se}
        )  # fmt: skip
    schema = {"cluster": pl.Int64, "alternative": pl.Utf8, "n_alternative": pl.UInt32, "n_wait": pl.UInt32,
              "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def coverage_by_slice(states: pl.DataFrame, labels: np.ndarray, slice_columns: list[str], config: CoverageConfig) -> pl.DataFrame:
    """Headline coverage per data slice (controller, dataset, date...), same clusters for every slice."""
    rows = []
    labelled = states.with_columns(pl.Series("_cluster", labels))
    for column in slice_columns:
        for (value,), part in labelled.group_by(column, maintain_order=True):
            s = analyse_coverage(part, part["_cluster"].to_numpy(), config).summary
            rows.append({"slice": column, "value": str(value), **{k: s[k] for k in (
                "clusters", "covered_clusters", "coverage_clusters", "states", "coverage_states", "single_action_share")}})  # fmt: skip
    return pl.DataFrame(rows)
