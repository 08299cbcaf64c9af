import itertools

import pytest

from tamiyo_models.world.lifecycle import (
    BLEND_SCHEDULE,
    LEGAL_MOVES,
    GateConfig,
    IllegalTransition,
    Stage,
    blend_alpha,
    check_gate,
    check_move,
)

LEGAL = {
    (Stage.DORMANT, Stage.GERMINATED),
    (Stage.GERMINATED, Stage.TRAINING),
    (Stage.TRAINING, Stage.BLENDING),
    (Stage.BLENDING, Stage.SHADOWING),
    (Stage.SHADOWING, Stage.PROBATIONARY),
    (Stage.PROBATIONARY, Stage.FOSSILIZED),
    *((s, Stage.CULLED) for s in (Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY)),
    (Stage.CULLED, Stage.EMBARGOED),
    (Stage.EMBARGOED, Stage.RESETTING),
    (Stage.RESETTING, Stage.DORMANT),
}


def test_graph_is_exactly_the_reference_graph():
    assert {(a, b) for a, targets in LEGAL_MOVES.items() for b in targets} == LEGAL


@pytest.mark.parametrize("current,target", sorted(itertools.product(Stage, Stage)))
def test_every_move_is_legal_or_raises(current, target):
    if (current, target) in LEGAL:
        check_move(0, current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_move(2, current, target)
        assert f"{current.name} -> {target.name}" in str(info.value) and "slot 2" in str(info.value)


def test_fossilized_is_terminal():
    assert LEGAL_MOVES[Stage.FOSSILIZED] == frozenset()


def test_blend_schedule_is_the_reference_sigmoid():
    assert BLEND_SCHEDULE == (0.0, 0.18, 0.38, 0.62, 0.82, 1.0)
    assert [blend_alpha(k) for k in range(7)] == [0.18, 0.38, 0.62, 0.82, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "stage,kwargs,passed",
    [
        (Stage.TRAINING, dict(epochs_in_stage=1, alpha=0.0, improvement_since_germination=0.5), True),
        (Stage.TRAINING, dict(epochs_in_stage=9, alpha=0.0, improvement_since_germination=0.49), False),
        (Stage.BLENDING, dict(epochs_in_stage=3, alpha=0.62, improvement_since_germination=5), False),
        (Stage.BLENDING, dict(epochs_in_stage=2, alpha=1.0, improvement_since_germination=5), False),
        (Stage.BLENDING, dict(epochs_in_stage=3, alpha=0.95, improvement_since_germination=-5), True),
        (Stage.SHADOWING, dict(epochs_in_stage=0, alpha=1.0, improvement_since_germination=1), False),
        (Stage.SHADOWING, dict(epochs_in_stage=1, alpha=1.0, improvement_since_germination=1), True),
        (Stage.PROBATIONARY, dict(epochs_in_stage=3, alpha=1.0, improvement_since_germination=0.0), False),
        (Stage.PROBATIONARY, dict(epochs_in_stage=0, alpha=1.0, improvement_since_germination=0.01), True),
    ],
)
def test_quality_gates_at_their_thresholds(stage, kwargs, passed):
    assert check_gate(GateConfig(), stage, **kwargs).passed is passed
