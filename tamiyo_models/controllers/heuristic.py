"""Heuristic Tamiyo: the reference rule-based controller, with its defaults, all configurable.

Rules, in order:
- An active seed is judged by its stage and its improvement since germination (pp of val accuracy):
  TRAINING: after >= 3 epochs, ADVANCE if improvement >= 1.0; after >= 5 epochs, CULL if < -2.0.
  BLENDING: after >= 5 epochs (alpha reached 1), ADVANCE if improvement > 0, else CULL.
  SHADOWING, PROBATIONARY: after >= 1 epoch, ADVANCE if improvement > 0, else CULL
  (our lifecycle has these two stages; the reference fossilized straight from BLENDING).
- No active seed: WAIT before epoch 5; GERMINATE the next blueprint (round-robin) once the plateau counter
  reaches 3 and a slot is DORMANT (not embargoed after a cull); otherwise WAIT.
- Several slots (the factored action): each slot by the rules above, in slot order. The first active seed
  whose rule does something (ADVANCE, CULL) is acted on; else, past the same epoch and plateau thresholds,
  the first DORMANT slot that can take a blueprint germinates the next one of the round-robin (shared by all
  slots), even while another slot's seed is training.
It is deterministic, so every decision has propensity 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..world.actions import WAIT, Action, germinate, slots_of_space
from ..world.blueprints import BLUEPRINTS
from ..world.configs import known_fields
from ..world.lifecycle import Stage
from .base import Controller, Decision, Observation, one_hot


@dataclass(frozen=True)
class HeuristicConfig:
    min_epochs_before_germinate: int = 5
    plateau_epochs_to_germinate: int = 3
    min_training_epochs: int = 3
    training_advance_improvement: float = 1.0
    training_cull_epochs: int = 5
    training_cull_improvement: float = -2.0
    blending_epochs: int = 5
    shadowing_epochs: int = 1
    probation_epochs: int = 1
    blueprints: tuple[str, ...] = field(default=BLUEPRINTS)

    @classmethod
    def from_dict(cls, d: dict) -> "HeuristicConfig":
        d = known_fields(cls, d, "heuristic settings")
        if "blueprints" in d:
            d["blueprints"] = tuple(d["blueprints"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blueprints"] = list(self.blueprints)
        return d


class HeuristicController(Controller):
    name = "heuristic"

    def __init__(self, config: HeuristicConfig | None = None):
        self.config = config or HeuristicConfig()
        self._next_blueprint = 0

    def reset(self, rng) -> None:
        super().reset(rng)
        self._next_blueprint = 0

    def describe(self) -> dict:
        return {"name": self.name, "heuristic": self.config.to_dict()}

    def _seed_rule(self, stage: Stage, epochs: float, gain: float, slot: int) -> tuple[Action, str]:
        """What the rules say about the active seed in `slot`."""
        c = self.config
        advance, cull = Action("ADVANCE", slot=slot), Action("CULL", slot=slot)
        if stage == Stage.TRAINING:
            if epochs >= c.min_training_epochs and gain >= c.training_advance_improvement:
                return advance, f"TRAINING {epochs:.0f} epochs, improvement {gain:+.2f} pp >= {c.training_advance_improvement}"
            if epochs >= c.training_cull_epochs and gain < c.training_cull_improvement:
                return cull, f"TRAINING {epochs:.0f} epochs, improvement {gain:+.2f} pp < {c.training_cull_improvement}"
            return WAIT, f"TRAINING {epochs:.0f} epochs, improvement {gain:+.2f} pp"
        wait_for = {
            Stage.BLENDING: c.blending_epochs,
            Stage.SHADOWING: c.shadowing_epochs,
            Stage.PROBATIONARY: c.probation_epochs,
        }.get(stage)
        if wait_for is None or epochs < wait_for:
            return WAIT, f"{stage.name} {epochs:.0f} epochs"
        if gain > 0:
            return advance, f"{stage.name} done, improvement {gain:+.2f} pp > 0"
        return cull, f"{stage.name} done, improvement {gain:+.2f} pp <= 0"

    def _decide(self, f, legal) -> tuple[Action, str]:
        """Per slot, in slot order: the first active seed whose rule acts decides; if none does, a DORMANT slot
        may germinate. One slot is the rules as they always were (its seed features are the focus slot's)."""
        c = self.config
        slots = slots_of_space(len(legal))
        waiting = None
        for k in range(slots):
            active, stage, epochs, gain = _slot_state(f, k, slots)
            if active:
                action, reason = self._seed_rule(Stage(int(stage)), epochs, gain, k)
                if action != WAIT:
                    return action, reason if slots == 1 else f"slot {k}: {reason}"
                waiting = waiting or (action, reason if slots == 1 else f"slot {k}: {reason}")
        # One slot with an active seed has no DORMANT slot.
        if waiting and (slots == 1 or not any(int(f[f"slot{k}_stage"]) == Stage.DORMANT for k in range(slots))):
            return waiting
        prefix = f"{waiting[1]}; " if waiting else ""
        if f["epoch"] < c.min_epochs_before_germinate:
            return WAIT, f"{prefix}epoch {f['epoch']:.0f} < {c.min_epochs_before_germinate}"
        if f["plateau_epochs"] < c.plateau_epochs_to_germinate:
            return WAIT, f"{prefix}plateau {f['plateau_epochs']:.0f} < {c.plateau_epochs_to_germinate}"
        for k in range(slots):
            candidates = [b for b in c.blueprints if legal[germinate(b, k).index]]
            if not candidates:
                continue
            # Round-robin over the configured order, skipping blueprints that are not allowed here.
            for offset in range(len(c.blueprints)):
                blueprint = c.blueprints[(self._next_blueprint + offset) % len(c.blueprints)]
                if blueprint in candidates:
                    self._next_blueprint = (self._next_blueprint + offset + 1) % len(c.blueprints)
                    reason = f"plateau {f['plateau_epochs']:.0f} >= {c.plateau_epochs_to_germinate}"
                    return germinate(blueprint, k), reason if slots == 1 else f"{prefix}slot {k}: {reason}"
        return WAIT, f"{prefix}plateau, but no slot can germinate"

    def decide(self, observation: Observation) -> Decision:
        action, reason = self._decide(observation.features, observation.legal)
        if not observation.legal[action.index]:
            # e.g. ADVANCE asked from a stage without a next stage: the rule falls back to waiting.
            action, reason = WAIT, f"{action.fine} not legal; {reason}"
        return Decision(action, one_hot(action, len(observation.legal)), reason)


def _slot_state(f, slot: int, slots: int) -> tuple[float, float, float, float]:
    """(active, stage, epochs in stage, total improvement) of a slot's seed. One slot reads the focus-slot
    features (the same values, by features.slot_values), which every single-slot feature subset carries."""
    if slots == 1:
        return f["has_active_seed"], f["seed_stage"], f["seed_epochs_in_stage"], f["seed_total_improvement"]
    return f[f"slot{slot}_active"], f[f"slot{slot}_stage"], f[f"slot{slot}_epochs_in_stage"], f[f"slot{slot}_total_improvement"]
