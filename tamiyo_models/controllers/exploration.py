"""Exploration controllers built on the heuristic, so logged data holds counterfactuals where they matter.

- `SoftmaxHeuristic`: a soft version of the heuristic. Each rule becomes a *preference* graded by how far the
  state is past (or short of) the rule's threshold, and the action is sampled from a softmax over the legal
  actions' preferences. Far from every threshold it acts like the heuristic; near one (a plateau of exactly 3,
  a seed at +0.9 pp) it often does the other thing, which is where the heuristic's choice is least certain
  and a counterfactual is most informative. Its propensities are the softmax probabilities.
- `PerturbedHeuristic`: the heuristic with thresholds redrawn for every episode (and the blueprint order
  shuffled). Deterministic within an episode (propensity 1); the drawn thresholds are in the run header.

Both log their full action distribution, like every controller.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..world.actions import ALL_ACTIONS, Action
from ..world.lifecycle import Stage
from .base import Controller, Decision, Observation
from .heuristic import HeuristicConfig, HeuristicController

BLUEPRINT_PREFERENCE_GAP = 2.0  # how much the round-robin's next blueprint is preferred over the others


def heuristic_preferences(config: HeuristicConfig, features) -> dict[str, float]:
    """Signed margins of the heuristic's rules per coarse action: > 0 where the rule fires, < 0 short of it
    (WAIT is 0). Epoch counts add 0.5 so that exactly-at-threshold counts as firing; improvements are in pp."""
    c, f = config, features
    if f["has_active_seed"]:
        stage, epochs, gain = Stage(int(f["seed_stage"])), f["seed_epochs_in_stage"], f["seed_total_improvement"]
        if stage == Stage.TRAINING:
            return {
                "WAIT": 0.0,
                "ADVANCE": min(epochs - c.min_training_epochs + 0.5, gain - c.training_advance_improvement + 0.5),
                "CULL": min(epochs - c.training_cull_epochs + 0.5, c.training_cull_improvement - gain),
            }
        wait_for = {Stage.BLENDING: c.blending_epochs, Stage.SHADOWING: c.shadowing_epochs}.get(stage, c.probation_epochs)
        ready = epochs - wait_for + 0.5
        return {"WAIT": 0.0, "ADVANCE": min(ready, gain), "CULL": min(ready, -gain)}
    germinate = min(f["epoch"] - c.min_epochs_before_germinate + 0.5, f["plateau_epochs"] - c.plateau_epochs_to_germinate + 0.5)
    return {"WAIT": 0.0, "GERMINATE": germinate}


def _softmax(logits: dict[str, float]) -> dict[str, float]:
    top = max(logits.values())
    weights = {k: math.exp(v - top) for k, v in logits.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


class SoftmaxHeuristic(Controller):
    def __init__(self, config: HeuristicConfig | None = None, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.base = HeuristicController(config)
        self.temperature = temperature
        self.name = "softmax-heuristic"

    def reset(self, rng) -> None:
        super().reset(rng)
        self.base.reset(rng)

    def describe(self) -> dict:
        return {"name": self.name, "temperature": self.temperature, "heuristic": self.base.config.to_dict()}

    def decide(self, observation: Observation) -> Decision:
        greedy = self.base.decide(observation)  # keeps the round-robin state in step with the heuristic
        actions = [Action.from_fine(a) for a in ALL_ACTIONS[: len(observation.legal)]]
        legal = [a for a, ok in zip(actions, observation.legal) if ok]
        legal_coarse = {a.coarse for a in legal}
        prefs = heuristic_preferences(self.base.config, observation.features)
        # A softmax over coarse actions, then over blueprints within GERMINATE: five blueprints must not make
        # germinating five times as likely as waiting. Several slots share a coarse action's mass equally.
        coarse = _softmax({k: v / self.temperature for k, v in prefs.items() if k in legal_coarse} or {"WAIT": 0.0})
        blueprints = self.base.config.blueprints
        upcoming = greedy.action.blueprint or blueprints[self.base._next_blueprint % len(blueprints)]
        within = {}
        for slot in sorted({a.slot for a in legal if a.coarse == "GERMINATE"}):
            germinable = [a.blueprint for a in legal if a.coarse == "GERMINATE" and a.slot == slot]
            within[slot] = _softmax({b: 0.0 if b == upcoming else -BLUEPRINT_PREFERENCE_GAP for b in germinable})
        share = {c: sum(1 for a in legal if a.coarse == c) for c in legal_coarse}
        share["GERMINATE"] = len(within)
        probs = tuple(
            coarse.get(a.coarse, 0.0) / share[a.coarse] * (within[a.slot][a.blueprint] if a.coarse == "GERMINATE" else 1.0)
            if ok else 0.0
            for a, ok in zip(actions, observation.legal)
        )
        index = int(self.rng.choice(len(probs), p=probs))
        return Decision(Action.from_index(index), probs, f"softmax p={probs[index]:.2f}; heuristic: {greedy.reason}", greedy.action)


# Ranges the perturbed heuristic draws from: (low, high), integers where the default is an integer.
PERTURBATION_RANGES = {
    "min_epochs_before_germinate": (2, 10),
    "plateau_epochs_to_germinate": (1, 6),
    "min_training_epochs": (1, 6),
    "training_advance_improvement": (-0.5, 3.0),
    "training_cull_epochs": (3, 10),
    "training_cull_improvement": (-5.0, 0.0),
    "blending_epochs": (3, 7),
    "shadowing_epochs": (1, 3),
    "probation_epochs": (1, 3),
}


class PerturbedHeuristic(Controller):
    name = "perturbed-heuristic"

    def __init__(self, config: HeuristicConfig | None = None):
        self.default = config or HeuristicConfig()
        self.current = HeuristicController(self.default)

    def reset(self, rng) -> None:
        super().reset(rng)
        drawn = {}
        for key, (low, high) in PERTURBATION_RANGES.items():
            if isinstance(getattr(self.default, key), int):
                drawn[key] = int(rng.integers(low, high + 1))
            else:
                drawn[key] = round(float(rng.uniform(low, high)), 3)
        order = tuple(self.default.blueprints[i] for i in rng.permutation(len(self.default.blueprints)))
        self.current = HeuristicController(replace(self.default, blueprints=order, **drawn))
        self.current.reset(rng)

    def describe(self) -> dict:
        return {"name": self.name, "heuristic": self.current.config.to_dict()}

    def decide(self, observation: Observation) -> Decision:
        return self.current.decide(observation)



