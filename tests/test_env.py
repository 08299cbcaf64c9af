"""The Gymnasium environment: it passes Gymnasium's checker, steps exactly like the episode runner, records raw
runs that ingest, vectorises without changing results, leaves the learner's random streams alone, and logs
behaviour probabilities that are the probabilities actions were really drawn with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tamiyo_models.controllers import (
    ControllerConfig,
    EpsilonGreedy,
    HeuristicController,
    LearnedPolicyController,
    Observation,
    RandomController,
    SoftmaxHeuristic,
    build_controller,
)  # fmt: skip
from tamiyo_models.env import RecordRawRun, TamiyoEnv, make_vector_env
from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.world.actions import FINE_ACTIONS, Action
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.rawrun import read_raw_run

RANDOM_WEIGHTS = {"WAIT": 3.0, "GERMINATE": 1.0, "ADVANCE": 2.0, "CULL": 1.0}


def _config(seed: int = 4, max_epochs: int = 6, controller: ControllerConfig | None = None) -> EpisodeConfig:
    return EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=max_epochs, seed=seed,
                         controller=controller or ControllerConfig())  # fmt: skip


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    env = TamiyoEnv(_config(max_epochs=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that unbounded features (losses) have infinite bounds
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (len(env.feature_names),) and env.action_space.n == len(FINE_ACTIONS)
    low, high = env.observation_space.low, env.observation_space.high
    i = env.feature_names.index("val_accuracy")
    assert (low[i], high[i]) == (0.0, 100.0)


@pytest.mark.parametrize("controller", [ControllerConfig(kind="heuristic"),
                                        ControllerConfig(kind="random", random_weights=RANDOM_WEIGHTS)])  # fmt: skip
def test_an_agent_in_the_env_steps_exactly_like_the_runner(tmp_path, controller):
    """The same configuration run by the generator and played through TamiyoEnv + RecordRawRun by the same
    controller, drawing from the episode's controller stream: identical observations, actions and outcomes."""
    config = _config(seed=9, max_epochs=8, controller=controller)
    runner = read_raw_run(run_episode(config, tmp_path / "runner").path)

    env = RecordRawRun(TamiyoEnv(config), tmp_path / "env")
    obs, info = env.reset(options={"config": config})
    agent = build_controller(controller)
    agent.reset(env.unwrapped.episode.controller_rng)  # the stream the runner's controller draws from
    done = False
    while not done:
        record, features, legal = env.unwrapped._state
        decision = agent.checked_decide(Observation(record, features, legal))
        assert np.array_equal(info["action_mask"], np.array(legal))
        assert np.allclose(obs, [features[n] for n in env.unwrapped.feature_names])
        env.set_behaviour(decision.probabilities, decision.reason)
        obs, reward, terminated, truncated, info = env.step(decision.action.index)
        done = terminated or truncated
    played = read_raw_run(info["raw_run"])
    assert len(played.steps) == len(runner.steps) == 8 and terminated and not truncated
    import json

    def same(x, y):  # seed ids carry their run's id, which names the controller too
        return json.loads(json.dumps(x).replace(runner.run_id, "RUN")) == json.loads(json.dumps(y).replace(played.run_id, "RUN"))

    for a, b in zip(runner.steps, played.steps):
        assert same(a["observation"], b["observation"]) and same(a["outcome"], b["outcome"])
        assert a["action"]["fine"] == b["action"]["fine"] and a["action"]["probabilities"] == b["action"]["probabilities"]
    for key in ("final_val_accuracy", "final_test_accuracy", "seeds_created", "return", "final_observation"):
        assert same(runner.footer[key], played.footer[key])
    assert played.header["config"]["controller"]["kind"] == "agent" and played.footer["status"] == "complete"


def test_recorded_runs_ingest_with_their_behaviour_flags(tmp_path):
    from tamiyo_models.warehouse import ingest_folder, query

    env = RecordRawRun(TamiyoEnv(_config(max_epochs=4), max_steps=3, agent="tester"), tmp_path / "raw")
    env.reset(seed=1)
    for step in range(3):
        mask = env.unwrapped.action_masks()
        probs = mask / mask.sum()
        if step == 1:
            env.step(0)  # no distribution given: logged as a deterministic choice
        else:
            env.set_behaviour(probs)
            env.step(int(np.flatnonzero(mask)[0]))
    env.close()
    assert env.results[-1].status == "truncated" and env.results[-1].steps == 3
    summary = ingest_folder(tmp_path / "raw", tmp_path / "w.duckdb")
    assert summary.runs_loaded == 1, summary.line()
    steps = query(tmp_path / "w.duckdb", "SELECT step, stochastic, forced, propensity FROM steps ORDER BY step")
    assert steps["stochastic"].to_list() == [True, False, True] and not any(steps["forced"].to_list())
    runs = query(tmp_path / "w.duckdb", "SELECT controller_kind, controller_label FROM runs").row(0)
    assert runs == ("agent", "tester")


def test_illegal_actions_are_a_wasted_turn_or_an_error():
    env = TamiyoEnv(_config(max_epochs=3))
    env.reset(seed=0)
    advance = Action.from_fine("ADVANCE").index
    assert not env.action_masks()[advance]  # no seed yet
    _, _, _, _, info = env.step(advance)
    assert info["illegal_action"] and info["applied"]
    strict = TamiyoEnv(_config(max_epochs=3), illegal_action="raise")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="not legal"):
        strict.step(advance)


