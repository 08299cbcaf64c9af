"""Policies stage: Phase 1 imitation, Phase 2 reward-weighted imitation and Phase 3 offline RL, trained from the
warehouse tables.

Thin wrappers around `tamiyo_models.policies.workflow.train_policy`: read config, call the library, attach
metadata. Each run is an MLflow child run under the Dagster run's parent run, registered as `candidate`.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

from typing import Optional

import dagster as dg

from assets.mlflow_resource import MlflowTrackingResource
from assets.resources import WarehouseResource

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
    # Each variant is its own MLflow child run and model version, aliased `candidate-<variant>`; the report
    # evaluates them side by side on the same paired episodes (A episode weights, B decision weights, C filter).
    variants: list[str] = ["A", "B", "C"]
    threshold: Optional[float] = None  # C: absolute final accuracy (pp); default: the top share per configuration
    epochs: int = 60
    start_from_phase1: bool = True


def _run_config(config: PolicyTrainingConfig, phase: str, parent: Optional[str] = None, variant: str = "A"):
    from tamiyo_models.policies.imitation import ImitationConfig
    from tamiyo_models.policies.reward_weighted import RewardWeightingConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig

    weighting = RewardWeightingConfig(variant=variant, threshold=config.threshold) if phase == "phase2" else RewardWeightingConfig()
    return PolicyRunConfig(
        phase=phase,
        imitation=ImitationConfig(feature_set=config.feature_set, epochs=config.epochs, batch_size=config.batch_size,
                                  learning_rate=config.learning_rate, beta=config.beta, seed=config.seed),
        weighting=weighting, controllers=tuple(config.controllers), labels=config.labels, val_fraction=config.val_fraction,
        split_seed=config.seed, group_by=config.group_by, parent_policy=parent,
    )  # fmt: skip


def _train(context, run_config, warehouse, mlflow, tracker, out_dir, compare_with=None):
    from tamiyo_models.policies.workflow import train_policy

    def log(message: str) -> None:
        (context.log.warning if message.startswith("WARNING") else context.log.info)(message)

    return train_policy(
        warehouse.path, run_config, out_dir, tracker=tracker, parent_run_id=mlflow.parent_run_id(context, tracker),
        tags={"tamiyo.asset_key": context.asset_key.to_user_string()}, log=log, compare_with=compare_with,
    )  # fmt: skip


def _run_metadata(run, prefix: str = "") -> dict:
    best = run.result.best
    return {
        f"{prefix}policy_file": dg.MetadataValue.path(str(run.policy_path)),
        f"{prefix}mlflow_run_id": run.mlflow_run_id,
        f"{prefix}model_version": run.model_version,
        f"{prefix}dataset_sha256": run.dataset_digest,
        f"{prefix}train_episodes": len(run.train_runs),
        f"{prefix}val_episodes": len(run.val_runs),
        f"{prefix}test_episodes": len(run.test_runs),
        f"{prefix}test_balanced_accuracy": round(float(run.offline.balanced_accuracy), 4),
        **{f"{prefix}test_accuracy_{k.lower()}": round(float(v), 4) for k, v in run.offline.per_class_accuracy.items()},
        f"{prefix}val_balanced_accuracy": round(float(best.val_balanced_accuracy), 4),
        f"{prefix}best_epoch": run.result.best_epoch,
        f"{prefix}updates_per_second": round(float(run.result.updates_per_second)),
        f"{prefix}val_loss_at_best": round(float(best.val_loss), 4),
        **({f"{prefix}weighting_degenerate": run.weighting_note} if run.weighting_note else {}),
        **({f"{prefix}identical_to": run.identical_to} if run.identical_to else {}),
    }


POLICY_CHECKS = ("weights_finite", "acts_legally_on_held_out")


def _check_specs(asset: str) -> list:
    return [
        dg.AssetCheckSpec("weights_finite", asset=asset, description="every floating-point tensor of the policy is finite"),
        dg.AssetCheckSpec("acts_legally_on_held_out", asset=asset,
                          description="on the held-out test episodes' states, the policy's distribution is finite, sums "
                          "to 1, gives illegal actions no probability, and its greedy action is legal"),
    ]  # fmt: skip


def _check_results(policies: dict, warehouse: WarehouseResource) -> list:
    """The two policy checks over every policy the asset trained (label -> (policy file, held-out run ids)): all
    must pass."""
    from tamiyo_models.agents.checks import check_policy_file

    checks = {label: check_policy_file(path, warehouse.path, runs) for label, (path, runs) in policies.items()}
    return [
        dg.AssetCheckResult(check_name="weights_finite", passed=all(c.finite_weights for c in checks.values()),
                            metadata={label: ", ".join(c.non_finite_tensors) or "all finite" for label, c in checks.items()}),
        dg.AssetCheckResult(check_name="acts_legally_on_held_out", passed=all(c.acts_legally for c in checks.values()),
                            metadata={label: f"{c.legal_actions_chosen}/{c.states} legal, {c.valid_distributions} valid distributions"
                                      for label, c in checks.items()}),
    ]  # fmt: skip


@dg.asset(group_name=GROUP, deps=["steps", "observations", "episodes", "runs"], kinds={"pytorch", "mlflow"},
          check_specs=_check_specs("phase1_imitation_policy"))  # fmt: skip
def phase1_imitation_policy(
    context: dg.AssetExecutionContext, config: PolicyTrainingConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
):
    """Phase 1: imitation of the heuristic, class-weighted, selected on balanced accuracy; reported on test episodes.
    Its value (what Phase 2 starts from): the policy file and, when registered, its exact model version."""
    tracker = mlflow.tracker()
    run = _train(context, _run_config(config, "phase1"), warehouse, mlflow, tracker, config.out_dir)
    model_ref = f"{registered_name('phase1')}/{run.model_version}" if run.model_version else None
    yield dg.Output({"policy_file": str(run.policy_path), "model_ref": model_ref}, metadata=_run_metadata(run))
    yield from _check_results({"phase1": (run.policy_path, run.test_runs)}, warehouse)


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"}, check_specs=_check_specs("phase2_weighted_policy"))
def phase2_weighted_policy(
    context: dg.AssetExecutionContext, config: Phase2Config, warehouse: WarehouseResource, mlflow: MlflowTrackingResource,
    phase1_imitation_policy: dict,
):
    """Phase 2: reward-weighted imitation, one policy per variant (A, B, C), each starting from the policy the
    Phase 1 asset produced upstream (its registered version, or its file when it was not registered)."""
    from tamiyo_models.policies.reward_weighted import VARIANTS

    unknown = sorted(set(config.variants) - set(VARIANTS))
    if unknown or not config.variants:  # said before any variant trains, not after the first
        raise dg.Failure(f"phase2_weighted_policy: variants must be a non-empty subset of A, B, C; got {config.variants}")
    parent = (phase1_imitation_policy.get("model_ref") or phase1_imitation_policy["policy_file"]) if config.start_from_phase1 else None
    tracker = mlflow.tracker()
    metadata = {"variants": ", ".join(config.variants), "parent": parent or "none"}
    trained, notes, runs = {}, [], {}
    for variant in config.variants:
        run = _train(context, _run_config(config, "phase2", parent, variant), warehouse, mlflow, tracker, config.out_dir,
                     compare_with=trained)  # fmt: skip
        trained[f"variant {variant}"] = run.result.model
        runs[f"variant_{variant}"] = run
        metadata.update(_run_metadata(run, prefix=f"{variant}_"))
        if run.weighting_note:
            notes.append(f"- **{variant}**: {run.weighting_note}")
        if run.identical_to:
            notes.append(f"- **{variant}** is identical to {run.identical_to}: not registered as a new version")
    if notes:
        metadata["warnings"] = dg.MetadataValue.md("\n".join(notes))
    yield dg.Output({label: str(run.policy_path) for label, run in runs.items()}, metadata=metadata)
    yield from _check_results({label: (run.policy_path, run.test_runs) for label, run in runs.items()}, warehouse)


def registered_name(phase: str) -> str:
    from tamiyo_models.agents.phases import phase as registered_phase

    return registered_phase(phase).registered_name




class Phase3Config(dg.Config):
    # Each algorithm is its own MLflow child run and registered version, aliased `candidate-<algorithm>`; the
    # report evaluates them live beside Phase 1 and 2 on the same paired episodes.
    algorithms: list[str] = ["cql", "iql", "bcq"]
    feature_set: str = "base+lifecycle+task"
    regimes: list[str] = []  # empty: every regime's transitions (and runs outside regimes)
    updates: int = 5_000
    alpha: float = 0.1  # CQL: in reward units x 0.1, action values differ by a few hundredths; 1.0 copies the data
    tau: float = 0.7
    awr_beta: float = 3.0
    bcq_threshold: float = 0.3
    held_out: float = 0.2
    # FQE on the held-out families: per checkpoint to choose it, then once more for the off-policy report. Most
    # of a short run's time; fewer updates give a rougher choice and report, never a different data split.
    selection_fqe_updates: int = 1_500
    report_fqe_updates: int = 4_000
    start_from_phase1: bool = True  # IQL's actor starts as the Phase 1 policy (when it reads the same features)
    seed: int = 0
    out_dir: str = POLICY_DIR


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"}, check_specs=_check_specs("phase3_offline_policy"))
def phase3_offline_policy(
    context: dg.AssetExecutionContext, config: Phase3Config, warehouse: WarehouseResource, mlflow: MlflowTrackingResource,
    phase1_imitation_policy: dict,
):
    """Phase 3: offline RL (discrete CQL, IQL, BCQ) on every controller's transitions and branch runs, each
    checkpoint chosen by FQE on held-out episode families; the off-policy report per algorithm."""
    import dataclasses

    from tamiyo_models.offline_rl.workflow import ALGORITHMS, OfflineRunConfig, train_offline

    unknown = sorted(set(config.algorithms) - set(ALGORITHMS))
    if unknown or not config.algorithms:
        raise dg.Failure(f"phase3_offline_policy: algorithms must be a non-empty subset of {', '.join(ALGORITHMS)}; got {config.algorithms}")
    parent = (phase1_imitation_policy.get("model_ref") or phase1_imitation_policy["policy_file"]) if config.start_from_phase1 else None
    tracker = mlflow.tracker()
    base = OfflineRunConfig()
    runs, metadata = {}, {"algorithms": ", ".join(config.algorithms), "parent": parent or "none"}
    for algorithm in config.algorithms:
        run_config = OfflineRunConfig(
            algorithm=algorithm, feature_set=config.feature_set, regimes=tuple(config.regimes), held_out=config.held_out,
            split_seed=config.seed, parent_policy=parent,
            cql=dataclasses.replace(base.cql, alpha=config.alpha, updates=config.updates, seed=config.seed),
            iql=dataclasses.replace(base.iql, tau=config.tau, beta=config.awr_beta, updates=config.updates, seed=config.seed),
            bcq=dataclasses.replace(base.bcq, threshold=config.bcq_threshold, updates=config.updates, seed=config.seed),
            selection_fqe=dataclasses.replace(base.selection_fqe, updates=config.selection_fqe_updates),
            report_fqe=dataclasses.replace(base.report_fqe, updates=config.report_fqe_updates),
        )  # fmt: skip
        run = train_offline(warehouse.path, run_config, config.out_dir, tracker=tracker,
                            parent_run_id=mlflow.parent_run_id(context, tracker),
                            tags={"tamiyo.asset_key": context.asset_key.to_user_string()}, log=context.log.info)  # fmt: skip
        runs[algorithm] = run
        metadata.update({
            f"{algorithm}_policy_file": dg.MetadataValue.path(str(run.policy_path)),
            f"{algorithm}_model_version": run.model_version, f"{algorithm}_selected_update": run.result.selected_update,
            f"{algorithm}_updates_per_second": round(run.result.updates_per_second),
            f"{algorithm}_dataset_sha256": run.dataset_digest,
        })  # fmt: skip
        if run.ope:
            metadata[f"{algorithm}_heldout_fqe_pp"] = round(run.ope["fqe"]["value"], 3)
    yield dg.Output({algorithm: str(run.policy_path) for algorithm, run in runs.items()}, metadata=metadata)
    yield from _check_results({name: (run.policy_path, _held_out_runs(run.policy_path)) for name, run in runs.items()}, warehouse)


def _held_out_runs(policy_path) -> list[str]:
    from tamiyo_models.agents.saved import load_policy

    return list(load_policy(policy_path)[1]["metadata"].get("held_out_runs") or [])


POLICY_ASSETS = [phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy]


class Phase4Config(dg.Config):
    algorithm: str = "ppo"  # reinforce | a2c | ppo | vine (branching policy iteration; episodes = parent episodes)
    spec: str = "arena"
    regime: str = ""  # empty: every regime of the spec that can run here
    episodes: int = 64
    episodes_per_iteration: int = 4
    workers: int = 2  # environments stepped at once: worker processes, or Ray actors with ray_address
    ray_address: str = ""  # a Ray cluster for the rollouts (docs/scaling.md); empty: local worker processes
    cpus_per_episode: float = 1.0  # what each Ray actor reserves
    entropy_floor: float = 0.0
    initial_policy: str = ""  # empty: the newest Phase 1 candidate (tamiyo-phase1-imitation@candidate); "none": fresh
    # Start from a stochastic student of the initial policy, distilled on the warehouse's states with this label
    # smoothing (e.g. 0.05): for a near-deterministic Phase 3 BCQ policy (tamiyo-phase3-offline@candidate-bcq),
    # which gives its unsupported actions probability 0, or a fixed schedule (initial_policy "fixed:conv_heavy@1",
    # the best reference controller), which has no network. Empty: the initial policy as it is.
    distil_smoothing: Optional[float] = None
    distil_updates: int = 10_000  # the student's gradient steps (a minute on one core)
    # vine only: the training episodes' validation images (empty: the spec's; 10000 makes a branch's outcome 5x less
    # noisy on the arena) and the steps forks may start at (docs/online-rl.md)
    val_subsample: Optional[int] = None
    fork_min_step: int = 2
    fork_max_step: Optional[int] = None
    # vine only: new data orders each candidate label is replayed on before it is learned (0: learned at once)
    confirm_orders: int = 0
    forks: int = 2  # vine only: random steps of each parent where every other legal action is branched
    margin: float = 0.25  # vine only: pp an alternative must gain to be learned
    # vine only: "fork" (each fork's winner) or "region" (pooled evidence per region at a 5% false discovery rate),
    # and with "region", earlier vine runs' folders whose forks and visited states join the evidence
    label_rule: str = "region"
    evidence_from: list[str] = []
    record_dir: str = "var/raw"  # rollouts land in the warehouse's landing folder (Phase 3 learns from them)
    out_dir: str = POLICY_DIR


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"},
          check_specs=[dg.AssetCheckSpec("no_reward_hacking", asset="phase4_online_policy",
                                         description="germinate/cull churn, seeds waiting in TRAINING at the end, "
                                         "unfinished blends, culls of helping seeds, entropy collapse")])  # fmt: skip
def phase4_online_policy(context: dg.AssetExecutionContext, config: Phase4Config, warehouse: WarehouseResource,
                         mlflow: MlflowTrackingResource):  # fmt: skip
    """Phase 4: online RL (REINFORCE, A2C, PPO or vine) in live episodes on worker processes, from the Phase 1
    candidate (or any policy; a Phase 3 BCQ candidate or a fixed schedule through `distil_smoothing`); every
    rollout episode lands as a raw run.
    On demand (hundreds of episodes): not part of the nightly job."""
    from tamiyo_models.online_rl.distil import DistilConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy

    import dataclasses

    tracker = mlflow.tracker()
    distil = None if config.distil_smoothing is None else DistilConfig(smoothing=config.distil_smoothing, updates=config.distil_updates)
    initial = None if config.initial_policy == "none" else (config.initial_policy or "tamiyo-phase1-imitation@candidate")
    base = OnlineRunConfig()
    if config.algorithm == "vine":
        learner = dataclasses.replace(base.vine, iterations=max(1, config.episodes // config.episodes_per_iteration),
                                      episodes_per_iteration=config.episodes_per_iteration, val_subsample=config.val_subsample,
                                      min_step=config.fork_min_step, max_step=config.fork_max_step,
                                      confirm_orders=config.confirm_orders, forks_per_episode=config.forks, margin=config.margin,
                                      label_rule=config.label_rule, evidence_from=tuple(config.evidence_from))  # fmt: skip
    else:
        learner = dataclasses.replace(getattr(base, config.algorithm), episodes=config.episodes, entropy_floor=config.entropy_floor,
                                      episodes_per_iteration=config.episodes_per_iteration)  # fmt: skip
    run_config = OnlineRunConfig(algorithm=config.algorithm, spec=config.spec, regime=config.regime or None, workers=config.workers,
                                 initial_policy=initial, record_dir=config.record_dir or None, ray_address=config.ray_address or None,
                                 cpus_per_episode=config.cpus_per_episode, distil=distil, distil_warehouse=str(warehouse.path),
                                 **{config.algorithm: learner})  # fmt: skip
    run = train_online_policy(run_config, config.out_dir, tracker=tracker, parent_run_id=mlflow.parent_run_id(context, tracker),
                              tags={"tamiyo.asset_key": context.asset_key.to_user_string()}, log=context.log.info)  # fmt: skip
    last = run.history[-1] if run.history else {}
    yield dg.Output(str(run.policy_path), metadata={
        "policy_file": dg.MetadataValue.path(str(run.policy_path)), "model_version": run.model_version,
        "episodes": int(last.get("episodes_used", 0)), "mean_return_last": round(float(last.get("mean_return", 0.0)), 3),
        "learner_share": round(float(last.get("learner_share", 0.0)), 4),
    })  # fmt: skip
    yield dg.AssetCheckResult(check_name="no_reward_hacking", passed=not run.alerts,
                              metadata={"alerts": "; ".join(run.alerts) or "none"})


POLICY_ASSETS = [*POLICY_ASSETS, phase4_online_policy]
