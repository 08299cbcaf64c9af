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
from dataclasses import asdict, dataclass, field

import torch

from ..agents.base import categorical_columns
from ..agents.networks import QNetwork
from ..transitions.dataset import TransitionDataset
from ..agents.learning import Accumulator, encode, fit_encoders, masked_logsumexp, masked_max, optimiser, soft_update, tensors
from .selection import CheckpointKeeper


@dataclass(frozen=True)
class CQLConfig:
    alpha: float = 1.0  # weight of the conservative term
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    batch_size: int = 256
    updates: int = 20_000
    gamma: float = 1.0
    reward_scale: float = 0.1
    target_tau: float = 0.005
    checkpoints: int = 5  # evaluated for selection, evenly spaced
    seed: int = 0
    layer_norm: bool = True

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


@dataclass
class OfflineResult:
    module: torch.nn.Module  # a PolicyModule (the selected checkpoint)
    algorithm: str
    config: dict
    selected_update: int
    checkpoints: list = field(default_factory=list)  # (update, held-out estimate)
    losses: list = field(default_factory=list)  # per tenth of training: dict of loss parts
    updates_per_second: float = 0.0


def train_cql(train: TransitionDataset, config: CQLConfig = CQLConfig(), *, selector=None, log=print) -> OfflineResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t = tensors(train, config.reward_scale)
    q = QNetwork(len(train.feature_names), config.hidden, categorical=categorical_columns(train.feature_names),
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
    seconds = time.perf_counter() - started
    best = keeper.best()
    q.load_state_dict(best.state)
    q.eval()
    log(f"CQL alpha {config.alpha}: {config.updates} updates in {seconds:.1f} s ({config.updates / seconds:.0f}/s); "
        f"kept update {best.update} (held-out estimate {best.estimate:+.2f} pp)")  # fmt: skip
    return OfflineResult(q, "cql", config.to_dict(), best.update, [(c.update, c.estimate) for c in keeper.checkpoints],
                         parts.rows, config.updates / seconds)  # fmt: skip
