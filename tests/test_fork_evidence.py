"""Pooled fork evidence (online_rl/fork_evidence.py): a region's label comes from every fork measured there, so
a real effect measured many times is learned, a lucky single fork is not, dozens of noise-only cells produce no
false label, and the label applies to the whole region and to nothing outside it. Then a real vine run with the
region rule on synthetic episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo_models.agents.base import categorical_columns
from tamiyo_models.agents.networks import MLPActor
from tamiyo_models.online_rl.fork_evidence import (
    EvidenceConfig,
    forks_needed,
    pooled_evidence,
    region_labels,
    region_of,
    region_winners,
)
from tamiyo_models.online_rl.vine import ForkState, VineConfig, improve_actor, improvement_labels
from tamiyo_models.world.actions import ADVANCE, CULL, WAIT, germinate
from tamiyo_models.world.features import FEATURE_SETS, TASK_FEATURES
from tamiyo_models.world.lifecycle import Stage

NAMES = FEATURE_SETS["base+lifecycle+task"]
GRAFT = germinate("attention").index
GERMINATE_OWN = germinate("conv_heavy").index  # a policy that grafted where the forks' policy waited
EPOCH0_LEGAL = [WAIT.index, *(germinate(b).index for b in ("conv_heavy", "conv_light", "attention", "norm", "depthwise"))]


def state(train_size: float, epoch: int, length: int = 30, stage: Stage = Stage.DORMANT, jitter: float = 0.0) -> list[float]:
    """A feature vector: the task (its log10 training-set size), the time, the seed's stage; the rest a little noise
    (telemetry differs between any two states)."""
    rng = np.random.default_rng(int(train_size * 100) * 1000 + epoch * 10 + int(jitter * 1e6) % 997)
    x = dict(zip(NAMES, (rng.normal(scale=0.1, size=len(NAMES))).tolist()))
    for name in NAMES:
        if name.startswith("task_"):
            x[name] = 1.0
    x.update(task_log10_train_size=train_size, epoch=float(epoch), epochs_remaining=float(length - epoch),
             seed_stage=float(stage))  # fmt: skip
    return [x[n] for n in NAMES]


def legal_mask(indices) -> list[bool]:
    return [i in set(indices) for i in range(8)]


def fork(run: str, train_size: float, gain: float, epoch: int = 0, k: int = 0) -> ForkState:
    """A fork at epoch `epoch` where the policy waited and the graft measured `gain` pp over waiting."""
    return ForkState(run, epoch + 1, state(train_size, epoch, jitter=k), legal_mask(EPOCH0_LEGAL), WAIT.index,
                     {WAIT.index: 80.0, GRAFT: 80.0 + gain})


def test_the_region_rule_learns_a_repeated_effect_and_not_a_lucky_fork():
    rng = np.random.default_rng(1)
    # Task A (3.48): the graft at epoch 0 is worth +1.0 pp, measured at 8 forks with 0.5 pp of noise each.
    forks = [fork(f"a{k}", 3.48, 1.0 + rng.normal(scale=0.5), k=k) for k in range(8)]
    # Task B (2.78): worth nothing; 8 forks of 0.7 pp noise, one of which won by +1.5 (a fork-rule label).
    noise = rng.normal(scale=0.7, size=8)
    noise -= noise.mean()
    noise[0] = 1.5
    forks += [fork(f"b{k}", 2.78, float(g), k=k) for k, g in enumerate(noise)]
    # 30 more tasks, each measured 3 times, all noise: cells enough for several raw p < 0.05 by chance.
    forks += [fork(f"n{t}-{k}", 1.0 + 0.05 * t, float(g), k=k) for t in range(30) for k, g in enumerate(rng.normal(scale=0.7, size=3))]
    assert any(f.run_id.startswith("b") for f in forks if improvement_labels([f], margin=0.25))  # the fork rule bites

    cells = pooled_evidence(forks, NAMES, EvidenceConfig())
    assert len(cells) == 32 and all(np.isfinite(c.p_value) for c in cells)  # every (task, graft) cell tested
    assert sum(c.p_value < 0.05 for c in cells) >= 2  # chance alone clears an uncorrected 5% somewhere
    winners = region_winners(cells)
    assert len(winners) == 1
    (region, cell), = winners.items()
    assert region.task[TASK_FEATURES.index("task_log10_train_size")] == 3.48
    assert cell.action == GRAFT and len(cell.gains) == 8 and cell.interval.low > 0.5 and cell.adjusted <= 0.05


def test_a_label_covers_its_whole_region_and_nothing_outside_it():
    forks = [fork(f"a{k}", 3.48, 1.0 + 0.1 * (k % 3), k=k) for k in range(6)]
    cells = pooled_evidence(forks, NAMES)
    legal = legal_mask(EPOCH0_LEGAL)
    visited = ([("a", state(3.48, 0, jitter=100 + k), legal, WAIT.index) for k in range(20)]  # the region: labelled
               + [("b", state(2.78, 0, jitter=k), legal, WAIT.index) for k in range(20)]  # another task
               + [("a", state(3.48, 1, jitter=k), legal, WAIT.index) for k in range(20)]  # a later epoch
               + [("a", state(3.48, 0, length=12, jitter=k), legal, WAIT.index) for k in range(20)]  # a shorter episode
               + [("a", state(3.48, 0, jitter=k), legal, GERMINATE_OWN) for k in range(20)]  # another own action
               + [("a", state(3.48, 0, jitter=k), legal_mask([WAIT.index]), WAIT.index) for k in range(20)])  # illegal there
    labels = region_labels(cells, visited, NAMES)
    assert len(labels) == 20 and all(action == GRAFT for *_, action in labels)
    assert {tuple(f) for f, *_ in labels} == {tuple(v[1]) for v in visited[:20]}


def test_a_real_but_small_gain_stays_below_the_margin_and_config_is_checked():
    forks = [fork(f"a{k}", 3.48, 0.1 + 0.01 * k, k=k) for k in range(10)]  # certain, but +0.1 pp
    (cell,) = pooled_evidence(forks, NAMES, EvidenceConfig(margin=0.25))
    assert cell.adjusted < 1e-6 and not cell.label
    assert pooled_evidence(forks, NAMES, EvidenceConfig(margin=0.05))[0].label
    # Fewer forks than min_forks: reported, not tested.
    (few,) = pooled_evidence(forks[:2], NAMES, EvidenceConfig(min_forks=3))
    assert few.interval.n == 2 and np.isnan(few.p_value) and not few.label
    # A region is the epoch bin, not the exact epoch: epochs 3 and 4 share [3, 5).
    bins = {region_of(state(3.48, e), NAMES, ADVANCE.index, EvidenceConfig()).epochs for e in (3, 4, 5, 12)}
    assert bins == {(3, 5), (5, 10), (10, None)}
    # A run without a task description (NaN task features) still pools with others like it.
    unknown = [v if not n.startswith("task_") else float("nan") for n, v in zip(NAMES, state(3.48, 0))]
    assert region_of(unknown, NAMES, WAIT.index, EvidenceConfig()) == region_of(list(unknown), NAMES, WAIT.index, EvidenceConfig())
    assert "train_size ?" in region_of(unknown, NAMES, WAIT.index, EvidenceConfig()).describe(TASK_FEATURES)
    assert forks_needed(0.57, 0.2) == 64 and forks_needed(0.57, 0.3) > 25
    for bad in ({"epoch_edges": (1, 2)}, {"min_forks": 1}, {"fdr": 0.0}, {"margin": -0.1}):
        with pytest.raises(ValueError, match="fork evidence"):
            EvidenceConfig(**bad)
    with pytest.raises(ValueError, match="label_rule"):
        VineConfig(label_rule="nearest")
    with pytest.raises(ValueError, match="epoch"):
        region_of([0.0], ["task_log10_train_size"], WAIT.index, EvidenceConfig())


def test_the_student_takes_a_region_label_in_its_task_and_keeps_its_own_in_the_next():
    """What the fork rule's student got wrong on the arena: a label learned in one task carried into another that
    differs only in its task features. With the label on every state of its region and the other task's states
    anchored at the policy's own action, the student separates them."""
    torch.manual_seed(0)
    actor = MLPActor(len(NAMES), (64, 64), categorical=categorical_columns(NAMES))
    legal = legal_mask(EPOCH0_LEGAL)
    mine = [("a", state(3.48, 0, jitter=k), legal, WAIT.index) for k in range(60)]
    other = [("b", state(2.78, 0, jitter=k), legal, WAIT.index) for k in range(60)]
    visited = mine + other
    obs, mask = torch.tensor([v[1] for v in visited]), torch.tensor([v[2] for v in visited])
    with torch.no_grad():
        own = actor.logits(obs, mask).argmax(-1)
    forks = [fork(f"a{k}", 3.48, 1.0 + 0.2 * (k % 2), k=k) for k in range(6)]
    labels = region_labels(pooled_evidence(forks, NAMES), visited, NAMES)
    assert len(labels) == 60
    student, on_labels, _ = improve_actor(actor, visited, labels, VineConfig(updates=800, learning_rate=3e-3), log=lambda *_: None)
    with torch.no_grad():
        new = student.logits(obs, mask).argmax(-1)
    assert on_labels > 0.95 and float((new[:60] == GRAFT).float().mean()) > 0.95
    assert float((new[60:] == own[60:]).float().mean()) > 0.95  # the other task keeps the policy's own action


