"""Discrete Batch-Constrained Q-learning (Fujimoto et al. 2019): Q-learning restricted to the actions the data
makes plausible. The simple support-constrained bar CQL and IQL must clear.

A behaviour model G(a|s) is fitted by cross-entropy on the logged actions; an action counts as supported in s
when G(a|s) / max_legal G(.|s) > threshold. Targets and the policy maximise Q over supported legal actions only:

    y = r + gamma (1 - terminal) Q_target(s', argmax_{a' supported and legal in s'} Q(s', a'))

At threshold 0 it is (double) Q-learning over legal actions; near 1 it is behaviour cloning.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..agents.base import PolicyModule, categorical_columns, mask_logits
from ..agents.learning import NEG_INF, Accumulator, encode, fit_encoders, masked_max, optimiser, soft_update, tensors
from ..agents.networks import BCQPolicy, QNetwork  # noqa: F401 (BCQPolicy re-exported)
from ..transitions.dataset import TransitionDataset
from .base import CheckpointKeeper, OfflineConfig, OfflineResult, finish


@dataclass(frozen=True)
class BCQConfig(OfflineConfig):
    threshold: float = 0.3


def train_bcq(train: TransitionDataset, config: BCQConfig = BCQConfig(), *, selector=None, log=print) -> OfflineResult:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t = tensors(train, config.reward_scale)
    cats = categorical_columns(train.feature_names)
    q = QNetwork(len(train.feature_names), config.hidden, train.n_actions, cats, layer_norm=config.layer_norm)
    g = QNetwork(len(train.feature_names), config.hidden, train.n_actions, cats, layer_norm=config.layer_norm)
    fit_encoders(train.observations, q, g)
    z = encode(q.encoder, t)  # Q and the behaviour model fit the same statistics: one encoding serves both
    policy = BCQPolicy(q, g, config.threshold)
    target = copy.deepcopy(q)
    opt = optimiser([*q.parameters(), *g.parameters()], config.learning_rate)
    keeper = CheckpointKeeper(selector, log)
    every = max(1, config.updates // max(1, config.checkpoints))
    chunk, parts = max(1, config.updates // 10), Accumulator("td", "bc")
    n = len(t)
    started = time.perf_counter()
    for update in range(1, config.updates + 1):
        idx = torch.randint(n, (config.batch_size,), generator=generator)
        obs, next_obs, actions, next_legal = z.obs[idx], z.next_obs[idx], t.actions[idx], t.next_legal[idx]
        with torch.no_grad():
            probs = torch.softmax(mask_logits(g.from_encoded(next_obs), next_legal), dim=-1)
            allowed = (probs / probs.max(dim=-1, keepdim=True).values > config.threshold) & next_legal
            _, best_next = masked_max(q.from_encoded(next_obs), allowed)
            y = t.rewards[idx] + config.gamma * (1.0 - t.terminal[idx]) * target.from_encoded(next_obs).gather(-1, best_next[:, None]).squeeze(-1)
        td = torch.nn.functional.mse_loss(q.from_encoded(obs).gather(-1, actions[:, None]).squeeze(-1), y)
        bc = torch.nn.functional.cross_entropy(mask_logits(g.from_encoded(obs), t.legal[idx]), actions)
        loss = td + bc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        soft_update(target, q, config.target_tau)
        parts.add(td=td, bc=bc)
        if update % chunk == 0:
            parts.flush()
        if update % every == 0 or update == config.updates:
            keeper.offer(update, policy)
    return finish(policy, "bcq", f"BCQ threshold {config.threshold}", config, keeper, parts, time.perf_counter() - started, log)
