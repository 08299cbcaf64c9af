"""Branching: snapshots replay exactly, and every action at a fork gets its own measured run."""

import pytest

from tamiyo_models.controllers import ControllerConfig
from tamiyo_models.episodes.branching import BranchConfig, restore, run_with_branches, take_snapshot
from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeRun, run_episode
from tamiyo_models.world.actions import FINE_ACTIONS, Action
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run


def _comparable(step):
    return {k: v for k, v in step.items() if k != "timing"}


@pytest.fixture
def config():
    # epsilon-heuristic: the controller's RNG stream is part of what a snapshot must carry.
    return EpisodeConfig(
        dataset=DatasetConfig(name="synthetic"), max_epochs=10, seed=5,
        controller=ControllerConfig(kind="epsilon-heuristic", epsilon=0.5),
    )  # fmt: skip


def test_replaying_the_parents_action_from_a_snapshot_is_bit_exact(tmp_path, config):
    parent = EpisodeRun(config, tmp_path / "parent")
    for _ in range(4):
        parent.step()
    snapshot = take_snapshot(parent)
    parent_steps = [parent.step() for _ in range(4)]

    replay = restore(snapshot, tmp_path / "replay", "replay", {})
    assert [_comparable(replay.step()) for _ in range(4)] == [_comparable(s) for s in parent_steps]

    forced = restore(snapshot, tmp_path / "forced", "forced", {})
    first = forced.step(forced_action=Action.from_fine(parent_steps[0]["action"]["fine"]))
    assert first["action"]["forced"] is True and first["action"]["propensity"] is None
    assert first["observation"] == parent_steps[0]["observation"] and first["outcome"] == parent_steps[0]["outcome"]
    assert [_comparable(forced.step()) for _ in range(3)] == [_comparable(s) for s in parent_steps[1:]]


def test_a_branched_parent_is_the_same_as_an_unbranched_run(tmp_path, config):
    plain = read_raw_run(run_episode(config, tmp_path / "plain").path)
    result = run_with_branches(config, tmp_path / "branched", BranchConfig(fork_rule="steps", steps=(3, 7), horizon=2))
    branched = read_raw_run(result.parent.path)
    assert [_comparable(s) for s in branched.steps] == [_comparable(s) for s in plain.steps]
    assert result.fork_steps == [3, 7]


def test_every_other_legal_action_at_a_fork_gets_a_linked_branch_of_horizon_steps(tmp_path, config):
    result = run_with_branches(config, tmp_path, BranchConfig(fork_rule="steps", steps=(4,), horizon=3))
    parent = read_raw_run(result.parent.path)
    legal_at_fork, taken = parent.steps[3]["action"]["legal"], parent.steps[3]["action"]["fine"]
    # The parent's own action is covered by the parent's own next steps; every other legal action is branched.
    expected = sorted(a.lower() for a in legal_at_fork if a != taken)
    assert sorted(b.run_id.rsplit("-", 1)[1] for b in result.branches) == expected
    assert len(list_raw_runs(tmp_path)) == 1 + len(expected)
    for branch in result.branches:
        run = read_raw_run(branch.path)
        link = run.header["branch"]
        assert link["parent_run_id"] == parent.run_id and link["fork_step"] == 4 and link["horizon"] == 3
        assert [s["step"] for s in run.steps] == [4, 5, 6] and run.footer["status"] == "truncated"  # stopped at its horizon
        assert run.steps[0]["action"]["fine"] == link["forced_action"]
        # Every branch starts from the parent's state at the fork.
        assert run.steps[0]["observation"] == parent.steps[3]["observation"]
    assert len({read_raw_run(b.path).steps[-1]["outcome"]["val_accuracy_after"] for b in result.branches}) >= 1


def test_decision_point_forks_respect_the_limit(tmp_path):
    config = EpisodeConfig(max_epochs=20, seed=2)  # digits: plateaus and a seed to judge
    result = run_with_branches(config, tmp_path, BranchConfig(horizon=2, max_forks=2, coarse_only=True))
    assert 1 <= len(result.fork_steps) <= 2
    for branch in result.branches:
        assert read_raw_run(branch.path).header["branch"]["forced_action"] in FINE_ACTIONS
    with pytest.raises(ValueError, match="unknown fork rule"):
        BranchConfig(fork_rule="always")


