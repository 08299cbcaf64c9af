"""One policy interface for every phase: masking, acting and log-probabilities; one saved format that rebuilds
any network with weights_only loading; files of the first format load and act as they always did; any
saved policy serves as a controller; phases are data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo_models.agents import ActorCritic, MLPActor, QNetwork, ValueNetwork, load_policy, save_policy
from tamiyo_models.agents.imitation_network import NetworkConfig, PolicyNetwork, categorical_columns
from tamiyo_models.world.actions import FINE_ACTIONS
from tamiyo_models.world.features import FEATURE_SETS

FEATURES = FEATURE_SETS["base+lifecycle"]


def _x(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, len(FEATURES), generator=torch.Generator().manual_seed(seed)).abs() * 3


def _networks():
    torch.manual_seed(0)
    cats = categorical_columns(FEATURES, NetworkConfig())
    imitation = PolicyNetwork(len(FEATURES), NetworkConfig(), cats).eval()
    return {
        "imitation": imitation,
        "q": QNetwork(len(FEATURES), (32, 16), categorical=cats),
        "actor": MLPActor(len(FEATURES), (16,)),
        "actor-critic": ActorCritic(imitation, ValueNetwork(len(FEATURES), (16,), cats)),
    }


@pytest.mark.parametrize("name", ["imitation", "q", "actor", "actor-critic"])
def test_every_network_round_trips_through_the_one_format(tmp_path, name):
    module = _networks()[name]
    module.eval()
    path = save_policy(module, FEATURES, tmp_path / f"{name}.pt", algorithm="test", phase="phase3", parent="parent.pt")
    loaded, payload = load_policy(path)  # weights_only=True inside
    assert type(loaded) is type(module) and payload["phase"] == "phase3" and payload["parent"] == "parent.pt"
    assert payload["feature_names"] == list(FEATURES) and payload["fine_actions"] == list(FINE_ACTIONS)
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded.raw_logits(x), module.raw_logits(x))
        if module.has_value:
            assert torch.equal(loaded.value(x), module.value(x))


def test_a_first_format_file_loads_and_acts_as_before(tmp_path):
    """What tamiyo-policy/1 files hold (Phase 1 and 2 before the RL phases), written here as they were."""
    model = _networks()["imitation"]
    legacy = {
        "format": "tamiyo-policy/1", "feature_schema_version": "tamiyo-features/3", "feature_names": list(FEATURES),
        "fine_actions": list(FINE_ACTIONS), "coarse_actions": ["WAIT", "GERMINATE", "ADVANCE", "CULL"],
        "blueprints": ["conv_light", "conv_heavy", "attention", "norm", "depthwise"],
        "network": model.config.to_dict(), "categorical": [list(c) for c in model.categorical],
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "metadata": {"phase": "phase1", "variant": ""},
    }  # fmt: skip
    torch.save(legacy, tmp_path / "old.pt")
    loaded, payload = load_policy(tmp_path / "old.pt")
    assert isinstance(loaded, PolicyNetwork) and payload["phase"] == "phase1" and payload["algorithm"] == "imitation"
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_masked_actions_never_get_probability_or_a_choice():
    q = _networks()["q"]
    x = _x(200, seed=3)
    mask = torch.rand(200, len(FINE_ACTIONS), generator=torch.Generator().manual_seed(1)) < 0.4
    mask[:, 0] = True  # WAIT is always legal
    probs = q.probabilities(x, mask)
    assert torch.all(probs[~mask] == 0) and torch.allclose(probs.sum(-1), torch.ones(200))
    for greedy in (True, False):
        actions, drawn_with = q.act(x, mask, greedy=greedy, generator=torch.Generator().manual_seed(2))
        assert mask[torch.arange(200), actions].all()
        expected = torch.ones(200) if greedy else probs[torch.arange(200), actions]
        assert torch.allclose(drawn_with, expected)
    assert torch.isinf(q.q_values(x, mask)[~mask]).all()
    logp = q.log_prob(x, mask, actions)
    assert torch.allclose(logp.exp(), probs[torch.arange(200), actions], atol=1e-6)
    assert torch.all(q.entropy(x, mask) >= 0)
    with pytest.raises(ValueError, match="no legal action"):
        q.logits(x[:1], torch.zeros(1, len(FINE_ACTIONS), dtype=torch.bool))


def test_any_saved_policy_drives_a_real_episode(tmp_path):
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.rawrun import read_raw_run

    path = save_policy(_networks()["q"], FEATURES, tmp_path / "q.pt", algorithm="cql", phase="phase3")
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, seed=1,
                           controller=ControllerConfig(kind="policy", policy=f"file:{path}"))  # fmt: skip
    result = run_episode(config, tmp_path)
    assert result.status == "complete", result.error
    run = read_raw_run(result.path)
    assert run.header["controller"]["algorithm"] == "cql" and run.header["controller"]["phase"] == "phase3"
    for step in run.steps:
        assert step["action"]["fine"] in step["action"]["legal"] and step["action"]["stochastic"] is False


def test_phases_are_a_registry():
    from tamiyo_models.agents import Phase, all_phases, phase, phase_of_model, register_phase

    assert [p.key for p in all_phases()][:3] == ["phase1", "phase2", "phase3"]
    assert phase_of_model("tamiyo-phase3-offline").key == "phase3" and phase("phase3").candidate_alias("cql") == "candidate-cql"
    with pytest.raises(ValueError, match="already registered"):
        register_phase(Phase("phase1", "another-name", "clash"))
    with pytest.raises(ValueError, match="unknown phase"):
        phase("phase9")
    assert np.array_equal(np.sort([p.key for p in all_phases()]), np.sort(list({p.key for p in all_phases()})))


def test_an_actor_critic_around_a_bcq_policy_keeps_its_support_among_legal_actions():
    """Phase 4 may start from a BCQ file: its support must be judged among the legal actions, or a state whose
    most plausible action overall is illegal has no finite logit left (NaN probabilities, a crashed rollout)."""
    from tamiyo_models.offline_rl.bcq import BCQPolicy

    torch.manual_seed(0)
    q, behaviour = QNetwork(len(FEATURES), (16,)), QNetwork(len(FEATURES), (16,))
    with torch.no_grad():  # the behaviour all but always took action 1, which the mask below forbids
        behaviour.net[-1].weight.zero_()
        behaviour.net[-1].bias.fill_(-10.0)
        behaviour.net[-1].bias[1] = 10.0
    agent = ActorCritic(BCQPolicy(q, behaviour, threshold=0.3), ValueNetwork(len(FEATURES), (16,)))
    x = _x(50, seed=4)
    mask = torch.ones(50, len(FINE_ACTIONS), dtype=torch.bool)
    mask[:, 1] = False
    probs = agent.probabilities(x, mask)
    assert torch.isfinite(probs).all() and torch.allclose(probs.sum(-1), torch.ones(50))
    assert torch.all(probs[~mask] == 0)
    actions, _ = agent.act(x, mask, generator=torch.Generator().manual_seed(0))
    assert mask[torch.arange(50), actions].all()
    assert torch.isfinite(agent.log_prob(x, mask, actions)).all()


def test_the_kl_penalty_stays_finite_for_an_actor_with_unsupported_legal_actions():
    """Phase 4's KL to the initial policy, for a BCQ actor: its legal but unsupported actions score -inf, and
    the penalty (and its gradient) must stay finite, or one update turns every weight into NaN."""
    import copy

    from tamiyo_models.offline_rl.bcq import BCQPolicy
    from tamiyo_models.online_rl.loop import kl_to

    torch.manual_seed(0)
    q, behaviour = QNetwork(len(FEATURES), (16,)), QNetwork(len(FEATURES), (16,))
    with torch.no_grad():  # only action 0 (WAIT) and 2 are supported anywhere
        behaviour.net[-1].weight.zero_()
        behaviour.net[-1].bias.fill_(-10.0)
        behaviour.net[-1].bias[0] = 10.0
        behaviour.net[-1].bias[2] = 10.0
    agent = ActorCritic(BCQPolicy(q, behaviour, threshold=0.3), ValueNetwork(len(FEATURES), (16,)))
    initial = copy.deepcopy(agent)
    x, mask = _x(40, seed=5), torch.ones(40, len(FINE_ACTIONS), dtype=torch.bool)
    with torch.no_grad():
        assert abs(float(kl_to(initial, agent, x, mask))) < 1e-6
    with torch.no_grad():
        q.net[-1].bias[2] += 1.0  # the actor moves away from its initial self
    kl = kl_to(initial, agent, x, mask)
    assert torch.isfinite(kl) and float(kl.detach()) > 0
    kl.backward()
    assert all(torch.isfinite(p.grad).all() for p in q.parameters() if p.grad is not None)
