"""Phase 4 on the arena with branching policy iteration (online_rl/vine.py), then the policy live on held-out
configurations.

1. Train: parent episodes drawn from the shipped `arena` spec (training batch seeds only), the current policy
   acting greedily; at random steps every other legal action is branched to the end of the episode with the
   same data order (common random numbers); the policy is fine-tuned towards the measured better action.
   Default start: the stochastic student of Phase 3's BCQ (docs/online-rl.md), which PPO did not improve on
   in 128 episodes.
2. Live, on the 24 configurations of batch seed 20261202 (no choice here was made on them): the start and every
   iteration's policy paired with the heuristic on the original data orders; the final policy (the last
   iteration, fixed in advance, whatever the others score) also on 2 fresh data orders, and head to head with
   the fixed schedule, BCQ (Phase 3) and the Phase 1 policy on the same pairs. Episodes already on disk for
   these configurations are reused.

    .venv/bin/python experiments/phase4_vine.py [--iterations 3] [--episodes-per-iteration 16] [--eval-only]

Starting from the best reference controller instead (docs/online-rl.md, "Starting from the fixed schedule"):
`--initial fixed:conv_heavy@1 --distil 0.05 --fork-min-step 1 --fork-max-step 12` distils the schedule into a
stochastic actor on the warehouse's states (online_rl/distil.py's ScheduleTeacher) and lets the forks also try
the first decision (step 1, epoch 0: a graft before any training) besides the graft's own step (2, epoch 1) and
the lifecycle steps after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phase4_arena import add_evaluation_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--initial", default="var/phase4-arena-ppo-from-bcq-s0/initial-distilled.pt",
                        help="initial actor (policy file; default: BCQ's student), or with --distil a policy file or "
                        "fixed schedule (fixed:conv_heavy@1) whose student starts")  # fmt: skip
    parser.add_argument("--distil", type=float, default=None, metavar="SMOOTHING",
                        help="start from a stochastic student of --initial (label smoothing, e.g. 0.05), distilled on "
                        "--warehouse's states")  # fmt: skip
    parser.add_argument("--warehouse", default="var/arena/warehouse.duckdb", help="the states a student learns on")
    parser.add_argument("--fork-min-step", type=int, default=2, help="the first step a fork may start at (default 2)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--episodes-per-iteration", type=int, default=16)
    parser.add_argument("--forks", type=int, default=2, help="forks per parent episode")
    parser.add_argument("--margin", type=float, default=0.25, help="pp an alternative must win by to become the label")
    parser.add_argument("--val-subsample", type=int, default=None,
                        help="training episodes' validation split size (default: the arena's 2,000)")
    parser.add_argument("--fork-max-step", type=int, default=None, help="the last step a fork may start at (default: any)")
    parser.add_argument("--confirm-orders", type=int, default=0,
                        help="new data orders each candidate label is replayed on before it counts (default 0)")
    parser.add_argument("--label-rule", choices=("fork", "region"), default="fork",
                        help="fork: each fork's winner at that state; region: pooled evidence per region (fork_evidence.py). "
                        "The default stays fork here so the commands in docs/online-rl.md reproduce their runs; the "
                        "library's and `tamiyo train`'s default is region")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    add_evaluation_args(parser, "var/phase4-arena-vine[-valN-marginM]-sSEED")
    parser.add_argument("--train-only", action="store_true", help="no live evaluation (e.g. phase4_from_schedule.py's instead)")
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    import torch

    torch.set_num_threads(1)
    from tamiyo_models.online_rl.distil import is_schedule
    from tamiyo_models.online_rl.vine import VineConfig, train_vine

    tag = "" if args.val_subsample is None else f"-val{args.val_subsample}-margin{args.margin:g}"
    tag += "" if args.fork_min_step == 2 else f"-forksfrom{args.fork_min_step}"
    tag += "" if args.fork_max_step is None else f"-forksto{args.fork_max_step}"
    tag += "" if not args.confirm_orders else f"-confirm{args.confirm_orders}"
    tag += "" if args.label_rule == "fork" else f"-{args.label_rule}"
    tag += "" if args.distil is None or not is_schedule(args.initial) else f"-from-{args.initial.removeprefix('fixed:')}"
    out = Path(args.out or f"var/phase4-arena-vine{tag}-s{args.seed}")
    config = VineConfig(iterations=args.iterations, episodes_per_iteration=args.episodes_per_iteration,
                        forks_per_episode=args.forks, margin=args.margin, val_subsample=args.val_subsample, seed=args.seed,
                        min_step=args.fork_min_step, max_step=args.fork_max_step, confirm_orders=args.confirm_orders,
                        label_rule=args.label_rule)  # fmt: skip
    if args.distil is not None:  # every later step (training, the vine-i00 point) uses the student
        from phase4_arena import distilled_initial

        args.initial = str(distilled_initial(args, out))
    if not args.eval_only:
        train_vine(args.initial, out, config, spec="arena", workers=args.workers, log=lambda line: print(line, flush=True))
    if not args.train_only:
        evaluate(args, out, config)
    return 0


def evaluate(args, out: Path, config) -> None:
    from phase3_arena import head_to_head, live_rows
    from phase4_arena import behaviour, print_live

    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    iterations = {f"vine-i{k:02d}": out / "policies" / f"vine-iter-{k:02d}.pt" for k in range(1, config.iterations + 1)}
    missing = [str(p) for p in iterations.values() if not p.exists()]
    if missing:
        raise SystemExit(f"not trained yet: {', '.join(missing)}")
    final = max(iterations)
    seeds = [read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(out / "raw")]
    live_dir = Path(args.live_dir)
    curve = evaluate_live_many({"vine-i00": args.initial, **{k: v for k, v in iterations.items() if k != final}}, configs,
                               live_dir, workers=args.workers, training_seeds={k: seeds for k in iterations})  # fmt: skip
    live = evaluate_live_many({final: iterations[final], "phase3-bcq": args.phase3, "phase1": args.phase1}, configs, live_dir,
                              workers=args.workers, replicate=2, training_seeds={final: seeds},
                              references={args.reference: reference_controller(args.reference)})  # fmt: skip
    result = live_rows({**curve, **live}, configs)
    result["_versus"] = [head_to_head(configs, live_dir, final, iterations[final], args.reference),
                         head_to_head(configs, live_dir, final, iterations[final], "phase3-bcq", policy_controller(args.phase3)),
                         head_to_head(configs, live_dir, final, iterations[final], "phase1", policy_controller(args.phase1)),
                         head_to_head(configs, live_dir, final, iterations[final], "vine-i00 (start)", policy_controller(args.initial))]  # fmt: skip
    result["_meta"] = {"batch_seed": args.batch_seed, "pairs": len(configs), "final": final, "initial": args.initial,
                       "config": config.to_dict(), "training_seeds": len(seeds)}  # fmt: skip
    result["_training"] = json.loads((out / "vine-history.json").read_text())["history"]
    result["_behaviour"] = behaviour(configs, live_dir, {final: policy_controller(iterations[final])}, out, args.reference)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    print_live({**curve, **live}, result["_versus"])


if __name__ == "__main__":
    sys.exit(main())
