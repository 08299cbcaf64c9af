"""The factored action through Phase 3: the transition dataset over each run's own action space (one space per
dataset unless mixing is asked for; single-slot datasets exactly as before), policy files that name their
space, learners sized by the data, a tiny two-slot problem whose best action is in slot 1 learned by CQL, IQL
and BCQ (and valued by FQE), and a policy trained on two-slot runs acting as a controller on a two-slot host."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tamiyo_models.controllers import ControllerConfig
from tamiyo_models.controllers.reference import EAGER_HEURISTIC
from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.transitions.dataset import TransitionDataset
from tamiyo_models.world.actions import FINE_ACTIONS, Action, action_names, germinate
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

SYNTHETIC = DatasetConfig(name="synthetic")
TWO_SLOTS = HostConfig(widths=(2, 4, 8), slots=(0, 1))
EXPLORING_EAGER = ControllerConfig(kind="epsilon-heuristic", epsilon=0.3, heuristic=EAGER_HEURISTIC)
FEATURES = "base+lifecycle+task+slots"
quiet = lambda *_: None  # noqa: E731


def _config(host: HostConfig, seed: int, epochs: int = 8, controller=EXPLORING_EAGER) -> EpisodeConfig:
    return EpisodeConfig(dataset=SYNTHETIC, host=host, max_epochs=epochs, seed=seed, controller=controller)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """Two single-slot and three two-slot runs of an exploring eager heuristic (it grafts into both slots)."""
    from tamiyo_models.warehouse import ingest_folder

    root = tmp_path_factory.mktemp("factored-learners")
    for seed in (1, 2, 3):
        run_episode(_config(TWO_SLOTS, seed), root / "raw")
    for seed in (1, 2):
        run_episode(_config(HostConfig(), seed), root / "raw")
    ingest_folder(root / "raw", root / "w.duckdb")
    return root


def _runs(root) -> dict:
    return {r.run_id: r for r in map(read_raw_run, list_raw_runs(root / "raw"))}


def test_a_single_slot_dataset_is_what_it_always_was(warehouse):
    """The arrays of the pre-factored loader (8 actions; masks and mu over FINE_ACTIONS from the 8 slot-0
    probability columns), rebuilt here from the steps table."""
    from tamiyo_models.transitions import load_transitions
    from tamiyo_models.warehouse import query

    data = load_transitions(warehouse / "w.duckdb", "full", seed_slots=1)
    assert data.n_actions == 8 and data.action_names == FINE_ACTIONS and data.metadata["action_space"] == list(FINE_ACTIONS)
    columns = ", ".join(f"prob_{a.lower()}" for a in FINE_ACTIONS)
    ids = ", ".join(f"'{r}'" for r in sorted(set(data.run_ids)))
    steps = query(warehouse / "w.duckdb", f"SELECT legal_actions, {columns} FROM steps WHERE run_id IN ({ids}) "
                                          "ORDER BY run_id, step")  # fmt: skip
    legal = np.array([[a in set(v) for a in FINE_ACTIONS] for v in steps["legal_actions"].to_list()], dtype=bool)
    mu = steps.select([f"prob_{a.lower()}" for a in FINE_ACTIONS]).to_numpy().astype(np.float64)
    assert data.legal.dtype == bool and np.array_equal(data.legal, legal)
    assert data.behaviour_probabilities.dtype == np.float64 and np.array_equal(data.behaviour_probabilities, mu)
    assert data.actions.max() < 8


def test_a_two_slot_dataset_is_over_the_runs_fifteen_actions(warehouse):
    from tamiyo_models.transitions import load_transitions, to_d3rlpy

    data = load_transitions(warehouse / "w.duckdb", FEATURES, seed_slots=2)
    names = action_names(2)
    assert data.n_actions == 15 and data.action_names == names and data.metadata["action_space"] == list(names)
    assert data.legal.shape == data.next_legal.shape == data.behaviour_probabilities.shape == (len(data), 15)
    runs = _runs(warehouse)
    for rows in data.episode_slices():
        run = runs[data.run_ids[rows.start]]
        assert run.header["action_space"] == list(names)
        for i, step in zip(range(rows.start, rows.stop), run.steps):
            assert names[data.actions[i]] == step["action"]["fine"]
            assert list(np.array(names)[data.legal[i]]) == step["action"]["legal"]
            assert np.allclose(data.behaviour_probabilities[i], [step["action"]["probabilities"][a] for a in names])
        assert list(np.array(names)[data.next_legal[rows.stop - 1]]) == run.footer["final_legal"]
    assert (data.actions >= 8).any()  # slot 1 was acted on
    drawn = ~data.forced
    assert np.allclose(data.propensity[drawn], data.behaviour_probabilities[drawn, data.actions[drawn]])
    assert to_d3rlpy(data).dataset_info.action_size == 15


def test_runs_of_different_action_spaces_are_refused_together_unless_asked(warehouse):
    from tamiyo_models.transitions import load_transitions

    with pytest.raises(ValueError, match="different action spaces") as refused:
        load_transitions(warehouse / "w.duckdb", "full")
    single = load_transitions(warehouse / "w.duckdb", "full", seed_slots=1)
    double = load_transitions(warehouse / "w.duckdb", "full", seed_slots=2)
    for run_id in {*single.run_ids[:1], *double.run_ids[:1]}:
        assert run_id in str(refused.value)  # the message names runs of each space
    assert "8 actions (1 slot)" in str(refused.value) and "15 actions (2 slots)" in str(refused.value)

    mixed = load_transitions(warehouse / "w.duckdb", "full", mix_action_spaces=True)
    assert mixed.n_actions == 15 and len(mixed) == len(single) + len(double)
    narrow = np.isin(mixed.run_ids, single.run_ids)
    # A single-slot run in the wider space: the same indices, masks and mu, the extra actions illegal and never drawn.
    for name in ("actions", "observations", "rewards", "propensity"):
        assert np.array_equal(getattr(mixed, name)[narrow], getattr(single, name), equal_nan=name == "propensity")
    assert np.array_equal(mixed.legal[narrow][:, :8], single.legal) and not mixed.legal[narrow][:, 8:].any()
    assert np.array_equal(mixed.behaviour_probabilities[narrow][:, :8], single.behaviour_probabilities)
    assert not mixed.behaviour_probabilities[narrow][:, 8:].any() and not mixed.next_legal[narrow][:, 8:].any()
    assert np.array_equal(mixed.legal[~narrow], double.legal)
