"""Fitted Q Evaluation: the value of a fixed policy, learned from logged transitions by any behaviour.

    Q(s, a) <- r + gamma * (1 - terminal) * sum_a' pi(a' | s') Q_target(s', a')      (a' over legal(s') only)

The estimate is the mean over episode starts of V(s0) = sum_a pi(a|s0) Q(s0, a), in the reward's units (pp of
validation accuracy gained over the episode): the difference between two policies' estimates is what a live
paired comparison measures on the validation split.

With gamma 1, a start's value is the sum of every later reward, so it needs one backup per decision of the
episode to reach the first one, and a soft target (weight tau per update) moves one backup in about 1 / tau
updates. FQE's budget therefore follows the data: by default `sweeps` x (longest episode) / tau updates. A fixed
4,000 updates at the learners' tau (0.005) carried about 20 of arena-v2's 30 steps: the heuristic's V(s0) at its own
starts was 3.95 pp below the returns those episodes got: the end of the episode was missing, where a graft's gain
shows. The target can move faster than a learner's (0.02): pi is fixed, there is no max to stabilise.

FQE is a model-based estimate: it needs no propensities, so it works on deterministic behaviour too, but it is
only as good as the Q-function's fit where the policy goes and the data does not. The learner's own Q-values are
never used for this (the reference system's optimism trap: it picked checkpoints by the largest Q it predicted for
itself).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..agents.base import categorical_columns
from ..agents.learning import Accumulator, LearnerConfig, encode, fit_encoders, optimiser, soft_update, tensors
from ..agents.networks import QNetwork
from ..transitions.dataset import TransitionDataset


@dataclass(frozen=True)
class FQEConfig(LearnerConfig):
    target_tau: float = 0.02
    updates: int = 0  # 0: as many as the data's horizon needs (see `budget`)
    sweeps: float = 4.0  # backups of the whole horizon that the default budget allows

    def budget(self, data: TransitionDataset) -> int:
        """Gradient updates on `data`: `updates` when set, else sweeps x longest episode / target_tau."""
        if self.updates > 0:
            return self.updates
        return max(1, math.ceil(self.sweeps * int(data.steps.max(initial=1)) / self.target_tau))


@dataclass
class FQEResult:
    value: float  # mean V(s0) over episode starts, in reward units (pp)
    start_values: np.ndarray  # V(s0) per episode start
    q_network: QNetwork
    td_errors: list[float] = field(default_factory=list)  # mean squared TD error per tenth of training
    updates_per_second: float = 0.0

    def interval(self, confidence: float = 0.95, resamples: int = 5_000, seed: int = 0):
        """Bootstrap interval over episode starts (the spread of starts only; not the Q-function's own error)."""
        from ..common.stats import mean_ci

        return mean_ci(self.start_values, confidence, resamples, seed)


def policy_probabilities(policy, obs: torch.Tensor, legal: torch.Tensor, greedy: bool = True) -> torch.Tensor:
    """pi(.|s) of a PolicyModule on a batch: one-hot on its best legal action (greedy), or its masked softmax."""
    policy.eval()
    with torch.no_grad():
        logits = policy.logits(obs, legal)
        if greedy:
            return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
        return torch.softmax(logits, dim=-1)


def episode_starts(data: TransitionDataset) -> np.ndarray:
    """Rows that begin an episode at its first decision (branch runs start mid-episode: not starts)."""
    return np.array([s.start for s in data.episode_slices() if data.steps[s.start] == 1], dtype=np.int64)


def fit_fqe(policy, data: TransitionDataset, config: FQEConfig = FQEConfig(), *, policy_features=None,
            greedy: bool = True, log=None) -> FQEResult:  # fmt: skip
    """Fit Q^pi on `data` for `policy` (a PolicyModule reading `policy_features`, default the data's features)."""
    torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    t = tensors(data, config.reward_scale)
    index = [data.feature_names.index(n) for n in (policy_features or data.feature_names)]
    next_pi = policy_probabilities(policy, t.next_obs[:, index], t.next_legal, greedy)
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's stream (a learner selecting checkpoints)
        torch.manual_seed(config.seed)
        q = QNetwork(len(data.feature_names), config.hidden, data.n_actions, categorical_columns(data.feature_names),
                     layer_norm=config.layer_norm)  # fmt: skip
    fit_encoders(data.observations, q)
    z = encode(q.encoder, t)
    target = copy.deepcopy(q)
    opt = optimiser(q.parameters(), config.learning_rate)
    updates = config.budget(data)
    chunk, parts = max(1, updates // 10), Accumulator("td")
    # pi is fixed: its expected next value only needs the target's Q, masked, weighted by pi(.|s').
    next_weights = next_pi.masked_fill(~t.next_legal, 0.0)
    started = time.perf_counter()
    for update in range(updates):
        idx = torch.randint(len(t), (config.batch_size,), generator=generator)
        with torch.no_grad():
            next_v = (next_weights[idx] * target.from_encoded(z.next_obs[idx]).masked_fill(~t.next_legal[idx], 0.0)).sum(dim=-1)
            y = t.rewards[idx] + config.gamma * (1.0 - t.terminal[idx]) * next_v
        pred = q.from_encoded(z.obs[idx]).gather(-1, t.actions[idx, None]).squeeze(-1)
        loss = torch.nn.functional.mse_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        soft_update(target, q, config.target_tau)
        parts.add(td=loss)
        if (update + 1) % chunk == 0:
            parts.flush()
    errors = [row["td"] for row in parts.rows]
    seconds = time.perf_counter() - started
    starts = episode_starts(data)
    pi0 = policy_probabilities(policy, t.obs[starts][:, index], t.legal[starts], greedy)
    with torch.no_grad():
        v0 = (pi0 * q.raw_logits(t.obs[starts]).masked_fill(~t.legal[starts], 0.0)).sum(dim=-1).numpy() / config.reward_scale
    if log:
        log(f"FQE: {updates} updates in {seconds:.1f} s ({updates / seconds:.0f}/s), TD error {errors[-1]:.4f}, "
            f"V(s0) {float(v0.mean()) if len(v0) else float('nan'):.2f} pp over {len(v0)} starts")  # fmt: skip
    q.eval()
    return FQEResult(float(v0.mean()) if len(v0) else float("nan"), v0, q, errors, updates / seconds)

