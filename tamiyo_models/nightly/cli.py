"""`tamiyo night` (run or resume one night of the improvement loop without Dagster) and `tamiyo champion` (the
champion table and its trend, from the warehouse)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from .night import PRESETS

    night = subparsers.add_parser(
        "night",
        help="run (or resume) one night of the improvement loop: generate, ingest, train, predict off-policy, evaluate, "
        "promote or keep",
        description="The stages of the Dagster `nightly` job, in one process. Run again on the same night, it resumes "
        "where it stopped (episodes on disk are read back, finished challengers kept). Settings: a preset "
        "(arena-v2: the real night on arena v2, ~780 episodes, 2 hours on 2 cores; arena-v2-large: ~1,800; arena: "
        "the Fashion-MNIST arena's, ~2,000; mini: the quick demo) and NightConfig fields "
        "as --set FIELD=JSON (e.g. --set training_episodes=300 --set 'challengers=[\"bcq\"]').",
    )
    night.add_argument("night", help="the night, YYYY-MM-DD (its batch seeds follow from it)")
    night.add_argument("--preset", choices=tuple(PRESETS), default="arena",
                       help="the night's settings: arena (default), arena-v2 (rent 1, two slots; 2 hours on 2 cores), "
                       "arena-v2-large (the same, ~1,800 episodes) or mini (the demo)")
    night.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override one NightConfig field")
    night.add_argument("--workers", type=int, help="episode worker processes (default: the preset's, 2)")
    _paths_args(night)
    night.add_argument("--mlflow-root", default="var/mlflow", help="MLflow sqlite + artifacts folder (default var/mlflow)")
    night.add_argument("--mlflow-uri", default=None, help="an MLflow tracking URI instead of the local folder")
    night.add_argument("--nights", type=Path, default=Path("var/nights"), help="the nights' own folders (default var/nights)")
    night.add_argument("--landing", type=Path, default=Path("var/raw"), help="the landing folder of raw runs (default var/raw)")
    night.add_argument("--show-config", action="store_true", help="print the night's settings and stop")
    night.set_defaults(func=run_night_command)

    champion = subparsers.add_parser(
        "champion",
        help="the champion night by night, and one night's comparisons (from champion_history)",
        description="Reads champion_history from the warehouse file (not the snapshot, so it also answers right "
        "after a night while no ingestion has published one).",
    )
    _paths_args(champion)
    champion.add_argument("--night", help="show this night's comparisons (default: the last night)")
    champion.add_argument("--plot", type=Path, help="also write the trend plot to this PNG")
    champion.set_defaults(func=run_champion_command)


def _paths_args(parser) -> None:
    parser.add_argument("--warehouse", type=Path, default=Path("warehouse/tamiyo.duckdb"),
                        help="DuckDB warehouse (default warehouse/tamiyo.duckdb)")  # fmt: skip


def night_config_from_args(args):
    from .night import PRESETS, NightConfig

    base = PRESETS[args.preset]().to_dict()
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in base:
            raise SystemExit(f"--set {item!r}: expected FIELD=JSON with FIELD one of {', '.join(sorted(base))}")
        try:
            base[field] = json.loads(value)
        except json.JSONDecodeError:
            base[field] = value  # a bare word (a spec name)
    if args.workers is not None:
        base["workers"] = args.workers
    return NightConfig.from_dict(base)


def run_night_command(args: argparse.Namespace) -> int:
    from .night import NightPaths, check_night, run_night

    try:
        check_night(args.night)
        config = night_config_from_args(args)
    except (TypeError, ValueError) as exc:
        print(f"tamiyo night: {exc}", file=sys.stderr)
        return 2
    if args.show_config:
        print(json.dumps(config.to_dict(), indent=1))
        return 0
    paths = NightPaths(nights=args.nights, landing=args.landing, warehouse=args.warehouse, mlflow_root=args.mlflow_root,
                       mlflow_uri=args.mlflow_uri)  # fmt: skip
    done = [0]

    def progress(result) -> None:  # one line per finished episode: a real night runs for hours
        done[0] += 1
        print(f"  [{done[0]}] {result.summary_line()}", flush=True)

    decision = run_night(args.night, config, paths, log=lambda line: print(line, flush=True), on_result=progress)
    print(f"night {args.night}: champion {decision.champion} -> {decision.champion_after}")
    return 0


def run_champion_command(args: argparse.Namespace) -> int:
    from ..evaluation.paired import decided_by
    from .report import champion_table, champion_trend, format_table, night_rent, plot_trend

    if not args.warehouse.exists():
        print(f"tamiyo champion: no warehouse at {args.warehouse}", file=sys.stderr)
        return 2
    trend = champion_trend(args.warehouse)
    if trend.is_empty():
        print("no night recorded yet (run one: make run, or tamiyo night YYYY-MM-DD)")
        return 0
    night = args.night or trend["night"][-1]
    # Rent-0 histories print as before rent existed; with a rent, each night says its own, and a change of rent
    # is a visible break: scores on either side of it are not comparable (report.py's docstring).
    charged = any(trend["rent"].fill_null(0.0).to_list())
    print("night        champion at start            -> at end                     champion  heuristic  best fixed"
          + ("  (mean scores at the night's rent)" if charged else ""))  # fmt: skip
    segment = None
    for r in trend.iter_rows(named=True):
        if segment is not None and r["segment"] != segment:
            print(f"--- rent {r['rent'] or 0.0:g} from {r['night']}: scores above and below are not comparable ---")
        segment = r["segment"]
        h = f"{r['heuristic_score']:.2f}" if r["heuristic_score"] is not None else "-"
        b = f"{r['best_fixed_score']:.2f} ({r['best_fixed']})" if r["best_fixed_score"] is not None else "-"
        c = f"{r['champion_score']:.2f}" if r["champion_score"] is not None else "-"
        rent = f"  rent {r['rent'] or 0.0:g}" if charged else ""
        print(f"{r['night']}   {r['champion']:<28} -> {r['champion_after']:<28} {c:>8}  {h:>9}  {b}{rent}")
    print()
    table = champion_table(args.warehouse, night=night)
    rent = night_rent(table)
    if rent:
        print(f"night {night}: rent {rent:g}; decided by {decided_by(rent)}; the raw test accuracy is shown beside it")
        print()
    print(format_table(table))
    from .prediction import prediction_lines

    predicted = prediction_lines(args.warehouse, night)
    if predicted:  # the night predicted its arms off-policy before its evaluation: how well, and the record so far
        print()
        print("\n".join(line.removeprefix("## ") + (":" if line.startswith("## ") else "") for line in predicted).strip())
    if args.plot:
        print(f"trend plot: {plot_trend(trend, args.plot)}")
    return 0
