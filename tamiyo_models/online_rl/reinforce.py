"""REINFORCE with a learned baseline (Williams 1992): the simplest policy gradient, the roadmap's first step.

    advantage  A_t = G_t - V(s_t)          G_t: the Monte-Carlo return from step t
    actor      - log pi(a_t | s_t) * A_t    (masked: illegal actions have no probability)
    critic     (V(s_t) - G_t)^2
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loop import OnlineConfig, clip_and_step, regularisers, train_online


@dataclass(frozen=True)
class ReinforceConfig(OnlineConfig):
    value_coef: float = 0.5
    normalise_advantages: bool = True


def update(agent, batch, optimiser, initial, config: ReinforceConfig, kl_coef: float) -> dict:
    adv = batch.advantages
    if config.normalise_advantages and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -(agent.log_prob(batch.obs, batch.masks, batch.actions) * adv).mean()
    value_loss = torch.nn.functional.mse_loss(agent.value(batch.obs), batch.returns)
    extra, parts = regularisers(agent, initial, batch.obs, batch.masks, config, kl_coef)
    clip_and_step(agent, optimiser, policy_loss + config.value_coef * value_loss + extra, config)
    return {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()), **parts}


def train_reinforce(envs, agent, config: ReinforceConfig = ReinforceConfig(), **kwargs):
    return train_online(update, "REINFORCE", envs, agent, config, lam=None, **kwargs)
