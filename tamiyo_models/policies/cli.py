"""`tamiyo train` and `tamiyo lineage`: policies without the Dagster UI (`tamiyo evaluate` is evaluation/cli.py).

`register(subparsers)` adds the subcommands to the main `tamiyo` parser; each sets `func(args) -> int`.
Heavy imports (torch, mlflow) happen inside the commands, so `tamiyo --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

FEATURE_SETS = ("base", "base+telemetry", "base+lifecycle", "base+lifecycle+task", "full")  # as features.FEATURE_SETS, without importing it


def tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-root", default="var/mlflow", help="sqlite file + artifacts folder (default var/mlflow)")
    parser.add_argument("--tracking-uri", help="any MLflow tracking URI instead of the local sqlite default")
    parser.add_argument("--experiment", default="tamiyo-policies", help="MLflow experiment (default tamiyo-policies)")


PHASES = {
    "phase1": "imitation of the logged decisions (or of the heuristic's, --labels heuristic), from the warehouse",
    "phase2": "reward-weighted imitation from a --parent policy (variants A, B, C), from the warehouse",
    "phase3": "offline RL (CQL, IQL, BCQ) on the warehouse's transitions, checkpoints chosen by FQE",
    "phase4": "online RL in live episodes (PPO, A2C, REINFORCE, or vine: branching policy iteration)",
}


RUN_CONFIGS = {"phase1": "PolicyRunConfig", "phase2": "PolicyRunConfig", "phase3": "OfflineRunConfig", "phase4": "OnlineRunConfig"}
# What every run reads from the command line even with --config: where the data is and where the result goes.
INPUT_FLAGS = {"help", "warehouse", "out", "no_mlflow", "mlflow_root", "tracking_uri", "experiment", "config"}


def register(subparsers: argparse._SubParsersAction) -> None:
    # Every default of `tamiyo train` is the library's, read from its config dataclasses (never re-declared here),
    # so the command line, the Dagster assets and the library cannot drift apart (tests/test_config_defaults.py).
    train = subparsers.add_parser(
        "train",
        help="train a policy: phase1 (imitation), phase2 (reward-weighted), phase3 (offline RL) from the warehouse, "
        "or phase4 (online RL) in live episodes",
        description="One subcommand per phase, each with only its own options. Phases 1 to 3 read decisions from the "
        "warehouse (SQL), split by episode (Phase 3: by episode family, a parent with its branches); Phase 4 runs "
        "episodes (and reads the warehouse only to distil a --parent). The policy is saved as one file and, unless "
        "--no-mlflow, tracked in MLflow and registered as `candidate` for its phase (Phases 2 to 4: "
        "`candidate-<variant or algorithm>`).",
    )
    phases = train.add_subparsers(dest="phase", required=True, metavar="PHASE")
    for phase, builder in (("phase1", _phase1_args), ("phase2", _phase2_args), ("phase3", _phase3_args), ("phase4", _phase4_args)):
        parser = phases.add_parser(phase, help=PHASES[phase], description=PHASES[phase] + ".")
        builder(parser)
        _output_args(parser)
        parser.add_argument("--config", type=Path, metavar="FILE.toml",
                            help=f"the whole run config from a TOML file instead of the flags: the fields of {RUN_CONFIGS[phase]} "
                            "(nested configs as tables; a field left out keeps the library's default), as a study's "
                            "[[train]] settings are written")  # fmt: skip
        settings = {a.dest: a.default for a in parser._actions if a.option_strings and a.dest not in INPUT_FLAGS}
        parser.set_defaults(func=run_train, settings_defaults=settings)

    lineage = subparsers.add_parser("lineage", help="print a model's chain: version -> run -> dataset -> raw runs -> parent")
    lineage.add_argument("model", help="MODEL@alias, MODEL/version or MODEL (latest)")
    lineage.add_argument("--runs", type=int, default=5, help="raw runs to list per model")
    tracking_args(lineage)
    lineage.set_defaults(func=run_lineage)


def _output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("var/policies"), help="folder for the policy file (default var/policies)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    tracking_args(parser)


def _imitation_args(parser: argparse.ArgumentParser, phase: str) -> None:
    """Phases 1 and 2 share the imitation learner and its data."""
    from .imitation import ImitationConfig
    from .workflow import IMITATION_FEATURE_SET, PolicyRunConfig

    imitation, policy_run = ImitationConfig(), PolicyRunConfig()
    parser.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file to read decisions from")
    parser.add_argument("--feature-set", choices=FEATURE_SETS, default=None,
                        help=f"observation features the policy reads (default {IMITATION_FEATURE_SET}: the heuristic reads "
                        "seed_total_improvement, outside base)")  # fmt: skip
    parser.add_argument("--controllers", default=None,
                        help=f"comma-separated controller kinds to learn from (default {','.join(policy_run.controllers)}; "
                        "\"\" for every controller)")  # fmt: skip
    parser.add_argument("--labels", choices=("logged", "heuristic"), default=policy_run.labels,
                        help=f"logged actions, or the heuristic's decision in every logged state (any controller) (default {policy_run.labels})")
    parser.add_argument("--epochs", type=int, default=imitation.epochs,
                        help=f"training epochs; the best on validation is kept (default {imitation.epochs})")
    parser.add_argument("--batch-size", type=int, default=imitation.batch_size, help=f"decisions per gradient step (default {imitation.batch_size})")
    parser.add_argument("--lr", type=float, default=imitation.learning_rate, help=f"AdamW learning rate (default {imitation.learning_rate})")
    parser.add_argument("--beta", type=float, default=imitation.beta,
                        help=f"class weights by effective number of samples (default {imitation.beta})")
    parser.add_argument("--val-fraction", type=float, default=policy_run.val_fraction,
                        help=f"share of episodes held out for validation (default {policy_run.val_fraction:g})")
    parser.add_argument("--group-by", default=policy_run.group_by, help="hold out whole groups of this column (dataset_config, host_widths)")
    parser.add_argument("--ordinal-stage", action="store_true",
                        help="feed seed_stage and seed_epochs_in_stage only as numbers, not also one-hot (the ablation in docs/policies.md)")
    parser.add_argument("--seed", type=int, default=imitation.seed, help=f"seed of the episode split and of training (default {imitation.seed})")


def _phase1_args(parser: argparse.ArgumentParser) -> None:
    _imitation_args(parser, "phase1")
    parser.add_argument("--parent", help="lineage parent only (a file, or MLflow MODEL@alias / MODEL/version)")


def _phase2_args(parser: argparse.ArgumentParser) -> None:
    from .reward_weighted import RewardWeightingConfig

    weighting = RewardWeightingConfig()
    _imitation_args(parser, "phase2")
    parser.add_argument("--parent",
                        help="the policy to start from (required), and the lineage parent (a file, or MLflow MODEL@alias / "
                        "MODEL/version)")  # fmt: skip
    parser.add_argument("--variant", choices=("A", "B", "C"), default=weighting.variant,
                        help=f"A episode weights, B decision weights, C filter (default {weighting.variant})")
    parser.add_argument("--threshold", type=float, default=weighting.threshold, help="variant C: keep episodes with final accuracy >= this (pp)")


def _phase3_args(parser: argparse.ArgumentParser) -> None:
    from ..offline_rl.workflow import OfflineRunConfig
    from ..transitions.cli import action_space_args

    offline = OfflineRunConfig()
    parser.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file to read transitions from")
    parser.add_argument("--algorithm", choices=("cql", "iql", "bcq"), default=offline.algorithm, help=f"(default {offline.algorithm})")
    parser.add_argument("--feature-set", choices=FEATURE_SETS, default=offline.feature_set,
                        help=f"observation features (default {offline.feature_set}: the task tells regimes apart)")
    parser.add_argument("--controllers", default=None,
                        help=f"comma-separated controller kinds to learn from (default {','.join(offline.behaviours) or 'all'})")
    parser.add_argument("--regimes", default=",".join(offline.regimes), help="comma-separated arena regimes to learn from (default all)")
    parser.add_argument("--held-out", type=float, default=offline.held_out,
                        help=f"share of episode families for checkpoint selection and the off-policy report (default {offline.held_out:g})")
    action_space_args(parser)
    parser.add_argument("--updates", type=int, default=offline.cql.updates, help=f"gradient updates (default {offline.cql.updates})")
    parser.add_argument("--alpha", type=float, default=offline.cql.alpha,
                        help=f"CQL: weight of the conservative term (default {offline.cql.alpha:g})")
    parser.add_argument("--tau", type=float, default=offline.iql.tau, help=f"IQL: expectile of V (default {offline.iql.tau:g})")
    parser.add_argument("--awr-beta", type=float, default=offline.iql.beta,
                        help=f"IQL: inverse temperature of the actor's weights (default {offline.iql.beta:g})")
    parser.add_argument("--bcq-threshold", type=float, default=offline.bcq.threshold,
                        help=f"BCQ: support threshold (default {offline.bcq.threshold:g})")
    parser.add_argument("--reward-scale", type=float, default=offline.cql.reward_scale,
                        help=f"rewards (pp) are multiplied by this (default {offline.cql.reward_scale:g})")
    parser.add_argument("--parent", help="IQL's initial actor, and the lineage parent (a file, or MLflow MODEL@alias / MODEL/version)")
    parser.add_argument("--seed", type=int, default=offline.split_seed, help=f"seed of the split and of training (default {offline.split_seed})")
    parser.add_argument("--ensemble", type=int, default=offline.ensemble, metavar="K",
                        help=f"K learners from seeds SEED..SEED+K-1, each to its last update, acting on their mean scores "
                        f"(default {offline.ensemble}: one learner, its checkpoint chosen by held-out FQE; docs/offline-rl.md)")


def _phase4_args(parser: argparse.ArgumentParser) -> None:
    from ..online_rl.distil import DistilConfig
    from ..online_rl.workflow import OnlineRunConfig

    online, distil = OnlineRunConfig(), DistilConfig()
    vine, kl = online.vine, {name: getattr(online, name).kl_coef for name in ("ppo", "a2c", "reinforce")}
    parser.add_argument("--algorithm", choices=("ppo", "a2c", "reinforce", "vine"), default=online.algorithm,
                        help=f"(default {online.algorithm}); vine: branching policy iteration, every action tried from the same "
                        "state (docs/online-rl.md)")  # fmt: skip
    parser.add_argument("--parent", help="the initial actor (or, with --distil, a fixed schedule fixed:BLUEPRINT@EPOCH to "
                        "distil), and the lineage parent (a file, or MLflow MODEL@alias / MODEL/version)")
    parser.add_argument("--episodes", type=int, default=None,
                        help=f"the budget in episodes, the critic's warm-up included (default: the algorithm's, "
                        f"{online.ppo.episodes}; vine {vine.iterations * vine.episodes_per_iteration} parent episodes)")
    parser.add_argument("--episodes-per-iteration", type=int, default=None,
                        help=f"episodes per update (default: the algorithm's, {online.ppo.episodes_per_iteration}; "
                        f"vine {vine.episodes_per_iteration} parent episodes)")
    parser.add_argument("--spec", default=online.spec, help=f"generation spec the episodes are drawn from (default {online.spec})")
    parser.add_argument("--regime", default=online.regime, help="one regime of the spec (default: all that can run here)")
    parser.add_argument("--feature-set", choices=FEATURE_SETS, default=online.feature_set,
                        help=f"observation features (default {online.feature_set})")
    parser.add_argument("--seed-slots", type=int, default=online.seed_slots, metavar="N",
                        help=f"seed slots of the episodes' hosts: the actor scores 1 + 7N actions (default {online.seed_slots}; the vine: 1 only)")
    parser.add_argument("--workers", type=int, default=online.workers, help=f"environment worker processes (default {online.workers})")
    parser.add_argument("--ray-address", default=online.ray_address,
                        help="run the --workers environments as Ray actors on this cluster ('local', 'auto', "
                        "HOST:PORT, ray://HOST:PORT; docs/scaling.md) instead of local worker processes")
    parser.add_argument("--cpus-per-episode", type=float, default=online.cpus_per_episode,
                        help=f"with Ray: CPUs each actor reserves (default {online.cpus_per_episode:g})")
    parser.add_argument("--record-dir", default=online.record_dir,
                        help=f"landing folder the rollouts are written to as raw runs ('' for none; default {online.record_dir})")
    parser.add_argument("--entropy-floor", type=float, default=online.ppo.entropy_floor,
                        help=f"mean policy entropy (nats) below which a penalty pushes it back up (default {online.ppo.entropy_floor:g})")
    parser.add_argument("--kl-coef", type=float, default=None,
                        help=f"weight of the KL penalty towards the initial policy, decaying {online.ppo.kl_decay}x per "
                        f"iteration (default: the algorithm's, {kl['ppo']:g} for PPO, {kl['a2c']:g} for A2C, {kl['reinforce']:g} for REINFORCE)")
    parser.add_argument("--distil", type=float, default=None, metavar="SMOOTHING",
                        help="start from a stochastic student of --parent (label smoothing, e.g. 0.05) distilled on "
                        "--warehouse's states; for a near-deterministic parent such as BCQ, or a fixed schedule "
                        "(--parent fixed:conv_heavy@1) (docs/online-rl.md)")
    parser.add_argument("--distil-updates", type=int, default=distil.updates,
                        help=f"with --distil: the student's gradient updates (default {distil.updates}, about a minute)")
    parser.add_argument("--warehouse", type=Path, help="with --distil: the warehouse whose states the student learns on")
    group = parser.add_argument_group("vine (--algorithm vine)")
    group.add_argument("--forks", type=int, default=vine.forks_per_episode,
                       help=f"random steps of each episode where every other legal action is branched (default {vine.forks_per_episode})")
    group.add_argument("--margin", type=float, default=vine.margin,
                       help=f"pp of final validation accuracy an action must win by to be learned (default {vine.margin})")
    group.add_argument("--fork-max-step", type=int, default=vine.max_step, metavar="STEP",
                       help="the last step a fork may start at (default: any; the early decisions matter most)")
    group.add_argument("--fork-min-step", type=int, default=vine.min_step, metavar="STEP",
                       help=f"the first step a fork may start at (default {vine.min_step}, the decision after epoch 1; 1 also "
                       "tries the first decision, on the untrained host: a graft at epoch 0)")
    group.add_argument("--val-subsample", type=int, default=vine.val_subsample, metavar="N",
                       help="validation images of the training episodes (default: the spec's; 10000 makes a "
                       "branch's outcome 5x less noisy on the arena, docs/online-rl.md)")  # fmt: skip
    group.add_argument("--confirm-orders", type=int, default=vine.confirm_orders, metavar="K",
                       help="replay each candidate label (an action that beat the policy's own by more than --margin) on "
                       "K new data orders; it is learned only if it wins by the margin there too (with --label-rule "
                       f"fork; default {vine.confirm_orders}: learned at once)")  # fmt: skip
    group.add_argument("--label-rule", choices=("fork", "region"), default=vine.label_rule,
                       help="region = pool every fork by region (task, episode length, epoch bin, seed stage, own action) "
                       "and learn an action for the whole region only where its mean advantage is above 0 at a 5%% false "
                       "discovery rate and above --margin; fork = learn each fork's winning action at that state (with "
                       f"--confirm-orders) (default {vine.label_rule}; docs/online-rl.md)")  # fmt: skip
    group.add_argument("--evidence-from", action="append", default=list(vine.evidence_from), metavar="DIR",
                       help="with --label-rule region: a finished vine run's folder whose forks and visited states join "
                       "this run's evidence (repeatable; e.g. a fork study in another regime)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=online.ppo.seed, help=f"seed of the episodes and of training (default {online.ppo.seed})")


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
    if args.phase == "phase3":
        return _run_offline(args)
    if args.phase == "phase4":
        return _run_online(args)
    from .workflow import train_policy

    try:
        config = policy_run_config(args)
        tracker = None if args.no_mlflow else tracker_from_args(args)
        run = train_policy(args.warehouse, config, args.out, tracker=tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo train {args.phase}: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {run.policy_path}")
    return 0


# The flags -> library config mappings, one per kind of phase: the commands below run what they return, and
# tests/test_config_defaults.py builds them from the parser's defaults. A flag left out (None) means the library's
# own value, never a number written here.
def config_from_file(args: argparse.Namespace):
    """--config FILE.toml: the phase's run config read field by field (world.configs.from_mapping). Settings
    come from the file or from flags, never both: a flag that would be silently overridden is an error."""
    import tomllib

    from ..world.configs import from_mapping
    from .run_configs import run_config_class

    given = sorted(f"--{dest.replace('_', '-')}" for dest, default in args.settings_defaults.items() if getattr(args, dest) != default)
    if given:
        raise ValueError(f"--config {args.config} gives the run config: leave out {', '.join(given)} (or set it in the file)")
    try:
        data = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no run config file at {args.config}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{args.config}: not a TOML file: {exc}") from None
    if args.phase in ("phase1", "phase2"):
        data = {**data, "phase": args.phase}
    config = from_mapping(run_config_class(args.phase), data, str(args.config))
    if args.phase == "phase2" and not config.parent_policy:
        raise ValueError(f"{args.config}: phase2 starts from a parent_policy")
    if args.phase == "phase4" and args.warehouse and not config.distil_warehouse:
        config = dataclasses.replace(config, distil_warehouse=str(args.warehouse))
    return config


def policy_run_config(args: argparse.Namespace):
    """Phases 1 and 2: the PolicyRunConfig `tamiyo train` runs."""
    if getattr(args, "config", None):
        return config_from_file(args)
    if args.phase == "phase2" and not args.parent:
        raise ValueError("phase2 starts from a policy: give --parent (a file, or MLflow MODEL@alias / MODEL/version)")
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
        weighting=RewardWeightingConfig(variant=args.variant, threshold=args.threshold) if args.phase == "phase2" else RewardWeightingConfig(),
        controllers=controllers, labels=args.labels,
        val_fraction=args.val_fraction, split_seed=args.seed, group_by=args.group_by, parent_policy=args.parent,
    )  # fmt: skip


def offline_run_config(args: argparse.Namespace):
    """Phase 3: the OfflineRunConfig `tamiyo train phase3` runs."""
    if getattr(args, "config", None):
        return config_from_file(args)
    from ..offline_rl.workflow import OfflineRunConfig

    base = OfflineRunConfig()
    return OfflineRunConfig(
        algorithm=args.algorithm, feature_set=args.feature_set,
        behaviours=base.behaviours if args.controllers is None else _split(args.controllers), regimes=_split(args.regimes),
        held_out=args.held_out, split_seed=args.seed, parent_policy=args.parent, seed_slots=args.seed_slots,
        mix_action_spaces=args.mix_action_spaces, ensemble=args.ensemble,
        cql=dataclasses.replace(base.cql, alpha=args.alpha, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
        iql=dataclasses.replace(base.iql, tau=args.tau, beta=args.awr_beta, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
        bcq=dataclasses.replace(base.bcq, threshold=args.bcq_threshold, updates=args.updates, reward_scale=args.reward_scale, seed=args.seed),
    )  # fmt: skip


def online_run_config(args: argparse.Namespace):
    """Phase 4: the OnlineRunConfig `tamiyo train phase4` runs."""
    if getattr(args, "config", None):
        return config_from_file(args)
    from ..online_rl.distil import DistilConfig
    from ..online_rl.workflow import OnlineRunConfig

    base = OnlineRunConfig()
    algorithm = args.algorithm
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
    return OnlineRunConfig(algorithm=algorithm, spec=args.spec, regime=args.regime, workers=args.workers, seed_slots=args.seed_slots,
                           initial_policy=args.parent, feature_set=args.feature_set,
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
        print(f"tamiyo train {args.phase}: {exc}", file=sys.stderr)
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
        print(f"tamiyo train {args.phase}: {exc}", file=sys.stderr)
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
