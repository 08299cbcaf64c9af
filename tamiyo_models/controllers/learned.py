"""Learned policies as controllers, and the hook that loads them.

A learned policy is anything that maps the feature vector of an observation to one score (logit) per action
of its action space (world.actions: 8 for one seed slot, 1 + 7n for n). It acts only on a host of that space:
another size is a `PolicySpaceMismatch` naming the policy and both sizes, at its first decision. The controller masks illegal actions, turns scores into probabilities (softmax at a temperature),
and either takes the most probable action (greedy) or samples. What is logged as the behaviour distribution
is what the action was drawn from: one-hot for greedy (its softmax is kept beside, as policy_probabilities),
the softmax itself when sampling.

Loading one from a file (`load_policy("file:PATH")`) is saved_policy.py.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from ..world.actions import Action, slots_of_space
from .base import Controller, Decision, Observation

ScoreFunction = Callable[[Sequence[float]], Sequence[float]]


class PolicySpaceMismatch(ValueError):
    """A policy asked to act on a host whose action space has another size than the one it scores."""


def space_mismatch(controller: "LearnedPolicyController", policy: int, host: int) -> PolicySpaceMismatch:
    def slots(n: int) -> str:
        try:
            k = slots_of_space(n)
        except ValueError:
            return "not an action space"
        return f"{k} seed slot{'s' if k > 1 else ''}"

    # Refused rather than padded or cut: a policy trained on one slot has never seen another slot's actions or
    # state, and one trained on two would be scoring a slot the host does not have.
    where = controller.metadata.get("policy_file") or controller.name
    return PolicySpaceMismatch(f"policy {where} scores {policy} actions ({slots(policy)}), but this host's action "
                               f"space has {host} ({slots(host)}): act with a policy trained on runs of this host's "
                               "slot count")  # fmt: skip


class LearnedPolicyController(Controller):
    def __init__(
        self,
        score: ScoreFunction,
        feature_names: Sequence[str],
        *,
        name: str = "policy",
        greedy: bool = True,
        temperature: float = 1.0,
        metadata: dict | None = None,
        masked_score: Callable[[Sequence[float], Sequence[bool]], Sequence[float]] | None = None,
        n_actions: int | None = None,
    ):
        # masked_score(features, legal): scores with -inf where the policy itself rules an action out (illegal,
        # or outside a support constraint); when given it is what the controller acts on.
        self.score, self.feature_names, self.masked_score = score, tuple(feature_names), masked_score
        self.name, self.greedy, self.temperature = name, greedy, temperature
        self.metadata = metadata or {}
        # The size of the action space the policy scores (a saved file says); None: checked on its scores.
        self.n_actions = n_actions

    def describe(self) -> dict:
        return {
            "name": self.name,
            "greedy": self.greedy,
            "temperature": self.temperature,
            "feature_count": len(self.feature_names),
            **self.metadata,
        }

    def probabilities(self, observation: Observation) -> tuple[float, ...]:
        host = len(observation.legal)
        if self.n_actions is not None and self.n_actions != host:
            raise space_mismatch(self, self.n_actions, host)
        values = [observation.features[n] for n in self.feature_names]
        if self.masked_score is not None:
            scores = list(self.masked_score(values, observation.legal))
        else:
            scores = list(self.score(values))
        if len(scores) != host:
            raise space_mismatch(self, len(scores), host)
        legal_scores = [s / self.temperature for s, ok in zip(scores, observation.legal) if ok]
        top = max(legal_scores)
        weights = [math.exp(s / self.temperature - top) if ok else 0.0 for s, ok in zip(scores, observation.legal)]
        total = sum(weights)
        return tuple(w / total for w in weights)

    def decide(self, observation: Observation) -> Decision:
        probs = self.probabilities(observation)
        if self.greedy:
            index = max(range(len(probs)), key=probs.__getitem__)
            drawn = tuple(1.0 if i == index else 0.0 for i in range(len(probs)))
            return Decision(Action.from_index(index), drawn, f"policy greedy, p={probs[index]:.3f}", stochastic=False,
                            policy_probabilities=probs)  # fmt: skip
        index = int(self.rng.choice(len(probs), p=probs))
        return Decision(Action.from_index(index), probs, f"policy p={probs[index]:.3f}", stochastic=True)
