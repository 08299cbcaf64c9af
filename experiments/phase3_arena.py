"""Phase 3 on the arena: offline RL from the headroom study's episodes, judged off-policy and then live on
held-out arena configurations (docs/offline-rl.md).

1. The headroom study's episodes (eight controllers on the very same configurations of four Fashion-MNIST
   regimes, plus the null and fresh-order reruns) are ingested into a warehouse of their own.
2. Phase 1 imitates the heuristic on it (the heuristic's decision in every logged state).
3. Phase 3: CQL, IQL (actor starting from Phase 1) and BCQ, each with its checkpoint chosen by FQE on held-out
   episode families. The learner to take live is chosen by the same held-out FQE estimate (never by a live
   result on the evaluation configurations).
4. Off-policy estimates of every policy and reference controller on the held-out families.
5. Live, on configurations drawn from the shipped `arena` spec with a batch seed used nowhere else: the chosen
   Phase 3 policy against the heuristic, replicated on 2 fresh data orders; Phase 1, the two other Phase 3
   learners, never grow and the best fixed schedule (conv_heavy at epoch 3) on the original orders only.

    .venv/bin/python experiments/phase3_arena.py [--pairs 24] [--updates 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-seed", type=int, default=20_261_201)
    parser.add_argument("--study", default="var/headroom-screen/episodes", help="the episodes to learn from")
    parser.add_argument("--out", default="var/arena")
    parser.add_argument("--spec", default="arena", help="the spec the live configurations are drawn from")
    parser.add_argument("--fqe-updates", type=int, default=4_000)
    parser.add_argument("--imitation-epochs", type=int, default=60)
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    ROOT, STUDY = Path(args.out), Path(args.study)
    import dataclasses

    import torch

    torch.set_num_threads(1)
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.offline_rl.workflow import OfflineRunConfig, train_offline
    from tamiyo_models.ope.fqe import FQEConfig
    from tamiyo_models.ope.report import off_policy_table, write_ope_report
    from tamiyo_models.policies.imitation import ImitationConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy
    from tamiyo_models.transitions import load_transitions
    from tamiyo_models.warehouse import ingest_folder

    ROOT.mkdir(parents=True, exist_ok=True)
    warehouse = ROOT / "warehouse.duckdb"
    print(ingest_folder(STUDY, warehouse).line(), flush=True)

    phase1 = train_policy(warehouse, PolicyRunConfig(
        labels="heuristic", imitation=ImitationConfig(feature_set="base+lifecycle+task", epochs=args.imitation_epochs)),
        ROOT / "policies", log=print)  # fmt: skip
    base = OfflineRunConfig(feature_set="base+lifecycle+task", held_out=0.2, split_seed=0, parent_policy=str(phase1.policy_path),
                            selection_fqe=FQEConfig(updates=min(1_500, args.fqe_updates)),
                            report_fqe=FQEConfig(updates=args.fqe_updates))  # fmt: skip
    runs = {}
    for algorithm, learner in (("cql", dataclasses.replace(base.cql, alpha=0.1, updates=args.updates)),
                               ("iql", dataclasses.replace(base.iql, updates=args.updates)),
                               ("bcq", dataclasses.replace(base.bcq, updates=args.updates))):  # fmt: skip
        config = dataclasses.replace(base, algorithm=algorithm, **{algorithm: learner})
        runs[algorithm] = train_offline(warehouse, config, ROOT / "policies", log=print)
    chosen = max(runs, key=lambda a: runs[a].ope["fqe"]["value"])
    print(f"chosen by held-out FQE: {chosen} ({runs[chosen].ope['fqe']['value']:+.2f} pp)", flush=True)

    # Off-policy estimates on the held-out families (the same for every policy: those of the chosen learner's split).
    data = load_transitions(warehouse, "full")
    _, held = data.split_by_family(0.2, seed=0)
    policies = {"phase1": str(phase1.policy_path), **{f"phase3-{a}": str(r.policy_path) for a, r in runs.items()},
                "never": "never", "fixed:conv_heavy@3": "fixed:conv_heavy@3", "fixed:conv_heavy@6": "fixed:conv_heavy@6"}  # fmt: skip
    rows = off_policy_table(policies, held, FQEConfig(updates=args.fqe_updates), log=print)

    configs = GenerationSpec.load(args.spec).sample(args.pairs, seed=args.batch_seed)
    # Every arm was trained on (or selected with) the study's configurations: none of them may be evaluated here.
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        study_seeds = [row[0] for row in con.execute("select distinct seed from runs").fetchall()]
    # Live cost is the budget (~20-30 s an episode): the chosen learner alone is rerun on 2 fresh data orders
    # (its claim must survive them); Phase 1, the other learners and the reference controllers run on the
    # original orders only. The heuristic's episodes are shared by both calls (same folder, same run ids).
    chosen_arm = {f"phase3-{chosen}": runs[chosen].policy_path}
    live = evaluate_live_many(chosen_arm, configs, ROOT / "live", workers=args.workers, replicate=2,
                              training_seeds={name: study_seeds for name in chosen_arm})  # fmt: skip
    _write_results(ROOT, live, configs, chosen, runs, args)
    others = {"phase1": phase1.policy_path, **{f"phase3-{a}": r.policy_path for a, r in runs.items() if a != chosen}}
    references = {name: reference_controller(name) for name in ("never", "fixed:conv_heavy@3")}
    live.update(evaluate_live_many(others, configs, ROOT / "live", workers=args.workers, references=references,
                                   training_seeds={name: study_seeds for name in others}))  # fmt: skip
    live_diff = {name: result.mean_difference for name, result in live.items()}
    write_ope_report(rows, ROOT / "ope", title="Off-policy estimates on held-out arena families",
                     data_summary=held.summary(), live=live_diff)  # fmt: skip
    _write_results(ROOT, live, configs, chosen, runs, args)
    versus = head_to_head(configs, ROOT / "live", f"phase3-{chosen}", runs[chosen].policy_path, "fixed:conv_heavy@3")
    (ROOT / "versus-best-reference.json").write_text(json.dumps(versus, indent=1, default=float))
    print(versus_line(versus))
    for name, result in live.items():
        fresh = f"; fresh orders {result.fresh}" if result.fresh_orders else ""
        print(f"{name}: {result.mean_difference:+.2f} [{result.ci_low:+.2f}, {result.ci_high:+.2f}] pp vs heuristic, "
              f"W/T/L {result.wins}/{result.ties}/{result.losses}{fresh}; noise floor {result.noise_floor:.2f}")  # fmt: skip
    return 0


def head_to_head(configs, live_dir: Path, name: str, policy_path, reference: str, reference_arm=None) -> dict:
    """A policy against a reference controller on the same pairs: both were paired with the heuristic, so
    policy - reference = (policy - heuristic) - (reference - heuristic) per configuration, on the original
    data orders and, where both were rerun, on the fresh ones. Reads the episodes back from disk; runs nothing.
    `reference_arm`: the other arm's ControllerConfig when it is not a named reference controller (a policy)."""
    from tamiyo_models.common.stats import mean_ci, win_tie_loss
    from tamiyo_models.controllers import ControllerConfig, reference_controller
    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.evaluation.paired import run_paired

    # The heuristic arm exactly as live evaluation builds it (its run ids are those of the episodes on disk).
    arms = {"heuristic": ControllerConfig(kind="heuristic"), name: policy_controller(policy_path),
            reference: reference_arm or reference_controller(reference)}  # fmt: skip
    runs = run_paired(configs, arms, live_dir, replicate=2, execute=False)  # whichever fresh orders ran
    idx = list(range(len(configs)))
    out = {"policy": name, "reference": reference}
    for label, diff in (("original", runs.differences(name, idx) - runs.differences(reference, idx)),
                        ("fresh", runs.fresh_differences(name, idx) - runs.fresh_differences(reference, idx))):  # fmt: skip
        diff = diff[np.isfinite(diff)]
        if diff.size == 0:
            continue
        ci = mean_ci(diff)
        wins, ties, losses = win_tie_loss(diff)
        out[label] = {"pairs": int(diff.size), "mean": ci.mean, "low": ci.low, "high": ci.high, "wins": wins,
                      "ties": ties, "losses": losses}  # fmt: skip
    return out


