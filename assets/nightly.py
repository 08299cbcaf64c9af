"""The nightly improvement loop as Dagster assets, one per stage of tamiyo_models.nightly.night, partitioned by
night. Each asset is a thin wrapper: it reads the night's settings from the `nightly` resource, calls the
library's stage (which resumes whatever a killed run left), and attaches what the stage did as metadata.

The settings are the library's `NightConfig`, not a copy of it: the resource names a preset (`arena`, the
default night of about 2,000 episodes; `arena-v2`, about 780, 2 hours on 2 cores; `arena-v2-large`; or `mini`,
the quick demo's) and optional JSON overrides of its fields.
"""

import base64
import json
import os
from pathlib import Path

import dagster as dg

from assets.generation import NIGHTS
from assets.mlflow_resource import MlflowTrackingResource
from assets.resources import RawLandingResource, WarehouseResource
from tamiyo_models.nightly.night import (
    PRESETS, NightConfig, NightPaths, decide_night, evaluate_night, generate_night, ingest_night, predict_night,
    train_challengers,
)  # fmt: skip
from tamiyo_models.nightly.prediction import prediction_lines
from tamiyo_models.nightly.report import champion_table, champion_trend, format_table, write_night_report

GROUP = "nightly"
WRITER_POOL = "duckdb_writer"


