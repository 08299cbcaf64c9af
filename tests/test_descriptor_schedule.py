"""The descriptor-keyed schedule learns which schedule wins from what is visible before an episode starts, and
is fitted on training configurations only (issue 34)."""

import dataclasses

import numpy as np
import pytest

from tamiyo_models.evaluation.descriptor_schedule import DescriptorScheduleConfig, fit_descriptor_schedule

SCHEDULES = ("fixed:conv_heavy@0", "fixed:conv_heavy@1", "never")
CONFIG = DescriptorScheduleConfig(descriptors=("task_host_width_first", "epochs_remaining"), max_depth=2, min_samples_leaf=2)


def _design(seed: int, n: int, start_seed: int):
    """A known rule: on narrow hosts grafting at epoch 0 wins, on wide hosts in long episodes epoch 1, on wide
    hosts in short episodes never growing; scores are that plus noise smaller than the margins."""
    rng = np.random.default_rng(seed)
    width = rng.choice([2.0, 8.0], n)
    length = rng.choice([10.0, 30.0], n)
    best = np.where(width < 4, 0, np.where(length > 20, 1, 2))
    scores = rng.normal(80.0, 0.1, (n, 3))
    scores[np.arange(n), best] += 1.0
    descriptors = [{"task_host_width_first": w, "epochs_remaining": e} for w, e in zip(width, length)]
    return descriptors, scores, best, [start_seed + 2 * i for i in range(n)]


def test_it_learns_the_rule_from_training_configurations_and_applies_it_to_held_out_ones():
    descriptors, scores, _, seeds = _design(0, 40, 1000)
    model = fit_descriptor_schedule(descriptors, scores, SCHEDULES, seeds, CONFIG)
    held_descriptors, _, held_best, _ = _design(1, 30, 5001)
    chosen = [model.choose(d) for d in held_descriptors]
    assert chosen == [SCHEDULES[b] for b in held_best]
    assert "task_host_width_first" in model.rules() and "schedule: fixed:conv_heavy@0" in model.rules()
    assert sum(model.training_winners.values()) == 40 and model.training_seeds == tuple(seeds)


def test_it_refuses_a_configuration_with_an_evaluation_seed():
    descriptors, scores, _, seeds = _design(0, 10, 1000)
    seeds[3] = 20261211  # odd: the registry's evaluation class
    with pytest.raises(ValueError, match="training configurations only.*20261211"):
        fit_descriptor_schedule(descriptors, scores, SCHEDULES, seeds, CONFIG)


def test_configurations_with_a_failed_schedule_are_left_out_of_the_fit():
    descriptors, scores, _, seeds = _design(0, 12, 1000)
    scores[0, 1] = np.nan
    model = fit_descriptor_schedule(descriptors, scores, SCHEDULES, seeds, CONFIG)
    assert len(model.training_seeds) == 11 and seeds[0] not in model.training_seeds


def _world(seed: int, n: int, start_seed: int, hidden: bool):
    """Two regimes; within each, the host width is visible and (when `hidden`) a per-configuration factor is not.
    The winning schedule follows the width, or the hidden factor; each data order adds noise well below the
    1 pp margin, so what wins on one order wins on the others."""
    rng = np.random.default_rng(seed)
    regimes = rng.choice(["fm-short", "fm-narrow"], n)
    width = rng.choice([2.0, 8.0], n)
    factor = rng.random(n) < 0.5 if hidden else width < 4
    best = np.where(factor, 0, 1)

    def order():
        s = rng.normal(80.0, 0.1, (n, 3))
        s[np.arange(n), best] += 1.0
        return s

    descriptors = [{"task_host_width_first": w, "epochs_remaining": 20.0} for w in width]
    return order(), (order() + order()) / 2, list(regimes), descriptors, [start_seed + 2 * i for i in range(n)]


def test_four_way_headroom_where_the_descriptors_tell_all_leaves_nothing_for_the_state():
    from tamiyo_models.evaluation.four_way import LEVELS, four_way_headroom

    tr, _, tr_regimes, tr_desc, tr_seeds = _world(0, 60, 1000, hidden=False)
    ho, ho_fresh, ho_regimes, ho_desc, _ = _world(1, 40, 9001, hidden=False)
    result = four_way_headroom(tr, tr_regimes, tr_desc, tr_seeds, ho, ho_fresh, ho_regimes, ho_desc, SCHEDULES, CONFIG)
    mean, low, high, pairs = result.state_dependent
    assert pairs == 40 and abs(mean) < 0.1 and low <= 0.0 <= high + 1e-9
    gain, low, _, _ = result.steps[f"{LEVELS[2]} - {LEVELS[1]}"]  # width, not the regime, decides: the tree gains
    assert gain > 0.3 and low > 0


def test_four_way_headroom_finds_what_only_the_run_could_reveal():
    from tamiyo_models.evaluation.four_way import four_way_headroom

    tr, _, tr_regimes, tr_desc, tr_seeds = _world(0, 60, 1000, hidden=True)
    ho, ho_fresh, ho_regimes, ho_desc, _ = _world(1, 40, 9001, hidden=True)
    result = four_way_headroom(tr, tr_regimes, tr_desc, tr_seeds, ho, ho_fresh, ho_regimes, ho_desc, SCHEDULES, CONFIG)
    mean, low, _, _ = result.state_dependent
    assert 0.3 < mean < 0.7 and low > 0  # the hidden factor picks the winner half the time: about 0.5 pp left


