"""epsilon-greedy exploration around any controller.

With probability epsilon the action is drawn uniformly among the legal fine actions, otherwise the wrapped
controller's action is taken (drawn from its own distribution). The logged behaviour probability is therefore
the mixture mu(a|s) = (1 - epsilon) * pi(a|s) + epsilon / |legal actions|, where pi is the distribution the
base really drew from: one-hot for a deterministic base (the heuristic, a greedy policy).
"""

from __future__ import annotations

from ..world.actions import Action
from .base import Controller, Decision, Observation


class EpsilonGreedy(Controller):
    def __init__(self, base: Controller, epsilon: float):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base, self.epsilon = base, epsilon
        self.name = f"epsilon-{base.name}"

    def reset(self, rng) -> None:
        super().reset(rng)
        self.base.reset(rng)

    def describe(self) -> dict:
        return {"name": self.name, "epsilon": self.epsilon, "base": self.base.describe()}

    def decide(self, observation: Observation) -> Decision:
        # The base decides first, always: a stateful base (the heuristic's round-robin) must see every step.
        greedy = self.base.decide(observation)
        n_legal = sum(observation.legal)
        probs = tuple(
            (1 - self.epsilon) * p + (self.epsilon / n_legal if ok else 0.0)
            for p, ok in zip(greedy.probabilities, observation.legal)
        )
        if self.rng.random() < self.epsilon:
            legal = [i for i, ok in enumerate(observation.legal) if ok]
            action = Action.from_index(int(self.rng.choice(legal)))
            reason = f"explore (epsilon {self.epsilon})"
        else:
            action, reason = greedy.action, greedy.reason
        return Decision(action, probs, reason, greedy_action=greedy.action)
