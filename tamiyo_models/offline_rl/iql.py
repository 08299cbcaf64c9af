"""Discrete Implicit Q-Learning (Kostrikov et al. 2021), with the policy extracted by advantage-weighted
regression onto the logged actions.

    V:     expectile regression at tau of min(Q1_t, Q2_t)(s, a) - V(s)     (an upper expectile of Q over the data's actions)
    Q:     (Q_i(s, a) - (r + gamma (1 - terminal) V(s')))^2              (no max over actions: never queries unseen ones)
    actor: - exp(beta * (min Q_t(s, a) - V(s))).clamp(max=100) * log pi(a | s)    (masked: illegal actions get no mass)

The actor only ever imitates logged actions, re-weighted by how much better than the state's expectile they
turned out; it is never the argmax of Q. Taking Q's argmax is what made the reference's IQL collapse onto rare
actions (70% GERMINATE at tau = 0.7): a rare action's few lucky outcomes inflate its upper expectile.

The actor can start from Phase 1's imitation network (the same feature set): it then begins as the heuristic
and moves only where the advantage says so.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..agents.base import PolicyModule, categorical_columns
from ..agents.learning import Accumulator, encode, fit_encoders, optimiser, soft_update, tensors
from ..agents.networks import MLPActor, QNetwork, ValueNetwork
from ..transitions.dataset import TransitionDataset
from .base import CheckpointKeeper, OfflineConfig, OfflineResult, finish


@dataclass(frozen=True)
class IQLConfig(OfflineConfig):
    tau: float = 0.7  # expectile of V
    beta: float = 3.0  # AWR inverse temperature
    max_weight: float = 100.0


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    weight = torch.where(diff > 0, tau, 1 - tau)
    return (weight * diff.pow(2)).mean()


def train_iql(train: TransitionDataset, config: IQLConfig = IQLConfig(), *, actor: PolicyModule | None = None,
              selector=None, log=print) -> OfflineResult:  # fmt: skip
    """`actor`: an initial policy (e.g. Phase 1's network, loaded); otherwise a fresh MLP actor."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t = tensors(train, config.reward_scale)
    cats = categorical_columns(train.feature_names)
    q1, q2 = (QNetwork(len(train.feature_names), config.hidden, train.n_actions, cats, layer_norm=config.layer_norm)
              for _ in range(2))  # fmt: skip
    v = ValueNetwork(len(train.feature_names), config.hidden, cats, config.layer_norm)
    fresh_actor = actor is None
    if fresh_actor:
        actor = MLPActor(len(train.feature_names), config.hidden, train.n_actions, cats, layer_norm=config.layer_norm)
        fit_encoders(train.observations, actor)
    else:
        from ..agents.saved import output_width

        width = output_width(actor, len(train.feature_names))
        if width != train.n_actions:
            raise ValueError(f"the initial actor scores {width} actions, the data's action space has {train.n_actions}")
    fit_encoders(train.observations, q1, q2, v)
    z = encode(q1.encoder, t)  # Q1, Q2 and V fit the same statistics on the same data: one encoding serves all
    q1_t, q2_t = copy.deepcopy(q1), copy.deepcopy(q2)
    opt_q = optimiser([*q1.parameters(), *q2.parameters()], config.learning_rate)
    opt_v = optimiser(v.parameters(), config.learning_rate)
    opt_a = optimiser(actor.parameters(), config.learning_rate)
    keeper = CheckpointKeeper(selector, log)
    every = max(1, config.updates // max(1, config.checkpoints))
    chunk, parts = max(1, config.updates // 10), Accumulator("v", "q", "actor", "weight")
    actor.train()
    n = len(t)
    started = time.perf_counter()
    for update in range(1, config.updates + 1):
        idx = torch.randint(n, (config.batch_size,), generator=generator)
        obs, actions = z.obs[idx], t.actions[idx, None]
        with torch.no_grad():
            q_target = torch.min(q1_t.from_encoded(obs), q2_t.from_encoded(obs)).gather(-1, actions).squeeze(-1)
        value = v.from_encoded(obs)
        v_loss = expectile_loss(q_target - value, config.tau)
        opt_v.zero_grad(set_to_none=True)
        v_loss.backward()
        opt_v.step()

        with torch.no_grad():
            y = t.rewards[idx] + config.gamma * (1.0 - t.terminal[idx]) * v.from_encoded(z.next_obs[idx])
        q_loss = sum(torch.nn.functional.mse_loss(q.from_encoded(obs).gather(-1, actions).squeeze(-1), y) for q in (q1, q2))
        opt_q.zero_grad(set_to_none=True)
        q_loss.backward()
        opt_q.step()
        soft_update(q1_t, q1, config.target_tau)
        soft_update(q2_t, q2, config.target_tau)

        with torch.no_grad():
            weight = torch.exp(config.beta * (q_target - value.detach())).clamp(max=config.max_weight)
        actor_loss = -(weight * actor.log_prob(t.obs[idx], t.legal[idx], t.actions[idx])).mean()
        opt_a.zero_grad(set_to_none=True)
        actor_loss.backward()
        opt_a.step()

        parts.add(v=v_loss, q=q_loss, actor=actor_loss, weight=weight.mean())
        if update % chunk == 0:
            parts.flush()
        if update % every == 0 or update == config.updates:
            actor.eval()
            keeper.offer(update, actor)
    result = finish(actor, "iql", f"IQL tau {config.tau} beta {config.beta}", config, keeper, parts,
                    time.perf_counter() - started, log)  # fmt: skip
    result.config["actor_init"] = "fresh" if fresh_actor else "given"
    return result
