"""Directed forks (online_rl/fork_plan.py): a night sends its fork parents where the region rule's evidence is
thinnest and undecided, earliest first, and reads that evidence only from the champion's own stored forks."""

import dataclasses

import pytest

from tamiyo_models.online_rl.fork_evidence import EvidenceConfig
from tamiyo_models.online_rl.fork_plan import (ForkPlanConfig, epoch_bin, plan_cells, plan_forks,
                                               stored_plan_forks)  # fmt: skip


def test_without_evidence_parents_fill_the_first_decision_then_the_next():
    """Depth first in time: min_forks parents on the first decision's cell, then the next, per regime and length."""
    cells: dict = {}
    parents = [("fm-short", 12)] * 7 + [("fm-narrow", 30)] * 2
    assert plan_forks(parents, cells) == [1, 1, 1, 2, 2, 2, 3, 1, 1]
    assert cells[("fm-short", 12, (0, 1))].planned == 3 and cells[("fm-narrow", 30, (0, 1))].planned == 2


def test_epoch_bins_are_the_region_rules():
    edges = EvidenceConfig().epoch_edges  # (0, 1, 2, 3, 5, 10)
    assert [epoch_bin(s, edges) for s in (1, 2, 3, 4, 5, 6, 11, 12)] == [
        (0, 1), (1, 2), (2, 3), (3, 5), (3, 5), (5, 10), (10, None), (10, None)]  # fmt: skip


def _rows(regime, length, step, gains_by_action, first=0):
    """Stored forks as stored_plan_forks returns them: one parent per fork, every action measured at each."""
    rows = []
    for action, gains in gains_by_action.items():
        rows += [(regime, length, f"run-{first + i}", step, action, g) for i, g in enumerate(gains)]
    return rows


def test_a_decided_cell_takes_no_more_forks_and_an_open_one_takes_what_detects_the_margin():
    rows = (_rows("a", 12, 1, {"GERMINATE_CONV_HEAVY": [1.0, 1.2, 0.9, 1.1], "WAIT": [-0.5, -0.7, -0.6, -0.4]})  # a winner
            + _rows("a", 12, 2, {"WAIT": [-1.0, -1.2, -0.9], "GERMINATE_NORM": [-2.0, -1.5, -1.8]}, first=10)  # nothing can win
            + _rows("a", 12, 3, {"WAIT": [0.6, -0.5, 0.4]}, first=20))  # undecided at a wide spread  # fmt: skip
    cells = plan_cells(rows)
    first, second, third = (cells[("a", 12, epoch_bin(s, EvidenceConfig().epoch_edges))] for s in (1, 2, 3))
    assert (first.forks, first.status, first.need) == (4, "decided", 0) and "GERMINATE_CONV_HEAVY" in first.why
    assert (second.status, second.need) == ("decided", 0) and "margin" in second.why
    assert third.status == "open" and 4 <= third.target <= ForkPlanConfig().max_per_cell
    assert plan_forks([("a", 12)] * 3, cells) == [3, 3, 3]  # past the decided cells, into the open one


def test_an_open_cell_is_capped_and_a_parent_with_nowhere_to_go_gets_none():
    config = ForkPlanConfig(min_step=1, max_step=1, max_per_cell=5)
    cells = plan_cells(_rows("a", 12, 1, {"WAIT": [0.9, -0.8, 0.7]}), config)
    assert cells[("a", 12, (0, 1))].target == 5 and "capped at 5" in cells[("a", 12, (0, 1))].why
    assert plan_forks([("a", 12)] * 4, cells, config) == [1, 1, None, None]


def test_a_bad_plan_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="min_step <= max_step"):
        ForkPlanConfig(min_step=4, max_step=2)
    with pytest.raises(ValueError, match="max_per_cell"):
        ForkPlanConfig(max_per_cell=2)


