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
from .reference import DEFAULT_REFERENCES, EAGER_HEURISTIC, FixedSchedule, NeverGrow, reference_controller

CONTROLLER_KINDS = (
    "heuristic", "random", "epsilon-heuristic", "softmax-heuristic", "perturbed-heuristic", "never", "fixed-schedule",
    "epsilon-fixed-schedule", "policy", "epsilon-policy", "agent",
)  # fmt: skip


@dataclass(frozen=True)
class ControllerConfig:
    kind: str = "heuristic"
    epsilon: float = 0.1  # for the epsilon-* kinds
    temperature: float = 1.0  # for softmax-heuristic: higher explores more
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    random_weights: dict = field(default_factory=dict, hash=False)
    policy: str | None = None  # "scheme:PATH" for the policy kinds
    blueprint: str = "conv_heavy"  # for fixed-schedule: what to graft
    germinate_epoch: int = 6  # for fixed-schedule: graft at the first decision after this many epochs
    label: str | None = None  # the reference name (fixed:conv_heavy@6, eager, ...) that reports group by

    def __post_init__(self):
        if self.kind not in CONTROLLER_KINDS:
            raise ValueError(f"unknown controller {self.kind!r}; known: {', '.join(CONTROLLER_KINDS)}")
        if self.kind.endswith("policy") and not self.policy:
            raise ValueError(f"controller {self.kind!r} needs a policy (scheme:PATH)")
        if self.kind.endswith("fixed-schedule"):
            FixedSchedule(self.blueprint, self.germinate_epoch)  # validates, naming the bad setting

    def display_name(self) -> str:
        return self.label or self.kind

    def to_dict(self) -> dict:
        d = {
            "kind": self.kind,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "heuristic": self.heuristic.to_dict(),
            "random_weights": dict(self.random_weights),
            "policy": self.policy,
        }
        # Written only where they mean something: a heuristic run's header does not list a schedule it ignores.
        if self.kind.endswith("fixed-schedule"):
            d.update(blueprint=self.blueprint, germinate_epoch=self.germinate_epoch)
        if self.label is not None:
            d["label"] = self.label
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ControllerConfig":
        d = known_fields(cls, d, "controller settings")
        d["heuristic"] = HeuristicConfig.from_dict(d.get("heuristic") or {})
        return cls(**d)


def build_controller(config: ControllerConfig) -> Controller:
    controller = _build(config)
    if config.label:
        controller.name = config.label
    return controller


def _build(config: ControllerConfig) -> Controller:
    if config.kind == "agent":
        raise ValueError(f"controller 'agent' ({config.label or 'unnamed'}) is an external learner acting through "
                         "TamiyoEnv; it cannot run as a controller on its own")  # fmt: skip
    if config.kind == "heuristic":
        return HeuristicController(config.heuristic)
    if config.kind == "never":
        return NeverGrow()
    if config.kind == "fixed-schedule":
        return FixedSchedule(config.blueprint, config.germinate_epoch)
    if config.kind == "epsilon-fixed-schedule":  # a schedule's stochastic version, when it is the nightly champion
        return EpsilonGreedy(FixedSchedule(config.blueprint, config.germinate_epoch), config.epsilon)
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
    "CONTROLLER_KINDS", "DEFAULT_REFERENCES", "EAGER_HEURISTIC", "Controller", "ControllerConfig", "Decision",
    "EpsilonGreedy", "FixedSchedule", "HeuristicConfig", "HeuristicController", "IllegalDecision",
    "LearnedPolicyController", "NeverGrow", "Observation", "PerturbedHeuristic", "RandomController",
    "SoftmaxHeuristic", "build_controller", "load_policy", "reference_controller", "register_policy_loader",
]  # fmt: skip
