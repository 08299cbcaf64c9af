"""The Gymnasium environment's speed: environment steps per second with 1 and 2 worker processes
(AsyncVectorEnv), and its overhead over the bare episode runner on the same configurations.

    .venv/bin/python benchmarks/bench_env.py [--repeats 3] [--episodes 8]

Targets (issue 11): 2 workers >= 1.7x the steps per second of 1; the environment (TamiyoEnv stepped by the
heuristic, as an agent would) <= 5% slower than run_episode. Medians of several runs, interleaved so that
changes in machine load hit both sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from _common import machine, print_table  # benchmarks/_common.py (the script's folder is on sys.path)

from tamiyo_models.controllers import HeuristicController, Observation
from tamiyo_models.env import TamiyoEnv, make_vector_env
from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.world.datasets import DatasetConfig, load_task_data

EPOCHS = 25


def runner_seconds(configs, out) -> float:
    t0 = time.perf_counter()
    for c in configs:
        run_episode(c, out)
    return time.perf_counter() - t0


def env_seconds(configs) -> float:
    env = TamiyoEnv(configs[0])
    t0 = time.perf_counter()
    for c in configs:
        env.reset(options={"config": c})
        agent = HeuristicController()
        agent.reset(env.episode.controller_rng)
        done = False
        while not done:
            record, features, legal = env._state
            action = agent.decide(Observation(record, features, legal)).action.index
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return time.perf_counter() - t0


def vector_steps_per_second(workers: int, episodes: int, seed: int) -> float:
    envs = make_vector_env(workers, config=EpisodeConfig(max_epochs=EPOCHS))
    envs.reset(seed=seed)
    steps, t0 = 0, time.perf_counter()
    rounds = episodes * EPOCHS // workers
    for _ in range(rounds):  # WAIT whenever legal: the host's training is the cost being measured
        envs.step(np.zeros(workers, dtype=np.int64))
        steps += workers
    seconds = time.perf_counter() - t0
    envs.close()
    return steps / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_task_data(DatasetConfig())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bare, wrapped = [], []
        for r in range(args.repeats):
            configs = [EpisodeConfig(seed=1000 * r + i, max_epochs=EPOCHS) for i in range(args.episodes)]
            bare.append(runner_seconds(configs, f"{tmp}/runner-{r}"))
            wrapped.append(env_seconds(configs))
        overhead = statistics.median(w / b for w, b in zip(wrapped, bare)) - 1
        rows.append((f"{args.episodes} episodes, run_episode (baseline)", f"{statistics.median(bare):.1f} s", "", None))
        rows.append((f"{args.episodes} episodes, TamiyoEnv + heuristic agent", f"{statistics.median(wrapped):.1f} s", "", None))
        rows.append(("environment overhead over the runner", f"{100 * overhead:+.1f}%", "<= 5%", overhead <= 0.05))
    one, two = [], []
    for r in range(args.repeats):
        one.append(vector_steps_per_second(1, args.episodes, r))
        two.append(vector_steps_per_second(2, args.episodes, r))
    ratio = statistics.median(t / o for t, o in zip(two, one))
    rows.append(("env steps/s, 1 worker (AsyncVectorEnv)", f"{statistics.median(one):.1f}", "", None))
    rows.append(("env steps/s, 2 workers", f"{statistics.median(two):.1f}", "", None))
    rows.append(("2 workers / 1 worker", f"{ratio:.2f}x", ">= 1.7x", ratio >= 1.7))
    print(f"machine: {machine()}")
    print_table(rows, f"repeats: {args.repeats} (medians); digits, host (2,4,8), {EPOCHS} epochs per episode\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
