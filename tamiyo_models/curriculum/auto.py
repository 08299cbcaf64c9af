"""The automatic curriculum's choice of the next task, from the margins measured so far.

Two rules (compared with the manual order at an equal episode budget in docs/curriculum.md):

- `weakest`: the task where the policy's paired margin over the heuristic is lowest now (a task never measured
  counts as the weakest, in curriculum order), so training goes where the policy is worst;
- `progress`: the task whose margin moved most per training episode between its last two measurements
  (absolute change: a task the policy is getting worse at needs the attention too), after every task has
  been measured twice; until then the first task measured fewer than twice.

Ties go to the earlier task in curriculum order, so a choice is always reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("weakest", "progress")


@dataclass(frozen=True)
class Measurement:
    """The policy's paired margin over the heuristic on one task after `episodes` training episodes in all."""

    task: str
    episodes: int
    margin: float  # mean paired difference, pp (test split)
    low: float = float("nan")
    high: float = float("nan")


def pick_task(tasks: list[str], history: list[Measurement], strategy: str = "weakest") -> str:
    """The task to train on next. `tasks`: the candidates in curriculum order; `history`: every measurement so
    far, in the order made."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown curriculum strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not tasks:
        raise ValueError("no task to pick from")
    by_task = {t: [m for m in history if m.task == t] for t in tasks}
    if strategy == "weakest":
        unmeasured = [t for t in tasks if not by_task[t]]
        if unmeasured:
            return unmeasured[0]
        return min(tasks, key=lambda t: (by_task[t][-1].margin, tasks.index(t)))
    short = [t for t in tasks if len(by_task[t]) < 2]
    if short:
        return short[0]

    def progress(t: str) -> float:
        a, b = by_task[t][-2], by_task[t][-1]
        return abs(b.margin - a.margin) / max(1, b.episodes - a.episodes)

    return max(tasks, key=lambda t: (progress(t), -tasks.index(t)))
