"""Counterfactual coverage on hand-built data (numbers worked out by hand) and stable cluster assignment."""

import numpy as np
import polars as pl
import pytest
from html_check import assert_real_html

from tamiyo_models.coverage import (
    AbstractionConfig,
    CoverageConfig,
    KMeansAbstraction,
    ReferenceBuckets,
    analyse_coverage,
)
from tamiyo_models.coverage.abstraction import build_abstraction
from tamiyo_models.coverage.analysis import coverage_by_slice
from tamiyo_models.coverage.report import write_coverage_report
from tamiyo_models.world.features import BASE_FEATURES


def hand_built() -> tuple[pl.DataFrame, np.ndarray]:
    # cluster 0: 5 WAIT (outcome 1.0) and 5 GERMINATE (outcome 3.0)   -> covered
    # cluster 1: 10 WAIT (outcome 0.5)                                 -> one action
    # cluster 2: 6 WAIT (outcome 0.0) and 4 CULL (outcome -1.0)        -> two actions, CULL below m = 5
    actions = ["WAIT"] * 5 + ["GERMINATE"] * 5 + ["WAIT"] * 10 + ["WAIT"] * 6 + ["CULL"] * 4
    outcomes = [1.0] * 5 + [3.0] * 5 + [0.5] * 10 + [0.0] * 6 + [-1.0] * 4
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    states = pl.DataFrame({"action_coarse": actions, "action_fine": actions, "outcome_h": outcomes,
                           "controller_kind": ["a"] * 20 + ["b"] * 10})  # fmt: skip
    return states, labels


def test_coverage_numbers_equal_the_hand_computed_ones():
    states, labels = hand_built()
    result = analyse_coverage(states, labels, CoverageConfig(min_samples=5))
    s = result.summary
    assert (s["clusters"], s["covered_clusters"], s["states"], s["covered_states"]) == (3, 1, 30, 10)
    assert s["coverage_clusters"] == pytest.approx(1 / 3) and s["coverage_states"] == pytest.approx(1 / 3)
    assert s["single_action_clusters"] == 1
    clusters = {r["cluster"]: r for r in result.clusters.iter_rows(named=True)}
    assert clusters[0]["entropy_bits"] == pytest.approx(1.0) and clusters[1]["entropy_bits"] == 0.0
    assert clusters[2]["entropy_bits"] == pytest.approx(-(0.6 * np.log2(0.6) + 0.4 * np.log2(0.4)))
    assert [clusters[c]["covered"] for c in (0, 1, 2)] == [True, False, False]
    germ = result.actions.filter((pl.col("cluster") == 0) & (pl.col("action") == "GERMINATE")).row(0, named=True)
    assert germ["n"] == 5 and germ["mean_outcome"] == 3.0 and germ["ci_low"] == germ["ci_high"] == 3.0
    (contrast,) = result.contrasts.iter_rows(named=True)
    assert contrast["cluster"] == 0 and contrast["alternative"] == "GERMINATE" and contrast["difference"] == 2.0
    # With m = 4, cluster 2 (6 WAIT, 4 CULL) becomes covered too.
    assert analyse_coverage(states, labels, CoverageConfig(min_samples=4)).summary["covered_clusters"] == 2


def test_coverage_by_slice_uses_the_same_clusters():
    states, labels = hand_built()
    slices = coverage_by_slice(states, labels, ["controller_kind"], CoverageConfig())
    rows = {r["value"]: r for r in slices.iter_rows(named=True)}
    assert rows["a"]["clusters"] == 2 and rows["a"]["coverage_clusters"] == 0.5
    assert rows["b"]["clusters"] == 1 and rows["b"]["coverage_clusters"] == 0.0


def test_reference_buckets_follow_the_reference_triple():
    states = pl.DataFrame({"epoch": [0, 4, 5, 12], "plateau_epochs": [0, 9, 5, 2], "has_active_seed": [0, 1, 1, 0]})
    labels = ReferenceBuckets().assign(states)
    assert labels[1] != labels[2]  # epoch 4 and 5 fall in different buckets
    assert labels.tolist() == [0, 11, 23, 28]


