"""Branching policy iteration started from the best reference controller, live against that controller.

The arena's best reference controller is a fixed schedule, conv_heavy grafted at epoch 1 (docs/arena.md), and
no learned policy so far has beaten it: they start below it (BCQ's student) and branching holds their start's
level. Here the learner starts *from* it (`experiments/phase4_vine.py --initial fixed:conv_heavy@1 --distil 0.05
--fork-min-step 1 --fork-max-step 12 --val-subsample 10000 --margin 0.25 --seed K`), so whatever the branches find
is on top of the bar. This script scores, on the test split:

- the second held-out set (batch seed 20261204, 24 pairs; episodes in var/arena/second/live, where the heuristic,
  BCQ, Phase 1 and the schedules at epochs 1 to 3 already ran on 3 data orders);
- the third batch (the headroom study's, batch seed 20261205, 8 configurations per regime, 32 pairs; episodes in
  var/headroom-earliest/episodes, the schedules at epochs 1 to 3 on 3 orders, no heuristic);
- the fourth set (batch seed 20261206, 6 configurations per regime, 24 pairs; episodes in var/arena/fourth/live),
  read by nothing before its evaluation: the second and third also chose the reference (epoch 1 was first tried on
  the second and confirmed on the third), so a difference to the heuristic measured there carries that choice;

with, on each: the schedule (the reference every difference is paired with), its student (the learner's start;
the original order only, a check that it acts as the schedule), and each training seed's vine final (the last
iteration, fixed in advance) on the original and 2 fresh data orders. Reported: final - schedule per seed and
pooled over seeds (their mean per configuration), per set and over both, on the original order, the fresh orders
(their mean) and all 3; per regime over the sets together; the null control (the schedule rerun on a fresh order, RMS);
and where the finals' actions first depart from the schedule's. `--compare heuristic` runs other reference
controllers beside them on all 3 orders and pairs the pooled finals with each; an entry NAME=FILE.pt runs a saved
policy (Phase 1, Phase 3) under that name instead, which is also paired with each other compared controller, and
where its actions first depart from the schedule's is reported. Episodes already on disk are reused.

    .venv/bin/python experiments/phase4_from_schedule.py [--seeds 0,1] [--workers 2] \
        [--compare heuristic,phase3-bcq=var/phase3-from-vine/policies/phase3-bcq.pt]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REFERENCE = "fixed:conv_heavy@1"
VINE = "var/phase4-arena-vine-val10000-margin0.25-forksfrom1-forksto12-from-conv_heavy@1-s{seed}"
SETS = {  # name: (how drawn, how many, batch seed, the folder their episodes are in[, only these regimes])
    "second": ("sample", 24, 20_261_204, "var/arena/second/live"),
    "third": ("headroom", 8, 20_261_205, "var/headroom-earliest/episodes"),
    # Read by nothing before this evaluation: the second and third sets also chose the reference (epoch 1 was first
    # tried on the second and confirmed on the third), so a claim against the heuristic measured on them carries
    # that selection; this one does not.
    "fourth": ("headroom", 6, 20_261_206, "var/arena/fourth/live"),
    # fm-noisy only: the test of the hypothesis the three sets above raised (docs/online-rl.md, "A fifth set").
    "fifth": ("headroom", 24, 20_261_207, "var/arena/fifth/live", ("fm-noisy",)),
    # fm-small-data and fm-short only: the test of the epoch-0 fork study's label (docs/online-rl.md, "Grafting at
    # epoch 0").
    "sixth": ("headroom", 12, 20_261_208, "var/arena/sixth/live", ("fm-small-data", "fm-short")),
    # fm-short only: the replication of the sixth set's gain on new configurations (docs/online-rl.md).
    "seventh": ("headroom", 24, 20_261_209, "var/arena/seventh/live", ("fm-short",)),
}


def set_configs(kind: str, count: int, batch_seed: int, regimes: tuple[str, ...] = ()) -> list:
    """`sample`: `count` configurations of the arena spec; `headroom`: `count` per regime (`regimes`, or all), the
    headroom study's own draw (tamiyo headroom --spec arena --configs-per-regime COUNT --batch-seed SEED)."""
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation.headroom import HeadroomConfig, headroom_configs

    if kind == "sample":
        return GenerationSpec.load("arena").sample(count, seed=batch_seed)
    return headroom_configs(HeadroomConfig(spec="arena", regimes=regimes, configs_per_regime=count, batch_seed=batch_seed))[0]


