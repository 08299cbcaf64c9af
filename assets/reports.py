"""Reports stage: the policy evaluation report (offline + live paired episodes), attached to the asset's
metadata and to the policy's MLflow run; the champion alias moves only when the live evaluation says so.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

import dagster as dg

from assets.policies import phase1_imitation_policy
from pipelines.mlflow_resource import MlflowTrackingResource
from pipelines.resources import WarehouseResource

GROUP = "reports"


class EvaluationRunConfig(dg.Config):
    model: str = "tamiyo-phase1-imitation@candidate"
    episodes: int = 20  # live pairs
    spec: str = "nightly"
    batch_seed: int = 7_700_001  # must differ from the training batches' seeds (checked per episode seed)
    workers: int = 1
    out_dir: str = "var/reports"
    promote: bool = True


@dg.asset(group_name=GROUP, deps=[phase1_imitation_policy], kinds={"mlflow"})
def policy_evaluation_report(
    context: dg.AssetExecutionContext, config: EvaluationRunConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """Offline metrics on held-out episodes and live paired episodes against the heuristic, as Markdown + HTML."""
    from pathlib import Path

    from tamiyo_models.evaluation import EvaluationConfig, evaluate_policy

    tracker = mlflow.tracker()
    version = tracker.resolve(config.model)
    ref = f"{version.name}/{version.version}"
    out = Path(config.out_dir) / ref.replace("/", "-v")
    policy = tracker.download_policy(ref, out / "policy")
    evaluation = EvaluationConfig(episodes=config.episodes, spec=config.spec, batch_seed=config.batch_seed, workers=config.workers)
    offline, live, paths = evaluate_policy(policy, warehouse.path, out, evaluation, title=f"Evaluation of {ref}", log=context.log.info)
    for path in paths.values():
        tracker.client.log_artifact(version.run_id, str(path), artifact_path="evaluation")
    phase = "phase1" if "phase1" in version.name else "phase2"
    promoted, why = (tracker.promote_if_better(phase, str(version.version), live.summary()) if config.promote
                     else (False, "promotion disabled"))  # fmt: skip
    if not config.promote:
        tracker.record_evaluation(phase, str(version.version), live.summary())
    context.log.info(why)
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(paths["markdown"].read_text()),
            "report_html": dg.MetadataValue.path(str(paths["html"])),
            "model": ref,
            "champion_moved": promoted,
            "champion_decision": why,
            **{k: float(v) for k, v in live.summary().items()},
            **({} if offline is None else {k: float(v) for k, v in offline.summary().items()}),
        }
    )


REPORT_ASSETS = [policy_evaluation_report]
