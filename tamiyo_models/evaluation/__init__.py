"""Evaluating policies: offline metrics on held-out episodes, live paired episodes against the heuristic, and
the report (Markdown + standalone HTML with plots).

    evaluate_offline(model, feature_names, frame)      ..policies.offline_metrics (training reports it too)
    evaluate_live(policy_path, configs, out_dir, ...)   live.py (paired seeds, bootstrap interval)
    evaluate_live_many({name: path}, configs, ...)       live.py (several policies, one heuristic run per pair)
    evaluate_policy(policy_path, warehouse, config)     harness.py (both, and the report)
    evaluate_policies({name: path}, warehouse, config)  harness.py (side by side, plus comparison.md/html)
    write_report(out_dir, title, ...)                   report.py
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "LiveEvaluation": "live",
    "bootstrap_mean_ci": "live",
    "evaluate_live": "live",
    "evaluate_live_many": "live",
    "paired_configs": "live",
    "EvaluationConfig": "harness",
    "evaluate_policy": "harness",
    "evaluate_policies": "harness",
    "PolicyEvaluation": "harness",
    "write_report": "report",
    "write_comparison": "report",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
