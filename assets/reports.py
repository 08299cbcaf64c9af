"""Reports stage: the policy evaluation report and the off-policy report. Every candidate (Phase 1, each Phase 2
variant, each Phase 3 algorithm: whatever the phase registry lists) is evaluated offline on its held-out
episodes and live against the heuristic on the same paired episodes, beside reference controllers and the null
control's noise floor; the reports and a side-by-side comparison are attached to the asset's metadata and to
each policy's MLflow run; each champion alias moves only when the live evaluation says so. The off-policy
report estimates the same policies from logged data alone and says how far that estimate agreed with live.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

import dagster as dg

from assets.mlflow_resource import MlflowTrackingResource
from assets.policies import phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy
from assets.resources import WarehouseResource

GROUP = "reports"


class EvaluationRunConfig(dg.Config):
    # Empty: every current candidate of every registered phase (Phase 1's `candidate`, Phase 2's and 3's
    # `candidate-<variant>`); or MLflow refs.
    models: list[str] = []
    episodes: int = 20  # live pairs, shared by every model
    spec: str = "nightly"
    batch_seed: int = 7_700_001  # must differ from the training batches' seeds (checked per episode seed)
    workers: int = 1
    # judged on the same pairs: the bars to clear. conv_heavy grafted at epoch 1 is the best reference controller
    # the arena has shown (docs/arena.md, "Headroom over the fixed schedule"; epoch 3 until 2026-11-30)
    references: list[str] = ["never", "fixed:conv_heavy@1"]
    null_orders: int = 1  # the heuristic rerun on fresh data orders: the noise floor beside every difference
    replicate: int = 0  # K fresh data orders for every pair; a champion then needs the win on both
    out_dir: str = "var/reports"
    promote: bool = True


@dg.asset(group_name=GROUP, deps=[phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy], kinds={"mlflow"})
def policy_evaluation_report(
    context: dg.AssetExecutionContext, config: EvaluationRunConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """Offline metrics on held-out episodes and live paired episodes against the heuristic, per candidate and
    side by side, as Markdown + HTML."""
    from pathlib import Path

    from tamiyo_models.agents.tracking import candidate_refs
    from tamiyo_models.evaluation import EvaluationConfig, evaluate_policies

    tracker = mlflow.tracker()
    refs = list(config.models) or candidate_refs(tracker)
    if not refs:
        raise dg.Failure("policy_evaluation_report: no model to evaluate (no candidate registered, and no models configured)")
    out = Path(config.out_dir)
    versions, policies = {}, {}
    for ref in refs:
        name, version, policies[name] = tracker.fetch_policy(ref, out / "policies")
        versions[name] = (ref, version)
    evaluation = EvaluationConfig(episodes=config.episodes, spec=config.spec, batch_seed=config.batch_seed, workers=config.workers,
                                  references=tuple(config.references), null_orders=config.null_orders, replicate=config.replicate)  # fmt: skip
    results = evaluate_policies(policies, warehouse.path, out, evaluation, log=context.log.info,
                                titles={name: f"Evaluation of {name} ({ref})" for name, (ref, _) in versions.items()})  # fmt: skip
    metadata, decisions, rows = {}, [], []
    for result in results:
        ref, version = versions[result.name]
        for path in (result.paths["markdown"], result.paths["html"], result.paths["json"]):
            tracker.client.log_artifact(version.run_id, str(path), artifact_path="evaluation")
        if "comparison_html" in result.paths:
            tracker.client.log_artifact(version.run_id, str(result.paths["comparison_html"]), artifact_path="evaluation")
        promoted, why = tracker.judge(version, result.live.summary(), promote=config.promote)
        context.log.info(f"{result.name}: {why}")
        decisions.append(f"{result.name} ({ref}): {why}")
        key = result.metadata["phase"] + (f"_{result.metadata['variant']}" if result.metadata.get("variant") else "")
        metadata[f"{key}_report_html"] = dg.MetadataValue.path(str(Path(result.paths["html"]).resolve()))
        metadata.update({f"{key}_{k}": _rounded(v) for k, v in result.live.summary().items()})
        if result.offline is not None:
            metadata.update({f"{key}_{k}": _rounded(v) for k, v in result.offline.summary().items()})
        metadata[f"{key}_champion_moved"] = promoted
        rows.append((key, result, promoted))
    first = results[0]
    html_report = Path(first.paths.get("comparison_html", first.paths["html"])).resolve()
    return dg.MaterializeResult(
        metadata={
            # The asset page shows this table: narrow enough not to be cut off, rounded, no images (a
            # Markdown image path means nothing to the UI); everything else is in the HTML report.
            "report": dg.MetadataValue.md(summary_table(rows)),
            "report_html": dg.MetadataValue.path(str(html_report)),
            "report_html_link": dg.MetadataValue.url(html_report.as_uri()),
            "models": ", ".join(f"{name} ({ref})" for name, (ref, _) in versions.items()),
            "champion_decisions": dg.MetadataValue.md("\n".join(f"- {d}" for d in decisions)),
            **metadata,
        }
    )


def _rounded(value) -> float:
    return round(float(value), 4)


def summary_table(rows) -> str:
    """One row per candidate, four short columns: policy, live difference to the heuristic with its interval,
    wins/ties/losses, champion moved."""
    lines = ["| policy | vs heuristic, pp [interval] | W/T/L | champion |", "|---|---|---|---|"]
    for key, result, promoted in rows:
        live = result.live
        lines.append(f"| {key} | {live.mean_difference:+.2f} [{live.ci_low:+.2f}, {live.ci_high:+.2f}] | "
                     f"{live.wins}/{live.ties}/{live.losses} | {'moved' if promoted else 'kept'} |")  # fmt: skip
    notes = [f"- {key}: degenerate weighting: {result.metadata['weighting_note']}" for key, result, _ in rows
             if result.metadata.get("weighting_note")]  # fmt: skip
    return "\n".join(lines + ([""] + notes if notes else []))


class OffPolicyReportConfig(dg.Config):
    models: list[str] = []  # empty: every current candidate
    references: list[str] = ["never", "fixed:conv_heavy@1"]
    regimes: list[str] = []  # empty: every transition in the warehouse
    updates: int = 0  # FQE updates per policy (0: as many as the episodes' length needs; tamiyo_models/ope/fqe.py)
    out_dir: str = "var/reports/ope"
    live_comparison: str = "var/reports/comparison.json"  # the evaluation report's, for the calibration


@dg.asset(group_name=GROUP, deps=[policy_evaluation_report], kinds={"pytorch"})
def off_policy_report(
    context: dg.AssetExecutionContext, config: OffPolicyReportConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """FQE, PDWIS and WDR of every candidate and reference controller from the warehouse's transitions, beside
    the heuristic's; calibrated against the live report (rank correlation, error in pp) when it exists."""
    import json
    from pathlib import Path

    from tamiyo_models.agents.tracking import candidate_refs
    from tamiyo_models.ope.fqe import FQEConfig
    from tamiyo_models.ope.report import calibration, off_policy_table, write_ope_report
    from tamiyo_models.transitions.dataset import load_transitions

    tracker = mlflow.tracker()
    out = Path(config.out_dir)
    policies = {}
    for ref in list(config.models) or candidate_refs(tracker):
        name, _, path = tracker.fetch_policy(ref, out / "policies")
        policies[name] = path
    policies.update({name: name for name in config.references})
    data = load_transitions(warehouse.path, "full+slots", regimes=tuple(config.regimes) or None)
    rows = off_policy_table(policies, data, FQEConfig(updates=config.updates), log=context.log.info)
    live = {}
    comparison = Path(config.live_comparison)
    if comparison.exists():
        live = {row["name"]: row["live"]["live_mean_difference"] for row in json.loads(comparison.read_text())}
    paths = write_ope_report(rows, out, title="Off-policy estimates", data_summary=data.summary(), live=live)
    calib = calibration(rows, live) if live else {}
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(paths["markdown"].read_text()),
        "report_html": dg.MetadataValue.path(str(paths["html"].resolve())),
        **{f"{r.name}_fqe_vs_heuristic_pp": round(r.versus_heuristic, 3) for r in rows},
        **({"calibration_spearman": round(calib["spearman"], 3), "calibration_mean_abs_error_pp": round(calib["mean_abs_error_pp"], 3)}
           if calib and calib["spearman"] == calib["spearman"] else {}),
    })  # fmt: skip


REPORT_ASSETS = [policy_evaluation_report, off_policy_report]