def test_stored_forks_count_for_the_champion_only_and_per_configuration_branching_forks_where_told(tmp_path):
    """Real episodes: generate() gives each configuration its own branching (one forked at step 1, one at step 2,
    one not at all); ingested, the plan reads the forks of the parents the champion played and none other, their
    gains charged like the fork outcomes the vine reads."""
    from tamiyo_models.controllers.config import reference_controller
    from tamiyo_models.episodes.branching import BranchConfig
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.episodes.generation import generate
    from tamiyo_models.online_rl.vine import fork_states
    from tamiyo_models.warehouse import ingest_folder
    from tamiyo_models.world.actions import Action
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.features import FEATURE_SETS

    base = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, rent=1.0)
    configs = [dataclasses.replace(base, seed=1, controller=reference_controller("never")),
               dataclasses.replace(base, seed=2, controller=reference_controller("fixed:conv_light@0")),
               dataclasses.replace(base, seed=3, controller=reference_controller("never"))]  # fmt: skip
    at = lambda step: BranchConfig(horizon=None, fork_rule="steps", steps=(step,), max_forks=1, min_step=1)  # noqa: E731
    raw = tmp_path / "raw"
    results = generate(configs, raw, workers=1, branching=[at(1), at(2), None])
    assert [r.status for r in results] == ["complete"] * 3
    assert results[0].branches >= 1 and results[1].branches >= 1 and results[2].branches == 0
    with pytest.raises(ValueError, match="2 settings for 3 configurations"):
        generate(configs, raw, workers=1, branching=[at(1), None])
    ingest_folder(raw, tmp_path / "w.duckdb")
    rows = stored_plan_forks(tmp_path / "w.duckdb", "never")
    assert {r[2] for r in rows} == {results[0].run_id} and {r[3] for r in rows} == {1}
    (fork,) = fork_states(raw, [results[0].run_id], FEATURE_SETS["base"]).forks
    got = {Action.from_fine(action).index: gain for *_, action, gain in rows}
    assert got == pytest.approx({a: v - fork.outcome[fork.taken] for a, v in fork.outcome.items() if a != fork.taken})
    cells = plan_cells(rows)
    assert cells[(None, 4, (0, 1))].forks == 1 and cells[(None, 4, (0, 1))].status == "thin"
    assert stored_plan_forks(tmp_path / "missing.duckdb", "never") == []



def test_a_cell_is_decided_only_by_the_region_rules_own_test():
    """Three forks of +0.3, +0.5, +2.0 pp: a bootstrap interval would clear 0, the region rule's one-sided t-test
    does not (p about 0.11), so the cell stays open and keeps taking parents until the test can decide."""
    cells = plan_cells(_rows("a", 12, 1, {"WAIT": [0.3, 0.5, 2.0]}))
    cell = cells[("a", 12, (0, 1))]
    assert cell.status == "open" and cell.need > 0
    assert plan_forks([("a", 12)], cells) == [1]


def test_a_deferred_fork_step_moves_to_the_next_choice(tmp_path):
    """A planned step where only WAIT is legal (an embargoed slot after a cull) forks at the next step with a
    choice; without defer that fork is lost."""
    from tamiyo_models.controllers.config import reference_controller
    from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.rawrun import read_raw_run

    # vigilant culls the dead seed at step 2; the slot is embargoed (only WAIT) from step 3 for a few epochs.
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=10, seed=7, seed_faults={"conv_heavy": 1.0},
                           controller=reference_controller("vigilant:conv_heavy@0"))  # fmt: skip
    plain = read_raw_run(run_with_branches(config, tmp_path / "plain", BranchConfig(horizon=1, fork_rule="steps", steps=(),
                                                                                    min_step=1)).parent.path)  # fmt: skip
    legal = {s["step"]: len(s["action"]["legal"]) for s in plain.steps}
    stuck = next(step for step in sorted(legal) if step > 2 and legal[step] == 1)
    later = next(step for step in sorted(legal) if step > stuck and legal[step] >= 2)
    at = dict(horizon=1, fork_rule="steps", steps=(stuck,), min_step=1, max_forks=1)
    assert run_with_branches(config, tmp_path / "lost", BranchConfig(**at)).fork_steps == []
    assert run_with_branches(config, tmp_path / "moved", BranchConfig(**at, defer=True)).fork_steps == [later]
    with pytest.raises(ValueError, match="defer.*fork_rule 'steps'"):
        BranchConfig(fork_rule="random", defer=True)
