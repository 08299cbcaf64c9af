"""Offline RL and off-policy evaluation on a tiny MDP with a known answer, where behaviour cloning is wrong.

    s0 --A--> s1 (reward 0) --WAIT--> end (reward 2)        return 2  (optimal)
    s0 --B--> end (reward 1)                                 return 1  (what the behaviour mostly does)

The behaviour takes B 80% of the time (a stochastic draw, logged with its propensities), so behaviour cloning
picks B; CQL (at a low alpha), IQL and BCQ (with A supported) must pick A, and never an illegal action. FQE
must recover each fixed policy's value, and weighted importance sampling must equal the data's mean return when
the evaluated policy is the behaviour itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tamiyo_models.transitions.dataset import TransitionDataset

A, B, WAIT = 1, 2, 0  # indices in the 8 fine actions; the 5 others are never legal here
N_ACTIONS = 8


def tiny_mdp(episodes: int = 600, p_a: float = 0.2, noise: float = 0.3, seed: int = 0) -> TransitionDataset:
    rng = np.random.default_rng(seed)
    s0, s1, end = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    legal0 = np.zeros(N_ACTIONS, bool)
    legal0[[A, B]] = True
    legal1 = np.zeros(N_ACTIONS, bool)
    legal1[WAIT] = True
    mu0 = np.where(legal0, 0.0, 0.0)
    mu0[A], mu0[B] = p_a, 1 - p_a
    mu1 = np.zeros(N_ACTIONS)
    mu1[WAIT] = 1.0
    rows = {k: [] for k in ("obs", "act", "rew", "nxt", "term", "legal", "nlegal", "mu", "prop", "stoch", "run", "step")}

    def add(run, step, obs, act, rew, nxt, term, legal, nlegal, mu, stochastic):
        for key, value in zip(rows, (obs, act, rew, nxt, term, legal, nlegal, mu, mu[act], stochastic, run, step)):
            rows[key].append(value)

    for i in range(episodes):
        run = f"run-{i:04d}"
        if rng.random() < p_a:
            add(run, 1, s0, A, rng.normal(0, noise), s1, False, legal0, legal1, mu0, True)
            add(run, 2, s1, WAIT, 2 + rng.normal(0, noise), end, True, legal1, legal1, mu1, False)
        else:
            add(run, 1, s0, B, 1 + rng.normal(0, noise), end, True, legal0, legal1, mu0, True)
    n = len(rows["act"])
    return TransitionDataset(
        feature_names=("x0", "x1", "x2"), observations=np.array(rows["obs"], np.float32), actions=np.array(rows["act"]),
        rewards=np.array(rows["rew"], np.float32), next_observations=np.array(rows["nxt"], np.float32),
        terminated=np.array(rows["term"]), truncated=np.zeros(n, bool), legal=np.array(rows["legal"]),
        next_legal=np.array(rows["nlegal"]), behaviour_probabilities=np.array(rows["mu"]),
        propensity=np.array(rows["prop"], np.float64), stochastic=np.array(rows["stoch"]), forced=np.zeros(n, bool),
        run_ids=np.array(rows["run"]), steps=np.array(rows["step"]), family_ids=np.array(rows["run"]),
        behaviours=np.array(["mostly-B"] * n), regimes=np.array([""] * n),
    )  # fmt: skip


S0 = torch.tensor([[1.0, 0.0, 0.0]])
LEGAL0 = torch.zeros(1, N_ACTIONS, dtype=torch.bool)
LEGAL0[0, [A, B]] = True


def _greedy_at_s0(module) -> int:
    with torch.no_grad():
        return int(module.act(S0, LEGAL0, greedy=True)[0])


def test_behaviour_cloning_would_pick_the_wrong_action():
    data = tiny_mdp()
    first = data.steps == 1
    assert np.mean(data.actions[first] == B) > 0.7  # the logged majority at s0 is B, the worse action


def test_cql_at_low_alpha_finds_the_optimal_action_and_high_alpha_copies_the_behaviour():
    from tamiyo_models.offline_rl.cql import CQLConfig, train_cql

    data = tiny_mdp()
    quiet = lambda *_: None  # noqa: E731
    low = train_cql(data, CQLConfig(alpha=0.1, hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1), log=quiet)
    assert _greedy_at_s0(low.module) == A
    with torch.no_grad():
        q = low.module.q_values(S0, LEGAL0)[0]
    assert torch.isinf(q[~LEGAL0[0]]).all()  # illegal actions never enter a max or a choice
    assert 1.2 < float(q[A]) < 2.5  # near the true value 2, pushed down a little by the conservative term
    high = train_cql(data, CQLConfig(alpha=5.0, hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1), log=quiet)
    assert _greedy_at_s0(high.module) == B  # the reference's finding: a high alpha copies the behaviour


def test_iql_finds_the_optimal_action_through_advantage_weighted_regression():
    from tamiyo_models.offline_rl.iql import IQLConfig, train_iql

    data = tiny_mdp()
    result = train_iql(data, IQLConfig(hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1), log=lambda *_: None)
    assert _greedy_at_s0(result.module) == A
    with torch.no_grad():
        probs = result.module.probabilities(S0, LEGAL0)[0]
    assert float(probs[~LEGAL0[0]].sum()) == 0.0 and float(probs[A]) > 0.5


def test_bcq_with_the_action_supported_finds_it_and_without_support_refuses_it():
    from tamiyo_models.offline_rl.bcq import BCQConfig, train_bcq

    data = tiny_mdp()
    quiet = lambda *_: None  # noqa: E731
    supported = train_bcq(data, BCQConfig(threshold=0.1, hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1), log=quiet)
    assert _greedy_at_s0(supported.module) == A
    strict = train_bcq(data, BCQConfig(threshold=0.5, hidden=(32, 32), updates=3_000, reward_scale=1.0, checkpoints=1), log=quiet)
    assert _greedy_at_s0(strict.module) == B  # A (p = 0.2 vs 0.8) is outside the support at threshold 0.5


def _scores(values: list[float]):
    from tamiyo_models.agents.base import PolicyModule

    class Scores(PolicyModule):
        kind = "scores"

        def raw_logits(self, obs):
            return torch.tensor(values, dtype=torch.float32).expand(len(obs), -1)

    return Scores()


def test_an_ensemble_acts_on_its_members_mean_and_leaves_out_what_a_member_rules_out():
    from tamiyo_models.agents.networks import Ensemble

    inf = float("-inf")
    # Member 1 prefers A by a little, member 2 prefers B by a lot: the mean prefers B, which neither seed alone decides.
    two = Ensemble([_scores([0, 1.1, 1.0, 0, 0, 0, 0, 0]), _scores([0, 1.0, 2.0, 0, 0, 0, 0, 0])])
    assert _greedy_at_s0(two) == B
    with torch.no_grad():
        assert two.logits(S0, LEGAL0)[0, [A, B]].tolist() == pytest.approx([1.05, 1.5])
        assert torch.isinf(two.logits(S0, LEGAL0)[0, ~LEGAL0[0]]).all()
    # An action one member rules out (BCQ: outside its support) is out, though the other scores it highest...
    ruled = Ensemble([_scores([0, 5.0, 1.0, 0, 0, 0, 0, 0]), _scores([0, inf, 1.0, 0, 0, 0, 0, 0])])
    assert _greedy_at_s0(ruled) == B
    # ...unless no legal action is left for every member: then each scores the mean of the members that score it.
    apart = Ensemble([_scores([0, 3.0, inf, 0, 0, 0, 0, 0]), _scores([0, inf, 1.0, 0, 0, 0, 0, 0])])
    with torch.no_grad():
        assert apart.logits(S0, LEGAL0)[0, [A, B]].tolist() == [3.0, 1.0]
        assert torch.isfinite(apart.probabilities(S0, LEGAL0)).all()
    with pytest.raises(ValueError, match="one kind"):
        Ensemble([_scores([0] * 8), _fixed(A)])


def test_an_ensemble_of_bcq_learners_finds_the_optimal_action_and_survives_the_saved_format(tmp_path):
    from tamiyo_models.agents.networks import Ensemble
    from tamiyo_models.agents.saved import load_policy, save_policy
    from tamiyo_models.offline_rl.bcq import BCQConfig, train_bcq

    data = tiny_mdp()
    members = [train_bcq(data, BCQConfig(threshold=0.1, hidden=(32, 32), updates=2_000, reward_scale=1.0, checkpoints=1,
                                         seed=seed), log=lambda *_: None).module for seed in (0, 1, 2)]  # fmt: skip
    ensemble = Ensemble(members).eval()
    assert _greedy_at_s0(ensemble) == A
    path = save_policy(ensemble, data.feature_names, tmp_path / "e.pt", algorithm="bcq", phase="phase3",
                       actions=data.action_names)  # fmt: skip
    loaded, payload = load_policy(path)
    assert loaded.kind == "ensemble" and [m.kind for m in loaded.members] == ["bcq"] * 3
    with torch.no_grad():
        assert torch.equal(loaded.logits(S0, LEGAL0), ensemble.logits(S0, LEGAL0))


def _fixed(action: int):
    from tamiyo_models.agents.base import PolicyModule

    class Fixed(PolicyModule):
        def raw_logits(self, obs):
            scores = torch.full((len(obs), N_ACTIONS), -5.0)
            scores[:, action] = 5.0
            return scores

    return Fixed()


@pytest.mark.parametrize("action, value", [(A, 2.0), (B, 1.0)])
def test_fqe_recovers_the_value_of_a_fixed_policy(action, value):
    from tamiyo_models.ope.fqe import FQEConfig, fit_fqe

    result = fit_fqe(_fixed(action), tiny_mdp(), FQEConfig(hidden=(32, 32), reward_scale=1.0))
    assert result.value == pytest.approx(value, abs=0.15)


def chain_mdp(horizon: int = 24, episodes: int = 200, seed: int = 0) -> TransitionDataset:
    """`horizon` decisions, each A (reward 1) or B (reward 0.5) drawn at random, noise 0.2: always-A is worth
    `horizon`, always-B half that. A start's value needs `horizon` backups to reach it."""
    rng = np.random.default_rng(seed)
    legal = np.zeros(N_ACTIONS, bool)
    legal[[A, B]] = True
    mu = np.where(legal, 0.5, 0.0)
    obs = lambda t: np.array([t / horizon, 1.0 - t / horizon, float(t == horizon)], np.float32)  # noqa: E731
    rows = []
    for i in range(episodes):
        for t in range(horizon):
            act = A if rng.random() < 0.5 else B
            rows.append((obs(t), act, (1.0 if act == A else 0.5) + rng.normal(0, 0.2), obs(t + 1), t == horizon - 1, f"run-{i:04d}", t + 1))
    n = len(rows)
    column = lambda k: [r[k] for r in rows]  # noqa: E731
    return TransitionDataset(
        feature_names=("t", "left", "end"), observations=np.array(column(0)), actions=np.array(column(1)),
        rewards=np.array(column(2), np.float32), next_observations=np.array(column(3)), terminated=np.array(column(4)),
        truncated=np.zeros(n, bool), legal=np.tile(legal, (n, 1)), next_legal=np.tile(legal, (n, 1)),
        behaviour_probabilities=np.tile(mu, (n, 1)), propensity=np.full(n, 0.5), stochastic=np.ones(n, bool),
        forced=np.zeros(n, bool), run_ids=np.array(column(5)), steps=np.array(column(6)), family_ids=np.array(column(5)),
        behaviours=np.array(["coin"] * n), regimes=np.array([""] * n),
    )  # fmt: skip


