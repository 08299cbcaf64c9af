"""Policies stage: Phase 1 imitation, Phase 2 reward-weighted imitation and Phase 3 offline RL, trained from the
warehouse tables.

Thin wrappers around `tamiyo_models.policies.workflow.train_policy`: read config, call the library, attach
metadata. Each run is an MLflow child run under the Dagster run's parent run, registered as `candidate`.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)

The configs' defaults are the library's, read from its config dataclasses as `tamiyo train` reads them, except
the few the nightly graph chooses on purpose, all in NIGHTLY_DEFAULTS (tests/test_config_defaults.py checks both).
"""

from typing import Optional

import dagster as dg

from assets.mlflow_resource import MlflowTrackingResource
from assets.resources import WarehouseResource
from tamiyo_models.offline_rl.workflow import ALGORITHMS as OFFLINE_ALGORITHMS
from tamiyo_models.offline_rl.workflow import OfflineRunConfig
from tamiyo_models.online_rl.distil import DistilConfig
from tamiyo_models.online_rl.workflow import OnlineRunConfig
from tamiyo_models.policies.imitation import ImitationConfig
from tamiyo_models.policies.reward_weighted import VARIANTS, RewardWeightingConfig
from tamiyo_models.policies.workflow import IMITATION_FEATURE_SET, PolicyRunConfig

GROUP = "policies"
POLICY_DIR = "var/policies"

_IMITATION, _POLICY_RUN, _WEIGHTING = ImitationConfig(), PolicyRunConfig(), RewardWeightingConfig()
_OFFLINE, _ONLINE, _DISTIL = OfflineRunConfig(), OnlineRunConfig(), DistilConfig()

# Where the nightly graph departs from the library's defaults on purpose, and only here:
NIGHTLY_DEFAULTS = {
    # Nightly data mixes controllers: Phase 1 learns the heuristic's decision in every logged state of every
    # controller (empty: all; the heuristic labels any state, branches included: relabel.py), not the logged
    # actions of the heuristic's own runs (PolicyRunConfig: labels "logged", controllers heuristic).
    "phase1": {"labels": "heuristic", "controllers": []},
    # Outcome weighting needs the actions whose outcomes were logged: every controller's (empty: all), weighted by
    # how well they turned out (the way past the teacher). It fine-tunes the Phase 1 policy, so 60 epochs, not
    # 150: the lowest weighted validation loss came at epochs 11-30 of 60 (docs/policies.md).
    "phase2": {"controllers": [], "epochs": 60},
    # A night's budget: 5,000 updates per algorithm, not 20,000. And CQL at alpha 0.1, not 1.0: in reward units
    # (pp x 0.1) action values differ by a few hundredths, and at 1.0 the conservative term copies the data
    # (docs/offline-rl.md runs `--alpha 0.1` too).
    "phase3": {"updates": 5_000, "alpha": 0.1},
}


class PolicyTrainingConfig(dg.Config):
    # IMITATION_FEATURE_SET (base+lifecycle, 39): the heuristic judges seeds on seed_total_improvement, a lifecycle
    # feature outside base (27) and base+telemetry (54): without it imitation tops out near 0.8 balanced accuracy.
    feature_set: str = IMITATION_FEATURE_SET
    # "heuristic": the heuristic's decision in every logged state; "logged": the actions actually taken by the
    # `controllers` listed (empty: all).
    labels: str = NIGHTLY_DEFAULTS["phase1"]["labels"]
    controllers: list[str] = NIGHTLY_DEFAULTS["phase1"]["controllers"]
    epochs: int = _IMITATION.epochs
    batch_size: int = _IMITATION.batch_size
    learning_rate: float = _IMITATION.learning_rate
    beta: float = _IMITATION.beta
    val_fraction: float = _POLICY_RUN.val_fraction
    group_by: Optional[str] = _POLICY_RUN.group_by  # e.g. dataset_config: hold out whole configurations
    seed: int = _IMITATION.seed  # the episode split's too
    out_dir: str = POLICY_DIR


class Phase2Config(PolicyTrainingConfig):
    labels: str = _POLICY_RUN.labels
    controllers: list[str] = NIGHTLY_DEFAULTS["phase2"]["controllers"]
    # Each variant is its own MLflow child run and model version, aliased `candidate-<variant>`; the report
    # evaluates them side by side on the same paired episodes (A episode weights, B decision weights, C filter).
    variants: list[str] = list(VARIANTS)
    threshold: Optional[float] = _WEIGHTING.threshold  # C: absolute final accuracy (pp); default: the top share per configuration
    epochs: int = NIGHTLY_DEFAULTS["phase2"]["epochs"]
    start_from_phase1: bool = True


