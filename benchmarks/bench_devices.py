"""Episodes per hour on the research system's CIFAR host, by where they run: a GPU shared by several episodes,
every CPU core of the machine, and 2 CPU workers (this project's development VM, the baseline).

    .venv/bin/python benchmarks/bench_devices.py [--dataset synthetic-cifar] [--widths 32,64,128]
        [--epochs 2] [--repeats 3] [--gpu-workers 1,2,4,8] [--cpu-workers 2,all]

Each setting runs a batch of episodes (two per worker, `--episodes` at least) with `generate`, the
same path `tamiyo generate --device ... --workers N` takes, and reports the median over `--repeats` batches of
episodes per hour, and its ratio to 2 CPU workers measured in the same run. The default data is
`synthetic-cifar` (CIFAR's shape and size, 3x32x32, 5,000 training images, no files needed); pass
`--dataset imagefolder:PATH` or `cifar10` to time real images. The controller grafts conv_heavy at epoch 1,
so the timed episodes carry a seed, as the interesting ones do. Without a CUDA GPU the GPU rows say so.
`--repeats 1` gives a quick look.

Issue 35 asks for this table from a machine with a GPU where one is lent; the measure has no target, so the
"target" column is empty.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from _common import machine, print_table  # benchmarks/_common.py (the script's folder is on sys.path)

from tamiyo_models.controllers import reference_controller
from tamiyo_models.episodes.episode import EpisodeConfig, check_device
from tamiyo_models.episodes.generation import generate
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.telemetry import TelemetryConfig


def batch(args: argparse.Namespace, device: str, workers: int, repeat: int) -> list[EpisodeConfig]:
    # At least 2 episodes per worker: each batch starts its own pool, so a worker's start (the data, CUDA's context)
    # is paid once per batch and should not be most of what is timed.
    count = max(args.episodes, 2 * workers)
    base = EpisodeConfig(
        dataset=DatasetConfig(name=args.dataset, train_subsample=args.train_subsample),
        host=HostConfig(widths=args.widths),
        controller=reference_controller("fixed:conv_heavy@1"),
        max_epochs=args.epochs,
        lr_schedule="cosine",
        telemetry=TelemetryConfig(enabled=True),
        device=device,
    )
    return [EpisodeConfig.from_dict({**base.to_dict(), "seed": 1000 * repeat + i}) for i in range(count)]


def episodes_per_hour(args: argparse.Namespace, device: str, workers: int, tmp: str) -> list[float]:
    rates = []
    for repeat in range(args.repeats):
        configs = batch(args, device, workers, repeat)
        t0 = time.perf_counter()
        results = generate(configs, f"{tmp}/{device.replace(':', '-')}-{workers}-{repeat}", workers=workers)
        seconds = time.perf_counter() - t0
        failed = [r for r in results if r.status != "complete"]
        if failed:
            raise SystemExit(f"bench_devices: {len(failed)} episode(s) failed on {device}: {failed[0].error}")
        rates.append(3600 * len(configs) / seconds)
        print(f"  {device} x{workers} workers, batch {repeat + 1}: {len(configs)} episodes in {seconds:.1f} s",
              file=sys.stderr)  # fmt: skip
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic-cifar")
    parser.add_argument("--train-subsample", type=int, default=None, help="training images kept (default: all)")
    parser.add_argument("--widths", default="32,64,128", type=lambda s: tuple(int(w) for w in s.split(",")))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per episode (default 2)")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per batch at least, and 2 per worker (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="batches per setting; the median is quoted (default 3)")
    parser.add_argument("--gpu-workers", default="1,2,4,8", help="episodes sharing one GPU at once (default 1,2,4,8)")
    parser.add_argument("--cpu-workers", default="2,all", help="CPU worker processes; all = every usable core (default 2,all)")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    cpu_workers = sorted({cores if w == "all" else int(w) for w in args.cpu_workers.split(",")} | {2})
    try:
        check_device("cuda", available=True)
        gpu = torch.cuda.get_device_name(0)
    except ValueError as exc:
        gpu = None
        why = str(exc)

    measured: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in cpu_workers:
            measured[f"cpu, {workers} worker{'s' if workers > 1 else ''}" + (" (every core)" if workers == cores else "")] = statistics.median(
                episodes_per_hour(args, "cpu", workers, tmp))  # fmt: skip
        if gpu:
            for workers in (int(w) for w in args.gpu_workers.split(",")):
                measured[f"cuda ({gpu}), {workers} episodes sharing it"] = statistics.median(
                    episodes_per_hour(args, "cuda", workers, tmp))  # fmt: skip

    baseline = measured["cpu, 2 workers" + (" (every core)" if cores == 2 else "")]
    print(f"machine: {machine()}")
    print(f"task: {args.dataset}, host {args.widths}, {args.epochs} epochs, fixed:conv_heavy@1; "
          f"median of {args.repeats} batches")  # fmt: skip
    rows = []
    for name, rate in measured.items():
        rows.append((f"episodes per hour, {name}", f"{rate:.0f}", "", None))
        rows.append(("  ratio to 2 CPU workers", f"{rate / baseline:.2f}x", "", None))
    print_table(rows)
    if not gpu:
        print(f"GPU rows not measured: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
