"""The factored action (issue 34): operation x slot x blueprint over a host with several seed slots, its
flat encoding, masks that forbid exactly the illegal (slot, blueprint) pairs, the heuristic acting per slot,
exact branching and replay of a two-slot episode, and its raw run through ingestion and TamiyoEnv."""

from __future__ import annotations

import dataclasses
import itertools

import duckdb
import numpy as np
import pytest

from tamiyo_models.controllers import ControllerConfig
from tamiyo_models.controllers.config import reference_controller
from tamiyo_models.controllers.reference import EAGER_HEURISTIC
from tamiyo_models.env import RecordRawRun, TamiyoEnv
from tamiyo_models.episodes.branching import BranchConfig, restore, run_with_branches, take_snapshot
from tamiyo_models.episodes.episode import Episode, EpisodeConfig, EpisodeRun, run_episode
from tamiyo_models.warehouse import ingest_folder
from tamiyo_models.world.actions import (ALL_ACTIONS, FINE_ACTIONS, MAX_SEED_SLOTS, Action, action_names, germinate,
                                         slots_of_space)  # fmt: skip
from tamiyo_models.world.blueprint_names import BLUEPRINTS
from tamiyo_models.world.datasets import DatasetConfig, load_task_data
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.lifecycle import ACTIVE_STAGES, NEXT_STAGE, Stage
from tamiyo_models.world.rawrun import read_raw_run

SYNTHETIC = DatasetConfig(name="synthetic")
TWO_SLOTS = HostConfig(widths=(2, 4, 8), slots=(0, 1))
# Slot 0 takes only cheap blueprints, slot 1 only convolutions; the episode forbids attention altogether.
NARROWED = dataclasses.replace(TWO_SLOTS, slot_blueprints=(("norm", "depthwise", "conv_light"), ("conv_heavy", "conv_light")))
EPISODE_BLUEPRINTS = tuple(b for b in BLUEPRINTS if b != "attention")


def _comparable(step):
    return {k: v for k, v in step.items() if k != "timing"}


def test_the_flat_encoding_is_one_slot_block_after_another_and_one_slot_is_the_fine_space():
    assert action_names(1) == FINE_ACTIONS and len(FINE_ACTIONS) == 8
    for n in range(1, MAX_SEED_SLOTS + 1):
        names = action_names(n)
        assert names == ALL_ACTIONS[: len(names)] and len(names) == 1 + n * (len(BLUEPRINTS) + 2)
        assert slots_of_space(len(names)) == n
    width = len(BLUEPRINTS) + 2
    for slot, (b, blueprint) in itertools.product(range(MAX_SEED_SLOTS), enumerate(BLUEPRINTS)):
        assert germinate(blueprint, slot).index == 1 + slot * width + b
    for slot in range(MAX_SEED_SLOTS):
        assert Action("ADVANCE", slot=slot).index == 1 + slot * width + len(BLUEPRINTS)
        assert Action("CULL", slot=slot).index == 1 + slot * width + len(BLUEPRINTS) + 1
    for i, name in enumerate(ALL_ACTIONS):
        action = Action.from_index(i)
        assert action.fine == name and Action.from_fine(name) == action and action.index == i
    assert germinate("conv_heavy", 1).fine == "GERMINATE_conv_heavy_SLOT1" and Action("CULL", slot=2).fine == "CULL_SLOT2"
    with pytest.raises(ValueError):
        Action("WAIT", slot=1)


def _expected_mask(episode: Episode) -> tuple[bool, ...]:
    """Legality written out per (operation, slot, blueprint), independently of Episode.legal_mask."""
    allowed = [set(EPISODE_BLUEPRINTS) & set(NARROWED.slot_blueprints[k]) for k in range(2)]
    expected = []
    for name in action_names(2):
        a = Action.from_fine(name)
        stage = episode.slots[a.slot].stage
        expected.append({"WAIT": True, "GERMINATE": stage == Stage.DORMANT and a.blueprint in allowed[a.slot],
                         "ADVANCE": stage in NEXT_STAGE, "CULL": stage in ACTIVE_STAGES}[a.coarse])  # fmt: skip
    return tuple(expected)


