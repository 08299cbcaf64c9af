"""Is there headroom over the best reference controller among every controller the arena has run?

The Phase 4 target asks a learned policy to beat the fixed schedule (fixed:conv_heavy@3) with an interval above
0. This reads back every episode in the arena's shared live folder (the 24 held-out configurations of batch seed
20261202, run by `phase3_arena.py`, `phase4_arena.py` and `phase4_vine.py`), keeps the controllers that ran every
configuration on the original data order and on the 2 fresh ones, and asks, on the test split:

- each controller against the reference, averaged over the 3 orders (the most precise paired number there is);
- **per configuration, the best controller in hindsight**: chosen on the original order, then scored on the fresh
  orders; and chosen on any one order, scored on the other two (all 3 rotations averaged);
- **per regime**: the regime's best controller chosen on the original order, scored on the fresh orders (a
  policy that knew the regime and nothing else could do this well);
- the reference's own luck: the best of its 3 orders minus their mean.

A hindsight gain that vanishes on fresh orders is luck; one that holds is headroom some state-aware policy could
take. These are diagnostics on the evaluation configurations: nothing here trains or selects a reported policy.
Runs no episode (a few seconds).

    .venv/bin/python experiments/phase4_hindsight.py [--live-dir var/arena/confirm/live] [--out var/phase4-hindsight]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def controller_label(controller: dict) -> str:
    if controller["kind"] == "policy":
        path = controller["policy"].removeprefix("file:")
        try:
            return str(Path(path).resolve().relative_to(ROOT))
        except ValueError:
            return path
    return controller.get("label") or controller["kind"]


def read_scores(live_dir: Path, batch_seed: int) -> tuple[dict, dict]:
    """{(controller, seed): {data_order_seed or None: test accuracy}} and {seed: regime} for the complete runs
    of the batch."""
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    scores: dict = defaultdict(dict)
    regime: dict = {}
    for path in list_raw_runs(live_dir):
        run = read_raw_run(path)
        config = run.header["config"]
        if config["tags"].get("batch_seed") != batch_seed or not run.footer or run.footer.get("status") != "complete":
            continue
        scores[(controller_label(config["controller"]), config["seed"])][config["data_order_seed"]] = run.footer[
            "final_test_accuracy"
        ]
        regime[config["seed"]] = config["tags"].get("regime", "all")
    return scores, regime


def three_orders(scores: dict, regime: dict) -> tuple[list[str], list[int], dict]:
    """The controllers with the original and 2 fresh orders on every configuration, and their scores as an array
    per (controller, seed): [original, fresh 1, fresh 2] (the fresh orders, shared by every controller of a
    configuration, sorted by seed)."""
    seeds = sorted(regime)
    labels = sorted({label for label, _ in scores})
    full = [c for c in labels if all(len(scores.get((c, s), {})) == 3 and None in scores[(c, s)] for s in seeds)]
    table = {}
    for s in seeds:
        fresh = {tuple(sorted(k for k in scores[(c, s)] if k is not None)) for c in full}
        if len(fresh) != 1:
            raise ValueError(f"configuration seed {s}: the controllers ran different fresh data orders {sorted(fresh)}")
        orders = (None, *fresh.pop())
        for c in full:
            table[(c, s)] = np.array([scores[(c, s)][k] for k in orders])
    return full, seeds, table


def analyse(full: list[str], seeds: list[int], table: dict, regime: dict, reference: str) -> dict:
    from tamiyo_models.common.stats import mean_ci

    def interval(values) -> dict:
        ci = mean_ci(values)
        return {"mean": ci.mean, "low": ci.low, "high": ci.high}

    ref = {s: table[(reference, s)] for s in seeds}
    out: dict = {"reference": reference, "configurations": len(seeds), "controllers": len(full)}
    out["versus_reference"] = {
        c: interval([table[(c, s)].mean() - ref[s].mean() for s in seeds]) for c in full if c != reference
    }
    r = full.index(reference)

    def best(values, ties: str) -> np.ndarray:
        # Controllers that act alike tie to the last bit, the reference among them often, and a tie carries no
        # evidence (first-in-order would decide by the alphabet). "reference": a selector that keeps the
        # reference unless another beats it; "average": the tied winners' scores elsewhere averaged.
        tied = np.flatnonzero(values >= values.max() - 1e-9)
        return np.array([r]) if ties == "reference" and r in tied else tied

    per_config = []
    for s in seeds:
        arms = np.stack([table[(c, s)] for c in full])
        row = {
            "seed": s,
            "regime": regime[s],
            "winners": [full[w] for w in best(arms[:, 0], "average")],
            "selected_gain": float(arms[:, 0].max() - ref[s][0]),
            "reference_luck": float(ref[s].max() - ref[s].mean()),
        }
        for ties in ("reference", "average"):
            winners = best(arms[:, 0], ties)
            row[f"fresh_gain_{ties}"] = float(arms[winners, 1:].mean() - ref[s][1:].mean())
            rotations = []
            for order in range(3):
                chosen, rest = best(arms[:, order], ties), [k for k in range(3) if k != order]
                rotations.append(arms[np.ix_(chosen, rest)].mean() - ref[s][rest].mean())
            row[f"rotated_gain_{ties}"] = float(np.mean(rotations))
        per_config.append(row)
    out["per_configuration"] = per_config
    keys = ("selected_gain", "fresh_gain_reference", "fresh_gain_average", "rotated_gain_reference", "rotated_gain_average",
            "reference_luck")  # fmt: skip
    for key in keys:
        out[key] = interval([row[key] for row in per_config])
    out["fresh_vs_selected_correlation"] = float(np.corrcoef([r["selected_gain"] for r in per_config],
                                                             [r["fresh_gain_reference"] for r in per_config])[0, 1])  # fmt: skip
    regimes, by_regime_fresh = [], {}
    for name in sorted(set(regime.values())):
        members = [s for s in seeds if regime[s] == name]
        original = np.array([np.mean([table[(c, s)][0] - ref[s][0] for s in members]) for c in full])
        chosen = [full[k] for k in best(original, "reference")]
        fresh = [np.mean([table[(c, s)][1:].mean() for c in chosen]) - ref[s][1:].mean() for s in members]
        by_regime_fresh.update(zip(members, fresh))
        regimes.append({"regime": name, "configurations": len(members), "best": chosen, "original": float(original.max()),
                        "fresh": float(np.mean(fresh))})  # fmt: skip
    out["regimes"] = regimes
    out["regime_choice_fresh"] = interval([by_regime_fresh[s] for s in seeds])
    return out


def cell(d: dict) -> str:
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def markdown(result: dict, live_dir: Path) -> str:
    r = result
    lines = [f"# Headroom over `{r['reference']}` among the controllers the arena has run", "",
             (f"{r['configurations']} held-out configurations (`{live_dir}`), {r['controllers']} controllers with the "
             "original and 2 fresh data orders on every one. Score: final **test** accuracy, pp; differences are "
             "paired on the same configuration and order; intervals are 95% bootstrap over configurations."), "",
             "| what | vs the reference |", "|---|---|",
             f"| per configuration, the best controller chosen on the original order: that order | {cell(r['selected_gain'])} |",
             f"| the same winners on the 2 fresh orders (ties with the reference: the reference) | {cell(r['fresh_gain_reference'])} |",
             f"| the same, tied winners averaged | {cell(r['fresh_gain_average'])} |",
             f"| chosen on any one order, scored on the other two (3 rotations; ties: the reference) | {cell(r['rotated_gain_reference'])} |",
             f"| the same, tied winners averaged | {cell(r['rotated_gain_average'])} |",
             f"| per regime, the best controller chosen on the original order (ties: the reference): fresh orders | {cell(r['regime_choice_fresh'])} |",
             f"| luck: the reference's best of its 3 orders minus their mean | {cell(r['reference_luck'])} |", "",
             (f"Correlation of the winners' gain on the original order with their gain on the fresh orders: "
             f"{r['fresh_vs_selected_correlation']:+.2f}."), "",
             "| regime | configurations | best on the original order (ties: the reference) | there | fresh orders |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {g['regime']} | {g['configurations']} | {', '.join(f'`{c}`' for c in g['best'])} | {g['original']:+.2f} | "
        f"{g['fresh']:+.2f} |"
        for g in r["regimes"]
    ]
    lines += [
        "",
        "Each controller against the reference, mean of the 3 orders per configuration:",
        "",
        "| controller | vs the reference |",
        "|---|---|",
    ]
    ranked = sorted(r["versus_reference"].items(), key=lambda kv: -kv[1]["mean"])
    lines += [f"| `{c}` | {cell(d)} |" for c, d in ranked]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_configuration"]
    regimes = sorted({r["regime"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, name in enumerate(regimes):
        xs = [r["selected_gain"] for r in rows if r["regime"] == name]
        ys = [r["fresh_gain_reference"] for r in rows if r["regime"] == name]
        ax.scatter(xs, ys, color=f"C{k}", label=name)
    lo = min(min(r["fresh_gain_reference"] for r in rows), 0) - 0.1
    hi = max(max(r["selected_gain"] for r in rows), 0) + 0.1
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="replicates exactly")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"hindsight winner - {result['reference']}, original order (pp, test)")
    ax.set_ylabel("the same winner - reference, 2 fresh orders (pp, test)")
    at_zero = sum(r["selected_gain"] == 0 for r in rows)
    ax.text(0.02, 0.98, f"ties with the reference: the reference\n{at_zero} configurations at (0, 0): the reference is best",
            transform=ax.transAxes, va="top", fontsize=8)  # fmt: skip
    ax.set_title(f"Per-configuration hindsight winners of {result['controllers']} controllers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live-dir", default="var/arena/confirm/live", help="the arena's shared live episodes")
    parser.add_argument("--batch-seed", type=int, default=20_261_202, help="the held-out configurations' batch")
    parser.add_argument("--reference", default="fixed:conv_heavy@3", help="the controller to beat")
    parser.add_argument("--out", default="var/phase4-hindsight", help="writes hindsight.md, .json and .png here")
    parser.add_argument("--plot", help="also save the plot here (e.g. docs/images/phase4-hindsight.png)")
    args = parser.parse_args()

    live_dir = Path(args.live_dir)
    if not live_dir.is_dir():
        parser.error(f"--live-dir {live_dir}: no such folder (run experiments/phase4_arena.py first)")
    scores, regime = read_scores(live_dir, args.batch_seed)
    full, seeds, table = three_orders(scores, regime)
    if args.reference not in full:
        parser.error(f"--reference {args.reference}: not among the controllers with 3 orders on every configuration "
                     f"({', '.join(full) or 'none'})")  # fmt: skip
    result = analyse(full, seeds, table, regime, args.reference)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hindsight.json").write_text(json.dumps(result, indent=1))
    text = markdown(result, live_dir)
    (out / "hindsight.md").write_text(text)
    plot(result, out / "hindsight.png")
    if args.plot:
        plot(result, Path(args.plot))
    print(text)
    print(f"wrote {out / 'hindsight.md'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
