"""Discrete Conservative Q-Learning (Kumar et al. 2020), standard form, with legal-action masks everywhere.

    target  y = r + gamma (1 - terminal) Q_target(s', argmax_{a' legal(s')} Q(s', a'))       (double Q)
    loss    (Q(s, a) - y)^2 + alpha * (logsumexp_{a legal(s)} Q(s, .) - Q(s, a))

The conservative term pushes down every legal action's value and pushes back up the logged one, so actions
the data never tried in a state cannot look better than the evidence for them. An illegal action never enters
a max, a log-sum-exp or a choice. The policy acts greedily on Q. (The reference system's "CQL" was IQL's loss
plus a log-sum-exp penalty, and it only behaved at alpha = 5, where it copied the behaviour.)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..agents.base import categorical_columns
from ..agents.learning import (
    Accumulator,
    encode,
    fit_encoders,
    masked_logsumexp,
    masked_max,
    optimiser,
    soft_update,
    tensors,
)
from ..agents.networks import QNetwork
from ..transitions.dataset import TransitionDataset
from .base import CheckpointKeeper, OfflineConfig, OfflineResult, finish


@dataclass(frozen=True)
class CQLConfig(OfflineConfig):
    alpha: float = 1.0  # weight of the conservative term


def train_cql(train: TransitionDataset, config: CQLConfig = CQLConfig(), *, selector=None, log=print) -> OfflineResult:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t = tensors(train, config.reward_scale)
    q = QNetwork(len(train.feature_names), config.hidden, train.n_actions, categorical_columns(train.feature_names),
                 layer_norm=config.layer_norm)  # fmt: skip
    fit_encoders(train.observations, q)
    z = encode(q.encoder, t)  # the target shares the encoder's statistics, so one encoding serves both
    target = copy.deepcopy(q)
    opt = optimiser(q.parameters(), config.learning_rate)
    keeper = CheckpointKeeper(selector, log)
    every = max(1, config.updates // max(1, config.checkpoints))
    chunk, parts = max(1, config.updates // 10), Accumulator("td", "cql", "q")
    n = len(t)
    started = time.perf_counter()
    for update in range(1, config.updates + 1):
        idx = torch.randint(n, (config.batch_size,), generator=generator)
        obs, next_obs, actions = z.obs[idx], z.next_obs[idx], t.actions[idx]
        with torch.no_grad():
            _, best_next = masked_max(q.from_encoded(next_obs), t.next_legal[idx])
            next_q = target.from_encoded(next_obs).gather(-1, best_next[:, None]).squeeze(-1)
            y = t.rewards[idx] + config.gamma * (1.0 - t.terminal[idx]) * next_q
        values = q.from_encoded(obs)
        taken = values.gather(-1, actions[:, None]).squeeze(-1)
        td = torch.nn.functional.mse_loss(taken, y)
        conservative = (masked_logsumexp(values, t.legal[idx]) - taken).mean()
        loss = td + config.alpha * conservative
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        soft_update(target, q, config.target_tau)
        parts.add(td=td, cql=conservative, q=taken.mean())
        if update % chunk == 0:
            parts.flush()
        if update % every == 0 or update == config.updates:
            keeper.offer(update, q)
    return finish(q, "cql", f"CQL alpha {config.alpha}", config, keeper, parts, time.perf_counter() - started, log)
