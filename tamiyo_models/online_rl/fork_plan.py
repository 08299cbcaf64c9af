"""Directed forks: where the next fork studies should branch, given the fork evidence already stored.

Why: the region rule (fork_evidence.py) tests a region only once `min_forks` forks measured it, and labels it
only where an alternative's mean advantage clears the margin. Forks at a step drawn at random in the first six
decisions spread a night's parents thinly: in phase4-vine-region-arena 48 parents gave 11 tested cells and no
label, and 1 parent of 40 forked at the first decision, where the arena's gains are (conv_heavy at epoch 0
against epoch 1). A plan sends each parent to the step whose evidence is thinnest, and stops sending parents to
a cell once its evidence has decided.

A *cell* of the plan is what a configuration reveals before it runs plus the fork's time: (regime, episode
length, epoch bin), with the region rule's own bins. The region rule splits a cell further by task features,
seed stage and the champion's own action; under one champion those follow from the regime and the epoch for a
fixed schedule, and mostly so for a learned one, so the plan counts a cell as one region. The plan counts only
forks whose parent the champion itself played, each alternative measured against the parent's action. The vine
reads every stored fork, scored against the champion's action wherever that action was branched, so it may hold
more evidence than the plan counts; but another controller's parent reaches the champion's regions only where it
visited the same states, which after the first decision (a seed grafted or not, at another epoch) it seldom does.
So after a promotion the plan starts over, and errs toward forks at the new champion's own decisions.

Each cell has a target number of forks:
  - thin: fewer than `min_forks` forks: target `min_forks` (below it the region rule does not test at all);
  - decided: an alternative the region rule's own test passes (one-sided t-test of a mean gain above 0, at the
    false discovery rate over every cell and alternative the plan tests, and a mean above the margin), or every
    alternative's one-sided upper bound below the margin (nothing there can clear it): no more forks;
  - open: otherwise, the forks that would detect the margin at the cell's spread (fork_evidence.forks_needed),
    at least one more, at most `max_per_cell` (one noisy cell must not take every night's parents).

Parents are assigned in order, depth first in time: each to the earliest cell of its regime and length that still
needs forks, thin or open. The first decisions are where the graft happens and where the arena's gains are; later
forks mostly compare WAIT with ADVANCE on a seed already on its way, and tie (branching.BranchConfig.max_step), so
an open early cell is worth more than a thin late one, and `max_per_cell` bounds what it takes. A parent with
nowhere to go forks at a random step (the rule before plans), so a night keeps measuring what no cell asked about.
Each assignment counts toward its cell's target before the next parent is placed. The plan is a pure function of
the stored evidence and the parents; the night writes it down before its first fork, and a resumed night reads it
back (evidence ingested since must not move a fork already run).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .fork_evidence import EvidenceConfig, forks_needed


@dataclass(frozen=True)
class ForkPlanConfig:
    min_step: int = 1  # the first decision (step 1 is decided at epoch 0)
    max_step: int = 6  # the last step a fork may start at: later forks mostly compare WAIT with ADVANCE, and tie
    max_per_cell: int = 24
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)  # the region rule's bins, min_forks and margin

    def __post_init__(self):
        if not 1 <= self.min_step <= self.max_step:
            raise ValueError(f"fork plan: need 1 <= min_step <= max_step, got {self.min_step} and {self.max_step}")
        if self.max_per_cell < self.evidence.min_forks:
            raise ValueError(f"fork plan: max_per_cell ({self.max_per_cell}) must be >= min_forks ({self.evidence.min_forks})")

    def to_dict(self) -> dict:
        return {**asdict(self), "evidence": self.evidence.to_dict()}


def epoch_bin(step: int, edges) -> tuple[int, int | None]:
    """The region rule's epoch bin of a decision at `step` (step s is decided at epoch s - 1; region_of)."""
    epoch = step - 1
    k = max(i for i, edge in enumerate(edges) if edge <= epoch)
    return (edges[k], edges[k + 1] if k + 1 < len(edges) else None)


