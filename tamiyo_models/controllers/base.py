"""The controller interface: one decision per epoch, with the full action distribution it was drawn from.

Every decision carries the probability of each fine action (zero on illegal ones) *with which the action was
actually drawn*, so the propensity of the action taken, mu(a|s), is stored with every step and off-policy
estimates are possible later. A deterministic controller (the heuristic, a greedy policy) logs a one-hot
distribution and says so (`stochastic=False`): importance weights are not identified on its steps. A greedy
policy's own softmax, which it did not sample from, is kept apart as `policy_probabilities`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..world.actions import ALL_ACTIONS, Action


@dataclass(frozen=True)
class Observation:
    record: Mapping  # the raw observation record (see rawrun.py)
    features: Mapping[str, float]  # observation_features(record)
    legal: tuple[bool, ...]  # per action of the host's space (world.actions: 8 for one slot)

    def legal_actions(self) -> list[Action]:
        return [Action.from_index(i) for i, ok in enumerate(self.legal) if ok]


@dataclass(frozen=True)
class Decision:
    action: Action
    probabilities: tuple[float, ...]  # over the host's action space, as long as Observation.legal
    reason: str = ""
    greedy_action: Action | None = None  # what the wrapped controller wanted, for exploration wrappers
    stochastic: bool | None = None  # None: inferred (stochastic when more than one action had mass)
    policy_probabilities: tuple[float, ...] | None = None  # a greedy policy's softmax (not what it drew from)

    @property
    def propensity(self) -> float:
        return self.probabilities[self.action.index]

    @property
    def is_stochastic(self) -> bool:
        if self.stochastic is not None:
            return self.stochastic
        return sum(1 for p in self.probabilities if p > 0) > 1

    def to_record(self, controller: str, legal: tuple[bool, ...]) -> dict:
        names = ALL_ACTIONS[: len(legal)]  # the host's space is a prefix of the widest (world.actions)
        record = {
            "fine": self.action.fine,
            "coarse": self.action.coarse,
            "blueprint": self.action.blueprint,
            "propensity": self.propensity,
            "probabilities": dict(zip(names, self.probabilities)),
            "stochastic": self.is_stochastic,
            "legal": [a for a, ok in zip(names, legal) if ok],
            "controller": controller,
            "reason": self.reason,
            "greedy_fine": self.greedy_action.fine if self.greedy_action else self.action.fine,
        }
        if self.policy_probabilities is not None:
            record["policy_probabilities"] = dict(zip(names, self.policy_probabilities))
        return record


def one_hot(action: Action, size: int) -> tuple[float, ...]:
    """All mass on `action`, over an action space of `size` (a controller passes len(observation.legal))."""
    probs = [0.0] * size
    probs[action.index] = 1.0
    return tuple(probs)


class IllegalDecision(RuntimeError):
    pass


class Controller(ABC):
    """Decides once per epoch. `reset` is called at the start of each episode with its own RNG."""

    name: str = "controller"

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    @abstractmethod
    def decide(self, observation: Observation) -> Decision: ...

    def describe(self) -> dict:
        """The controller's configuration, stored in the raw run header."""
        return {"name": self.name}

    def checked_decide(self, observation: Observation) -> Decision:
        decision = self.decide(observation)
        if not observation.legal[decision.action.index]:
            raise IllegalDecision(
                f"controller {self.name!r} chose {decision.action.fine}, which is not legal here "
                f"(legal: {', '.join(a.fine for a in observation.legal_actions())})"
            )
        if len(decision.probabilities) != len(observation.legal):
            raise IllegalDecision(
                f"controller {self.name!r} gave {len(decision.probabilities)} probabilities for a space of "
                f"{len(observation.legal)} actions"
            )
        total = sum(decision.probabilities)
        if abs(total - 1.0) > 1e-6 or any(
            p > 0 and not ok for p, ok in zip(decision.probabilities, observation.legal)
        ):
            raise IllegalDecision(
                f"controller {self.name!r} returned probabilities summing to {total:.6f} or giving mass "
                f"to illegal actions"
            )
        return decision
