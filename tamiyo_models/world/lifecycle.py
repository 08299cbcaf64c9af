"""The seed lifecycle: stages, legal moves, quality gates and the blending schedule.

This module is pure bookkeeping (no torch): it says *which* moves exist and *when* a move is allowed.
What a stage means for the forward pass and the optimisers lives in `seed_slot.py`.

Stages and legal moves (the reference system's graph):

    DORMANT -> GERMINATED -> TRAINING -> BLENDING -> SHADOWING -> PROBATIONARY -> FOSSILIZED (terminal)
    GERMINATED .. PROBATIONARY -> CULLED
    CULLED -> EMBARGOED -> RESETTING -> DORMANT

Any other move raises `IllegalTransition` (the reference failed silently on BLENDING -> FOSSILIZED and left
the seed stuck with alpha reset to 0; we never do that).

A move that is legal in the graph can still be refused by a *quality gate* (for example "advance to
BLENDING only after the seed improved validation accuracy by 0.5 pp"). A refused gate is not an error: the
controller asked for something the seed has not earned, the seed stays where it is, and the step records
the refusal (a wasted turn, the reference's "soft consequences").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Stage(IntEnum):
    """Lifecycle stages. The integer values are the `seed_stage` observation feature (reference order)."""

    DORMANT = 0
    GERMINATED = 1
    TRAINING = 2
    BLENDING = 3
    SHADOWING = 4
    PROBATIONARY = 5
    FOSSILIZED = 6
    CULLED = 7
    EMBARGOED = 8
    RESETTING = 9


LEGAL_MOVES: dict[Stage, frozenset[Stage]] = {
    Stage.DORMANT: frozenset({Stage.GERMINATED}),
    Stage.GERMINATED: frozenset({Stage.TRAINING, Stage.CULLED}),
    Stage.TRAINING: frozenset({Stage.BLENDING, Stage.CULLED}),
    Stage.BLENDING: frozenset({Stage.SHADOWING, Stage.CULLED}),
    Stage.SHADOWING: frozenset({Stage.PROBATIONARY, Stage.CULLED}),
    Stage.PROBATIONARY: frozenset({Stage.FOSSILIZED, Stage.CULLED}),
    Stage.FOSSILIZED: frozenset(),
    Stage.CULLED: frozenset({Stage.EMBARGOED}),
    Stage.EMBARGOED: frozenset({Stage.RESETTING}),
    Stage.RESETTING: frozenset({Stage.DORMANT}),
}

# Stages in which a seed exists and the controller can still act on it (ADVANCE / CULL).
ACTIVE_STAGES = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY}
)
# The stage ADVANCE leads to, from each stage where ADVANCE means anything.
NEXT_STAGE: dict[Stage, Stage] = {
    Stage.TRAINING: Stage.BLENDING,
    Stage.BLENDING: Stage.SHADOWING,
    Stage.SHADOWING: Stage.PROBATIONARY,
    Stage.PROBATIONARY: Stage.FOSSILIZED,
}

# Alpha by completed blending epoch: a sigmoid over 5 epochs (reference values). The epoch trained with
# k blending epochs already completed uses BLEND_SCHEDULE[k + 1], so the first blending epoch already mixes
# (alpha 0.18) and alpha is 1.0 during the fifth.
BLEND_SCHEDULE = (0.0, 0.18, 0.38, 0.62, 0.82, 1.0)


class IllegalTransition(RuntimeError):
    """A move that the lifecycle graph does not have (a programming error or a corrupt controller)."""

    def __init__(self, slot: int, current: Stage, target: Stage):
        allowed = ", ".join(s.name for s in sorted(LEGAL_MOVES[current])) or "none (terminal)"
        super().__init__(
            f"seed slot {slot}: illegal lifecycle move {current.name} -> {target.name}; "
            f"allowed from {current.name}: {allowed}"
        )
        self.slot, self.current, self.target = slot, current, target


def check_move(slot: int, current: Stage, target: Stage) -> None:
    if target not in LEGAL_MOVES[current]:
        raise IllegalTransition(slot, current, target)


def blend_alpha(blending_epochs_completed: int) -> float:
    """Alpha used while training the next blending epoch."""
    return BLEND_SCHEDULE[min(blending_epochs_completed + 1, len(BLEND_SCHEDULE) - 1)]


@dataclass(frozen=True)
class GateConfig:
    """Quality gates on ADVANCE (reference values). Improvements are in percentage points of val accuracy."""

    blending_min_improvement: float = 0.5  # TRAINING -> BLENDING: seed improvement since germination
    shadowing_min_blend_epochs: int = 3  # BLENDING -> SHADOWING
    shadowing_min_alpha: float = 0.95  # BLENDING -> SHADOWING
    probation_min_shadow_epochs: int = 1  # SHADOWING -> PROBATIONARY: contribution measured at least once
    fossilize_min_improvement: float = 0.0  # PROBATIONARY -> FOSSILIZED: total improvement must be > this


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str


def check_gate(
    gates: GateConfig,
    current: Stage,
    *,
    epochs_in_stage: int,
    alpha: float,
    improvement_since_germination: float,
) -> GateResult:
    """Whether ADVANCE from `current` is earned. Only called for stages that have a NEXT_STAGE."""
    if current == Stage.TRAINING:
        ok = improvement_since_germination >= gates.blending_min_improvement
        return GateResult(
            ok,
            f"improvement {improvement_since_germination:+.2f} pp "
            f"{'>=' if ok else '<'} {gates.blending_min_improvement} pp",
        )
    if current == Stage.BLENDING:
        ok = epochs_in_stage >= gates.shadowing_min_blend_epochs and alpha >= gates.shadowing_min_alpha
        return GateResult(ok, f"{epochs_in_stage} blending epochs, alpha {alpha:.2f}")
    if current == Stage.SHADOWING:
        ok = epochs_in_stage >= gates.probation_min_shadow_epochs
        return GateResult(ok, f"{epochs_in_stage} shadowing epochs")
    if current == Stage.PROBATIONARY:
        ok = improvement_since_germination > gates.fossilize_min_improvement
        return GateResult(
            ok,
            f"total improvement {improvement_since_germination:+.2f} pp "
            f"{'>' if ok else '<='} {gates.fossilize_min_improvement} pp",
        )
    raise IllegalTransition(-1, current, NEXT_STAGE.get(current, current))
