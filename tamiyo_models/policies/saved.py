"""A saved policy: one file with everything needed to act (weights, normaliser, feature names, action space,
metadata), loaded with `torch.load(weights_only=True)` so that opening a policy file runs no pickled code.
"""

from __future__ import annotations

from pathlib import Path

from ..actions import COARSE_ACTIONS, FINE_ACTIONS
from ..blueprints import BLUEPRINTS
from ..features import FEATURE_SCHEMA_VERSION
from .network import NetworkConfig, PolicyNetwork

FORMAT = "tamiyo-policy/1"


def save_policy(model: PolicyNetwork, feature_names, path: str | Path, metadata: dict | None = None) -> Path:
    import torch

    if len(feature_names) != model.n_features:
        raise ValueError(f"{len(feature_names)} feature names for a network with {model.n_features} inputs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": list(feature_names),
        "fine_actions": list(FINE_ACTIONS),
        "coarse_actions": list(COARSE_ACTIONS),
        "blueprints": list(BLUEPRINTS),
        "network": model.config.to_dict(),
        "categorical": [list(pair) for pair in model.categorical],  # (column, categories) one-hot inside the model
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, tmp)
    tmp.replace(path)  # a reader never sees half a policy
    return path


def load_policy_file(path: str | Path) -> tuple[PolicyNetwork, dict]:
    """(the network in eval mode, the payload without its weights)."""
    import torch

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format {payload.get('format')!r})")
    for key, ours in (("fine_actions", FINE_ACTIONS), ("blueprints", BLUEPRINTS)):
        if tuple(payload[key]) != tuple(ours):
            raise ValueError(f"{path}: saved {key} {payload[key]} differ from this code's {list(ours)}")
    categorical = tuple(tuple(pair) for pair in payload.get("categorical", []))
    model = PolicyNetwork(len(payload["feature_names"]), NetworkConfig.from_dict(payload["network"]), categorical)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, {k: v for k, v in payload.items() if k != "state_dict"}