def test_masks_forbid_exactly_the_illegal_slot_blueprint_pairs():
    config = EpisodeConfig(dataset=SYNTHETIC, host=NARROWED, blueprints=EPISODE_BLUEPRINTS, max_epochs=10, seed=1)
    episode = Episode(config, load_task_data(config.dataset), "masks")
    episode.measure(initial=True)
    script = [germinate("norm", 0), Action("WAIT"), germinate("conv_heavy", 1), Action("CULL", slot=0), Action("WAIT"),
              Action("ADVANCE", slot=1), Action("WAIT"), Action("WAIT"), Action("WAIT")]  # fmt: skip
    seen_pairs = set()
    for action in script:
        legal = episode.legal_mask()
        assert len(legal) == 15 and legal == _expected_mask(episode)
        for slot, blueprint in itertools.product(range(2), BLUEPRINTS):
            seen_pairs.add((slot, blueprint, legal[germinate(blueprint, slot).index]))
        assert legal[action.index], action.fine
        episode.transition(action)
    # Every pair was seen legal where the slot was DORMANT and it is allowed, and refused otherwise.
    assert (0, "norm", True) in seen_pairs and (1, "conv_heavy", True) in seen_pairs
    assert (0, "conv_heavy", True) not in seen_pairs and (1, "norm", True) not in seen_pairs
    assert not any(ok for slot, blueprint, ok in seen_pairs if blueprint == "attention")
    # A seed in one slot leaves the other free: both slots held a seed at once.
    assert episode.slots[0].stage in (Stage.EMBARGOED, Stage.RESETTING, Stage.DORMANT)
    assert episode.slots[1].stage in ACTIVE_STAGES or episode.slots[1].stage == Stage.FOSSILIZED


def test_the_heuristic_acts_per_slot_and_the_run_says_which(tmp_path):
    config = EpisodeConfig(dataset=SYNTHETIC, host=TWO_SLOTS, max_epochs=14, seed=11, controller=reference_controller("eager"))
    run = read_raw_run(run_episode(config, tmp_path).path)
    assert run.header["action_space"] == list(action_names(2))
    taken = [s["action"]["fine"] for s in run.steps]
    assert "GERMINATE_conv_light" in taken and "GERMINATE_conv_heavy_SLOT1" in taken and "ADVANCE_SLOT1" in taken
    for step in run.steps:
        assert list(step["action"]["probabilities"]) == list(action_names(2))
        assert step["action"]["fine"] in step["action"]["legal"]
    assert len(run.steps[-1]["observation"]["slots"]) == 2
    assert run.footer["final_parameters"] > run.header["host_parameters"]


@pytest.fixture
def two_slot_config():
    # An exploring eager heuristic: it grafts into both slots, and its RNG must travel with the snapshot.
    return EpisodeConfig(dataset=SYNTHETIC, host=TWO_SLOTS, max_epochs=12, seed=5,
                         controller=ControllerConfig(kind="epsilon-heuristic", epsilon=0.3, heuristic=EAGER_HEURISTIC))  # fmt: skip


def test_a_two_slot_episode_replays_bit_for_bit_from_a_snapshot(tmp_path, two_slot_config):
    parent = EpisodeRun(two_slot_config, tmp_path / "parent")
    for _ in range(5):
        parent.step()
    snapshot = take_snapshot(parent)
    parent_steps = [parent.step() for _ in range(5)]
    assert any(s["action"]["fine"].endswith("_SLOT1") for s in parent_steps) or any(
        sl["stage"] != "DORMANT" for sl in parent_steps[0]["observation"]["slots"][1:]
    )

    replay = restore(snapshot, tmp_path / "replay", "replay", {})
    assert [_comparable(replay.step()) for _ in range(5)] == [_comparable(s) for s in parent_steps]

    forced = restore(snapshot, tmp_path / "forced", "forced", {})
    first = forced.step(forced_action=Action.from_fine(parent_steps[0]["action"]["fine"]))
    assert first["observation"] == parent_steps[0]["observation"] and first["outcome"] == parent_steps[0]["outcome"]
    assert [_comparable(forced.step()) for _ in range(4)] == [_comparable(s) for s in parent_steps[1:]]


def test_a_two_slot_episode_branches_on_every_slot_and_its_parent_is_unchanged(tmp_path, two_slot_config):
    plain = read_raw_run(run_episode(two_slot_config, tmp_path / "plain").path)
    result = run_with_branches(two_slot_config, tmp_path / "branched", BranchConfig(fork_rule="steps", steps=(4, 8), horizon=2))
    branched = read_raw_run(result.parent.path)
    assert [_comparable(s) for s in branched.steps] == [_comparable(s) for s in plain.steps]
    suffixes = {b.run_id.rsplit("-", 1)[1] for b in result.branches}
    assert any(s.endswith("_slot1") for s in suffixes)  # slot 1's actions are branched like slot 0's
    for branch in result.branches:
        run = read_raw_run(branch.path)
        assert run.steps[0]["action"]["forced"] is True and run.header["action_space"] == list(action_names(2))


