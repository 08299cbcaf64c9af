"""`tamiyo ope`: off-policy estimates of saved policies and reference controllers from the warehouse."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..transitions.cli import action_space_args
    o = subparsers.add_parser(
        "ope",
        help="estimate policies' values from logged data alone: FQE, and PDWIS / WDR where the behaviour drew at random",
        description="Fit FQE for each policy (policy files of any phase, and reference controllers by name) on the "
        "warehouse's transitions, with per-decision weighted importance sampling and weighted doubly robust "
        "estimates on the episodes whose behaviour drew its actions at random (elsewhere: 'not identified'). "
        "Every estimate stands beside the heuristic's; with --live, beside the live paired results too.",
    )
    o.add_argument("policy", nargs="*", help="policy files (any phase), each as PATH or NAME=PATH (NAME: how the report and "
                   "--live-study call it)")
    o.add_argument("--warehouse", type=Path, required=True, help="the DuckDB warehouse (its read snapshot)")
    o.add_argument("--references", default="never", help="reference controllers by name, comma-separated (default never)")
    o.add_argument("--regimes", default="", help="only transitions of these arena regimes (comma-separated)")
    o.add_argument("--behaviours", default="", help="only transitions of these controllers (labels or kinds)")
    action_space_args(o)
    o.add_argument("--updates", type=int, default=0, help="FQE gradient updates per policy (default: enough for 4 "
                   "backups of the longest episode at target tau 0.02: 200 per step, 6,000 on arena-v2's 30 steps)")
    live = o.add_mutually_exclusive_group()
    live.add_argument("--live", type=Path, help="a comparison.json of `tamiyo evaluate`: adds the live paired results "
                   "and the calibration (rank correlation, error in pp)")
    live.add_argument("--live-study", metavar="NAME", help="the live results of a recorded study instead (its study_results "
                   "rows in --results-warehouse): each arm's paired difference against the study's reference, averaged "
                   "over the original and the fresh orders, the reference itself at 0 and estimated too; name the policy "
                   "files as its arms")
    live.add_argument("--live-night", metavar="YYYY-MM-DD", help="the live results of a recorded night instead (its "
                   "champion_history rows): every arm of the night is estimated (its policy file, or its reference "
                   "name) and set beside its paired difference against the night's champion, averaged over the "
                   "original and the fresh orders")
    o.add_argument("--nights", type=Path, default=Path("var/nights"), help="with --live-night: the nights' own folders "
                   "(as `tamiyo night --nights`; default var/nights). The night's evaluation episodes there give the "
                   "calibration intervals over its held-out configurations, and the ceiling live's noise sets on it")
    o.add_argument("--estimates-from", type=Path, metavar="OPE_JSON", help="take the estimates from an earlier report's "
                   "ope.json instead of fitting them again (the same data and policies: only the live side and the "
                   "calibration are computed anew)")
    o.add_argument("--results-warehouse", type=Path, help="where --live-study's or --live-night's rows are recorded "
                   "(default: --warehouse for --live-night, warehouse/tamiyo.duckdb for --live-study)")
    o.add_argument("--out", type=Path, default=Path("var/reports/ope"), help="report folder (default var/reports/ope)")
    o.set_defaults(func=run_ope)


def run_ope(args: argparse.Namespace) -> int:
    from ..transitions.dataset import load_transitions
    from ..warehouse.store import WarehouseBusy
    from .fqe import FQEConfig
    from .report import calibration_intervals, off_policy_table, read_estimates, write_ope_report

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip()) or None  # noqa: E731
    policies = {}
    references = split(args.references) or ()
    for entry in args.policy:
        name, sep, path = entry.partition("=")
        if not sep or Path(entry).exists():  # a plain path (one with '=' in it too) is named by its file name
            name, path = Path(entry).name, entry
        if not Path(path).exists():
            print(f"tamiyo ope: no policy file {path}", file=sys.stderr)
            return 2
        if not name or name in policies or name in references or name == "heuristic":
            print(f"tamiyo ope: policy name {name!r} of {entry!r} is empty, repeated, or a reference's name", file=sys.stderr)
            return 2
        policies[name] = path
    for name in references:
        policies[name] = name
    live, baseline, agreement, design = {}, "heuristic", None, None
    if args.live:
        try:
            live = {row["name"]: row["live"]["live_mean_difference"] for row in json.loads(args.live.read_text())}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"tamiyo ope: {args.live}: not a comparison.json of tamiyo evaluate ({exc})", file=sys.stderr)
            return 2
    elif args.live_study:
        from .report import live_agreement, live_differences

        try:
            baseline, live = live_differences(args.results_warehouse or Path("warehouse/tamiyo.duckdb"), args.live_study)
        except (ValueError, WarehouseBusy) as exc:
            print(f"tamiyo ope: {exc}", file=sys.stderr)
            return 2
        if baseline not in policies and baseline != "heuristic":  # the differences are from it: estimate it too
            policies[baseline] = baseline
        agreement = live_agreement(args.results_warehouse or Path("warehouse/tamiyo.duckdb"), study=args.live_study)
    elif args.live_night:
        from .report import live_agreement, live_night

        try:
            baseline, live, arms = live_night(args.results_warehouse or args.warehouse, args.live_night)
        except (ValueError, WarehouseBusy) as exc:
            print(f"tamiyo ope: {exc}", file=sys.stderr)
            return 2
        for name, what in arms.items():
            policies.setdefault(name, what)
        agreement = live_agreement(args.results_warehouse or args.warehouse, night=args.live_night)
        folder = args.nights / args.live_night / "evaluation"
        if folder.is_dir():
            from .report import live_by_configuration

            try:
                design = live_by_configuration(folder, baseline)
            except ValueError as exc:
                print(f"tamiyo ope: {exc}", file=sys.stderr)
                return 2
        else:
            print(f"tamiyo ope: no evaluation folder {folder} (see --nights): the calibration is given without intervals")
    try:
        from ..controllers import reference_controller

        for name in split(args.references) or ():
            reference_controller(name)
        if args.estimates_from:
            rows, summary = read_estimates(args.estimates_from, ["heuristic", *policies])
        else:
            data = load_transitions(args.warehouse, "full+slots", behaviours=split(args.behaviours), regimes=split(args.regimes),
                                    seed_slots=args.seed_slots, mix_action_spaces=args.mix_action_spaces)  # fmt: skip
            rows, summary = off_policy_table(policies, data, FQEConfig(updates=args.updates), log=print), data.summary()
        intervals = calibration_intervals(rows, design, baseline) if design is not None else None
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo ope: {exc}", file=sys.stderr)
        return 2
    paths = write_ope_report(rows, args.out, title="Off-policy estimates", data_summary=summary, live=live,
                             live_baseline=baseline, agreement=agreement, intervals=intervals)  # fmt: skip
    print(f"report: {paths['markdown']} and {paths['html']}")
    return 0
