"""What every benchmark prints: the machine it ran on (and how busy it was), and a table of measures with
their targets. Benchmarks quote medians of several runs, as ratios against a baseline measured in the same run."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{platform.node()} | {cpu} | {len(os.sched_getaffinity(0))} usable cores | load average {load} | "
            f"torch {torch.__version__} | Python {platform.python_version()}")  # fmt: skip


def print_table(rows: list[tuple[str, str, str, bool | None]], header: str = "") -> None:
    """rows: (measure, value, target, met or None)."""
    if header:
        print(header)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  {'target':>9}  met")
    for name, value, target, met in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>9}  {'' if met is None else ('yes' if met else 'NO')}")
