"""Policies: class weights, episode split, training, save/load, and serving as a controller in a real episode."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch
from policy_fixtures import build_warehouse, tiny_config

from tamiyo_models.policies import (
    ImitationConfig,
    effective_number_weights,
    load_decisions,
    load_policy_file,
    save_policy,
    split_episodes,
    train_imitation,
)  # fmt: skip
from tamiyo_models.policies.reward_weighted import RewardWeightingConfig, weighted_training_set


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("policies"))


@pytest.fixture(scope="module")
def decisions(warehouse):
    return load_decisions(warehouse, "base")


@pytest.fixture(scope="module")
def trained(decisions, tmp_path_factory):
    split = split_episodes(decisions, 0.3, seed=1)
    train, val = split.frames(decisions)
    result = train_imitation(train, val, ImitationConfig(epochs=3, batch_size=16, seed=0))
    path = save_policy(result.model, result.feature_names, tmp_path_factory.mktemp("saved") / "p.pt", {"phase": "phase1"})
    return result, path, val


def test_class_weights_match_hand_computed_values():
    # n = (900, 50, 40, 10), beta = 0.999: w_c = 0.001 / (1 - 0.999**n_c)
    raw = [0.001 / (1 - 0.999**900), 0.001 / (1 - 0.999**50), 0.001 / (1 - 0.999**40), 0.001 / (1 - 0.999**10)]
    # by hand (30-digit decimals): 1 - 0.999**n = 0.59361337, 0.04879437, 0.03922978, 0.00995511
    # w = 0.001 / that = 0.00168459, 0.02049416, 0.02549083, 0.10045082; sum 0.14812042; times 4 / sum:
    expected = np.array([0.04549266, 0.55344607, 0.68838131, 2.71267994])
    weights = effective_number_weights([900, 50, 40, 10], beta=0.999)
    np.testing.assert_allclose(weights, np.array(raw) * 4 / sum(raw), rtol=1e-12)
    np.testing.assert_allclose(weights, expected, atol=1e-7)
    assert weights.sum() == pytest.approx(4.0)
    # beta = 0: every present class weighs the same; an absent class weighs nothing
    np.testing.assert_allclose(effective_number_weights([5, 100, 0], beta=0.0), [1.0, 1.0, 0.0])


def test_split_never_shares_an_episode(decisions):
    for seed in range(5):
        split = split_episodes(decisions, 0.3, seed=seed)
        assert not set(split.train_runs) & set(split.val_runs)
        assert set(split.train_runs) | set(split.val_runs) == set(decisions["run_id"].unique())
        train, val = split.frames(decisions)
        assert not set(train["run_id"]) & set(val["run_id"])
        assert len(train) + len(val) == len(decisions)
    # by configuration group: a group is entirely on one side
    frame = decisions.with_columns((pl.col("seed") % 3).cast(pl.Utf8).alias("group"))
    split = split_episodes(frame, 0.34, seed=0, group_by="group")
    train, val = split.frames(frame)
    assert not set(train["group"]) & set(val["group"])


def test_training_records_metrics_and_selects_best_epoch(trained):
    result, _, _ = trained
    assert len(result.history) == 3 and 1 <= result.best_epoch <= 3
    assert result.best.val_balanced_accuracy == max(m.val_balanced_accuracy for m in result.history)
    assert result.val_confusion.sum() == result.n_val
    assert result.updates_per_second > 0
    assert sum(result.class_weights.values()) == pytest.approx(sum(1 for n in result.class_counts.values() if n))


def test_saved_policy_reloads_and_scores_identically(trained, decisions):
    result, path, val = trained
    model, payload = load_policy_file(path)
    assert payload["feature_names"] == list(result.feature_names) and payload["metadata"]["phase"] == "phase1"
    x = torch.as_tensor(val.select(result.feature_names).to_numpy().astype(np.float32))
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(result.model(x), model(x))
    # the normaliser travelled inside the file
    assert torch.equal(model.normaliser.mean, result.model.normaliser.mean)


def test_stage_and_stage_epochs_enter_one_hot_inside_the_network(trained, tmp_path):
    from tamiyo_models.agents.imitation_network import NetworkConfig, PolicyNetwork, categorical_columns
    from tamiyo_models.world.features import BASE_FEATURES
    from tamiyo_models.world.lifecycle import Stage

    result, path, _ = trained
    stage, epochs = BASE_FEATURES.index("seed_stage"), BASE_FEATURES.index("seed_epochs_in_stage")
    assert result.model.categorical == ((stage, len(Stage)), (epochs, 12))
    assert load_policy_file(path)[0].categorical == result.model.categorical
    x = torch.zeros(3, len(BASE_FEATURES))
    x[:, stage] = torch.tensor([float(Stage.BLENDING), float(Stage.TRAINING), float(Stage.DORMANT)])
    x[:, epochs] = torch.tensor([4.0, 30.0, 0.0])  # 30 epochs shares the last bucket
    encoded = result.model.encode(x)
    assert encoded.shape == (3, len(BASE_FEATURES) + len(Stage) + 12)
    stage_block = encoded[:, len(BASE_FEATURES) : len(BASE_FEATURES) + len(Stage)]
    epochs_block = encoded[:, len(BASE_FEATURES) + len(Stage) :]
    assert stage_block.argmax(1).tolist() == [Stage.BLENDING, Stage.TRAINING, Stage.DORMANT] and stage_block.sum().item() == 3
    assert epochs_block.argmax(1).tolist() == [4, 11, 0] and epochs_block.sum().item() == 3
    # the ordinal encoding of the earlier policy files stays loadable and is what one_hot_categorical=False gives
    assert categorical_columns(BASE_FEATURES, NetworkConfig(one_hot_categorical=False)) == ()
    plain = PolicyNetwork(len(BASE_FEATURES), NetworkConfig(one_hot_categorical=False))
    reloaded, payload = load_policy_file(save_policy(plain, BASE_FEATURES, tmp_path / "plain.pt"))
    assert payload["network"]["spec"]["categorical"] == [] and reloaded.encode(x).shape == (3, len(BASE_FEATURES))


def test_policy_file_acts_as_controller_in_a_real_episode(trained, tmp_path):
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.controllers.saved_policy import policy_controller
    from tamiyo_models.episodes.episode import run_episode
    from tamiyo_models.world.rawrun import read_raw_run

    _, path, _ = trained
    config = tiny_config(50, ControllerConfig(kind="policy", policy=f"file:{path}"), max_epochs=5)
    first = run_episode(config, tmp_path / "a")
    again = run_episode(config, tmp_path / "b")
    assert first.status == "complete", first.error
    steps_a, steps_b = read_raw_run(first.path).steps, read_raw_run(again.path).steps
    assert [s["action"]["fine"] for s in steps_a] == [s["action"]["fine"] for s in steps_b]
    # every logged decision is what the reloaded policy chooses on that step's observation
    controller = policy_controller(path)
    from tamiyo_models.controllers import Observation
    from tamiyo_models.world.actions import FINE_ACTIONS
    from tamiyo_models.world.features import observation_features

    for step in steps_a:
        record = step["observation"]
        legal = tuple(a in step["action"]["legal"] for a in FINE_ACTIONS)
        decision = controller.decide(Observation(record, observation_features(record), legal))
        assert decision.action.fine == step["action"]["fine"]
        assert decision.propensity == pytest.approx(step["action"]["propensity"], abs=1e-9)


def test_phase2_variants_weight_or_filter(decisions):
    train = decisions
    frame_a, w_a = weighted_training_set(train, RewardWeightingConfig(variant="A"))
    assert len(frame_a) == len(train) and w_a.mean() == pytest.approx(1.0, abs=1e-5)
    # within one episode, A gives every decision the same weight; better episodes weigh more
    per_run = pl.DataFrame({"run_id": frame_a["run_id"], "w": w_a, "acc": frame_a["final_val_accuracy"]})
    assert (per_run.group_by("run_id").agg(pl.col("w").n_unique())["w"] == 1).all()
    ranked = per_run.group_by("run_id").agg(pl.col("w").first(), pl.col("acc").first()).sort("acc")
    assert ranked["w"].to_list() == sorted(ranked["w"].to_list())
    frame_b, w_b = weighted_training_set(train, RewardWeightingConfig(variant="B", decision_signal="reward"))
    assert w_b.min() > 0 and w_b[np.argmax(frame_b["reward"].to_numpy())] == w_b.max()
    frame_c, w_c = weighted_training_set(train, RewardWeightingConfig(variant="C", keep_fraction=0.5))
    kept = frame_c["run_id"].n_unique()
    assert kept == 5 and (w_c == 1).all()
    best = train.group_by("run_id").agg(pl.col("final_val_accuracy").first()).sort("final_val_accuracy", descending=True)
    assert set(frame_c["run_id"]) == set(best["run_id"].head(5))
    with pytest.raises(ValueError):
        dataclasses.replace(RewardWeightingConfig(), variant="D")


def test_phase2_selection_keeps_the_epoch_of_lowest_weighted_validation_loss(decisions):
    split = split_episodes(decisions, 0.3, seed=2)
    train, val = split.frames(decisions)
    weights = np.random.default_rng(0).uniform(0.1, 3.0, len(val)).astype(np.float32)
    config = ImitationConfig(epochs=4, batch_size=16, seed=0, select_on="loss")
    weighted = train_imitation(train, val, config, val_sample_weight=weights)
    losses = [m.val_loss for m in weighted.history]
    assert weighted.best_epoch == int(np.argmin(losses)) + 1
    plain = train_imitation(train, val, config)  # same seed, same updates: only the validation weights differ
    assert [m.train_loss for m in plain.history] == [m.train_loss for m in weighted.history]
    assert [m.val_loss for m in plain.history] != losses
    with pytest.raises(ValueError, match="select_on"):
        ImitationConfig(select_on="accuracy")
    with pytest.raises(ValueError, match="val_sample_weight"):
        train_imitation(train, val, config, val_sample_weight=weights[:-1])
