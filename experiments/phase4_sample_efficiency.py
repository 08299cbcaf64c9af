"""Phase 4 sample efficiency across algorithms and training seeds: every `phase4_arena.py` and `phase4_vine.py`
run found, on one plot and tables, pooled over seeds, plus the algorithms head to head at the largest budget
they all reached.

Reads each run's results.json (written by `experiments/phase4_arena.py` or `experiments/phase4_vine.py`: live
test-score margins over the heuristic on the 24 held-out configurations of batch seed 20261202, one per kept
snapshot or iteration) and the episodes in the shared live folder; runs no episode. Writes the plot, a Markdown
table and a JSON of the same numbers.

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
COLOURS = {"reinforce": "C2", "a2c": "C1", "ppo": "C0", "vine": "C5"}
START_COLOURS = {"from-bcq": "C9"}  # a run tagged with another start than the IQL actor gets its own colour


def load_runs(pattern: str) -> list[dict]:
    """Every phase4_arena.py (episode budgets) and phase4_vine.py (iterations) output folder with results.

    A point is (x, mean, low, high, snapshot): x is training episodes consumed; for the branching learner, which
    trains hosts from forked states too, episode-equivalents (epochs trained / epochs of a full episode), so
    the axis counts host training either way. `snapshot` names the policy file, the key for pooling seeds."""
    runs = []
    for folder in sorted(Path().glob(pattern)):
        match = re.fullmatch(r".*-(reinforce|a2c|ppo|vine)((?:-[^-]+)*)-s(\d+)", folder.name)  # ALGORITHM[-TAG]-sSEED
        results = folder / "results.json"
        if not match or not results.exists():
            continue
        algorithm, tag, seed = match.group(1), match.group(2).lstrip("-"), int(match.group(3))
        data = json.loads(results.read_text())
        if algorithm == "vine":
            x = {f"vine-i{h['iteration']:02d}": h["episode_equivalents_total"] for h in data["_training"]}
            x["vine-i00"] = 0.0
        else:
            x = {k: int(k.rsplit("-e", 1)[1]) for k in data if k.startswith(f"{algorithm}-e")}
        points = sorted((x[k], data[k]["live_mean_difference"], data[k]["live_ci_low"], data[k]["live_ci_high"], k)
                        for k in x if k in data)  # fmt: skip
        runs.append({"folder": folder, "algorithm": algorithm, "tag": tag, "seed": seed, "data": data,
                     "points": points, "final": data["_meta"]["final"]})  # fmt: skip
    return runs


def label(run: dict) -> str:
    return run["algorithm"].upper() + (f" {run['tag']}" if run["tag"] else "")


def first_episodes(points, low_bar: float, mean_bar: float | None) -> float | None:
    for episodes, mean, low, *_ in points:
        if low > low_bar and (mean_bar is None or mean >= mean_bar):
            return episodes
    return None


def snapshot_path(run: dict, snapshot: str) -> Path:
    if snapshot in (f"{run['algorithm']}-e0000", "vine-i00"):
        meta = run["data"]["_meta"]
        return Path(meta["initial"] if run["algorithm"] == "vine" else meta["config"]["initial_policy"])
    if run["algorithm"] == "vine":
        return run["folder"] / "policies" / f"vine-iter-{snapshot.rsplit('-i', 1)[1]}.pt"
    return run["folder"] / "snapshots" / f"{snapshot}.pt"


def head_to_heads(runs: list[dict], budget: int, args) -> list[dict]:
    """Every pair of runs of different algorithms, their snapshots at `budget` episodes, on the same pairs."""
    from phase3_arena import head_to_head

    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation.live import policy_controller

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if label(a) == label(b):
                continue
            name_a, name_b = (f"{label(r).lower().replace(' ', '-')}-s{r['seed']}-e{budget:04d}" for r in (a, b))
            path_a, path_b = (snapshot_path(r, f"{r['algorithm']}-e{budget:04d}") for r in (a, b))
            versus = head_to_head(configs, Path(args.live_dir), name_a, path_a, name_b, policy_controller(path_b))
            out.append(versus)
    return out


def pooled_over_seeds(runs: list[dict], args) -> list[dict]:
    """Per algorithm with 2 or more training seeds, at every snapshot all its seeds reached: the paired
    difference from the heuristic averaged over the seeds on each configuration, then its mean and bootstrap
    interval over configurations (the configuration is the unit: seeds scored on the same one are not
    independent pairs). At the final snapshots, which ran on the fresh data orders too, the same on those orders
    and against the references. `episodes` is the seeds' mean x (episode-equivalents differ between vine seeds)."""
    import numpy as np

    from tamiyo_models.common.stats import mean_ci
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.evaluation.paired import run_paired

    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    idx = list(range(len(configs)))
    compared = references(args)
    rows = []
    for name in sorted({label(r) for r in runs}):
        group = [r for r in runs if label(r) == name]
        if len(group) < 2:
            continue
        snapshots = set.intersection(*({p[4] for p in r["points"]} for r in group))
        x = {k: float(np.mean([next(p[0] for p in r["points"] if p[4] == k) for r in group])) for k in snapshots}
        for snapshot in sorted(snapshots, key=x.get):
            # Only the final snapshots ran on the fresh orders; only they are compared with the references.
            final = all(r["final"] == snapshot for r in group)
            arms = {"heuristic": ControllerConfig(kind="heuristic"), **(compared if final else {})}
            arms.update({f"s{r['seed']}": policy_controller(snapshot_path(r, snapshot)) for r in group})
            paired = run_paired(configs, arms, Path(args.live_dir), replicate=2 if final else 0, execute=False)
            row = {"algorithm": name, "seeds": [r["seed"] for r in group], "snapshot": snapshot, "episodes": x[snapshot]}  # fmt: skip
            original = np.nanmean([paired.differences(f"s{r['seed']}", idx) for r in group], axis=0)
            ci = mean_ci(original)
            row.update(mean=ci.mean, low=ci.low, high=ci.high)
            fresh = np.array([paired.fresh_differences(f"s{r['seed']}", idx) for r in group])
            if final and np.isfinite(fresh).all():
                fresh = fresh.mean(axis=0)
                ci = mean_ci(fresh)
                row.update(fresh_mean=ci.mean, fresh_low=ci.low, fresh_high=ci.high, versus={})
                for ref in compared:  # policy - reference = (policy - heuristic) - (reference - heuristic)
                    versus = row["versus"][ref] = {}
                    for order, diff in (("original", original - paired.differences(ref, idx)),
                                        ("fresh", fresh - paired.fresh_differences(ref, idx))):  # fmt: skip
                        if np.isfinite(diff).all():  # the reference ran on these orders
                            ci = mean_ci(diff)
                            versus[order] = {"mean": ci.mean, "low": ci.low, "high": ci.high}
            rows.append(row)
    return rows


