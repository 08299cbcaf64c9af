"""Compute rent (docs/arena.md, "Compute rent"): the score charges for growth, the reward follows it, and
rent 0 is the arena as it was, bit for bit."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tamiyo_models.controllers.config import ControllerConfig
from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeResult, run_episode
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.rawrun import read_raw_run
from tamiyo_models.world.score import charged_score, check_rent, growth_charge

# A growing episode: conv_heavy grafted after epoch 1 on the default host (496 parameters -> 800).
GROWING = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=6, seed=3,
                        controller=ControllerConfig(kind="fixed-schedule", blueprint="conv_heavy", germinate_epoch=1))  # fmt: skip

# What this episode gave before rent existed (commit 1807b39), on the CPU. The run id pins the whole default
# configuration (a default rent other than 0 would change it); the rewards and scores are counts of images,
# so they are exact. If a deliberate change of the world moves them, regenerate them, knowing why.
BEFORE_RENT = {
    "run_id": "run-83ac0348ae5f5c25",
    "actions": ["WAIT", "GERMINATE_conv_heavy", "ADVANCE", "ADVANCE", "ADVANCE", "ADVANCE"],
    "rewards": [5.0, 16.0, 6.0, 14.5, 4.0, 0.5],
    "return": 46.0,
    "final_test_accuracy": 49.5,
    "final_parameters": 800,
    "host_parameters": 496,
}


def _without_timing(run) -> dict:
    header = dict(run.header)
    footer = {k: v for k, v in run.footer.items() if k != "wall_seconds"}
    return {"header": header, "steps": [{k: v for k, v in s.items() if k != "timing"} for s in run.steps], "footer": footer}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rent")
    explicit = dataclasses.replace(GROWING, rent=0)
    charged = dataclasses.replace(GROWING, rent=1.5)
    return {name: (result, read_raw_run(result.path))
            for name, result in (("default", run_episode(GROWING, out / "default")),
                                 ("rent0", run_episode(explicit, out / "rent0")),
                                 ("charged", run_episode(charged, out / "charged")))}  # fmt: skip


def test_rent_zero_is_the_arena_before_rent_bit_for_bit(runs):
    (default, default_run), (explicit, explicit_run) = runs["default"], runs["rent0"]
    assert GROWING.rent == 0.0 and dataclasses.replace(GROWING, rent=0).to_dict() == GROWING.to_dict()
    assert "rent" not in GROWING.to_dict()  # the configuration, hence the run id, of every stored run
    assert _without_timing(default_run) == _without_timing(explicit_run)
    assert default.episode_return == explicit.episode_return and default.score == explicit.score
    # ... and both are what the episode gave before rent existed.
    assert default_run.run_id == BEFORE_RENT["run_id"]
    assert [s["action"]["fine"] for s in default_run.steps] == BEFORE_RENT["actions"]
    assert [s["outcome"]["reward"] for s in default_run.steps] == BEFORE_RENT["rewards"]
    assert all("rent_charge" not in s["outcome"] for s in default_run.steps)
    footer = default_run.footer
    assert footer["return"] == BEFORE_RENT["return"] == default.episode_return
    assert footer["final_test_accuracy"] == BEFORE_RENT["final_test_accuracy"]
    assert footer["score"] == footer["final_test_accuracy"] == default.score and footer["rent"] == 0.0
    assert footer["final_parameters"] == BEFORE_RENT["final_parameters"]
    assert default_run.header["host_parameters"] == BEFORE_RENT["host_parameters"]


def test_a_positive_rent_charges_the_growing_step_and_the_score(runs):
    (base, base_run), (charged, charged_run) = runs["default"], runs["charged"]
    ratio = math.log2(BEFORE_RENT["final_parameters"] / BEFORE_RENT["host_parameters"])
    assert charged_run.run_id != base_run.run_id and charged_run.header["config"]["rent"] == 1.5
    # The rent changes what the controller is paid, never what it does or what trains.
    def trajectory(run):
        return [[s["action"]["fine"], s["outcome"]["val_accuracy_after"], [e["to_stage"] for e in s["outcome"]["events"]]]
                for s in run.steps]  # fmt: skip

    assert trajectory(charged_run) == trajectory(base_run)
    charges = [s["outcome"]["rent_charge"] for s in charged_run.steps]
    assert charges[1] == pytest.approx(1.5 * ratio) and charges[0] == 0 and charges[2:] == [0.0] * 4
    assert charged.episode_return == pytest.approx(base.episode_return - 1.5 * ratio, abs=1e-12)
    footer = charged_run.footer
    assert footer["rent"] == 1.5 and footer["final_test_accuracy"] == base_run.footer["final_test_accuracy"]
    assert footer["score"] == pytest.approx(footer["final_test_accuracy"] - 1.5 * ratio, abs=1e-12)
    assert charged.score == footer["score"] == charged_score(footer["final_test_accuracy"], 1.5, 800, 496)
    assert "score" in charged.summary_line()


def test_tamiyo_env_returns_follow_the_rent():
    from tamiyo_models.env import TamiyoEnv
    from tamiyo_models.world.actions import FINE_INDEX

    plan = ["WAIT", "GERMINATE_conv_heavy", "ADVANCE", "ADVANCE", "ADVANCE", "ADVANCE"]
    returns = {}
    for rent in (0.0, 1.0):
        env = TamiyoEnv(dataclasses.replace(GROWING, rent=rent))
        env.reset(options={"config": dataclasses.replace(GROWING, rent=rent)})
        returns[rent] = [env.step(FINE_INDEX[name])[1] for name in plan]
    assert returns[0.0] == BEFORE_RENT["rewards"]
    assert sum(returns[1.0]) == pytest.approx(sum(returns[0.0]) - math.log2(800 / 496), abs=1e-12)


def test_the_score_function_and_bad_rents():
    assert growth_charge(0, 10**6, 1) == 0.0 and charged_score(81.25, 0, 2886, 1702) == 81.25
    assert growth_charge(1.0, 800, 400) == 1.0 and charged_score(None, 1.0, 800, 400) is None
    assert charged_score(80.0, 2.0, 1702, 1702) == 80.0  # no growth, no charge
    assert check_rent(1) == 1.0
    for bad in (-0.5, "1", True, math.nan, math.inf, None):
        with pytest.raises(ValueError, match="rent must be"):
            check_rent(bad)
    with pytest.raises(ValueError, match="rent must be"):
        EpisodeConfig(rent=-1)
    assert EpisodeConfig.from_dict({**GROWING.to_dict(), "rent": 2}).rent == 2.0
    # A footer written before rent existed: rent 0, its score is its test accuracy.
    old = {"status": "complete", "steps": 6, "final_val_accuracy": 50.0, "best_val_accuracy": 51.0, "seeds_created": 1,
           "seeds_fossilized": 1, "seeds_culled": 0, "return": 46.0, "final_test_accuracy": 49.5, "final_parameters": 800}
    result = EpisodeResult.from_footer(None, "run-x", old)
    assert result.rent == 0.0 and result.score == 49.5


SPEC = """
name = "rented"
{rent}
[base]
max_epochs = 4
dataset = {{ name = "synthetic" }}
[vary]
learning_rate = {{ min = 0.01, max = 0.1, log = true }}
"""


def test_a_spec_sets_the_rent_of_every_episode(tmp_path):
    from tamiyo_models.episodes.generation import GenerationSpec

    path = tmp_path / "rented.toml"
    path.write_text(SPEC.format(rent="rent = 1"))
    spec = GenerationSpec.load(path)
    assert spec.rent == 1.0 and {c.rent for c in spec.sample(5, seed=1)} == {1.0}
    path.write_text(SPEC.format(rent=""))
    unrented = GenerationSpec.load(path).sample(5, seed=1)
    assert {c.rent for c in unrented} == {0.0} and all("rent" not in c.to_dict() for c in unrented)


@pytest.mark.parametrize("line, message", [
    ("rent = -1", "rent: rent must be finite and >= 0"),
    ('rent = "high"', "rent: rent must be a number"),
    ("rent = true", "rent: rent must be a number"),
    ("rent = nan", "rent: rent must be finite"),
])  # fmt: skip
def test_a_bad_rent_names_the_spec_file_and_the_field(tmp_path, line, message):
    from tamiyo_models.episodes.generation import GenerationSpec, SpecError

    path = tmp_path / "bad-rent.toml"
    path.write_text(SPEC.format(rent=line))
    with pytest.raises(SpecError, match=rf"bad-rent\.toml: {message}"):
        GenerationSpec.load(path)


def test_the_rent_is_set_once_per_spec(tmp_path):
    from tamiyo_models.episodes.generation import GenerationSpec, SpecError

    path = tmp_path / "split-rent.toml"
    path.write_text(SPEC.format(rent="") + '[[regimes]]\nname = "a"\nbase = { rent = 2.0 }\n')
    with pytest.raises(SpecError, match=r"split-rent\.toml: regimes\[a\]\.base\.rent: the rent is set once"):
        GenerationSpec.load(path)
