"""Controllers: each heuristic rule at its threshold, exploration propensities, random, learned-policy hook."""

import numpy as np
import pytest

from tamiyo_models.controllers import (
    ControllerConfig,
    EpsilonGreedy,
    HeuristicConfig,
    HeuristicController,
    IllegalDecision,
    LearnedPolicyController,
    Observation,
    RandomController,
    build_controller,
    register_policy_loader,
)
from tamiyo_models.controllers.base import Controller, Decision
from tamiyo_models.world.actions import ADVANCE, CULL, FINE_ACTIONS, WAIT, Action, germinate
from tamiyo_models.world.blueprints import BLUEPRINTS
from tamiyo_models.world.features import ALL_FEATURES
from tamiyo_models.world.lifecycle import Stage

NO_SEED_LEGAL = tuple(a == "WAIT" or a.startswith("GERMINATE") for a in FINE_ACTIONS)
SEED_LEGAL = tuple(a in ("WAIT", "ADVANCE", "CULL") for a in FINE_ACTIONS)


def observation(legal=NO_SEED_LEGAL, **features) -> Observation:
    f = dict.fromkeys(ALL_FEATURES, 0.0)
    f.update({k: float(v) for k, v in features.items()})
    return Observation(record={}, features=f, legal=legal)


def seed_obs(stage: Stage, epochs: int, gain: float) -> Observation:
    return observation(
        SEED_LEGAL, has_active_seed=1, seed_stage=int(stage), seed_epochs_in_stage=epochs, seed_total_improvement=gain, epoch=20
    )


def heuristic(**settings) -> HeuristicController:
    controller = HeuristicController(HeuristicConfig(**settings))
    controller.reset(np.random.default_rng(0))
    return controller


@pytest.mark.parametrize(
    "features,expected",
    [
        (dict(epoch=4, plateau_epochs=10), WAIT),  # too early, whatever the plateau
        (dict(epoch=5, plateau_epochs=2), WAIT),  # plateau below threshold
        (dict(epoch=5, plateau_epochs=3), germinate("conv_light")),  # both thresholds met exactly
    ],
)
def test_germination_thresholds(features, expected):
    assert heuristic().decide(observation(**features)).action == expected


@pytest.mark.parametrize(
    "stage,epochs,gain,expected",
    [
        (Stage.TRAINING, 2, 5.0, WAIT),  # too few epochs to judge
        (Stage.TRAINING, 3, 0.99, WAIT),
        (Stage.TRAINING, 3, 1.0, ADVANCE),
        (Stage.TRAINING, 4, -3.0, WAIT),  # bad, but not yet 5 epochs
        (Stage.TRAINING, 5, -2.0, WAIT),  # exactly -2 is not < -2
        (Stage.TRAINING, 5, -2.01, CULL),
        (Stage.BLENDING, 4, 3.0, WAIT),
        (Stage.BLENDING, 5, 0.01, ADVANCE),
        (Stage.BLENDING, 5, 0.0, CULL),
        (Stage.SHADOWING, 0, 1.0, WAIT),
        (Stage.SHADOWING, 1, 1.0, ADVANCE),
        (Stage.SHADOWING, 1, -1.0, CULL),
        (Stage.PROBATIONARY, 1, 0.5, ADVANCE),
        (Stage.PROBATIONARY, 1, -0.5, CULL),
    ],
)
def test_active_seed_rules_at_their_thresholds(stage, epochs, gain, expected):
    decision = heuristic().decide(seed_obs(stage, epochs, gain))
    assert decision.action == expected and decision.propensity == 1.0


def test_round_robin_blueprints_and_no_germination_without_a_dormant_slot():
    controller = heuristic(blueprints=("conv_heavy", "norm"))
    picks = [controller.decide(observation(epoch=9, plateau_epochs=3)).action.blueprint for _ in range(3)]
    assert picks == ["conv_heavy", "norm", "conv_heavy"]
    embargoed = tuple(a == "WAIT" for a in FINE_ACTIONS)  # a cull's embargo leaves only WAIT legal
    assert controller.decide(observation(embargoed, epoch=9, plateau_epochs=9, seed_stage=int(Stage.EMBARGOED))).action == WAIT


def test_terminal_stage_waits():
    obs = observation(tuple(a == "WAIT" for a in FINE_ACTIONS), epoch=20, plateau_epochs=8, seed_stage=int(Stage.FOSSILIZED))
    assert heuristic().decide(obs).action == WAIT


def test_epsilon_greedy_propensities_are_the_mixture():
    controller = EpsilonGreedy(heuristic(), epsilon=0.2)
    controller.reset(np.random.default_rng(1))
    obs = observation(epoch=9, plateau_epochs=4)
    n_legal = sum(NO_SEED_LEGAL)
    seen = set()
    for _ in range(200):
        decision = controller.checked_decide(obs)
        seen.add(decision.action.fine)
        expected = 0.2 / n_legal + (0.8 if decision.action == decision.greedy_action else 0.0)
        assert decision.propensity == pytest.approx(expected)
        assert sum(decision.probabilities) == pytest.approx(1.0)
        assert all(p == 0 for p, ok in zip(decision.probabilities, NO_SEED_LEGAL) if not ok)
    assert len(seen) == n_legal  # exploration reaches every legal action