def _random_states(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({name: rng.normal(size=n) for name in BASE_FEATURES})


def test_kmeans_assignment_is_stable_for_a_saved_model(tmp_path):
    states = _random_states(300, 0)
    config = AbstractionConfig(k=8, seed=3)
    model = KMeansAbstraction.fit(states, config)
    path = model.save(tmp_path / "abstraction.json")
    later = _random_states(50, 1)
    assert np.array_equal(KMeansAbstraction.load(path).assign(later), model.assign(later))
    assert np.array_equal(KMeansAbstraction.fit(states, config).assign(later), model.assign(later))  # reproducible fit
    # build_abstraction reuses the saved model rather than refitting on new data.
    reused = build_abstraction(config, _random_states(300, 9), saved=path)
    assert np.array_equal(reused.assign(later), model.assign(later))
    with pytest.raises(ValueError, match="not a saved k-means"):
        KMeansAbstraction.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="needs at least 8 states"):
        KMeansAbstraction.fit(_random_states(5, 0), config)


def test_report_files(tmp_path):
    states, labels = hand_built()
    result = analyse_coverage(states, labels)
    files = write_coverage_report(result, {"kind": "kmeans", "k": 3, "feature_set": "base"}, tmp_path, "hand-built")
    markdown = files["markdown"].read_text()
    assert "33.3% of clusters" in markdown and "(1 of 3)" in markdown
    assert all(files[k].stat().st_size > 1000 for k in ("coverage_by_cluster", "action_mix", "outcome_difference"))
    page = assert_real_html(files["html"], table=False)  # no slices given: the report has no table
    assert "li" in page.tags and "strong" in page.tags


def test_holes_file_drives_forks_into_under_covered_clusters(tmp_path):
    """Active filling of holes: the analysis writes where coverage is missing, branching forks exactly there."""
    from tamiyo_models.coverage.holes import HoleFinder, hole_finder, write_holes
    from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.features import observation_features
    from tamiyo_models.world.rawrun import read_raw_run

    states = _random_states(200, 0)
    model = KMeansAbstraction.fit(states, AbstractionConfig(k=4, seed=0))
    saved = model.save(tmp_path / "abstraction.json")
    labels = model.assign(states)
    # Cluster of label 0 gets two actions with 5 samples each; every other cluster has WAIT only.
    actions = ["WAIT"] * len(labels)
    zeros = [i for i, c in enumerate(labels) if c == 0]
    for i in zeros[: len(zeros) // 2]:
        actions[i] = "GERMINATE"
    frame = states.with_columns(pl.Series("action_coarse", actions), pl.Series("outcome_h", [0.0] * len(labels)))
    result = analyse_coverage(frame, labels, CoverageConfig(min_samples=min(5, len(zeros) // 2)))
    holes_file = write_holes(tmp_path / "holes.json", saved, result)
    finder = HoleFinder(holes_file)
    assert finder.holes == {1, 2, 3}

    # A real episode: every fork it makes is at a state the finder places in a hole.
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=6, seed=2)
    branching = BranchConfig(fork_rule="holes", holes_file=str(holes_file), horizon=1, max_forks=2)
    with pytest.raises(ValueError, match="holes predicate"):
        run_with_branches(config, tmp_path / "raw0", branching)  # branching knows nothing of coverage by itself
    run = run_with_branches(config, tmp_path / "raw", branching, fork_filter=hole_finder(holes_file))
    parent = read_raw_run(run.parent.path)
    assert run.fork_steps and run.branches
    for step in run.fork_steps:
        features = observation_features(parent.steps[step - 1]["observation"])
        assert model.assign_one(features) in finder.holes
        assert model.assign_one(features) == model.assign(pl.DataFrame([features]))[0]
    with pytest.raises(ValueError, match="needs a holes_file"):
        BranchConfig(fork_rule="holes")
    with pytest.raises(ValueError, match="not a coverage holes file"):
        HoleFinder(tmp_path / "missing.json")
