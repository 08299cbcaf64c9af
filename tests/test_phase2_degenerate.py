"""Phase 2 on data where outcome weighting cannot do anything: every dataset configuration holds one episode,
so A's and B's weights are all 1 and C keeps every episode. The degenerate weighting is said in the log, the
policy file (hence the evaluation report) and the MLflow run, and a variant that comes out identical to an
earlier one (or to its parent) is not registered as a new model version. Real episodes, training, MLflow."""

from __future__ import annotations

import pytest
from policy_fixtures import RANDOM_WEIGHTS


@pytest.fixture(scope="module")
def one_episode_per_configuration(tmp_path_factory):
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.episodes.generation import generate
    from tamiyo_models.warehouse import ingest_folder
    from tamiyo_models.world.datasets import DatasetConfig

    root = tmp_path_factory.mktemp("degenerate")
    configs = [
        EpisodeConfig(dataset=DatasetConfig(name="synthetic", label_noise=0.02 * i), max_epochs=6, seed=i,
                      controller=ControllerConfig(kind="random", random_weights=RANDOM_WEIGHTS))
        for i in range(8)
    ]  # fmt: skip
    results = generate(configs, root / "raw", workers=1)
    assert all(r.status == "complete" for r in results)
    ingest_folder(root / "raw", root / "w.duckdb")
    return root


def test_degenerate_weighting_is_reported_and_identical_variants_are_not_registered(one_episode_per_configuration):
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig
    from tamiyo_models.policies import ImitationConfig
    from tamiyo_models.policies.reward_weighted import RewardWeightingConfig
    from tamiyo_models.policies.saved import load_policy_file
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy

    root = one_episode_per_configuration
    warehouse = root / "w.duckdb"
    tracker = Tracker(TrackingConfig(root=str(root / "mlflow")))
    quick = ImitationConfig(epochs=2, batch_size=16)
    parent = train_policy(warehouse, PolicyRunConfig(controllers=("random",), imitation=quick), root / "p1",
                          tracker=tracker, log=lambda *_: None)  # fmt: skip
    messages, trained, runs = [], {}, {}
    for variant in ("A", "B", "C"):
        config = PolicyRunConfig(phase="phase2", controllers=("random",), imitation=quick,
                                 weighting=RewardWeightingConfig(variant=variant), parent_policy=str(parent.policy_path))  # fmt: skip
        runs[variant] = train_policy(warehouse, config, root / f"p2{variant}", tracker=tracker, log=messages.append,
                                     compare_with=dict(trained))  # fmt: skip
        trained[f"variant {variant}"] = runs[variant].result.model

    for variant in ("A", "B", "C"):
        note = runs[variant].weighting_note
        assert note and "configurations of 1-1 training episodes" in note, (variant, note)
        assert any(m.startswith(f"WARNING phase 2 {variant}: degenerate weighting") for m in messages)
        _, payload = load_policy_file(runs[variant].policy_path)
        assert payload["metadata"]["weighting_note"] == note  # what the evaluation report shows
        tags = tracker.client.get_run(runs[variant].mlflow_run_id).data.tags
        assert tags["tamiyo.weighting_degenerate"] == note

    # A trains: a new version. B weighs everything 1 like A, on the same data and seed: the same policy.
    assert runs["A"].model_version and runs["A"].identical_to is None
    assert runs["B"].identical_to == "variant A" and runs["B"].model_version is None
    aliases = dict(tracker.client.get_registered_model("tamiyo-phase2-weighted").aliases)
    assert "candidate-a" in aliases and "candidate-b" not in aliases
    assert tracker.client.get_run(runs["B"].mlflow_run_id).data.tags["tamiyo.identical_to"] == "variant A"
