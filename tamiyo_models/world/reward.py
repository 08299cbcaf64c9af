"""Reward aligned with consequences.

The action taken at step t (decided on the state after epoch t-1) is credited with what followed it:

    accuracy_change(t) = val_accuracy(after epoch t) - val_accuracy(after epoch t-1)        [pp]
    shaping(t)         = gamma * best_val_accuracy(after t) - best_val_accuracy(after t-1)  [potential-based]
    rent_charge(t)     = growth_charge(after t) - growth_charge(before t)                   [pp; rent > 0 only]
    reward(t)          = scale * (accuracy_change(t) - rent_charge(t)) + (shaping(t) if shaped else 0)

The reference stored val(t-1) - val(t-2) with the decision at t, i.e. the consequence of the *previous*
action. Raw accuracies are stored beside the reward, so any other reward can be recomputed in SQL.
Potential-based shaping (Phi = best val accuracy so far) leaves the optimal policy unchanged.

The rent term (tamiyo_models.world.score) is the change of Phi = -rent x log2(parameters / host parameters)
over the step, undiscounted, so it telescopes: over a whole episode it sums to the score's own charge, and the
return falls by exactly scale x rent x log2(final / host parameters). It lands on the step whose action grew
(or, by culling, shrank) the network, not on the last step, so the action that grew is the one charged, and a
branch run that stops at its horizon pays for what it grew. At rent 0 it is absent and the reward is bit for
bit the one before rent existed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RewardConfig:
    scale: float = 1.0
    shaped: bool = False
    gamma: float = 0.99

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RewardConfig":
        return cls(**d)


def step_reward(
    config: RewardConfig,
    acc_before: float,
    acc_after: float,
    best_before: float,
    best_after: float,
    rent_charge: float | None = None,
) -> dict[str, float]:
    """The reward of one step and its parts. `rent_charge`: the step's change of the growth charge (pp),
    None when the episode pays no rent (then neither the term nor its field exists)."""
    change = acc_after - acc_before
    shaping = config.gamma * best_after - best_before
    if rent_charge is None:
        reward = config.scale * change + (shaping if config.shaped else 0.0)
        return {"accuracy_change": change, "shaping": shaping, "reward": reward}
    reward = config.scale * (change - rent_charge) + (shaping if config.shaped else 0.0)
    return {"accuracy_change": change, "shaping": shaping, "rent_charge": rent_charge, "reward": reward}
