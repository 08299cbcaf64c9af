"""`tamiyo train`, `tamiyo evaluate` and `tamiyo lineage`: policies without the Dagster UI.

`register(subparsers)` adds the subcommands to the main `tamiyo` parser; each sets `func(args) -> int`.
Heavy imports (torch, mlflow) happen inside the commands, so `tamiyo --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FEATURE_SETS = ("base", "base+telemetry", "base+lifecycle", "full")  # as features.FEATURE_SETS, without importing it


def _tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-root", default="var/mlflow", help="sqlite file + artifacts folder (default var/mlflow)")
    parser.add_argument("--tracking-uri", help="any MLflow tracking URI instead of the local sqlite default")
    parser.add_argument("--experiment", default="tamiyo-policies", help="MLflow experiment (default tamiyo-policies)")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a Phase 1 (imitation) or Phase 2 (reward-weighted) policy from the warehouse",
        description="Decisions come from the warehouse (SQL), split by episode; the policy is saved as one file "
        "and, unless --no-mlflow, tracked in MLflow and registered as `candidate` for its phase.",
    )
    train.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file to read decisions from")
    train.add_argument("--phase", choices=("phase1", "phase2"), default="phase1",
                       help="phase1: imitation (default); phase2: reward-weighted, from a --parent")  # fmt: skip
    train.add_argument("--variant", choices=("A", "B", "C"), default="A", help="phase 2: A episode weights, B decision weights, C filter")
    train.add_argument("--threshold", type=float, help="phase 2 C: keep episodes with final accuracy >= this (pp)")
    train.add_argument("--parent", help="phase 2: start from this policy (file, or MLflow MODEL@alias / MODEL/version)")
    train.add_argument("--feature-set", choices=FEATURE_SETS, default="base+lifecycle",
                       help="base+lifecycle (default: the heuristic reads seed_total_improvement, outside base), base, base+telemetry, full")
    train.add_argument("--controllers", default="heuristic", help="comma-separated controller kinds to imitate")
    train.add_argument("--epochs", type=int, default=150, help="training epochs; the best on validation is kept (default 150)")
    train.add_argument("--batch-size", type=int, default=256, help="decisions per gradient step (default 256)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 0.001)")
    train.add_argument("--beta", type=float, default=0.999, help="class weights by effective number of samples")
    train.add_argument("--val-fraction", type=float, default=0.2, help="share of episodes held out for validation (default 0.2)")
    train.add_argument("--labels", choices=("logged", "heuristic"), default="logged",
                       help="logged actions, or the heuristic's decision in every logged state (any controller)")
    train.add_argument("--group-by", help="hold out whole groups of this column (dataset_config, host_widths)")
    train.add_argument("--ordinal-stage", action="store_true",
                       help="feed seed_stage and seed_epochs_in_stage only as numbers, not also one-hot (the ablation in docs/policies.md)")
    train.add_argument("--seed", type=int, default=0, help="seed of the episode split and of training (default 0)")
    train.add_argument("--out", type=Path, default=Path("var/policies"), help="folder for the policy file (default var/policies)")
    train.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    _tracking_args(train)
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate policies offline (held-out episodes) and live (paired episodes vs the heuristic), write reports",
        description="Each policy is paired with the heuristic on the same live configurations (the heuristic's "
        "episode is run once per configuration and shared). Several policies also get comparison.md/html side by side.",
    )
    evaluate.add_argument("policy", nargs="+", help="policy file, or an MLflow model ref (MODEL@alias, MODEL/version); several allowed")
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
                          help="reference controllers judged on the same pairs, comma-separated (e.g. never,fixed:conv_heavy@6)")
    evaluate.add_argument("--out", type=Path, default=Path("var/evaluations"), help="folder for the reports (default var/evaluations)")
    evaluate.add_argument("--promote", action="store_true", help="move the champion alias if the candidate is better")
    _tracking_args(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    lineage = subparsers.add_parser("lineage", help="print a model's chain: version -> run -> dataset -> raw runs -> parent")
    lineage.add_argument("model", help="MODEL@alias, MODEL/version or MODEL (latest)")
    lineage.add_argument("--runs", type=int, default=5, help="raw runs to list per model")
    _tracking_args(lineage)
    lineage.set_defaults(func=run_lineage)


class NoTrackingStore(Exception):
    pass


def _tracker(args, read_only: bool = False):
    """The MLflow tracker. A command that only reads (lineage, fetching a model) refuses to create an empty
    store where there is none: in the wrong folder it should say so, not leave var/mlflow behind."""
    from ..tracking import Tracker, TrackingConfig

    config = TrackingConfig(root=args.mlflow_root, tracking_uri=args.tracking_uri, experiment=args.experiment)
    if read_only and not config.tracking_uri and not (Path(config.root) / "mlflow.db").exists():
        raise NoTrackingStore(
            f"no MLflow store at {Path(config.root) / 'mlflow.db'} (nothing trained from this folder yet?); "
            "give --mlflow-root or --tracking-uri"
        )
    return Tracker(config)


def run_train(args: argparse.Namespace) -> int:
    from .imitation import ImitationConfig
    from .network import NetworkConfig
    from .reward_weighted import RewardWeightingConfig
    from .workflow import PolicyRunConfig, train_policy

    try:
        config = PolicyRunConfig(
            phase=args.phase,
            imitation=ImitationConfig(feature_set=args.feature_set, epochs=args.epochs, batch_size=args.batch_size,
                                      learning_rate=args.lr, beta=args.beta, seed=args.seed,
                                      network=NetworkConfig(one_hot_categorical=not args.ordinal_stage)),
            weighting=RewardWeightingConfig(variant=args.variant, threshold=args.threshold),
            controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()), labels=args.labels,
            val_fraction=args.val_fraction, split_seed=args.seed, group_by=args.group_by, parent_policy=args.parent,
        )  # fmt: skip
        tracker = None if args.no_mlflow else _tracker(args)
        run = train_policy(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import EvaluationConfig, evaluate_policies

    tracker, policies, versions = None, {}, {}
    for ref in args.policy:
        if Path(ref).exists():
            policies[Path(ref).name] = Path(ref)
            continue
        try:
            tracker = tracker or _tracker(args, read_only=True)
            name, versions[name], policies[name] = tracker.fetch_policy(ref, args.out / "policies")
        except NoTrackingStore as exc:
            print(f"tamiyo evaluate: {ref}: not a file, and {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # an unknown model or alias is an MlflowException: say it plainly
            print(f"tamiyo evaluate: {ref}: not a file, and MLflow says: {_first_line(exc)}", file=sys.stderr)
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


def run_lineage(args: argparse.Namespace) -> int:
    from ..tracking import format_lineage

    try:
        chain = _tracker(args, read_only=True).lineage(args.model)
    except Exception as exc:  # an unknown model or alias is an MlflowException: say it plainly
        print(f"tamiyo lineage: {_first_line(exc)}", file=sys.stderr)
        return 2
    print(format_lineage(chain, args.runs))
    return 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
