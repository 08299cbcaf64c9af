"""Generation speed: seconds per 25-epoch digits episode on one core, the cost of the full telemetry over
bare training, and the throughput of 2 worker processes against 1.

    .venv/bin/python benchmarks/bench_generation.py [--repeats 5] [--episodes 8]

Targets (issue 2): <= 5 s per episode, telemetry overhead <= 15%, 2 workers >= 1.7x one.
Prints medians of several runs and the machine they ran on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch
from _common import machine  # benchmarks/_common.py (the script's folder is on sys.path)

from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.episodes.generation import generate
from tamiyo_models.world.datasets import DatasetConfig, load_task_data
from tamiyo_models.world.telemetry import TelemetryConfig


def episode_seconds(config: EpisodeConfig, out: str) -> float:
    t0 = time.perf_counter()
    run_episode(config, out)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per throughput batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_task_data(DatasetConfig())  # warm the dataset cache: we time episodes, not the first file read

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        full, bare = [], []
        for r in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            full.append(episode_seconds(EpisodeConfig(seed=r), f"{tmp}/full"))
            bare.append(episode_seconds(EpisodeConfig(seed=r, telemetry=TelemetryConfig(enabled=False)), f"{tmp}/bare"))
        full_med, bare_med = statistics.median(full), statistics.median(bare)
        rows.append(("25-epoch digits episode, 1 core, full telemetry", f"{full_med:.2f} s", "<= 5 s", full_med <= 5))
        rows.append(("same, telemetry off (baseline)", f"{bare_med:.2f} s", "", None))
        overhead = full_med / bare_med - 1
        rows.append(("telemetry overhead (full / bare - 1)", f"{100 * overhead:+.1f}%", "<= 15%", overhead <= 0.15))

        configs = [EpisodeConfig(seed=100 + i) for i in range(args.episodes)]
        one, two = [], []
        for r in range(max(1, args.repeats // 2)):
            t0 = time.perf_counter()
            generate(configs, f"{tmp}/w1-{r}", workers=1)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            generate(configs, f"{tmp}/w2-{r}", workers=2)
            two.append(time.perf_counter() - t0)
        one_med, two_med = statistics.median(one), statistics.median(two)
        rows.append((f"{args.episodes} episodes, 1 worker", f"{one_med:.1f} s", "", None))
        rows.append((f"{args.episodes} episodes, 2 workers (incl. process start-up)", f"{two_med:.1f} s", "", None))
        speedup = one_med / two_med
        rows.append(("throughput 2 workers / 1 worker", f"{speedup:.2f}x", ">= 1.7x", speedup >= 1.7))

    print(f"machine: {machine()}")
    print(f"repeats: {args.repeats} (medians)\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'target':>8}  met")
    for name, value, target, met in rows:
        print(f"{name:<{width}}  {value:>10}  {target:>8}  {'' if met is None else ('yes' if met else 'NO')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