def training_seeds(folder: Path) -> list[int]:
    """The configuration seeds a vine run trained on, those of the runs it pooled evidence from (--evidence-from)
    included: a held-out configuration must be none of them."""
    from tamiyo_models.online_rl.vine import read_vine_run
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    run = read_vine_run(folder)
    own = folder / "raw"  # a run's own raw folder holds only its episodes; a landing folder holds everyone's
    paths = list_raw_runs(own) if own.exists() else [run.raw_dir / f"{p}.jsonl" for p in run.parents]
    seeds = [read_raw_run(p).header["config"]["seed"] for p in paths]
    for earlier in run.config.get("evidence_from", []):
        seeds += training_seeds(Path(earlier))
    return seeds


def order_differences(runs, arm: str) -> np.ndarray:
    """arm - reference per configuration (rows) and data order (3 columns; NaN where an episode did not run)."""
    idx = list(range(len(runs.configs)))
    return np.stack([runs.differences(arm, idx, order) for order in range(3)], axis=1)


def summary(values: np.ndarray) -> dict:
    """phase4_second_heldout's summary (mean, interval, W/T/L), or no pairs where no episode ran."""
    from phase4_second_heldout import summary as paired_summary

    return paired_summary(values) if np.isfinite(values).any() else {"pairs": 0}


def cell(s: dict) -> str:
    return "-" if not s.get("pairs") else f"{s['mean']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}] ({s['wtl']})"


# A configuration counts in a view only when every order of it ran (NaN otherwise, left out of the pairs): an arm
# run on the original order only (the start) has no fresh or all-3 cell, and no configuration mixes 1 and 2 orders.
VIEWS = {
    "original": lambda d: d[:, 0],
    "fresh": lambda d: d[:, 1:].mean(axis=1),
    "all 3": lambda d: d.mean(axis=1),
}


def departures(runs, arm: str) -> Counter:
    """Where `arm`'s actions first differ from the reference's on the original order: "step N: REF -> ARM"."""
    from tamiyo_models.world.rawrun import read_raw_run

    found: Counter = Counter()
    for i in range(len(runs.configs)):
        mine, ref = runs.outcomes.get((i, arm, 0)), runs.outcomes.get((i, runs.reference, 0))
        if mine is None or ref is None or mine.result.status != "complete":
            continue
        a = [s["action"]["fine"] for s in read_raw_run(mine.result.path).steps]
        b = [s["action"]["fine"] for s in read_raw_run(ref.result.path).steps]
        first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
        found[
            "same actions throughout"
            if first is None
            else f"step {first + 1} (epoch {first}): {b[first]} -> {a[first]}"
        ] += 1
    return found


