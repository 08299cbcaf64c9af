"""Evaluation: live pairs share seed and configuration, seeds disjoint from training, offline metrics, report."""

from __future__ import annotations

import numpy as np
import pytest
from html_check import assert_real_html
from policy_fixtures import TRAINING_SEEDS, build_warehouse, tiny_config


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    from tamiyo_models.policies import ImitationConfig
    from tamiyo_models.policies.workflow import PolicyRunConfig, train_policy

    root = tmp_path_factory.mktemp("evaluation")
    warehouse = build_warehouse(root)
    run = train_policy(warehouse, PolicyRunConfig(controllers=("random",), imitation=ImitationConfig(epochs=2, batch_size=16)),
                       root / "policy", log=lambda *_: None)  # fmt: skip
    return warehouse, run


def test_bootstrap_interval_brackets_the_mean():
    from tamiyo_models.evaluation import bootstrap_mean_ci

    d = np.array([0.5, -0.2, 1.0, 0.0, 0.3, 0.7])
    low, high = bootstrap_mean_ci(d, resamples=2000, seed=1)
    assert low < d.mean() < high
    assert bootstrap_mean_ci(np.zeros(5)) == (0.0, 0.0)


def test_live_evaluation_pairs_seeds_and_configurations(policy, tmp_path):
    from tamiyo_models.evaluation import evaluate_policy
    from tamiyo_models.evaluation.live import paired_configs
    from tamiyo_models.world.rawrun import read_raw_run

    warehouse, run = policy
    configs = [tiny_config(seed, max_epochs=4) for seed in (101, 102, 103)]
    heuristic, policies = paired_configs(configs, run.policy_path)
    for c, h, p in zip(configs, heuristic, policies):
        assert h.seed == p.seed == c.seed and h.dataset == p.dataset == c.dataset and h.host == p.host
        assert h.controller.kind == "heuristic" and p.controller.kind == "policy"
    offline, live, paths = evaluate_policy(run.policy_path, warehouse, tmp_path, configs=configs, log=lambda *_: None)
    assert [p.seed for p in live.pairs] == [101, 102, 103]
    for pair in live.pairs:
        h, p = read_raw_run(tmp_path / "episodes" / f"{pair.heuristic_run}.jsonl"), read_raw_run(tmp_path / "episodes" / f"{pair.policy_run}.jsonl")
        assert h.header["config"]["seed"] == p.header["config"]["seed"] == pair.seed
        strip = lambda cfg: {k: v for k, v in cfg.items() if k not in ("controller", "tags")}  # noqa: E731
        assert strip(h.header["config"]) == strip(p.header["config"])
        # scored on the test split; validation (what the controllers watched) kept beside it
        assert pair.heuristic_final == h.footer["final_test_accuracy"] and pair.policy_final == p.footer["final_test_accuracy"]
        assert pair.heuristic_val == h.footer["final_val_accuracy"] and pair.policy_val == p.footer["final_val_accuracy"]
    assert live.wins + live.ties + live.losses == 3
    assert live.mean_difference == pytest.approx(np.mean([p.difference for p in live.pairs]))
    assert 0 <= live.agreement_coarse <= 1 and sum(live.action_distribution["policy"].values()) == pytest.approx(1)
    # offline metrics on the policy's own held-out episodes
    assert offline.episodes == len(run.val_runs) and 0 <= offline.balanced_accuracy <= 1
    page = assert_real_html(paths["html"])  # tables are <table>s, headings <h1>/<h2>, plots inline
    assert "Live, paired episodes" in page.headings and "mean final test accuracy (pp)" in page.cells
    assert "Paired difference" in paths["markdown"].read_text()
    # the learning curves come from the policy file itself (no training result handed over)
    assert paths["learning_curves"].exists() and f"Best epoch {run.result.best_epoch} of 2" in paths["markdown"].read_text()


def test_live_evaluation_refuses_training_seeds(policy, tmp_path):
    from tamiyo_models.evaluation import evaluate_live

    _, run = policy
    with pytest.raises(ValueError, match="used for training"):
        evaluate_live(run.policy_path, [tiny_config(TRAINING_SEEDS[0])], tmp_path, training_seeds=TRAINING_SEEDS)


def test_agreement_is_one_when_the_heuristic_evaluates_its_own_trajectories(tmp_path):
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import run_episode
    from tamiyo_models.evaluation.live import agreement_on_trajectories
    from tamiyo_models.world.rawrun import read_raw_run

    config = tiny_config(7, ControllerConfig(kind="heuristic"), max_epochs=8)
    result = run_episode(config, tmp_path)
    assert agreement_on_trajectories([read_raw_run(result.path)], [config]) == (1.0, 1.0)


