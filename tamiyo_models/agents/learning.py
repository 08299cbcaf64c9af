"""What every learner shares (offline RL, off-policy evaluation, online RL): the transition dataset as tensors,
minibatches from a seeded generator, and masked maxima / log-sum-exps that never let an illegal action in.

Rewards are the environment's (the validation accuracy change that followed each action, in pp), scaled by
`reward_scale` so values stay near 1; gamma defaults to 1, because the objective is the final accuracy of an
episode, which is the undiscounted sum of its rewards (a discount would favour early gains over the final one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..transitions.dataset import TransitionDataset
from .base import NEG_INF  # noqa: F401 (the learners import it from here)


@dataclass(frozen=True)
class LearnerConfig:
    """What every value-based learner of logged transitions shares (FQE, CQL, IQL, BCQ); each adds its own."""

    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    batch_size: int = 256
    updates: int = 20_000
    gamma: float = 1.0
    reward_scale: float = 0.1
    target_tau: float = 0.005  # soft target updates
    seed: int = 0
    layer_norm: bool = True
    # One thread, as Phase 1's imitation: the same seed then gives the same policy on any machine (the thread count
    # changes float reductions), and episodes share the cores; on 2 cores a second thread gains 1.0-1.3x here.
    threads: int = 1

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


@dataclass
class Tensors:
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminal: torch.Tensor  # 1.0 where the episode ended (no bootstrap); truncations bootstrap
    legal: torch.Tensor
    next_legal: torch.Tensor

    def __len__(self) -> int:
        return len(self.actions)

    def batch(self, size: int, generator: torch.Generator) -> "Tensors":
        idx = torch.randint(len(self), (size,), generator=generator)
        return Tensors(*(getattr(self, f)[idx] for f in ("obs", "actions", "rewards", "next_obs", "terminal", "legal", "next_legal")))


def tensors(data: TransitionDataset, reward_scale: float = 1.0) -> Tensors:
    next_legal = data.next_legal.copy()
    # A final state has no decision; its legal set only matters where we bootstrap, which we never do there.
    # WAIT stands in so masked maxima stay finite.
    next_legal[~next_legal.any(axis=1), 0] = True
    return Tensors(
        obs=torch.as_tensor(data.observations, dtype=torch.float32),
        actions=torch.as_tensor(data.actions, dtype=torch.long),
        rewards=torch.as_tensor(data.rewards * reward_scale, dtype=torch.float32),
        next_obs=torch.as_tensor(data.next_observations, dtype=torch.float32),
        terminal=torch.as_tensor(data.terminated, dtype=torch.float32),
        legal=torch.as_tensor(data.legal, dtype=torch.bool),
        next_legal=torch.as_tensor(next_legal, dtype=torch.bool),
    )


def masked_max(q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max over legal actions, its argmax)."""
    values, index = q.masked_fill(~mask, NEG_INF).max(dim=-1)
    return values, index


def masked_logsumexp(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(q.masked_fill(~mask, NEG_INF), dim=-1)


def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    with torch.no_grad():  # one fused call for every tensor (a Python loop cost as much as a small update)
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


@dataclass
class Encoded:
    """The data set through a network's (fixed) encoder, once: training then runs only the layers after it."""

    obs: torch.Tensor
    next_obs: torch.Tensor


def encode(encoder: torch.nn.Module, t: Tensors) -> Encoded:
    with torch.no_grad():
        return Encoded(encoder(t.obs), encoder(t.next_obs))


class Accumulator:
    """Loss parts summed as tensors and read once per reporting chunk (a float() per update is Python overhead)."""

    def __init__(self, *names: str):
        self.names, self.sums, self.count, self.rows = names, {n: torch.zeros(()) for n in names}, 0, []

    def add(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            self.sums[name] += value.detach()
        self.count += 1

    def flush(self) -> None:
        if self.count:
            self.rows.append({n: float(v) / self.count for n, v in self.sums.items()})
        self.sums, self.count = {n: torch.zeros(()) for n in self.names}, 0


def fit_encoders(obs: np.ndarray, *modules) -> None:
    """Fit the normaliser of every module's feature encoder on the training observations (only)."""
    for module in modules:
        encoder = getattr(module, "encoder", None)
        if encoder is not None:
            encoder.fit(obs)


def optimiser(params, lr: float) -> torch.optim.Optimizer:
    # fused/foreach AdamW: one kernel for all parameters instead of one per tensor (small MLPs on one thread)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, foreach=True)