class NightlyResource(dg.ConfigurableResource):
    """What a night does (the library's NightConfig) and where its own files go."""

    preset: str = os.environ.get("TAMIYO_NIGHT_PRESET", "arena")  # arena, arena-v2, arena-v2-large (real nights) or mini (the demo)
    settings_json: str = os.environ.get("TAMIYO_NIGHT_SETTINGS", "{}")  # overrides of NightConfig's fields
    nights_dir: str = os.environ.get("TAMIYO_NIGHTS_DIR", "var/nights")

    def night_config(self) -> NightConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"nightly preset {self.preset!r}: known presets are {', '.join(PRESETS)}")
        try:
            overrides = json.loads(self.settings_json or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"nightly settings_json is not JSON ({exc}): {self.settings_json!r}") from None
        base = PRESETS[self.preset]().to_dict()
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ValueError(f"nightly settings_json: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(base))}")
        return NightConfig.from_dict({**base, **overrides})

    def paths(self, warehouse: WarehouseResource, raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> NightPaths:
        return NightPaths(nights=Path(self.nights_dir), landing=raw_runs.path, warehouse=Path(warehouse.path),
                          mlflow_root=mlflow.root, mlflow_uri=mlflow.tracking_uri)  # fmt: skip


def _stage_metadata(payload: dict) -> dict:
    return {k: (dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v)
            for k, v in payload.items() if isinstance(v, (int, float, str, dict, list))}  # fmt: skip


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, pool=WRITER_POOL, kinds={"pytorch"},
    retry_policy=dg.RetryPolicy(max_retries=1, delay=30),
    description="The night's training episodes around the champion (its stochastic version and the reference "
    "grid), seeds registered as training seeds; raw runs in the landing folder's night-<date>/.",
)  # fmt: skip
def night_training_runs(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
                        raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    night, config = context.partition_key, nightly.night_config()
    done = []

    def progress(result) -> None:
        done.append(result)
        context.log.info(f"[{len(done)}/{config.training_episodes}] {result.summary_line()}")

    payload = generate_night(night, config, nightly.paths(warehouse, raw_runs, mlflow), log=context.log.info, on_result=progress)
    if not payload["complete"]:
        raise dg.Failure(f"night {night}: no training episode completed (see the run's log)")
    return dg.MaterializeResult(metadata=_stage_metadata(payload))


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, pool=WRITER_POOL, deps=[night_training_runs],
    description="The landing folder ingested into the warehouse (every night's runs, which the learners read).",
)  # fmt: skip
def night_ingestion(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
                    raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    payload = ingest_night(context.partition_key, nightly.paths(warehouse, raw_runs, mlflow), log=context.log.info)
    return dg.MaterializeResult(metadata=_stage_metadata(payload))


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, deps=[night_ingestion], kinds={"pytorch", "mlflow"},
    description="Tonight's challengers: Phase 3 (BCQ, CQL, IQL) trained on every night's transitions, then Phase 4 "
    "from the champion (vine: the region rule over every night's fork studies; PPO: live episodes on seeds registered "
    "for training), each an MLflow model version whose lineage names the nights it learned from. A vine whose region rule labelled "
    "no state is trained and recorded but not evaluated (it is its start refitted).",
)  # fmt: skip
def night_challengers(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
                      raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    payload = train_challengers(context.partition_key, nightly.night_config(), nightly.paths(warehouse, raw_runs, mlflow),
                                log=context.log.info, tags={"tamiyo.dagster_run_id": context.run_id})  # fmt: skip
    names = [*payload["challengers"], *payload["not_evaluated"]]
    return dg.MaterializeResult(metadata={"challengers": dg.MetadataValue.json(payload["challengers"]),
                                          "phase3": dg.MetadataValue.json([n for n in names if n.startswith("phase3-")]),
                                          "phase4": dg.MetadataValue.json([n for n in names if n.startswith("phase4-")]),
                                          "not_evaluated": dg.MetadataValue.json({n: v["reason"] for n, v in payload["not_evaluated"].items()})})  # fmt: skip


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, deps=[night_challengers], kinds={"pytorch"},
    description="The night's off-policy prediction, made before its evaluation: FQE on every night's transitions "
    "for each arm the evaluation will run (champion, challengers, grid, heuristic). The decision scores it against "
    "live (night_ope). Off (nothing materialized but a note) when the night's settings say ope = false.",
)  # fmt: skip
def night_off_policy_prediction(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
                                raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    payload = predict_night(context.partition_key, nightly.night_config(), nightly.paths(warehouse, raw_runs, mlflow),
                            log=context.log.info)  # fmt: skip
    if payload is None:
        return dg.MaterializeResult(metadata={"prediction": "off (ope = false in the night's settings)"})
    ranked = sorted(payload["predicted"].items(), key=lambda kv: -kv[1])
    return dg.MaterializeResult(metadata={
        "champion": payload["champion"], "transitions": payload["data"]["transitions"], "seconds": payload["seconds"],
        "predicted": dg.MetadataValue.md("| arm | predicted vs champion (pp) |\n|---|---:|\n"
                                         + "\n".join(f"| {arm} | {value:+.2f} |" for arm, value in ranked)),
    })  # fmt: skip


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, pool=WRITER_POOL, deps=[night_off_policy_prediction], kinds={"pytorch"},
    description="The night's held-out evaluation: the champion, the challengers, the reference grid and the "
    "heuristic on configurations drawn for this night only (evaluation seeds, used once), on the test split, "
    "on the original and fresh data orders.",
)  # fmt: skip
def night_evaluation(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
                     raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    done = []
    champion, runs, _ = evaluate_night(context.partition_key, nightly.night_config(),
                                       nightly.paths(warehouse, raw_runs, mlflow), log=context.log.info,
                                       on_result=lambda r: done.append(r) or context.log.info(f"[{len(done)}] {r.summary_line()}"))  # fmt: skip
    failures = runs.failures()
    for line in failures:
        context.log.warning(f"episode failed: {line}")
    return dg.MaterializeResult(metadata={"champion": champion.name, "configurations": len(runs.configs),
                                          "controllers": dg.MetadataValue.json(list(runs.arms)), "failed_episodes": len(failures)})  # fmt: skip


@dg.asset(
    group_name=GROUP, partitions_def=NIGHTS, pool=WRITER_POOL, deps=[night_evaluation], kinds={"duckdb", "mlflow"},
    description="The night's decision: each controller against the champion by the rule fixed before the night; "
    "one row each in champion_history; a promotion moves the MLflow alias tamiyo-champion-test@champion. The "
    "page shows the night's table and the champion's trend.",
)  # fmt: skip
def champion(context: dg.AssetExecutionContext, nightly: NightlyResource, warehouse: WarehouseResource,
             raw_runs: RawLandingResource, mlflow: MlflowTrackingResource) -> dg.MaterializeResult:  # fmt: skip
    night, config = context.partition_key, nightly.night_config()
    paths = nightly.paths(warehouse, raw_runs, mlflow)
    # Reads the evaluation's episodes back (nothing reruns): the decision is computed from what is on disk.
    held, runs, roles = evaluate_night(night, config, paths, log=context.log.info)
    decision = decide_night(night, config, paths, held, runs, roles, log=context.log.info)
    report = write_night_report(night, paths, config)
    trend = champion_trend(paths.warehouse, config.score)
    metadata = {
        "champion_before": decision.champion,
        "champion_after": decision.champion_after,
        "promoted": decision.promoted.arm if decision.promoted else "none",
        "night_table": dg.MetadataValue.md(format_table(champion_table(paths.warehouse, config.score, night))),
        "trend": dg.MetadataValue.md(_trend_markdown(trend, report.parent / "trend.png")),
        "report": dg.MetadataValue.path(str(report.resolve())),
    }
    predicted = prediction_lines(paths.warehouse, night, config.score)
    if predicted:  # the ope stage's prediction beside live, and OPE's record night by night
        metadata["off_policy_prediction"] = dg.MetadataValue.md("\n".join(predicted))
    if decision.model_version:
        metadata["mlflow_version"] = decision.model_version
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=night_evaluation, description="No evaluation seed (any night's, any study's) is the seed of a "
                "run in the warehouse: the held-out configurations were never trained on.")  # fmt: skip
