"""A seed slot: the place in the host where a seed is grafted, and what each lifecycle stage means there.

Forward semantics by stage (h is the host's feature map arriving at the slot):

| stage                              | slot output                 | who learns                                      |
|------------------------------------|-----------------------------|-------------------------------------------------|
| DORMANT, GERMINATED, CULLED,       | h                           | host only                                       |
| EMBARGOED, RESETTING               |                             |                                                 |
| TRAINING                           | h (host path untouched)     | host on its own loss; the seed *in isolation*   |
|                                    |                             | on seed(h.detach()) through a detached copy of  |
|                                    |                             | the downstream layers (see HostNetwork)         |
| BLENDING                           | alpha*seed(h) + (1-alpha)*h | host and seed, jointly; alpha from the schedule |
| SHADOWING, PROBATIONARY            | seed(h) (alpha = 1)         | host and seed; contribution measured each epoch |
| FOSSILIZED                         | seed(h)                     | the seed is now a host module (host optimiser)  |

The slot records every move as a lifecycle event so the raw run holds the seed's whole history.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .blueprints import build_blueprint
from .lifecycle import ACTIVE_STAGES, Stage, blend_alpha, check_move


@dataclass
class LifecycleEvent:
    epoch: int
    slot: int
    seed_id: str | None
    from_stage: str
    to_stage: str
    cause: str  # "controller" (an action) or "automatic" (schedule-driven moves)
    detail: str = ""

    def to_record(self) -> dict:
        return self.__dict__.copy()


@dataclass
class SeedState:
    """Bookkeeping of the seed currently in a slot (None-able fields for a slot without one)."""

    seed_id: str | None = None
    blueprint: str | None = None
    germinated_epoch: int | None = None
    accuracy_at_germination: float = 0.0  # val accuracy just before germination (pp)
    accuracy_at_stage_start: float = 0.0
    epochs_in_stage: int = 0
    blend_epochs: int = 0
    events: list[LifecycleEvent] = field(default_factory=list)


class SeedSlot(nn.Module):
    def __init__(self, index: int, channels: int):
        super().__init__()
        self.index = index
        self.channels = channels
        self.stage = Stage.DORMANT
        self.seed: nn.Module | None = None
        self.state = SeedState()
        self._alpha_override: float | None = None
        self._isolated_input: torch.Tensor | None = None

    # ----- forward -------------------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        if self.stage == Stage.BLENDING:
            return blend_alpha(self.state.blend_epochs)
        if self.stage in (Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED):
            return 1.0
        return 0.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.seed is None:
            return h
        if self.stage == Stage.TRAINING and self.training:
            # Stash the detached input: the host calls `isolated_seed_output` after its own forward.
            self._isolated_input = h.detach()
        alpha = self.alpha if self._alpha_override is None else self._alpha_override
        if alpha <= 0.0:
            return h
        if alpha >= 1.0:
            return self.seed(h)
        return alpha * self.seed(h) + (1.0 - alpha) * h

    def isolated_seed_output(self) -> torch.Tensor | None:
        """seed(h.detach()) for the batch just seen in TRAINING, else None."""
        if self._isolated_input is None or self.seed is None:
            return None
        h, self._isolated_input = self._isolated_input, None
        return self.seed(h)

    @contextmanager
    def forced_alpha(self, alpha: float):
        """Evaluate as if alpha were fixed (0 ablates the seed, 1 applies it fully); for measurements."""
        previous, self._alpha_override = self._alpha_override, alpha
        try:
            yield
        finally:
            self._alpha_override = previous

    # ----- lifecycle moves -----------------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.stage in ACTIVE_STAGES

    def move(self, target: Stage, *, epoch: int, cause: str, detail: str = "") -> LifecycleEvent:
        check_move(self.index, self.stage, target)
        event = LifecycleEvent(
            epoch, self.index, self.state.seed_id, self.stage.name, target.name, cause, detail
        )
        self.stage = target
        self.state.epochs_in_stage = 0
        self.state.events.append(event)
        return event

    def germinate(
        self, blueprint: str, *, seed_id: str, epoch: int, val_accuracy: float, device: torch.device
    ) -> LifecycleEvent:
        check_move(self.index, self.stage, Stage.GERMINATED)
        self.seed = build_blueprint(blueprint, self.channels).to(device)
        self.state = SeedState(
            seed_id=seed_id,
            blueprint=blueprint,
            germinated_epoch=epoch,
            accuracy_at_germination=val_accuracy,
            accuracy_at_stage_start=val_accuracy,
            events=self.state.events,
        )
        return self.move(Stage.GERMINATED, epoch=epoch, cause="controller", detail=blueprint)

    def cull(self, *, epoch: int, cause: str = "controller", detail: str = "") -> LifecycleEvent:
        event = self.move(Stage.CULLED, epoch=epoch, cause=cause, detail=detail)
        self.seed = None  # the module and its optimiser state are discarded
        self._isolated_input = None
        return event