def test_random_controller_uses_coarse_weights_over_legal_actions_only():
    controller = RandomController({"WAIT": 3.0, "GERMINATE": 1.0})
    controller.reset(np.random.default_rng(0))
    decision = controller.checked_decide(observation())
    assert decision.probabilities[WAIT.index] == pytest.approx(0.75)
    assert decision.probabilities[germinate("norm").index] == pytest.approx(0.25 / len(BLUEPRINTS))
    assert decision.probabilities[ADVANCE.index] == 0.0
    with pytest.raises(ValueError, match="unknown actions"):
        RandomController({"JUMP": 1.0})


def test_checked_decide_rejects_an_illegal_choice():
    class Reckless(Controller):
        name = "reckless"

        def decide(self, observation):
            probs = [0.0] * len(FINE_ACTIONS)
            probs[CULL.index] = 1.0
            return Decision(CULL, tuple(probs))

    with pytest.raises(IllegalDecision, match="reckless.*CULL"):
        Reckless().checked_decide(observation())


def test_learned_policy_hook_masks_illegal_actions():
    names = ["epoch", "plateau_epochs"]
    scores = lambda x: [0.0, 5.0, 0, 0, 0, 0, 9.0, 9.0]  # noqa: E731 - prefers ADVANCE/CULL, both illegal here
    register_policy_loader("unit", lambda path: LearnedPolicyController(scores, names, name=f"unit:{path}"))
    controller = build_controller(ControllerConfig(kind="policy", policy="unit:model.pt"))
    controller.reset(np.random.default_rng(0))
    decision = controller.checked_decide(observation(epoch=3))
    assert decision.action == Action.from_fine("GERMINATE_conv_light")
    assert decision.probabilities[ADVANCE.index] == 0.0
    with pytest.raises(ValueError, match="no policy loader for 'nope'"):
        build_controller(ControllerConfig(kind="policy", policy="nope:x"))


def test_controller_config_round_trip_and_errors():
    config = ControllerConfig(kind="epsilon-heuristic", epsilon=0.3, heuristic=HeuristicConfig(plateau_epochs_to_germinate=4))
    assert ControllerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown controller"):
        ControllerConfig(kind="oracle")
    with pytest.raises(ValueError, match="unknown heuristic settings"):
        ControllerConfig.from_dict({"heuristic": {"patience": 3}})


def test_softmax_heuristic_explores_most_near_thresholds():
    from tamiyo_models.controllers import SoftmaxHeuristic

    controller = SoftmaxHeuristic(temperature=1.0)
    controller.reset(np.random.default_rng(0))
    far = controller.checked_decide(observation(epoch=20, plateau_epochs=0))  # plateau far below 3
    near = controller.checked_decide(observation(epoch=20, plateau_epochs=2))  # one epoch short
    fired = controller.checked_decide(observation(epoch=20, plateau_epochs=8))  # well past it
    p_germ = lambda d: sum(p for a, p in zip(FINE_ACTIONS, d.probabilities) if a.startswith("GERMINATE"))  # noqa: E731
    assert p_germ(far) < p_germ(near) < 0.5 < p_germ(fired)
    assert far.greedy_action == WAIT and fired.greedy_action.coarse == "GERMINATE"
    seed = controller.checked_decide(seed_obs(Stage.TRAINING, 3, 0.9))  # 0.1 pp short of advancing
    assert 0.2 < seed.probabilities[ADVANCE.index] < 0.8


def test_perturbed_heuristic_redraws_thresholds_per_episode():
    from tamiyo_models.controllers import PerturbedHeuristic
    from tamiyo_models.controllers.exploration import PERTURBATION_RANGES

    controller = PerturbedHeuristic()
    drawn = []
    for seed in range(5):
        controller.reset(np.random.default_rng(seed))
        config = controller.describe()["heuristic"]
        drawn.append(config["plateau_epochs_to_germinate"])
        for key, (low, high) in PERTURBATION_RANGES.items():
            assert low <= config[key] <= high
        assert sorted(config["blueprints"]) == sorted(BLUEPRINTS)
        assert controller.decide(observation(epoch=30, plateau_epochs=9)).propensity == 1.0
    assert len(set(drawn)) > 1
    assert build_controller(ControllerConfig(kind="perturbed-heuristic")).name == "perturbed-heuristic"


def test_a_controller_list_entry_names_a_policy_file_or_a_reference(tmp_path):
    """NAME=PATH (a study's arm, a four-way state reader) is a saved policy under that name; else a reference."""
    from pathlib import Path

    from tamiyo_models.controllers import build_controller, reference_controller
    from tamiyo_models.controllers.config import named_controller

    shipped = Path(__file__).resolve().parents[1] / "tamiyo_models" / "shipped" / "bcq-schedule-forks-arena.pt"
    name, config = named_controller(f"bcq={shipped}")
    assert (name, config.kind, config.label, config.policy) == ("bcq", "policy", "bcq", f"file:{shipped}")
    assert build_controller(config).name == "bcq"
    assert named_controller(" vigilant:conv_heavy@0:slot1 ") == ("vigilant:conv_heavy@0:slot1", reference_controller("vigilant:conv_heavy@0:slot1"))
    for bad in (f"={shipped}", f"bcq={tmp_path / 'missing.pt'}"):
        with pytest.raises(ValueError, match="NAME=PATH"):
            named_controller(bad)
