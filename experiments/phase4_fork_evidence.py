"""What the vine runs' forks say when every fork is read as evidence, pooled by region (fork_evidence.py).

Reads the forks of finished vine runs (their vine-history.json; runs no episode) and reports, on the *training*
configurations only (validation accuracy, the reward's quantity; the test split is not read):

- every (region, alternative) the forks measured: the mean advantage over the policy's own action with a 95%
  bootstrap interval, per training seed and pooled over the seeds, the one-sided test after Benjamini-Hochberg,
  and whether the region rule would learn it;
- the labels the fork rule learned (vine's own, confirmed on new data orders) and what their regions' pooled
  evidence says about them;
- the spread of one fork's advantage per regime and the forks a region needs to resolve +0.1 to +0.3 pp;
- a forest plot of the tested cells.

    .venv/bin/python experiments/phase4_fork_evidence.py --seeds 0,1 \
        --vine 'var/phase4-arena-vine-val10000-margin0.25-forksfrom1-forksto12-confirm2-from-conv_heavy@1-s{seed}' \
        --out var/phase4-fork-evidence --image docs/images/phase4-fork-evidence.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

VINE = "var/phase4-arena-vine-val10000-margin0.25-forksfrom1-forksto12-confirm2-from-conv_heavy@1-s{seed}"


def read_forks(folder: Path):
    """The forks of a finished vine run, the policy's feature names, and the regime of each parent (for display)."""
    from tamiyo_models.online_rl.vine import read_vine_run
    from tamiyo_models.world.rawrun import read_raw_run

    try:
        run = read_vine_run(folder)
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc} (tamiyo train phase4 --algorithm vine)") from None
    regimes = {}
    for fork in run.forks:
        if fork.run_id not in regimes:  # the run's raw folder, else the landing folder `tamiyo train` records to
            path = next((p for p in (run.raw_dir / f"{fork.run_id}.jsonl", Path("var/raw") / f"{fork.run_id}.jsonl") if p.exists()),
                        run.raw_dir / f"{fork.run_id}.jsonl")  # fmt: skip
            regimes[fork.run_id] = read_raw_run(path).header["config"].get("tags", {}).get("regime", "?") if path.exists() else "?"
    return run.forks, run.feature_names, regimes, run.config