def test_fqe_budget_carries_every_steps_reward_to_the_start():
    """FQE's default budget follows the data's longest episode (4 backups of it at tau 0.02), and with it the value
    of a 24-step chain reaches its start, for each of two policies and for their difference."""
    from tamiyo_models.ope.fqe import FQEConfig, fit_fqe

    data = chain_mdp()
    config = FQEConfig(hidden=(32, 32), reward_scale=0.1)
    assert config.budget(data) == 4 * 24 * 50 and FQEConfig(updates=7).budget(data) == 7
    always_a, always_b = fit_fqe(_fixed(A), data, config).value, fit_fqe(_fixed(B), data, config).value
    assert always_a == pytest.approx(24.0, abs=0.5) and always_b == pytest.approx(12.0, abs=0.5)
    assert always_a - always_b == pytest.approx(12.0, abs=0.5)


def test_weighted_importance_sampling_equals_the_on_policy_mean_when_pi_is_mu():
    from tamiyo_models.ope.importance import estimate_is

    data = tiny_mdp(episodes=400, seed=3)
    pi_taken = data.propensity.copy()  # pi = mu: every weight is 1
    (pdwis,) = estimate_is(data, pi_taken, resamples=200)
    returns = [data.rewards[s].sum() for s in data.episode_slices()]
    assert pdwis.identified and pdwis.value == pytest.approx(np.mean(returns), abs=1e-6)
    assert pdwis.low <= pdwis.value <= pdwis.high and pdwis.effective_sample_size == pytest.approx(len(returns))
    # always-A has value 2: the reweighted estimate gets there from data that mostly did B
    always_a = np.where(data.steps == 1, (data.actions == A).astype(float), 1.0)
    (estimate,) = estimate_is(data, always_a, resamples=200)
    assert estimate.value == pytest.approx(2.0, abs=0.2)


