"""Phase 5: the curriculum policy (Phase 4 online RL through a curriculum of tasks) and its transfer report
(zero-shot on tasks it never trained on). Thin wrappers around tamiyo_models.curriculum, both tracked in
MLflow (each round is a child run). A curriculum runs hundreds of episodes, so `curriculum_policy` advances it
by `rounds` rounds per materialization (default 1, resumed from its folder): the nightly job runs one round a
night. The transfer report is on demand.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

import dagster as dg

from assets.mlflow_resource import MlflowTrackingResource

GROUP_POLICIES, GROUP_REPORTS = "policies", "reports"


class CurriculumAssetConfig(dg.Config):
    curriculum: str = "default"  # a shipped curriculum (tamiyo_models/curricula/) or a TOML file
    order: str = "manual"  # manual | weakest | progress
    budget_episodes: int = 256
    algorithm: str = "ppo"
    initial_policy: str = ""  # a policy file or MLflow ref; empty: the newest Phase 1 candidate; "none": a fresh actor
    rounds: int = 1  # rounds to run now, resuming the curriculum in out_dir; 0: to the end of the budget
    workers: int = 2
    entropy_floor: float = 0.0
    record_dir: str = "var/raw"  # rollouts land in the warehouse's landing folder
    out_dir: str = "var/curriculum"


@dg.asset(group_name=GROUP_POLICIES, deps=["phase1_imitation_policy"], kinds={"pytorch", "mlflow"},
          check_specs=[dg.AssetCheckSpec("no_reward_hacking", asset="curriculum_policy",
                                         description="the rounds of this materialization: germinate/cull churn, seeds "
                                         "waiting in TRAINING at the end, unfinished blends, culls of helping seeds, "
                                         "entropy collapse (online RL runs unattended every night)")])  # fmt: skip
def curriculum_policy(context: dg.AssetExecutionContext, config: CurriculumAssetConfig, mlflow: MlflowTrackingResource):
    """Online RL through the curriculum's stages (promoted by each stage's rule, or picked by the automatic
    curriculum), the policy carried from round to round; the margin over the heuristic per round. Each
    materialization runs `rounds` more rounds of the curriculum kept in `out_dir` (the first starts from the
    Phase 1 candidate unless `initial_policy` says otherwise); a finished curriculum reports its result again."""
    from tamiyo_models.curriculum import CurriculumRunConfig, CurriculumSpec, run_curriculum

    if config.rounds < 0:
        raise dg.Failure(f"curriculum_policy: rounds must be >= 0, got {config.rounds}")
    initial = None if config.initial_policy == "none" else (config.initial_policy or "tamiyo-phase1-imitation@candidate")
    spec = CurriculumSpec.load(config.curriculum)
    run_config = CurriculumRunConfig(order=config.order, budget_episodes=config.budget_episodes, algorithm=config.algorithm,
                                     initial_policy=initial, workers=config.workers,
                                     entropy_floor=config.entropy_floor, record_dir=config.record_dir or None)  # fmt: skip
    tracker = mlflow.tracker()
    result = run_curriculum(spec, run_config, config.out_dir, tracker=tracker, parent_run_id=mlflow.parent_run_id(context, tracker),
                            max_rounds=config.rounds or None, log=context.log.info)  # fmt: skip
    table = ["| round | stage | episodes | margin (pp) | 95% CI | promoted |", "|---|---|---|---|---|---|"]
    table += [f"| {r.round} | {r.stage} | {r.episodes_total} | {r.margin:+.2f} | [{r.low:+.2f}, {r.high:+.2f}] | "
              f"{'yes' if r.promoted else ''} |" for r in result.rounds]  # fmt: skip
    # The watch covers this materialization's rounds: the earlier ones were checked when they ran.
    alerts = [f"round {r.round} ({r.stage}): {a}" for r in result.rounds[len(result.rounds) - result.new_rounds :] for a in r.alerts]
    metadata = {
        "policy_file": dg.MetadataValue.path(str(result.policy_path)), "rounds": dg.MetadataValue.md("\n".join(table)),
        "episodes": result.episodes_used, "new_rounds": result.new_rounds, "finished": result.finished,
        "skipped_stages": dg.MetadataValue.md("\n".join(f"- {k}: {v}" for k, v in result.skipped.items()) or "none"),
    }  # fmt: skip
    check = dg.AssetCheckResult(check_name="no_reward_hacking", passed=not alerts, metadata={"alerts": "; ".join(alerts) or "none"})
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


class TransferAssetConfig(dg.Config):
    policy: str = ""  # a policy file; empty: the curriculum_policy asset's latest file
    curriculum: str = "digits-only"  # whose [[transfer]] tasks are evaluated
    datasets: list[str] = []  # more tasks: any dataset name, e.g. imagefolder:/data/pets
    replicate: int = 0
    workers: int = 2
    out_dir: str = "var/reports/transfer"


@dg.asset(group_name=GROUP_REPORTS, deps=[curriculum_policy], kinds={"mlflow"})
def transfer_report(context: dg.AssetExecutionContext, config: TransferAssetConfig, mlflow: MlflowTrackingResource):
    """The policy zero-shot on tasks it never trained on, paired with the heuristic (test split); bar: not worse
    by more than 0.25 pp. The report is logged to an MLflow run of its own."""
    from pathlib import Path

    from tamiyo_models.curriculum import CurriculumSpec, dataset_task, write_transfer_report, zero_shot

    policy = config.policy
    if not policy:  # the curriculum_policy asset's latest policy file
        event = context.instance.get_latest_materialization_event(dg.AssetKey("curriculum_policy"))
        if event is None or event.asset_materialization is None:
            raise dg.Failure("transfer_report: no policy configured and curriculum_policy was never materialized")
        policy = event.asset_materialization.metadata["policy_file"].path
    spec = CurriculumSpec.load(config.curriculum)
    tasks = [*spec.transfer, *(dataset_task(d) for d in config.datasets)]
    out = Path(config.out_dir)
    results = [zero_shot(policy, t, out / "live" / t.name, workers=config.workers, replicate=config.replicate, log=context.log.info)
               for t in tasks]  # fmt: skip
    report = write_transfer_report(results, [], out / "transfer.md")
    tracker = mlflow.tracker()
    with tracker.child_run(mlflow.parent_run_id(context, tracker), "transfer-report", {"tamiyo.policy": str(policy)}) as run_id:
        tracker.client.log_artifact(run_id, str(report), artifact_path="transfer")
        tracker.client.log_artifact(run_id, str(report.with_suffix(".json")), artifact_path="transfer")
    return dg.MaterializeResult(metadata={"report": dg.MetadataValue.md(report.read_text()), "policy": str(policy),
                                          **{f"{r.task}_margin_pp": round(r.margin, 3) for r in results if not r.skipped}})  # fmt: skip


CURRICULUM_ASSETS = [curriculum_policy, transfer_report]
