"""Phase 4 on the arena: online RL in live Fashion-MNIST episodes, then the policy live on held-out configurations.

1. Train one online learner (PPO by default) in episodes drawn from the shipped `arena` spec, starting from a
   saved policy (default: the Phase 3 IQL actor of docs/offline-rl.md, the least deterministic of the offline
   policies), with an entropy floor so that it keeps trying actions its initialisation rarely takes. A copy
   of the checkpoint is kept every `--snapshot-every` episodes for the sample-efficiency curve. The run
   resumes from its last checkpoint when restarted.
2. Live, on the 24 configurations of batch seed 20261202 (drawn by `phase3_arena_confirm.py`, which no
   Phase 4 choice was made on): every snapshot paired with the heuristic on the original data orders; the
   final policy (the pre-registered one: the last, whatever the snapshots score) also rerun on 2 fresh data
   orders, and head to head with the best fixed schedule and the Phase 3 BCQ policy on the same pairs.
   Episodes already on disk for these configurations (heuristic, fixed schedule, BCQ, null reruns) are reused.

    .venv/bin/python experiments/phase4_arena.py [--episodes 320] [--eval-only]

Starting from BCQ instead (`--initial var/arena/policies/phase3-bcq.pt --distil 0.05`): BCQ gives probability 0 to
every action its data does not support (94% of arena states have one supported action), so the run first
distils it into a stochastic actor on the warehouse's states (online_rl/distil.py) and starts from that student;
the curve's first point (e0000) is the student, live.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="ppo", choices=("reinforce", "a2c", "ppo"))
    parser.add_argument("--initial", default="var/arena/policies/phase3-iql.pt", help="initial actor (policy file)")
    parser.add_argument("--distil", type=float, default=None, metavar="SMOOTHING",
                        help="start from a stochastic student of --initial instead (label smoothing SMOOTHING, e.g. "
                             "0.05), distilled on the warehouse's states: for a near-deterministic initial policy "
                             "such as BCQ, whose unsupported actions have probability 0")  # fmt: skip
    parser.add_argument("--episodes", type=int, default=320)
    parser.add_argument("--episodes-per-iteration", type=int, default=16)
    parser.add_argument("--entropy-floor", type=float, default=0.3)
    parser.add_argument("--kl-coef", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=None, help="the learner's (default: its config's, 3e-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot-every", type=int, default=64)
    parser.add_argument("--warehouse", default="var/arena/warehouse.duckdb", help="the initial policy's training data")
    add_evaluation_args(parser, "var/phase4-arena-ALGORITHM-sSEED")
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()  # kill PID closes the episode workers instead of orphaning them
    import torch

    torch.set_num_threads(1)
    tag = "" if args.learning_rate is None else f"-lr{args.learning_rate:g}"
    if args.distil is not None:
        tag += f"-from-{Path(args.initial).stem.removeprefix('phase3-')}"
    out = Path(args.out or f"var/phase4-arena-{args.algorithm}{tag}-s{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    if args.distil is not None:
        args.initial = str(distilled_initial(args, out))  # every later step (training, the e0000 point) uses the student
    if not args.eval_only:
        train(args, out)
    evaluate(args, out)
    return 0


def add_evaluation_args(parser, default_out: str) -> None:
    """The live evaluation's settings, shared by the Phase 4 arena experiments (this one and phase4_vine.py)."""
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--batch-seed", type=int, default=20_261_202)
    parser.add_argument("--live-dir", default="var/arena/confirm/live", help="episodes of these configurations (reused)")
    parser.add_argument("--reference", default="fixed:conv_heavy@3")
    parser.add_argument("--phase3", default="var/arena/policies/phase3-bcq.pt", help="the best Phase 3 policy")
    parser.add_argument("--phase1", default="var/arena/policies/phase1-base+lifecycle+task.pt", help="the Phase 1 policy")
    parser.add_argument("--out", default=None, help=f"default {default_out}")
    parser.add_argument("--eval-only", action="store_true")


def distilled_initial(args, out: Path) -> Path:
    """The student of --initial (made once; a resumed run reuses it), trained on the warehouse's states, the
    data the teacher itself was trained on: no evaluation configuration is involved."""
    from tamiyo_models.online_rl.distil import DistilConfig, distil_policy_file

    return distil_policy_file(args.initial, args.warehouse, out / "initial-distilled.pt",
                              DistilConfig(smoothing=args.distil, seed=args.seed))


def _config(args, out: Path):
    import dataclasses

    from tamiyo_models.online_rl.workflow import OnlineRunConfig

    run = OnlineRunConfig(algorithm=args.algorithm, spec="arena", workers=args.workers, initial_policy=args.initial,
                          record_dir=str(out / "raw"))  # fmt: skip
    learner = dataclasses.replace(run.learner, episodes=args.episodes, episodes_per_iteration=args.episodes_per_iteration,
                                  entropy_floor=args.entropy_floor, kl_coef=args.kl_coef, seed=args.seed)  # fmt: skip
    if args.learning_rate is not None:
        learner = dataclasses.replace(learner, learning_rate=args.learning_rate)
    return dataclasses.replace(run, **{args.algorithm: learner})


