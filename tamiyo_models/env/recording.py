"""`RecordRawRun`: write every episode an agent plays in `TamiyoEnv` as a raw run, like the generator's.

A wrapper rather than part of the environment, so an online learner can play without touching the disk, or
with every rollout landing in the warehouse's landing folder (and Phase 3 learning from it the next night).

The behaviour distribution: before a step, the agent may say what distribution its action was drawn from
(`set_behaviour(probabilities)`, or on a vector env `envs.set_attr("next_behaviour", [...])`, which Gymnasium
1.0 delivers to the innermost environment: the value is kept on TamiyoEnv, where this wrapper reads it). Then the step
logs those probabilities, the propensity mu(a|s) of the action taken and `stochastic=True`; without it the
action is logged as a deterministic choice (one-hot, `stochastic=False`), so off-policy estimators never
mistake a greedy action for a draw. An illegal action the environment replaced by WAIT is logged as what
happened (WAIT, one-hot) with the request kept in `illegal_requested`.
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from ..episodes.episode import EpisodeResult, run_footer, run_header, step_record
from ..world.actions import ALL_ACTIONS
from ..world.rawrun import RawRunWriter


class RecordRawRun(gym.Wrapper):
    def __init__(self, env: gym.Env, out_dir: str | Path):
        super().__init__(env)
        self.out_dir = Path(out_dir)
        self.writer: RawRunWriter | None = None
        self.next_reason = ""
        self.results: list[EpisodeResult] = []  # every finished run, in order
        self._started = 0.0

    def set_behaviour(self, probabilities, reason: str = "") -> None:
        """The distribution the agent's next action is drawn from (over the env's actions, zero on illegal ones)."""
        self.env.unwrapped.next_behaviour, self.next_reason = probabilities, reason

    def reset(self, **kwargs):
        self._finish("truncated")  # a reset in the middle of an episode ends it
        obs, info = self.env.reset(**kwargs)
        base = self.env.unwrapped
        self.writer = RawRunWriter(self.out_dir, base.episode.run_id)
        self.writer.write_header(run_header(base.config, base.episode, base.episode.run_id,
                                            {"name": base.agent, "kind": "agent", "feature_set": base.feature_set}))  # fmt: skip
        self._started = time.perf_counter()
        info["raw_run"] = str(self.writer.path)
        return obs, info

    def step(self, action):
        if self.writer is None:
            raise RuntimeError("call reset() before step()")
        base = self.env.unwrapped
        probabilities, reason = base.next_behaviour, self.next_reason
        base.next_behaviour, self.next_reason = None, ""
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        t = base.last_transition
        record = self._action_record(t, probabilities, reason, base.agent)
        self.writer.write_step(step_record(t["record"], t["features"], record, t["outcome"],
                                           {"step_seconds": time.perf_counter() - t0, **t["timing"]}))  # fmt: skip
        if terminated or truncated:
            info["raw_run"] = str(self.writer.path)
            self._finish("complete" if terminated else "truncated")
        return obs, reward, terminated, truncated, info

    def close(self):
        self._finish("truncated")
        return super().close()

    # ----- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _action_record(t: dict, probabilities, reason: str, agent: str) -> dict:
        action, legal = t["action"], t["legal"]
        # The run is the episode's: its host's action space (a prefix of the env's, which may cover more slots).
        names = ALL_ACTIONS[: len(legal)]
        record = {"fine": action.fine, "coarse": action.coarse, "blueprint": action.blueprint,
                  "legal": [a for a, ok in zip(names, legal) if ok], "controller": agent,
                  "greedy_fine": action.fine}  # fmt: skip
        if t["illegal"]:
            probabilities, reason = None, f"{ALL_ACTIONS[t['requested']]} requested but not legal: WAIT applied"
            record["illegal_requested"] = ALL_ACTIONS[t["requested"]]
        if probabilities is None:
            probs = [1.0 if i == action.index else 0.0 for i in range(len(names))]
            stochastic = False
        else:
            probs = [float(p) for p in np.asarray(probabilities, dtype=np.float64).reshape(-1)]
            if any(p > 1e-9 for p in probs[len(names):]):
                raise ValueError("behaviour probabilities give mass to actions of slots this host does not have")
            probs = probs[: len(names)]
            if len(probs) != len(names) or abs(sum(probs) - 1.0) > 1e-5 or any(p < 0 for p in probs):
                raise ValueError(f"behaviour probabilities must be {len(names)} non-negative numbers summing to 1, got {probs}")
            if any(p > 1e-9 and not ok for p, ok in zip(probs, legal)):
                raise ValueError("behaviour probabilities give mass to illegal actions: mask them before drawing")
            if probs[action.index] <= 0:
                raise ValueError(f"behaviour probabilities give {action.fine}, the action taken, no mass")
            stochastic = sum(1 for p in probs if p > 0) > 1
        record.update(propensity=probs[action.index], probabilities=dict(zip(names, probs)),
                      stochastic=stochastic, reason=reason or ("sampled" if stochastic else "chosen"))  # fmt: skip
        return record

    def _finish(self, status: str) -> None:
        if self.writer is None:
            return
        base = self.env.unwrapped
        footer = run_footer(base.episode, status, None, base.steps, base.episode_return, time.perf_counter() - self._started)
        self.writer.close(footer)
        self.results.append(EpisodeResult.from_footer(self.writer.path, base.episode.run_id, footer))
        self.writer = None
