"""Online RL on tiny environments with known optimal policies: REINFORCE, A2C and PPO each find the best legal
arm of a masked bandit and the delayed reward at the end of a 3-step chain; masking holds; a resumed run
continues exactly as an uninterrupted one; synchronous and asynchronous vector environments give the same
rollouts; the reward-hacking watch fires on a policy trained against a hackable shaping."""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from tamiyo_models.agents import ActorCritic, MLPActor, ValueNetwork

N_ACTIONS = 8


class MaskedBandit(gym.Env):
    """One step. Legal arms 0, 2 and 5 pay 0.2, 1.0 and 0.5 (plus noise); arm 7 would pay 10 but is never legal."""

    PAY = {0: 0.2, 2: 1.0, 5: 0.5, 7: 10.0}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.mask = np.zeros(N_ACTIONS, bool)
        self.mask[[0, 2, 5]] = True

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([1.0, 0.0], np.float32), {"action_mask": self.mask.copy()}

    def step(self, action):
        assert self.mask[action], f"illegal action {action} reached the environment"
        reward = self.PAY[int(action)] + float(self.np_random.normal(0, 0.1))
        return np.array([0.0, 1.0], np.float32), reward, True, False, {"action_mask": self.mask.copy()}


class Chain(gym.Env):
    """Three steps: STOP (0) ends with 0.3 at once; GO (1) pays nothing until the third GO, which pays 1.0."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)

    def _obs(self):
        o = np.zeros(4, np.float32)
        o[self.position] = 1.0
        return o

    def _mask(self):
        m = np.zeros(N_ACTIONS, bool)
        m[[0, 1]] = True
        return m

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return self._obs(), {"action_mask": self._mask()}

    def step(self, action):
        assert self._mask()[action]
        if action == 0:
            self.position = 3
            return self._obs(), 0.3, True, False, {"action_mask": self._mask()}
        self.position += 1
        done = self.position == 3
        return self._obs(), 1.0 if done else 0.0, done, False, {"action_mask": self._mask()}


def _agent(n_obs: int, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(MLPActor(n_obs, (32,), layer_norm=False), ValueNetwork(n_obs, (32,), layer_norm=False))


def _greedy(agent, obs, mask) -> int:
    with torch.no_grad():
        return int(agent.act(torch.as_tensor(obs)[None], torch.as_tensor(mask)[None], greedy=True)[0])


def _train(name, env_cls, episodes, **overrides):
    from tamiyo_models.online_rl.a2c import A2CConfig, train_a2c
    from tamiyo_models.online_rl.ppo import PPOConfig, train_ppo
    from tamiyo_models.online_rl.reinforce import ReinforceConfig, train_reinforce

    train, config_cls = {"reinforce": (train_reinforce, ReinforceConfig), "a2c": (train_a2c, A2CConfig),
                         "ppo": (train_ppo, PPOConfig)}[name]  # fmt: skip
    config = config_cls(episodes=episodes, episodes_per_iteration=8, reward_scale=1.0, learning_rate=3e-3,
                        critic_warmup_epochs=20, **overrides)  # fmt: skip
    envs = gym.vector.SyncVectorEnv([env_cls, env_cls])
    agent = _agent(env_cls().observation_space.shape[0])
    result = train(envs, agent, config, log=lambda *_: None)
    envs.close()
    return agent, result


@pytest.mark.parametrize("name", ["reinforce", "a2c", "ppo"])
def test_each_algorithm_finds_the_best_legal_arm(name):
    agent, result = _train(name, MaskedBandit, 400)
    env = MaskedBandit()
    obs, info = env.reset(seed=0)
    assert _greedy(agent, obs, info["action_mask"]) == 2
    with torch.no_grad():
        probs = agent.probabilities(torch.as_tensor(obs)[None], torch.as_tensor(info["action_mask"])[None])[0]
    assert float(probs[~torch.as_tensor(info["action_mask"])].sum()) == 0.0  # masking: no mass on arm 7
    assert result.history[-1]["mean_return"] > 0.8


@pytest.mark.parametrize("name", ["reinforce", "a2c", "ppo"])
def test_each_algorithm_waits_for_the_delayed_reward(name):
    agent, _ = _train(name, Chain, 600)
    env = Chain()
    obs, info = env.reset(seed=0)
    for _ in range(3):  # GO, GO, GO: 1.0, against 0.3 for stopping at once
        assert _greedy(agent, obs, info["action_mask"]) == 1
        obs, _, done, _, info = env.step(1)
    assert done


def test_a_resumed_run_continues_exactly(tmp_path):
    from tamiyo_models.online_rl.ppo import PPOConfig, train_ppo

    def run(budget, folder, agent):
        envs = gym.vector.SyncVectorEnv([MaskedBandit, MaskedBandit])
        config = PPOConfig(episodes=budget, episodes_per_iteration=4, reward_scale=1.0, learning_rate=3e-3, critic_warmup_epochs=5,
                           kl_coef=0.5)  # fmt: skip
        result = train_ppo(envs, agent, config, checkpoint_dir=folder, log=lambda *_: None)
        envs.close()
        return result

    straight = _agent(2)
    run(16, tmp_path / "straight", straight)
    interrupted = _agent(2)
    run(8, tmp_path / "resumed", interrupted)  # "crash" after two iterations
    fresh = _agent(2, seed=123)  # a new process: different weights until the checkpoint is read
    result = run(16, tmp_path / "resumed", fresh)
    assert result.resumed_from == 2 and result.episodes_used == 16
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_sync_and_async_vector_envs_give_the_same_rollouts():
    from tamiyo_models.online_rl.rollout import collect_episodes

    agent = _agent(4)
    traces = []
    for vector in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
        envs = vector([Chain, Chain])
        episodes = collect_episodes(envs, agent, 6, seed=5, generator=torch.Generator().manual_seed(5))
        envs.close()
        traces.append([(e.actions, e.rewards, e.terminated) for e in episodes])
    assert traces[0] == traces[1]


def test_the_hacking_watch_fires_on_a_policy_trained_against_a_germination_bonus(tmp_path):
    """A tiny real TamiyoEnv with +10 per GERMINATE: PPO learns to germinate and cull over and over (more than
    its untrained start already does), and the watch names the churn; the heuristic's own rates pass it."""
    from tamiyo_models.env import TamiyoEnv
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.online_rl.hacking import ActionBonus, HackingWatch
    from tamiyo_models.online_rl.ppo import PPOConfig, train_ppo
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.telemetry import TelemetryConfig

    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=20, embargo_epochs=1,
                           telemetry=TelemetryConfig(enabled=False))  # fmt: skip

    def make():
        return ActionBonus(TamiyoEnv(config, feature_set="base+lifecycle"), "GERMINATE", 10.0)

    envs = gym.vector.SyncVectorEnv([make, make])
    agent = _agent(envs.single_observation_space.shape[0])
    watch = HackingWatch()
    result = train_ppo(envs, agent, PPOConfig(episodes=32, episodes_per_iteration=4, reward_scale=1.0, learning_rate=3e-3,
                                              critic_warmup_epochs=10, entropy_coef=0.0), watch=watch, log=lambda *_: None)  # fmt: skip
    envs.close()
    first, last = result.history[0], result.history[-1]
    assert last["germinations_per_episode"] > first["germinations_per_episode"]
    assert last["germinations_per_episode"] > 2.5 and any("churn" in a for a in result.alerts), (last, result.alerts)
    heuristic_like = {"germinations_per_episode": 1.0, "culls_per_episode": 0.1, "ended_in_training_share": 0.2,
                      "unfinished_blend_share": 0.1, "positive_culls_per_episode": 0.0, "entropy": 0.5}  # fmt: skip
    assert watch.check(heuristic_like) == []


