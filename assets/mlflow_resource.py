"""MLflow tracking as a small `ConfigurableResource` of our own (dagster-mlflow is an old-style resource).

Defaults: a sqlite backend and a local artifact folder under `var/mlflow` (TAMIYO_MLFLOW_ROOT), or any
tracking URI (TAMIYO_MLFLOW_URI). `tracker()` returns the library's `Tracker`; `parent_run_id(context)` is the
one parent MLflow run of the current Dagster run, shared by every policy asset of that run.
"""

from __future__ import annotations

import os

import dagster as dg

from tamiyo_models.agents.tracking import Tracker, TrackingConfig

DEFAULT_MLFLOW_ROOT = "var/mlflow"


class MlflowTrackingResource(dg.ConfigurableResource):
    root: str = os.environ.get("TAMIYO_MLFLOW_ROOT", DEFAULT_MLFLOW_ROOT)
    tracking_uri: str | None = os.environ.get("TAMIYO_MLFLOW_URI") or None
    experiment: str = "tamiyo-policies"

    def tracker(self) -> Tracker:
        return Tracker(TrackingConfig(root=self.root, tracking_uri=self.tracking_uri, experiment=self.experiment))

    def parent_run_id(self, context: dg.AssetExecutionContext, tracker: Tracker | None = None) -> str:
        tracker = tracker or self.tracker()
        return tracker.parent_run_id(context.run_id, name=f"dagster {context.run_id[:8]} ({context.job_name})")
