"""Controllers behind one interface, and the configuration that builds them.

    base.py            Controller, Observation, Decision (the interface)
    heuristic.py       the hand-written heuristic (the teacher)
    reference.py       fixed schedules and the other reference baselines
    epsilon.py, exploration.py, random_controller.py   the exploring controllers that log propensities
    learned.py         a learned policy as a controller (masking, softmax, greedy or sampled)
    saved_policy.py    `file:PATH` policies and other registered loaders (load_policy)
    config.py          ControllerConfig, build_controller, reference_controller
"""

from __future__ import annotations

from .base import Controller, Decision, IllegalDecision, Observation
from .config import CONTROLLER_KINDS, ControllerConfig, build_controller, reference_controller
from .epsilon import EpsilonGreedy
from .exploration import PerturbedHeuristic, SoftmaxHeuristic
from .heuristic import HeuristicConfig, HeuristicController
from .learned import LearnedPolicyController
from .random_controller import RandomController
from .reference import DEFAULT_REFERENCES, EAGER_HEURISTIC, FixedSchedule, NeverGrow
from .saved_policy import load_policy, register_policy_loader

__all__ = [
    "CONTROLLER_KINDS", "DEFAULT_REFERENCES", "EAGER_HEURISTIC", "Controller", "ControllerConfig", "Decision",
    "EpsilonGreedy", "FixedSchedule", "HeuristicConfig", "HeuristicController", "IllegalDecision",
    "LearnedPolicyController", "NeverGrow", "Observation", "PerturbedHeuristic", "RandomController",
    "SoftmaxHeuristic", "build_controller", "load_policy", "reference_controller", "register_policy_loader",
]  # fmt: skip
