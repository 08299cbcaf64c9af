"""One environment as a vector worker builds it (in a forkserver process or a Ray actor): its own torch
thread budget, and the raw-run recorder around it when runs are kept."""

from __future__ import annotations

import gymnasium as gym


def make_env(env_kwargs: dict, record_dir: str | None, threads: int) -> gym.Env:
    import torch

    from .recording import RecordRawRun
    from .tamiyo_env import TamiyoEnv

    torch.set_num_threads(threads)
    env = TamiyoEnv(**env_kwargs)
    return RecordRawRun(env, record_dir) if record_dir else env