def test_importance_sampling_is_not_identified_on_deterministic_behaviour():
    from tamiyo_models.ope.importance import estimate_is

    data = tiny_mdp(episodes=50)
    data.stochastic[:] = False  # a one-hot mu: the heuristic, a fixed schedule, a greedy policy
    estimates = estimate_is(data, np.ones(len(data)), q_taken=np.zeros(len(data)), v=np.zeros(len(data)))
    assert [e.method for e in estimates] == ["PDWIS", "WDR"]
    assert all(not e.identified and "not identified" in str(e) for e in estimates)


def test_importance_sampling_is_not_identified_when_no_random_episode_followed_the_policy():
    """A policy that always takes A, on data where every episode took B: its reweighted return would be a sum
    truncated at the first step, so it is not a number but a reason."""
    from tamiyo_models.ope.importance import estimate_is

    data = tiny_mdp(episodes=60, p_a=0.2, seed=1)
    took_b = {str(r) for r, a, t in zip(data.run_ids, data.actions, data.steps) if t == 1 and a == B}
    keep = np.array([str(r) in took_b for r in data.run_ids])
    only_b = data.subset(keep)
    assert len(only_b) == len(took_b) > 0
    always_a = np.where(only_b.steps == 1, (only_b.actions == A).astype(float), 1.0)  # 0 on every row
    estimates = estimate_is(only_b, always_a, q_taken=np.zeros(len(only_b)), v=np.zeros(len(only_b)))
    assert all(not e.identified and e.effective_sample_size == 0.0 and "effective sample size 0" in str(e)
               for e in estimates)  # fmt: skip