def test_cull_and_advance_regions_are_told_apart_by_the_own_action():
    advance = ForkState("p", 4, state(3.48, 3, stage=Stage.BLENDING), legal_mask([WAIT.index, ADVANCE.index, CULL.index]),
                        ADVANCE.index, {ADVANCE.index: 80.0, WAIT.index: 80.0, CULL.index: 78.0})  # fmt: skip
    cells = pooled_evidence([advance], NAMES)
    assert {c.action for c in cells} == {WAIT.index, CULL.index}
    assert all(c.region.own == ADVANCE.index and c.region.stage == Stage.BLENDING for c in cells)
    assert "own ADVANCE" in cells[0].region.describe() and "epochs 3-4" in cells[0].region.describe()


def test_advantages_can_be_measured_against_a_fixed_reference_policy():
    """After a policy adopted a label its forks take the new action; against the start's action (every legal one
    is branched) they still add to the same region's evidence, for or against."""
    adopted = ForkState("p", 1, state(3.48, 0), legal_mask(EPOCH0_LEGAL), GRAFT, {GRAFT: 80.0, WAIT.index: 80.5,
                                                                                GERMINATE_OWN: 79.0})  # fmt: skip
    own = {c.action: c.gains for c in pooled_evidence([adopted], NAMES)}
    assert own == {WAIT.index: [0.5], GERMINATE_OWN: [-1.0]} and pooled_evidence([adopted], NAMES)[0].region.own == GRAFT
    cells = pooled_evidence([adopted], NAMES, reference=[WAIT.index])
    assert {c.action: c.gains for c in cells} == {GRAFT: [-0.5], GERMINATE_OWN: [-1.5]}
    assert all(c.region.own == WAIT.index for c in cells)
    assert pooled_evidence([adopted], NAMES, reference=[CULL.index]) == []  # the reference was not measured there
