"""Cost of branching: snapshot + restore of a whole episode as a share of one training epoch.

    .venv/bin/python benchmarks/bench_branching.py [--repeats 20]

Target (issue 4): snapshot + restore <= 5% of one epoch. Measured on the default digits host and on a
reference-size host (widths 32-64-128) on synthetic 8x8 data, with a TRAINING seed in the slot (the most
state to copy: host, seed, two optimisers). Prints medians and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

from tamiyo_models.episodes.branching import restore, take_snapshot
from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeRun
from tamiyo_models.world.actions import germinate
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_generation import machine  # noqa: E402


def measure(config: EpisodeConfig, repeats: int, tmp: str) -> tuple[float, float, float]:
    run = EpisodeRun(config, f"{tmp}/parent")
    run.step()
    run.step(forced_action=germinate("conv_heavy"))
    epochs, snapshots, restores = [], [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        snapshot = take_snapshot(run)
        t1 = time.perf_counter()
        branch = restore(snapshot, f"{tmp}/branch", f"b{i}", {})
        restores.append(time.perf_counter() - t1)
        snapshots.append(t1 - t0)
        t0 = time.perf_counter()
        branch.episode.train_epoch()
        branch.episode.measure()
        epochs.append(time.perf_counter() - t0)
        branch.writer.close({"status": "complete"})
    return statistics.median(snapshots), statistics.median(restores), statistics.median(epochs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {
        "digits, host 2-4-8 (default)": EpisodeConfig(max_epochs=50),
        "synthetic, host 32-64-128 (reference size)": EpisodeConfig(
            dataset=DatasetConfig(name="synthetic"), host=HostConfig(widths=(32, 64, 128)), max_epochs=50
        ),
    }
    print(f"machine: {machine()}\nrepeats: {args.repeats} (medians)\n")
    print(f"{'case':<44} {'snapshot':>9} {'restore':>9} {'one epoch':>10} {'snap+restore':>13} {'per branch':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in cases.items():
            snap, rest, epoch = measure(config, args.repeats, tmp)
            print(
                f"{name:<44} {1e3 * snap:>6.2f} ms {1e3 * rest:>6.2f} ms {1e3 * epoch:>7.1f} ms "
                f"{100 * (snap + rest) / epoch:>12.1f}% {100 * rest / epoch:>10.1f}%"
            )
    print("\nsnap+restore: a stand-alone snapshot and one restore, as a share of one epoch (target <= 5%).")
    print("per branch: one restore; run_with_branches takes one snapshot per fork and one restore per branch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
