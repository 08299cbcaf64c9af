"""`tamiyo transitions`: export the warehouse's transitions for offline RL (NumPy, Minari)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..world.features import FEATURE_SETS

    t = subparsers.add_parser(
        "transitions",
        help="export (s, a, r, s', legal(s'), terminated, truncated, mu) from the warehouse as .npz or a Minari dataset",
        description="Read every transition of complete and truncated runs (branch runs included) from the warehouse's "
        "rl_transitions view, with the observation features of s and s', and write them as a NumPy archive or a "
        "Minari dataset. Prints the dataset's summary and SHA-256 digest (what a training run records).",
    )
    t.add_argument("--warehouse", type=Path, default=Path("warehouse/tamiyo.duckdb"), help="the DuckDB warehouse")
    t.add_argument("--feature-set", default="base+lifecycle+task", choices=sorted(FEATURE_SETS),
                   help="observation features (default base+lifecycle+task)")  # fmt: skip
    t.add_argument("--format", choices=("npz", "minari"), default="npz", help="npz (default) or minari")
    t.add_argument("--out", type=Path, default=Path("var/transitions"),
                   help="npz: the file or folder to write; minari: the datasets root (MINARI_DATASETS_PATH)")  # fmt: skip
    t.add_argument("--dataset-id", default="tamiyo/warehouse-v0", help="Minari dataset id (namespace/name-vN)")
    t.add_argument("--overwrite", action="store_true", help="replace a Minari dataset of the same id")
    t.add_argument("--behaviours", default="", help="comma-separated controller labels or kinds to keep (default all)")
    t.add_argument("--regimes", default="", help="comma-separated arena regimes to keep (default all)")
    action_space_args(t)
    t.set_defaults(func=run_transitions)


def action_space_args(parser: argparse.ArgumentParser) -> None:
    """Which runs' action space the transitions take (hosts with 1 to 3 seed slots act in spaces of 8 to 22)."""
    parser.add_argument("--seed-slots", type=int, default=None, metavar="N",
                        help="only the runs of hosts with N seed slots (default: the warehouse's one action space; runs "
                        "of different spaces are refused together)")  # fmt: skip
    parser.add_argument("--mix-action-spaces", action="store_true",
                        help="put every run in the widest action space (the extra actions illegal, never drawn)")


def run_transitions(args: argparse.Namespace) -> int:
    from .dataset import load_transitions

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip()) or None  # noqa: E731
    try:
        data = load_transitions(args.warehouse, args.feature_set, behaviours=split(args.behaviours), regimes=split(args.regimes),
                                seed_slots=args.seed_slots, mix_action_spaces=args.mix_action_spaces)  # fmt: skip
        if args.format == "npz":
            path = args.out if args.out.suffix == ".npz" else args.out / "transitions.npz"
            written = data.save_npz(path)
        else:
            from .minari_export import to_minari

            written = to_minari(data, args.dataset_id, args.out, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo transitions: {exc}", file=sys.stderr)
        return 2
    summary = data.summary()
    print(f"{summary['transitions']} transitions in {summary['episodes']} runs ({summary['families']} families); "
          f"{summary['terminated']} terminated, {summary['truncated']} truncated; {summary['stochastic_share']:.0%} "
          f"of steps drawn at random (importance weights identified); behaviours: {', '.join(summary['behaviours'])}")  # fmt: skip
    print(f"sha256 {data.digest()}")
    print(f"written: {written}")
    return 0
