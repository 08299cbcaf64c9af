"""`tamiyo train` and `tamiyo lineage`: policies without the Dagster UI (`tamiyo evaluate` is evaluation/cli.py).

`register(subparsers)` adds the subcommands to the main `tamiyo` parser; each sets `func(args) -> int`.
Heavy imports (torch, mlflow) happen inside the commands, so `tamiyo --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FEATURE_SETS = ("base", "base+telemetry", "base+lifecycle", "base+lifecycle+task", "full")  # as features.FEATURE_SETS, without importing it


def tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-root", default="var/mlflow", help="sqlite file + artifacts folder (default var/mlflow)")
    parser.add_argument("--tracking-uri", help="any MLflow tracking URI instead of the local sqlite default")
    parser.add_argument("--experiment", default="tamiyo-policies", help="MLflow experiment (default tamiyo-policies)")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a Phase 1 (imitation), 2 (reward-weighted) or 3 (offline RL) policy from the warehouse, or Phase 4 "
        "(online RL) in live episodes",
        description="Decisions come from the warehouse (SQL), split by episode (Phase 3: by episode family, a parent "
        "with its branches); the policy is saved as one file and, unless --no-mlflow, tracked in MLflow and "
        "registered as `candidate` for its phase (Phases 2 to 4: `candidate-<variant or algorithm>`). Phase 4 runs "
        "episodes instead (--episodes, --workers) and reads the warehouse only to distil a --parent (--distil).",
    )
    train.add_argument("--warehouse", type=Path, help="DuckDB warehouse file to read decisions from (phases 1-3; phase 4 "
                       "with --distil: the states the student learns on)")
    train.add_argument("--phase", choices=("phase1", "phase2", "phase3", "phase4"), default="phase1",
                       help="phase1: imitation (default); phase2: reward-weighted, from a --parent; phase3: offline RL; "
                       "phase4: online RL in live episodes")  # fmt: skip
    train.add_argument("--algorithm", choices=("cql", "iql", "bcq", "reinforce", "a2c", "ppo", "vine"), default=None,
                       help="phase 3: cql (default), iql or bcq; phase 4: ppo (default), a2c, reinforce, or vine (branching "
                       "policy iteration: every action tried from the same state, docs/online-rl.md)")
    train.add_argument("--episodes", type=int, default=64,
                       help="phase 4: the budget in episodes, the critic's warm-up included (default 64)")
    train.add_argument("--episodes-per-iteration", type=int, default=4, help="phase 4: episodes per update (default 4)")
    train.add_argument("--forks", type=int, default=2,
                       help="phase 4 vine: random steps of each episode where every other legal action is branched (default 2)")
    train.add_argument("--margin", type=float, default=0.25,
                       help="phase 4 vine: pp of final validation accuracy an action must win by to be learned (default 0.25)")
    train.add_argument("--fork-max-step", type=int, default=None, metavar="STEP",
                       help="phase 4 vine: the last step a fork may start at (default: any; the early decisions matter most)")  # fmt: skip
    train.add_argument("--fork-min-step", type=int, default=2, metavar="STEP",
                       help="phase 4 vine: the first step a fork may start at (default 2, the decision after epoch 1; 1 also "
                       "tries the first decision, on the untrained host: a graft at epoch 0)")
    train.add_argument("--val-subsample", type=int, default=None, metavar="N",
                       help="phase 4 vine: validation images of the training episodes (default: the spec's; 10000 makes a "
                       "branch's outcome 5x less noisy on the arena, docs/online-rl.md)")  # fmt: skip
    train.add_argument("--confirm-orders", type=int, default=0, metavar="K",
                       help="phase 4 vine: replay each candidate label (an action that beat the policy's own by more than "
                       "--margin) on K new data orders; it is learned only if it wins by the margin there too (with --label-rule "
                       "fork; default 0: learned at once)")  # fmt: skip
    train.add_argument("--label-rule", choices=("fork", "region"), default="region",
                       help="phase 4 vine: region = pool every fork by region (task, episode length, epoch bin, seed stage, "
                       "own action) and learn an action for the whole region only where its mean advantage is above 0 at a "
                       "5%% false discovery rate and above --margin; fork = learn each fork's winning action at that state "
                       "(with --confirm-orders) (default region; docs/online-rl.md)")  # fmt: skip
    train.add_argument("--evidence-from", action="append", default=[], metavar="DIR",
                       help="phase 4 vine, --label-rule region: a finished vine run's folder whose forks and visited states "
                       "join this run's evidence (repeatable; e.g. a fork study in another regime)")  # fmt: skip
    train.add_argument("--workers", type=int, default=2, help="phase 4: environment worker processes (default 2)")
    train.add_argument("--spec", default="arena", help="phase 4: generation spec the episodes are drawn from (default arena)")
    train.add_argument("--regime", help="phase 4: one regime of the spec (default: all that can run here)")
    train.add_argument("--entropy-floor", type=float, default=0.0,
                       help="phase 4: mean policy entropy (nats) below which a penalty pushes it back up (default 0)")
    train.add_argument("--kl-coef", type=float, default=None,
                       help="phase 4: weight of the KL penalty towards the initial policy, decaying 0.9x per iteration "
                       "(default 0.1 for PPO, 0 otherwise)")
    train.add_argument("--ray-address", default=None,
                       help="phase 4: run the --workers environments as Ray actors on this cluster ('local', 'auto', "
                       "HOST:PORT, ray://HOST:PORT; docs/scaling.md) instead of local worker processes")
    train.add_argument("--cpus-per-episode", type=float, default=1.0, help="phase 4 with Ray: CPUs each actor reserves")
    train.add_argument("--distil", type=float, default=None, metavar="SMOOTHING",
                       help="phase 4: start from a stochastic student of --parent (label smoothing, e.g. 0.05) distilled "
                       "on --warehouse's states; for a near-deterministic parent such as BCQ, or a fixed schedule "
                       "(--parent fixed:conv_heavy@1; the student reads --feature-set) (docs/online-rl.md)")
    train.add_argument("--distil-updates", type=int, default=10_000,
                       help="phase 4 with --distil: the student's gradient updates (default 10000, about a minute)")
    train.add_argument("--record-dir", default="var/raw",
                       help="phase 4: landing folder the rollouts are written to as raw runs ('' for none; default var/raw)")
    train.add_argument("--updates", type=int, default=20_000, help="phase 3: gradient updates (default 20000)")
    train.add_argument("--alpha", type=float, default=1.0, help="phase 3 CQL: weight of the conservative term (default 1)")
    train.add_argument("--tau", type=float, default=0.7, help="phase 3 IQL: expectile of V (default 0.7)")
    train.add_argument("--awr-beta", type=float, default=3.0, help="phase 3 IQL: inverse temperature of the actor's weights (default 3)")
    train.add_argument("--bcq-threshold", type=float, default=0.3, help="phase 3 BCQ: support threshold (default 0.3)")
    train.add_argument("--reward-scale", type=float, default=0.1, help="phase 3: rewards (pp) are multiplied by this (default 0.1)")
    train.add_argument("--regimes", default="", help="phase 3: comma-separated arena regimes to learn from (default all)")
    train.add_argument("--held-out", type=float, default=0.2,
                       help="phase 3: share of episode families for checkpoint selection and the off-policy report (default 0.2)")
    train.add_argument("--variant", choices=("A", "B", "C"), default="A", help="phase 2: A episode weights, B decision weights, C filter")
    train.add_argument("--threshold", type=float, help="phase 2 C: keep episodes with final accuracy >= this (pp)")
    train.add_argument("--parent", help="phase 2: start from this policy; phase 3: IQL's initial actor; phase 4: the "
                       "initial actor (or, with --distil, a fixed schedule fixed:BLUEPRINT@EPOCH to distil); and the "
                       "lineage parent (a file, or MLflow MODEL@alias / MODEL/version)")
    train.add_argument("--feature-set", choices=FEATURE_SETS, default=None,
                       help="phase 1 and 2 default base+lifecycle (the heuristic reads seed_total_improvement, outside "
                       "base); phase 3 default base+lifecycle+task (the task tells regimes apart); also base, base+telemetry, full")
    train.add_argument("--controllers", default=None,
                       help="comma-separated controller kinds to learn from (phase 1 and 2 default: heuristic; phase 3: all)")
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
    tracking_args(train)
    train.set_defaults(func=run_train)

    lineage = subparsers.add_parser("lineage", help="print a model's chain: version -> run -> dataset -> raw runs -> parent")
    lineage.add_argument("model", help="MODEL@alias, MODEL/version or MODEL (latest)")
    lineage.add_argument("--runs", type=int, default=5, help="raw runs to list per model")
    tracking_args(lineage)
    lineage.set_defaults(func=run_lineage)


class NoTrackingStore(Exception):
    pass


def tracker_from_args(args, read_only: bool = False):
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
    online, offline = ("reinforce", "a2c", "ppo", "vine"), ("cql", "iql", "bcq")
    if args.algorithm and args.phase in ("phase3", "phase4") and args.algorithm not in (offline if args.phase == "phase3" else online):
        print(f"tamiyo train: --algorithm {args.algorithm} is not a {args.phase} algorithm "
              f"({', '.join(offline if args.phase == 'phase3' else online)})", file=sys.stderr)  # fmt: skip
        return 2
    if args.phase == "phase3":
        return _run_offline(args)
    if args.phase == "phase4":
        return _run_online(args)
    if args.warehouse is None:
        print(f"tamiyo train: {args.phase} learns from the warehouse: give --warehouse", file=sys.stderr)
        return 2
    from .imitation import ImitationConfig
    from .network import NetworkConfig
    from .reward_weighted import RewardWeightingConfig
    from .workflow import PolicyRunConfig, train_policy

    try:
        config = PolicyRunConfig(
            phase=args.phase,
            imitation=ImitationConfig(feature_set=args.feature_set or "base+lifecycle", epochs=args.epochs, batch_size=args.batch_size,
                                      learning_rate=args.lr, beta=args.beta, seed=args.seed,
                                      network=NetworkConfig(one_hot_categorical=not args.ordinal_stage)),
            weighting=RewardWeightingConfig(variant=args.variant, threshold=args.threshold),
            controllers=tuple(c.strip() for c in (args.controllers or "heuristic").split(",") if c.strip()), labels=args.labels,
            val_fraction=args.val_fraction, split_seed=args.seed, group_by=args.group_by, parent_policy=args.parent,
        )  # fmt: skip
        tracker = None if args.no_mlflow else tracker_from_args(args)
        run = train_policy(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


def _run_offline(args: argparse.Namespace) -> int:
    import dataclasses

    from ..offline_rl.workflow import OfflineRunConfig, train_offline

    split = lambda text: tuple(x.strip() for x in (text or "").split(",") if x.strip())  # noqa: E731
    try:
        base = OfflineRunConfig()
        config = OfflineRunConfig(
            algorithm=args.algorithm or "cql", feature_set=args.feature_set or "base+lifecycle+task",
            behaviours=split(args.controllers), regimes=split(args.regimes), held_out=args.held_out, split_seed=args.seed,
            parent_policy=args.parent,
            cql=dataclasses.replace(base.cql, alpha=args.alpha, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
            iql=dataclasses.replace(base.iql, tau=args.tau, beta=args.awr_beta, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
            bcq=dataclasses.replace(base.bcq, threshold=args.bcq_threshold, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
        )  # fmt: skip
        tracker = None if args.no_mlflow else tracker_from_args(args)
        run = train_offline(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


def _run_online(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from ..online_rl.distil import DistilConfig
    from ..online_rl.workflow import OnlineRunConfig, train_online_policy

    algorithm = args.algorithm or "ppo"
    try:
        base = OnlineRunConfig()
        learner = getattr(base, algorithm)
        if algorithm == "vine":  # the budget in parent episodes; its branches come on top (counted in the log)
            learner = dataclasses.replace(learner, iterations=max(1, args.episodes // args.episodes_per_iteration), seed=args.seed,
                                          episodes_per_iteration=args.episodes_per_iteration, forks_per_episode=args.forks,
                                          margin=args.margin, max_step=args.fork_max_step, min_step=args.fork_min_step,
                                          val_subsample=args.val_subsample, confirm_orders=args.confirm_orders,
                                          label_rule=args.label_rule, evidence_from=tuple(args.evidence_from))  # fmt: skip
        else:
            learner = dataclasses.replace(learner, episodes=args.episodes, seed=args.seed, entropy_floor=args.entropy_floor,
                                          episodes_per_iteration=args.episodes_per_iteration,
                                          kl_coef=learner.kl_coef if args.kl_coef is None else args.kl_coef)  # fmt: skip
        config = OnlineRunConfig(algorithm=algorithm, spec=args.spec, regime=args.regime, workers=args.workers,
                                 initial_policy=args.parent, feature_set=args.feature_set or "base+lifecycle+task",
                                 record_dir=args.record_dir or None, ray_address=args.ray_address,
                                 cpus_per_episode=args.cpus_per_episode,
                                 distil=None if args.distil is None else DistilConfig(smoothing=args.distil, updates=args.distil_updates, seed=args.seed),
                                 distil_warehouse=str(args.warehouse) if args.warehouse else None, **{algorithm: learner})  # fmt: skip
        tracker = None if args.no_mlflow else tracker_from_args(args)
        total = learner.iterations * learner.episodes_per_iteration if algorithm == "vine" else args.episodes
        bar = tqdm(total=total, unit="episode", desc=f"phase 4 {algorithm}", file=sys.stderr)

        def progress(row: dict) -> None:
            bar.update(row["episodes_used"] - bar.n)
            if "mean_return" in row:
                bar.set_postfix(iteration=row["iteration"], mean_return=f"{row['mean_return']:+.2f}")
            else:  # vine: what the branches found
                bar.set_postfix(iteration=row["iteration"], forks=row["forks"], relabelled=row["relabelled"])

        def log(line: str) -> None:
            bar.write(line)
            if line.startswith("distil:"):
                bar.reset()  # the episode rate and ETA start when the student is trained, not before

        run = train_online_policy(config, args.out, tracker=tracker, log=log, on_iteration=progress)
        bar.close()
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


def run_lineage(args: argparse.Namespace) -> int:
    from ..tracking import format_lineage

    try:
        chain = tracker_from_args(args, read_only=True).lineage(args.model)
    except Exception as exc:  # an unknown model or alias is an MlflowException: say it plainly
        print(f"tamiyo lineage: {first_line(exc)}", file=sys.stderr)
        return 2
    print(format_lineage(chain, args.runs))
    return 0


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
