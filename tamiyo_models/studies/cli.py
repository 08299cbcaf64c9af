"""`tamiyo study run FILE`, `tamiyo study ship FILE ARM` and `tamiyo study results`: studies instead of scripts (study.py, ship.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_WAREHOUSE = Path("warehouse/tamiyo.duckdb")


def register(subparsers) -> None:
    study = subparsers.add_parser(
        "study",
        help="run a study file (claim, held-out configurations, arms, rule) or write the results table",
        description="A study file under studies/ states a claim and how it is tested before any episode runs; "
        "`run` runs (or resumes) its paired design on the test split with the null control and fresh data orders, "
        "and records the rows in the warehouse's study_results table (and MLflow); `results` writes docs/results.md "
        "from that table.",
    )
    commands = study.add_subparsers(dest="study_command", required=True)
    run = commands.add_parser("run", help="run or resume one study and record its results")
    run.add_argument("file", type=Path, help="the study file (studies/<name>.toml)")
    run.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, help="where results and seeds are recorded (default warehouse/tamiyo.duckdb)")
    run.add_argument("--out", type=Path, default=Path("var/studies"), help="the studies' episodes (default var/studies)")
    run.add_argument("--workers", type=int, help="episode worker processes (default: the study file's)")
    run.add_argument("--mlflow-root", default="var/mlflow", help="MLflow sqlite + artifacts folder (default var/mlflow)")
    run.add_argument("--no-mlflow", action="store_true", help="record in the warehouse only")
    run.add_argument("--check", action="store_true", help="read and check the study file, print its design, run nothing")
    run.set_defaults(func=run_study_command)
    ship = commands.add_parser("ship", help="ship a study's trained arm with the package, its model card written from the study's record",
                               description="Copies the arm's trained policy into tamiyo_models/shipped/NAME.pt and writes "
                               "NAME.md, its model card, from the study file, the policy's metadata and the arm's rows of "
                               "study_results (so the study must have run to the end). Then `shipped:NAME` runs it anywhere "
                               "a controller is named, and a warehouse's first night takes it as a challenger.")  # fmt: skip
    ship.add_argument("file", type=Path, help="the study file (studies/<name>.toml)")
    ship.add_argument("arm", help="one of its trained arms ([[train]] name)")
    ship.add_argument("--name", required=True, help="the shipped name (letters, digits, - and _)")
    ship.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, help="where the study recorded its results (default warehouse/tamiyo.duckdb)")
    ship.add_argument("--out", type=Path, default=Path("var/studies"), help="the studies' folder (default var/studies)")
    ship.add_argument("--folder", type=Path, help="ship into this folder instead of the checkout's tamiyo_models/shipped/")
    ship.add_argument("--force", action="store_true", help="replace a shipped policy of that name and its card")
    ship.set_defaults(func=ship_command)
    results = commands.add_parser("results", help="print docs/results.md from the warehouses' study_results and champion_history")
    results.add_argument("--warehouse", type=Path, action="append",
                         help="a warehouse to read (repeatable; default warehouse/tamiyo.duckdb)")
    results.add_argument("--write", type=Path, help="write the Markdown to this file (e.g. docs/results.md)")
    results.add_argument("--keep", action="store_true", help="with --write: keep the file's sections that no warehouse "
                         "given holds (recorded on another machine, or in a warehouse since removed), marked as kept")
    results.set_defaults(func=results_command)


def run_study_command(args: argparse.Namespace) -> int:
    from .study import StudyError, load_study, run_study

    try:
        config = load_study(args.file)
    except StudyError as exc:
        print(f"tamiyo study: {exc}", file=sys.stderr)
        return 2
    if args.check:
        arms = ", ".join(config.arms)
        print(f"{config.name}: {config.claim}\n  held-out: {config.heldout_text()}\n  {arms} against {config.reference}, "
              f"{config.fresh_orders} fresh orders; holds when both {config.confidence:.0%} intervals are above 0 on "
              f">= {config.min_pairs} pairs")  # fmt: skip
        for d in config.data:
            print(f"  data {d.name}: {d.episodes} episodes of spec {d.spec}, batch seed {d.batch_seed} (training seeds)")
        for a in config.trained:
            where = f"on data {a.data}" if a.data else "in live episodes"
            print(f"  trained arm {a.name}: {a.phase} {where}, {type(a.settings).__name__} {_changed(a.settings)}")
        return 0
    tracking = None
    if not args.no_mlflow:
        from ..agents.tracking import TrackingConfig

        tracking = TrackingConfig(root=args.mlflow_root)
    done = [0]

    def progress(result) -> None:
        done[0] += 1
        print(f"  [{done[0]}] {result.summary_line()}", flush=True)

    run_study(args.file, warehouse=args.warehouse, out_root=args.out, tracking=tracking, workers=args.workers,
              log=lambda line: print(line, flush=True), on_result=progress)  # fmt: skip
    return 0


def ship_command(args: argparse.Namespace) -> int:
    from ..controllers.shipped import ShippedPolicyError
    from .ship import ShipConfig, ship_arm
    from .study import StudyError

    try:
        shipped = ship_arm(ShipConfig(study=str(args.file), arm=args.arm, name=args.name, warehouse=str(args.warehouse),
                                      out_root=str(args.out), folder=str(args.folder) if args.folder else None,
                                      force=args.force))  # fmt: skip
    except (StudyError, ShippedPolicyError, OSError) as exc:
        print(f"tamiyo study ship: {exc}", file=sys.stderr)
        return 2
    print(f"shipped {shipped.label}: {shipped.path} and its card {shipped.card}\n  {shipped.summary}")
    return 0


def results_command(args: argparse.Namespace) -> int:
    from .study import merge_results, results_markdown

    text = results_markdown(args.warehouse or [DEFAULT_WAREHOUSE])
    if args.keep and not args.write:
        print("tamiyo study results: --keep keeps the sections of the file given to --write; give --write", file=sys.stderr)
        return 2
    if args.keep and args.write.exists():
        text = merge_results(args.write.read_text(), text)
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")
    else:
        print(text)
    return 0


def _changed(config) -> str:
    """The settings that differ from the library's defaults, as dotted keys (the rest is the library's)."""
    import dataclasses

    def walk(value, default, prefix):
        if dataclasses.is_dataclass(value) and not isinstance(default, type(value)):
            # An optional section the default leaves out (None): its keys against that section's own defaults.
            default = type(value)()
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield from walk(getattr(value, f.name), getattr(default, f.name), f"{prefix}{f.name}.")
        elif value != default:
            yield f"{prefix[:-1]}={value!r}"

    changed = list(walk(config, type(config)(**({"phase": config.phase} if hasattr(config, "phase") else {})), ""))
    return "(" + (", ".join(changed) or "the library's defaults") + ")"