def held_out_seeds_never_trained_on(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from tamiyo_models.warehouse import connect_read_only
    from tamiyo_models.warehouse.seeds import overlapping_seeds

    with connect_read_only(warehouse.path) as con:
        overlap = overlapping_seeds(con)
        registered = con.execute("SELECT purpose, count(*) FROM seed_registry GROUP BY purpose").fetchall() if not overlap else []
    return dg.AssetCheckResult(passed=not overlap, metadata={"overlapping_seeds": dg.MetadataValue.json(overlap[:20]),
                                                            "registered": dg.MetadataValue.json(dict(registered))})  # fmt: skip


def _trend_markdown(trend, plot: Path) -> str:
    """The trend as a table (always readable) and the plot inline (a data URI: a file path means nothing to
    the UI)."""
    lines = ["| night | champion | champion score | heuristic | best fixed schedule | → champion |",
             "|---|---|---:|---:|---|---|"]  # fmt: skip
    segment = None
    for r in trend.iter_rows(named=True):
        if segment is not None and r["segment"] != segment:  # scores at different rents are not comparable
            lines.append(f"| *rent {r['rent'] or 0.0:g} from here* | | | | | |")
        segment = r["segment"]
        best = f"{r['best_fixed_score']:.2f} ({r['best_fixed']})" if r["best_fixed_score"] is not None else "-"
        heuristic = f"{r['heuristic_score']:.2f}" if r["heuristic_score"] is not None else "-"
        score = f"{r['champion_score']:.2f}" if r["champion_score"] is not None else "-"
        lines.append(f"| {r['night']} | {r['champion']} | {score} | {heuristic} | {best} | {r['champion_after']} |")
    if plot.exists():
        lines += ["", f"![trend](data:image/png;base64,{base64.b64encode(plot.read_bytes()).decode()})"]
    return "\n".join(lines)


NIGHTLY_ASSETS = [night_training_runs, night_ingestion, night_challengers, night_off_policy_prediction, night_evaluation, champion]
NIGHTLY_CHECKS = [held_out_seeds_never_trained_on]
