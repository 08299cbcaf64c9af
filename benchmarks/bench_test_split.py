"""The cost of scoring the test split: seconds spent evaluating the test split per episode, as a share of the
episode, on the default digits task and (when its files are here) the arena's Fashion-MNIST regime.

    .venv/bin/python benchmarks/bench_test_split.py [--repeats 5]

Target (issue 10): <= 5% with the default score_epochs = 1. The share is read from each step's own timing
(`timing.test_seconds` over the sum of `timing.step_seconds`), so machine load hits numerator and denominator
alike; medians over episodes of different seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import torch
from _common import machine, print_table  # benchmarks/_common.py (the script's folder is on sys.path)

from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.world.datasets import DatasetConfig, dataset_unavailable, load_task_data
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.rawrun import read_raw_run


def share(config: EpisodeConfig, out: str) -> float:
    run = read_raw_run(run_episode(config, out).path)
    total = sum(s["timing"]["step_seconds"] for s in run.steps)
    return sum(s["timing"].get("test_seconds", 0.0) for s in run.steps) / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = {"digits, host (2,4,8), 25 epochs": EpisodeConfig()}
    fashion = DatasetConfig(name="fashion-mnist", train_subsample=3000, val_subsample=2000)
    if dataset_unavailable(fashion) is None:
        tasks["Fashion-MNIST 3,000 / val 2,000 / test 10,000, host (4,8,16), 30 epochs"] = EpisodeConfig(
            dataset=fashion, host=HostConfig(widths=(4, 8, 16)), max_epochs=30)
    else:
        print(f"Fashion-MNIST skipped: {dataset_unavailable(fashion)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, base in tasks.items():
            load_task_data(base.dataset)  # the first read of the files is not part of an episode
            for k in (1, 3):
                shares = [share(EpisodeConfig.from_dict({**base.to_dict(), "seed": r, "score_epochs": k}), f"{tmp}/{k}")
                          for r in range(args.repeats)]  # fmt: skip
                value = statistics.median(shares)
                target = "<= 5%" if k == 1 else ""
                rows.append((f"{name}: score_epochs={k}", f"{100 * value:.2f}%", target, value <= 0.05 if k == 1 else None))
    print(f"machine: {machine()}")
    print_table(rows, f"repeats: {args.repeats} episodes per row (medians of the test-scoring share of episode time)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
