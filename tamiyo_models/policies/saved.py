"""Saving and loading the imitation network of Phases 1 and 2, through the one policy format of every phase
(tamiyo_models.agents.saved): a file with everything needed to act, loaded with `torch.load(weights_only=True)`
so that opening a policy file runs no pickled code. Files written before that format still load.
"""

from __future__ import annotations

from pathlib import Path

from ..agents.imitation_network import PolicyNetwork
from ..agents.saved import load_policy
from ..agents.saved import save_policy as save_any_policy


def save_policy(model: PolicyNetwork, feature_names, path: str | Path, metadata: dict | None = None) -> Path:
    if len(feature_names) != model.n_features:
        raise ValueError(f"{len(feature_names)} feature names for a network with {model.n_features} inputs")
    metadata = dict(metadata or {})
    return save_any_policy(model, feature_names, path, algorithm=metadata.get("algorithm", "imitation"),
                           phase=metadata.get("phase", "phase1"), parent=metadata.get("parent_policy"),
                           metadata=metadata)  # fmt: skip


def load_policy_file(path: str | Path):
    """(the network in eval mode, the payload without its weights)."""
    return load_policy(path)
