"""Lineage end to end on a tiny real run: real warehouse, real training, real MLflow on sqlite in tmp."""

from __future__ import annotations

import pytest
from policy_fixtures import TRAINING_SEEDS, build_warehouse


@pytest.fixture(scope="session")
def tracker(tmp_path_factory):
    # One sqlite database per test session: a new one takes seconds to migrate.
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig

    return Tracker(TrackingConfig(root=str(tmp_path_factory.mktemp("mlflow"))))


@pytest.fixture(scope="module")
def phase_runs(tmp_path_factory, tracker):
    from tamiyo_models.policies import ImitationConfig
    from tamiyo_models.policies.reward_weighted import RewardWeightingConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy

    root = tmp_path_factory.mktemp("lineage")
    warehouse = build_warehouse(root)
    parent = tracker.parent_run_id("dagster-run-1", "test run")
    tags = {"tamiyo.asset_key": "phase1_imitation_policy"}
    quick = ImitationConfig(epochs=2, batch_size=16)
    p1 = train_policy(warehouse, PolicyRunConfig(controllers=("random",), imitation=quick), root / "p1",
                      tracker=tracker, parent_run_id=parent, tags=tags, log=lambda *_: None)  # fmt: skip
    p2 = train_policy(
        warehouse,
        PolicyRunConfig(phase="phase2", controllers=("random",), imitation=quick, weighting=RewardWeightingConfig(variant="C"),
                        parent_policy="tamiyo-phase1-imitation@candidate"),
        root / "p2", tracker=tracker, parent_run_id=tracker.parent_run_id("dagster-run-1"),
        tags={"tamiyo.asset_key": "phase2_weighted_policy"}, log=lambda *_: None,
    )  # fmt: skip
    return warehouse, p1, p2


def test_lineage_resolves_model_to_raw_runs_and_parent_policy(phase_runs, tracker):
    from tamiyo_models.agents.tracking import format_lineage

    warehouse, p1, p2 = phase_runs
    chain = tracker.lineage("tamiyo-phase2-weighted@candidate")
    assert [node.model for node in chain] == [f"tamiyo-phase2-weighted/{p2.model_version}", f"tamiyo-phase1-imitation/{p1.model_version}"]
    child, parent = chain
    assert child.training_run == p2.mlflow_run_id and parent.training_run == p1.mlflow_run_id
    assert child.parent_policy == f"tamiyo-phase1-imitation/{p1.model_version}" and parent.parent_policy is None
    # the dataset digest is the digest of the exact rows, and the source is the warehouse file
    assert parent.datasets[0]["tags"]["sha256"] == p1.dataset_digest
    assert parent.datasets[0]["source"].endswith(warehouse.name) or warehouse.name in parent.datasets[0]["source"]
    # raw runs: exactly the training episodes, with their generation configuration
    assert sorted(r["run_id"] for r in parent.raw_runs) == sorted(p1.train_runs)
    assert {r["seed"] for r in parent.raw_runs} <= set(TRAINING_SEEDS)
    assert all(r["config"]["dataset"]["name"] == "synthetic" for r in parent.raw_runs)
    # tags: orchestration run, asset, code version; both children under one parent run
    assert parent.tags["tamiyo.dagster_run_id"] == child.tags["tamiyo.dagster_run_id"] == "dagster-run-1"
    assert parent.tags["tamiyo.asset_key"] == "phase1_imitation_policy" and parent.tags["tamiyo.code_source_sha256"]
    text = format_lineage(chain)
    assert "parent policy: tamiyo-phase1-imitation/" in text and p1.dataset_digest in text
    run1, run2 = tracker.client.get_run(p1.mlflow_run_id), tracker.client.get_run(p2.mlflow_run_id)
    assert run1.data.tags["mlflow.parentRunId"] == run2.data.tags["mlflow.parentRunId"]
    assert "val_balanced_accuracy" in run1.data.metrics and run1.data.params["imitation.epochs"] == "2"


def test_downloaded_policy_is_the_trained_one(phase_runs, tracker, tmp_path):
    import torch

    from tamiyo_models.policies import load_policy_file

    _, p1, _ = phase_runs
    path = tracker.download_policy(f"tamiyo-phase1-imitation/{p1.model_version}", tmp_path)
    a, _ = load_policy_file(path)
    b, _ = load_policy_file(p1.policy_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_champion_moves_only_on_a_better_live_evaluation(phase_runs, tracker):
    _, p1, _ = phase_runs
    phase, version = "phase1", p1.model_version
    worse = {"live_mean_difference": -3.0, "live_ci_low": -5.0, "live_ci_high": -1.0}
    promoted, why = tracker.promote_if_better(phase, version, worse)
    assert not promoted, why
    # fine on the original pairs, but not on fresh data orders: a replicated evaluation must hold on both
    not_replicated = {"live_mean_difference": 0.2, "live_ci_low": -0.1, "live_ci_high": 0.5, "live_fresh_ci_low": -1.2}
    promoted, why = tracker.promote_if_better(phase, version, not_replicated)
    assert not promoted and "fresh data orders" in why, why
    on_par = {"live_mean_difference": 0.1, "live_ci_low": -0.3, "live_ci_high": 0.4}
    promoted, why = tracker.promote_if_better(phase, version, on_par)
    assert promoted, why
    assert str(tracker.resolve("tamiyo-phase1-imitation@champion").version) == str(version)
