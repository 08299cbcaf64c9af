"""Reports stage: the policy evaluation report. Every candidate (Phase 1 and each Phase 2 variant) is evaluated
offline on its held-out episodes and live against the heuristic on the same paired episodes; the reports and a
side-by-side comparison are attached to the asset's metadata and to each policy's MLflow run; each champion
alias moves only when the live evaluation says so.
(No `from __future__ import annotations`: Dagster reads the config annotations at runtime.)
"""

import dagster as dg

from assets.policies import phase1_imitation_policy, phase2_weighted_policy
from assets.mlflow_resource import MlflowTrackingResource
from assets.resources import WarehouseResource

GROUP = "reports"


class EvaluationRunConfig(dg.Config):
    # Empty: every current candidate (Phase 1's `candidate`, Phase 2's `candidate-a/-b/-c`); or MLflow refs.
    models: list[str] = []
    episodes: int = 20  # live pairs, shared by every model
    spec: str = "nightly"
    batch_seed: int = 7_700_001  # must differ from the training batches' seeds (checked per episode seed)
    workers: int = 1
    out_dir: str = "var/reports"
    promote: bool = True


@dg.asset(group_name=GROUP, deps=[phase1_imitation_policy, phase2_weighted_policy], kinds={"mlflow"})
def policy_evaluation_report(
    context: dg.AssetExecutionContext, config: EvaluationRunConfig, warehouse: WarehouseResource, mlflow: MlflowTrackingResource
) -> dg.MaterializeResult:
    """Offline metrics on held-out episodes and live paired episodes against the heuristic, per candidate and
    side by side, as Markdown + HTML."""
    from pathlib import Path

    from tamiyo_models.evaluation import EvaluationConfig, evaluate_policies
    from tamiyo_models.tracking import candidate_refs

    tracker = mlflow.tracker()
    refs = list(config.models) or candidate_refs(tracker)
    if not refs:
        raise dg.Failure("policy_evaluation_report: no model to evaluate (no candidate registered, and no models configured)")
    out = Path(config.out_dir)
    versions, policies = {}, {}
    for ref in refs:
        name, version, policies[name] = tracker.fetch_policy(ref, out / "policies")
        versions[name] = (ref, version)
    evaluation = EvaluationConfig(episodes=config.episodes, spec=config.spec, batch_seed=config.batch_seed, workers=config.workers)
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


REPORT_ASSETS = [policy_evaluation_report]
