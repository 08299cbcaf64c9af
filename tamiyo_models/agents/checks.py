"""Sanity checks of a saved policy, run before anyone trusts it (the Dagster policy assets attach them as
asset checks): its weights are finite, and on held-out states it gives every legal action a finite
probability, no illegal action any, and acts legally."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PolicyCheck:
    finite_weights: bool
    non_finite_tensors: list[str]
    states: int  # held-out states the policy was run on
    legal_actions_chosen: int
    valid_distributions: int  # rows whose probabilities are finite, sum to 1 and are 0 on illegal actions

    @property
    def acts_legally(self) -> bool:
        return self.states > 0 and self.legal_actions_chosen == self.states == self.valid_distributions


def check_policy_file(path: str | Path, warehouse_path: str | Path | None = None, run_ids=()) -> PolicyCheck:
    """Load the policy (any phase) and check it; with a warehouse and held-out run ids, act on their states."""
    import torch

    from .saved import load_policy

    module, payload = load_policy(path)
    bad = [name for name, tensor in module.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    states = chosen = valid = 0
    if warehouse_path is not None and run_ids:
        from ..transitions.dataset import load_transitions

        from ..world.actions import slots_of_space
        from ..world.features import FEATURE_SETS

        # The policy's own runs share its action space; a warehouse may also hold runs of other spaces. "full"
        # leaves the per-slot group out, which a policy for several slots usually reads.
        feature_set = "full" if set(payload["feature_names"]) <= set(FEATURE_SETS["full"]) else "full+slots"
        data = load_transitions(warehouse_path, feature_set, seed_slots=slots_of_space(len(payload["fine_actions"])))
        keep = np.isin(data.run_ids, np.asarray(list(run_ids), dtype=str))
        index = [data.feature_names.index(n) for n in payload["feature_names"]]
        obs = torch.as_tensor(data.observations[keep][:, index])
        mask = torch.as_tensor(data.legal[keep])
        if len(obs):
            with torch.no_grad():
                probs = module.probabilities(obs, mask)
                actions, _ = module.act(obs, mask, greedy=True)
            states = len(obs)
            chosen = int(mask[torch.arange(states), actions].sum())
            ok = torch.isfinite(probs).all(dim=1) & torch.isclose(probs.sum(dim=1), torch.ones(states))
            illegal_mass = torch.where(mask, torch.zeros_like(probs), probs).sum(dim=1)
            valid = int((ok & (illegal_mass == 0)).sum())
    return PolicyCheck(not bad, bad, states, chosen, valid)