def train(args, out: Path) -> None:
    from tamiyo_models.online_rl.workflow import train_online_policy

    config = _config(args, out)
    checkpoint = out / f"phase4-{args.algorithm}-checkpoint" / "checkpoint.pt"
    snapshots = out / "snapshots"
    snapshots.mkdir(exist_ok=True)

    def snapshot(row: dict) -> None:
        if row["episodes_used"] % args.snapshot_every == 0 or row["episodes_used"] >= args.episodes:
            shutil.copy(checkpoint, snapshots / f"checkpoint-e{row['episodes_used']:04d}.pt")

    with open(out / "train.log", "a") as log_file:
        def log(line: str) -> None:
            print(line, flush=True)
            print(line, file=log_file, flush=True)

        train_online_policy(config, out, log=log, on_iteration=snapshot)


def snapshot_policies(args, out: Path) -> dict[str, Path]:
    """Each kept checkpoint as a policy file (label ALGORITHM-eEPISODES -> path); the initial policy is e0000."""
    import torch

    from tamiyo_models.agents.saved import save_policy
    from tamiyo_models.online_rl.workflow import build_agent

    config = _config(args, out)
    policies = {f"{args.algorithm}-e0000": Path(args.initial)}  # the starting point of the curve
    for ckpt in sorted((out / "snapshots").glob("checkpoint-e*.pt")):
        episodes = int(ckpt.stem.split("-e")[1])
        path = out / "snapshots" / f"{args.algorithm}-e{episodes:04d}.pt"
        if not path.exists():
            agent, features, parent = build_agent(config)
            agent.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["agent"])
            save_policy(agent, features, path, algorithm=args.algorithm, phase="phase4", parent=parent,
                        metadata={"episodes": episodes, "snapshot_of": str(ckpt)})  # fmt: skip
        policies[f"{args.algorithm}-e{episodes:04d}"] = path
    return policies


def training_seeds(args, out: Path) -> list[int]:
    import duckdb

    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    seeds = [read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(out / "raw")]
    with duckdb.connect(args.warehouse, read_only=True) as con:
        seeds += [row[0] for row in con.execute("select distinct seed from runs").fetchall()]
    return seeds


def evaluate(args, out: Path) -> None:
    from phase3_arena import head_to_head, live_rows

    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.evaluation.live import policy_controller

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    snapshots = snapshot_policies(args, out)
    if len(snapshots) < 2:
        raise SystemExit(f"no snapshots under {out / 'snapshots'}: train first")
    final = max(snapshots)
    seeds = training_seeds(args, out)
    live_dir = Path(args.live_dir)
    # The curve: every snapshot on the original orders (the final one also on fresh orders, below).
    curve = evaluate_live_many({k: v for k, v in snapshots.items() if k != final}, configs, live_dir,
                               workers=args.workers, training_seeds={k: seeds for k in snapshots})  # fmt: skip
    live = evaluate_live_many({final: snapshots[final], "phase3-bcq": args.phase3}, configs, live_dir,
                              workers=args.workers, replicate=2, training_seeds={final: seeds},
                              references={args.reference: reference_controller(args.reference)})  # fmt: skip
    result = live_rows({**curve, **live}, configs)
    result["_versus"] = [head_to_head(configs, live_dir, final, snapshots[final], args.reference),
                         head_to_head(configs, live_dir, final, snapshots[final], "phase3-bcq", policy_controller(args.phase3))]  # fmt: skip
    result["_meta"] = {"batch_seed": args.batch_seed, "pairs": len(configs), "final": final,
                       "config": _config(args, out).to_dict(), "training_seeds": len(seeds)}  # fmt: skip
    result["_training"] = training_summary(out / f"phase4-{args.algorithm}.pt")
    result["_behaviour"] = behaviour(configs, live_dir, {final: policy_controller(snapshots[final])}, out, args.reference)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    plot_curve({**curve, **live}, final, args, out / "sample-efficiency.png")
    print_live({**curve, **live}, result["_versus"])


def print_live(live: dict, versus: list) -> None:
    from phase3_arena import versus_line

    for label, r in live.items():
        fresh = f"; fresh orders {r.fresh}" if r.fresh.n else ""
        print(f"{label}: {r.mean_difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] pp vs heuristic, "
              f"W/T/L {r.wins}/{r.ties}/{r.losses}{fresh}; noise floor {r.noise_floor:.2f}")  # fmt: skip
    for line in versus:
        print(versus_line(line))


