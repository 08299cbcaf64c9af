"""The `tamiyo` command line. Each subcommand documents itself: `tamiyo COMMAND --help`.

Heavy imports (torch, the warehouse, mlflow) happen inside the commands, so `tamiyo --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Subcommand groups contributed by other parts of the library: module -> its `register(subparsers)`.
_COMMAND_MODULES = (
    "tamiyo_models.warehouse.cli", "tamiyo_models.policies.cli", "tamiyo_models.coverage.cli", "tamiyo_models.evaluation.cli",
    "tamiyo_models.transitions.cli", "tamiyo_models.ope.cli", "tamiyo_models.curriculum.cli", "tamiyo_models.nightly.cli",
    "tamiyo_models.studies.cli",
)  # fmt: skip
# Commands whose module alone is registered when they are run: registering every module imports torch (some
# modules read defaults from the controllers while adding their flags), which costs `tamiyo sql` ~2 s for a
# query DuckDB answers in milliseconds. tests/test_warehouse_schema_and_cli.py checks this against `register`.
_FAST_COMMANDS = {"ingest": "tamiyo_models.warehouse.cli", "sql": "tamiyo_models.warehouse.cli",
                  "export": "tamiyo_models.warehouse.cli", "disk": "tamiyo_models.warehouse.cli"}  # fmt: skip


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must look like 2,4,8 (got {text!r})") from None


def cmd_generate(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from .controllers import reference_controller
    from .episodes.branching import BranchConfig
    from .episodes.episode import EpisodeConfig, check_device
    from .episodes.generation import GenerationSpec, SpecError, generate
    from .world.datasets import DatasetConfig, DatasetError, check_dataset_config
    from .world.host import HostConfig
    from .world.telemetry import TelemetryConfig

    if args.episodes < 1:
        print(f"tamiyo generate: --episodes must be at least 1, got {args.episodes}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"tamiyo generate: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    branching = None
    try:
        if args.spec:
            if args.data_root or args.download:
                raise ValueError("--data-root and --download go with --dataset; a spec names its data in its dataset table "
                                 "(root, download; or TAMIYO_DATA_ROOT), or a spec that extends it does")  # fmt: skip
            spec = GenerationSpec.load(args.spec)
            for regime, why in spec.unavailable.items():
                print(f"tamiyo generate: regime {regime} of spec {spec.name} skipped: {why}", file=sys.stderr)
            configs, branching = spec.sample(args.episodes, args.seed), spec.branching
        else:
            base = EpisodeConfig(
                dataset=DatasetConfig(
                    name=args.dataset,
                    root=args.data_root,
                    download=args.download,
                    train_subsample=args.train_subsample,
                    val_subsample=args.val_subsample,
                    label_noise=args.label_noise,
                ),
                host=HostConfig(widths=args.widths),
                controller=dataclasses.replace(reference_controller(args.controller), epsilon=args.epsilon, temperature=args.temperature),
                max_epochs=args.max_epochs,
                learning_rate=args.lr,
                batch_size=args.batch_size,
                telemetry=TelemetryConfig(enabled=not args.no_telemetry),
            )
            configs = [EpisodeConfig.from_dict({**base.to_dict(), "seed": args.seed + i, "data_order_seed": args.data_order_seed})
                       for i in range(args.episodes)]  # fmt: skip
            if args.branch_horizon:
                branching = BranchConfig(
                    horizon=args.branch_horizon, max_forks=args.max_forks, fork_rule=args.fork_rule, every=args.fork_every,
                    max_step=args.fork_max_step,
                )
        for dataset in {c.dataset for c in configs}:  # once, before any episode, not once per episode
            check_dataset_config(dataset)
        if args.device != "cpu":
            check_device(args.device, available=not args.ray_address)  # a Ray cluster's GPUs are its own business
            configs = [dataclasses.replace(c, device=args.device) for c in configs]
    except (SpecError, DatasetError, ValueError) as exc:
        print(f"tamiyo generate: {exc}", file=sys.stderr)
        return 2

    out = Path(args.out)
    ray_config = None
    if args.ray_address:
        from .episodes.distributed import RayConfig

        try:
            ray_config = RayConfig(args.ray_address, args.cpus_per_episode, args.gpus_per_episode)
        except ValueError as exc:
            print(f"tamiyo generate: {exc}", file=sys.stderr)
            return 2
        where = f"on the Ray cluster at {args.ray_address}"
    else:
        where = f"with {args.workers} worker(s)"
    print(f"generating {len(configs)} episodes into {out} {where}", file=sys.stderr)
    bar = tqdm(total=len(configs), unit="episode", file=sys.stderr, disable=args.quiet)

    def report(result) -> None:
        bar.write(result.summary_line(), file=sys.stderr)
        bar.update(1)

    results = generate(
        configs, out, workers=args.workers, on_result=report, branching=branching,
        executor="ray" if ray_config else "local", ray=ray_config,
    )  # fmt: skip
    bar.close()
    failed = [r for r in results if r.status != "complete"]
    done = [r for r in results if r.status == "complete"]
    if done:
        mean_final = sum(r.final_val_accuracy for r in done) / len(done)
        fossilized = sum(r.seeds_fossilized for r in done)
        branches = sum(r.branches for r in done)
        print(
            f"{len(done)} complete, {len(failed)} failed; mean final accuracy {mean_final:.2f}%, "
            f"{fossilized} seeds fossilized" + (f", {branches} branch runs" if branches else "") + f"; runs in {out}",
            file=sys.stderr,
        )
    for r in failed:
        print(f"FAILED {r.run_id}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_story(args: argparse.Namespace) -> int:
    from .episodes.story import episode_story
    from .world.rawrun import RawRunError

    path = Path(args.run)
    try:
        head = path.open("rb").read(4096).lstrip()
    except OSError as exc:
        print(f"tamiyo story: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if head.startswith(b"{") and b'"tamiyo-raw-run"' not in head.split(b"\n", 1)[0]:
        print(f"tamiyo story: {path} is not a raw run (no tamiyo-raw-run header on line 1); a legacy reference "
              f"episode or pack is read by `tamiyo ingest`, then queried with `tamiyo sql`", file=sys.stderr)  # fmt: skip
        return 2
    try:
        print(episode_story(args.run))
    except (RawRunError, OSError) as exc:
        print(f"tamiyo story: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_shipped(args: argparse.Namespace) -> int:
    from .controllers.shipped import ShippedPolicyError, shipped_policies, shipped_policy

    try:
        if args.name:
            print(shipped_policy(args.name).card.read_text(encoding="utf-8"))
            return 0
        policies = shipped_policies()
    except ShippedPolicyError as exc:
        print(f"tamiyo shipped: {exc}", file=sys.stderr)
        return 2
    if not policies:
        print("no policy is shipped with this version")
    for policy in policies:
        print(f"{policy.label:<32} spec {policy.spec:<12} {policy.summary}\n{'':<32} card {policy.card}, study {policy.study}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command` one of _FAST_COMMANDS, only that command's module is registered."""
    parser = argparse.ArgumentParser(prog="tamiyo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="train host networks under a controller and write raw telemetry runs",
        description="Run episodes (one host trained under one controller each) and write one raw run "
        "file per episode. Either fixed settings from the flags, or diverse ones sampled from --spec.",
    )
    g.add_argument("--episodes", type=int, default=4, help="number of episodes (default 4)")
    g.add_argument("--out", default="var/raw", help="landing folder for raw run files (default var/raw)")
    g.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    g.add_argument("--device", default="cpu",
                   help="where each episode trains: cpu (default), cuda or cuda:<index>; with --workers N, N episodes share the GPU")
    g.add_argument("--seed", type=int, default=0, help="seed of the batch; episode i uses seed+i (default 0)")
    shipped = ", ".join(sorted(p.stem for p in (Path(__file__).parent / "specs").glob("*.toml")))
    g.add_argument("--spec", help=f"generation spec (TOML/JSON file, or a shipped name: {shipped})")
    g.add_argument("--dataset", default="digits",
                   help="digits | fashion-mnist | cifar10 | cifar100 | synthetic | synthetic-cifar | imagefolder:PATH")  # fmt: skip
    g.add_argument("--data-root", help="folder with downloaded datasets (torchvision layout)")
    g.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    g.add_argument("--train-subsample", type=int, help="keep this many training examples (stratified)")
    g.add_argument("--val-subsample", type=int,
                   help="keep this many validation images (what the controller watches; the test split stays whole)")
    g.add_argument("--label-noise", type=float, default=0.0, help="share of training labels flipped")
    g.add_argument("--max-epochs", type=int, default=25, help="epochs per episode = decisions (default 25)")
    g.add_argument("--widths", type=_widths, default=(2, 4, 8), help="host channels per stage (default 2,4,8)")
    g.add_argument("--lr", type=float, default=0.05, help="host learning rate (default 0.05)")
    g.add_argument("--batch-size", type=int, default=64, help="host training batch size (default 64)")
    g.add_argument("--controller", default="heuristic",
                   help="heuristic (default), never, eager, random, fixed:<blueprint>@<epoch>[:slot<k>] (e.g. fixed:conv_heavy@6), "
                   "heuristic:<blueprint>[+...], epsilon-heuristic, softmax-heuristic, perturbed-heuristic")  # fmt: skip
    g.add_argument("--data-order-seed", type=int,
                   help="change only the order of training batches (same initial weights): a null control")
    g.add_argument("--epsilon", type=float, default=0.1, help="exploration rate of epsilon-heuristic")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax-heuristic temperature (higher explores more)")
    g.add_argument("--branch-horizon", type=int, default=0,
                   help="fork branch runs (one per legal action) at decision points, each this many steps; 0 = off")  # fmt: skip
    g.add_argument("--max-forks", type=int, default=3, help="forks per episode when branching (default 3)")
    g.add_argument("--fork-rule", default="decision-points", choices=["decision-points", "every", "random"],
                   help="where to fork: states where the action is in question (default), every --fork-every "
                   "steps, or --max-forks steps drawn at random per episode")  # fmt: skip
    g.add_argument("--fork-every", type=int, default=5, help="with --fork-rule every: steps between forks (default 5)")
    g.add_argument("--fork-max-step", type=int, default=None, metavar="STEP",
                   help="the last step a fork may start at (default: any)")  # fmt: skip
    g.add_argument("--no-telemetry", action="store_true", help="skip the V2 research telemetry")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--ray-address", metavar="ADDRESS",
                   help="run the episodes as tasks on a Ray cluster instead of local workers: local (a cluster "
                   "inside this process), auto, HOST:PORT or ray://HOST:PORT; --out must be a path every node sees")  # fmt: skip
    g.add_argument("--cpus-per-episode", type=float, default=1.0, help="CPUs each Ray episode task reserves (default 1)")
    g.add_argument("--gpus-per-episode", type=float, default=0.0,
                   help="GPUs each Ray episode task reserves; fractions share a GPU (default 0)")  # fmt: skip
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("story", help="tell what happened in one raw run, epoch by epoch")
    s.add_argument("run", help="a raw run file (.jsonl)")
    s.set_defaults(func=cmd_story)

    p = sub.add_parser("shipped", help="list the policies shipped with the package, or print one's model card",
                       description="The best policies found so far ship as files with a model card (what each is, what it "
                       "learned from, what was measured, where it stops). Run one with `tamiyo evaluate shipped:NAME` or "
                       "name it among the references of any comparison; the first night of a warehouse takes those "
                       "shipped for its spec as challengers.")  # fmt: skip
    p.add_argument("name", nargs="?", help="print this policy's model card")
    p.set_defaults(func=cmd_shipped)

    for module_name in (_FAST_COMMANDS[command],) if command in _FAST_COMMANDS else _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not module_name.startswith(exc.name):
                raise  # a missing dependency inside the module, not a missing module
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .common.shutdown import exit_on_sigterm

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"] and len(argv) > 1 and argv[1] not in ("-h", "--help") and argv[1].startswith("-"):
        # The form before each phase had its own subcommand (and only its own flags): say what to write instead.
        at = argv.index("--phase") + 1 if "--phase" in argv else 0
        phase = argv[at] if 0 < at < len(argv) else "{phase1,phase2,phase3,phase4}"
        print(f"tamiyo train: the phase is a subcommand, named first: tamiyo train {phase} [options] "
              f"(tamiyo train {phase} --help lists its options)", file=sys.stderr)  # fmt: skip
        return 2
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    exit_on_sigterm()  # `kill PID` stops a long command the way Ctrl-C does: its workers are closed, not orphaned
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
