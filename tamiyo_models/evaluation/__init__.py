"""Evaluating policies: offline metrics on held-out episodes, live paired episodes against the heuristic, and
the report (Markdown + standalone HTML with plots).

    evaluate_offline(model, feature_names, frame)      offline.py
    evaluate_live(policy_path, configs, out_dir, ...)   live.py (paired seeds, bootstrap interval)
    evaluate_policy(policy_path, warehouse, config)     harness.py (both, and the report)
    write_report(out_dir, title, ...)                   report.py
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "OfflineMetrics": "offline",
    "evaluate_offline": "offline",
    "LiveEvaluation": "live",
    "bootstrap_mean_ci": "live",
    "evaluate_live": "live",
    "paired_configs": "live",
    "EvaluationConfig": "harness",
    "evaluate_policy": "harness",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
