"""What every phase's policy is and how it is kept (docs/rl-contract.md):

    PolicyModule, FeatureEncoder, mask_logits        base.py     (the interface: logits, act, log_prob, value, q_values)
    QNetwork, MLPActor, ValueNetwork, ActorCritic    networks.py (the RL phases' networks)
    save_policy / load_policy / register_network     saved.py    (one file format for all of them)
    Phase, phase, all_phases, register_phase         phases.py   (the roadmap's phases as data)
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "CATEGORICAL_FEATURES": "base",
    "FeatureEncoder": "base",
    "FeatureNormaliser": "base",
    "PolicyModule": "base",
    "categorical_columns": "base",
    "mask_logits": "base",
    "ActorCritic": "networks",
    "MLPActor": "networks",
    "QNetwork": "networks",
    "ValueNetwork": "networks",
    "build_network": "saved",
    "load_policy": "saved",
    "register_network": "saved",
    "save_policy": "saved",
    "Phase": "phases",
    "phase": "phases",
    "phase_of_model": "phases",
    "all_phases": "phases",
    "register_phase": "phases",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