@dataclass
class PlanCell:
    regime: str | None
    length: int
    epochs: tuple[int, int | None]
    forks: int = 0  # stored forks that measured the cell (distinct parent and step)
    gains: dict[str, list[float]] = field(default_factory=dict)  # alternative -> advantage over the champion's action, per fork
    status: str = "thin"  # thin, open, decided
    target: int = 0
    why: str = ""
    planned: int = 0  # parents sent here by this plan

    @property
    def need(self) -> int:
        return max(0, self.target - self.forks - self.planned)

    def row(self) -> dict:
        low, high = self.epochs
        return {"regime": self.regime, "length": self.length, "epochs": f"{low}-{'' if high is None else high - 1}",
                "forks": self.forks, "status": self.status, "target": self.target, "planned": self.planned, "why": self.why}  # fmt: skip


def judge(cell: PlanCell, config: ForkPlanConfig, adjusted: dict[str, float] | None = None) -> PlanCell:
    """Set the cell's status and target from its stored gains (see the module docstring). `adjusted`: each
    alternative's Benjamini-Hochberg adjusted p-value over every (cell, alternative) the plan tests (judge_all), the
    region rule's own test (fork_evidence.pooled_evidence); a cell judged alone tests its alternatives alone."""
    ev = config.evidence
    if cell.forks < ev.min_forks:
        cell.status, cell.target = "thin", ev.min_forks
        cell.why = f"{cell.forks} of the {ev.min_forks} forks the region rule needs before it tests"
        return cell
    tested = {a: g for a, g in cell.gains.items() if len(g) >= ev.min_forks}
    if adjusted is None:
        adjusted = _adjusted({(0, a): g for a, g in tested.items()})
        adjusted = {a: q for (_, a), q in adjusted.items()}
    means = {a: float(np.mean(g)) for a, g in tested.items()}
    winners = [a for a in tested if adjusted.get(a, 1.0) <= ev.fdr and means[a] > ev.margin]
    if winners:
        best = max(winners, key=means.__getitem__)
        cell.status, cell.target = "decided", cell.forks
        cell.why = (f"{best} beats the champion by {means[best]:+.2f} pp (adjusted p {adjusted[best]:.3f}): "
                    "the region rule labels it")  # fmt: skip
        return cell
    highs = {a: _upper(g, ev.confidence) for a, g in tested.items()}
    if tested and all(h < ev.margin for h in highs.values()):
        cell.status, cell.target = "decided", cell.forks
        cell.why = (f"no alternative can clear the {ev.margin:.2f} pp margin (highest one-sided "
                    f"{ev.confidence:.0%} upper bound {max(highs.values()):+.2f})")  # fmt: skip
        return cell
    spread = max((float(np.std(g, ddof=1)) for g in tested.values()), default=math.nan)
    wanted = forks_needed(spread, ev.margin) if spread == spread else cell.forks + 1
    cell.status = "open"
    cell.target = min(config.max_per_cell, max(cell.forks + 1, wanted))
    cell.why = f"undecided at a spread of {spread:.2f} pp: {wanted} forks detect the {ev.margin:.2f} pp margin"
    if cell.target < wanted:
        cell.why += f" (capped at {config.max_per_cell})"
    return cell


def _adjusted(samples: dict[tuple, list[float]]) -> dict[tuple, float]:
    """One-sided t-tests of mean > 0, Benjamini-Hochberg adjusted over all of them (as pooled_evidence does; a
    constant sample is its own answer)."""
    from scipy import stats

    if not samples:
        return {}
    keys = list(samples)
    p = [float(stats.ttest_1samp(samples[k], 0.0, alternative="greater").pvalue) if np.ptp(samples[k]) > 0
         else float(samples[k][0] <= 0) for k in keys]  # fmt: skip
    return dict(zip(keys, (float(q) for q in stats.false_discovery_control(p, method="bh"))))


