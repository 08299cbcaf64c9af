"""The reference system's Phase 3 failure, reproduced, then the fix (docs/offline-rl.md).

The reference trained IQL and CQL on heuristic-only data (87% of state clusters held one action): IQL collapsed
onto rare actions (70% GERMINATE at tau 0.7, 51% CULL at tau 0.9) and CQL either copied the behaviour (high
alpha) or drifted. Here the same learners train on two data sets of the same size (transitions), on digits:

- heuristic only: the shipped `imitation` spec (the heuristic in regimes where seeds often fail);
- exploration + branching: the shipped `exploration` spec (epsilon / softmax / perturbed heuristics, random,
  and branch runs that try every action at decision points).

For each: the greedy policy's action mix on held-out states, and a live paired evaluation against the
heuristic on fresh configurations (test split, null control beside it).

    .venv/bin/python experiments/phase3_reference_failure.py [--pairs 20] [--updates 10000]

Data (about 15 minutes on 2 cores): tamiyo generate --spec imitation --episodes 120 --seed 31001 and
--spec exploration --episodes 80 --seed 31002 into var/phase3-digits/{heuristic,exploration}-raw.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path("var/phase3-digits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    import torch

    torch.set_num_threads(1)
    from tamiyo_models.agents import save_policy
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.offline_rl import CQLConfig, IQLConfig, train_cql, train_iql
    from tamiyo_models.offline_rl.base import fqe_selector
    from tamiyo_models.transitions import load_transitions
    from tamiyo_models.warehouse import ingest_folder
    from tamiyo_models.world.actions import FINE_ACTIONS

    data = {}
    for name in ("heuristic", "exploration"):
        warehouse = ROOT / f"{name}.duckdb"
        ingest_folder(ROOT / f"{name}-raw", warehouse)
        data[name] = load_transitions(warehouse, "base+lifecycle+task")
    size = min(len(d) for d in data.values())
    for name, d in data.items():  # the same number of transitions: whole families, in a seeded order
        families = np.random.default_rng(0).permutation(np.unique(d.family_ids))
        keep, total = [], 0
        for f in families:
            n = int((d.family_ids == f).sum())
            if total + n > size:
                continue
            keep.append(f)
            total += n
        data[name] = d.subset(np.isin(d.family_ids, keep))
        print(f"{name}: {len(data[name])} transitions, {data[name].summary()['stochastic_share']:.0%} drawn at random")

    learners = {
        "iql-tau0.7": lambda d, s: train_iql(d, IQLConfig(tau=0.7, updates=args.updates), selector=s, log=print),
        "iql-tau0.9": lambda d, s: train_iql(d, IQLConfig(tau=0.9, updates=args.updates), selector=s, log=print),
        "cql-alpha0.1": lambda d, s: train_cql(d, CQLConfig(alpha=0.1, updates=args.updates), selector=s, log=print),
        "cql-alpha1": lambda d, s: train_cql(d, CQLConfig(alpha=1.0, updates=args.updates), selector=s, log=print),
    }
    policies, mixes = {}, {}
    for dname, d in data.items():
        train, held = d.split_by_family(0.2, seed=1)
        selector = fqe_selector(held)  # checkpoints chosen by FQE on held-out families, never by the learner's Q
        for lname, learn in learners.items():
            result = learn(train, selector)
            import torch as t

            with t.no_grad():
                actions = result.module.act(t.as_tensor(held.observations), t.as_tensor(held.legal), greedy=True)[0].numpy()
            coarse = {}
            for a in actions:
                key = FINE_ACTIONS[a].split("_")[0]
                coarse[key] = coarse.get(key, 0) + 1 / len(actions)
            label = f"{lname} on {dname}"
            mixes[label] = {k: round(v, 3) for k, v in sorted(coarse.items())}
            print(label, mixes[label])
            policies[label] = save_policy(result.module, d.feature_names, ROOT / "policies" / f"{lname}-{dname}.pt",
                                          algorithm=lname.split("-")[0], phase="phase3")  # fmt: skip
    configs = GenerationSpec.load("nightly").sample(args.pairs, seed=31999)
    live = evaluate_live_many(policies, configs, ROOT / "live", workers=args.workers)
    out = {label: {"held_out_action_mix": mixes[label], **live[label].summary(),
                   "live_action_mix": live[label].action_distribution["policy"]} for label in policies}  # fmt: skip
    (ROOT / "results.json").write_text(json.dumps(out, indent=1, default=float))
    for label, row in out.items():
        print(f"{label}: mix {row['held_out_action_mix']}; live vs heuristic {row['live_mean_difference']:+.2f} "
              f"[{row['live_ci_low']:+.2f}, {row['live_ci_high']:+.2f}] (noise floor {row['live_noise_floor']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
