"""Phases 1 and 2 over the observation features: training data, Phase 1 imitation, Phase 2 reward-weighted
imitation, saving. The network is `agents.imitation_network`; a saved file is served as a controller by
`controllers.saved_policy` (the `file:PATH` scheme).

    load_decisions(warehouse, feature_set)      decisions as polars (data.py)
    split_episodes(frame, val_fraction, seed)   by episode, never by step (data.py)
    train_imitation(train, val, config)         Phase 1 (imitation.py)
    train_reward_weighted(train, val, weighting, config)   Phase 2 A/B/C (reward_weighted.py)
    save_policy / load_policy_file              one self-contained file (saved.py)

Names are imported lazily so that `import tamiyo_models.policies` does not pay for torch.
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "effective_number_weights": "class_weights",
    "EpisodeSplit": "data",
    "frame_digest": "data",
    "load_decisions": "data",
    "split_episodes": "data",
    "ImitationConfig": "imitation",
    "TrainResult": "imitation",
    "train_imitation": "imitation",
    "RewardWeightingConfig": "reward_weighted",
    "train_reward_weighted": "reward_weighted",
    "load_policy_file": "saved",
    "save_policy": "saved",
    "OfflineMetrics": "offline_metrics",
    "evaluate_offline": "offline_metrics",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
