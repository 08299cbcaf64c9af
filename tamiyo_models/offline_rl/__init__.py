"""Phase 3: offline RL from the warehouse's transitions (docs/offline-rl.md).

    train_cql(data, CQLConfig)            cql.py   (discrete CQL, double Q, masked)
    train_iql(data, IQLConfig, actor=)    iql.py   (expectile V, AWR actor; may start from Phase 1)
    train_bcq(data, BCQConfig)            bcq.py   (support-constrained Q-learning: the bar to clear)
    train_offline(warehouse, config, out) workflow.py (selection by held-out FQE, OPE report, policy file, MLflow)
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "CQLConfig": "cql", "train_cql": "cql", "OfflineResult": "base", "OfflineConfig": "base",
    "IQLConfig": "iql", "train_iql": "iql",
    "BCQConfig": "bcq", "BCQPolicy": "bcq", "train_bcq": "bcq",
    "OfflineRunConfig": "workflow", "train_offline": "workflow", "off_policy_report": "workflow",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