def test_stepping_the_env_leaves_the_learners_random_stream_alone():
    env = TamiyoEnv(_config(max_epochs=3, controller=ControllerConfig()))
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    env.reset(seed=5)
    env.step(Action.from_fine("GERMINATE_conv_heavy").index)
    env.step(0)
    assert torch.equal(torch.rand(4), expected)


def test_vector_env_gives_the_serial_results(tmp_path):
    actions = [[0, 1], [6, 0], [0, 7], [0, 0]]  # WAIT, GERMINATE_conv_light, ADVANCE, CULL (illegal ones are wasted)
    results = {}
    for asynchronous in (False, True):
        envs = make_vector_env(2, asynchronous=asynchronous, config=_config(max_epochs=4))
        obs, _ = envs.reset(seed=11)
        trace = [obs.copy()]
        for a in actions:
            obs, reward, terminated, truncated, _ = envs.step(np.array(a))
            trace += [obs.copy(), reward.copy(), terminated.copy()]
        envs.close()
        results[asynchronous] = trace
    for a, b in zip(results[False], results[True]):
        assert np.array_equal(a, b)
    assert results[True][-1].all()  # both episodes ended at their last epoch


# ----- logged propensities ------------------------------------------------------------------------------
def _state_with_choices(tmp_path) -> Observation:
    """A real observation where several actions are legal: a plateaued host with a free slot."""
    config = _config(seed=3, max_epochs=12)
    env = TamiyoEnv(config)
    env.reset(options={"config": config})
    for _ in range(6):
        env.step(0)
    record, features, legal = env.unwrapped._state
    assert sum(legal) > 2
    return Observation(record, {**features, "plateau_epochs": 3.0}, legal)


@pytest.mark.parametrize("name", ["epsilon-heuristic", "softmax-heuristic", "random", "sampling-policy", "epsilon-policy"])
def test_logged_propensities_match_the_empirical_frequencies(tmp_path, name):
    observation = _state_with_choices(tmp_path)

    def score(values):
        return [0.3 * i for i in range(len(FINE_ACTIONS))]  # a fixed policy that prefers later actions

    policy = lambda greedy: LearnedPolicyController(score, ["epoch"], greedy=greedy)  # noqa: E731
    controller = {
        "epsilon-heuristic": lambda: EpsilonGreedy(HeuristicController(), 0.3),
        "softmax-heuristic": lambda: SoftmaxHeuristic(temperature=1.5),
        "random": lambda: RandomController(RANDOM_WEIGHTS),
        "sampling-policy": lambda: policy(False),
        "epsilon-policy": lambda: EpsilonGreedy(policy(True), 0.2),
    }[name]()
    controller.reset(np.random.default_rng(0))
    draws = 10_000
    counts, expected, variance = np.zeros(len(FINE_ACTIONS)), np.zeros(len(FINE_ACTIONS)), np.zeros(len(FINE_ACTIONS))
    for _ in range(draws):
        # The heuristic inside some of them is stateful (its blueprint round-robin), so the distribution may
        # move from one decision to the next: each draw is checked against the distribution logged with it.
        decision = controller.checked_decide(observation)
        logged = np.array(decision.probabilities)
        counts[decision.action.index] += 1
        expected += logged
        variance += logged * (1 - logged)
        assert decision.is_stochastic and decision.propensity == logged[decision.action.index]
    # every action's count within 4.5 standard deviations of the sum of its logged probabilities
    assert np.all(np.abs(counts - expected) <= 4.5 * np.sqrt(variance) + 1e-9), (counts / draws, expected / draws)


def test_a_greedy_policy_logs_the_one_hot_it_acted_by():
    observation = Observation({}, {"epoch": 0.0}, (True,) * len(FINE_ACTIONS))
    policy = LearnedPolicyController(lambda v: [0.1 * i for i in range(len(FINE_ACTIONS))], ["epoch"], greedy=True)
    policy.reset(np.random.default_rng(0))
    decision = policy.decide(observation)
    assert decision.probabilities[decision.action.index] == 1.0 and sum(decision.probabilities) == 1.0
    assert not decision.is_stochastic and decision.policy_probabilities[decision.action.index] < 1.0
    record = decision.to_record("policy", observation.legal)
    assert record["stochastic"] is False and "policy_probabilities" in record
    mixed = EpsilonGreedy(policy, 0.2)
    mixed.reset(np.random.default_rng(1))
    probs = mixed.decide(observation).probabilities
    assert probs[decision.action.index] == pytest.approx(0.8 + 0.2 / len(FINE_ACTIONS))


def test_an_env_given_its_configurations_runs_only_those():
    """configs: after reset(seed=k) the n-th episode is configs[k][n] (dicts or configurations), and an episode
    beyond them is refused, so a caller that registered their seeds knows every seed the env runs."""
    given = {5: [_config(max_epochs=2, seed=40), _config(max_epochs=2, seed=42).to_dict()], 9: [_config(max_epochs=2, seed=44)]}
    env = TamiyoEnv(_config(max_epochs=2, seed=1), configs=given)
    seeds = []
    for reset_seed in (5, None, 9):
        env.reset(seed=reset_seed)
        seeds.append(env.config.seed)
    assert seeds == [40, 42, 44]
    env.reset(seed=5)  # a new reset starts its list again
    assert env.config.seed == 40
    env.reset()
    with pytest.raises(RuntimeError, match="no configuration was given for episode 3 after reset\\(seed=5\\)"):
        env.reset()
    with pytest.raises(RuntimeError, match="reset\\(seed=7\\)"):
        env.reset(seed=7)
