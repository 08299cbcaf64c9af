"""Phase 4 sample efficiency across algorithms and training seeds: every `phase4_arena.py` run found, on one plot
and one table, plus the algorithms head to head at the largest budget they all reached.

Reads each run's results.json (written by `experiments/phase4_arena.py`: live test-score margins over the
heuristic on the 24 held-out configurations of batch seed 20261202, one per kept snapshot) and the episodes in
the shared live folder; runs no episode. Writes the plot, a Markdown table and a JSON of the same numbers.

    .venv/bin/python experiments/phase4_sample_efficiency.py [--runs 'var/phase4-arena-*-s*']
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# A snapshot "is at the heuristic's level" when its paired margin is >= 0 and its interval's lower end is above
# the Phase 5 transfer bar (-0.25 pp); it "beats the heuristic" when the lower end is above 0.
LEVEL_LOW = -0.25
COLOURS = {"reinforce": "C2", "a2c": "C1", "ppo": "C0"}
START_COLOURS = {"from-bcq": "C9"}  # a run tagged with another start than the IQL actor gets its own colour


def load_runs(pattern: str) -> list[dict]:
    runs = []
    for folder in sorted(Path().glob(pattern)):
        match = re.fullmatch(r".*-(reinforce|a2c|ppo)((?:-[^-]+)*)-s(\d+)", folder.name)  # ALGORITHM[-TAG]-sSEED
        results = folder / "results.json"
        if not match or not results.exists():
            continue
        algorithm, tag, seed = match.group(1), match.group(2).lstrip("-"), int(match.group(3))
        data = json.loads(results.read_text())
        points = sorted((int(k.rsplit("-e", 1)[1]), v) for k, v in data.items() if k.startswith(f"{algorithm}-e"))
        runs.append({"folder": folder, "algorithm": algorithm, "tag": tag, "seed": seed, "data": data,
                     "points": [(e, v["live_mean_difference"], v["live_ci_low"], v["live_ci_high"]) for e, v in points],
                     "final": data["_meta"]["final"]})  # fmt: skip
    return runs


def label(run: dict) -> str:
    return run["algorithm"].upper() + (f" {run['tag']}" if run["tag"] else "")


def first_episodes(points, low_bar: float, mean_bar: float | None) -> int | None:
    for episodes, mean, low, _ in points:
        if low > low_bar and (mean_bar is None or mean >= mean_bar):
            return episodes
    return None


def snapshot_path(run: dict, episodes: int) -> Path:
    if episodes == 0:
        return Path(run["data"]["_meta"]["config"]["initial_policy"])
    return run["folder"] / "snapshots" / f"{run['algorithm']}-e{episodes:04d}.pt"


def head_to_heads(runs: list[dict], budget: int, args) -> list[dict]:
    """Every pair of runs of different algorithms, their snapshots at `budget` episodes, on the same pairs."""
    from phase3_arena import head_to_head

    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.generation import GenerationSpec

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if label(a) == label(b):
                continue
            name_a, name_b = (f"{label(r).lower().replace(' ', '-')}-s{r['seed']}-e{budget:04d}" for r in (a, b))
            path_a, path_b = snapshot_path(a, budget), snapshot_path(b, budget)
            versus = head_to_head(configs, Path(args.live_dir), name_a, path_a, name_b, policy_controller(path_b))
            out.append(versus)
    return out


def pooled_over_seeds(runs: list[dict], args) -> list[dict]:
    """Per algorithm with 2 or more training seeds, at every budget all its seeds reached: the paired difference
    from the heuristic averaged over the seeds on each configuration, then its mean and bootstrap interval over
    configurations (the configuration is the unit: seeds scored on the same one are not independent pairs)."""
    import numpy as np

    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.evaluation.paired import run_paired
    from tamiyo_models.generation import GenerationSpec
    from tamiyo_models.stats import mean_ci

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    idx = list(range(len(configs)))
    rows = []
    for name in sorted({label(r) for r in runs}):
        group = [r for r in runs if label(r) == name]
        if len(group) < 2:
            continue
        budgets = sorted(set.intersection(*({e for e, *_ in r["points"]} for r in group)))
        for budget in budgets:
            arms = {"heuristic": ControllerConfig(kind="heuristic")}
            arms.update({f"s{r['seed']}": policy_controller(snapshot_path(r, budget)) for r in group})
            paired = run_paired(configs, arms, Path(args.live_dir), replicate=0, execute=False)
            per_seed = np.array([paired.differences(f"s{r['seed']}", idx) for r in group])
            ci = mean_ci(np.nanmean(per_seed, axis=0))
            rows.append({"algorithm": name, "seeds": [r["seed"] for r in group], "episodes": budget, "mean": ci.mean,
                         "low": ci.low, "high": ci.high})  # fmt: skip
    return rows


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    floors = [v["live_noise_floor"] for r in runs for k, v in r["data"].items() if not k.startswith("_")]
    floor = float(sum(floors) / len(floors))
    ax.axhspan(-floor, floor, color="0.88", label=f"null control (heuristic, new data order): +-{floor:.2f} pp RMS")
    ax.axhline(0, color="k", lw=1, label="heuristic")
    reference = runs[0]["data"]
    for name, style, colour in (("fixed:conv_heavy@3", "--", "C3"), ("phase3-bcq", ":", "C4")):
        if name in reference:
            ax.axhline(reference[name]["live_mean_difference"], ls=style, color=colour, label=f"{name} (same pairs)")
    for k, run in enumerate(runs):
        x = [e + 2.5 * (k - (len(runs) - 1) / 2) for e, *_ in run["points"]]  # dodge: the bars would overlap
        y = [m for _, m, _, _ in run["points"]]
        err = [[m - lo for _, m, lo, _ in run["points"]], [hi - m for _, m, _, hi in run["points"]]]
        start = next((c for t, c in START_COLOURS.items() if t in run["tag"]), None)
        ax.errorbar(x, y, yerr=err, marker="os^D"[run["seed"] % 4], capsize=3, color=start or COLOURS[run["algorithm"]],
                    ls="--" if run["tag"] and not start else "-", label=f"{label(run)} seed {run['seed']}")  # fmt: skip
    ax.set_xlabel("training episodes consumed (critic warm-up included)")
    ax.set_ylabel("test accuracy - heuristic (pp, paired)")
    pairs = runs[0]["data"][runs[0]["final"]]["live_pairs"]
    ax.set_title(f"Phase 4 on the arena (from the Phase 3 IQL actor unless tagged): {pairs} held-out configurations, 95% CIs",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the curves fill the axes
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="var/phase4-arena-*-s*", help="glob of phase4_arena.py output folders")
    parser.add_argument("--live-dir", default="var/arena/confirm/live")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--batch-seed", type=int, default=20_261_202)
    parser.add_argument("--plot", default="docs/images/phase4-sample-efficiency.png")
    parser.add_argument("--out", default="var/phase4-sample-efficiency", help="folder for table.md and results.json")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    if not runs:
        raise SystemExit(f"no phase4_arena.py results under {args.runs!r}: run experiments/phase4_arena.py first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = sorted({e for r in runs for e, *_ in r["points"]})
    lines = ["| algorithm | seed | " + " | ".join(f"{e} episodes" for e in budgets) + " | at heuristic level | beats it (low > 0) |",
             "|---|---|" + "---|" * len(budgets) + "---|---|"]  # fmt: skip
    summary = []
    for run in runs:
        by_episode = {e: (m, lo, hi) for e, m, lo, hi in run["points"]}
        cells = [f"{by_episode[e][0]:+.2f} [{by_episode[e][1]:+.2f}, {by_episode[e][2]:+.2f}]" if e in by_episode else "" for e in budgets]
        level, beats = first_episodes(run["points"], LEVEL_LOW, 0.0), first_episodes(run["points"], 0.0, None)
        lines.append(f"| {label(run)} | {run['seed']} | " + " | ".join(cells) +
                     f" | {'never' if level is None else level} | {'never' if beats is None else beats} |")  # fmt: skip
        final = run["data"][run["final"]]
        summary.append({"algorithm": run["algorithm"], "tag": run["tag"], "seed": run["seed"], "points": run["points"], "episodes_to_level": level,
                        "episodes_to_beat": beats, "final": run["final"], "final_fresh": [final["live_fresh_mean_difference"],
                        final["live_fresh_ci_low"], final["live_fresh_ci_high"]], "alerts": run["data"]["_training"].get("alerts", [])})  # fmt: skip
    pooled = pooled_over_seeds(runs, args)
    if pooled:
        lines += ["", "Pooled over training seeds (seed-averaged difference per configuration; interval over configurations):", "",
                  "| algorithm | seeds | episodes | vs heuristic (pp) |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['algorithm']} | {', '.join(map(str, r['seeds']))} | {r['episodes']} | "
                  f"{r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] |" for r in pooled]  # fmt: skip
    common = min(max(e for e, *_ in r["points"]) for r in runs)
    versus = head_to_heads(runs, common, args)
    lines += ["", f"Head to head at {common} training episodes (same configurations; policy A - policy B, test split):", ""]
    lines += ["| A | B | original orders | W/T/L |", "|---|---|---|---|"]
    for v in versus:
        o = v.get("original")
        if o:
            lines.append(f"| {v['policy']} | {v['reference']} | {o['mean']:+.2f} [{o['low']:+.2f}, {o['high']:+.2f}] | "
                         f"{o['wins']}/{o['ties']}/{o['losses']} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"runs": summary, "pooled": pooled, "head_to_head": versus, "common_budget": common}, indent=1, default=float))
    plot(runs, Path(args.plot))
    print(table)
    print(f"plot: {args.plot}; table and numbers: {out}/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
