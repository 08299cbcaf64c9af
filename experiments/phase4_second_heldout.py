"""The Phase 4 finals on a second set of held-out arena configurations, never used for anything before.

Every Phase 4 number so far is on the 24 configurations of batch seed 20261202. This draws 24 more from the
shipped `arena` spec with another batch seed (default 20261204: no training, selection or analysis has read it)
and runs, on the original data order and 2 fresh ones, scored on the test split:

- the vine finals of the 3 training seeds (`experiments/phase4_vine.py --val-subsample 10000 --margin 0.25`),
  pooled per configuration (as the removed `phase4_sample_efficiency.py` did);
- the heuristic (the pairing arm and its null control), the fixed schedule conv_heavy@3 (the best reference
  controller of the arena screen), BCQ (Phase 3) and the Phase 1 policy;
- `fixed:conv_heavy@2`, which beat conv_heavy@3 on fresh orders in two regimes of the headroom-over-fixed study
  (`tamiyo headroom --reference fixed:conv_heavy@3`, batch seed 20261203): a confirmation of that after-the-fact
  finding on configurations that played no part in it.

Then each against the heuristic, and the pooled vine finals against each reference, on the original orders, the
fresh orders and the mean of all 3. With `--with-first`, the same comparisons on both held-out sets together (48
pairs). Episodes already on disk are reused, so an interrupted run resumes.

    .venv/bin/python experiments/phase4_second_heldout.py [--batch-seed 20261204] [--pairs 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VINE = "var/phase4-arena-vine-val10000-margin0.25-s{seed}"
REFERENCES = "fixed:conv_heavy@3,fixed:conv_heavy@2"  # the first is the one the others are also compared with


def arms(args) -> dict[str, str]:
    policies = {f"vine-s{k}": Path(VINE.format(seed=k)) / "policies" / "vine-iter-03.pt" for k in args.vine_seeds}
    policies.update({"phase3-bcq": Path(args.phase3), "phase1": Path(args.phase1)})
    missing = [f"{name}: {path}" for name, path in policies.items() if not path.exists()]
    if missing:
        raise SystemExit(
            "policy files missing (run experiments/phase4_vine.py and phase3_arena.py first): " + "; ".join(missing)
        )
    return {name: str(path) for name, path in policies.items()}


def training_seeds(vine_seeds) -> dict[str, list[int]]:
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    return {f"vine-s{k}": [read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(Path(VINE.format(seed=k)) / "raw")]
            for k in vine_seeds}  # fmt: skip


def paired_runs(
    configs, live_dir: Path, policies: dict[str, str], references: list[str], *, execute: bool = False, workers: int = 1
):
    """The design of the live evaluation (each arm paired with the heuristic; every arm and the heuristic on the
    original and 2 fresh orders), run where `execute`, else read back from `live_dir`."""
    from tamiyo_models.controllers import ControllerConfig, reference_controller
    from tamiyo_models.evaluation.live import policy_controller
    from tamiyo_models.evaluation.paired import run_paired

    controllers = {"heuristic": ControllerConfig(kind="heuristic")}  # as evaluate_live_many builds them: same run ids
    controllers.update({name: policy_controller(path) for name, path in policies.items()})
    controllers.update({name: reference_controller(name) for name in references})
    return run_paired(configs, controllers, live_dir, replicate=2, workers=workers, execute=execute)


def differences(runs) -> dict[str, np.ndarray]:
    """arm - heuristic per configuration and order: {arm: array (configurations, 3)}, order 0 = the original,
    then the 2 fresh orders (NaN where an episode is missing)."""
    idx = list(range(len(runs.configs)))
    return {name: np.stack([runs.differences(name, idx, order) for order in range(3)], axis=1)
            for name in runs.arms if name != "heuristic"}  # fmt: skip


def summary(values: np.ndarray) -> dict:
    from tamiyo_models.common.stats import mean_ci, win_tie_loss

    values = values[np.isfinite(values)]
    ci = mean_ci(values)
    wins, ties, losses = win_tie_loss(values)
    return {
        "pairs": int(values.size),
        "mean": ci.mean,
        "low": ci.low,
        "high": ci.high,
        "wtl": f"{wins}/{ties}/{losses}",
    }


def table(diffs: dict[str, np.ndarray], vine: list[str], title: str, references: list[str]) -> tuple[list[str], dict]:
    """Rows: each arm vs the heuristic, then the pooled vine finals vs each other arm, on the original order, the
    fresh orders (their mean per configuration) and all 3 orders."""
    pooled = np.mean([diffs[name] for name in vine], axis=0)
    views = {
        "original": lambda d: d[:, 0],
        "fresh": lambda d: np.nanmean(d[:, 1:], axis=1),
        "all 3": lambda d: np.nanmean(d, axis=1),
    }

    def cells(d: np.ndarray) -> tuple[list[str], dict]:
        out = {view: summary(pick(d)) for view, pick in views.items()}
        return [f"{s['mean']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}] ({s['wtl']})" for s in out.values()], out

    lines = [f"### {title}", "", "| comparison | original order | fresh orders | all 3 orders |", "|---|---|---|---|"]
    result: dict = {}
    for name in [*vine, "pooled vine", *[n for n in diffs if n not in vine]]:
        text, result[f"{name} - heuristic"] = cells(pooled if name == "pooled vine" else diffs[name])
        lines.append(
            f"| {'**pooled vine finals**' if name == 'pooled vine' else name} - heuristic | " + " | ".join(text) + " |"
        )
    for other in [n for n in diffs if n not in vine]:
        text, result[f"pooled vine - {other}"] = cells(pooled - diffs[other])
        lines.append(f"| pooled vine - {other} | " + " | ".join(text) + " |")
    first, *others = references
    for other in [n for n in others if first in diffs and n in diffs]:
        text, result[f"{other} - {first}"] = cells(diffs[other] - diffs[first])
        lines.append(f"| {other} - {first} | " + " | ".join(text) + " |")
    return lines + [""], result


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch-seed", type=int, default=20_261_204, help="the second held-out batch (never read before)"
    )
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--vine-seeds", type=lambda s: [int(k) for k in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--phase3", default="var/arena/policies/phase3-bcq.pt", help="the best Phase 3 policy")
    parser.add_argument(
        "--phase1", default="var/arena/policies/phase1-base+lifecycle+task.pt", help="the Phase 1 policy"
    )
    parser.add_argument("--live-dir", default="var/arena/second/live", help="episodes of these configurations (reused)")
    parser.add_argument(
        "--with-first",
        action="store_true",
        help="also pool with the first held-out set (batch seed 20261202, its episodes in var/arena/confirm/live)",
    )
    parser.add_argument("--references", default=REFERENCES,
                        help="reference controllers, comma-separated; the others are also compared with the first "
                        f"(default {REFERENCES})")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="var/phase4-second-heldout")
    args = parser.parse_args()
    from tamiyo_models.common.shutdown import exit_on_sigterm

    exit_on_sigterm()
    import torch

    torch.set_num_threads(1)
    from tamiyo_models.common.stats import noise_floor
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.evaluation.live import check_disjoint_seeds

    if args.batch_seed == 20_261_202:
        parser.error("--batch-seed 20261202 is the first held-out set; the point here is another one")
    policies = arms(args)
    references = args.references.split(",")
    configs = GenerationSpec.load("arena").sample(args.pairs, seed=args.batch_seed)
    for name, seeds in training_seeds(args.vine_seeds).items():
        try:  # a held-out configuration must not be one the policy trained on
            check_disjoint_seeds(configs, seeds)
        except ValueError as exc:
            raise SystemExit(f"{name}: {exc}") from None
    runs = paired_runs(configs, Path(args.live_dir), policies, references, execute=True, workers=args.workers)
    floor = noise_floor(runs.null_differences(list(range(len(configs)))))
    vine = [f"vine-s{k}" for k in args.vine_seeds]
    regimes = sorted({c.regime() for c in configs})
    lines = [f"# Phase 4 finals on a second held-out set (arena, batch seed {args.batch_seed}, {len(configs)} pairs)", "",
             (f"Regimes: {', '.join(f'{r} {sum(c.regime() == r for c in configs)}' for r in regimes)}. Test split; "
             "differences paired per configuration and data order, 95% bootstrap intervals over configurations, "
             "(W/T/L). Fresh orders: 2 new data orders, same initial weights; their mean per configuration. Null "
             f"(heuristic rerun): {floor:.2f} pp RMS."), ""]  # fmt: skip
    diffs = differences(runs)
    text, result = table(diffs, vine, f"Second held-out set ({len(configs)} pairs)", references)
    lines += text
    out = {
        "batch_seed": args.batch_seed,
        "pairs": len(configs),
        "noise_floor": floor,
        "second": result,
    }
    if args.with_first:
        first = GenerationSpec.load("arena").sample(24, seed=20_261_202)
        first_diffs = differences(paired_runs(first, Path("var/arena/confirm/live"), policies, references))
        # Only the arms that ran all 3 orders on the first set too (the conv_heavy@2 and @1 schedules never ran there).
        common = [name for name in diffs if np.isfinite(first_diffs[name]).all()]
        both = {name: np.concatenate([first_diffs[name], diffs[name]]) for name in common}
        text, out["both"] = table(
            both, vine, f"Both held-out sets ({len(first) + len(configs)} pairs; {', '.join(common)})", references
        )
        lines += text
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(out, indent=1, default=float))
    (folder / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {folder / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
