"""The loop every online learner shares: iterations of whole episodes collected with the current policy, one
algorithm-specific update, metrics, the reward-hacking watch, and a checkpoint after every iteration.

- Budget in episodes (the expensive unit: a Fashion-MNIST episode is ~15 s of one core), counted with the
  critic's warm-up: the first iteration only fits the critic to the returns of the initial policy's own
  rollouts, so the first actor updates start from sensible advantages instead of undoing the initialisation.
- A KL penalty towards the initial policy (`kl_coef`, multiplied by `kl_decay` each iteration) keeps an actor
  that starts as Phase 1 or Phase 3 near it while the critic is still rough.
- Iteration k draws its episodes with seed (seed, k) and samples actions from a generator seeded the same way,
  and the checkpoint holds every weight and optimiser moment: a run resumed after a crash continues exactly as
  it would have.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..agents.base import finite_log_probs
from .hacking import HackingWatch, episode_behaviour
from .rollout import build_batch, collect_episodes


@dataclass(frozen=True)
class OnlineConfig:
    episodes: int = 64  # the budget: episodes consumed in all, the critic's warm-up included
    episodes_per_iteration: int = 4
    gamma: float = 1.0  # the objective is the final accuracy: the undiscounted sum of the rewards
    reward_scale: float = 0.1
    learning_rate: float = 3e-4
    critic_warmup_epochs: int = 100  # gradient passes of the critic on the initial policy's returns (0: off)
    entropy_coef: float = 0.01
    entropy_floor: float = 0.0  # below this mean entropy (nats), an extra penalty pushes it back up
    kl_coef: float = 0.0  # penalty on KL(pi || pi_initial)
    kl_decay: float = 0.9
    max_grad_norm: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OnlineResult:
    agent: torch.nn.Module
    history: list[dict] = field(default_factory=list)  # one row per iteration
    alerts: list[str] = field(default_factory=list)  # reward-hacking alerts of the last iterations
    episodes_used: int = 0
    resumed_from: int | None = None


def iteration_seed(config: OnlineConfig, iteration: int) -> int:
    """The seed iteration `iteration` resets the vector environment with (sub-environment i gets it + i)."""
    return int(np.random.SeedSequence([config.seed, iteration]).generate_state(1)[0] % (2**31 - 1))


def episode_slots(config: OnlineConfig, num_envs: int) -> dict[int, int]:
    """{reset seed: the most episodes one sub-environment can start after it} over the whole budget, so that a
    caller can hand the environments every configuration beforehand (TamiyoEnv's `configs`). An iteration of n
    episodes ends once n have finished; a sub-environment finishes at most n of them and may have started one
    more when the others finish first, hence n + 1."""
    slots, used, iteration = {}, 0, 0
    while used < config.episodes:
        n = min(config.episodes_per_iteration, config.episodes - used)
        seed = iteration_seed(config, iteration)
        slots.update({seed + i: n + 1 for i in range(num_envs)})
        used, iteration = used + n, iteration + 1
    return slots


def assign_episode_configs(slots: dict[int, int], configs: list) -> dict[int, list]:
    """`configs` (as many as `episode_slots` counts, seeds already registered) dealt out in order: {reset seed: the
    configurations that sub-environment may run}, what TamiyoEnv's `configs` takes."""
    if len(configs) != sum(slots.values()):
        raise ValueError(f"{len(configs)} configurations for {sum(slots.values())} episode slots")
    rest = iter(configs)
    return {seed: [next(rest) for _ in range(count)] for seed, count in slots.items()}


def masked_entropy(agent, obs, masks) -> torch.Tensor:
    return agent.entropy(obs, masks).mean()


def kl_to(initial, agent, obs, masks) -> torch.Tensor:
    """Mean KL(pi || pi_initial) over the batch's states, over the actions pi can take.

    Those are the actions with a finite logit, not merely the legal ones: a BCQ actor also gives -inf to legal
    actions its data does not support (its support does not move during training, so pi_initial has them too)."""
    logp, possible = finite_log_probs(agent.logits(obs, masks))
    with torch.no_grad():
        logq, _ = finite_log_probs(initial.logits(obs, masks))
    return (logp.exp() * (logp - logq) * possible).sum(dim=-1).mean()


def regularisers(agent, initial, obs, masks, config: OnlineConfig, kl_coef: float) -> tuple[torch.Tensor, dict]:
    """The entropy bonus (with its floor) and the KL penalty towards the initial policy, added to every loss."""
    entropy = masked_entropy(agent, obs, masks)
    loss = -config.entropy_coef * entropy + config.entropy_coef * 10 * torch.relu(config.entropy_floor - entropy)
    kl = kl_to(initial, agent, obs, masks) if kl_coef > 0 else torch.zeros(())
    return loss + kl_coef * kl, {"entropy": float(entropy.detach()), "kl_initial": float(kl.detach())}


UpdateFn = Callable[..., dict]


def train_online(update: UpdateFn, name: str, envs, agent, config, *, lam: float | None, checkpoint_dir: str | Path | None = None,
                 record: bool = False, obs_index: list[int] | None = None, watch: HackingWatch | None = None,
                 log=print, on_iteration: Callable[[dict], None] | None = None) -> OnlineResult:  # fmt: skip
    """Iterate until the episode budget is spent. `update(agent, batch, optimiser, initial, config, kl_coef)`
    performs one algorithm's update and returns its loss parts."""
    torch.manual_seed(config.seed)
    initial = copy.deepcopy(agent).eval()
    for p in initial.parameters():
        p.requires_grad_(False)
    optimiser = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5, foreach=True)
    agent.eval()
    watch = watch or HackingWatch()
    result = OnlineResult(agent)
    iteration, kl_coef = 0, config.kl_coef
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        agent.load_state_dict(state["agent"])
        initial.load_state_dict(state["initial"])
        optimiser.load_state_dict(state["optimiser"])
        iteration, kl_coef = state["iteration"], state["kl_coef"]
        result.episodes_used, result.resumed_from = state["episodes_used"], iteration
        result.history = json.loads(state["history"])
        log(f"{name}: resumed after iteration {iteration} ({result.episodes_used} episodes used)")
    while result.episodes_used < config.episodes:
        started = time.perf_counter()
        seed = iteration_seed(config, iteration)
        n = min(config.episodes_per_iteration, config.episodes - result.episodes_used)
        episodes = collect_episodes(envs, agent, n, seed=seed, generator=torch.Generator().manual_seed(seed), record=record,
                                    obs_index=obs_index)  # fmt: skip
        collect_seconds = time.perf_counter() - started
        critic = agent.value if agent.has_value else None
        batch = build_batch(episodes, critic, gamma=config.gamma, lam=lam, reward_scale=config.reward_scale)
        t0 = time.perf_counter()
        # Updates run in eval mode too: an actor that starts as Phase 1's network has dropout and BatchNorm,
        # and the probabilities it is updated through must be the ones it drew its actions from.
        if iteration == 0 and config.critic_warmup_epochs > 0 and agent.has_value:
            losses = warm_up_critic(agent, batch, config)
        else:
            losses = update(agent, batch, optimiser, initial, config, kl_coef)
        learn_seconds = time.perf_counter() - t0
        bad = [k for k, v in losses.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad or not all(torch.isfinite(p).all() for p in agent.parameters()):
            # Stop before the checkpoint: the last one on disk holds the weights from before this update.
            raise FloatingPointError(f"{name} iteration {iteration}: non-finite {', '.join(bad) or 'weights'} after the "
                                     f"update; the last checkpoint ({ckpt or 'none'}) is the state before it")  # fmt: skip
        result.episodes_used += len(episodes)
        behaviour = episode_behaviour(episodes)
        row = {"iteration": iteration, "episodes_used": result.episodes_used, "mean_return": float(np.mean([e.total_return for e in episodes])),
               "steps": int(sum(len(e) for e in episodes)), "collect_seconds": collect_seconds, "learn_seconds": learn_seconds,
               "steps_per_second": sum(len(e) for e in episodes) / max(collect_seconds, 1e-9),
               "learner_share": learn_seconds / max(collect_seconds + learn_seconds, 1e-9), "kl_coef": kl_coef,
               **losses, **behaviour}  # fmt: skip
        result.history.append(row)
        result.alerts = watch.check(row)
        log(f"{name} it {iteration}: {result.episodes_used}/{config.episodes} episodes, return {row['mean_return']:+.2f}, "
            f"{row['steps_per_second']:.1f} steps/s, learner {100 * row['learner_share']:.1f}%"
            + (f"; ALERT {'; '.join(result.alerts)}" if result.alerts else ""))  # fmt: skip
        iteration += 1
        kl_coef *= config.kl_decay
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".partial")
            torch.save({"agent": agent.state_dict(), "initial": initial.state_dict(), "optimiser": optimiser.state_dict(),
                        "iteration": iteration, "kl_coef": kl_coef, "episodes_used": result.episodes_used,
                        "history": json.dumps(result.history)}, tmp)  # fmt: skip
            tmp.replace(ckpt)  # a crash while saving leaves the previous checkpoint whole
        if on_iteration:
            on_iteration(row)
    return result