def test_doubly_robust_with_an_exact_model_has_no_variance_left():
    """With the true Q and V, per-decision WDR returns the true value whatever the reweighting."""
    from tamiyo_models.ope.importance import estimate_is

    data = tiny_mdp(episodes=300, noise=0.0, seed=5)
    always_a = np.where(data.steps == 1, (data.actions == A).astype(float), 1.0)
    q_true = np.where(data.steps == 1, np.where(data.actions == A, 2.0, 1.0), 2.0)  # Q^pi(s, a_logged)
    v_true = np.where(data.steps == 1, 2.0, 2.0)  # V^pi: always-A is worth 2 at s0 and at s1
    pdwis, wdr = estimate_is(data, always_a, q_taken=q_true, v=v_true, resamples=200)
    assert wdr.value == pytest.approx(2.0, abs=1e-6) and wdr.high - wdr.low < 1e-6


def test_phase3_from_a_real_warehouse_to_a_registered_policy_that_drives_an_episode(tmp_path):
    """Exploration episodes with branches, ingested; IQL starting from a Phase 1 policy on the same features;
    selection by held-out FQE; the off-policy report; MLflow lineage; the policy acting in a live episode."""
    from tamiyo_models.agents import load_policy
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
    from tamiyo_models.episodes.generation import GenerationSpec, generate
    from tamiyo_models.offline_rl.iql import IQLConfig
    from tamiyo_models.offline_rl.workflow import OfflineRunConfig, train_offline
    from tamiyo_models.ope.fqe import FQEConfig
    from tamiyo_models.policies import ImitationConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy
    from tamiyo_models.warehouse import ingest_folder
    from tamiyo_models.world.datasets import DatasetConfig

    spec = GenerationSpec.from_dict({
        "name": "t", "base": {"max_epochs": 6, "dataset": {"name": "synthetic"}},
        "controllers": [{"kind": "epsilon-heuristic", "epsilon": 0.4, "weight": 1},
                        {"kind": "random", "random_weights": {"WAIT": 3, "GERMINATE": 1, "ADVANCE": 2, "CULL": 1}, "weight": 1}],
        "branching": {"horizon": 2, "max_forks": 1, "fork_rule": "every", "every": 3},
    })  # fmt: skip
    generate(spec.sample(10, 11), tmp_path / "raw", workers=1, branching=spec.branching)
    ingest_folder(tmp_path / "raw", tmp_path / "w.duckdb")
    tracker = Tracker(TrackingConfig(root=str(tmp_path / "mlflow")))
    phase1 = train_policy(tmp_path / "w.duckdb", PolicyRunConfig(
        labels="heuristic", controllers=(), imitation=ImitationConfig(feature_set="base+lifecycle+task", epochs=2, batch_size=32)),
        tmp_path / "p1", log=lambda *_: None)  # fmt: skip
    config = OfflineRunConfig(
        algorithm="iql", held_out=0.3, parent_policy=str(phase1.policy_path),
        iql=IQLConfig(hidden=(32,), updates=300, checkpoints=2), selection_fqe=FQEConfig(hidden=(32,), updates=100),
        report_fqe=FQEConfig(hidden=(32,), updates=200),
    )  # fmt: skip
    lines = []
    run = train_offline(tmp_path / "w.duckdb", config, tmp_path / "p3", tracker=tracker, log=lines.append)
    assert any("IQL actor initialised from" in line for line in lines)
    assert len(run.result.checkpoints) == 2 and all(e == e for _, e in run.result.checkpoints)  # held-out FQE scored both
    assert run.held_out_families >= 1 and run.train_families >= 1
    assert {"fqe", "pdwis", "wdr"} <= set(run.ope)  # random and epsilon steps were drawn: IS is identified here
    module, payload = load_policy(run.policy_path)
    assert payload["phase"] == "phase3" and payload["algorithm"] == "iql" and payload["parent"] == str(phase1.policy_path.resolve())
    assert payload["metadata"]["data_seeds"] and payload["metadata"]["held_out_runs"]
    version = tracker.resolve("tamiyo-phase3-offline@candidate-iql")
    assert str(version.version) == str(run.model_version)
    mlflow_run = tracker.client.get_run(version.run_id)
    assert mlflow_run.data.metrics["ope_fqe_value"] == pytest.approx(run.ope["fqe"]["value"])
    assert mlflow_run.inputs.dataset_inputs[0].dataset.digest == run.dataset_digest[:36]
    episode = run_episode(EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, seed=999,
                                        controller=ControllerConfig(kind="policy", policy=f"file:{run.policy_path}")), tmp_path / "live")  # fmt: skip
    assert episode.status == "complete", episode.error
    # An ensemble of 2, then an ensemble of 2 from it: each member of the second starts from one member of the first
    # (no ensemble nested in an ensemble), and the file acts in a live episode like any policy.
    quick = dataclasses.replace(config, ensemble=2, iql=dataclasses.replace(config.iql, updates=100))
    first = train_offline(tmp_path / "w.duckdb", quick, tmp_path / "e1", log=lines.append)
    second = train_offline(tmp_path / "w.duckdb", dataclasses.replace(quick, parent_policy=str(first.policy_path)),
                           tmp_path / "e2", log=lines.append)  # fmt: skip
    parent, _ = load_policy(first.policy_path)
    module, _ = load_policy(second.policy_path)
    assert module.kind == "ensemble" and [m.kind for m in module.members] == [m.kind for m in parent.members] != ["ensemble"] * 2
    assert sum("ensemble member" in line for line in lines) == 4 and not any("+nan" in line for line in lines)
    episode = run_episode(EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, seed=999,
                                        controller=ControllerConfig(kind="policy", policy=f"file:{second.policy_path}")), tmp_path / "live2")  # fmt: skip
    assert episode.status == "complete", episode.error
    # PPO cannot fine-tune an ensemble as one network: refused before any episode, pointing to a student.
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy

    with pytest.raises(ValueError, match="not one network to fine-tune"):
        train_online_policy(OnlineRunConfig(algorithm="ppo", initial_policy=str(second.policy_path),
                                            feature_set="base+lifecycle+task"), tmp_path / "ppo", log=lambda *_: None)  # fmt: skip
