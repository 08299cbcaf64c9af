"""Policies stage: Phase 1 imitation and Phase 2 reward-weighted imitation, trained from the warehouse tables.

Thin wrappers around `tamiyo_models.policies.workflow.train_policy`: read config, call the library, attach
metadata. Each run is an MLflow child run under the Dagster run's parent run, registered as `candidate`.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

from typing import Optional

import dagster as dg

from pipelines.mlflow_resource import MlflowTrackingResource
from pipelines.resources import WarehouseResource

GROUP = "policies"
POLICY_DIR = "var/policies"


class PolicyTrainingConfig(dg.Config):
    # base+lifecycle (39): the heuristic judges seeds on seed_total_improvement, a lifecycle feature outside
    # base (27) and base+telemetry (54): without it imitation tops out near 0.8 balanced accuracy; the noisy
    # telemetry columns of "full" (66) cost ~1 pp on held-out episodes (docs/policies.md).
    feature_set: str = "base+lifecycle"
    # Nightly data mixes controllers. Phase 1 learns the heuristic's decision in every logged state (the
    # heuristic labels states of any controller, branches included: relabel.py); "logged" imitates the
    # actions actually taken by the `controllers` listed (empty: all).
    labels: str = "heuristic"
    controllers: list[str] = []
    epochs: int = 150
    batch_size: int = 256
    learning_rate: float = 1e-3
    beta: float = 0.999
    val_fraction: float = 0.2
    group_by: Optional[str] = None  # e.g. dataset_config: hold out whole configurations
    seed: int = 0
    out_dir: str = POLICY_DIR


class Phase2Config(PolicyTrainingConfig):
    # Outcome weighting needs the actions whose outcomes were logged: every controller's, weighted by how
    # well they turned out (the way past the teacher).
    labels: str = "logged"
    variant: str = "A"  # A episode weights, B decision weights, C filter
    threshold: Optional[float] = None  # C: absolute final accuracy (pp)
    epochs: int = 60
    start_from_phase1: bool = True


def _run_config(config: PolicyTrainingConfig, phase: str, parent: Optional[str] = None):
    from tamiyo_models.policies.imitation import ImitationConfig
    from tamiyo_models.policies.reward_weighted import RewardWeightingConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig

    weighting = RewardWeightingConfig(variant=config.variant, threshold=config.threshold) if phase == "phase2" else RewardWeightingConfig()
    return PolicyRunConfig(
        phase=phase,
        imitation=ImitationConfig(feature_set=config.feature_set, epochs=config.epochs, batch_size=config.batch_size,
                                  learning_rate=config.learning_rate, beta=config.beta, seed=config.seed),
        weighting=weighting, controllers=tuple(config.controllers), labels=config.labels, val_fraction=config.val_fraction,
        split_seed=config.seed, group_by=config.group_by, parent_policy=parent,
    )  # fmt: skip


def _materialize(context, run_config, warehouse, mlflow, out_dir):
    from tamiyo_models.policies.workflow import train_policy

    tracker = mlflow.tracker()
    run = train_policy(
        warehouse.path, run_config, out_dir, tracker=tracker, parent_run_id=mlflow.parent_run_id(context, tracker),
        tags={"tamiyo.asset_key": context.asset_key.to_user_string()}, log=context.log.info,
    )  # fmt: skip
    best = run.result.best
    return run, dg.MaterializeResult(
        metadata={
            "policy_file": dg.MetadataValue.path(str(run.policy_path)),
            "mlflow_run_id": run.mlflow_run_id,
            "model_version": run.model_version,
            "dataset_sha256": run.dataset_digest,
            "train_episodes": len(run.train_runs),
            "val_episodes": len(run.val_runs),
            "val_balanced_accuracy": float(run.offline.balanced_accuracy),
            **{f"val_accuracy_{k.lower()}": float(v) for k, v in run.offline.per_class_accuracy.items()},
            "best_epoch": run.result.best_epoch,
            "updates_per_second": float(run.result.updates_per_second),
            "val_loss_at_best": float(best.val_loss),
        }
    )


@dg.asset(group_name=GROUP, deps=["steps", "observations", "episodes", "runs"], kinds={"pytorch", "mlflow"})
def phase1_imitation_policy(
    context: dg.AssetExecutionContext, config: PolicyTrainingConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """Phase 1: imitation of the logged controller, class-weighted, selected on balanced accuracy."""
    _, result = _materialize(context, _run_config(config, "phase1"), warehouse, mlflow, config.out_dir)
    return result


@dg.asset(group_name=GROUP, deps=[phase1_imitation_policy], kinds={"pytorch", "mlflow"})
def phase2_weighted_policy(
    context: dg.AssetExecutionContext, config: Phase2Config, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """Phase 2: reward-weighted imitation (variant A, B or C), initialised from the Phase 1 candidate."""
    parent = "tamiyo-phase1-imitation@candidate" if config.start_from_phase1 else None
    _, result = _materialize(context, _run_config(config, "phase2", parent), warehouse, mlflow, config.out_dir)
    return result


POLICY_ASSETS = [phase1_imitation_policy, phase2_weighted_policy]
