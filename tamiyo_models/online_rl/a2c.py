"""Advantage actor-critic (A2C, the synchronous A3C of Mnih et al. 2016) with GAE(lambda) advantages: the
critic bootstraps, so the actor's gradient is less noisy than REINFORCE's for the same episodes.

    advantage  GAE(gamma, lambda) from V
    actor      - log pi(a | s) * A        critic (V(s) - (A + V_old(s)))^2        one update per batch
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loop import OnlineConfig, clip_and_step, regularisers, train_online


@dataclass(frozen=True)
class A2CConfig(OnlineConfig):
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    normalise_advantages: bool = True


def update(agent, batch, optimiser, initial, config: A2CConfig, kl_coef: float) -> dict:
    adv = batch.advantages
    if config.normalise_advantages and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -(agent.log_prob(batch.obs, batch.masks, batch.actions) * adv).mean()
    value_loss = torch.nn.functional.mse_loss(agent.value(batch.obs), batch.returns)
    extra, parts = regularisers(agent, initial, batch.obs, batch.masks, config, kl_coef)
    clip_and_step(agent, optimiser, policy_loss + config.value_coef * value_loss + extra, config)
    return {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()), **parts}


def train_a2c(envs, agent, config: A2CConfig = A2CConfig(), **kwargs):
    return train_online(update, "A2C", envs, agent, config, lam=config.gae_lambda, **kwargs)
