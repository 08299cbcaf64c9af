"""The Dagster definitions of the project, loaded by `dagster dev` (pyproject's [tool.dagster] points here).

Resources are configured from the environment (TAMIYO_WAREHOUSE, TAMIYO_RAW_DIR, TAMIYO_DATASET_ROOT) with
repository-relative defaults; the instance (storage, concurrency pool for the DuckDB writer, telemetry off) is
dagster.yaml at the repository root: run `DAGSTER_HOME=$PWD dagster dev` from there.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.analysis import ANALYSIS_ASSETS
from assets.curriculum import CURRICULUM_ASSETS
from assets.generation import GENERATION_ASSETS, NIGHTS
from assets.nightly import NIGHTLY_ASSETS, NIGHTLY_CHECKS, NightlyResource
from assets.policies import POLICY_ASSETS
from assets.reports import REPORT_ASSETS
from assets.warehouse import WAREHOUSE_ASSETS, WAREHOUSE_CHECKS
from pipelines.automation import SCHEDULES, SENSORS
from assets.mlflow_resource import DEFAULT_MLFLOW_ROOT, MlflowTrackingResource
from assets.resources import (
    DEFAULT_DATASET_ROOT, DEFAULT_RAW_DIR, DEFAULT_WAREHOUSE, DatasetRootResource, RawLandingResource, WarehouseResource,
)  # fmt: skip

ON_DEMAND = ("headroom_report", "phase4_online_policy", "transfer_report")
# In the full_refresh job, one round of the curriculum per run (the asset resumes it); not on every retraining.
NIGHTLY_ONLY = ("curriculum_policy",)

ingest_job = dg.define_asset_job(
    "ingest_raw_runs",
    selection=dg.AssetSelection.groups("warehouse"),
    description="Ingest the landing folder into the warehouse, check the tables, export Parquet.",
)

nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.groups("nightly"),
    partitions_def=NIGHTS,
    description="One night of the improvement loop (tamiyo_models/nightly): generate around the champion, ingest, "
    "train challengers, predict each arm off-policy, evaluate them on held-out configurations drawn for the night, "
    "promote or keep the champion (and score the prediction against live).",
)

everything_job = dg.define_asset_job(
    "full_refresh",
    # The headroom report and online RL run hundreds of episodes: materialized on demand, not every night.
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*ON_DEMAND) - dg.AssetSelection.groups("nightly"),
    description="Generate a batch of episodes, ingest them, run every analysis, training and report downstream, and "
    "advance the curriculum by one round (all but the nightly loop and the on-demand studies: headroom, Phase 4 "
    "online RL, transfer). On demand: the nightly schedule runs the `nightly` loop.",
)

ALL_ASSETS = [*GENERATION_ASSETS, *WAREHOUSE_ASSETS, *ANALYSIS_ASSETS, *POLICY_ASSETS, *REPORT_ASSETS, *CURRICULUM_ASSETS,
              *NIGHTLY_ASSETS]  # fmt: skip

policies_job = dg.define_asset_job(
    "train_and_evaluate_policies",
    selection=dg.AssetSelection.groups("policies", "reports") - dg.AssetSelection.assets(*ON_DEMAND, *NIGHTLY_ONLY),
    description="Retrain the Phase 1 and 2 policies from the warehouse and evaluate them live against the heuristic.",
)


def resources(resolved: bool = False) -> dict:
    """The resources. Settings come from the environment through dg.EnvVar (so the UI shows where they came
    from) when the variable is set, else repository-relative defaults; `resolved` gives plain values instead,
    for code outside a run that prints where things are."""

    def _env(name: str, default: str | None):
        if not os.environ.get(name):
            return default
        return os.environ[name] if resolved else dg.EnvVar(name)

    return {
        "warehouse": WarehouseResource(path=_env("TAMIYO_WAREHOUSE", DEFAULT_WAREHOUSE)),
        "raw_runs": RawLandingResource(folder=_env("TAMIYO_RAW_DIR", DEFAULT_RAW_DIR)),
        "dataset_root": DatasetRootResource(root=_env("TAMIYO_DATASET_ROOT", DEFAULT_DATASET_ROOT)),
        "mlflow": MlflowTrackingResource(root=_env("TAMIYO_MLFLOW_ROOT", DEFAULT_MLFLOW_ROOT),
                                         tracking_uri=_env("TAMIYO_MLFLOW_URI", None)),
        "nightly": NightlyResource(preset=_env("TAMIYO_NIGHT_PRESET", "arena"), settings_json=_env("TAMIYO_NIGHT_SETTINGS", "{}"),
                                   nights_dir=_env("TAMIYO_NIGHTS_DIR", "var/nights")),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=[*WAREHOUSE_CHECKS, *NIGHTLY_CHECKS],
    jobs=[ingest_job, nightly_job, everything_job, policies_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=resources(),
)
