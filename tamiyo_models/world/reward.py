"""Reward aligned with consequences.

The action taken at step t (decided on the state after epoch t-1) is credited with what followed it:

    accuracy_change(t) = val_accuracy(after epoch t) - val_accuracy(after epoch t-1)        [pp]
    shaping(t)         = gamma * best_val_accuracy(after t) - best_val_accuracy(after t-1)  [potential-based]
    reward(t)          = scale * accuracy_change(t) + (shaping(t) if shaped else 0)

The reference stored val(t-1) - val(t-2) with the decision at t, i.e. the consequence of the *previous*
action. Raw accuracies are stored beside the reward, so any other reward can be recomputed in SQL.
Potential-based shaping (Phi = best val accuracy so far) leaves the optimal policy unchanged.
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
    config: RewardConfig, acc_before: float, acc_after: float, best_before: float, best_after: float
) -> dict[str, float]:
    change = acc_after - acc_before
    shaping = config.gamma * best_after - best_before
    reward = config.scale * change + (shaping if config.shaped else 0.0)
    return {"accuracy_change": change, "shaping": shaping, "reward": reward}