def test_random_fork_steps_are_a_fixed_draw_per_run_spread_over_the_episode(tmp_path, config):
    from tamiyo_models.episodes.branching import random_fork_steps

    rule = BranchConfig(fork_rule="random", max_forks=3, min_step=2, horizon=None)
    drawn = {random_fork_steps(rule, f"run-{i}", 10) for i in range(40)}
    assert all(len(steps) == 3 and len(set(steps)) == 3 and min(steps) >= 2 and max(steps) <= 10 for steps in drawn)
    assert len(drawn) > 10  # not the same steps for every episode
    assert set().union(*drawn) == set(range(2, 11))  # every step gets its turn
    assert random_fork_steps(rule, "run-7", 10) == random_fork_steps(rule, "run-7", 10)
    result = run_with_branches(config, tmp_path, rule)
    expected = random_fork_steps(rule, result.parent.run_id, config.max_epochs)
    parent = read_raw_run(result.parent.path)
    choice = [s["step"] for s in parent.steps if len(s["action"]["legal"]) >= 2]
    # Each drawn step forks at the first state with a choice at or after it (and after the previous fork).
    want, last = [], 0
    for step in expected:
        later = [s for s in choice if s >= max(step, last + 1)]
        if later:
            want.append(later[0])
            last = later[0]
    assert result.fork_steps == want and want
    for branch in result.branches:  # horizon None: every branch runs to the end of the episode
        assert read_raw_run(branch.path).steps[-1]["step"] == config.max_epochs


def test_a_fork_window_keeps_every_fork_at_or_before_max_step(tmp_path, config):
    from tamiyo_models.episodes.branching import random_fork_steps, should_fork

    rule = BranchConfig(fork_rule="random", max_forks=2, min_step=2, max_step=5, horizon=None)
    drawn = {random_fork_steps(rule, f"run-{i}", 10) for i in range(40)}
    assert set().union(*drawn) == {2, 3, 4, 5}  # the window, all of it, nothing past it
    # A draw deferred past the window (no choice at or before step 5) is dropped, not moved later.
    result = run_with_branches(config, tmp_path, rule)
    assert result.fork_steps and all(2 <= s <= 5 for s in result.fork_steps)
    assert all(read_raw_run(b.path).header["branch"]["fork_step"] <= 5 for b in result.branches)
    every = BranchConfig(fork_rule="every", every=1, max_forks=10, min_step=2, max_step=4)
    legal = (True, True) + (False,) * (len(FINE_ACTIONS) - 2)
    assert [s for s in range(1, 11) if should_fork(every, {}, legal, s, 0, None)] == [2, 3, 4]
    with pytest.raises(ValueError, match="max_step"):
        BranchConfig(min_step=4, max_step=3)


def test_a_fork_that_beat_the_parent_is_replayed_on_new_data_orders_paired_by_order(tmp_path, config):
    # confirm_margin -100: every fork counts as having beaten the parent, so each is replayed.
    rule = BranchConfig(fork_rule="steps", steps=(4,), horizon=None, confirm_orders=2, confirm_margin=-100.0)
    result = run_with_branches(config, tmp_path, rule)
    parent = read_raw_run(result.parent.path)
    taken = parent.steps[3]["action"]["fine"]
    first = {b.run_id: read_raw_run(b.path) for b in result.branches if "-o" not in b.run_id[len(parent.run_id):]}
    finals = {Action.from_fine(r.header["branch"]["forced_action"]).index: r.footer["final_val_accuracy"] for r in first.values()}
    best = Action.from_index(max(sorted(finals), key=finals.__getitem__)).fine  # of tied ones, the first by index
    replays = [read_raw_run(b.path) for b in result.branches if b.run_id.startswith(f"{parent.run_id}-o")]
    assert result.confirmed_steps == [4]
    # The best alternative and the parent's own action, on each of the 2 new orders: 4 runs to the episode's end.
    assert sorted((r.header["branch"]["data_order"], r.header["branch"]["forced_action"]) for r in replays) == \
        sorted((k, a) for k in (1, 2) for a in (best, taken))  # fmt: skip
    for run in replays:
        assert run.footer["status"] == "complete" and run.steps[0]["step"] == 4 and run.steps[-1]["step"] == config.max_epochs
        assert run.steps[0]["observation"] == parent.steps[3]["observation"]  # the same state at the fork
    # Paired: both actions of one order get the same order; the two orders differ.
    seeds = {k: {r.header["branch"]["data_order_seed"] for r in replays if r.header["branch"]["data_order"] == k} for k in (1, 2)}
    assert all(len(s) == 1 for s in seeds.values()) and seeds[1] != seeds[2]
    # A new order really changes the trajectory: the parent's own action replayed there trains on other batches.
    own = next(r for r in replays if r.header["branch"]["forced_action"] == taken and r.header["branch"]["data_order"] == 1)
    assert own.steps[0]["outcome"] != parent.steps[3]["outcome"]
    # Reproducible: the same fork and order give the same replay.
    again = run_with_branches(config, tmp_path / "again", rule)
    twin = read_raw_run(next(b.path for b in again.branches if b.run_id == own.header["run_id"]))
    assert [_comparable(s) for s in twin.steps] == [_comparable(s) for s in own.steps]


def test_no_replay_where_no_alternative_beat_the_parent_by_the_margin(tmp_path, config):
    rule = BranchConfig(fork_rule="steps", steps=(4,), horizon=None, confirm_orders=2, confirm_margin=100.0)
    result = run_with_branches(config, tmp_path, rule)
    assert result.confirmed_steps == [] and not any(f"{result.parent.run_id}-o" in b.run_id for b in result.branches)
    with pytest.raises(ValueError, match="horizon None"):
        BranchConfig(horizon=3, confirm_orders=1)