def test_two_slot_runs_ingest_with_their_factored_actions_and_slot_features(tmp_path):
    config = EpisodeConfig(dataset=SYNTHETIC, host=TWO_SLOTS, max_epochs=14, seed=11, controller=reference_controller("eager"))
    single = dataclasses.replace(config, host=HostConfig())
    for c in (config, single):
        run_episode(c, tmp_path / "raw")
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(tmp_path / "raw", warehouse)
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("SELECT action_fine, action_index, action_coarse, prob_germinate_conv_heavy_slot1 FROM steps "
                       "WHERE run_id = ? ORDER BY step", [config.run_id()]).fetchall()  # fmt: skip
    assert all(index == ALL_ACTIONS.index(fine) for fine, index, _, _ in rows)
    assert ("GERMINATE_conv_heavy_SLOT1", 9, "GERMINATE", 1.0) in rows
    present = con.execute("SELECT DISTINCT slot0_present, slot1_present, slot2_present FROM observations "
                          "WHERE run_id = ?", [config.run_id()]).fetchall()  # fmt: skip
    assert present == [(1.0, 1.0, 0.0)]
    # A single-slot run: eight actions, the extra slots' probabilities 0, its slot 0 the focus slot.
    single_rows = con.execute("SELECT max(action_index), sum(prob_advance_slot1) FROM steps WHERE run_id = ?",
                              [single.run_id()]).fetchone()  # fmt: skip
    assert single_rows[0] < 8 and single_rows[1] == 0.0
    same = con.execute("SELECT bool_and(has_active_seed = slot0_active AND seed_stage = slot0_stage AND "
                       "seed_total_improvement = slot0_total_improvement) FROM observations WHERE run_id = ?",
                       [single.run_id()]).fetchone()[0]  # fmt: skip
    assert same is True
    con.close()


def test_the_environment_carries_the_factored_action(tmp_path):
    config = EpisodeConfig(dataset=SYNTHETIC, host=NARROWED, max_epochs=4, seed=2)
    env = RecordRawRun(TamiyoEnv(config, feature_set="base+lifecycle+task+slots"), tmp_path)
    assert env.action_space.n == 15 and "slot1_stage" in env.unwrapped.feature_names
    _, info = env.reset(seed=0)
    mask = info["action_mask"]
    assert mask[germinate("conv_heavy", 1).index] and not mask[germinate("conv_heavy", 0).index]
    _, _, _, _, info = env.step(germinate("conv_heavy", 1).index)
    assert env.unwrapped.episode.slots[1].stage == Stage.TRAINING and env.unwrapped.episode.slots[0].stage == Stage.DORMANT
    assert info["action_mask"][Action("CULL", slot=1).index] and not info["action_mask"][Action("CULL", slot=0).index]
    while not env.unwrapped.episode.done:
        env.step(0)
    env.close()
    (path,) = tmp_path.glob("*.jsonl")
    run = read_raw_run(path)
    assert run.steps[0]["action"]["fine"] == "GERMINATE_conv_heavy_SLOT1" and len(run.steps[0]["action"]["probabilities"]) == 15

    # A wider env runs a single-slot host with the other slots masked; a narrower one refuses a wider host.
    wide = TamiyoEnv(EpisodeConfig(dataset=SYNTHETIC, max_epochs=2, seed=1), seed_slots=3)
    _, info = wide.reset(seed=0)
    assert wide.action_space.n == 22 and not info["action_mask"][8:].any() and info["action_mask"][:8].any()
    with pytest.raises(ValueError, match="seed slots"):
        TamiyoEnv(EpisodeConfig(dataset=SYNTHETIC, max_epochs=2), seed_slots=1).reset(options={"config": config})


def test_slot_blueprints_are_checked_and_only_in_the_run_id_when_set():
    assert "slot_blueprints" not in HostConfig().to_dict()
    assert HostConfig.from_dict(NARROWED.to_dict()) == NARROWED
    with pytest.raises(ValueError, match="slots"):
        HostConfig(widths=(2, 4, 8), slots=(0, 1), slot_blueprints=(("norm",),))
    with pytest.raises(ValueError, match="unknown blueprints"):
        HostConfig(widths=(2, 4, 8), slots=(0,), slot_blueprints=(("big",),))
    with pytest.raises(ValueError, match="at most"):
        HostConfig(widths=(2, 2, 2, 2, 2), slots=(0, 1, 2, 3))
