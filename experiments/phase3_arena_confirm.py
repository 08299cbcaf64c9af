"""Confirm a Phase 3 policy picked *after* a live evaluation, on configurations that evaluation never drew.

`phase3_arena.py` takes one learner live by the held-out FQE rule and evaluates the others beside it on the
original data orders only. When one of those others looks better live, picking it on that result is selection
on the evaluation configurations, and its number is biased upwards. This script is the confirmation: a new
batch of arena configurations (a batch seed used nowhere else), the policy, the heuristic and the best fixed
schedule all rerun on 2 fresh data orders, and the head-to-head against the fixed schedule on the same pairs.

    .venv/bin/python experiments/phase3_arena_confirm.py var/arena/policies/phase3-bcq.pt [--pairs 24]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="the policy file to confirm")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-seed", type=int, default=20_261_202)
    parser.add_argument("--exclude-batch-seed", type=int, action="append", default=[20_261_201],
                        help="batch seeds of earlier live evaluations the policy was chosen on (repeatable)")
    parser.add_argument("--warehouse", default="var/arena/warehouse.duckdb", help="the policy's training warehouse")
    parser.add_argument("--spec", default="arena")
    parser.add_argument("--reference", default="fixed:conv_heavy@3", help="the fixed schedule to beat as well")
    parser.add_argument("--out", default="var/arena/confirm")
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    import duckdb
    import torch

    torch.set_num_threads(1)
    from phase3_arena import head_to_head, live_rows, versus_line

    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation import evaluate_live_many

    spec = GenerationSpec.load(args.spec)
    configs = spec.sample(args.pairs, seed=args.batch_seed)
    with duckdb.connect(args.warehouse, read_only=True) as con:
        seen = [row[0] for row in con.execute("select distinct seed from runs").fetchall()]
    for seed in args.exclude_batch_seed:
        seen += [c.seed for c in spec.sample(args.pairs, seed=seed)]
    name = Path(args.policy).stem
    out = Path(args.out)
    live = evaluate_live_many({name: args.policy}, configs, out / "live", workers=args.workers, replicate=2,
                              references={args.reference: reference_controller(args.reference)},
                              training_seeds={name: seen})  # fmt: skip
    versus = head_to_head(configs, out / "live", name, args.policy, args.reference)
    result = live_rows(live, configs)
    result["_versus"] = versus
    result["_meta"] = {"batch_seed": args.batch_seed, "excluded_batch_seeds": args.exclude_batch_seed, "pairs": len(configs)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    for label, r in live.items():
        print(f"{label}: {r.mean_difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] pp vs heuristic, "
              f"W/T/L {r.wins}/{r.ties}/{r.losses}; fresh orders {r.fresh}; noise floor {r.noise_floor:.2f}")  # fmt: skip
    print(versus_line(versus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
