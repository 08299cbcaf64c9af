"""The transition dataset: s' and legal(s') line up with the runs, terminals and truncations are the runs'
own, forced branch steps carry no propensity, and the Minari and d3rlpy exports round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from tamiyo_models.episodes.generation import GenerationSpec, generate
from tamiyo_models.world.actions import FINE_ACTIONS
from tamiyo_models.world.features import FEATURE_SETS, observation_features
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from tamiyo_models.warehouse import ingest_folder

    root = tmp_path_factory.mktemp("transitions")
    spec = GenerationSpec.from_dict({
        "name": "t", "base": {"max_epochs": 6, "dataset": {"name": "synthetic"}},
        "controllers": [{"kind": "epsilon-heuristic", "epsilon": 0.3, "weight": 1}, {"kind": "heuristic", "weight": 1}],
        "branching": {"horizon": 2, "max_forks": 2, "fork_rule": "every", "every": 2},
    })  # fmt: skip
    results = generate(spec.sample(3, 5), root / "raw", workers=1, branching=spec.branching)
    assert all(r.status == "complete" for r in results)
    summary = ingest_folder(root / "raw", root / "w.duckdb")
    assert summary.runs_loaded == len(list_raw_runs(root / "raw"))
    return root


def test_transitions_line_up_with_the_raw_runs(warehouse):
    from tamiyo_models.transitions import load_transitions

    data = load_transitions(warehouse / "w.duckdb", "full")
    runs = {r.run_id: r for r in map(read_raw_run, list_raw_runs(warehouse / "raw"))}
    assert len(data) == sum(len(r.steps) for r in runs.values())
    names = FEATURE_SETS["full"]
    for rows in data.episode_slices():
        run = runs[data.run_ids[rows.start]]
        for i, step in zip(range(rows.start, rows.stop), run.steps):
            assert data.steps[i] == step["step"] and FINE_ACTIONS[data.actions[i]] == step["action"]["fine"]
            assert data.rewards[i] == pytest.approx(step["outcome"]["reward"])
            features = observation_features(step["observation"])
            assert np.allclose(data.observations[i], [features[n] for n in names], atol=1e-4)
            assert list(np.array(FINE_ACTIONS)[data.legal[i]]) == step["action"]["legal"]
        # s' of each step is s of the next; the last one's is the footer's final observation, with its legal set
        assert np.array_equal(data.next_observations[rows][:-1], data.observations[rows][1:])
        final = observation_features(run.footer["final_observation"])
        assert np.allclose(data.next_observations[rows.stop - 1], [final[n] for n in names], atol=1e-4)
        assert list(np.array(FINE_ACTIONS)[data.next_legal[rows.stop - 1]]) == run.footer["final_legal"]
        is_branch = "branch" in run.header
        assert data.terminated[rows.stop - 1] == (not is_branch) and data.truncated[rows.stop - 1] == is_branch
        assert not data.terminated[rows][:-1].any() and not data.truncated[rows][:-1].any()
        family = run.header["branch"]["parent_run_id"] if is_branch else run.run_id
        assert set(data.family_ids[rows]) == {family}
    # a branch's forced first step is an intervention: no propensity, never importance-weighted
    assert np.isnan(data.propensity[data.forced]).all() and not data.stochastic[data.forced].any()
    drawn = ~data.forced
    assert np.allclose(data.propensity[drawn], data.behaviour_probabilities[drawn, data.actions[drawn]])
    heuristic = data.behaviours == "heuristic"
    assert heuristic.any() and not data.stochastic[heuristic].any()  # deterministic: IS not identified
    assert data.stochastic[(data.behaviours == "epsilon-heuristic") & drawn].all()


def test_family_split_never_cuts_a_family_and_digest_is_stable(warehouse, tmp_path):
    from tamiyo_models.transitions import TransitionDataset, load_transitions

    data = load_transitions(warehouse / "w.duckdb", "base")
    train, held = data.split_by_family(0.34, seed=1)
    assert len(train) + len(held) == len(data) and not set(train.family_ids) & set(held.family_ids)
    again = TransitionDataset.load_npz(data.save_npz(tmp_path / "t.npz"))
    assert again.digest() == data.digest() == load_transitions(warehouse / "w.duckdb", "base").digest()
    assert again.summary() == data.summary()


def test_minari_export_round_trips(warehouse, tmp_path):
    from tamiyo_models.transitions import load_minari, load_transitions, to_minari

    data = load_transitions(warehouse / "w.duckdb", "base+lifecycle+task")
    to_minari(data, "tamiyo/test-v0", tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        to_minari(data, "tamiyo/test-v0", tmp_path)
    to_minari(data, "tamiyo/test-v0", tmp_path, overwrite=True)
    loaded = load_minari("tamiyo/test-v0", tmp_path)
    slices = data.episode_slices()
    assert loaded.total_episodes == len(slices) and loaded.total_steps == len(data)
    assert loaded.storage.metadata["feature_schema_version"] == "tamiyo-features/5"
    for episode, rows in zip(loaded.iterate_episodes(), slices):
        assert episode.observations.shape == (rows.stop - rows.start + 1, len(data.feature_names))
        assert np.allclose(episode.observations[:-1], data.observations[rows])
        assert np.allclose(episode.observations[-1], data.next_observations[rows.stop - 1])
        assert np.array_equal(episode.actions, data.actions[rows])
        assert np.allclose(episode.rewards, data.rewards[rows])
        assert np.array_equal(episode.terminations, data.terminated[rows]) and np.array_equal(episode.truncations, data.truncated[rows])
        assert np.array_equal(episode.infos["action_mask"][:-1], data.legal[rows])
        assert np.allclose(episode.infos["behaviour_probabilities"][:-1], data.behaviour_probabilities[rows])


def test_d3rlpy_dataset_has_the_runs_terminals_and_timeouts(warehouse):
    from tamiyo_models.transitions import load_transitions, to_d3rlpy

    data = load_transitions(warehouse / "w.duckdb", "base")
    mdp = to_d3rlpy(data)
    assert mdp.size() == len(data.episode_slices())
    terminals = sum(bool(e.terminated) for e in mdp.episodes)
    assert terminals == int(data.terminated.sum()) and len(mdp.episodes) - terminals == int(data.truncated.sum())
