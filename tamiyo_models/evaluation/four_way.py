"""The four-way headroom (issue 34): how much of a controller's possible gain needs it to read the training
state, measured before anything learns.

Four baselines choose one controller of a grid (fixed schedules, never growing, the heuristic) per held-out
configuration, each knowing more than the one before:

1. the **best fixed schedule**: the grid controller with the best mean score over the training configurations;
2. the **best schedule per regime**: the same, regime by regime;
3. the **descriptor-keyed schedule** (descriptor_schedule.py): chosen per configuration from what is visible at
   its first decision, by a small tree fitted on the training configurations;
4. the **per-configuration oracle**: each held-out configuration's best grid controller in hindsight, on its
   original data order; with `oracle_readers`, its best among the grid and the state readers. Issue 34's oracle
   picks among every legal action sequence (fork studies); a reader's actions on a configuration are one such
   sequence, so the larger set's value on the order it picks on is the tighter lower bound there. On the fresh
   orders it is scored on, a pick from more candidates can also be a luckier one, and score lower.

All four are then scored on the held-out configurations' *fresh* data orders, so the oracle's luck on the order
it was picked on does not count. The steps between levels are paired differences with bootstrap intervals;
4 minus 3 is the *state-dependent headroom*: what is left for a policy that reads the run as it unfolds.

Training configurations carry training seeds (even) and held-out ones evaluation seeds (odd), so the tree can
never see a configuration it is scored on (`fit_descriptor_schedule` refuses an odd seed).

    result, markdown = run_four_way(FourWayConfig(spec="arena"), "var/reports/four-way")
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .descriptor_schedule import DescriptorScheduleConfig, fit_descriptor_schedule, run_descriptors

LEVELS = ("best fixed schedule", "best schedule per regime", "descriptor-keyed schedule", "per-configuration oracle")
DEFAULT_GRID = ("heuristic", "never", "fixed:conv_heavy@0", "fixed:conv_heavy@1", "fixed:conv_heavy@3", "fixed:conv_light@1")


@dataclass(frozen=True)
class FourWayConfig:
    spec: str = "arena"
    regimes: tuple[str, ...] = ()  # empty: every regime that can run here
    grid: tuple[str, ...] = DEFAULT_GRID  # reference controller names; the first is the paired designs' reference
    training_configs_per_regime: int = 24
    heldout_configs_per_regime: int = 24
    training_batch_seed: int = 20_261_301
    heldout_batch_seed: int = 20_261_302
    fresh_orders: int = 2
    descriptor: DescriptorScheduleConfig = field(default_factory=DescriptorScheduleConfig)
    confidence: float = 0.95
    workers: int = 2
    # Controllers that read the state (e.g. vigilant:conv_heavy@0), run on the held-out configurations only and
    # set beside the levels: what a controller that reads the run does get, against what the oracle says is left.
    readers: tuple[str, ...] = ()
    # The oracle also picks among the readers (never levels 1 to 3: they choose before the run and cannot read it).
    oracle_readers: bool = False
    device: str = "cpu"  # where every episode runs (HeadroomConfig.device)


@dataclass
class FourWay:
    """`choices[level][i]`: the index in `candidates` (the grid, then oracle-only readers) chosen for held-out
    configuration i; `fresh[level][i]`: its mean
    score over the fresh orders; `steps["B - A"]`: (mean, low, high, pairs) of the paired difference."""

    grid: tuple[str, ...]
    regimes: list[str]
    choices: dict[str, np.ndarray]
    fresh: dict[str, np.ndarray]
    steps: dict[str, tuple[float, float, float, int]]
    rules: str = ""
    # The null control: the reference rerun on the fresh orders, RMS of its differences to its original order (pp),
    # by regime and "all": the noise any single pair carries.
    null_rms: dict[str, float] = field(default_factory=dict)
    # reader -> {"score": fresh-order mean, "<reader> - <level>": (mean, low, high, pairs)} (readers_beside_levels)
    readers: dict[str, dict] = field(default_factory=dict)
    # Controllers only the oracle may pick (state readers), after the grid's columns in `choices`' indices.
    oracle_extra: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """The controller each index of `choices` names: the grid, then what only the oracle picks."""
        return (*self.grid, *self.oracle_extra)

    @property
    def state_dependent(self) -> tuple[float, float, float, int]:
        """The per-configuration oracle minus the descriptor-keyed schedule, on fresh orders."""
        return self.steps[f"{LEVELS[3]} - {LEVELS[2]}"]

    def by_regime(self, confidence: float = 0.95) -> dict[str, dict[str, tuple[float, float, float, int]]]:
        from ..common.stats import mean_ci

        out = {}
        for regime in sorted(set(self.regimes)):
            rows = np.array([r == regime for r in self.regimes])
            out[regime] = {}
            for a, b in zip(LEVELS, LEVELS[1:]):
                diff = self.fresh[b][rows] - self.fresh[a][rows]
                ci = mean_ci(diff, confidence)
                out[regime][f"{b} - {a}"] = (float(np.nanmean(diff)), ci.low, ci.high, int(np.isfinite(diff).sum()))
        return out


def four_way_headroom(train_scores: np.ndarray, train_regimes: Sequence[str], train_descriptors: Sequence[Mapping[str, float]],
                      train_seeds: Sequence[int], held_scores: np.ndarray, held_fresh: np.ndarray,
                      held_regimes: Sequence[str], held_descriptors: Sequence[Mapping[str, float]], grid: Sequence[str],
                      config: DescriptorScheduleConfig = DescriptorScheduleConfig(), confidence: float = 0.95,
                      oracle_extra: Sequence[str] = ()) -> FourWay:  # fmt: skip
    """The four levels from score tables (configurations x grid controllers): levels 1 to 3 are chosen on the
    training configurations (original data order) and applied to the held-out ones; the oracle takes each
    held-out configuration's best in hindsight (original order); all four are scored on `held_fresh`, the
    held-out configurations' mean over fresh orders. `oracle_extra`: controllers whose columns follow the grid's
    in the held-out tables, open to the oracle only."""
    from ..common.stats import mean_ci

    train_scores, held_scores, held_fresh = (np.asarray(a, dtype=np.float64) for a in (train_scores, held_scores, held_fresh))
    n = len(held_scores)
    if held_scores.shape[1] != len(grid) + len(oracle_extra) or held_fresh.shape != held_scores.shape:
        raise ValueError(f"held-out tables of {held_scores.shape[1]} and {held_fresh.shape[1]} columns for a grid of "
                         f"{len(grid)} and {len(oracle_extra)} oracle-only controller(s)")  # fmt: skip
    fixed = int(np.nanargmax(np.nanmean(train_scores, axis=0)))
    per_regime = {}
    for regime in sorted(set(held_regimes)):
        rows = [i for i, r in enumerate(train_regimes) if r == regime]
        per_regime[regime] = int(np.nanargmax(np.nanmean(train_scores[rows], axis=0))) if rows else fixed
    model = fit_descriptor_schedule(train_descriptors, train_scores, grid, train_seeds, config)
    index = {s: j for j, s in enumerate(grid)}
    choices = {
        LEVELS[0]: np.full(n, fixed),
        LEVELS[1]: np.array([per_regime[r] for r in held_regimes]),
        LEVELS[2]: np.array([index[model.choose(d)] for d in held_descriptors]),
        LEVELS[3]: np.where(np.isfinite(held_scores), held_scores, -np.inf).argmax(axis=1),
    }
    fresh = {level: held_fresh[np.arange(n), c] for level, c in choices.items()}
    steps = {}
    for a, b in zip(LEVELS, LEVELS[1:]):
        diff = fresh[b] - fresh[a]
        ci = mean_ci(diff, confidence)
        steps[f"{b} - {a}"] = (float(np.nanmean(diff)), ci.low, ci.high, int(np.isfinite(diff).sum()))
    return FourWay(tuple(grid), list(held_regimes), choices, fresh, steps, model.rules(), oracle_extra=tuple(oracle_extra))


def readers_beside_levels(result: FourWay, reader_fresh: Mapping[str, np.ndarray], confidence: float = 0.95) -> dict[str, dict]:
    """Each state reader's fresh-order scores paired with every level's on the same held-out configurations."""
    from ..common.stats import mean_ci

    out = {}
    for name, fresh in reader_fresh.items():
        fresh = np.asarray(fresh, dtype=np.float64)
        row: dict = {"score": float(np.nanmean(fresh))}
        for level in LEVELS:
            diff = fresh - result.fresh[level]
            ci = mean_ci(diff, confidence)
            row[f"{name} - {level}"] = (float(np.nanmean(diff)), ci.low, ci.high, int(np.isfinite(diff).sum()))
        out[name] = row
    return out


def _draw(config: FourWayConfig, configs_per_regime: int, batch_seed: int, purpose: str) -> list:
    from ..warehouse.seeds import seed_class
    from .headroom import HeadroomConfig, headroom_configs

    configs, _ = headroom_configs(HeadroomConfig(spec=config.spec, regimes=config.regimes, configs_per_regime=configs_per_regime,
                                                 batch_seed=batch_seed, device=config.device))  # fmt: skip
    # The seed's class says what the configuration is for: the tree may only ever be fitted on even seeds.
    return [dataclasses.replace(c, seed=seed_class(c.seed, purpose), tags={**c.tags, "four_way": purpose}) for c in configs]


def _table(runs, grid: Sequence[str], orders: Sequence[int], which: str) -> np.ndarray:
    """configurations x grid: the mean score over `orders` (NaN where a run is missing or failed)."""
    table = np.full((len(runs.configs), len(grid)), np.nan)
    for i in range(len(runs.configs)):
        for j, arm in enumerate(grid):
            values = [runs.score(i, arm, o, which) for o in orders]
            values = [v for v in values if np.isfinite(v)]
            table[i, j] = np.mean(values) if values else np.nan
    return table


def _descriptors(runs, names) -> list[dict[str, float]]:
    out = []
    for i in range(len(runs.configs)):
        outcome = next(o for (k, _, r), o in runs.outcomes.items() if k == i and r == 0)
        out.append(run_descriptors(outcome.result.path, names))
    return out


def run_four_way(config: FourWayConfig, out_dir: str | Path, *, log: Callable[[str], None] = print,
                 on_result=None, on_plan: Callable[[int], None] | None = None,
                 execute: bool = True) -> tuple[FourWay, str]:  # fmt: skip
    """Run (or resume) both paired designs, every grid controller on every configuration (held-out ones also on
    `fresh_orders` fresh orders), and write four-way.md / four-way.json into `out_dir`."""
    from ..common.stats import noise_floor
    from ..controllers import reference_controller
    from ..controllers.config import named_controller
    from ..warehouse.seeds import EVALUATION, TRAINING
    from .paired import run_paired

    out = Path(out_dir)
    arms = {name: reference_controller(name) for name in config.grid}
    # A reader is a reference name or NAME=PATH, a learned policy: levels 1 to 3 never pick it, like any reader.
    readers = dict(named_controller(entry) for entry in config.readers)
    clash = [e.partition("=")[0] for e in config.readers if "=" in e and e.partition("=")[0] in arms]
    if clash:  # a learned policy named like a grid controller would be silently replaced by it
        raise ValueError(f"state reader name(s) {', '.join(clash)} are the grid's; name the policy file otherwise")
    readers = {name: c for name, c in readers.items() if name not in arms}
    if config.oracle_readers and not readers:  # before any episode runs
        raise ValueError("oracle_readers: no state reader outside the grid for the oracle to pick "
                         f"(readers {', '.join(config.readers) or 'none'}; a reader already in the grid is the grid's)")  # fmt: skip
    training = _draw(config, config.training_configs_per_regime, config.training_batch_seed, TRAINING)
    heldout = _draw(config, config.heldout_configs_per_regime, config.heldout_batch_seed, EVALUATION)
    if not training or not heldout:
        raise ValueError(f"spec {config.spec!r}: no regime can run here")
    log(f"four-way headroom: {len(training)} training and {len(heldout)} held-out configurations, grid of {len(arms)}, "
        f"{config.fresh_orders} fresh orders on the held-out ones")  # fmt: skip
    if on_plan:  # episodes in all, those already in the folder included (they are read back, and counted)
        on_plan(len(arms) * len(training) + (len(arms) + len(readers)) * len(heldout) * (1 + config.fresh_orders))
    train_runs = run_paired(training, arms, out / "training", reference=config.grid[0], null_orders=0, replicate=0,
                            workers=config.workers, on_result=on_result, execute=execute)  # fmt: skip
    held_runs = run_paired(heldout, {**arms, **readers}, out / "heldout", reference=config.grid[0], null_orders=config.fresh_orders,
                           replicate=config.fresh_orders, workers=config.workers, on_result=on_result, execute=execute)  # fmt: skip
    which, held_regimes = "test", [c.tags.get("regime", "all") for c in heldout]
    oracle_extra = tuple(readers) if config.oracle_readers else ()
    held_columns = [*config.grid, *oracle_extra]
    result = four_way_headroom(
        _table(train_runs, config.grid, [0], which), [c.tags.get("regime", "all") for c in training],
        _descriptors(train_runs, config.descriptor.descriptors), [c.seed for c in training],
        _table(held_runs, held_columns, [0], which), _table(held_runs, held_columns, range(1, config.fresh_orders + 1), which),
        held_regimes, _descriptors(held_runs, config.descriptor.descriptors),
        config.grid, config.descriptor, config.confidence, oracle_extra=oracle_extra,
    )  # fmt: skip
    fresh_orders = range(1, config.fresh_orders + 1)
    rows = {regime: [i for i, r in enumerate(held_regimes) if r == regime] for regime in sorted(set(held_regimes))}
    rows["all"] = list(range(len(held_regimes)))
    result.null_rms = {regime: noise_floor(held_runs.null_differences(indices, which)) for regime, indices in rows.items()}
    result.readers = readers_beside_levels(result, {name: _table(held_runs, [name], fresh_orders, which)[:, 0] for name in readers},
                                           config.confidence)  # fmt: skip
    text = four_way_markdown(result, config, rent=held_runs.rent())
    out.mkdir(parents=True, exist_ok=True)
    (out / "four-way.md").write_text(text)
    (out / "four-way.json").write_text(json.dumps({
        "config": dataclasses.asdict(config), "steps": result.steps, "by_regime": result.by_regime(config.confidence),
        "rules": result.rules, "chosen": {level: [result.candidates[j] for j in c] for level, c in result.choices.items()},
        "readers": result.readers, "null_rms": result.null_rms,
    }, indent=1, default=str))  # fmt: skip
    return result, text


def four_way_markdown(result: FourWay, config: FourWayConfig, rent: float = 0.0) -> str:
    def ci(t):
        mean, low, high, pairs = t
        return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] ({pairs})"

    decides = f"the charged score (rent {rent:g})" if rent else "the test accuracy"
    oracle = (f"; the oracle picks among the grid and the state readers ({', '.join(result.oracle_extra)})"
              if result.oracle_extra else "; the oracle picks among the grid")  # fmt: skip
    lines = ["# Four-way headroom", "",
             f"Spec {config.spec}; {config.training_configs_per_regime} training and {config.heldout_configs_per_regime} "
             f"held-out configurations per regime; grid {', '.join(config.grid)}; scored on {config.fresh_orders} fresh "
             f"data orders of the held-out configurations, test split; {decides} decides{oracle}. Each cell: mean paired "
             f"difference in pp with its {config.confidence:.0%} bootstrap interval (pairs).", "",
             "| regime | per regime − fixed | descriptor-keyed − per regime | oracle − descriptor-keyed (state-dependent) |",
             "|---|---|---|---|"]  # fmt: skip
    rows = {**result.by_regime(config.confidence), "all": result.steps}
    for regime, steps in rows.items():
        lines.append(f"| {regime} | " + " | ".join(ci(steps[f"{b} - {a}"]) for a, b in zip(LEVELS, LEVELS[1:])) + " |")
    if result.readers:
        lines += ["", "State readers on the same held-out configurations and fresh orders (each cell: the reader minus "
                  "the level, pp, interval, pairs):", "",
                  "| reader | score | − " + " | − ".join(LEVELS) + " |", "|---|---|" + "---|" * len(LEVELS)]  # fmt: skip
        for name, row in result.readers.items():
            lines.append(f"| {name} | {row['score']:.2f} | " + " | ".join(ci(row[f'{name} - {level}']) for level in LEVELS) + " |")
    if result.null_rms:
        lines += ["", f"Null control ({config.grid[0]} rerun on the fresh orders), RMS of its difference to its original "
                  "order: " + ", ".join(f"{regime} {rms:.2f} pp" for regime, rms in result.null_rms.items()) + "."]  # fmt: skip
    lines += ["", "Mean fresh-order score of each level (pp): " +
              ", ".join(f"{level} {np.nanmean(result.fresh[level]):.2f}" for level in LEVELS), "",
              "The descriptor-keyed schedule's rules (fitted on the training configurations):", "", "```",
              result.rules.rstrip(), "```", ""]  # fmt: skip
    return "\n".join(lines)
