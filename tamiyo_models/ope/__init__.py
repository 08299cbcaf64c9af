"""Off-policy evaluation: how good a policy is, estimated from logged data alone (docs/offline-rl.md).

    fit_fqe(policy, data, FQEConfig)         fqe.py         (fitted Q evaluation, legal actions only)
    estimate_is(data, pi_taken, q_taken, v)  importance.py  (PDWIS and WDR, only where mu was a real draw)
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "FQEConfig": "fqe", "FQEResult": "fqe", "fit_fqe": "fqe", "policy_probabilities": "fqe",
    "ISEstimate": "importance", "estimate_is": "importance", "eligible_episodes": "importance",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
