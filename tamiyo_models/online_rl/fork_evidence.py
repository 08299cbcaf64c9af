"""Pooled fork evidence: what an action is worth in a *region* of states, from every fork measured there.

Why: vine.py's fork rule reads one fork at a time. An alternative that beat the policy's own action by more than
the margin at one fork becomes a label for that one state, and the student generalises it to whatever looks
alike. On the arena one fork's difference carries about 0.7 pp of training luck, so among dozens of forks the
winners are mostly luck (selected at +0.61 pp, they held +0.13 on new data orders, docs/online-rl.md), and the
student carried a label measured in one regime into another where the forks measured it losing. Two training
seeds drew opposite conclusions from forks of the same regime and epoch.

Here every fork is evidence, for or against. A region is the states that share what a decision can depend on
and the controller can see: the task (its task features, rounded), the episode's length, the epoch (binned),
the seed's stage and the action the policy took there. In a region, each alternative's advantage over the
policy's own action is measured once per fork (final validation accuracy after the alternative minus the
parent's); its mean over the region's forks, with an interval, is the evidence. An alternative becomes the
region's label only where

  - the region has at least `min_forks` forks that measured it,
  - its mean advantage is above 0 at a false discovery rate of `fdr` over every (region, alternative) tested
    (one-sided t-tests, Benjamini-Hochberg via scipy): with 40 cells, two 95% lower bounds clear 0 by chance,
  - and its mean is above `margin` (pp): a real but tiny gain is not worth a change of policy.

A label then applies to every visited state of its region (where the alternative is legal), not to the one
state it was measured in: locality by construction, since a region never spans two tasks. Forks of one parent
at different epochs fall in different regions; two forks of one parent in the same epoch bin are counted as
independent (rare at 2 forks per episode). Only the parent's own data order counts: vine's confirmation replays
exist only for the candidates a single fork selected, and adding them for those alone would weight the sample
toward the lucky forks.

On a host with several seed slots (the factored action, world.actions) "the seed's stage" is one seed's of
several, and the same own action means another decision when another slot holds a seed (a graft there is no
longer possible, an ADVANCE of that seed is): the region then also holds every slot's stage, where the feature
set has them (`slot<k>_stage`). The slot count is the width of the states' legal masks, so a single-slot
region is exactly what it always was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..common.stats import Interval, mean_ci, pairs_needed
from ..world.actions import ALL_ACTIONS, FINE_ACTIONS, slots_of_space
from ..world.features import TASK_FEATURES
from ..world.lifecycle import Stage


@dataclass(frozen=True)
class EvidenceConfig:
    # Epoch bins: [edge_k, edge_k+1), the last one open. The first decisions are binned alone: they are where the
    # graft happens and where the forks concentrate.
    epoch_edges: tuple[int, ...] = (0, 1, 2, 3, 5, 10)
    decimals: int = 2  # task features are rounded to this many decimals, so one task is one region
    min_forks: int = 3  # forks that measured an alternative in a region before it is tested at all
    fdr: float = 0.05  # false discovery rate over every (region, alternative) tested
    margin: float = 0.25  # pp: the least mean advantage worth a change of policy
    confidence: float = 0.95  # of the reported intervals (the decision uses the FDR-adjusted tests)

    def __post_init__(self):
        if list(self.epoch_edges) != sorted(set(self.epoch_edges)) or not self.epoch_edges or self.epoch_edges[0] != 0:
            raise ValueError(f"fork evidence: epoch_edges must rise strictly from 0, got {self.epoch_edges}")
        if self.min_forks < 2:
            raise ValueError(f"fork evidence: min_forks must be >= 2 (a test needs a spread), got {self.min_forks}")
        if not 0.0 < self.fdr <= 1.0:  # 1: any mean above the margin passes (no false discovery control)
            raise ValueError(f"fork evidence: fdr must be in (0, 1], got {self.fdr}")
        if self.margin < 0:
            raise ValueError(f"fork evidence: margin must be >= 0 pp, got {self.margin}")

    def to_dict(self) -> dict:
        return {**asdict(self), "epoch_edges": list(self.epoch_edges)}


@dataclass(frozen=True)
class Region:
    task: tuple[float | None, ...]  # the task features in the policy's feature set, rounded (None: unknown)
    length: int  # the episode's length in epochs (epoch + epochs remaining)
    epochs: tuple[int, int | None]  # the epoch bin [low, high), high None: open
    stage: int  # the seed's stage (lifecycle.Stage value; 0 without the feature)
    own: int  # the policy's own action (fine index)
    slot_stages: tuple[int, ...] = ()  # each slot's seed's stage on a multi-slot host (empty on a single-slot one)

    @property
    def stage_name(self) -> str:
        return Stage(self.stage).name

    @property
    def epochs_text(self) -> str:
        low, high = self.epochs
        return f"epoch {low}" if high == low + 1 else f"epochs {low}-{high - 1}" if high else f"epochs {low}+"

    def describe(self, task_names: tuple[str, ...] = ()) -> str:
        """The region in words; the task only where `task_names` (task_names_of) are given."""
        task = ", ".join(f"{_short(n)} {'?' if v is None else f'{v:g}'}" for n, v in zip(task_names, self.task))
        slots = f"slots {'/'.join(Stage(s).name for s in self.slot_stages)}, " if self.slot_stages else ""
        return f"{task + ', ' if task else ''}{self.length} epochs, {self.epochs_text}, {self.stage_name}, {slots}own {ALL_ACTIONS[self.own]}"


def _short(name: str) -> str:
    return name.removeprefix("task_").replace("log10_", "log ")


@dataclass
class Cell:
    """One alternative in one region: its advantage over the policy's own action at every fork that measured it."""

    region: Region
    action: int  # the alternative (fine index)
    gains: list[float]  # pp of final validation accuracy, one per fork
    runs: list[str]  # the parent of each fork
    interval: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))
    p_value: float = math.nan  # one-sided (mean > 0); nan where not tested (fewer than min_forks)
    adjusted: float = math.nan  # Benjamini-Hochberg adjusted
    label: bool = False  # significant at the FDR and above the margin

    @property
    def spread(self) -> float:
        return float(np.std(self.gains, ddof=1)) if len(self.gains) > 1 else math.nan

    def row(self, task_names: tuple[str, ...] = ()) -> dict:
        return {"region": self.region.describe(task_names), "action": ALL_ACTIONS[self.action], "forks": len(self.gains),
                "mean": self.interval.mean, "low": self.interval.low, "high": self.interval.high, "sd": self.spread,
                "p": self.p_value, "adjusted": self.adjusted, "label": self.label}  # fmt: skip