def warm_up_critic(agent, batch, config: OnlineConfig) -> dict:
    """Fit only the critic to the initial policy's returns (the actor does not move)."""
    optimiser = torch.optim.Adam(agent.critic.parameters(), lr=config.learning_rate * 3, foreach=True)
    for _ in range(config.critic_warmup_epochs):
        loss = torch.nn.functional.mse_loss(agent.value(batch.obs), batch.returns)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return {"value_loss": float(loss.detach()), "warmup": 1.0}


def policy_gradient_update(agent, batch, optimiser, initial, config, kl_coef: float) -> dict:
    """One vanilla policy-gradient step on a batch whose advantages are filled in (REINFORCE: return - V;
    A2C: GAE): -log pi(a|s) A, the critic regressed on the returns, the regularisers."""
    adv = batch.advantages
    if config.normalise_advantages and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -(agent.log_prob(batch.obs, batch.masks, batch.actions) * adv).mean()
    value_loss = torch.nn.functional.mse_loss(agent.value(batch.obs), batch.returns)
    extra, parts = regularisers(agent, initial, batch.obs, batch.masks, config, kl_coef)
    clip_and_step(agent, optimiser, policy_loss + config.value_coef * value_loss + extra, config)
    return {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()), **parts}


def clip_and_step(agent, optimiser, loss, config: OnlineConfig) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
    optimiser.step()
