"""The controller's action space.

The *fine* action space has one GERMINATE per blueprint: WAIT, GERMINATE_<blueprint>..., ADVANCE, CULL.
The *coarse* label (the reference's learning label set) is WAIT / GERMINATE / ADVANCE / CULL, with the
blueprint kept apart. Both are stored with every step, so either can be recovered.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blueprint_names import BLUEPRINTS

COARSE_ACTIONS: tuple[str, ...] = ("WAIT", "GERMINATE", "ADVANCE", "CULL")
FINE_ACTIONS: tuple[str, ...] = ("WAIT", *(f"GERMINATE_{b}" for b in BLUEPRINTS), "ADVANCE", "CULL")
FINE_INDEX = {name: i for i, name in enumerate(FINE_ACTIONS)}


@dataclass(frozen=True)
class Action:
    coarse: str
    blueprint: str | None = None

    def __post_init__(self):
        if self.coarse not in COARSE_ACTIONS:
            raise ValueError(f"unknown action {self.coarse!r}; known: {', '.join(COARSE_ACTIONS)}")
        if (self.coarse == "GERMINATE") != (self.blueprint is not None):
            raise ValueError("GERMINATE needs a blueprint, and only GERMINATE has one")
        if self.blueprint is not None and self.blueprint not in BLUEPRINTS:
            raise ValueError(f"unknown blueprint {self.blueprint!r}; known: {', '.join(BLUEPRINTS)}")

    @property
    def fine(self) -> str:
        return f"GERMINATE_{self.blueprint}" if self.coarse == "GERMINATE" else self.coarse

    @property
    def index(self) -> int:
        return FINE_INDEX[self.fine]

    @classmethod
    def from_fine(cls, name: str) -> "Action":
        if name not in FINE_INDEX:
            raise ValueError(f"unknown action {name!r}; known: {', '.join(FINE_ACTIONS)}")
        if name.startswith("GERMINATE_"):
            return cls("GERMINATE", name.removeprefix("GERMINATE_"))
        return cls(name)

    @classmethod
    def from_index(cls, index: int) -> "Action":
        return cls.from_fine(FINE_ACTIONS[index])


WAIT = Action("WAIT")
ADVANCE = Action("ADVANCE")
CULL = Action("CULL")


def germinate(blueprint: str) -> Action:
    return Action("GERMINATE", blueprint)
