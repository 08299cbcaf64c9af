"""`tamiyo curriculum show | run | transfer` (docs/curriculum.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ..policies.cli import tracking_args

    parser = subparsers.add_parser("curriculum", help="Phase 5: train through a curriculum of tasks; transfer to unseen tasks",
                                   description="A curriculum (TOML: stages, each a generation spec, a held-out set and a "
                                   "promotion rule; see docs/curriculum.md) trained with Phase 4 online RL, and policies "
                                   "judged zero-shot on tasks they never trained on.")  # fmt: skip
    sub = parser.add_subparsers(dest="curriculum_command", required=True, metavar="ACTION")

    show = sub.add_parser("show", help="list a curriculum's stages and transfer tasks, and which can run here")
    show.add_argument("--curriculum", default="default", help="shipped curriculum name or TOML file (default: default)")
    show.set_defaults(func=run_show)

    run = sub.add_parser("run", help="train stage by stage (manual) or by the automatic curriculum's choice")
    run.add_argument("--curriculum", default="default", help="shipped curriculum name or TOML file (default: default)")
    run.add_argument("--order", choices=("manual", "weakest", "progress"), default="manual",
                     help="manual: stages in order, promoted by their rule; weakest / progress: automatic (default manual)")
    run.add_argument("--budget", type=int, default=256, help="training episodes in all (default 256)")
    run.add_argument("--algorithm", choices=("reinforce", "a2c", "ppo"), default="ppo", help="online learner (default ppo)")
    run.add_argument("--parent", help="initial policy: a file or MLflow ref (default: a fresh MLP actor)")
    run.add_argument("--workers", type=int, default=2, help="environment worker processes (default 2)")
    run.add_argument("--episodes-per-iteration", type=int, default=8, help="episodes per learner update (default 8)")
    run.add_argument("--entropy-floor", type=float, default=0.0, help="mean entropy (nats) kept by a penalty (default 0)")
    run.add_argument("--record-dir", default="var/raw", help="landing folder for the rollouts ('' to keep none)")
    run.add_argument("--seed", type=int, default=0, help="the learner's seed: its episodes' configurations and sampling (default 0)")
    run.add_argument("--out", type=Path, default=Path("var/curriculum"),
                     help="folder for rounds, policies and curriculum.json; a curriculum there is resumed (default var/curriculum)")
    run.add_argument("--rounds", type=int, default=0, help="run at most this many rounds now, then stop (resumable; default 0: to the budget)")
    run.add_argument("--no-mlflow", action="store_true", help="do not track the rounds in MLflow")
    tracking_args(run)
    run.set_defaults(func=run_run)

    transfer = sub.add_parser("transfer", help="a policy zero-shot on tasks it never trained on, paired with the heuristic")
    transfer.add_argument("policy", help="what is transferred: a policy file, a reference controller name (fixed:conv_heavy@0, ...), "
                          "or 'champion': the nightly champion recorded in --warehouse")
    transfer.add_argument("--warehouse", type=Path, default=Path("warehouse/tamiyo.duckdb"),
                          help="with 'champion': the warehouse whose champion_history names it (default warehouse/tamiyo.duckdb)")
    transfer.add_argument("--curriculum", default="digits-only", help="its [[transfer]] tasks are evaluated (default digits-only)")
    transfer.add_argument("--task", action="append", default=[], help="only these transfer tasks (repeatable)")
    transfer.add_argument("--dataset", action="append", default=[],
                          help="also any dataset, e.g. imagefolder:/data/pets or cifar10 (repeatable)")
    transfer.add_argument("--configs", type=int, default=None, help="held-out configurations per task (default: the task's)")
    transfer.add_argument("--replicate", type=int, default=0, metavar="K", help="rerun every pair on K fresh data orders")
    transfer.add_argument("--against", action="append", default=[], metavar="CONTROLLER",
                          help="also pair the policy with this controller on the same configurations (a reference controller "
                          "name, e.g. the source tasks' best fixed schedule, 'champion', or a policy file); repeatable")  # fmt: skip
    transfer.add_argument("--fine-tune", type=int, default=0, metavar="EPISODES",
                          help="also measure fine-tuning sample efficiency: online RL on each task from the policy, up to "
                          "this many episodes (default 0: off)")  # fmt: skip
    transfer.add_argument("--fine-tune-baseline", default="",
                          help="with --fine-tune: the other initial policy to compare with ('fresh' for a fresh actor)")
    transfer.add_argument("--fine-tune-target", default=None, metavar="CONTROLLER",
                          help="with --fine-tune: a reference controller (e.g. the task's best fixed schedule, fixed:conv_heavy@1) "
                          "whose margin over the heuristic is the score to reach; the report counts the episodes to it and plots the curves")
    transfer.add_argument("--workers", type=int, default=2, help="episode worker processes (default 2)")
    transfer.add_argument("--out", type=Path, default=Path("var/transfer"), help="folder for the report (default var/transfer)")
    transfer.set_defaults(func=run_transfer)


def _load(name: str):
    from .spec import CurriculumError, CurriculumSpec

    try:
        return CurriculumSpec.load(name)
    except CurriculumError as exc:
        print(f"tamiyo curriculum: {exc}", file=sys.stderr)
        return None


def run_show(args: argparse.Namespace) -> int:
    spec = _load(args.curriculum)
    if spec is None:
        return 2
    print(f"{spec.name}: {spec.description}")
    for kind, stages in (("stage", spec.stages), ("transfer", spec.transfer)):
        for s in stages:
            missing = s.unavailable()
            rule = "" if kind == "transfer" else f", promote at low end > {s.promotion.min_margin_low:+.2f} pp or {s.promotion.max_episodes} episodes"
            print(f"  {kind} {s.name}: {s.description or '-'} ({s.episodes_per_round} episodes per round, {s.eval_configs} held-out "
                  f"configurations{rule})" + (f"\n    SKIPPED here: {missing}" if missing else ""))  # fmt: skip
    return 0


def run_run(args: argparse.Namespace) -> int:
    from ..policies.cli import tracker_from_args
    from .run import CurriculumRunConfig, run_curriculum

    spec = _load(args.curriculum)
    if spec is None:
        return 2
    try:
        config = CurriculumRunConfig(order=args.order, budget_episodes=args.budget, algorithm=args.algorithm,
                                     initial_policy=args.parent, workers=args.workers, entropy_floor=args.entropy_floor,
                                     episodes_per_iteration=args.episodes_per_iteration, record_dir=args.record_dir or None,
                                     seed=args.seed)  # fmt: skip
        tracker = None if args.no_mlflow else tracker_from_args(args)
        if args.rounds < 0:
            raise ValueError(f"--rounds must be >= 0, got {args.rounds}")
        result = run_curriculum(spec, config, args.out, tracker=tracker, max_rounds=args.rounds or None,
                                log=lambda line: print(line, flush=True))  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        print(f"tamiyo curriculum run: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {result.policy_path}")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    import dataclasses

    from .transfer import dataset_task, fine_tune_efficiency, head_to_head, write_transfer_report, zero_shot

    spec = _load(args.curriculum)
    if spec is None:
        return 2
    tasks = [t for t in spec.transfer if not args.task or t.name in args.task]
    unknown = set(args.task) - {t.name for t in spec.transfer}
    if unknown:
        print(f"tamiyo curriculum transfer: {spec.name} has no transfer task {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    tasks += [dataset_task(d) for d in args.dataset]
    if args.configs:
        tasks = [dataclasses.replace(t, eval_configs=args.configs) for t in tasks]
    try:
        subject, label = _transfer_subject(args.policy, args.warehouse)
    except ValueError as exc:
        print(f"tamiyo curriculum transfer: {exc}", file=sys.stderr)
        return 2
    if args.fine_tune and not isinstance(subject, (str, Path)):
        print(f"tamiyo curriculum transfer: --fine-tune starts online RL from a policy network; {label} is not one "
              "(a fixed schedule has no weights to fine-tune)", file=sys.stderr)  # fmt: skip
        return 2
    if args.fine_tune_target:
        from .transfer import target_controller

        try:
            if not args.fine_tune:
                raise ValueError("it needs --fine-tune EPISODES (the target is what fine-tuning has to reach)")
            target_controller(args.fine_tune_target)
        except ValueError as exc:
            print(f"tamiyo curriculum transfer: --fine-tune-target: {exc}", file=sys.stderr)
            return 2
    against = []
    for name in args.against:
        try:
            other, other_label = _transfer_subject(name, args.warehouse)
        except ValueError as exc:
            print(f"tamiyo curriculum transfer: --against: {exc}", file=sys.stderr)
            return 2
        if not hasattr(other, "kind"):  # a policy file (a learned champion's): played as a policy controller
            from ..evaluation.live import policy_controller

            other = policy_controller(other)
        against.append((other, other_label))
    results, tuning, versus = [], [], []
    for task in tasks:
        results.append(zero_shot(subject, task, args.out / "live" / task.name, workers=args.workers, replicate=args.replicate,
                                 label=label, log=lambda line: print(line, flush=True)))  # fmt: skip
        for other, other_label in against:
            versus.append(head_to_head(subject, other, task, args.out / "live" / task.name, against_label=other_label,
                                       workers=args.workers, replicate=args.replicate, label=label,
                                       log=lambda line: print(line, flush=True)))  # fmt: skip
        if args.fine_tune and not results[-1].skipped:
            starts = [str(subject)] + ([None if args.fine_tune_baseline == "fresh" else args.fine_tune_baseline] if args.fine_tune_baseline else [])
            for i, start in enumerate(starts):
                tuning.append(fine_tune_efficiency(task, start, args.out / "fine-tune" / f"{task.name}-{i}", budget_episodes=args.fine_tune,
                                                   workers=args.workers, live_dir=args.out / "live", target=args.fine_tune_target,
                                                   log=lambda line: print(line, flush=True)))  # fmt: skip
    report = write_transfer_report(results, tuning, args.out / "transfer.md", versus)
    print(f"report: {report}")
    return 0


def _transfer_subject(text: str, warehouse: Path):
    """(what to evaluate, its label): a policy file's path; the nightly champion's controller (its policy file when it
    is a trained policy, so that it can be fine-tuned); or a reference controller. ValueError naming what was tried."""
    from ..controllers import reference_controller

    if Path(text).exists():
        return str(text), str(text)
    if text == "champion":
        from ..nightly.champion import current_champion
        from ..warehouse import open_warehouse

        if not Path(warehouse).exists():
            raise ValueError(f"'champion' is read from a warehouse's champion_history, and {warehouse} does not exist (--warehouse)")
        con = open_warehouse(warehouse)
        try:
            champion = current_champion(con)
        finally:
            con.close()
        label = f"champion {champion.name} (since {champion.since or 'the start'})"
        policy = (champion.controller.policy or "").split(":", 1)[-1]  # "scheme:PATH"
        if champion.controller.kind == "policy" and policy and Path(policy).exists():
            return policy, label
        return champion.controller, label
    try:
        return reference_controller(text), text
    except ValueError as exc:
        raise ValueError(f"{text!r} is no policy file, not 'champion', and no controller name: {exc}") from None