def _run_config(config: PolicyTrainingConfig, phase: str, parent: Optional[str] = None, variant: str = "A"):
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
    algorithms: list[str] = list(OFFLINE_ALGORITHMS)
    feature_set: str = _OFFLINE.feature_set
    regimes: list[str] = list(_OFFLINE.regimes)  # empty: every regime's transitions (and runs outside regimes)
    updates: int = NIGHTLY_DEFAULTS["phase3"]["updates"]
    alpha: float = NIGHTLY_DEFAULTS["phase3"]["alpha"]  # CQL
    tau: float = _OFFLINE.iql.tau
    awr_beta: float = _OFFLINE.iql.beta
    bcq_threshold: float = _OFFLINE.bcq.threshold
    held_out: float = _OFFLINE.held_out
    # FQE on the held-out families: per checkpoint to choose it, then once more for the off-policy report. Most
    # of a short run's time; fewer updates give a rougher choice and report, never a different data split. A
    # report budget of 0 (the default) means as many updates as the held-out episodes' length needs (ope/fqe.py).
    selection_fqe_updates: int = _OFFLINE.selection_fqe.updates
    report_fqe_updates: int = _OFFLINE.report_fqe.updates
    start_from_phase1: bool = True  # IQL's actor starts as the Phase 1 policy (when it reads the same features)
    seed: int = _OFFLINE.split_seed
    out_dir: str = POLICY_DIR


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"}, check_specs=_check_specs("phase3_offline_policy"))
def phase3_offline_policy(
    context: dg.AssetExecutionContext, config: Phase3Config, warehouse: WarehouseResource, mlflow: MlflowTrackingResource,
    phase1_imitation_policy: dict,
):
    """Phase 3: offline RL (discrete CQL, IQL, BCQ) on every controller's transitions and branch runs, each
    checkpoint chosen by FQE on held-out episode families; the off-policy report per algorithm."""
    from tamiyo_models.offline_rl.workflow import ALGORITHMS, train_offline

    unknown = sorted(set(config.algorithms) - set(ALGORITHMS))
    if unknown or not config.algorithms:
        raise dg.Failure(f"phase3_offline_policy: algorithms must be a non-empty subset of {', '.join(ALGORITHMS)}; got {config.algorithms}")
    parent = (phase1_imitation_policy.get("model_ref") or phase1_imitation_policy["policy_file"]) if config.start_from_phase1 else None
    tracker = mlflow.tracker()
    runs, metadata = {}, {"algorithms": ", ".join(config.algorithms), "parent": parent or "none"}
    for algorithm in config.algorithms:
        run_config = _offline_run_config(config, algorithm, parent)
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


def _offline_run_config(config: Phase3Config, algorithm: str, parent: Optional[str]) -> OfflineRunConfig:
    import dataclasses

    base = OfflineRunConfig()
    return OfflineRunConfig(
        algorithm=algorithm, feature_set=config.feature_set, regimes=tuple(config.regimes), held_out=config.held_out,
        split_seed=config.seed, parent_policy=parent,
        cql=dataclasses.replace(base.cql, alpha=config.alpha, updates=config.updates, seed=config.seed),
        iql=dataclasses.replace(base.iql, tau=config.tau, beta=config.awr_beta, updates=config.updates, seed=config.seed),
        bcq=dataclasses.replace(base.bcq, threshold=config.bcq_threshold, updates=config.updates, seed=config.seed),
        selection_fqe=dataclasses.replace(base.selection_fqe, updates=config.selection_fqe_updates),
        report_fqe=dataclasses.replace(base.report_fqe, updates=config.report_fqe_updates),
    )  # fmt: skip


def _held_out_runs(policy_path) -> list[str]:
    from tamiyo_models.agents.saved import load_policy

    return list(load_policy(policy_path)[1]["metadata"].get("held_out_runs") or [])


POLICY_ASSETS = [phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy]