def references(args) -> dict:
    """What the pooled final policies are also compared with, on the same pairs and orders."""
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.evaluation.live import policy_controller

    return {"fixed:conv_heavy@3": reference_controller("fixed:conv_heavy@3"), "phase3-bcq": policy_controller(args.phase3),
            "phase1": policy_controller(args.phase1)}  # fmt: skip


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
        x = [e + 1.5 * (k - (len(runs) - 1) / 2) for e, *_ in run["points"]]  # dodge: the bars would overlap
        y = [m for _, m, *_ in run["points"]]
        err = [[m - lo for _, m, lo, *_ in run["points"]], [hi - m for _, m, _, hi, _ in run["points"]]]
        start = next((c for t, c in START_COLOURS.items() if t in run["tag"]), None)
        if run["algorithm"] == "vine":  # its own colour whatever the start; a tagged variant dash-dotted
            colour, style = COLOURS["vine"], "-." if run["tag"] else "-"
        else:
            colour, style = start or COLOURS[run["algorithm"]], "--" if run["tag"] and not start else "-"
        ax.errorbar(x, y, yerr=err, marker="os^D"[run["seed"] % 4], capsize=3, color=colour, ls=style,
                    label=f"{label(run)} seed {run['seed']}")  # fmt: skip
    ax.set_xlabel("training episodes consumed (critic warm-up included; vine: episode-equivalents of host training)")
    ax.set_ylabel("test accuracy - heuristic (pp, paired)")
    pairs = runs[0]["data"][runs[0]["final"]]["live_pairs"]
    ax.set_title(f"Phase 4 on the arena: {pairs} held-out configurations, test split, 95% CIs\n"
                 "(from the Phase 3 IQL actor unless tagged from-bcq; vine starts from BCQ's student)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the curves fill the axes
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cell(mean: float, low: float, high: float) -> str:
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def budget_table(runs: list[dict]) -> list[str]:
    """Runs with episode budgets: one column per budget."""
    budgets = sorted({e for r in runs for e, *_ in r["points"]})
    lines = ["| algorithm | seed | " + " | ".join(f"{e} episodes" for e in budgets) + " | at heuristic level | beats it (low > 0) |",
             "|---|---|" + "---|" * len(budgets) + "---|---|"]  # fmt: skip
    for run in runs:
        by_episode = {e: (m, lo, hi) for e, m, lo, hi, _ in run["points"]}
        cells = [cell(*by_episode[e]) if e in by_episode else "" for e in budgets]
        lines.append(f"| {label(run)} | {run['seed']} | " + " | ".join(cells) + " | " + reached(run) + " |")
    return lines


def iteration_table(runs: list[dict]) -> list[str]:
    """Runs that train by iterations of branched episodes (x differs per seed): one column per iteration."""
    n = max(len(r["points"]) for r in runs)
    lines = ["| algorithm | seed | " + " | ".join(f"iteration {k}: episode-eq. / vs heuristic" for k in range(n)) +
             " | final on fresh orders | at heuristic level | beats it (low > 0) |",
             "|---|---|" + "---|" * n + "---|---|---|"]  # fmt: skip
    for run in runs:
        cells = [f"{e:.0f} / {cell(m, lo, hi)}" for e, m, lo, hi, _ in run["points"]] + [""] * (n - len(run["points"]))
        final = run["data"][run["final"]]
        fresh = cell(final["live_fresh_mean_difference"], final["live_fresh_ci_low"], final["live_fresh_ci_high"])
        lines.append(f"| {label(run)} | {run['seed']} | " + " | ".join(cells) + f" | {fresh} | " + reached(run) + " |")
    return lines


def reached(run: dict) -> str:
    level, beats = first_episodes(run["points"], LEVEL_LOW, 0.0), first_episodes(run["points"], 0.0, None)
    return " | ".join("never" if v is None else f"{v:.0f}" for v in (level, beats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default="var/phase4-arena-*-s*", help="glob of phase4_arena.py / phase4_vine.py outputs"
    )
    parser.add_argument("--live-dir", default="var/arena/confirm/live")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--batch-seed", type=int, default=20_261_202)
    parser.add_argument("--phase3", default="var/arena/policies/phase3-bcq.pt", help="the best Phase 3 policy")
    parser.add_argument(
        "--phase1", default="var/arena/policies/phase1-base+lifecycle+task.pt", help="the Phase 1 policy"
    )
    parser.add_argument("--plot", default="docs/images/phase4-sample-efficiency.png")
    parser.add_argument("--out", default="var/phase4-sample-efficiency", help="folder for table.md and results.json")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    if not runs:
        raise SystemExit(f"no phase4_arena.py results under {args.runs!r}: run experiments/phase4_arena.py first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    episodic = [r for r in runs if r["algorithm"] != "vine"]
    iterative = [r for r in runs if r["algorithm"] == "vine"]
    lines = budget_table(episodic) if episodic else []
    if iterative:
        title = "Branching policy iteration (experiments/phase4_vine.py; episode-eq. = epochs trained / epochs of a full episode):"
        lines += ["", title, ""] + iteration_table(iterative)
    summary = []
    for run in runs:
        final, training = run["data"][run["final"]], run["data"]["_training"]
        summary.append({"algorithm": run["algorithm"], "tag": run["tag"], "seed": run["seed"], "points": run["points"],
                        "episodes_to_level": first_episodes(run["points"], LEVEL_LOW, 0.0),
                        "episodes_to_beat": first_episodes(run["points"], 0.0, None), "final": run["final"],
                        "final_fresh": [final["live_fresh_mean_difference"], final["live_fresh_ci_low"], final["live_fresh_ci_high"]],
                        "alerts": training.get("alerts", []) if isinstance(training, dict) else []})  # fmt: skip
    pooled = pooled_over_seeds(runs, args)
    if pooled:
        lines += ["", "Pooled over training seeds (seed-averaged difference per configuration; interval over configurations):", "",
                  "| algorithm | seeds | snapshot | episodes | vs heuristic (pp) | fresh orders |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['algorithm']} | {', '.join(map(str, r['seeds']))} | {r['snapshot']} | {r['episodes']:.0f} | "
                  f"{cell(r['mean'], r['low'], r['high'])} | "
                  f"{cell(r['fresh_mean'], r['fresh_low'], r['fresh_high']) if 'fresh_mean' in r else ''} |" for r in pooled]  # fmt: skip
        finals = [r for r in pooled if r.get("versus")]
        if finals:
            lines += ["", "The same pooled final policies against the references (policy - reference per configuration):", "",
                      "| algorithm | seeds | snapshot | versus | original orders | fresh orders |", "|---|---|---|---|---|---|"]  # fmt: skip
            for r in finals:
                for ref, v in r["versus"].items():
                    lines.append(f"| {r['algorithm']} | {', '.join(map(str, r['seeds']))} | {r['snapshot']} | {ref} | "
                                 + " | ".join(cell(**v[o]) if o in v else "not run" for o in ("original", "fresh")) + " |")  # fmt: skip
    common = min(max(e for e, *_ in r["points"]) for r in episodic) if episodic else 0
    versus = head_to_heads(episodic, common, args)
    lines += ["", f"Head to head at {common} training episodes (same configurations; policy A - policy B, test split):", "",
              "| A | B | original orders | W/T/L |", "|---|---|---|---|"]  # fmt: skip
    for v in versus:
        o = v.get("original")
        if o:
            lines.append(f"| {v['policy']} | {v['reference']} | {cell(o['mean'], o['low'], o['high'])} | "
                         f"{o['wins']}/{o['ties']}/{o['losses']} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    numbers = {"runs": summary, "pooled": pooled, "head_to_head": versus, "common_budget": common}
    (out / "results.json").write_text(json.dumps(numbers, indent=1, default=float))
    plot(runs, Path(args.plot))
    print(table)
    print(f"plot: {args.plot}; table and numbers: {out}/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
