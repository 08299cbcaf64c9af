"""What the offline learners share: their common settings, their result, and checkpoint selection by an
off-policy estimate on held-out episode families, never the learner's own Q-values (the reference system
picked the checkpoint with the largest Q it predicted for itself, and so its most over-optimistic one).

At each checkpoint the learner's greedy policy is evaluated by FQE on transitions of families it never trained
on; the checkpoint with the highest estimate wins. Without held-out data the last checkpoint is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..agents.learning import LearnerConfig
from ..ope.fqe import FQEConfig, fit_fqe
from ..transitions.dataset import TransitionDataset


@dataclass(frozen=True)
class OfflineConfig(LearnerConfig):
    checkpoints: int = 5  # evaluated for selection (held-out FQE), evenly spaced


@dataclass
class OfflineResult:
    module: torch.nn.Module  # a PolicyModule (the selected checkpoint)
    algorithm: str
    config: dict
    selected_update: int
    checkpoints: list = field(default_factory=list)  # (update, held-out estimate)
    losses: list = field(default_factory=list)  # per tenth of training: dict of loss parts
    updates_per_second: float = 0.0


@dataclass
class Checkpoint:
    update: int
    estimate: float  # FQE value of the greedy policy on held-out starts (pp); nan without held-out data
    state: dict = field(repr=False, default_factory=dict)


def fqe_selector(held_out: TransitionDataset | None, config: FQEConfig = FQEConfig(updates=1_500)) -> Callable | None:
    """A function module -> FQE estimate on `held_out` (None: no selection data)."""
    if held_out is None or len(held_out) == 0:
        return None

    def estimate(module) -> float:
        return fit_fqe(module, held_out, config).value

    return estimate


class CheckpointKeeper:
    def __init__(self, selector: Callable | None, log=None):
        self.selector, self.log = selector, log
        self.checkpoints: list[Checkpoint] = []

    def offer(self, update: int, module) -> None:
        estimate = self.selector(module) if self.selector else float("nan")
        self.checkpoints.append(Checkpoint(update, estimate, copy.deepcopy(module.state_dict())))
        if self.log and self.selector:
            self.log(f"checkpoint at update {update}: held-out FQE estimate {estimate:+.2f} pp")
        module.train()

    def best(self) -> Checkpoint:
        scored = [c for c in self.checkpoints if c.estimate == c.estimate]
        return max(scored, key=lambda c: c.estimate) if scored else self.checkpoints[-1]


def finish(module, algorithm: str, title: str, config: OfflineConfig, keeper, parts, seconds: float, log) -> OfflineResult:
    """Keep the checkpoint the held-out estimate chose, say so, and package the run."""
    best = keeper.best()
    module.load_state_dict(best.state)
    module.eval()
    kept = (f"kept update {best.update} (held-out estimate {best.estimate:+.2f} pp)" if best.estimate == best.estimate
            else f"kept its last update, {best.update} (no checkpoint selection)")  # fmt: skip
    log(f"{title}: {config.updates} updates in {seconds:.1f} s ({config.updates / seconds:.0f}/s); {kept}")
    return OfflineResult(module, algorithm, config.to_dict(), best.update, [(c.update, c.estimate) for c in keeper.checkpoints],
                         parts.rows, config.updates / seconds)  # fmt: skip
