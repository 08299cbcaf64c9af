"""A random controller: picks a coarse action among the legal ones (by configurable weights), then a
blueprint (and slot) uniformly among the legal actions of that coarse kind. Weights on coarse actions rather than on the 8 fine
actions keep germination from dominating just because it has one fine action per blueprint."""

from __future__ import annotations

from ..world.actions import ALL_ACTIONS, COARSE_ACTIONS, Action
from .base import Controller, Decision, Observation


def coarse_weighted_probabilities(legal: tuple[bool, ...], weights: dict[str, float]) -> tuple[float, ...]:
    legal_fine = [Action.from_fine(a) for a, ok in zip(ALL_ACTIONS[: len(legal)], legal) if ok]
    legal_coarse = {a.coarse for a in legal_fine}
    mass = {c: weights.get(c, 1.0) for c in COARSE_ACTIONS if c in legal_coarse}
    total = sum(mass.values())
    if total <= 0:
        raise ValueError(f"random controller weights {weights} give no mass to any legal action")
    per_coarse_count = {c: sum(1 for a in legal_fine if a.coarse == c) for c in legal_coarse}
    probs = [0.0] * len(legal)
    for a in legal_fine:
        probs[a.index] = mass[a.coarse] / total / per_coarse_count[a.coarse]
    return tuple(probs)


class RandomController(Controller):
    name = "random"

    def __init__(self, weights: dict[str, float] | None = None):
        unknown = set(weights or {}) - set(COARSE_ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions in random weights: {', '.join(sorted(unknown))}")
        self.weights = dict(weights or {})

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights}

    def decide(self, observation: Observation) -> Decision:
        probs = coarse_weighted_probabilities(observation.legal, self.weights)
        index = int(self.rng.choice(len(probs), p=probs))
        return Decision(Action.from_index(index), probs, "random")
