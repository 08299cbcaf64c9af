"""Advantage actor-critic (A2C, the synchronous A3C of Mnih et al. 2016) with GAE(lambda) advantages: the
critic bootstraps, so the actor's gradient is less noisy than REINFORCE's for the same episodes.

    advantage  GAE(gamma, lambda) from V
    actor      - log pi(a | s) * A        critic (V(s) - (A + V_old(s)))^2        one update per batch
"""

from __future__ import annotations

from dataclasses import dataclass

from .loop import OnlineConfig, policy_gradient_update, train_online


@dataclass(frozen=True)
class A2CConfig(OnlineConfig):
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    normalise_advantages: bool = True


def train_a2c(envs, agent, config: A2CConfig = A2CConfig(), **kwargs):
    return train_online(policy_gradient_update, "A2C", envs, agent, config, lam=config.gae_lambda, **kwargs)