def test_phase4_workflow_records_runs_that_ingest_and_registers_the_policy(tmp_path):
    """Real TamiyoEnv episodes on 2 worker processes, starting from a saved actor; every rollout lands as a raw run
    whose propensities are the sampled probabilities; the policy is registered as candidate-ppo."""
    from tamiyo_models.agents import MLPActor, load_policy, save_policy
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig
    from tamiyo_models.online_rl.ppo import PPOConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy
    from tamiyo_models.warehouse import ingest_folder, query
    from tamiyo_models.world.features import FEATURE_SETS

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "p4"\n[base]\nmax_epochs = 4\ntelemetry = { enabled = false }\n[base.dataset]\nname = "synthetic"\n')
    features = FEATURE_SETS["base+lifecycle"]
    initial = save_policy(MLPActor(len(features), (16,)), features, tmp_path / "initial.pt", algorithm="test", phase="phase1")
    config = OnlineRunConfig(algorithm="ppo", spec=str(spec), workers=2, initial_policy=str(initial), hidden=(16,),
                             record_dir=str(tmp_path / "raw"), ppo=PPOConfig(episodes=8, episodes_per_iteration=4))  # fmt: skip
    tracker = Tracker(TrackingConfig(root=str(tmp_path / "mlflow")))
    run = train_online_policy(config, tmp_path / "out", tracker=tracker, log=lambda *_: None)
    assert [row["episodes_used"] for row in run.history] == [4, 8] and run.history[0].get("warmup") == 1.0
    module, payload = load_policy(run.policy_path)
    assert payload["phase"] == "phase4" and payload["parent"] == str(initial) and module.has_value
    assert str(tracker.resolve("tamiyo-phase4-online@candidate-ppo").version) == str(run.model_version)
    # A second training with the same learner seed draws the same configurations: its episodes must land under
    # their own run ids (they once collided with the first training's and were quarantined as conflicts).
    again = train_online_policy(dataclasses.replace(config, initial_policy=None), tmp_path / "out2", log=lambda *_: None)
    assert again.history[-1]["episodes_used"] == 8
    summary = ingest_folder(tmp_path / "raw", tmp_path / "w.duckdb")
    assert summary.runs_loaded == 16 and summary.records_quarantined == 0, summary.line()
    steps = query(tmp_path / "w.duckdb", "SELECT s.stochastic, s.propensity, r.controller_kind, r.controller_label "
                  "FROM steps s JOIN runs r USING (run_id)")  # fmt: skip
    labels = set(steps["controller_label"])
    assert set(steps["controller_kind"]) == {"agent"} and len(labels) == 2 and all(x.startswith("phase4-ppo-") for x in labels)
    assert steps["propensity"].min() > 0 and steps.filter(steps["stochastic"]).height > 0


