"""Online rollouts on a Ray cluster: a Gymnasium vector environment whose sub-environments are Ray actors.

`make_vector_env(..., ray=RayConfig(address))` (and `tamiyo train phase4 --ray-address ...`, and the
`phase4_online_policy` asset's `ray_address`) land here; the learner does not change. Each sub-environment is a
TamiyoEnv (wrapped by RecordRawRun when recording) living in one Ray actor that reserves `cpus_per_episode`
CPUs and `gpus_per_episode` GPUs; a step sends every actor its action at once and waits for all of them, so
the environments train their hosts in parallel wherever Ray placed them.

The semantics are exactly those of Gymnasium 1.0's own vector environments (next-step autoreset: the call after
an episode ends resets that sub-environment, ignores its action and returns reward 0), and reset(seed=s) seeds
sub-environment i with s + i, so the same seeds give the same rollouts as `AsyncVectorEnv` (tested).

What a cluster needs is what Ray generation needs (docs/scaling.md): the same environment on every node, the
datasets under the same root, and a record folder every node sees at the same path. An actor that dies
(its node lost) is not restarted: the step raises, naming the sub-environment, and the online learner resumes
from its last checkpoint when rerun.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array


class _RemoteEnv:
    """The body of one Ray actor: a sub-environment and the calls the vector environment makes on it."""

    def __init__(self, env_kwargs: dict, record_dir: str | None, threads: int):
        from .factory import make_env

        self.env = make_env(env_kwargs, record_dir, threads)

    def spaces(self):
        return self.env.observation_space, self.env.action_space

    def reset(self, seed: int | None, options: dict | None):
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        return self.env.step(action)

    def set_attr(self, name: str, value: Any) -> None:
        self.env.set_wrapper_attr(name, value)

    def call(self, name: str, args: tuple, kwargs: dict):
        attr = self.env.get_wrapper_attr(name)
        return attr(*args, **kwargs) if callable(attr) else attr

    def close(self) -> None:
        self.env.close()


class RayVectorEnv(gym.vector.VectorEnv):
    def __init__(self, num_envs: int, env_kwargs: dict, *, ray_config, record_dir: str | None = None, threads: int = 1):
        from ..episodes.distributed import ray_session

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self._stack = ExitStack()
        ray = self._ray = self._stack.enter_context(ray_session(ray_config.address))
        try:
            actor = ray.remote(num_cpus=ray_config.cpus_per_episode, num_gpus=ray_config.gpus_per_episode,
                               max_restarts=0)(_RemoteEnv)  # fmt: skip
            # Absolute: a relative path would be resolved against each actor's own working directory.
            record = str(Path(record_dir).resolve()) if record_dir else None
            self.actors = [actor.remote(dict(env_kwargs), record, threads) for _ in range(num_envs)]
            obs_space, action_space = self._get([self.actors[0].spaces.remote()])[0]
        except BaseException:
            self._stack.close()
            raise
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = obs_space, action_space
        self.observation_space = batch_space(obs_space, num_envs)
        self.action_space = batch_space(action_space, num_envs)
        self._observations = create_empty_array(obs_space, n=num_envs, fn=np.zeros)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._closed_actors = False

    def _get(self, refs: list) -> list:
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"a Ray sub-environment died ({type(exc).__name__}: {exc}); rerun to resume from "
                               "the last checkpoint") from exc  # fmt: skip

    def _gather(self, results: list) -> tuple[np.ndarray, dict]:
        infos: dict = {}
        for i, (_, info) in enumerate(results):
            infos = self._add_info(infos, info, i)
        self._observations = concatenate(self.single_observation_space, [r[0] for r in results], self._observations)
        return np.copy(self._observations), infos

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        seeds = [None] * self.num_envs if seed is None else [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
        results = self._get([a.reset.remote(s, options) for a, s in zip(self.actors, seeds)])
        self._autoreset[:] = False
        return self._gather(results)

    def step(self, actions):
        refs = [a.reset.remote(None, None) if self._autoreset[i] else a.step.remote(np.asarray(actions[i]).item())
                for i, a in enumerate(self.actors)]  # fmt: skip
        results = self._get(refs)
        rewards, terminated, truncated = np.zeros(self.num_envs), np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        pairs = []
        for i, result in enumerate(results):
            if self._autoreset[i]:  # this call reset env i: its action was ignored and nothing happened
                pairs.append(result)
            else:
                obs, rewards[i], terminated[i], truncated[i], info = result
                pairs.append((obs, info))
        self._autoreset = terminated | truncated
        observations, infos = self._gather(pairs)
        return observations, rewards, terminated, truncated, infos

    def set_attr(self, name: str, values) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr {name!r}: {len(values)} values for {self.num_envs} environments")
        self._get([a.set_attr.remote(name, v) for a, v in zip(self.actors, values)])

    def call(self, name: str, *args, **kwargs) -> tuple:
        return tuple(self._get([a.call.remote(name, args, kwargs) for a in self.actors]))

    def get_attr(self, name: str) -> tuple:
        return self.call(name)

    def close_extras(self, **kwargs) -> None:
        try:
            if not self._closed_actors:
                self._closed_actors = True
                try:
                    self._ray.get([a.close.remote() for a in self.actors])  # finishes the record files
                except self._ray.exceptions.RayError:
                    pass  # a dead actor has nothing left to close
                for a in self.actors:
                    self._ray.kill(a)
        finally:
            self._stack.close()
