"""`tamiyo evaluate` (policies and reference controllers against the heuristic, live) and `tamiyo headroom`
(reference controllers against the heuristic on paired configurations of a spec)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..controllers import DEFAULT_REFERENCES
    from ..policies.cli import tracking_args

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate policies offline (held-out episodes) and live (paired episodes vs the heuristic), write reports",
        description="Each policy is paired with the heuristic on the same live configurations (the heuristic's "
        "episode is run once per configuration and shared). Several policies also get comparison.md/html side by side.",
    )
    evaluate.add_argument("policy", nargs="+", help="policy file, shipped:NAME (a policy shipped with the package; `tamiyo shipped` "
                          "lists them), or an MLflow model ref (MODEL@alias, MODEL/version); several allowed")
    evaluate.add_argument("--warehouse", type=Path, help="for the offline metrics on the policy's held-out episodes")
    evaluate.add_argument("--episodes", type=int, default=20, help="live pairs")
    evaluate.add_argument("--spec", default="nightly", help="generation spec the live configurations are drawn from")
    evaluate.add_argument("--batch-seed", type=int, default=7_700_001, help="seed the live configurations are drawn from")
    evaluate.add_argument("--workers", type=int, default=1, help="parallel worker processes for the live episodes (default 1)")
    evaluate.add_argument("--null-orders", type=int, default=1,
                          help="fresh data orders the heuristic reruns on: the null control behind the noise floor (default 1)")
    evaluate.add_argument("--replicate", type=int, default=0, metavar="K",
                          help="rerun every pair on K fresh data orders; a win counts only if it holds there too (default 0)")
    evaluate.add_argument("--references", default="",
                          help="reference controllers judged on the same pairs, comma-separated (e.g. never,fixed:conv_heavy@1)")
    evaluate.add_argument("--out", type=Path, default=Path("var/evaluations"), help="folder for the reports (default var/evaluations)")
    evaluate.add_argument("--promote", action="store_true", help="move the champion alias if the candidate is better")
    tracking_args(evaluate)
    evaluate.set_defaults(func=run_evaluate)



    h = subparsers.add_parser(
        "headroom",
        help="measure where a controller's decisions beat the heuristic: reference controllers on paired configurations",
        description="Run reference controllers and the heuristic on the same configurations of a spec, regime by "
        "regime, scored on the test split; report each paired difference with its interval, the null control's "
        "noise floor, the best in hindsight against luck's best-of-N, and the replication on fresh data orders. "
        "Episodes already in the output folder are read back, so an interrupted analysis resumes.",
    )
    h.add_argument("--spec", default="arena", help="generation spec with [[regimes]] (default arena)")
    h.add_argument("--regimes", default="", help="comma-separated regimes to analyse (default: every regime that can run here)")
    h.add_argument("--configs-per-regime", type=int, default=24, help="paired configurations per regime (default 24)")
    h.add_argument("--controllers", default=",".join(DEFAULT_REFERENCES),
                   help="comma-separated controller names: heuristic, never, eager, random, fixed:<blueprint>@<epoch>[:slot<k>], "
                   f"heuristic:<blueprint>[+...] (default: {', '.join(DEFAULT_REFERENCES)})")  # fmt: skip
    h.add_argument("--reference", default="heuristic", help="the controller every other is paired against (default heuristic)")
    h.add_argument("--replicate", type=int, default=2, metavar="K", help="fresh data orders for the replication (default 2)")
    h.add_argument("--replicate-arms", choices=("best", "all"), default="best",
                   help="rerun each regime's best controller and each configuration's hindsight winner (best), or all")
    h.add_argument("--null-orders", type=int, default=1, help="fresh data orders for the null control at least (default 1)")
    h.add_argument("--batch-seed", type=int, default=20_261_129, help="draws the configurations (default %(default)s; keep apart from training batches)")
    h.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    h.add_argument("--device", default="cpu",
                   help="where each episode trains: cpu (default), cuda or cuda:<index>; the workers share the GPU")
    h.add_argument("--out", type=Path, default=Path("var/reports/headroom"), help="report and episodes folder")
    h.add_argument("--four-way", action="store_true",
                   help="the four-way headroom instead (docs/arena.md): best fixed schedule, best per regime, a descriptor-keyed "
                   "schedule fitted on training configurations, and the per-configuration oracle, all scored on the "
                   "held-out configurations' fresh orders (--replicate); the grid is --reference plus --controllers")  # fmt: skip
    h.add_argument("--training-configs-per-regime", type=int, default=24,
                   help="with --four-way: training configurations per regime, every grid controller on each (default 24)")
    h.add_argument("--training-batch-seed", type=int, default=20_261_301,
                   help="with --four-way: draws the training configurations (default %(default)s; their seeds are made even)")
    h.add_argument("--state-readers", default="", metavar="NAMES",
                   help="with --four-way: comma-separated controllers that read the state (e.g. vigilant:conv_heavy@0, "
                   "or NAME=PATH for a learned policy file), run on the held-out configurations only and paired with "
                   "each level on the fresh orders")
    h.add_argument("--oracle-with-readers", action="store_true",
                   help="with --four-way: the per-configuration oracle also picks among the --state-readers (on the order "
                   "it picks on, a tighter lower bound on the fork-study oracle, whose action sequences include theirs; "
                   "on fresh orders a pick from more candidates may score lower); levels 1 to 3 never do")
    h.add_argument("--report-only", action="store_true",
                   help="run no episode: report on those already in --out (a study in progress; incomplete pairs are left out)")
    h.set_defaults(func=run_headroom)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..policies.cli import NoTrackingStore, first_line, tracker_from_args
    from .harness import EvaluationConfig, evaluate_policies

    tracker, policies, versions = None, {}, {}
    for ref in args.policy:
        if ref.startswith("shipped:"):  # a policy shipped with the package, run as it is (controllers.shipped)
            from ..controllers.shipped import ShippedPolicyError, shipped_policy

            try:
                shipped = shipped_policy(ref)
            except ShippedPolicyError as exc:
                print(f"tamiyo evaluate: {exc}", file=sys.stderr)
                return 2
            policies[shipped.label] = shipped.path
            continue
        if Path(ref).exists():
            policies[Path(ref).name] = Path(ref)
            continue
        try:
            tracker = tracker or tracker_from_args(args, read_only=True)
            name, versions[name], policies[name] = tracker.fetch_policy(ref, args.out / "policies")
        except NoTrackingStore as exc:
            print(f"tamiyo evaluate: {ref}: not a file, and {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # an unknown model or alias is an MlflowException: say it plainly
            print(f"tamiyo evaluate: {ref}: not a file, and MLflow says: {first_line(exc)}", file=sys.stderr)
            return 2
    references = tuple(r.strip() for r in args.references.split(",") if r.strip())
    try:
        from ..controllers import reference_controller

        for name in references:
            reference_controller(name)  # an unknown name fails here, before any episode runs
        config = EvaluationConfig(episodes=args.episodes, spec=args.spec, batch_seed=args.batch_seed, workers=args.workers,
                                  null_orders=args.null_orders, replicate=args.replicate, references=references)  # fmt: skip
        evaluations = evaluate_policies(policies, args.warehouse, args.out, config,
                                        compare=len(policies) > 1 or bool(references))  # fmt: skip
    except ValueError as exc:
        print(f"tamiyo evaluate: {exc}", file=sys.stderr)
        return 2
    for evaluation in evaluations:
        print(f"report: {evaluation.paths['markdown']} and {evaluation.paths['html']}")
        if evaluation.name in versions:
            _, why = tracker.judge(versions[evaluation.name], evaluation.live.summary(), promote=args.promote)
            if args.promote:
                print(f"{evaluation.name}: {why}")
    return 0


def run_headroom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.four_way:
        return _run_four_way(args)

    from ..episodes.episode import check_device
    from ..episodes.generation import SpecError
    from .headroom import HeadroomConfig, analyse_headroom

    try:
        config = HeadroomConfig(
            spec=args.spec, regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
            configs_per_regime=args.configs_per_regime,
            controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
            reference=args.reference, null_orders=args.null_orders, replicate=args.replicate,
            replicate_arms=args.replicate_arms, batch_seed=args.batch_seed, workers=args.workers,
            device=check_device(args.device, available=not args.report_only),
        )  # fmt: skip
        from ..controllers import reference_controller

        for name in config.controllers:
            reference_controller(name)
    except (ValueError, SpecError) as exc:
        print(f"tamiyo headroom: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(unit="episode", file=sys.stderr, desc="headroom")
    try:
        result = analyse_headroom(config, args.out, log=lambda line: bar.write(line, file=sys.stderr),
                                  progress=lambda done, total: (setattr(bar, "total", total), bar.update(1)),
                                  execute=not args.report_only)  # fmt: skip
    except (ValueError, SpecError) as exc:
        bar.close()
        print(f"tamiyo headroom: {exc}", file=sys.stderr)
        return 2
    bar.close()
    for regime in result.regimes:
        best = regime.row(regime.best_arm) if regime.best_arm else None
        verdict = "" if best is None else (
            f"best {best.arm} {best.difference} pp" + (f", fresh orders {best.fresh}" if best.fresh.n else "")
            + (" (reproducible)" if best.reproducible else ""))  # fmt: skip
        print(f"{regime.regime}: noise floor {regime.noise_floor_test:.2f} pp RMS; {verdict}")
    print(f"report: {result.files['markdown']} and {result.files['html']}")
    return 0


def _run_four_way(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..controllers import reference_controller
    from ..controllers.config import named_controller
    from ..episodes.episode import check_device
    from ..episodes.generation import SpecError
    from .four_way import FourWayConfig, run_four_way

    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    try:
        grid = tuple(dict.fromkeys([args.reference, *controllers]))  # the reference first: the designs pair on it
        readers = tuple(r.strip() for r in args.state_readers.split(",") if r.strip())
        for name in grid:
            reference_controller(name)
        for entry in readers:  # a reference name, or NAME=PATH: a learned policy read as a reader
            named_controller(entry)
        config = FourWayConfig(spec=args.spec, regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
                               grid=grid, training_configs_per_regime=args.training_configs_per_regime,
                               heldout_configs_per_regime=args.configs_per_regime, training_batch_seed=args.training_batch_seed,
                               heldout_batch_seed=args.batch_seed, fresh_orders=args.replicate, workers=args.workers,
                               readers=readers, oracle_readers=args.oracle_with_readers,
                               device=check_device(args.device, available=not args.report_only))  # fmt: skip
    except (ValueError, SpecError) as exc:
        print(f"tamiyo headroom --four-way: {exc}", file=sys.stderr)
        return 2
    if args.oracle_with_readers and not readers:
        print("tamiyo headroom --four-way: --oracle-with-readers needs --state-readers", file=sys.stderr)
        return 2
    bar = tqdm(unit="episode", file=sys.stderr, desc="four-way headroom")
    try:
        result, _ = run_four_way(config, args.out / "four-way", log=lambda line: bar.write(line, file=sys.stderr),
                                 on_result=lambda _: bar.update(1), on_plan=lambda total: setattr(bar, "total", total),
                                 execute=not args.report_only)  # fmt: skip
    except (ValueError, SpecError) as exc:
        bar.close()
        print(f"tamiyo headroom --four-way: {exc}", file=sys.stderr)
        return 2
    bar.close()
    mean, low, high, pairs = result.state_dependent
    print(f"state-dependent headroom (oracle - descriptor-keyed, fresh orders): {mean:+.2f} [{low:+.2f}, {high:+.2f}] pp over {pairs} pairs")
    print(f"report: {args.out / 'four-way' / 'four-way.md'}")
    return 0
