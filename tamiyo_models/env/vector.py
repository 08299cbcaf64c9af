"""Several TamiyoEnv episodes at once: `gymnasium.vector.AsyncVectorEnv` over worker processes, one torch
thread each (parallelism comes from processes, as in the generator), or `SyncVectorEnv` in-process."""

from __future__ import annotations

import functools
from pathlib import Path

import gymnasium as gym

from .factory import make_env


def make_vector_env(num_envs: int, *, asynchronous: bool = True, record_dir: str | Path | None = None,
                    threads_per_env: int = 1, ray=None, **env_kwargs) -> gym.vector.VectorEnv:  # fmt: skip
    """`num_envs` environments built with `env_kwargs` (TamiyoEnv's arguments), each optionally recording its
    raw runs into `record_dir`. Asynchronous envs run in forkserver processes (a forked copy of a process that
    ran torch threads can deadlock); with `ray` (a `distributed.RayConfig`) each runs in a Ray actor on that
    cluster instead (`ray_vector.RayVectorEnv`). Reset with `seed=s` seeds env i with s + i."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if ray is not None:
        from .ray_vector import RayVectorEnv

        threads = max(threads_per_env, int(ray.cpus_per_episode))  # as many torch threads as CPUs reserved
        return RayVectorEnv(num_envs, dict(env_kwargs), ray_config=ray, record_dir=record_dir, threads=threads)
    factory = functools.partial(make_env, dict(env_kwargs), str(record_dir) if record_dir else None, threads_per_env)
    fns = [factory] * num_envs
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context="forkserver")
    return gym.vector.SyncVectorEnv(fns)
