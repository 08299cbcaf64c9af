"""The controller's action space: operation x slot x blueprint, flattened.

The *fine* action space of a host with one seed slot has one GERMINATE per blueprint: WAIT,
GERMINATE_<blueprint>..., ADVANCE, CULL. A host with n slots (at most `MAX_SEED_SLOTS`) has the *factored*
space: WAIT, then for each slot k its block GERMINATE_<blueprint> x B, ADVANCE, CULL. Flat index:

    WAIT = 0;   (operation, slot k, blueprint b) = 1 + k * (B + 2) + (b for GERMINATE | B for ADVANCE | B + 1 for CULL)

Slot 0's actions keep their single-slot names; slot k > 0 appends `_SLOT<k>` (GERMINATE_norm_SLOT1,
ADVANCE_SLOT1, CULL_SLOT1; blueprint names are lower case, so the suffix cannot collide). So the space of n
slots is a prefix of the space of n + 1 slots: a single-slot run's actions, indices and names are exactly
what they always were, and a policy over the first 8 actions acts on slot 0 of any host.

The *coarse* label (the reference's learning label set) is WAIT / GERMINATE / ADVANCE / CULL, with the
blueprint and the slot kept apart. All three are stored with every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blueprint_names import BLUEPRINTS

# Bounded because the warehouse keeps one column per action and per slot feature (a host of the reference
# family has at most depth - 1 slots; the research system ran 3 to 6).
MAX_SEED_SLOTS = 3
SLOT_SUFFIX = "_SLOT"
COARSE_ACTIONS: tuple[str, ...] = ("WAIT", "GERMINATE", "ADVANCE", "CULL")
ACTIONS_PER_SLOT = len(BLUEPRINTS) + 2


def _slot_block(slot: int) -> tuple[str, ...]:
    suffix = f"{SLOT_SUFFIX}{slot}" if slot else ""
    return (*(f"GERMINATE_{b}{suffix}" for b in BLUEPRINTS), f"ADVANCE{suffix}", f"CULL{suffix}")


def action_names(seed_slots: int = 1) -> tuple[str, ...]:
    """The flat action space of a host with `seed_slots` slots, in index order."""
    if not 1 <= seed_slots <= MAX_SEED_SLOTS:
        raise ValueError(f"a host has 1 to {MAX_SEED_SLOTS} seed slots, got {seed_slots}")
    return ("WAIT", *(name for k in range(seed_slots) for name in _slot_block(k)))


def slots_of_space(size: int) -> int:
    """How many slots an action space (or a legal mask) of `size` actions covers."""
    slots, rest = divmod(size - 1, ACTIONS_PER_SLOT)
    if rest or not 1 <= slots <= MAX_SEED_SLOTS:
        raise ValueError(f"{size} is not the size of an action space (1 + {ACTIONS_PER_SLOT} x slots)")
    return slots


FINE_ACTIONS: tuple[str, ...] = action_names(1)
FINE_INDEX = {name: i for i, name in enumerate(FINE_ACTIONS)}
ALL_ACTIONS: tuple[str, ...] = action_names(MAX_SEED_SLOTS)
ACTION_INDEX = {name: i for i, name in enumerate(ALL_ACTIONS)}


@dataclass(frozen=True)
class Action:
    coarse: str
    blueprint: str | None = None
    slot: int = 0  # the seed slot acted on (WAIT: 0)

    def __post_init__(self):
        if self.coarse not in COARSE_ACTIONS:
            raise ValueError(f"unknown action {self.coarse!r}; known: {', '.join(COARSE_ACTIONS)}")
        if (self.coarse == "GERMINATE") != (self.blueprint is not None):
            raise ValueError("GERMINATE needs a blueprint, and only GERMINATE has one")
        if self.blueprint is not None and self.blueprint not in BLUEPRINTS:
            raise ValueError(f"unknown blueprint {self.blueprint!r}; known: {', '.join(BLUEPRINTS)}")
        if not 0 <= self.slot < MAX_SEED_SLOTS or (self.coarse == "WAIT" and self.slot):
            raise ValueError(f"slot {self.slot} is not a seed slot of {self.coarse} (0..{MAX_SEED_SLOTS - 1}; WAIT has none)")

    @property
    def fine(self) -> str:
        name = f"GERMINATE_{self.blueprint}" if self.coarse == "GERMINATE" else self.coarse
        return f"{name}{SLOT_SUFFIX}{self.slot}" if self.slot else name

    @property
    def index(self) -> int:
        return ACTION_INDEX[self.fine]

    @classmethod
    def from_fine(cls, name: str) -> "Action":
        if name not in ACTION_INDEX:
            raise ValueError(f"unknown action {name!r}; known: {', '.join(ALL_ACTIONS)}")
        base, _, slot = name.partition(SLOT_SUFFIX)
        slot = int(slot) if slot else 0
        if base.startswith("GERMINATE_"):
            return cls("GERMINATE", base.removeprefix("GERMINATE_"), slot)
        return cls(base, slot=slot)

    @classmethod
    def from_index(cls, index: int) -> "Action":
        return cls.from_fine(ALL_ACTIONS[index])


WAIT = Action("WAIT")
ADVANCE = Action("ADVANCE")
CULL = Action("CULL")


def germinate(blueprint: str, slot: int = 0) -> Action:
    return Action("GERMINATE", blueprint, slot)
