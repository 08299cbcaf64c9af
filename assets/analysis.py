"""Analysis assets: counterfactual coverage of the episode tables (tamiyo_models.coverage does the work), and
the headroom report, the arena's yardstick (tamiyo_models.evaluation.headroom does the work)."""


import dagster as dg

from assets.resources import WarehouseResource
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


_COVERAGE_DEPS = ["steps", "observations", "branches"]


@dg.multi_asset(
    name="counterfactual_coverage",
    group_name=GROUP,
    pool="duckdb_writer",
    specs=[
        dg.AssetSpec("counterfactual_coverage", deps=_COVERAGE_DEPS, kinds={"sklearn"},
                     description="The coverage report: share of abstract states (k-means clusters) where at least "
                     "two actions each have >= m samples, with per-cluster action outcomes (Markdown/HTML)."),
        dg.AssetSpec("coverage_clusters", deps=_COVERAGE_DEPS, kinds={"duckdb"},
                     description="Warehouse table: one row per abstract state, its actions and whether it is covered."),
        dg.AssetSpec("coverage_actions", deps=_COVERAGE_DEPS, kinds={"duckdb"},
                     description="Warehouse table: per cluster and action, the samples and their outcome over the horizon."),
        dg.AssetSpec("coverage_summary", deps=_COVERAGE_DEPS, kinds={"duckdb"},
                     description="Warehouse table: coverage overall and per slice (controller, dataset, date, branch)."),
        dg.AssetSpec("coverage_holes", deps=_COVERAGE_DEPS, kinds={"file"},
                     description="holes.json: the clusters with a single action tried, where the next night's "
                     "generation forks branch runs (read by generated_runs when its spec branches)."),
    ],  # fmt: skip
)
def counterfactual_coverage(context: dg.AssetExecutionContext, config: CoverageAssetConfig, warehouse: WarehouseResource):
    run_config = CoverageRunConfig.from_settings(
        abstraction=config.abstraction, k=config.k, feature_set=config.feature_set, min_samples=config.min_samples,
        action_level=config.action_level, horizon=config.horizon, out_dir=config.out_dir, model_dir=config.model_dir,
    )
    run = analyse_warehouse(warehouse.path, run_config, title=f"warehouse {warehouse.path}")
    with warehouse.write() as con:
        store_coverage(con, run, context.run_id)
        rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                for name in ("coverage_clusters", "coverage_actions", "coverage_summary")}  # fmt: skip
    s = run.result.summary
    context.log.info(f"coverage {100 * s['coverage_clusters']:.1f}% of {s['clusters']} clusters, {run.states} states")
    yield dg.MaterializeResult(
        asset_key="counterfactual_coverage",
        metadata={
            "coverage_clusters_pct": round(100 * s["coverage_clusters"], 2),
            "coverage_states_pct": round(100 * s["coverage_states"], 2),
            "clusters": s["clusters"],
            "decision_states": run.states,
            "single_action_share_pct": round(100 * s["single_action_share"], 2),
            "report": dg.MetadataValue.path(str(run.files["html"])),
            "summary": dg.MetadataValue.md(run.files["markdown"].read_text().split("![")[0]),
        },
    )
    for name, count in rows.items():
        yield dg.MaterializeResult(asset_key=name, metadata={"rows": count, "analysis_id": context.run_id})
    holes = run.files.get("holes")
    yield dg.MaterializeResult(asset_key="coverage_holes", metadata={
        "path": dg.MetadataValue.path(str(holes)) if holes else "not written (reference-buckets abstraction)"})


class HeadroomAssetConfig(dg.Config):
    spec: str = "arena"  # a spec with [[regimes]]; regimes whose data this machine lacks are skipped, and said so
    regimes: list[str] = []  # empty: every regime that can run here
    configs_per_regime: int = 24
    controllers: list[str] = []  # empty: the default reference controllers (tamiyo_models.controllers.DEFAULT_REFERENCES)
    replicate: int = 2
    replicate_arms: str = "best"
    null_orders: int = 1
    batch_seed: int = 20_261_129
    workers: int = 2
    out_dir: str = "var/reports/headroom"


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    description="Reference controllers (never grow, fixed schedules, eager, random, ...) against the heuristic on "
    "paired configurations of the arena, regime by regime, scored on the test split: paired differences with "
    "intervals, the null control's noise floor, best in hindsight vs luck's best-of-N, and the replication on "
    "fresh data orders. Long (hundreds of episodes): materialized on demand, not by the nightly job; episodes "
    "already in its folder are reused, so a rerun resumes.",
)
def headroom_report(context: dg.AssetExecutionContext, config: HeadroomAssetConfig) -> dg.MaterializeResult:
    from pathlib import Path

    from tamiyo_models.controllers import DEFAULT_REFERENCES
    from tamiyo_models.evaluation.headroom import HeadroomConfig, analyse_headroom

    settings = HeadroomConfig(
        spec=config.spec, regimes=tuple(config.regimes), configs_per_regime=config.configs_per_regime,
        controllers=tuple(config.controllers) or DEFAULT_REFERENCES, replicate=config.replicate,
        replicate_arms=config.replicate_arms, null_orders=config.null_orders, batch_seed=config.batch_seed,
        workers=config.workers,
    )  # fmt: skip
    progress = {"last": 0}

    def tick(done: int, total: int) -> None:
        if done - progress["last"] >= 25 or done == total:
            progress["last"] = done
            context.log.info(f"headroom: {done}/{total} episodes")

    result = analyse_headroom(settings, Path(config.out_dir), log=context.log.info, progress=tick)
    metadata = {
        "report_html": dg.MetadataValue.path(str(result.files["html"].resolve())),
        "episodes": result.episodes,
        "regimes": len(result.regimes),
        "skipped_regimes": ", ".join(result.skipped) or "none",
    }
    for regime in result.regimes:
        key = regime.regime.replace("-", "_")
        metadata[f"{key}_noise_floor_pp"] = round(regime.noise_floor_test, 3)
        metadata[f"{key}_best"] = regime.best_arm or "-"
        best = regime.row(regime.best_arm) if regime.best_arm else None
        if best is not None:
            metadata[f"{key}_best_difference_pp"] = round(best.difference.mean, 3)
            metadata[f"{key}_best_ci_low_pp"] = round(best.difference.low, 3)
            metadata[f"{key}_best_reproducible"] = best.reproducible
    summary = "\n".join(
        f"| {r.regime} | {r.noise_floor_test:.2f} | {r.best_arm} | {r.row(r.best_arm).difference if r.best_arm else '-'} | "
        f"{r.row(r.best_arm).fresh if r.best_arm else '-'} |" for r in result.regimes
    )  # fmt: skip
    metadata["summary"] = dg.MetadataValue.md(
        "| regime | noise floor (pp) | best controller | vs heuristic | fresh orders |\n|---|---|---|---|---|\n" + summary
    )
    return dg.MaterializeResult(metadata=metadata)


ANALYSIS_ASSETS = [counterfactual_coverage, headroom_report]
