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
    # Every default of `tamiyo train` is the library's, read from its config dataclasses (never re-declared here),
    # so the command line, the Dagster assets and the library cannot drift apart (tests/test_config_defaults.py).
    from ..offline_rl.workflow import OfflineRunConfig
    from ..online_rl.distil import DistilConfig
    from ..online_rl.workflow import OnlineRunConfig
    from .imitation import ImitationConfig
    from .reward_weighted import RewardWeightingConfig
    from .workflow import IMITATION_FEATURE_SET, PolicyRunConfig

    imitation, policy_run, weighting = ImitationConfig(), PolicyRunConfig(), RewardWeightingConfig()
    offline, online, distil = OfflineRunConfig(), OnlineRunConfig(), DistilConfig()
    vine, kl = online.vine, {name: getattr(online, name).kl_coef for name in ("ppo", "a2c", "reinforce")}

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
    train.add_argument("--episodes", type=int, default=None,
                       help=f"phase 4: the budget in episodes, the critic's warm-up included (default: the algorithm's, "
                       f"{online.ppo.episodes}; vine {vine.iterations * vine.episodes_per_iteration} parent episodes)")
    train.add_argument("--episodes-per-iteration", type=int, default=None,
                       help=f"phase 4: episodes per update (default: the algorithm's, {online.ppo.episodes_per_iteration}; "
                       f"vine {vine.episodes_per_iteration} parent episodes)")
    train.add_argument("--forks", type=int, default=vine.forks_per_episode,
                       help=f"phase 4 vine: random steps of each episode where every other legal action is branched (default {vine.forks_per_episode})")
    train.add_argument("--margin", type=float, default=vine.margin,
                       help=f"phase 4 vine: pp of final validation accuracy an action must win by to be learned (default {vine.margin})")
    train.add_argument("--fork-max-step", type=int, default=vine.max_step, metavar="STEP",
                       help="phase 4 vine: the last step a fork may start at (default: any; the early decisions matter most)")  # fmt: skip
    train.add_argument("--fork-min-step", type=int, default=vine.min_step, metavar="STEP",
                       help=f"phase 4 vine: the first step a fork may start at (default {vine.min_step}, the decision after epoch 1; 1 also "
                       "tries the first decision, on the untrained host: a graft at epoch 0)")
    train.add_argument("--val-subsample", type=int, default=vine.val_subsample, metavar="N",
                       help="phase 4 vine: validation images of the training episodes (default: the spec's; 10000 makes a "
                       "branch's outcome 5x less noisy on the arena, docs/online-rl.md)")  # fmt: skip
    train.add_argument("--confirm-orders", type=int, default=vine.confirm_orders, metavar="K",
                       help="phase 4 vine: replay each candidate label (an action that beat the policy's own by more than "
                       "--margin) on K new data orders; it is learned only if it wins by the margin there too (with --label-rule "
                       f"fork; default {vine.confirm_orders}: learned at once)")  # fmt: skip
    train.add_argument("--label-rule", choices=("fork", "region"), default=vine.label_rule,
                       help="phase 4 vine: region = pool every fork by region (task, episode length, epoch bin, seed stage, "
                       "own action) and learn an action for the whole region only where its mean advantage is above 0 at a "
                       "5%% false discovery rate and above --margin; fork = learn each fork's winning action at that state "
                       f"(with --confirm-orders) (default {vine.label_rule}; docs/online-rl.md)")  # fmt: skip
    train.add_argument("--evidence-from", action="append", default=list(vine.evidence_from), metavar="DIR",
                       help="phase 4 vine, --label-rule region: a finished vine run's folder whose forks and visited states "
                       "join this run's evidence (repeatable; e.g. a fork study in another regime)")  # fmt: skip
    train.add_argument("--workers", type=int, default=online.workers, help=f"phase 4: environment worker processes (default {online.workers})")
    train.add_argument("--spec", default=online.spec, help=f"phase 4: generation spec the episodes are drawn from (default {online.spec})")
    train.add_argument("--regime", default=online.regime, help="phase 4: one regime of the spec (default: all that can run here)")
    train.add_argument("--entropy-floor", type=float, default=online.ppo.entropy_floor,
                       help=f"phase 4: mean policy entropy (nats) below which a penalty pushes it back up (default {online.ppo.entropy_floor:g})")
    train.add_argument("--kl-coef", type=float, default=None,
                       help=f"phase 4: weight of the KL penalty towards the initial policy, decaying {online.ppo.kl_decay}x per "
                       f"iteration (default: the algorithm's, {kl['ppo']:g} for PPO, {kl['a2c']:g} for A2C, {kl['reinforce']:g} for REINFORCE)")
    train.add_argument("--ray-address", default=online.ray_address,
                       help="phase 4: run the --workers environments as Ray actors on this cluster ('local', 'auto', "
                       "HOST:PORT, ray://HOST:PORT; docs/scaling.md) instead of local worker processes")
    train.add_argument("--cpus-per-episode", type=float, default=online.cpus_per_episode,
                       help=f"phase 4 with Ray: CPUs each actor reserves (default {online.cpus_per_episode:g})")
    train.add_argument("--distil", type=float, default=None, metavar="SMOOTHING",
                       help="phase 4: start from a stochastic student of --parent (label smoothing, e.g. 0.05) distilled "
                       "on --warehouse's states; for a near-deterministic parent such as BCQ, or a fixed schedule "
                       "(--parent fixed:conv_heavy@1; the student reads --feature-set) (docs/online-rl.md)")
    train.add_argument("--distil-updates", type=int, default=distil.updates,
                       help=f"phase 4 with --distil: the student's gradient updates (default {distil.updates}, about a minute)")
    train.add_argument("--record-dir", default=online.record_dir,
                       help=f"phase 4: landing folder the rollouts are written to as raw runs ('' for none; default {online.record_dir})")
    train.add_argument("--updates", type=int, default=offline.cql.updates, help=f"phase 3: gradient updates (default {offline.cql.updates})")
    train.add_argument("--alpha", type=float, default=offline.cql.alpha,
                       help=f"phase 3 CQL: weight of the conservative term (default {offline.cql.alpha:g})")
    train.add_argument("--tau", type=float, default=offline.iql.tau, help=f"phase 3 IQL: expectile of V (default {offline.iql.tau:g})")
    train.add_argument("--awr-beta", type=float, default=offline.iql.beta,
                       help=f"phase 3 IQL: inverse temperature of the actor's weights (default {offline.iql.beta:g})")
    train.add_argument("--bcq-threshold", type=float, default=offline.bcq.threshold,
                       help=f"phase 3 BCQ: support threshold (default {offline.bcq.threshold:g})")
    train.add_argument("--reward-scale", type=float, default=offline.cql.reward_scale,
                       help=f"phase 3: rewards (pp) are multiplied by this (default {offline.cql.reward_scale:g})")
    train.add_argument("--regimes", default=",".join(offline.regimes), help="phase 3: comma-separated arena regimes to learn from (default all)")
    train.add_argument("--held-out", type=float, default=offline.held_out,
                       help=f"phase 3: share of episode families for checkpoint selection and the off-policy report (default {offline.held_out:g})")
    train.add_argument("--variant", choices=("A", "B", "C"), default=weighting.variant,
                       help=f"phase 2: A episode weights, B decision weights, C filter (default {weighting.variant})")
    train.add_argument("--threshold", type=float, default=weighting.threshold, help="phase 2 C: keep episodes with final accuracy >= this (pp)")
    train.add_argument("--parent", help="phase 2: start from this policy; phase 3: IQL's initial actor; phase 4: the "
                       "initial actor (or, with --distil, a fixed schedule fixed:BLUEPRINT@EPOCH to distil); and the "
                       "lineage parent (a file, or MLflow MODEL@alias / MODEL/version)")
    train.add_argument("--feature-set", choices=FEATURE_SETS, default=None,
                       help=f"phase 1 and 2 default {IMITATION_FEATURE_SET} (the heuristic reads seed_total_improvement, outside "
                       f"base); phase 3 and 4 default {offline.feature_set} (the task tells regimes apart); also base, base+telemetry, full")
    train.add_argument("--controllers", default=None,
                       help=f"comma-separated controller kinds to learn from (phase 1 and 2 default: {','.join(policy_run.controllers)}; "
                       f"phase 3: {','.join(offline.behaviours) or 'all'})")
    train.add_argument("--epochs", type=int, default=imitation.epochs,
                       help=f"training epochs; the best on validation is kept (default {imitation.epochs})")
    train.add_argument("--batch-size", type=int, default=imitation.batch_size, help=f"decisions per gradient step (default {imitation.batch_size})")
    train.add_argument("--lr", type=float, default=imitation.learning_rate, help=f"AdamW learning rate (default {imitation.learning_rate})")
    train.add_argument("--beta", type=float, default=imitation.beta,
                       help=f"class weights by effective number of samples (default {imitation.beta})")
    train.add_argument("--val-fraction", type=float, default=policy_run.val_fraction,
                       help=f"share of episodes held out for validation (default {policy_run.val_fraction:g})")
    train.add_argument("--labels", choices=("logged", "heuristic"), default=policy_run.labels,
                       help=f"logged actions, or the heuristic's decision in every logged state (any controller) (default {policy_run.labels})")
    train.add_argument("--group-by", default=policy_run.group_by, help="hold out whole groups of this column (dataset_config, host_widths)")
    train.add_argument("--ordinal-stage", action="store_true",
                       help="feed seed_stage and seed_epochs_in_stage only as numbers, not also one-hot (the ablation in docs/policies.md)")
    train.add_argument("--seed", type=int, default=imitation.seed, help=f"seed of the episode split and of training (default {imitation.seed})")
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
    from ..agents.tracking import Tracker, TrackingConfig

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
    from .workflow import train_policy

    try:
        config = policy_run_config(args)
        tracker = None if args.no_mlflow else tracker_from_args(args)
        run = train_policy(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


# The flags -> library config mappings, one per kind of phase: the commands below run what they return, and
# tests/test_config_defaults.py builds them from the parser's defaults. A flag left out (None) means the library's
# own value, never a number written here.
def policy_run_config(args: argparse.Namespace):
    """Phases 1 and 2: the PolicyRunConfig `tamiyo train` runs."""
    from ..agents.imitation_network import NetworkConfig
    from .imitation import ImitationConfig
    from .reward_weighted import RewardWeightingConfig
    from .workflow import IMITATION_FEATURE_SET, PolicyRunConfig

    # No --controllers: PolicyRunConfig's (the heuristic); --controllers "": every controller.
    controllers = PolicyRunConfig().controllers if args.controllers is None else _split(args.controllers)
    return PolicyRunConfig(
        phase=args.phase,
        imitation=ImitationConfig(feature_set=args.feature_set or IMITATION_FEATURE_SET, epochs=args.epochs, batch_size=args.batch_size,
                                  learning_rate=args.lr, beta=args.beta, seed=args.seed,
                                  network=NetworkConfig(one_hot_categorical=not args.ordinal_stage)),
        weighting=RewardWeightingConfig(variant=args.variant, threshold=args.threshold),
        controllers=controllers, labels=args.labels,
        val_fraction=args.val_fraction, split_seed=args.seed, group_by=args.group_by, parent_policy=args.parent,
    )  # fmt: skip


def offline_run_config(args: argparse.Namespace):
    """Phase 3: the OfflineRunConfig `tamiyo train --phase phase3` runs."""
    import dataclasses

    from ..offline_rl.workflow import OfflineRunConfig

    base = OfflineRunConfig()
    return OfflineRunConfig(
        algorithm=args.algorithm or base.algorithm, feature_set=args.feature_set or base.feature_set,
        behaviours=base.behaviours if args.controllers is None else _split(args.controllers), regimes=_split(args.regimes),
        held_out=args.held_out, split_seed=args.seed, parent_policy=args.parent,
        cql=dataclasses.replace(base.cql, alpha=args.alpha, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
        iql=dataclasses.replace(base.iql, tau=args.tau, beta=args.awr_beta, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
        bcq=dataclasses.replace(base.bcq, threshold=args.bcq_threshold, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
    )  # fmt: skip


def online_run_config(args: argparse.Namespace):
    """Phase 4: the OnlineRunConfig `tamiyo train --phase phase4` runs."""
    import dataclasses

    from ..online_rl.distil import DistilConfig
    from ..online_rl.workflow import OnlineRunConfig

    base = OnlineRunConfig()
    algorithm = args.algorithm or base.algorithm
    learner = getattr(base, algorithm)
    # No --episodes-per-iteration or --episodes: the algorithm's own (vine's budget: iterations x parents)
    per_iteration = learner.episodes_per_iteration if args.episodes_per_iteration is None else args.episodes_per_iteration
    if algorithm == "vine":  # the budget in parent episodes; its branches come on top (counted in the log)
        iterations = learner.iterations if args.episodes is None else max(1, args.episodes // per_iteration)
        learner = dataclasses.replace(learner, iterations=iterations, seed=args.seed,
                                      episodes_per_iteration=per_iteration, forks_per_episode=args.forks,
                                      margin=args.margin, max_step=args.fork_max_step, min_step=args.fork_min_step,
                                      val_subsample=args.val_subsample, confirm_orders=args.confirm_orders,
                                      label_rule=args.label_rule, evidence_from=tuple(args.evidence_from))  # fmt: skip
    else:
        learner = dataclasses.replace(learner, episodes=learner.episodes if args.episodes is None else args.episodes,
                                      seed=args.seed, entropy_floor=args.entropy_floor, episodes_per_iteration=per_iteration,
                                      kl_coef=learner.kl_coef if args.kl_coef is None else args.kl_coef)  # fmt: skip
    distil = None if args.distil is None else DistilConfig(smoothing=args.distil, updates=args.distil_updates, seed=args.seed)
    return OnlineRunConfig(algorithm=algorithm, spec=args.spec, regime=args.regime, workers=args.workers,
                           initial_policy=args.parent, feature_set=args.feature_set or base.feature_set,
                           record_dir=args.record_dir or None, ray_address=args.ray_address,
                           cpus_per_episode=args.cpus_per_episode, distil=distil,
                           distil_warehouse=str(args.warehouse) if args.warehouse else None, **{algorithm: learner})  # fmt: skip


def _run_offline(args: argparse.Namespace) -> int:
    from ..offline_rl.workflow import train_offline

    try:
        config = offline_run_config(args)
        tracker = None if args.no_mlflow else tracker_from_args(args)
        run = train_offline(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


def _run_online(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..online_rl.workflow import train_online_policy

    try:
        config = online_run_config(args)
        learner = config.learner
        tracker = None if args.no_mlflow else tracker_from_args(args)
        total = learner.iterations * learner.episodes_per_iteration if config.algorithm == "vine" else learner.episodes
        bar = tqdm(total=total, unit="episode", desc=f"phase 4 {config.algorithm}", file=sys.stderr)

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


def _split(text: str | None) -> tuple[str, ...]:
    """A comma-separated list ("a, b"), blanks dropped: "" is the empty tuple."""
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def run_lineage(args: argparse.Namespace) -> int:
    from ..agents.tracking import format_lineage

    try:
        chain = tracker_from_args(args, read_only=True).lineage(args.model)
    except Exception as exc:  # an unknown model or alias is an MlflowException: say it plainly
        print(f"tamiyo lineage: {first_line(exc)}", file=sys.stderr)
        return 2
    print(format_lineage(chain, args.runs))
    return 0


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
