"""Reference controllers: the fixed baselines every learned controller must beat. Their names are read by
`config.reference_controller`:

- `never`: never grows (WAIT throughout). What the host does on its own.
- `fixed:<blueprint>@<epoch>`: GERMINATE that blueprint at the first decision after `epoch` epochs, then
  ADVANCE whenever ADVANCE is legal (the quality gates decide whether it moves), never CULL. On the
  Fashion-MNIST regime measured in the headroom study, `fixed:conv_heavy@6` beat the heuristic by +0.35 to
  +0.45 pp, and on the arena `fixed:conv_heavy@1` beats it by +1.0 to +1.1 pp (docs/arena.md): a fixed schedule
  is the bar a state-aware policy has to clear. `fixed:<blueprint>@<epoch>:slot<k>` does the same in seed
  slot k of a multi-slot host (slot 0 otherwise).
- `vigilant:<blueprint>@<epoch>[:slot<k>]`: the fixed schedule that also reads one thing of the state, its
  seed's gradient health: a seed whose gradient entries are mostly exactly 0 (`slot<k>_zero_gradient_share`
  above one half, a seed born dead) is culled at once and the blueprint grafted again when the slot is free,
  once. A hand-written state reader: what reading the training state is worth at the least, beside the fixed
  schedules (docs/arena.md, "Seeds born dead").
- `eager`: the heuristic with hair-trigger thresholds (germinate from epoch 2 after a 1-epoch plateau,
  advance from TRAINING at +0.5 pp).
- `heuristic:<blueprint>[+<blueprint>...]`: the heuristic restricted to those blueprints (its round-robin
  over all five wastes seeds on blueprints that rarely help).
- `heuristic`, `random` (mostly waiting: WAIT 6, GERMINATE 1, ADVANCE 2, CULL 1), and the exploration kinds.
- `shipped:<name>`: a policy shipped with the package (controllers.shipped), a learned controller rather than a
  reference, named the same way so that any comparison can take it.

All are deterministic except `random`, so they log propensity 1 for the action taken.
"""

from __future__ import annotations

from ..world.actions import MAX_SEED_SLOTS, WAIT, Action, germinate, slots_of_space
from ..world.blueprint_names import BLUEPRINTS
from .base import Controller, Decision, Observation, one_hot
from .heuristic import HeuristicConfig

EAGER_HEURISTIC = HeuristicConfig(min_epochs_before_germinate=2, plateau_epochs_to_germinate=1, training_advance_improvement=0.5)
MOSTLY_WAITING = {"WAIT": 6.0, "GERMINATE": 1.0, "ADVANCE": 2.0, "CULL": 1.0}
# The controllers a headroom analysis compares by default (the reference is the heuristic). conv_heavy at epoch 1
# is the best reference controller the arena has shown (docs/arena.md, "Headroom over the fixed schedule").
DEFAULT_REFERENCES = ("heuristic", "never", "fixed:conv_heavy@1", "fixed:conv_heavy@3", "fixed:conv_heavy@6", "fixed:conv_heavy@10",
                      "fixed:conv_light@6", "heuristic:conv_heavy", "eager", "random")  # fmt: skip


def fixed_schedule_name(blueprint: str, germinate_epoch: int, slot: int = 0) -> str:
    """The reference name of a fixed schedule; slot 0 is left out, so single-slot names are as they were."""
    return f"fixed:{blueprint}@{germinate_epoch}" + (f":slot{slot}" if slot else "")


class NeverGrow(Controller):
    name = "never"

    def decide(self, observation: Observation) -> Decision:
        return Decision(WAIT, one_hot(WAIT, len(observation.legal)), "never grows")


class FixedSchedule(Controller):
    """One graft at a fixed epoch, then forward through the lifecycle as fast as the gates allow."""

    def __init__(self, blueprint: str, germinate_epoch: int, slot: int = 0):
        if blueprint not in BLUEPRINTS:
            raise ValueError(f"unknown blueprint {blueprint!r} for a fixed schedule; known: {', '.join(BLUEPRINTS)}")
        if germinate_epoch < 0:
            raise ValueError(f"germinate_epoch must be >= 0, got {germinate_epoch}")
        if not 0 <= slot < MAX_SEED_SLOTS:
            raise ValueError(f"a fixed schedule's slot must be in [0, {MAX_SEED_SLOTS - 1}], got {slot}")
        self.blueprint, self.germinate_epoch, self.slot = blueprint, germinate_epoch, slot
        self.name = fixed_schedule_name(blueprint, germinate_epoch, slot)
        self._germinated = False

    def reset(self, rng) -> None:
        super().reset(rng)
        self._germinated = False

    def describe(self) -> dict:
        return {"name": self.name, "blueprint": self.blueprint, "germinate_epoch": self.germinate_epoch,
                **({"slot": self.slot} if self.slot else {})}  # fmt: skip

    def decide(self, observation: Observation) -> Decision:
        f, legal = observation.features, observation.legal
        graft, advance = germinate(self.blueprint, self.slot), Action("ADVANCE", slot=self.slot)
        if graft.index >= len(legal):
            raise ValueError(f"{self.name}: the host has {slots_of_space(len(legal))} seed slot(s), no slot {self.slot}")
        if not self._germinated and f["epoch"] >= self.germinate_epoch and legal[graft.index]:
            self._germinated = True
            return Decision(graft, one_hot(graft, len(legal)), f"scheduled graft at epoch {self.germinate_epoch}")
        if legal[advance.index]:  # legal only while a seed in the slot can move on
            return Decision(advance, one_hot(advance, len(legal)), "advance whenever the gate allows")
        return Decision(WAIT, one_hot(WAIT, len(observation.legal)), "waiting" if self._germinated else f"graft due at epoch {self.germinate_epoch}")


class VigilantSchedule(FixedSchedule):
    """FixedSchedule that culls a seed born dead (its gradient entries mostly exactly 0) and grafts again."""

    def __init__(self, blueprint: str, germinate_epoch: int, slot: int = 0, retries: int = 1, dead_share: float = 0.5):
        super().__init__(blueprint, germinate_epoch, slot)
        self.name = "vigilant" + self.name.removeprefix("fixed")
        self.retries, self.dead_share = retries, dead_share
        self._grafts = 0

    def reset(self, rng) -> None:
        super().reset(rng)
        self._grafts = 0

    def describe(self) -> dict:
        return {**super().describe(), "retries": self.retries, "dead_share": self.dead_share}

    def decide(self, observation: Observation) -> Decision:
        f, legal = observation.features, observation.legal
        cull = Action("CULL", slot=self.slot)
        if cull.index < len(legal) and legal[cull.index] and f[f"slot{self.slot}_zero_gradient_share"] > self.dead_share:
            return Decision(cull, one_hot(cull, len(legal)), f"seed gradient {f[f'slot{self.slot}_zero_gradient_share']:.0%} zeros: dead")
        graft = germinate(self.blueprint, self.slot)
        if self._germinated and self._grafts <= self.retries and graft.index < len(legal) and legal[graft.index]:
            self._grafts += 1
            return Decision(graft, one_hot(graft, len(legal)), "graft again after a dead seed")
        decision = super().decide(observation)
        if decision.action == graft:
            self._grafts += 1
        return decision
