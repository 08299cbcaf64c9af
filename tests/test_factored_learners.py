"""The factored action through Phase 3: the transition dataset over each run's own action space (one space per
dataset unless mixing is asked for; single-slot datasets exactly as before), policy files that name their
space, learners sized by the data, a tiny two-slot problem whose best action is in slot 1 learned by CQL, IQL
and BCQ (and valued by FQE), and a policy trained on two-slot runs acting as a controller on a two-slot host."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tamiyo_models.controllers import ControllerConfig
from tamiyo_models.controllers.reference import EAGER_HEURISTIC
from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.transitions.dataset import TransitionDataset
from tamiyo_models.world.actions import FINE_ACTIONS, Action, action_names, germinate
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

SYNTHETIC = DatasetConfig(name="synthetic")
TWO_SLOTS = HostConfig(widths=(2, 4, 8), slots=(0, 1))
EXPLORING_EAGER = ControllerConfig(kind="epsilon-heuristic", epsilon=0.3, heuristic=EAGER_HEURISTIC)
FEATURES = "base+lifecycle+task+slots"
quiet = lambda *_: None  # noqa: E731


def _config(host: HostConfig, seed: int, epochs: int = 8, controller=EXPLORING_EAGER) -> EpisodeConfig:
    return EpisodeConfig(dataset=SYNTHETIC, host=host, max_epochs=epochs, seed=seed, controller=controller)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """Two single-slot and three two-slot runs of an exploring eager heuristic (it grafts into both slots)."""
    from tamiyo_models.warehouse import ingest_folder

    root = tmp_path_factory.mktemp("factored-learners")
    for seed in (1, 2, 3):
        run_episode(_config(TWO_SLOTS, seed), root / "raw")
    for seed in (1, 2):
        run_episode(_config(HostConfig(), seed), root / "raw")
    ingest_folder(root / "raw", root / "w.duckdb")
    return root


def _runs(root) -> dict:
    return {r.run_id: r for r in map(read_raw_run, list_raw_runs(root / "raw"))}


def test_a_single_slot_dataset_is_what_it_always_was(warehouse):
    """The arrays of the pre-factored loader (8 actions; masks and mu over FINE_ACTIONS from the 8 slot-0
    probability columns), rebuilt here from the steps table."""
    from tamiyo_models.transitions import load_transitions
    from tamiyo_models.warehouse import query

    data = load_transitions(warehouse / "w.duckdb", "full", seed_slots=1)
    assert data.n_actions == 8 and data.action_names == FINE_ACTIONS and data.metadata["action_space"] == list(FINE_ACTIONS)
    columns = ", ".join(f"prob_{a.lower()}" for a in FINE_ACTIONS)
    ids = ", ".join(f"'{r}'" for r in sorted(set(data.run_ids)))
    steps = query(warehouse / "w.duckdb", f"SELECT legal_actions, {columns} FROM steps WHERE run_id IN ({ids}) "
                                          "ORDER BY run_id, step")  # fmt: skip
    legal = np.array([[a in set(v) for a in FINE_ACTIONS] for v in steps["legal_actions"].to_list()], dtype=bool)
    mu = steps.select([f"prob_{a.lower()}" for a in FINE_ACTIONS]).to_numpy().astype(np.float64)
    assert data.legal.dtype == bool and np.array_equal(data.legal, legal)
    assert data.behaviour_probabilities.dtype == np.float64 and np.array_equal(data.behaviour_probabilities, mu)
    assert data.actions.max() < 8


def test_a_two_slot_dataset_is_over_the_runs_fifteen_actions(warehouse):
    from tamiyo_models.transitions import load_transitions, to_d3rlpy

    data = load_transitions(warehouse / "w.duckdb", FEATURES, seed_slots=2)
    names = action_names(2)
    assert data.n_actions == 15 and data.action_names == names and data.metadata["action_space"] == list(names)
    assert data.legal.shape == data.next_legal.shape == data.behaviour_probabilities.shape == (len(data), 15)
    runs = _runs(warehouse)
    for rows in data.episode_slices():
        run = runs[data.run_ids[rows.start]]
        assert run.header["action_space"] == list(names)
        for i, step in zip(range(rows.start, rows.stop), run.steps):
            assert names[data.actions[i]] == step["action"]["fine"]
            assert list(np.array(names)[data.legal[i]]) == step["action"]["legal"]
            assert np.allclose(data.behaviour_probabilities[i], [step["action"]["probabilities"][a] for a in names])
        assert list(np.array(names)[data.next_legal[rows.stop - 1]]) == run.footer["final_legal"]
    assert (data.actions >= 8).any()  # slot 1 was acted on
    drawn = ~data.forced
    assert np.allclose(data.propensity[drawn], data.behaviour_probabilities[drawn, data.actions[drawn]])
    assert to_d3rlpy(data).dataset_info.action_size == 15


def test_runs_of_different_action_spaces_are_refused_together_unless_asked(warehouse):
    from tamiyo_models.transitions import load_transitions

    with pytest.raises(ValueError, match="different action spaces") as refused:
        load_transitions(warehouse / "w.duckdb", "full")
    single = load_transitions(warehouse / "w.duckdb", "full", seed_slots=1)
    double = load_transitions(warehouse / "w.duckdb", "full", seed_slots=2)
    for run_id in {*single.run_ids[:1], *double.run_ids[:1]}:
        assert run_id in str(refused.value)  # the message names runs of each space
    assert "8 actions (1 slot)" in str(refused.value) and "15 actions (2 slots)" in str(refused.value)

    mixed = load_transitions(warehouse / "w.duckdb", "full", mix_action_spaces=True)
    assert mixed.n_actions == 15 and len(mixed) == len(single) + len(double)
    narrow = np.isin(mixed.run_ids, single.run_ids)
    # A single-slot run in the wider space: the same indices, masks and mu, the extra actions illegal and never drawn.
    for name in ("actions", "observations", "rewards", "propensity"):
        assert np.array_equal(getattr(mixed, name)[narrow], getattr(single, name), equal_nan=name == "propensity")
    assert np.array_equal(mixed.legal[narrow][:, :8], single.legal) and not mixed.legal[narrow][:, 8:].any()
    assert np.array_equal(mixed.behaviour_probabilities[narrow][:, :8], single.behaviour_probabilities)
    assert not mixed.behaviour_probabilities[narrow][:, 8:].any() and not mixed.next_legal[narrow][:, 8:].any()
    assert np.array_equal(mixed.legal[~narrow], double.legal)


# ----- a tiny two-slot problem with a known answer ------------------------------------------------------------
#     s0 --GERMINATE_norm_SLOT1--> s1 (reward 0) --WAIT--> end (reward 2)        return 2 (optimal, in slot 1)
#     s0 --GERMINATE_norm------->  end (reward 1)                                return 1 (the behaviour's 80%)
# The same blueprint in both slots, so only the slot tells the two apart: a learner that mixed up the blocks of
# the flat index, or sized its outputs to 8 actions, cannot find the optimum.
N_ACTIONS = 15
BEST, MAJORITY, WAIT = germinate("norm", 1).index, germinate("norm", 0).index, Action("WAIT").index


def tiny_two_slot_problem(episodes: int = 600, p_best: float = 0.2, noise: float = 0.3, seed: int = 0) -> TransitionDataset:
    rng = np.random.default_rng(seed)
    s0, s1, end = np.eye(3, dtype=np.float32)
    legal0, legal1 = np.zeros(N_ACTIONS, bool), np.zeros(N_ACTIONS, bool)
    legal0[[BEST, MAJORITY, WAIT]] = True
    legal1[WAIT] = True
    mu0, mu1 = np.zeros(N_ACTIONS), np.zeros(N_ACTIONS)
    mu0[BEST], mu0[MAJORITY] = p_best, 1 - p_best
    mu1[WAIT] = 1.0
    rows = []
    for i in range(episodes):
        run = f"run-{i:04d}"
        if rng.random() < p_best:
            rows.append((run, 1, s0, BEST, rng.normal(0, noise), s1, False, legal0, legal1, mu0, True))
            rows.append((run, 2, s1, WAIT, 2 + rng.normal(0, noise), end, True, legal1, legal1, mu1, False))
        else:
            rows.append((run, 1, s0, MAJORITY, 1 + rng.normal(0, noise), end, True, legal0, legal1, mu0, True))
    run, step, obs, act, rew, nxt, term, legal, nlegal, mu, stoch = map(np.array, zip(*rows))
    n = len(act)
    return TransitionDataset(
        feature_names=("x0", "x1", "x2"), observations=obs.astype(np.float32), actions=act.astype(np.int64),
        rewards=rew.astype(np.float32), next_observations=nxt.astype(np.float32), terminated=term, truncated=np.zeros(n, bool),
        legal=legal, next_legal=nlegal, behaviour_probabilities=mu, propensity=mu[np.arange(n), act],
        stochastic=stoch, forced=np.zeros(n, bool), run_ids=run, steps=step.astype(np.int64), family_ids=run,
        behaviours=np.array(["mostly-slot-0"] * n), regimes=np.array([""] * n),
    )  # fmt: skip


S0 = torch.tensor([[1.0, 0.0, 0.0]])
LEGAL0 = torch.zeros(1, N_ACTIONS, dtype=torch.bool)
LEGAL0[0, [BEST, MAJORITY, WAIT]] = True
SMALL = dict(hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1)


def _greedy(module) -> int:
    with torch.no_grad():
        return int(module.act(S0, LEGAL0, greedy=True)[0])


@pytest.fixture(scope="module")
def learned():
    """CQL, IQL and BCQ trained on the tiny two-slot problem (once for the tests below)."""
    from tamiyo_models.offline_rl.bcq import BCQConfig, train_bcq
    from tamiyo_models.offline_rl.cql import CQLConfig, train_cql
    from tamiyo_models.offline_rl.iql import IQLConfig, train_iql

    data = tiny_two_slot_problem()
    assert data.n_actions == N_ACTIONS and np.mean(data.actions[data.steps == 1] == MAJORITY) > 0.7
    return {
        "cql": train_cql(data, CQLConfig(alpha=0.1, **SMALL), log=quiet).module,
        "iql": train_iql(data, IQLConfig(**SMALL), log=quiet).module,
        "bcq": train_bcq(data, BCQConfig(threshold=0.1, **SMALL), log=quiet).module,
    }


@pytest.mark.parametrize("algorithm", ["cql", "iql", "bcq"])
def test_offline_learners_find_the_best_action_in_slot_1(learned, algorithm):
    module = learned[algorithm]
    assert _greedy(module) == BEST
    with torch.no_grad():
        logits = module.logits(S0, LEGAL0)[0]
    assert logits.shape == (N_ACTIONS,) and torch.isinf(logits[~LEGAL0[0]]).all()


def test_fqe_values_each_slots_choice_on_the_two_slot_problem():
    from tamiyo_models.agents.base import PolicyModule
    from tamiyo_models.ope.fqe import FQEConfig, fit_fqe

    class Fixed(PolicyModule):
        def __init__(self, action):
            super().__init__()
            self.action = action

        def raw_logits(self, obs):
            return torch.full((len(obs), N_ACTIONS), -5.0).index_fill(1, torch.tensor([self.action]), 5.0)

    data = tiny_two_slot_problem()
    config = FQEConfig(hidden=(32, 32), updates=3_000, reward_scale=1.0)
    assert fit_fqe(Fixed(BEST), data, config).value == pytest.approx(2.0, abs=0.15)
    assert fit_fqe(Fixed(MAJORITY), data, config).value == pytest.approx(1.0, abs=0.15)
    with pytest.raises(ValueError, match="scores 8 actions but the mask covers 15"):
        fit_fqe(_eight_action_policy(), data, config)


def _eight_action_policy():
    from tamiyo_models.agents import MLPActor

    torch.manual_seed(0)
    return MLPActor(3, (8,))


def test_policy_files_name_their_action_space_and_act_only_on_hosts_of_it(learned, tmp_path):
    from tamiyo_models.agents import load_policy, save_policy
    from tamiyo_models.controllers import Observation
    from tamiyo_models.controllers.learned import PolicySpaceMismatch
    from tamiyo_models.controllers.saved_policy import policy_controller

    features = ("x0", "x1", "x2")
    two = save_policy(learned["cql"], features, tmp_path / "two.pt", algorithm="cql", phase="phase3")
    one = save_policy(_eight_action_policy(), features, tmp_path / "one.pt", algorithm="test", phase="phase3")
    module, payload = load_policy(two)
    assert payload["fine_actions"] == list(action_names(2)) and module.spec()["n_actions"] == 15
    with torch.no_grad():
        assert torch.equal(module.logits(S0, LEGAL0), learned["cql"].logits(S0, LEGAL0))
    assert load_policy(one)[1]["fine_actions"] == list(FINE_ACTIONS)  # 8 actions: what every older file holds
    with pytest.raises(ValueError, match="not the 8 given"):
        save_policy(learned["cql"], features, tmp_path / "bad.pt", algorithm="cql", phase="phase3", actions=FINE_ACTIONS)

    state = dict(zip(features, (1.0, 0.0, 0.0)))
    on_two = Observation({}, state, tuple(bool(x) for x in LEGAL0[0]))
    on_one = Observation({}, state, (True, False, False, False, True, False, False, False))
    decision = policy_controller(two).decide(on_two)
    assert decision.action == germinate("norm", 1) and len(decision.probabilities) == 15
    assert policy_controller(one).decide(on_one).action.index < 8
    for path, observation, sizes in ((two, on_one, ("15 actions (2 seed slots)", "8 (1 seed slot)")),
                                     (one, on_two, ("8 actions (1 seed slot)", "15 (2 seed slots)"))):  # fmt: skip
        with pytest.raises(PolicySpaceMismatch) as refused:
            policy_controller(path).decide(observation)
        assert str(path.resolve()) in str(refused.value) and all(s in str(refused.value) for s in sizes)


def test_a_policy_trained_on_two_slot_runs_acts_on_a_two_slot_host(warehouse, tmp_path):
    """Warehouse -> two-slot transitions -> BCQ (checkpoint chosen by held-out FQE) -> policy file -> a live
    two-slot episode, the policy acting greedily on its own masked scores over the 15 actions."""
    from tamiyo_models.agents import load_policy
    from tamiyo_models.agents.checks import check_policy_file
    from tamiyo_models.offline_rl.bcq import BCQConfig
    from tamiyo_models.offline_rl.workflow import OfflineRunConfig, train_offline
    from tamiyo_models.ope.fqe import FQEConfig
    from tamiyo_models.world.features import observation_features

    config = OfflineRunConfig(algorithm="bcq", feature_set=FEATURES, seed_slots=2, held_out=0.34,
                              bcq=BCQConfig(hidden=(32,), updates=300, checkpoints=2, threshold=0.3),
                              selection_fqe=FQEConfig(hidden=(32,), updates=100), report_fqe=FQEConfig(hidden=(32,), updates=100))  # fmt: skip
    run = train_offline(warehouse / "w.duckdb", config, tmp_path / "policy", log=quiet)
    module, payload = load_policy(run.policy_path)
    assert payload["fine_actions"] == list(action_names(2))
    # The sanity check reads the policy's own runs from a warehouse that also holds single-slot ones.
    held_out = payload["metadata"]["held_out_runs"]
    assert held_out and check_policy_file(run.policy_path, warehouse / "w.duckdb", held_out).acts_legally
    with pytest.raises(ValueError, match="different action spaces"):
        train_offline(warehouse / "w.duckdb", dataclasses.replace(config, seed_slots=None), tmp_path / "mixed", log=quiet)

    episode = _config(TWO_SLOTS, seed=7, controller=ControllerConfig(kind="policy", policy=f"file:{run.policy_path}"))
    raw = read_raw_run(run_episode(episode, tmp_path / "live").path)
    assert raw.footer["status"] == "complete" and len(raw.steps) == episode.max_epochs

    # Off-policy estimates on the two-slot runs: the policy reads the per-slot features, and so does the heuristic
    # (always estimated, the baseline) and a slot-1 schedule; the data holds every feature for them.
    import json

    from tamiyo_models.cli import main

    out = tmp_path / "ope"
    assert main(["ope", f"bcq={run.policy_path}", "--warehouse", str(warehouse / "w.duckdb"), "--seed-slots", "2",
                 "--references", "fixed:conv_light@0:slot1", "--updates", "50", "--out", str(out)]) == 0  # fmt: skip
    rows = {r["name"]: r for r in json.loads((out / "ope.json").read_text())["rows"]}
    assert set(rows) == {"heuristic", "bcq", "fixed:conv_light@0:slot1"} and all(np.isfinite(r["fqe"]) for r in rows.values())
    assert raw.header["action_space"] == list(action_names(2))
    names = payload["feature_names"]
    for step in raw.steps:
        action = step["action"]
        assert list(action["probabilities"]) == list(action_names(2)) and action["fine"] in action["legal"]
        features = observation_features(step["observation"])
        legal = torch.tensor([[a in action["legal"] for a in action_names(2)]])
        with torch.no_grad():
            best = int(module.logits(torch.tensor([[features[n] for n in names]]), legal).argmax())
        assert action["fine"] == action_names(2)[best]