def test_the_oracle_may_pick_a_state_reader_that_no_schedule_level_can():
    from tamiyo_models.evaluation.four_way import LEVELS, four_way_headroom

    tr, _, tr_regimes, tr_desc, tr_seeds = _world(0, 60, 1000, hidden=True)
    ho, ho_fresh, ho_regimes, ho_desc, _ = _world(1, 40, 9001, hidden=True)
    # A reader that finds the hidden winner and then does 0.3 pp better still (a cull the schedules cannot make).
    reader, reader_fresh = ho.max(axis=1, keepdims=True) + 0.3, ho_fresh.max(axis=1, keepdims=True) + 0.3
    plain = four_way_headroom(tr, tr_regimes, tr_desc, tr_seeds, ho, ho_fresh, ho_regimes, ho_desc, SCHEDULES, CONFIG)
    wider = four_way_headroom(tr, tr_regimes, tr_desc, tr_seeds, np.hstack([ho, reader]), np.hstack([ho_fresh, reader_fresh]),
                              ho_regimes, ho_desc, SCHEDULES, CONFIG, oracle_extra=("reader",))  # fmt: skip
    assert (wider.choices[LEVELS[3]] == len(SCHEDULES)).all() and wider.candidates[-1] == "reader"
    for level in LEVELS[:3]:  # the levels that choose before the run never pick what reads it
        assert (wider.choices[level] == plain.choices[level]).all() and (wider.choices[level] < len(SCHEDULES)).all()
    assert wider.state_dependent[0] > plain.state_dependent[0] + 0.2
    with pytest.raises(ValueError, match="held-out tables of 4 and 4 columns for a grid of 3 and 0"):
        four_way_headroom(tr, tr_regimes, tr_desc, tr_seeds, np.hstack([ho, reader]), np.hstack([ho_fresh, reader_fresh]),
                          ho_regimes, ho_desc, SCHEDULES, CONFIG)  # fmt: skip


def test_an_oracle_asked_to_pick_readers_with_none_outside_the_grid_is_refused_before_any_episode(tmp_path):
    from tamiyo_models.evaluation.four_way import FourWayConfig, run_four_way

    config = FourWayConfig(spec="smoke", grid=("never", "heuristic"), readers=("heuristic",), oracle_readers=True,
                           training_configs_per_regime=2, heldout_configs_per_regime=2)  # fmt: skip
    with pytest.raises(ValueError, match="no state reader outside the grid.*readers heuristic"):
        run_four_way(config, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_run_four_way_on_real_episodes_keeps_training_and_held_out_seeds_apart(tmp_path):
    from tamiyo_models.evaluation.four_way import LEVELS, FourWayConfig, run_four_way

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "four-way-test"\n[base]\nmax_epochs = 4\n[base.dataset]\nname = "synthetic"\n'
                    '[vary]\n"host.widths" = [[2, 4, 8], [4, 8, 16]]\n[[controllers]]\nkind = "heuristic"\n')
    config = FourWayConfig(spec=str(spec), grid=("heuristic", "never", "fixed:conv_heavy@0"), training_configs_per_regime=4,
                           heldout_configs_per_regime=3, fresh_orders=1, workers=2, readers=("vigilant:conv_heavy@0",),
                           descriptor=DescriptorScheduleConfig(min_samples_leaf=1))  # fmt: skip
    planned = []
    result, text = run_four_way(config, tmp_path / "out", log=lambda _: None, on_plan=planned.append)
    assert planned == [3 * 4 + 4 * 3 * 2]  # the grid on training configurations; grid and reader held out, 2 orders
    assert set(result.steps) == {f"{b} - {a}" for a, b in zip(LEVELS, LEVELS[1:])}
    # The state reader is set beside every level on the same held-out pairs; it is no level's choice.
    (row,) = result.readers.values()
    assert all(row[f"vigilant:conv_heavy@0 - {level}"][3] == 3 for level in LEVELS)
    assert "vigilant:conv_heavy@0" not in result.grid and "| vigilant:conv_heavy@0 |" in text
    assert set(result.null_rms) == {"all"} and result.null_rms["all"] >= 0 and "Null control (heuristic" in text
    assert all(pairs == 3 for *_, pairs in result.steps.values())
    assert "state-dependent" in text and (tmp_path / "out" / "four-way.json").exists()
    # The same episodes read back, the oracle now also picking the reader: the schedule levels are unchanged.
    wider, text = run_four_way(dataclasses.replace(config, oracle_readers=True), tmp_path / "out", log=lambda _: None, execute=False)
    assert wider.candidates == (*config.grid, "vigilant:conv_heavy@0") and "the oracle picks among the grid and the state readers" in text
    assert all((wider.choices[level] == result.choices[level]).all() for level in LEVELS[:3])
    assert wider.state_dependent[3] == 3
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    seeds = {folder: {read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(tmp_path / "out" / folder)}
             for folder in ("training", "heldout")}
    assert seeds["training"] and all(s % 2 == 0 for s in seeds["training"])
    assert seeds["heldout"] and all(s % 2 == 1 for s in seeds["heldout"])
