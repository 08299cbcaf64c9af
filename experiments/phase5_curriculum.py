"""Phase 5 on the shipped `digits-only` curriculum: manual vs automatic order at an equal episode budget, the
margin per stage, and zero-shot transfer to Fashion-MNIST, which no policy here ever trained on.

1. The same initial policy (default: the Phase 3 IQL actor trained on digits exploration data only,
   docs/offline-rl.md) is trained with PPO through the curriculum three times at the same budget: manual
   order (promotion rule), automatic `weakest` and automatic `progress`. Evaluation episodes are shared
   (same held-out configurations per stage, the heuristic's episodes run once).
2. Every resulting policy, and the initial one, on every stage's held-out configurations (paired with the
   heuristic, test split; with --replicate K also rerun on K fresh data orders), so "through the curriculum"
   can be read against "no online training".
3. Zero-shot on the curriculum's transfer tasks (Fashion-MNIST: the arena's four regimes; CIFAR-10 where its
   files exist): the manual curriculum's policy and the initial policy, paired with the heuristic.
4. The same budget spent on the hardest digits stage alone (no curriculum), for "through the curriculum vs
   that stage alone".

    .venv/bin/python experiments/phase5_curriculum.py [--budget 64] [--orders manual,weakest,progress,alone:digits-hard]
        [--curriculum default --stages digits-short,digits-hard,fm-subset] [--replicate 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curriculum", default="digits-only")
    parser.add_argument("--initial", default="var/phase3-digits/policies/iql-tau0.7-exploration.pt")
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--orders", default="manual,weakest,progress,alone:digits-hard",
                        help="comma-separated: manual, weakest, progress, alone:STAGE (the budget on one stage only)")
    parser.add_argument("--entropy-floor", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transfer-configs", type=int, default=16)
    parser.add_argument("--stages", default="",
                        help="comma-separated: train and measure only these stages, in curriculum order (default: all)")
    parser.add_argument("--replicate", type=int, default=0, metavar="K",
                        help="rerun every zero-shot transfer pair on K fresh data orders (default 0)")
    parser.add_argument("--out", default="var/phase5-curriculum")
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    import dataclasses

    import torch

    torch.set_num_threads(1)
    from tamiyo_models.curriculum import (
        CurriculumRunConfig,
        CurriculumSpec,
        run_curriculum,
        write_transfer_report,
        zero_shot,
    )
    from tamiyo_models.evaluation import evaluate_live_many

    out = Path(args.out)
    spec = CurriculumSpec.load(args.curriculum)
    if args.stages:
        # A sub-curriculum, for stages too costly to measure here (fm-wide: 30 epochs on 6,000 images).
        spec = dataclasses.replace(spec, stages=tuple(spec.stage(name) for name in args.stages.split(",")))
    live = out / "live"
    results = {"_meta": {"curriculum": spec.name, "initial": args.initial, "budget": args.budget}}
    policies = {"initial (no online training)": args.initial}
    for order in args.orders.split(","):
        # "alone:STAGE": the same budget on that one stage, without the curriculum (manual order of one stage).
        alone = order.removeprefix("alone:") if order.startswith("alone:") else None
        folder = out / (f"alone-{alone}" if alone else order)
        done = folder / "curriculum.json"
        if done.exists() and json.loads(done.read_text()).get("finished"):  # resumable: a finished order is kept
            saved = json.loads(done.read_text())
        else:
            config = CurriculumRunConfig(order="manual" if alone else order, budget_episodes=args.budget, initial_policy=args.initial,
                                         workers=args.workers, entropy_floor=args.entropy_floor, record_dir=str(folder / "raw"),
                                         live_dir=str(live))  # fmt: skip
            run_spec = dataclasses.replace(spec, stages=(spec.stage(alone),)) if alone else spec
            saved = run_curriculum(run_spec, config, folder, log=lambda line: print(line, flush=True)).to_dict()
        results[order] = saved
        policies[f"{alone} alone" if alone else f"{order} curriculum"] = saved["policy"]
    table = {}
    for label, policy in policies.items():
        for stage in spec.stages:
            r = evaluate_live_many({"policy": policy}, stage.eval_configs_list(), live / stage.name, workers=args.workers,
                                   replicate=args.replicate)["policy"]  # fmt: skip
            fresh = str(r.fresh) if r.fresh.n else ""
            table.setdefault(label, {})[stage.name] = {"margin": r.mean_difference, "low": r.ci_low, "high": r.ci_high,
                                                       "null": r.noise_floor, "wtl": [r.wins, r.ties, r.losses], "fresh": fresh}  # fmt: skip
            print(f"{label} on {stage.name}: {r.mean_difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] pp vs heuristic "
                  f"({r.wins}/{r.ties}/{r.losses}, null {r.noise_floor:.2f}){'; fresh orders ' + fresh if fresh else ''}", flush=True)
    results["per_stage"] = table
    transfer = []
    for task in spec.transfer:
        task = dataclasses.replace(task, eval_configs=args.transfer_configs)
        for label in ("initial (no online training)", "manual curriculum"):
            if label in policies:
                r = zero_shot(policies[label], task, out / "transfer" / task.name, workers=args.workers, replicate=args.replicate,
                              log=lambda line: print(line, flush=True))
                r.task = f"{task.name} ({label})"
                transfer.append(r)
    write_transfer_report(transfer, [], out / "transfer.md")
    results["transfer"] = [dataclasses.asdict(r) for r in transfer]
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    print((out / "transfer.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
