"""Heuristic relabelling: every logged state gets the heuristic's decision; in the heuristic's own runs that
is exactly the logged action."""

import numpy as np
import polars as pl
import pytest
from policy_fixtures import build_warehouse, tiny_config

from tamiyo_models.controllers import ControllerConfig, HeuristicController, Observation
from tamiyo_models.episodes.generation import generate
from tamiyo_models.policies.data import load_decisions
from tamiyo_models.policies.relabel import relabel_with_heuristic
from tamiyo_models.warehouse import ingest_folder
from tamiyo_models.world.actions import FINE_ACTIONS
from tamiyo_models.world.features import observation_features
from tamiyo_models.world.rawrun import read_raw_run


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("relabel")
    path = build_warehouse(root)  # random-controller episodes
    generate([tiny_config(100 + s, ControllerConfig(kind="heuristic"), max_epochs=12) for s in range(2)], root / "raw")
    ingest_folder(root / "raw", path)
    return root, path


def test_relabelled_states_carry_the_heuristics_decision(warehouse):
    root, path = warehouse
    frame = relabel_with_heuristic(load_decisions(path, "base+lifecycle"))
    assert set(frame["controller_kind"]) == {"random", "heuristic"}
    own = frame.filter(pl.col("controller_kind") == "heuristic")
    assert (own["action_coarse"] == own["logged_action_coarse"]).all()
    assert frame.filter(pl.col("controller_kind") == "random")["blueprint"].null_count() == frame.filter(pl.col("controller_kind") == "random").height
    # Spot-check against the heuristic run directly on the raw records of a random-controller run.
    run_id = frame.filter(pl.col("controller_kind") == "random")["run_id"][0]
    raw = read_raw_run(next(p for p in (root / "raw").glob("*.jsonl") if p.stem == run_id))
    heuristic = HeuristicController()
    heuristic.reset(np.random.default_rng(0))
    expected = []
    for step in raw.steps:
        legal = tuple(a in step["action"]["legal"] for a in FINE_ACTIONS)
        expected.append(heuristic.decide(Observation({}, observation_features(step["observation"]), legal)).action.coarse)
    assert frame.filter(pl.col("run_id") == run_id).sort("step")["action_coarse"].to_list() == expected


def test_a_relabelled_policy_is_graded_offline_on_the_heuristics_decisions(warehouse, tmp_path):
    from tamiyo_models.evaluation import evaluate_policy
    from tamiyo_models.policies import ImitationConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy

    _, path = warehouse
    run = train_policy(path, PolicyRunConfig(labels="heuristic", controllers=(), imitation=ImitationConfig(
        feature_set="base+lifecycle", epochs=2, batch_size=16)), tmp_path / "policy", log=lambda *_: None)  # fmt: skip
    offline, _, _ = evaluate_policy(run.policy_path, path, tmp_path / "eval", configs=[tiny_config(301, max_epochs=2)],
                                    log=lambda *_: None)  # fmt: skip
    # the same held-out decisions and labels as training's own test metrics, not the random controller's actions
    assert offline.balanced_accuracy == pytest.approx(run.offline.balanced_accuracy)
    assert offline.logged_action_distribution == pytest.approx(run.offline.logged_action_distribution)