def versus_line(versus: dict) -> str:
    parts = [f"{k} orders {v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}] pp, W/T/L {v['wins']}/{v['ties']}/{v['losses']}"
             for k, v in versus.items() if isinstance(v, dict)]  # fmt: skip
    return f"{versus['policy']} vs {versus['reference']} on the same pairs: " + "; ".join(parts)


def live_rows(live: dict, configs) -> dict:
    """name -> its live summary, action mix, seeds created / fossilized / culled and mean difference per regime."""
    return {name: {**result.summary(), "action_distribution": result.action_distribution["policy"],
                   "seeds": result.seeds["policy"], "regimes": _by_regime(result, configs)} for name, result in live.items()}  # fmt: skip


def _write_results(root: Path, live: dict, configs, chosen: str, runs: dict, args) -> None:
    out = live_rows(live, configs)
    out["_meta"] = {"chosen": chosen, "held_out_fqe": {a: r.ope["fqe"] for a, r in runs.items()},
                    "configs": len(configs), "batch_seed": args.batch_seed}  # fmt: skip
    (root / "results.json").write_text(json.dumps(out, indent=1, default=float))


def _by_regime(result, configs) -> dict:
    by_seed = {c.seed: c.regime() for c in configs}
    out = {}
    for pair in result.pairs:
        out.setdefault(by_seed.get(pair.seed), []).append(pair.difference)
    return {k: {"pairs": len(v), "mean_difference": sum(v) / len(v)} for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())