class Phase4Config(dg.Config):
    algorithm: str = _ONLINE.algorithm  # reinforce | a2c | ppo | vine (branching policy iteration; episodes = parent episodes)
    spec: str = _ONLINE.spec
    regime: str = _ONLINE.regime or ""  # empty: every regime of the spec that can run here
    # Empty: the algorithm's own (64 episodes, 4 per iteration; vine: 3 iterations of 16 parent episodes)
    episodes: Optional[int] = None
    episodes_per_iteration: Optional[int] = None
    workers: int = _ONLINE.workers  # environments stepped at once: worker processes, or Ray actors with ray_address
    ray_address: str = _ONLINE.ray_address or ""  # a Ray cluster for the rollouts (docs/scaling.md); empty: local worker processes
    cpus_per_episode: float = _ONLINE.cpus_per_episode  # what each Ray actor reserves
    entropy_floor: float = _ONLINE.ppo.entropy_floor
    kl_coef: Optional[float] = None  # KL penalty towards the initial policy; empty: the algorithm's own (PPO 0.1, else 0)
    seed: int = _ONLINE.ppo.seed  # the learner's (its training configurations) and the distilled student's
    initial_policy: str = ""  # empty: the newest Phase 1 candidate (tamiyo-phase1-imitation@candidate); "none": fresh
    # Start from a stochastic student of the initial policy, distilled on the warehouse's states with this label
    # smoothing (e.g. 0.05): for a near-deterministic Phase 3 BCQ policy (tamiyo-phase3-offline@candidate-bcq),
    # which gives its unsupported actions probability 0, or a fixed schedule (initial_policy "fixed:conv_heavy@1",
    # the best reference controller), which has no network. Empty: the initial policy as it is.
    distil_smoothing: Optional[float] = None
    distil_updates: int = _DISTIL.updates  # the student's gradient steps (a minute on one core)
    # vine only: the training episodes' validation images (empty: the spec's; 10000 makes a branch's outcome 5x less
    # noisy on the arena) and the steps forks may start at (docs/online-rl.md)
    val_subsample: Optional[int] = _ONLINE.vine.val_subsample
    fork_min_step: int = _ONLINE.vine.min_step
    fork_max_step: Optional[int] = _ONLINE.vine.max_step
    # vine only: new data orders each candidate label is replayed on before it is learned (0: learned at once)
    confirm_orders: int = _ONLINE.vine.confirm_orders
    forks: int = _ONLINE.vine.forks_per_episode  # vine only: random steps of each parent where every other legal action is branched
    margin: float = _ONLINE.vine.margin  # vine only: pp an alternative must gain to be learned
    # vine only: "fork" (each fork's winner) or "region" (pooled evidence per region at a 5% false discovery rate),
    # and with "region", earlier vine runs' folders whose forks and visited states join the evidence
    label_rule: str = _ONLINE.vine.label_rule
    evidence_from: list[str] = list(_ONLINE.vine.evidence_from)
    record_dir: str = _ONLINE.record_dir or ""  # rollouts land in the warehouse's landing folder (Phase 3 learns from them)
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
    from tamiyo_models.online_rl.workflow import ALGORITHMS, train_online_policy

    if config.algorithm not in ALGORITHMS:
        raise dg.Failure(f"phase4_online_policy: algorithm must be one of {', '.join(ALGORITHMS)}; got {config.algorithm!r}")
    tracker = mlflow.tracker()
    run_config = _online_run_config(config, str(warehouse.path))
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


def _online_run_config(config: Phase4Config, warehouse_path: str) -> OnlineRunConfig:
    """The OnlineRunConfig the asset runs; an empty field (None) means the library's own value."""
    import dataclasses

    distil = (None if config.distil_smoothing is None
              else DistilConfig(smoothing=config.distil_smoothing, updates=config.distil_updates, seed=config.seed))  # fmt: skip
    initial = None if config.initial_policy == "none" else (config.initial_policy or "tamiyo-phase1-imitation@candidate")
    learner = getattr(OnlineRunConfig(), config.algorithm)
    per_iteration = learner.episodes_per_iteration if config.episodes_per_iteration is None else config.episodes_per_iteration
    if config.algorithm == "vine":  # the budget in parent episodes
        iterations = learner.iterations if config.episodes is None else max(1, config.episodes // per_iteration)
        learner = dataclasses.replace(learner, iterations=iterations, episodes_per_iteration=per_iteration, seed=config.seed,
                                      val_subsample=config.val_subsample, min_step=config.fork_min_step, max_step=config.fork_max_step,
                                      confirm_orders=config.confirm_orders, forks_per_episode=config.forks, margin=config.margin,
                                      label_rule=config.label_rule, evidence_from=tuple(config.evidence_from))  # fmt: skip
    else:
        learner = dataclasses.replace(learner, episodes=learner.episodes if config.episodes is None else config.episodes,
                                      episodes_per_iteration=per_iteration, entropy_floor=config.entropy_floor, seed=config.seed,
                                      kl_coef=learner.kl_coef if config.kl_coef is None else config.kl_coef)  # fmt: skip
    return OnlineRunConfig(algorithm=config.algorithm, spec=config.spec, regime=config.regime or None, workers=config.workers,
                           initial_policy=initial, record_dir=config.record_dir or None, ray_address=config.ray_address or None,
                           cpus_per_episode=config.cpus_per_episode, distil=distil, distil_warehouse=warehouse_path,
                           **{config.algorithm: learner})  # fmt: skip


POLICY_ASSETS = [*POLICY_ASSETS, phase4_online_policy]
