"""REINFORCE with a learned baseline (Williams 1992): the simplest policy gradient, the roadmap's first step.

    advantage  A_t = G_t - V(s_t)          G_t: the Monte-Carlo return from step t
    actor      - log pi(a_t | s_t) * A_t    (masked: illegal actions have no probability)
    critic     (V(s_t) - G_t)^2
"""

from __future__ import annotations

from dataclasses import dataclass

from .loop import OnlineConfig, policy_gradient_update, train_online


@dataclass(frozen=True)
class ReinforceConfig(OnlineConfig):
    value_coef: float = 0.5
    normalise_advantages: bool = True


def train_reinforce(envs, agent, config: ReinforceConfig = ReinforceConfig(), **kwargs):
    return train_online(policy_gradient_update, "REINFORCE", envs, agent, config, lam=None, **kwargs)