def task_names_of(feature_names) -> tuple[str, ...]:
    """The task features a region key reads from this feature order (those the policy sees)."""
    return tuple(n for n in TASK_FEATURES if n in feature_names)


def slots_of_mask(legal) -> int:
    """The seed slots of the action space a legal mask is over."""
    return 1 if len(legal) <= len(FINE_ACTIONS) else slots_of_space(len(legal))


def region_of(features, feature_names, own: int, config: EvidenceConfig, slots: int = 1) -> Region:
    """The region of a state given as a feature vector in `feature_names` order, where the policy took `own`, on
    a host with `slots` seed slots."""
    index = {n: i for i, n in enumerate(feature_names)}
    if "epoch" not in index or "epochs_remaining" not in index:
        raise ValueError("fork evidence: the feature set needs 'epoch' and 'epochs_remaining' to place a state in time")
    epoch = round(float(features[index["epoch"]]))
    length = round(float(features[index["epoch"]]) + float(features[index["epochs_remaining"]]))
    edges = list(config.epoch_edges)
    k = max(i for i, edge in enumerate(edges) if edge <= epoch)
    bin_ = (edges[k], edges[k + 1] if k + 1 < len(edges) else None)
    # A run without a task description has NaN task features (features.py); NaN never equals itself, so it would
    # put every such state in a region of its own: None stands for "unknown" and pools them.
    task = tuple(None if math.isnan(v) else round(v, config.decimals)
                 for v in (float(features[index[n]]) for n in task_names_of(feature_names)))  # fmt: skip
    stage = round(float(features[index["seed_stage"]])) if "seed_stage" in index else 0
    named = [f"slot{k}_stage" for k in range(slots)] if slots > 1 else []
    slot_stages = tuple(round(float(features[index[n]])) for n in named) if all(n in index for n in named) else ()
    return Region(task, length, bin_, stage, int(own), slot_stages)