def _upper(gains: list[float], confidence: float) -> float:
    """The one-sided t upper bound of the mean gain (a constant sample: its value)."""
    from scipy import stats

    x = np.asarray(gains, dtype=float)
    if np.ptp(x) == 0:
        return float(x[0])
    return float(x.mean() + stats.t.ppf(confidence, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def plan_cells(forks, config: ForkPlanConfig = ForkPlanConfig()) -> dict[tuple, PlanCell]:
    """The plan's cells from stored forks: rows of (regime, length, parent run, fork step, alternative, gain), the
    gain being the alternative's final (charged) validation accuracy minus the parent's (stored_plan_forks)."""
    cells: dict[tuple, PlanCell] = {}
    seen: set[tuple] = set()
    for regime, length, parent, step, action, gain in forks:
        key = (regime, int(length), epoch_bin(int(step), config.evidence.epoch_edges))
        cell = cells.setdefault(key, PlanCell(regime, int(length), key[2]))
        if (parent, step) not in seen:
            seen.add((parent, step))
            cell.forks += 1
        cell.gains.setdefault(action, []).append(float(gain))
    ev = config.evidence
    tested = {(key, a): g for key, cell in cells.items() if cell.forks >= ev.min_forks
              for a, g in cell.gains.items() if len(g) >= ev.min_forks}  # fmt: skip
    adjusted = _adjusted(tested)
    for key, cell in cells.items():
        judge(cell, config, {a: q for (k, a), q in adjusted.items() if k == key})
    return cells


def plan_forks(parents, cells: dict[tuple, PlanCell], config: ForkPlanConfig = ForkPlanConfig()) -> list[int | None]:
    """A fork step for each parent, given as (regime, length): the earliest step whose cell still needs forks
    (module docstring); None where no cell of its regime and length needs one. `cells` gain the parents
    planned into them (and the cells first met here, with no evidence, are added as thin)."""
    steps: list[int | None] = []
    for regime, length in parents:
        chosen = None
        for step in range(config.min_step, min(config.max_step, int(length)) + 1):
            key = (regime, int(length), epoch_bin(step, config.evidence.epoch_edges))
            if key not in cells:
                cells[key] = judge(PlanCell(regime, int(length), key[2]), config)
            if cells[key].need > 0:
                chosen = step
                cells[key].planned += 1
                break
        steps.append(chosen)
    return steps


def stored_plan_forks(warehouse, champion_label: str, nights=None) -> list[tuple]:
    """Every stored fork of a parent the champion played (controller label), on the parent's own data order and
    to the end: (regime, length, parent run, fork step, alternative, gain in pp), the gain charged for growth like
    the score. `nights`: only parents tagged with one of them. No warehouse, or no branches table yet: no forks."""
    from ..warehouse import query
    from .vine import CHARGED_VAL_SQL

    quote = lambda values: ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)  # noqa: E731
    only = "" if nights is None else f"AND json_extract_string(r.config_json, '$.tags.night') IN ({quote(nights) or 'NULL'})"
    label = champion_label.replace("'", "''")
    sql = f"""
        WITH parents AS (
            SELECT r.run_id, r.regime, r.max_epochs, {CHARGED_VAL_SQL} AS final
            FROM runs r JOIN episodes e USING (run_id)
            WHERE e.status = 'complete' AND r.controller_label = '{label}'
              AND r.run_id IN (SELECT parent_run_id FROM branches) {only})
        SELECT p.regime, p.max_epochs, b.parent_run_id, b.fork_step, b.forced_action, {CHARGED_VAL_SQL} - p.final AS gain
        FROM branches b JOIN runs r USING (run_id) JOIN episodes e USING (run_id) JOIN parents p ON p.run_id = b.parent_run_id
        WHERE e.status = 'complete' AND NOT starts_with(b.run_id, b.parent_run_id || '-o')
          AND (b.horizon IS NULL OR b.fork_step + b.horizon - 1 >= r.max_epochs)
        ORDER BY 3, 4, 5"""
    if not Path(warehouse).exists():
        return []  # a first night: nothing measured yet
    tables = query(warehouse, "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name IN ('runs', 'episodes', 'branches')",
                   live=True)  # fmt: skip
    if int(tables["n"][0]) < 3:
        return []  # a warehouse that has not ingested a branch yet
    return [tuple(row) for row in query(warehouse, sql, live=True).iter_rows()]


def describe(cells: dict[tuple, PlanCell]) -> list[dict]:
    """The plan's cells as rows (for the night's record and report), in regime, length and time order."""
    order = sorted(cells.values(), key=lambda c: (str(c.regime), c.length, c.epochs[0]))
    return [c.row() for c in order if c.forks or c.planned]
