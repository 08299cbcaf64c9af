"""Online RL on the factored action: REINFORCE, A2C and PPO learn a tiny two-slot problem whose best action
depends on the state and lies in slot 1 in one of them; the Phase 4 workflow trains PPO on real two-slot
TamiyoEnv episodes, saves a 15-action policy that acts on a two-slot host, and live evaluation reports its
action distribution over the two-slot space; an initial policy of another space and vine on two slots are
refused, naming the sizes."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from tamiyo_models.agents import ActorCritic, MLPActor, ValueNetwork
from tamiyo_models.world.actions import action_names, germinate

SPACE = action_names(2)
ADVANCE_1 = SPACE.index("ADVANCE_SLOT1")
GRAFT_0 = germinate("norm").index
GRAFT_1 = germinate("norm", slot=1).index
quiet = lambda *_: None  # noqa: E731


class TwoSlotBandit(gym.Env):
    """One step over the 15 actions. State 0: slot 1 holds a seed worth advancing (ADVANCE_SLOT1 pays 1.0,
    a graft into free slot 0 0.4, WAIT 0.1). State 1: both slots free, and grafting `norm` into slot 0 pays 1.0,
    into slot 1 0.3. Every other action is illegal, as a host's mask would make it."""

    PAY = {0: {ADVANCE_1: 1.0, GRAFT_0: 0.4, 0: 0.1}, 1: {GRAFT_0: 1.0, GRAFT_1: 0.3, 0: 0.1}}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(len(SPACE))

    def _mask(self):
        mask = np.zeros(len(SPACE), bool)
        mask[list(self.PAY[self.state])] = True
        return mask

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = int(self.np_random.integers(2))
        return np.eye(2, dtype=np.float32)[self.state], {"action_mask": self._mask()}

    def step(self, action):
        assert self._mask()[action], f"illegal action {SPACE[int(action)]} reached the environment"
        reward = self.PAY[self.state][int(action)] + float(self.np_random.normal(0, 0.1))
        return np.zeros(2, np.float32), reward, True, False, {"action_mask": self._mask()}


@pytest.mark.parametrize("name", ["reinforce", "a2c", "ppo"])
def test_each_algorithm_learns_the_best_action_of_each_slot(name):
    from tamiyo_models.online_rl.a2c import A2CConfig, train_a2c
    from tamiyo_models.online_rl.ppo import PPOConfig, train_ppo
    from tamiyo_models.online_rl.reinforce import ReinforceConfig, train_reinforce

    train, config_cls = {"reinforce": (train_reinforce, ReinforceConfig), "a2c": (train_a2c, A2CConfig),
                         "ppo": (train_ppo, PPOConfig)}[name]  # fmt: skip
    torch.manual_seed(0)
    agent = ActorCritic(MLPActor(2, (32,), len(SPACE), layer_norm=False), ValueNetwork(2, (32,), layer_norm=False))
    envs = gym.vector.SyncVectorEnv([TwoSlotBandit, TwoSlotBandit])
    config = config_cls(episodes=600, episodes_per_iteration=8, reward_scale=1.0, learning_rate=3e-3, critic_warmup_epochs=20)
    result = train(envs, agent, config, log=quiet)
    envs.close()
    env = TwoSlotBandit()
    for state, best in ((0, ADVANCE_1), (1, GRAFT_0)):
        env.reset(seed=0)
        env.state = state
        obs, mask = torch.eye(2)[state][None], torch.as_tensor(env._mask())[None]
        with torch.no_grad():
            assert int(agent.act(obs, mask, greedy=True)[0]) == best, (name, state)
            probs = agent.probabilities(obs, mask)[0]
        assert float(probs[~mask[0]].sum()) == 0.0
    assert result.history[-1]["mean_return"] > 0.8


