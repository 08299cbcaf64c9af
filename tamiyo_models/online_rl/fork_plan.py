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
fixed schedule, and mostly so for a learned one, so the plan counts a cell as one region. Only forks whose
parent the champion itself played count: an alternative's advantage is measured against the champion's action.

Each cell has a target number of forks:
  - thin: fewer than `min_forks` forks: target `min_forks` (below it the region rule does not test at all);
  - decided: an alternative whose interval's low end is above 0 and whose mean clears the margin (the region rule's
    test before its correction over every cell, so a close one may still go unlabelled), or every alternative's
    interval below the margin (nothing there can clear it): no more forks;
  - open: otherwise, the forks that would detect the margin at the cell's spread (fork_evidence.forks_needed),
    at least one more, at most `max_per_cell` (one noisy cell must not take every night's parents).

Parents are assigned in order, depth first in time: each to the earliest cell of its regime and length that still
needs forks, thin or open. The first decisions are where the graft happens and where the arena's gains are; later
forks mostly compare WAIT with ADVANCE on a seed already on its way, and tie (branching.BranchConfig.max_step), so
an open early cell is worth more than a thin late one, and `max_per_cell` bounds what it takes. A parent with
nowhere to go forks at a random step (the rule before plans), so a night keeps measuring what no cell asked about.
Each assignment counts toward its cell's target before the next parent is placed. The plan is a pure function of the stored evidence and the parents, so a resumed night
recomputes it exactly (the night also writes it down).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..common.stats import mean_ci
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


def judge(cell: PlanCell, config: ForkPlanConfig) -> PlanCell:
    """Set the cell's status and target from its stored gains (see the module docstring)."""
    ev = config.evidence
    if cell.forks < ev.min_forks:
        cell.status, cell.target = "thin", ev.min_forks
        cell.why = f"{cell.forks} of the {ev.min_forks} forks the region rule needs before it tests"
        return cell
    intervals = {a: mean_ci(g, confidence=ev.confidence) for a, g in cell.gains.items() if len(g) >= 2}
    winners = [a for a, i in intervals.items() if i.low > 0 and i.mean > ev.margin]
    if winners:
        best = max(winners, key=lambda a: intervals[a].mean)
        cell.status, cell.target = "decided", cell.forks
        cell.why = f"{best} beats the champion by {intervals[best].mean:+.2f} [{intervals[best].low:+.2f}, {intervals[best].high:+.2f}] pp"
        return cell
    if intervals and all(i.high < ev.margin for i in intervals.values()):
        cell.status, cell.target = "decided", cell.forks
        cell.why = f"no alternative can clear the {ev.margin:.2f} pp margin (every interval's high end is below it)"
        return cell
    spread = max((float(_sd(g)) for g in cell.gains.values() if len(g) >= 2), default=math.nan)
    wanted = forks_needed(spread, ev.margin) if spread == spread else cell.forks + 1
    cell.status = "open"
    cell.target = min(config.max_per_cell, max(cell.forks + 1, wanted))
    cell.why = f"undecided at a spread of {spread:.2f} pp: {wanted} forks detect the {ev.margin:.2f} pp margin"
    if cell.target < wanted:
        cell.why += f" (capped at {config.max_per_cell})"
    return cell


def _sd(values) -> float:
    import numpy as np

    return float(np.std(values, ddof=1))


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
    for cell in cells.values():
        judge(cell, config)
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
    the score. `nights`: only parents tagged with one of them. No warehouse, or no branches yet: no forks."""
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
    try:
        frame = query(warehouse, sql, live=True)
    except Exception:  # noqa: BLE001 - no warehouse, or no runs or branches table yet: nothing measured
        return []
    return [tuple(row) for row in frame.iter_rows()]


def describe(cells: dict[tuple, PlanCell]) -> list[dict]:
    """The plan's cells as rows (for the night's record and report), in regime, length and time order."""
    order = sorted(cells.values(), key=lambda c: (str(c.regime), c.length, c.epochs[0]))
    return [c.row() for c in order if c.forks or c.planned]