def pooled_evidence(forks, feature_names, config: EvidenceConfig = EvidenceConfig(), reference=None) -> list[Cell]:
    """Every (region, alternative) measured by `forks` (vine.ForkState: features in `feature_names` order, the
    parent's action `taken`, `outcome` per action), with its interval, test and label decision; sorted by region
    then by mean advantage, best first. Advantages are over the parent's own action, or over `reference[i]` for
    fork i (a fixed policy's action there, measured like every legal action; a fork that lacks it is skipped)."""
    from scipy import stats

    cells: dict[tuple[Region, int], Cell] = {}
    for i, fork in enumerate(forks):
        base = fork.taken if reference is None else int(reference[i])
        if base not in fork.outcome:
            continue
        region = region_of(fork.features, feature_names, base, config, slots_of_mask(fork.legal))
        own = fork.outcome[base]
        for action, final in fork.outcome.items():
            if action != base:
                cell = cells.setdefault((region, action), Cell(region, action, [], []))
                cell.gains.append(float(final) - float(own))
                cell.runs.append(fork.run_id)
    tested = []
    for cell in cells.values():
        cell.interval = mean_ci(cell.gains, confidence=config.confidence)
        if len(cell.gains) >= config.min_forks:
            x = np.asarray(cell.gains)
            # A constant sample has no spread to test with: it is its own answer.
            cell.p_value = float(stats.ttest_1samp(x, 0.0, alternative="greater").pvalue) if np.ptp(x) > 0 else float(x[0] <= 0)
            tested.append(cell)
    if tested:
        adjusted = stats.false_discovery_control([c.p_value for c in tested], method="bh")
        for cell, q in zip(tested, adjusted):
            cell.adjusted = float(q)
            cell.label = bool(q <= config.fdr and cell.interval.mean > config.margin)
    return sorted(cells.values(), key=lambda c: (str(c.region), -c.interval.mean))


def region_winners(cells: list[Cell]) -> dict[Region, Cell]:
    """Each region's label: of its alternatives that passed, the one with the largest mean advantage."""
    winners: dict[Region, Cell] = {}
    for cell in cells:
        if cell.label and (cell.region not in winners or cell.interval.mean > winners[cell.region].interval.mean):
            winners[cell.region] = cell
    return winners


def region_labels(cells: list[Cell], visited, feature_names, config: EvidenceConfig = EvidenceConfig()) -> list[tuple]:
    """(features, legal, action) for every visited state (run_id, features, legal, own action) whose region has a
    label that is legal there: the region's decision applied to all its states, and to nothing outside it. "Own"
    is the action the cells' advantages were measured against (pooled_evidence's reference)."""
    winners = region_winners(cells)
    labels = []
    for _run, features, legal, own in visited:
        cell = winners.get(region_of(features, feature_names, own, config, slots_of_mask(legal)))
        if cell is not None and legal[cell.action]:
            labels.append((features, legal, cell.action))
    return labels


def forks_needed(spread: float, effect: float) -> int:
    """Forks in one region to detect a mean advantage of `effect` pp at 80% power (two-sided 5%), when one fork's
    advantage scatters by `spread`: the budget a branching learner needs per region and action."""
    return pairs_needed(spread, effect)

