"""Controllers behind one interface, and the configuration that builds them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..configs import known_fields
from .base import Controller, Decision, IllegalDecision, Observation
from .epsilon import EpsilonGreedy
from .exploration import PerturbedHeuristic, SoftmaxHeuristic
from .heuristic import HeuristicConfig, HeuristicController
from .learned import LearnedPolicyController, load_policy, register_policy_loader
from .random_controller import RandomController

CONTROLLER_KINDS = (
    "heuristic", "random", "epsilon-heuristic", "softmax-heuristic", "perturbed-heuristic", "policy", "epsilon-policy",
)  # fmt: skip


@dataclass(frozen=True)
class ControllerConfig:
    kind: str = "heuristic"
    epsilon: float = 0.1  # for the epsilon-* kinds
    temperature: float = 1.0  # for softmax-heuristic: higher explores more
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    random_weights: dict = field(default_factory=dict, hash=False)
    policy: str | None = None  # "scheme:PATH" for the policy kinds

    def __post_init__(self):
        if self.kind not in CONTROLLER_KINDS:
            raise ValueError(f"unknown controller {self.kind!r}; known: {', '.join(CONTROLLER_KINDS)}")
        if self.kind.endswith("policy") and not self.policy:
            raise ValueError(f"controller {self.kind!r} needs a policy (scheme:PATH)")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "heuristic": self.heuristic.to_dict(),
            "random_weights": dict(self.random_weights),
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ControllerConfig":
        d = known_fields(cls, d, "controller settings")
        d["heuristic"] = HeuristicConfig.from_dict(d.get("heuristic") or {})
        return cls(**d)


def build_controller(config: ControllerConfig) -> Controller:
    if config.kind == "heuristic":
        return HeuristicController(config.heuristic)
    if config.kind == "random":
        return RandomController(config.random_weights)
    if config.kind == "epsilon-heuristic":
        return EpsilonGreedy(HeuristicController(config.heuristic), config.epsilon)
    if config.kind == "softmax-heuristic":
        return SoftmaxHeuristic(config.heuristic, config.temperature)
    if config.kind == "perturbed-heuristic":
        return PerturbedHeuristic(config.heuristic)
    policy = load_policy(config.policy)
    return EpsilonGreedy(policy, config.epsilon) if config.kind == "epsilon-policy" else policy


__all__ = [
    "CONTROLLER_KINDS", "Controller", "ControllerConfig", "Decision", "EpsilonGreedy", "HeuristicConfig",
    "HeuristicController", "IllegalDecision", "LearnedPolicyController", "Observation", "PerturbedHeuristic",
    "RandomController", "SoftmaxHeuristic",
    "build_controller", "load_policy", "register_policy_loader",
]  # fmt: skip
