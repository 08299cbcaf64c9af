"""Analysis assets: counterfactual coverage of the episode tables (tamiyo_models.coverage does the work)."""


import dagster as dg

from pipelines.resources import WarehouseResource
from tamiyo_models.coverage.run import CoverageRunConfig, analyse_warehouse, store_coverage

GROUP = "analysis"


class CoverageAssetConfig(dg.Config):
    abstraction: str = "kmeans"  # kmeans | reference-buckets
    k: int = 100
    feature_set: str = "base"
    min_samples: int = 5  # m: samples each of two actions needs in a cluster
    action_level: str = "coarse"
    horizon: int = 5
    out_dir: str = "var/reports/coverage"
    model_dir: str = "var/coverage"  # the saved k-means abstraction and the holes file the generator reads


@dg.asset(
    deps=["steps", "observations", "branches"],
    group_name=GROUP,
    kinds={"duckdb", "sklearn"},
    pool="duckdb_writer",
    description="Share of abstract states (k-means clusters) where at least two actions each have >= m "
    "samples, with per-cluster action outcomes; tables coverage_clusters, coverage_actions, coverage_summary.",
)
def counterfactual_coverage(
    context: dg.AssetExecutionContext, config: CoverageAssetConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_config = CoverageRunConfig.from_settings(
        abstraction=config.abstraction, k=config.k, feature_set=config.feature_set, min_samples=config.min_samples,
        action_level=config.action_level, horizon=config.horizon, out_dir=config.out_dir, model_dir=config.model_dir,
    )
    run = analyse_warehouse(warehouse.path, run_config, title=f"warehouse {warehouse.path}")
    with warehouse.write() as con:
        store_coverage(con, run, context.run_id)
    s = run.result.summary
    context.log.info(f"coverage {100 * s['coverage_clusters']:.1f}% of {s['clusters']} clusters, {run.states} states")
    return dg.MaterializeResult(
        metadata={
            "coverage_clusters_pct": round(100 * s["coverage_clusters"], 2),
            "coverage_states_pct": round(100 * s["coverage_states"], 2),
            "clusters": s["clusters"],
            "decision_states": run.states,
            "single_action_share_pct": round(100 * s["single_action_share"], 2),
            "report": dg.MetadataValue.path(str(run.files["html"])),
            "summary": dg.MetadataValue.md(run.files["markdown"].read_text().split("![")[0]),
        }
    )


ANALYSIS_ASSETS = [counterfactual_coverage]