def test_ppo_splits_each_epoch_into_exactly_the_configured_minibatches():
    """10 samples in 4 minibatches are 3+3+2+2, not 2+2+2+2+2 (a remainder once made an extra, noisy update whose
    entropy was the one the hacking watch saw); the entropy reported is the mean over the minibatches."""
    from tamiyo_models.online_rl.loop import masked_entropy
    from tamiyo_models.online_rl.ppo import PPOConfig, update
    from tamiyo_models.online_rl.rollout import Batch

    agent = _agent(4)
    g = torch.Generator().manual_seed(0)
    obs, masks = torch.randn(10, 4, generator=g), torch.ones(10, 8, dtype=torch.bool)
    masks[:5, 1:] = False  # half the states have one legal action: their entropy is 0
    actions = torch.zeros(10, dtype=torch.long)
    with torch.no_grad():
        log_probs = agent.log_prob(obs, masks, actions)
        entropy = float(masked_entropy(agent, obs, masks))
    batch = Batch(obs=obs, masks=masks, actions=actions, log_probs=log_probs, returns=torch.ones(10),
                  advantages=torch.randn(10, generator=g), values=torch.zeros(10), episodes=[])  # fmt: skip
    config = PPOConfig(epochs=2, minibatches=4, target_kl=None, learning_rate=0.0)  # lr 0: the policy stays put
    optimiser = torch.optim.Adam(agent.parameters(), lr=0.0)
    initial = copy.deepcopy(agent)
    parts = update(agent, batch, optimiser, initial, config, kl_coef=0.0)
    assert parts["minibatch_updates"] == 8
    assert parts["entropy"] == pytest.approx(entropy, abs=0.05)  # minibatch means of unequal sizes, averaged


def test_a_new_critic_depends_on_the_learner_seed_not_on_what_ran_before_in_the_process(tmp_path):
    from tamiyo_models.agents import MLPActor, save_policy
    from tamiyo_models.online_rl.ppo import PPOConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, build_agent
    from tamiyo_models.world.features import FEATURE_SETS

    features = FEATURE_SETS["base+lifecycle"]
    initial = save_policy(MLPActor(len(features), (16,)), features, tmp_path / "initial.pt", algorithm="test", phase="phase1")
    config = OnlineRunConfig(initial_policy=str(initial), hidden=(16,), ppo=PPOConfig(seed=3))
    first, _, _ = build_agent(config)
    torch.randn(1000)  # anything else drawing from torch's global stream in between
    second, _, _ = build_agent(config)
    other, _, _ = build_agent(dataclasses.replace(config, ppo=PPOConfig(seed=4)))
    same = all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    differs = any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))
    assert same and differs
