"""Policy distillation (online_rl/distil.py): the student learns a near-deterministic teacher's greedy choice on
states it never trained on, keeps the smoothing's probability on the other legal actions, and never gives an
illegal action any probability; a student saved to a policy file starts an online learner like any actor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tamiyo_models.agents.base import PolicyModule
from tamiyo_models.online_rl.distil import DistilConfig, distil_policy, smoothed_targets

N_ACTIONS = 8
FEATURES = ("a", "b", "c", "d")


class ArgmaxTeacher(PolicyModule):
    """Scores action 1, 2, 6 or 7 by the first four features (an unsupported action, BCQ-like, gets -inf):
    the teacher takes the legal one of largest feature; WAIT (0) is always legal and scored lowest."""

    kind = "test-argmax-teacher"
    ACTIONS = (1, 2, 6, 7)

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(obs), N_ACTIONS), float("-inf"))
        logits[:, 0] = -5.0
        logits[:, list(self.ACTIONS)] = obs[:, :4]
        return logits

    def spec(self) -> dict:
        return {}


def states(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    legal = np.zeros((n, N_ACTIONS), bool)
    legal[:, 0] = True
    legal[:, [1, 2, 6, 7]] = rng.random((n, 4)) < 0.7
    legal[:, 3] = rng.random(n) < 0.5  # legal, never the teacher's choice: the smoothing alone gives it mass
    return obs, legal


def test_smoothed_targets_put_the_rest_on_the_other_legal_actions():
    legal = torch.tensor([[1, 1, 0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    targets = smoothed_targets(torch.tensor([1, 0]), legal, 0.1)
    assert torch.allclose(targets[0], torch.tensor([0.05, 0.9, 0, 0.05, 0, 0, 0, 0]))
    assert torch.allclose(targets[1], torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]))  # one legal action: all of it


def test_student_learns_the_teachers_choice_and_keeps_the_smoothing():
    obs, legal = states(4000, seed=0)
    groups = np.arange(4000) // 10  # runs of 10 states: the held-out share is whole runs
    config = DistilConfig(smoothing=0.1, hidden=(64, 64), updates=3000, learning_rate=3e-3, held_out=0.2)
    result = distil_policy(ArgmaxTeacher(), obs, legal, FEATURES, config, groups=groups, log=lambda *_: None)
    assert result.agreement_held_out > 0.9, (result.agreement_held_out, result.agreement_train)  # chance: about 1 in 3
    assert result.agreement_train > 0.9

    fresh_obs, fresh_legal = states(500, seed=1)
    x, m = torch.as_tensor(fresh_obs), torch.as_tensor(fresh_legal)
    with torch.no_grad():
        probs = result.actor.probabilities(x, m)
    assert float(probs[~m].abs().max()) == 0.0  # an illegal action never has probability
    # Action 3 is never the teacher's choice: the student gives it about the smoothing's share.
    others = (m.sum(dim=1) - 1).clamp(min=1)
    share = probs[:, 3][m[:, 3]] * others[m[:, 3]]
    assert 0.05 < float(share.mean()) < 0.2, float(share.mean())
    assert 0.1 < result.entropy < 0.8


def test_without_smoothing_the_student_is_near_deterministic():
    obs, legal = states(2000, seed=2)
    config = DistilConfig(smoothing=0.0, hidden=(64, 64), updates=1500, learning_rate=3e-3)
    result = distil_policy(ArgmaxTeacher(), obs, legal, FEATURES, config, log=lambda *_: None)
    assert result.entropy < 0.1


def test_bad_input_is_refused():
    obs, legal = states(100, seed=3)
    with pytest.raises(ValueError, match="do not match"):
        distil_policy(ArgmaxTeacher(), obs[:, :3], legal, FEATURES, log=lambda *_: None)
    with pytest.raises(ValueError, match="smoothing"):
        distil_policy(ArgmaxTeacher(), obs, legal, FEATURES, DistilConfig(smoothing=1.0), log=lambda *_: None)


def test_a_saved_student_starts_an_online_learner(tmp_path):
    from tamiyo_models.agents.networks import ActorCritic
    from tamiyo_models.agents.saved import save_policy
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, build_agent

    obs, legal = states(500, seed=4)
    result = distil_policy(ArgmaxTeacher(), obs, legal, FEATURES, DistilConfig(hidden=(32,), updates=50), log=lambda *_: None)
    path = save_policy(result.actor, FEATURES, tmp_path / "student.pt", algorithm="distilled-test", phase="phase3")
    agent, features, parent = build_agent(OnlineRunConfig(initial_policy=str(path), record_dir=None))
    assert isinstance(agent, ActorCritic) and features == FEATURES and parent == str(path)
    x, m = torch.as_tensor(obs), torch.as_tensor(legal)
    with torch.no_grad():
        assert torch.equal(agent.logits(x, m), result.actor.logits(x, m))  # the actor is the student, unchanged
        assert agent.value(x).shape == (500,)  # with a critic beside it


def test_an_online_run_starts_from_the_distilled_student_of_a_bcq_policy(tmp_path):
    """The workflow's `distil` option on a real warehouse: a BCQ teacher (near-deterministic, unsupported actions
    at probability 0) becomes a student actor that acts like it and can take every legal action; a second start
    reuses the student, other settings make a new one."""
    from policy_fixtures import build_warehouse

    from tamiyo_models.agents.learning import fit_encoders
    from tamiyo_models.agents.networks import MLPActor, QNetwork
    from tamiyo_models.agents.saved import save_policy
    from tamiyo_models.offline_rl.bcq import BCQPolicy
    from tamiyo_models.online_rl.distil import DistilConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, build_agent
    from tamiyo_models.transitions.dataset import load_transitions
    from tamiyo_models.world.features import FEATURE_SETS

    warehouse = build_warehouse(tmp_path / "data")
    features = FEATURE_SETS["base+lifecycle"]
    data = load_transitions(warehouse, "base+lifecycle")
    torch.manual_seed(0)
    teacher = BCQPolicy(QNetwork(len(features), (16,)), QNetwork(len(features), (16,)), threshold=0.99)  # one supported action per state
    fit_encoders(data.observations, teacher.q, teacher.behaviour)
    teacher_path = save_policy(teacher, features, tmp_path / "bcq.pt", algorithm="bcq", phase="phase3")
    messages: list[str] = []
    config = OnlineRunConfig(initial_policy=str(teacher_path), distil=DistilConfig(smoothing=0.1, hidden=(32, 32), updates=600),
                             distil_warehouse=str(warehouse), record_dir=None)  # fmt: skip
    agent, _, parent = build_agent(config, out_dir=tmp_path / "out", log=messages.append)
    assert isinstance(agent.actor, MLPActor) and parent == str(teacher_path)  # the lineage names the teacher
    student_file = tmp_path / "out" / "initial-distilled.pt"
    x, m = torch.as_tensor(data.observations), torch.as_tensor(data.legal)
    with torch.no_grad():
        agree = float((agent.logits(x, m).argmax(-1) == teacher.logits(x, m).argmax(-1)).float().mean())
        assert agree > 0.9, agree
        assert float(agent.entropy(x, m).mean()) > float(teacher.entropy(x, m).mean())
        several = m.sum(dim=1) > 1  # where the teacher has one supported action, the student still spreads mass
        assert bool((agent.probabilities(x, m)[several] > 0).sum(dim=1).gt(1).all())

    stamp = student_file.stat().st_mtime_ns
    build_agent(config, out_dir=tmp_path / "out", log=messages.append)
    assert student_file.stat().st_mtime_ns == stamp and any("reusing" in line for line in messages)
    build_agent(dataclasses.replace(config, distil=DistilConfig(smoothing=0.2, hidden=(32, 32), updates=600)),
                out_dir=tmp_path / "out", log=messages.append)  # fmt: skip
    assert student_file.stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="distil_warehouse"):
        build_agent(dataclasses.replace(config, distil_warehouse=None), out_dir=tmp_path / "other")


def test_a_schedule_teacher_acts_as_the_fixed_schedule_on_every_state_of_its_episodes(tmp_path):
    """ScheduleTeacher (the fixed schedule written over the observation features) takes the logged action of real
    fixed-schedule episodes at every step; after a cull it waits, as the schedule (which grafts once) would."""
    from test_arena import _config

    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.episode import run_episode
    from tamiyo_models.online_rl.distil import ScheduleTeacher
    from tamiyo_models.world.actions import FINE_ACTIONS
    from tamiyo_models.world.features import FEATURE_SETS, observation_features
    from tamiyo_models.world.rawrun import read_raw_run

    features = FEATURE_SETS["base+lifecycle"]
    for name in ("fixed:conv_heavy@1", "fixed:norm@3"):
        run = run_episode(_config(max_epochs=10, controller=reference_controller(name)), tmp_path)
        steps = read_raw_run(run.path).steps
        x = torch.tensor([[observation_features(s["observation"])[f] for f in features] for s in steps])
        legal = torch.tensor([[a in s["action"]["legal"] for a in FINE_ACTIONS] for s in steps])
        chosen = ScheduleTeacher(name, features).logits(x, legal).argmax(-1)
        assert [FINE_ACTIONS[i] for i in chosen] == [s["action"]["fine"] for s in steps], name
        assert any(s["action"]["fine"].startswith("GERMINATE") for s in steps)  # the graft is among them

    teacher = ScheduleTeacher("fixed:conv_heavy@1", features)
    graft, wait = FINE_ACTIONS.index("GERMINATE_conv_heavy"), FINE_ACTIONS.index("WAIT")
    free = torch.zeros(3, len(features))
    free[:, features.index("epoch")] = torch.tensor([0.0, 4.0, 4.0])
    free[2, features.index("seeds_culled")] = 1.0  # the slot is free again after a cull
    every = torch.ones(3, len(FINE_ACTIONS), dtype=torch.bool)
    assert teacher.logits(free, every).argmax(-1).tolist() == [FINE_ACTIONS.index("ADVANCE"), graft, FINE_ACTIONS.index("ADVANCE")]
    no_advance = every.clone()
    no_advance[:, FINE_ACTIONS.index("ADVANCE")] = False
    assert teacher.logits(free, no_advance).argmax(-1).tolist() == [wait, graft, wait]  # before the epoch; after a cull
    with pytest.raises(ValueError, match="not a fixed schedule"):
        ScheduleTeacher("heuristic", features)
    with pytest.raises(ValueError, match="seeds_culled"):
        ScheduleTeacher("fixed:conv_heavy@1", ("epoch", "seeds_fossilized"))


def test_an_online_run_starts_from_the_distilled_student_of_a_fixed_schedule(tmp_path):
    """`initial_policy = fixed:<blueprint>@<epoch>` with `distil`: the learner starts from a student of the
    schedule, distilled on a real warehouse's states (the lineage names the schedule); without `distil` a schedule
    is refused, since it has no network to start from."""
    from policy_fixtures import build_warehouse

    from tamiyo_models.agents.saved import load_policy
    from tamiyo_models.online_rl.distil import ScheduleTeacher
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, build_agent
    from tamiyo_models.transitions.dataset import load_transitions
    from tamiyo_models.world.features import FEATURE_SETS

    warehouse = build_warehouse(tmp_path / "data")
    config = OnlineRunConfig(initial_policy="fixed:conv_heavy@1", feature_set="base+lifecycle", record_dir=None,
                             distil=DistilConfig(smoothing=0.05, hidden=(32, 32), updates=1500), distil_warehouse=str(warehouse))  # fmt: skip
    agent, features, parent = build_agent(config, out_dir=tmp_path / "out", log=lambda *_: None)
    assert parent == "fixed:conv_heavy@1" and features == tuple(FEATURE_SETS["base+lifecycle"])
    meta = load_policy(tmp_path / "out" / "initial-distilled.pt")[1]["metadata"]
    assert meta["teacher_schedule"] == "fixed:conv_heavy@1" and meta["agreement_train"] > 0.97, meta
    data = load_transitions(warehouse, "base+lifecycle")
    x, m = torch.as_tensor(data.observations), torch.as_tensor(data.legal)
    with torch.no_grad():
        teacher = ScheduleTeacher("fixed:conv_heavy@1", features).logits(x, m).argmax(-1)
        assert float((agent.logits(x, m).argmax(-1) == teacher).float().mean()) > 0.97
        assert float(agent.entropy(x, m).mean()) > 0.05  # stochastic: every legal action keeps some mass
    with pytest.raises(ValueError, match="fixed schedule, not an actor"):
        build_agent(dataclasses.replace(config, distil=None), out_dir=tmp_path / "other")