def test_phase4_trains_a_two_slot_policy_that_acts_on_two_slot_hosts_and_is_evaluated_there(tmp_path):
    """PPO on real two-slot episodes (2 worker processes): the saved policy scores the 15 actions, its raw runs
    are over them, a live evaluation on two-slot hosts reports its action distribution over them."""
    from tamiyo_models.agents import load_policy, save_policy
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.evaluation.live import evaluate_live
    from tamiyo_models.online_rl.ppo import PPOConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.host import HostConfig
    from tamiyo_models.world.rawrun import read_raw_run
    from tamiyo_models.world.telemetry import TelemetryConfig

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "p4-two"\n[base]\nmax_epochs = 4\ntelemetry = { enabled = false }\n[base.dataset]\nname = "synthetic"\n'
                    '[base.host]\nwidths = [2, 4, 8]\nslots = [0, 1]\n')  # fmt: skip
    config = OnlineRunConfig(algorithm="ppo", spec=str(spec), workers=2, seed_slots=2, feature_set="base+lifecycle+task+slots",
                             hidden=(16,), record_dir=str(tmp_path / "raw"), ppo=PPOConfig(episodes=4, episodes_per_iteration=4))  # fmt: skip
    run = train_online_policy(config, tmp_path / "out", log=quiet)
    module, payload = load_policy(run.policy_path)
    assert payload["fine_actions"] == list(SPACE) and module.actor.n_actions == len(SPACE)
    raws = [read_raw_run(p) for p in sorted((tmp_path / "raw").glob("*.jsonl"))]
    assert len(raws) == 4 and all(r.header["action_space"] == list(SPACE) for r in raws)
    assert {"germinations_per_episode", "culls_per_episode"} <= set(run.history[-1])

    host = HostConfig(widths=(2, 4, 8), slots=(0, 1))
    configs = [EpisodeConfig(dataset=DatasetConfig(name="synthetic"), host=host, max_epochs=4, seed=seed,
                             telemetry=TelemetryConfig(enabled=False)) for seed in (1001, 1003)]  # fmt: skip
    evaluation = evaluate_live(run.policy_path, configs, tmp_path / "live", resamples=200)
    for controller, shares in evaluation.action_distribution.items():
        assert list(shares) == list(SPACE), controller
        assert sum(shares.values()) == pytest.approx(1.0)

    # Refused before any episode: an 8-action initial policy on two-slot hosts, and vine there.
    features = payload["feature_names"]
    single = save_policy(MLPActor(len(features), (16,)), features, tmp_path / "single.pt", algorithm="test", phase="phase1")
    with pytest.raises(ValueError, match="scores 8 actions.*15"):
        train_online_policy(dataclasses.replace(config, initial_policy=str(single)), tmp_path / "o2", log=quiet)
    with pytest.raises(ValueError, match="vine: single-slot hosts only"):
        train_online_policy(dataclasses.replace(config, algorithm="vine"), tmp_path / "o3", log=quiet)


def test_the_distilled_student_scores_the_datas_action_space():
    from tamiyo_models.online_rl.distil import DistilConfig, HeuristicTeacher, distil_policy
    from tamiyo_models.world.features import FEATURE_SETS

    features = FEATURE_SETS["base+lifecycle+task+slots"]
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 3, size=(64, len(features))).astype(np.float32)  # small counts: valid stages, epochs
    legal = np.zeros((64, len(SPACE)), bool)
    legal[:, [0, GRAFT_0, GRAFT_1]] = True
    result = distil_policy(HeuristicTeacher(features), obs, legal, features, DistilConfig(hidden=(8,), updates=5, held_out=0.0),
                           log=quiet)  # fmt: skip
    assert result.actor.n_actions == len(SPACE)
    with pytest.raises(ValueError, match="not the size of an action space"):
        distil_policy(HeuristicTeacher(features), obs, legal[:, :10], features, DistilConfig(updates=1), log=quiet)
    plain = FEATURE_SETS["base+lifecycle"]
    with pytest.raises(ValueError, match="slot1_active"):
        distil_policy(HeuristicTeacher(plain), obs[:, : len(plain)], legal, plain, DistilConfig(updates=1), log=quiet)