def fmt(x: float, sign: bool = True) -> str:
    return "-" if not np.isfinite(x) else (f"{x:+.2f}" if sign else f"{x:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=lambda s: [int(k) for k in s.split(",")], default=[0, 1], help="vine training seeds")
    parser.add_argument("--vine", default=VINE, help="the runs' folder, {seed} for the training seed")
    parser.add_argument("--add", action="append", default=[], metavar="NAME=FOLDER",
                        help="another finished vine run to pool with them (repeatable), e.g. a targeted fork study")
    parser.add_argument("--margin", type=float, default=None, help="pp a region's label must gain (default: the runs' own margin)")
    parser.add_argument("--fdr", type=float, default=0.05, help="false discovery rate over the cells tested")
    parser.add_argument("--min-forks", type=int, default=3, help="forks that measured an alternative before it is tested")
    parser.add_argument("--out", default="var/phase4-fork-evidence")
    parser.add_argument("--image", default=None, help="also write the forest plot here (e.g. docs/images/...)")
    args = parser.parse_args()
    from tamiyo_models.online_rl.fork_evidence import (
        EvidenceConfig,
        forks_needed,
        pooled_evidence,
        region_of,
        task_names_of,
    )
    from tamiyo_models.online_rl.vine import improvement_labels
    from tamiyo_models.world.actions import FINE_ACTIONS

    folders = {f"seed {k}": Path(args.vine.format(seed=k)) for k in args.seeds}
    for item in args.add:
        name, _, folder = item.partition("=")
        if not folder:
            parser.error(f"--add {item!r}: expected NAME=FOLDER")
        folders[name] = Path(folder)
    runs = {name: read_forks(folder) for name, folder in folders.items()}
    names = {tuple(r[1]) for r in runs.values()}
    if len(names) != 1:
        raise SystemExit("the runs' policies read different feature sets; their forks cannot be pooled")
    names = names.pop()
    margin = args.margin if args.margin is not None else next(iter(runs.values()))[3]["margin"]
    config = EvidenceConfig(min_forks=args.min_forks, fdr=args.fdr, margin=margin)
    regime_of = {run: reg for r in runs.values() for run, reg in r[2].items()}
    all_forks = [f for r in runs.values() for f in r[0]]
    pooled = pooled_evidence(all_forks, names, config)
    per_seed = {k: {(c.region, c.action): c for c in pooled_evidence(r[0], names, config)} for k, r in runs.items()}
    task_names = task_names_of(names)

    def regime(cell) -> str:
        found = sorted({regime_of[r] for r in cell.runs})
        return "/".join(found)

    tested = [c for c in pooled if np.isfinite(c.p_value)]
    lines = ["# The vine forks as pooled evidence, by region (training configurations, validation accuracy)", "",
             (f"Runs: {', '.join(f'{k} {v}' for k, v in folders.items())}; {len(all_forks)} forks "
             f"({', '.join(f'{k}: {len(r[0])}' for k, r in runs.items())}). A region: the task (its regime named "
             f"here), the episode's length, the epoch bin, the seed's stage, the policy's own action. Advantage: final "
             f"validation accuracy after the alternative minus the parent's (pp), one per fork, the parent's own data "
             f"order. Interval: 95% bootstrap over forks. q: one-sided t-test p after Benjamini-Hochberg over the "
             f"{len(tested)} cells with at least {config.min_forks} forks. A region label needs q <= {config.fdr} and a "
             f"mean above {config.margin} pp."), ""]  # fmt: skip
    lines += ["| regime | where | alternative | forks | pooled mean [95%] | " + " | ".join(runs)
              + " | sd | q | label |", "|---|---|---|---|---|" + "---|" * len(runs) + "---|---|---|"]  # fmt: skip
    for cell in sorted(tested, key=lambda c: (regime(c), c.region.epochs, -c.interval.mean)):
        seeds = [per_seed[k].get((cell.region, cell.action)) for k in runs]
        lines.append(f"| {regime(cell)} | {cell.region.describe()} | {FINE_ACTIONS[cell.action]} | {len(cell.gains)} | {cell.interval} | "
                     + " | ".join(f"{fmt(s.interval.mean)} ({len(s.gains)})" if s else "-" for s in seeds)
                     + f" | {fmt(cell.spread, False)} | {cell.adjusted:.2f} | {'**yes**' if cell.label else 'no'} |")  # fmt: skip
    labelled = [c for c in pooled if c.label]
    lines += ["", f"**Region labels from the pooled forks: {len(labelled)}**" + (":" if labelled else "."), ""]
    lines += [f"- {regime(c)}, {c.region.describe()}: {FINE_ACTIONS[c.action]} {c.interval} pp" for c in labelled]
    lowest = sorted(tested, key=lambda c: c.p_value)[:3]
    lines += ["", "The smallest p-values before the correction: " + "; ".join(
        f"{regime(c)}, {c.region.describe()}, {FINE_ACTIONS[c.action]}: {c.interval} pp, p {c.p_value:.3f}, q {c.adjusted:.2f}" for c in lowest) + "."]  # fmt: skip

    # The fork rule's own labels (vine's), where they fall and what their region's pooled evidence says.
    by_key = {(c.region, c.action): c for c in pooled}

    lines += ["", ("## The fork rule's labels (a win above the margin at one fork; in a run that replays its candidates on "
                   "new data orders, only those that held there) against their region's pooled forks"), ""]
    result_labels = []
    for k, (forks, _names, _regimes, run_config) in runs.items():
        confirm = run_config.get("confirm_orders", 0) > 0
        for fork in forks:
            if improvement_labels([fork], margin, confirm=confirm):
                action = fork.best()[0]
                cell = by_key.get((region_of(fork.features, names, fork.taken, config), action))
                fresh = fork.fresh_gains(action)
                row = {"run": k, "regime": regime_of[fork.run_id], "step": fork.step, "own": FINE_ACTIONS[fork.taken],
                       "label": FINE_ACTIONS[action], "gain": fork.best()[1], "fresh": fresh,
                       "region": str(cell.interval) if cell else "-", "region_forks": len(cell.gains) if cell else 0}  # fmt: skip
                result_labels.append(row)
                replays = f"{', '.join(f'{g:+.2f}' for g in fresh)} on the new orders" if fresh else "not replayed"
                lines.append(f"- {k}, {row['regime']}, step {fork.step}: {row['own']} -> {row['label']}, +{row['gain']:.2f} at "
                             f"the fork, {replays}; its region's {row['region_forks']} forks: {row['region']} pp")  # fmt: skip

    # Spread of one fork's advantage, and the forks a region needs.
    spreads = defaultdict(list)
    for cell in tested:
        spreads[regime(cell)].append(cell.spread)
    lines += ["", "## What a region needs", "",
              "| regime | median sd of one fork's advantage (pp) | forks for +0.1 | +0.2 | +0.3 |", "|---|---|---|---|---|"]
    power = {}
    for name, values in sorted(spreads.items()):
        sd = float(np.median(values))
        power[name] = {"sd": sd, **{f"+{e}": forks_needed(sd, e) for e in (0.1, 0.2, 0.3)}}
        lines.append(f"| {name} | {sd:.2f} | " + " | ".join(str(power[name][f'+{e}']) for e in (0.1, 0.2, 0.3)) + " |")
    per_cell = [len(c.gains) for c in tested]
    lines += ["", f"The tested cells have {int(np.median(per_cell))} forks each (median; {min(per_cell)} to {max(per_cell)})."]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [out / "fork-evidence.png"] + ([Path(args.image)] if args.image else [])
    forest_plot(tested, regime, per_seed, list(runs), images)
    result = {"config": config.to_dict(), "runs": {k: str(v) for k, v in folders.items()}, "forks": len(all_forks),
              "cells": [{**c.row(task_names), "regime": regime(c),
                         **{k: (per_seed[k][(c.region, c.action)].interval.mean if (c.region, c.action) in per_seed[k] else None)
                            for k in runs}} for c in pooled],
              "fork_rule_labels": result_labels, "power": power}  # fmt: skip
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.md'}, results.json and " + ", ".join(str(p) for p in images))
    return 0


MARKERS, COLOURS = "^v<>sD", ("tab:blue", "tab:orange", "tab:purple", "tab:red", "tab:brown", "tab:olive")


def forest_plot(cells, regime, per_seed, seeds, paths) -> None:
    """One row per tested cell: the pooled mean and interval, each run's mean beside it; the labels in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tamiyo_models.world.actions import FINE_ACTIONS

    cells = sorted(cells, key=lambda c: (regime(c), c.region.epochs, c.action))
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(cells) + 1.5))
    y = np.arange(len(cells))[::-1]
    for yi, c in zip(y, cells):
        color = "tab:green" if c.label else "black"
        ax.errorbar(c.interval.mean, yi, xerr=[[c.interval.mean - c.interval.low], [c.interval.high - c.interval.mean]],
                    fmt="o", color=color, ms=4, capsize=2)  # fmt: skip
        for k, marker, col in zip(seeds, MARKERS, COLOURS):
            s = per_seed[k].get((c.region, c.action))
            if s is not None:
                ax.plot(s.interval.mean, yi, marker, color=col, ms=4, alpha=0.7)
    ax.axvline(0, color="grey", lw=0.8)

    def act(index: int) -> str:
        return FINE_ACTIONS[index].replace("GERMINATE_", "graft ").lower()

    def where(c) -> str:
        return f"{regime(c)}, {c.region.epochs_text}, {c.region.stage_name.lower()}: {act(c.region.own)} -> {act(c.action)}"

    ax.set_yticks(y, [where(c) for c in cells], fontsize=7)
    ax.set_xlabel("advantage over the policy's own action, pp of final validation accuracy", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="-", color="black", label="pooled mean, 95% interval"),
               plt.Line2D([], [], marker="o", ls="-", color="tab:green", label="region label (q <= FDR, mean > margin)"),
               *(plt.Line2D([], [], marker=m, ls="", color=col, label=f"{k}: mean") for k, m, col in zip(seeds, MARKERS, COLOURS))]
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    ax.set_title("Vine forks pooled by region (training configurations)", fontsize=9)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
