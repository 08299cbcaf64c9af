"""What each lifecycle stage means for the forward pass and for learning, on real (tiny) networks."""

import pytest
import torch
from torch import nn

from tamiyo_models.episodes.episode import Episode, EpisodeConfig
from tamiyo_models.world.actions import ADVANCE, CULL, WAIT, germinate
from tamiyo_models.world.blueprints import BLUEPRINTS, build_blueprint, parameter_count
from tamiyo_models.world.datasets import DatasetConfig, load_task_data
from tamiyo_models.world.host import HostConfig, HostNetwork
from tamiyo_models.world.lifecycle import GateConfig, IllegalTransition, Stage


@pytest.mark.parametrize(
    "name,expected", [("conv_light", 36992), ("conv_heavy", 73984), ("attention", 2128), ("norm", 129), ("depthwise", 4800)]
)
def test_blueprint_parameter_counts_match_the_reference_at_64_channels(name, expected):
    assert parameter_count(name, 64) == expected


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_blueprints_keep_shape_and_start_as_identity(name):
    torch.manual_seed(0)
    seed = build_blueprint(name, 8).eval()
    h = torch.randn(4, 8, 5, 5)
    out = seed(h)
    assert out.shape == h.shape
    if name != "attention":  # squeeze-excitation starts as a gate around 0.5, not the identity
        torch.testing.assert_close(out, h)


def test_host_family_shapes_and_slot_validation():
    host = HostNetwork(HostConfig(widths=(32, 64, 128)), (3, 32, 32), 10)
    assert host(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert 90_000 < sum(p.numel() for p in host.parameters()) < 100_000  # reference: about 95K
    with pytest.raises(ValueError, match="seed slots"):
        HostConfig(widths=(4, 8), slots=(1,))


def _episode(**overrides) -> Episode:
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=20, seed=1, **overrides)
    episode = Episode(config, load_task_data(config.dataset), "run-test")
    episode.measure(initial=True)
    return episode


def test_training_seed_learns_in_isolation_and_host_keeps_training():
    episode = _episode()
    episode.apply(germinate("conv_light"))
    slot = episode.slots[0]
    assert slot.stage == Stage.TRAINING
    host_before = {n: p.detach().clone() for n, p in episode.model.named_parameters() if not n.startswith("seed_slots")}
    seed_before = [p.detach().clone() for p in slot.seed.parameters()]

    # Gradients of the seed's isolated loss alone never reach host parameters.
    episode.model.train()
    x, y = episode.data.train_x[:32], episode.data.train_y[:32]
    episode.model(x)
    buffers_before = {n: b.clone() for n, b in episode.model.named_buffers() if n.startswith("stages.2")}
    (seed_logits,) = episode.model.isolated_seed_logits()
    nn.functional.cross_entropy(seed_logits, y).backward()
    assert all(p.grad is None for n, p in episode.model.named_parameters() if not n.startswith("seed_slots"))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in slot.seed.parameters())
    # ...and the isolated path left the downstream BatchNorm statistics alone.
    for n, b in buffers_before.items():
        torch.testing.assert_close(dict(episode.model.named_buffers())[n], b)
    episode.model.zero_grad(set_to_none=True)

    # A whole epoch: both host and seed change, and the host's output ignores the seed (alpha 0).
    episode.train_epoch()
    assert any(not torch.equal(p, host_before[n]) for n, p in episode.model.named_parameters() if n in host_before)
    assert any(not torch.equal(p, b) for p, b in zip(slot.seed.parameters(), seed_before))
    episode.model.eval()
    with torch.no_grad():
        out = episode.model(x)
        with slot.forced_alpha(0.0):
            ablated = episode.model(x)
    torch.testing.assert_close(out, ablated)


def test_blending_mixes_with_the_schedule_and_fossilization_joins_the_host():
    episode = _episode(gates=GateConfig(blending_min_improvement=-100))
    episode.apply(germinate("conv_heavy"))
    slot = episode.slots[0]
    episode.train_epoch(); episode.advance_clocks(); episode.measure()  # noqa: E702
    outcome = episode.apply(ADVANCE)
    assert outcome["applied"] and slot.stage == Stage.BLENDING and slot.alpha == pytest.approx(0.18)
    h = torch.randn(2, slot.channels, 2, 2)
    slot.eval()
    with torch.no_grad():
        torch.testing.assert_close(slot(h), 0.18 * slot.seed(h) + 0.82 * h)
    alphas = []
    for _ in range(5):
        alphas.append(slot.alpha)
        episode.train_epoch(); episode.advance_clocks(); episode.measure()  # noqa: E702
    assert alphas == [0.18, 0.38, 0.62, 0.82, 1.0]
    assert "contribution" in episode.contributions[slot.index]
    for stage in (Stage.SHADOWING, Stage.PROBATIONARY):
        assert episode.apply(ADVANCE)["applied"] and slot.stage == stage
        episode.train_epoch(); episode.advance_clocks(); episode.measure()  # noqa: E702
    outcome = episode.apply(ADVANCE)
    if episode.seed_improvement(slot) > 0:
        assert outcome["applied"] and slot.stage == Stage.FOSSILIZED
        seed_params = {id(p) for p in slot.seed.parameters()}
        assert seed_params <= {id(p) for g in episode.host_optimizer.param_groups for p in g["params"]}
        assert slot.index not in episode.seed_optimizers
        with pytest.raises(IllegalTransition):
            slot.cull(epoch=episode.epoch)
    else:  # the fossilize gate refused: the seed stays on probation, recorded as a refused gate
        assert not outcome["applied"] and outcome["gate"]["passed"] is False


def test_cull_then_embargo_then_resetting_then_dormant():
    episode = _episode(embargo_epochs=2)
    episode.apply(germinate("depthwise"))
    slot = episode.slots[0]
    outcome = episode.apply(CULL)
    assert [e["to_stage"] for e in outcome["events"]] == ["CULLED", "EMBARGOED"]
    assert slot.seed is None and not episode.seed_optimizers and episode.seeds_culled == 1
    stages = []
    for _ in range(4):
        assert not any(episode.legal_mask()[germinate(b).index] for b in BLUEPRINTS) or slot.stage == Stage.DORMANT
        episode.train_epoch()
        episode.advance_clocks()
        episode.measure()
        stages.append(slot.stage.name)
    assert stages == ["EMBARGOED", "RESETTING", "DORMANT", "DORMANT"]
    assert episode.legal_mask()[germinate("norm").index]


def test_legal_mask_follows_the_lifecycle():
    episode = _episode()
    legal = episode.legal_mask()
    assert legal[WAIT.index] and not legal[ADVANCE.index] and not legal[CULL.index]
    assert all(legal[germinate(b).index] for b in BLUEPRINTS)
    episode.apply(germinate("norm"))
    legal = episode.legal_mask()
    assert legal[ADVANCE.index] and legal[CULL.index] and not any(legal[germinate(b).index] for b in BLUEPRINTS)


def test_refused_gate_is_a_wasted_turn_not_an_error():
    episode = _episode()
    episode.apply(germinate("attention"))
    outcome = episode.apply(ADVANCE)  # no epoch trained: the seed cannot have improved by 0.5 pp
    assert outcome["applied"] is False and outcome["gate"]["from_stage"] == "TRAINING"
    assert episode.slots[0].stage == Stage.TRAINING and outcome["events"] == []