def test_several_policies_share_one_heuristic_episode_per_configuration(policy, tmp_path):
    import shutil

    from tamiyo_models.cli import main

    warehouse, run = policy
    twin = tmp_path / "twin.pt"
    shutil.copy(run.policy_path, twin)  # same weights, another file: its episodes must equal the original's
    from tamiyo_models.evaluation import evaluate_policies

    configs = [tiny_config(seed, max_epochs=3) for seed in (201, 202)]
    first, second = evaluate_policies({"original": run.policy_path, "twin": twin}, warehouse, tmp_path / "eval",
                                      configs=configs, log=lambda *_: None)  # fmt: skip
    assert [p.heuristic_run for p in first.live.pairs] == [p.heuristic_run for p in second.live.pairs]
    assert [p.policy_run for p in first.live.pairs] != [p.policy_run for p in second.live.pairs]
    assert [p.policy_final for p in first.live.pairs] == [p.policy_final for p in second.live.pairs]
    heuristic_files = {p.heuristic_run for p in first.live.pairs}
    # one heuristic episode per configuration, plus its null-control rerun on a fresh data order
    assert len(list((tmp_path / "eval" / "episodes").glob("*.jsonl"))) == 2 * len(heuristic_files) + 2 * len(configs)
    comparison = first.paths["comparison_markdown"].read_text()
    assert "| original |" in comparison and "| twin |" in comparison
    assert (tmp_path / "eval" / "original" / "report" / "report.html").exists()
    # the command line takes several policies too, and refuses a reference that is neither a file nor a model
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--mlflow-root", str(tmp_path / "mlflow"),
                 "--out", str(tmp_path / "cli")]) == 2  # fmt: skip


def test_null_control_replication_and_references_share_the_pairs(policy, tmp_path):
    """The heuristic reruns on fresh data orders (null control), every pair is replicated on them, and a
    reference controller is judged on the same pairs; a rerun of the same design reads the episodes back."""
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.world.rawrun import list_raw_runs

    _, run = policy
    configs = [tiny_config(seed, max_epochs=4) for seed in (301, 302, 303)]
    results = evaluate_live_many({"policy": run.policy_path}, configs, tmp_path, replicate=2,
                                 references={"never": reference_controller("never")})  # fmt: skip
    # heuristic, policy and never on the original order; each of them again on 2 fresh orders
    assert len(list_raw_runs(tmp_path)) == 3 * 3 * 3
    live, never = results["policy"], results["never"]
    assert live.fresh_orders == 2 and live.fresh.n == 3 and never.fresh.n == 3
    assert live.noise_floor >= 0 and live.pairs_for_half_pp >= live.pairs_for_one_pp
    assert [p.heuristic_run for p in live.pairs] == [p.heuristic_run for p in never.pairs]
    summary = live.summary()
    assert {"live_noise_floor", "live_fresh_ci_low", "live_val_mean_difference"} <= set(summary)
    again = evaluate_live_many({"policy": run.policy_path}, configs, tmp_path, replicate=2,
                               references={"never": reference_controller("never")})  # fmt: skip
    assert again["policy"].mean_difference == live.mean_difference and len(list_raw_runs(tmp_path)) == 27


def test_a_policy_retrained_in_place_is_evaluated_again_not_read_back(tmp_path):
    """Run ids name a policy by its path; an episode on disk is reused only if its header's digest matches the
    file now at that path (a curriculum once reported a retrained policy's margin from its predecessor's episodes)."""
    import torch

    from tamiyo_models.agents import MLPActor, save_policy
    from tamiyo_models.agents.saved import policy_file_digest
    from tamiyo_models.evaluation import evaluate_live_many
    from tamiyo_models.world.features import FEATURE_SETS
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    features = FEATURE_SETS["base+lifecycle"]
    path = tmp_path / "p.pt"
    torch.manual_seed(0)
    save_policy(MLPActor(len(features), (8,)), features, path, algorithm="test", phase="phase1")
    configs = [tiny_config(seed, max_epochs=3) for seed in (401, 402)]
    evaluate_live_many({"policy": path}, configs, tmp_path / "live", null_orders=0)

    def policy_runs():
        runs = [read_raw_run(p) for p in list_raw_runs(tmp_path / "live")]
        return {r.run_id: (r.header["controller"].get("policy_sha256"), r.path.stat().st_mtime_ns) for r in runs
                if r.header["controller"].get("policy_sha256")}  # fmt: skip

    first = policy_runs()
    assert len(first) == 2 and {d for d, _ in first.values()} == {policy_file_digest(path)}
    evaluate_live_many({"policy": path}, configs, tmp_path / "live", null_orders=0)
    assert policy_runs() == first  # unchanged weights: read back, not rerun
    torch.manual_seed(1)
    save_policy(MLPActor(len(features), (8,)), features, path, algorithm="test", phase="phase1")  # retrained in place
    evaluate_live_many({"policy": path}, configs, tmp_path / "live", null_orders=0)
    again = policy_runs()
    assert set(again) == set(first) and {d for d, _ in again.values()} == {policy_file_digest(path)} != {first[k][0] for k in first}