def behaviour(configs, live_dir: Path, arms: dict, out: Path, reference: str = "fixed:conv_heavy@3") -> dict:
    """What the policy did on the held-out configurations, next to the heuristic and the fixed schedule
    `reference` on the same ones: per regime, seeds created / culled, the epoch of the first germination, the blueprints grafted,
    and the paired difference; and the two episodes' stories, side by side, of the configuration where the
    policy's choice differed most from the heuristic's in outcome."""
    import numpy as np

    from tamiyo_models.controllers import ControllerConfig, reference_controller
    from tamiyo_models.episodes.story import episode_story
    from tamiyo_models.evaluation.paired import run_paired
    from tamiyo_models.world.rawrun import read_raw_run

    arms = {"heuristic": ControllerConfig(kind="heuristic"), reference: reference_controller(reference), **arms}
    runs = run_paired(configs, arms, live_dir, replicate=0, execute=False)
    table: dict = {}
    for (i, arm, order), outcome in runs.outcomes.items():
        if order != 0 or outcome.result.status != "complete":
            continue
        steps = read_raw_run(outcome.result.path).steps
        germinations = [(s["epoch"], s["action"]["blueprint"]) for s in steps if s["action"]["coarse"] == "GERMINATE"]
        row = table.setdefault(arm, {}).setdefault(configs[i].regime(), {"episodes": 0, "seeds": 0, "culls": 0, "first_germination": [],
                                                                        "blueprints": {}, "test": []})  # fmt: skip
        row["episodes"] += 1
        row["seeds"] += len(germinations)
        row["culls"] += sum(s["action"]["coarse"] == "CULL" for s in steps)
        row["test"].append(outcome.result.final_test_accuracy)
        if germinations:
            row["first_germination"].append(germinations[0][0])
        for _, blueprint in germinations:
            row["blueprints"][blueprint] = row["blueprints"].get(blueprint, 0) + 1
    for arm_rows in table.values():
        for row in arm_rows.values():
            first = row.pop("first_germination")
            row["median_first_germination_epoch"] = float(np.median(first)) if first else None
            row["germinated_share"] = len(first) / row["episodes"]
            row["mean_test"] = float(np.mean(row.pop("test")))
    # The configuration with the largest |policy - heuristic| on test: both stories, side by side.
    name = next(iter(a for a in arms if a not in ("heuristic", reference)))
    idx = list(range(len(configs)))
    diff = runs.differences(name, idx)
    if np.isfinite(diff).any():
        i = int(np.nanargmax(np.abs(diff)))
        stories = out / "stories.md"
        stories.write_text(f"# Configuration {i} ({configs[i].regime()}): {name} - heuristic = {diff[i]:+.2f} pp on test\n\n"
                           f"## {name}\n\n```\n{episode_story(runs.outcomes[(i, name, 0)].result.path)}\n```\n\n"
                           f"## heuristic\n\n```\n{episode_story(runs.outcomes[(i, 'heuristic', 0)].result.path)}\n```\n")  # fmt: skip
    return table


def training_summary(policy_path: Path) -> dict:
    """The learning curve and the reward-hacking watch, per iteration, from the trained policy's metadata."""
    from tamiyo_models.agents.saved import load_policy

    if not policy_path.exists():
        return {}
    meta = load_policy(policy_path)[1]["metadata"]
    keys = ("episodes_used", "mean_return", "entropy", "kl_initial", "approx_kl", "clip_fraction", "germinations_per_episode",
            "culls_per_episode", "ended_in_training_share", "unfinished_blend_share", "positive_culls_per_episode",
            "steps_per_second", "learner_share")  # fmt: skip
    history = [{k: row.get(k) for k in keys} for row in json.loads(meta.get("history") or "[]")]
    return {"alerts": meta.get("alerts") or [], "history": history}


def plot_curve(live: dict, final: str, args, path: Path) -> None:
    """Paired test-score difference vs the heuristic against training episodes, with its interval, the null
    control's spread as a band, and the fixed schedule's and the Phase 3 policy's levels on the same pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((int(name.rsplit("-e", 1)[1]), r) for name, r in live.items() if name.startswith(f"{args.algorithm}-e"))
    if not points:
        return
    x = [e for e, _ in points]
    y = [r.mean_difference for _, r in points]
    err = [[r.mean_difference - r.ci_low for _, r in points], [r.ci_high - r.mean_difference for _, r in points]]
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = live[final].noise_floor
    ax.axhspan(-floor, floor, color="0.85", label=f"null control (heuristic, new data order): +-{floor:.2f} pp RMS")
    ax.axhline(0, color="k", lw=1, label="heuristic")
    for name, style in ((args.reference, "--"), ("phase3-bcq", ":")):
        if name in live:
            ax.axhline(live[name].mean_difference, ls=style, color="C1" if style == "--" else "C2", label=f"{name} (same pairs)")
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color="C0", label=f"{args.algorithm.upper()} snapshot, 95% CI")
    ax.set_xlabel("training episodes consumed")
    ax.set_ylabel("test accuracy - heuristic (pp, paired)")
    ax.set_title(f"Phase 4 {args.algorithm.upper()} on the arena: {live[final].summary()['live_pairs']} held-out configurations")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