def label_quality(raw_dir: Path, margin: float = 0.25) -> dict:
    """The training forks read back (a diagnostic on the *training* configurations, after the fact; nothing is
    selected on it): every fork's best alternative by final validation accuracy, the candidate labels (a win by
    more than `margin` pp), and how many of those were better on the test split too. The test score of the same
    branch shares that branch's training luck, so it cannot tell an effect from luck; where the candidates were
    replayed on new data orders (vine's confirm_orders), their gains there can, and are reported beside it."""
    from collections import defaultdict

    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    parents, measured, replayed = {}, defaultdict(dict), defaultdict(lambda: defaultdict(dict))
    for path in list_raw_runs(raw_dir):
        run = read_raw_run(path)
        if not run.footer or run.footer.get("status") != "complete":
            continue
        info = run.header.get("branch")
        scores = (float(run.footer["final_val_accuracy"]), float(run.footer["final_test_accuracy"]))
        if info and info.get("data_order"):  # a confirmation replay on a new data order
            replayed[(info["parent_run_id"], int(info["fork_step"]))][int(info["data_order"])][info["forced_action"]] = scores
        elif info:
            measured[(info["parent_run_id"], int(info["fork_step"]))][info["forced_action"]] = scores
        else:
            parents[run.run_id] = run
    labels, forks = [], 0
    for (parent_id, step), alternatives in measured.items():
        parent = parents.get(parent_id)
        if parent is None:
            continue
        forks += 1
        own = parent.steps[step - 1]["action"]["fine"]
        val, test = float(parent.footer["final_val_accuracy"]), float(parent.footer["final_test_accuracy"])
        best = max(alternatives, key=lambda a: alternatives[a][0])
        if alternatives[best][0] - val > margin:
            orders = [o for o in replayed[(parent_id, step)].values() if best in o and own in o]
            fresh_val = [o[best][0] - o[own][0] for o in orders]
            labels.append({"step": step, "own": own, "best": best, "val_gain": alternatives[best][0] - val,
                           "test_gain": alternatives[best][1] - test, "fresh_val_gains": fresh_val,
                           "fresh_test_gains": [o[best][1] - o[own][1] for o in orders],
                           "confirmed": bool(fresh_val) and float(np.mean(fresh_val)) > margin})  # fmt: skip
    from tamiyo_models.common.stats import mean_ci

    test_gains = np.array([x["test_gain"] for x in labels])
    fresh = [x for x in labels if x["fresh_val_gains"]]
    # Per candidate: its gain where it was selected, and its mean gain on the new orders (a selection-free
    # estimate); the spread between two new orders' gains is one pair's noise (divided by sqrt 2).
    selected = [x["val_gain"] for x in fresh]
    fresh_val, fresh_test = ([float(np.mean(x[key])) for x in fresh] for key in ("fresh_val_gains", "fresh_test_gains"))
    two = [x["fresh_val_gains"][:2] for x in fresh if len(x["fresh_val_gains"]) >= 2]
    confirmed = [float(np.mean(x["fresh_test_gains"])) for x in fresh if x["confirmed"]]
    return {"forks": forks, "labels": labels, "better_on_test": float(np.mean(test_gains > 0)) if labels else float("nan"),
            "mean_test_gain": float(test_gains.mean()) if labels else float("nan"), "replayed": len(fresh),
            "selected_val_gain": str(mean_ci(selected)), "fresh_val_gain": str(mean_ci(fresh_val)),
            "fresh_test_gain": str(mean_ci(fresh_test)),
            "pair_noise_sd": float(np.std([a - b for a, b in two], ddof=1) / np.sqrt(2)) if len(two) > 1 else float("nan"),
            "correlation_selected_fresh": float(np.corrcoef(selected, fresh_val)[0, 1]) if len(fresh) > 2 else float("nan"),
            "confirmed": len(confirmed), "confirmed_fresh_test_gain": float(np.mean(confirmed)) if confirmed else float("nan")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=lambda s: [int(k) for k in s.split(",")], default=[0], help="vine training seeds"
    )
    parser.add_argument("--vine", default=VINE, help="the runs' folder, {seed} for the training seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--sets", default=",".join(SETS), help=f"held-out sets, comma-separated (default {','.join(SETS)})"
    )
    parser.add_argument("--regimes", type=lambda s: [r.strip() for r in s.split(",") if r.strip()], default=[],
                        help="only the sets' configurations of these regimes (comma-separated; default all)")
    parser.add_argument("--final-iteration", type=int, default=3, help="the iteration whose policy is each seed's final (default 3)")
    parser.add_argument("--out", default="var/phase4-from-schedule")
    parser.add_argument("--compare", default="",
                        help="other controllers to run beside them on all 3 orders (comma-separated): reference "
                        "controllers (e.g. heuristic) or saved policies as NAME=FILE.pt; the pooled finals are paired with each")  # fmt: skip
    parser.add_argument("--read-only", action="store_true",
                        help="run no episode: report on the episodes already on disk (a look at an evaluation in progress; "
                        "pairs whose episodes are missing are left out)")  # fmt: skip
    parser.add_argument("--no-start", action="store_true",
                        help="do not run the start (the schedule's student) live; its agreement with the schedule is then "
                        "only the distillation's, on the warehouse's states")  # fmt: skip
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()
    import torch

    torch.set_num_threads(1)
    from tamiyo_models.common.stats import noise_floor
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.evaluation.live import check_disjoint_seeds, policy_controller
    from tamiyo_models.evaluation.paired import run_paired

    folders = {k: Path(args.vine.format(seed=k)) for k in args.seeds}
    finals = {f"vine-s{k}": folder / "policies" / f"vine-iter-{args.final_iteration:02d}.pt" for k, folder in folders.items()}
    start = folders[args.seeds[0]] / "initial-distilled.pt"
    missing = [str(p) for p in [*([] if args.no_start else [start]), *finals.values()] if not p.exists()]
    if missing:
        raise SystemExit(
            f"not trained yet (experiments/phase4_vine.py --initial {REFERENCE} ...): {', '.join(missing)}"
        )
    seeds = {name: training_seeds(folders[k]) for name, k in zip(finals, args.seeds)}
    starts = [] if args.no_start else ["start"]
    compared = dict(item.strip().partition("=")[::2] for item in args.compare.split(",") if item.strip())
    others = list(compared)
    crossed = [(a, b) for a in others if compared[a] for b in others if b != a]
    not_found = [f"{name}={path}" for name, path in compared.items() if path and not Path(path).exists()]
    if not_found:
        parser.error(f"--compare: no such policy file: {', '.join(not_found)}")
    arms = {REFERENCE: reference_controller(REFERENCE), **{name: policy_controller(start) for name in starts},
            **{name: policy_controller(path) for name, path in finals.items()},
            **{name: policy_controller(path) if path else reference_controller(name) for name, path in compared.items()}}  # fmt: skip

    per_set, regimes_of, floors, moves, policy_moves = {}, {}, {}, Counter(), {}
    sets = [name.strip() for name in args.sets.split(",")]
    unknown = [name for name in sets if name not in SETS]
    if unknown or not sets:
        parser.error(f"unknown held-out set(s) {unknown}; known: {', '.join(SETS)}")
    for set_name in sets:
        kind, count, batch_seed, folder, *only = SETS[set_name]
        configs = set_configs(kind, count, batch_seed, *only)
        if args.regimes:  # a screen of some regimes: the other configurations are left out (not drawn anew)
            configs = [c for c in configs if c.regime() in args.regimes]
            if not configs:
                parser.error(f"--regimes {','.join(args.regimes)}: none of the {set_name} set's configurations")
        for name, used in seeds.items():
            try:  # a held-out configuration must not be one the learner trained on
                check_disjoint_seeds(configs, used)
            except ValueError as exc:
                raise SystemExit(f"{name} on the {set_name} set: {exc}") from None
        runs = run_paired(configs, arms, folder, reference=REFERENCE, replicate=2, replicate_arms=[REFERENCE, *finals, *others],
                          workers=args.workers, execute=not args.read_only)  # fmt: skip
        failed = runs.failures()
        if failed:  # their pairs are left out of every view below; say which
            print(f"{set_name} set: {len(failed)} episode(s) failed, their pairs left out:\n  " + "\n  ".join(failed))
        floors[set_name] = noise_floor(runs.null_differences(list(range(len(configs)))))
        diffs = {name: order_differences(runs, name) for name in [*starts, *finals, *others]}
        diffs["pooled"] = np.mean([diffs[name] for name in finals], axis=0)
        for name in others:  # paired through the reference: (final - ref) - (other - ref), per configuration and order
            diffs[f"pooled - {name}"] = diffs["pooled"] - diffs[name]
        for a, b in crossed:  # a saved policy against each other compared controller, the same way
            diffs[f"{a} - {b}"] = diffs[a] - diffs[b]
        per_set[set_name] = diffs
        regimes_of[set_name] = [c.regime() for c in configs]
        for name in finals:
            moves.update(departures(runs, name))
        for name, path in compared.items():
            if path:  # a saved policy: where it leaves the schedule says what it learned differently
                policy_moves.setdefault(name, Counter()).update(departures(runs, name))

    rows = [*starts, *finals, "pooled", *others]
    lines = [f"# Vine from {REFERENCE}, live against it (test split)", "",
             "Differences paired per configuration and data order with the schedule, 95% bootstrap intervals over "
             "configurations, (W/T/L). Fresh: 2 new data orders (same initial weights), their mean per configuration. "
             "Null (the schedule rerun on a fresh order): " + ", ".join(f"{s} {v:.2f} pp RMS" for s, v in floors.items()) + ".",
             ""]  # fmt: skip
    result: dict = {"reference": REFERENCE, "seeds": args.seeds, "noise_floor": floors}
    paired = [*(f"pooled - {o}" for o in others), *(f"{a} - {b}" for a, b in crossed)]
    both = {name: np.concatenate([per_set[s][name] for s in sets]) for name in [*rows, *paired]}
    def pairs(d: dict) -> str:  # an evaluation in progress (--read-only) says how many of its pairs are whole yet
        done = int(np.isfinite(d["pooled"][:, 0]).sum())
        return f"{len(d['pooled'])} pairs" + ("" if done == len(d["pooled"]) else f", {done} run so far")

    sections = [(f"{s} set ({pairs(d)})", d) for s, d in per_set.items()]
    if len(sets) > 1:
        sections.append((f"{'both' if len(sets) == 2 else f'all {len(sets)}'} sets ({pairs(both)})", both))
    # Each section: every arm - the schedule, then (with --compare) the pooled finals - each other controller.
    tables = [(f"- {REFERENCE}", {name: name for name in rows})]
    if others:
        tables.append(("pooled finals -", {name: f"pooled - {name}" for name in others}))
    if crossed:
        tables.append(("compared policy -", {f"{a} - {b}": f"{a} - {b}" for a, b in crossed}))
    for title, diffs in sections:
        lines += [f"## {title}", ""]
        result[title] = {}
        for header, keys in tables:
            lines += [f"| {header} | original order | fresh orders | all 3 orders |", "|---|---|---|---|"]
            for label, key in keys.items():
                cells = {view: summary(pick(diffs[key])) for view, pick in VIEWS.items()}
                result[title][key] = cells
                lines.append(f"| {label} | " + " | ".join(cell(c) for c in cells.values()) + " |")
            lines.append("")
    regimes = np.array([r for s in sets for r in regimes_of[s]])
    columns = ["pooled", *(f"pooled - {o}" for o in others)]
    lines += [f"## Per regime, {' and '.join(sets)} set(s), all 3 orders (pooled finals)", "",
              "| regime | pairs | pooled - " + REFERENCE + " |" + "".join(f" {c} |" for c in columns[1:]),
              "|---|---|---|" + "---|" * len(others)]  # fmt: skip
    result["per_regime"] = {}
    for regime in sorted(set(regimes)):
        cells = {c: summary(VIEWS["all 3"](both[c][regimes == regime])) for c in columns}
        result["per_regime"][regime] = cells["pooled"]
        for o in others:
            result["per_regime"][f"{regime}, pooled - {o}"] = cells[f"pooled - {o}"]
        lines.append(f"| {regime} | {cells['pooled']['pairs']} | " + " | ".join(cell(c) for c in cells.values()) + " |")
    lines += ["", "## Where the finals' actions first depart from the schedule's (original order, every seed)", ""]
    lines += [f"- {what}: {n}" for what, n in moves.most_common()]
    result["departures"] = dict(moves)
    for name, found in policy_moves.items():
        lines += ["", f"## Where {name}'s actions first depart from the schedule's (original order)", ""]
        lines += [f"- {what}: {n}" for what, n in found.most_common()]
        result[f"departures {name}"] = dict(found)
    lines += ["", "## The training labels (training configurations; validation chose them, test judged them after)", ""]
    result["labels"] = {}
    for k, folder in folders.items():
        if not (folder / "raw").exists():  # recorded to a landing folder: its region evidence is in vine-history.json
            lines.append(f"- vine-s{k}: the labels and their evidence are in {folder / 'vine-history.json'}")
            continue
        q = label_quality(folder / "raw")
        result["labels"][f"vine-s{k}"] = q
        kinds = Counter(f"step {x['step']}: {x['own']} -> {x['best']}" for x in q["labels"])
        lines.append(f"- vine-s{k}: {q['forks']} forks, {len(q['labels'])} candidate labels, {q['better_on_test']:.0%} better on "
                     f"test too (mean {q['mean_test_gain']:+.2f} pp): " + "; ".join(f"{what} x{n}" for what, n in sorted(kinds.items())))  # fmt: skip
        if q["replayed"]:
            lines.append(f"  - replayed on new data orders: {q['replayed']} candidates, selected at {q['selected_val_gain']} pp on "
                         f"validation, gaining {q['fresh_val_gain']} there on validation and {q['fresh_test_gain']} on test "
                         f"(one pair's noise {q['pair_noise_sd']:.2f} pp SD; correlation of selected and new-order gain "
                         f"{q['correlation_selected_fresh']:+.2f}); {q['confirmed']} confirmed (learned), gaining "
                         f"{q['confirmed_fresh_test_gain']:+.2f} pp on test on those orders (the orders whose validation confirmed "
                         f"them, so this gain shares their selection: an upper bound, not an estimate)")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
