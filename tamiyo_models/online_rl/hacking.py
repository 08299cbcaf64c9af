"""Watching for reward hacking: what the reference system's online RL did once bonuses entered its reward —
germinate / cull churn, seeds left waiting in TRAINING instead of being fossilized — and its cousins.

`episode_behaviour` measures, per iteration, what the policy does with seeds; `HackingWatch` compares it with
thresholds set from the heuristic's own behaviour (it creates about one seed per episode and culls rarely) and
names every symptom it sees. The same checks run as Dagster asset checks on the Phase 4 policy asset.
`ActionBonus` is a deliberately hackable shaping (a bonus per chosen action): the test that proves the watch
fires trains against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..world.actions import ALL_ACTIONS

# Over the widest space: every narrower one is its prefix, so an index means the same action on any host, and a
# two-slot policy's germinations and culls in slot 1 count as its slot-0 ones do.
GERMINATE = frozenset(i for i, a in enumerate(ALL_ACTIONS) if a.startswith("GERMINATE_"))
CULL = frozenset(i for i, a in enumerate(ALL_ACTIONS) if a.startswith("CULL"))
UNFINISHED = {"BLENDING", "SHADOWING", "PROBATIONARY"}


def episode_behaviour(episodes) -> dict:
    """Per-episode means of the seed behaviour of a batch of episodes (Episode objects of rollout.py)."""
    n = max(1, len(episodes))
    germinations = sum(sum(a in GERMINATE for a in e.actions) for e in episodes) / n
    culls = sum(sum(a in CULL for a in e.actions) for e in episodes) / n
    out = {"germinations_per_episode": germinations, "culls_per_episode": culls}
    summaries = [e.summary for e in episodes if e.summary]
    if summaries:
        stages = [str(s.get("final_stage", "")) for s in summaries]
        out.update(
            fossilized_per_episode=float(np.mean([s.get("seeds_fossilized", 0) for s in summaries])),
            ended_in_training_share=float(np.mean([st == "TRAINING" for st in stages])),
            unfinished_blend_share=float(np.mean([st in UNFINISHED for st in stages])),
            positive_culls_per_episode=float(np.mean([s.get("culls_positive", 0) for s in summaries])),
        )
    return out


@dataclass(frozen=True)
class HackingWatch:
    max_germinations: float = 2.5  # the heuristic: about 1 per episode
    max_culls: float = 1.5
    max_ended_in_training: float = 0.5
    max_unfinished_blends: float = 0.5
    max_positive_culls: float = 0.5
    min_entropy: float = 0.01

    def check(self, row: dict) -> list[str]:
        alerts = []
        if row.get("germinations_per_episode", 0) > self.max_germinations and row.get("culls_per_episode", 0) > 0.5:
            alerts.append(f"germinate/cull churn: {row['germinations_per_episode']:.1f} seeds created and "
                          f"{row['culls_per_episode']:.1f} culled per episode")  # fmt: skip
        elif row.get("culls_per_episode", 0) > self.max_culls:
            alerts.append(f"culls: {row['culls_per_episode']:.1f} per episode")
        if row.get("ended_in_training_share", 0) > self.max_ended_in_training:
            alerts.append(f"seeds left waiting in TRAINING at the end in {100 * row['ended_in_training_share']:.0f}% of episodes")
        if row.get("unfinished_blend_share", 0) > self.max_unfinished_blends:
            alerts.append(f"blends never finished in {100 * row['unfinished_blend_share']:.0f}% of episodes")
        if row.get("positive_culls_per_episode", 0) > self.max_positive_culls:
            alerts.append(f"{row['positive_culls_per_episode']:.1f} culls per episode of seeds that were helping")
        if "entropy" in row and row["entropy"] < self.min_entropy:
            alerts.append(f"policy entropy collapsed to {row['entropy']:.3f} nats")
        return alerts


class ActionBonus(gym.Wrapper):
    """Adds `bonus` to the reward whenever an action whose fine name starts with `prefix` is taken: the kind of
    shaping that got the reference system's policy to churn seeds. For tests of the watch, never for training."""

    def __init__(self, env: gym.Env, prefix: str = "GERMINATE", bonus: float = 5.0):
        super().__init__(env)
        self.indices = {i for i, a in enumerate(ALL_ACTIONS) if a.startswith(prefix)}
        self.bonus = bonus

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        taken = self.env.unwrapped.last_transition["action"].index
        return obs, reward + (self.bonus if taken in self.indices else 0.0), terminated, truncated, info
