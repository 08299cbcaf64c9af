"""Collecting whole episodes from a vector environment with the current policy, and the returns and
advantages every online learner computes from them.

The vector environment is Gymnasium's (`AsyncVectorEnv` over worker processes for TamiyoEnv; any
`gymnasium.vector.VectorEnv` whose infos carry `action_mask` works). Gymnasium 1.0 resets a finished
sub-environment on the *next* `step` call and ignores the action given there; those reset steps are not
transitions and are skipped here. Actions are drawn from the policy's masked distribution with the learner's
own generator; when the environments record raw runs (RecordRawRun), the distribution each action was drawn
from is sent along first, so the warehouse's propensities are the probabilities actually sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Episode:
    obs: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    log_probs: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminated: bool = False
    final_obs: np.ndarray | None = None  # the state after the last step (bootstrapped from when truncated)
    summary: dict = field(default_factory=dict)  # the environment's episode summary, when it gives one

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def total_return(self) -> float:
        return float(sum(self.rewards))


@dataclass
class Batch:
    """Every step of a set of episodes, flattened, with per-step returns and advantages filled in later."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    returns: torch.Tensor
    advantages: torch.Tensor
    values: torch.Tensor
    episodes: list[Episode]


def _mask_from(info: dict, n_envs: int, n_actions: int) -> np.ndarray:
    mask = info.get("action_mask")
    if mask is None:
        return np.ones((n_envs, n_actions), dtype=bool)
    return np.asarray(mask, dtype=bool).reshape(n_envs, n_actions)


def collect_episodes(envs, policy, episodes: int, *, seed: int, generator: torch.Generator, record: bool = False,
                     obs_index: list[int] | None = None) -> list[Episode]:  # fmt: skip
    """Run the vector env until `episodes` whole episodes have finished (reset with `seed`: the episodes an
    iteration sees depend on its seed only, so a resumed run replays them exactly)."""
    n_envs = envs.num_envs
    n_actions = int(envs.single_action_space.n)
    obs, info = envs.reset(seed=seed)
    masks = _mask_from(info, n_envs, n_actions)
    current = [Episode() for _ in range(n_envs)]
    resetting = np.zeros(n_envs, dtype=bool)
    done: list[Episode] = []
    while len(done) < episodes:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if obs_index is not None:
            x = x[:, obs_index]
        m = torch.as_tensor(masks)
        with torch.no_grad():
            probs = policy.probabilities(x, m)
            actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        if record:
            envs.set_attr("next_behaviour", [p.numpy().astype(np.float64) for p in probs])
        next_obs, rewards, terminated, truncated, info = envs.step(actions.numpy())
        next_masks = _mask_from(info, n_envs, n_actions)
        for i in range(n_envs):
            if resetting[i]:  # this call reset env i; its action was ignored and nothing happened
                continue
            ep = current[i]
            ep.obs.append(x[i].numpy())
            ep.masks.append(masks[i])
            ep.actions.append(int(actions[i]))
            ep.log_probs.append(float(torch.log(probs[i, actions[i]])))
            ep.rewards.append(float(rewards[i]))
            if terminated[i] or truncated[i]:
                ep.terminated = bool(terminated[i])
                final = torch.as_tensor(np.asarray(next_obs[i], dtype=np.float32))
                ep.final_obs = (final[obs_index] if obs_index is not None else final).numpy()
                summary = info.get("episode_summary")
                if summary is not None and info.get("_episode_summary", np.ones(n_envs, bool))[i]:
                    ep.summary = {k: v[i] for k, v in summary.items()} if isinstance(summary, dict) else {}
                if len(done) < episodes:
                    done.append(ep)
                current[i] = Episode()
        resetting = np.asarray(terminated) | np.asarray(truncated)
        obs, masks = next_obs, next_masks
    return done


def returns_to_go(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    out = np.zeros(len(rewards))
    running = bootstrap
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def gae(rewards: np.ndarray, values: np.ndarray, last_value: float, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates of one episode (last_value: V of the state after the last step, 0 when
    the episode terminated)."""
    advantages = np.zeros(len(rewards))
    next_value, running = last_value, 0.0
    for t in range(len(rewards) - 1, -1, -1):
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
        next_value = values[t]
    return advantages


def build_batch(episodes: list[Episode], critic, *, gamma: float, lam: float | None, reward_scale: float = 1.0) -> Batch:
    """Flatten episodes. lam=None: Monte-Carlo returns (REINFORCE), advantage = return - V(s); otherwise GAE(lam)."""
    obs = torch.as_tensor(np.concatenate([np.stack(e.obs) for e in episodes]), dtype=torch.float32)
    with torch.no_grad():
        values = critic(obs).numpy() if critic is not None else np.zeros(len(obs))
        finals = [float(critic(torch.as_tensor(e.final_obs[None]))[0]) if critic is not None and not e.terminated else 0.0
                  for e in episodes]  # fmt: skip
    returns, advantages, start = [], [], 0
    for e, last in zip(episodes, finals):
        r = np.asarray(e.rewards) * reward_scale
        v = values[start : start + len(e)]
        g = returns_to_go(r, gamma, last)
        returns.append(g)
        advantages.append(g - v if lam is None else gae(r, v, last, gamma, lam))
        start += len(e)
    adv = np.concatenate(advantages)
    ret = np.concatenate(returns) if lam is None else adv + values
    return Batch(
        obs=obs,
        masks=torch.as_tensor(np.concatenate([np.stack(e.masks) for e in episodes]), dtype=torch.bool),
        actions=torch.as_tensor(np.concatenate([e.actions for e in episodes]), dtype=torch.long),
        log_probs=torch.as_tensor(np.concatenate([e.log_probs for e in episodes]), dtype=torch.float32),
        returns=torch.as_tensor(ret, dtype=torch.float32),
        advantages=torch.as_tensor(adv, dtype=torch.float32),
        values=torch.as_tensor(values, dtype=torch.float32),
        episodes=episodes,
    )
