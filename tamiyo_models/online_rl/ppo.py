"""Proximal Policy Optimisation (Schulman et al. 2017), clipped objective, in the CleanRL manner:
GAE advantages normalised per minibatch, several epochs of minibatch updates per batch of episodes, an entropy
bonus with a floor, optional value clipping, and an early stop when the approximate KL to the policy that
collected the batch exceeds `target_kl`. Masks everywhere: an illegal action has no probability in the ratio.

    ratio  r = pi(a|s) / pi_old(a|s)
    actor  - min(r A, clip(r, 1 - eps, 1 + eps) A)
    critic (V - R)^2, or max of it and the clipped version's when value clipping is on
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loop import OnlineConfig, clip_and_step, regularisers, train_online


@dataclass(frozen=True)
class PPOConfig(OnlineConfig):
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 4
    minibatches: int = 4
    value_coef: float = 0.5
    clip_value: bool = False
    target_kl: float | None = 0.02
    normalise_advantages: bool = True


def update(agent, batch, optimiser, initial, config: PPOConfig, kl_coef: float) -> dict:
    n = len(batch.actions)
    generator = torch.Generator().manual_seed(int(batch.actions.sum()) + n)  # deterministic given the batch
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0, "updates": 0}
    parts: dict[str, float] = {}
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        stop = False
        # Exactly `minibatches` parts of near-equal size: slicing by n // minibatches left a remainder of a few
        # samples as an extra minibatch, a noisy update of its own whose entropy was the one reported.
        for idx in torch.tensor_split(order, min(config.minibatches, n)):
            obs, masks, actions = batch.obs[idx], batch.masks[idx], batch.actions[idx]
            new_logp = agent.log_prob(obs, masks, actions)
            log_ratio = new_logp - batch.log_probs[idx]
            ratio = log_ratio.exp()
            adv = batch.advantages[idx]
            if config.normalise_advantages and len(adv) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip, 1 + config.clip)).mean()
            value = agent.value(obs)
            if config.clip_value:
                clipped = batch.values[idx] + (value - batch.values[idx]).clamp(-config.clip, config.clip)
                value_loss = torch.max((value - batch.returns[idx]) ** 2, (clipped - batch.returns[idx]) ** 2).mean()
            else:
                value_loss = torch.nn.functional.mse_loss(value, batch.returns[idx])
            extra, minibatch_parts = regularisers(agent, initial, obs, masks, config, kl_coef)
            for key, amount in minibatch_parts.items():  # reported as the mean over the minibatches
                parts[key] = parts.get(key, 0.0) + amount
            clip_and_step(agent, optimiser, policy_loss + config.value_coef * value_loss + extra, config)
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()  # the unbiased low-variance estimator (Schulman)
            stats["policy_loss"] += float(policy_loss.detach())
            stats["value_loss"] += float(value_loss.detach())
            stats["approx_kl"] += float(approx_kl)
            stats["clip_fraction"] += float(((ratio - 1).abs() > config.clip).float().mean())
            stats["updates"] += 1
            if config.target_kl is not None and approx_kl > config.target_kl:
                stop = True
                break
        if stop:
            break
    updates = max(1, stats.pop("updates"))
    return {**{k: v / updates for k, v in {**stats, **parts}.items()}, "minibatch_updates": updates}


def train_ppo(envs, agent, config: PPOConfig = PPOConfig(), **kwargs):
    return train_online(update, "PPO", envs, agent, config, lam=config.gae_lambda, **kwargs)
