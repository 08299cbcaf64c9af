"""The arena's yardstick: a test split no decision ever sees, reference controllers that act as named, task
descriptors in the observation, a null control that changes only the data order, regimes in specs, and the
headroom analysis' numbers against hand-computed ones."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tamiyo_models.controllers import (
    Controller,
    ControllerConfig,
    HeuristicController,
    build_controller,
    reference_controller,
)
from tamiyo_models.episodes.episode import Episode, EpisodeConfig, EpisodeResult, EpisodeRun, run_episode
from tamiyo_models.world.datasets import DatasetConfig, load_task_data
from tamiyo_models.world.rawrun import read_raw_run


def _config(seed: int = 3, controller: ControllerConfig | None = None, **kwargs) -> EpisodeConfig:
    return EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=kwargs.pop("max_epochs", 8), seed=seed,
                         controller=controller or ControllerConfig(), **kwargs)  # fmt: skip


class Recording(Controller):
    """The heuristic, keeping every observation it was shown."""

    name = "recording"

    def __init__(self):
        self.inner, self.seen = HeuristicController(), []

    def reset(self, rng) -> None:
        super().reset(rng)
        self.inner.reset(rng)

    def decide(self, observation):
        self.seen.append(observation)
        return self.inner.decide(observation)


def _run_with_data(config, data, out_dir, controller):
    episode = Episode(config, data, config.run_id())
    controller.reset(episode.controller_rng)
    episode.measure(initial=True)
    return EpisodeRun(config, out_dir, controller, episode=episode).run_to(config.max_epochs)


def test_the_test_split_never_reaches_the_controller_gates_reward_or_telemetry(tmp_path):
    """Same episode twice, the second with the test split's labels scrambled: every step (observation, action,
    gate, reward, telemetry) is identical; only the footer's test score moves."""
    config = _config(seed=5, max_epochs=10, score_epochs=3, controller=reference_controller("eager"))
    data = load_task_data(config.dataset)
    scrambled = dataclasses.replace(data, test_y=(data.test_y + 1) % data.num_classes)
    first, second = Recording(), Recording()
    a = _run_with_data(config, data, tmp_path / "a", first)
    b = _run_with_data(config, scrambled, tmp_path / "b", second)
    run_a, run_b = read_raw_run(a.path), read_raw_run(b.path)
    strip = lambda step: {k: v for k, v in step.items() if k != "timing"}  # noqa: E731
    assert [strip(s) for s in run_a.steps] == [strip(s) for s in run_b.steps]
    assert [o.features for o in first.seen] == [o.features for o in second.seen]
    assert run_a.footer["final_test_accuracy"] != run_b.footer["final_test_accuracy"]
    assert run_a.footer["final_val_accuracy"] == run_b.footer["final_val_accuracy"]
    # nothing a decision reads mentions the test split
    for observation in first.seen:
        assert not any("test" in key for key in observation.features)
        assert "test" not in str(sorted(observation.record))
    # the score: the test split after the last epoch; the last-k mean over the last 3 epochs
    assert [s["epoch"] for s in run_a.footer["test_scores"]] == [8, 9, 10]
    assert a.final_test_accuracy == run_a.footer["test_scores"][-1]["accuracy"]
    assert a.test_accuracy_last == pytest.approx(np.mean([s["accuracy"] for s in run_a.footer["test_scores"]]))


def test_null_control_changes_only_the_data_order(tmp_path):
    base = _config(seed=11)
    null = dataclasses.replace(base, data_order_seed=12345)
    data = load_task_data(base.dataset)
    e0, e1 = Episode(base, data, "a"), Episode(null, data, "b")
    for (name, p0), p1 in zip(e0.model.state_dict().items(), e1.model.state_dict().values()):
        assert torch.equal(p0, p1), name  # same initial weights
    n = len(data.train_x)
    assert not torch.equal(torch.randperm(n, generator=e0.data_generator), torch.randperm(n, generator=e1.data_generator))
    assert e0.controller_rng.random() == e1.controller_rng.random()  # the controller's stream is the episode seed's
    r0, r1 = run_episode(base, tmp_path), run_episode(null, tmp_path)
    assert r0.run_id != r1.run_id and r0.final_test_accuracy != r1.final_test_accuracy


def test_an_episode_leaves_the_callers_random_stream_alone(tmp_path):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run_episode(_config(seed=2, max_epochs=3, controller=reference_controller("fixed:conv_heavy@1")), tmp_path)
    assert torch.equal(torch.rand(3), expected)


def _actions(path) -> list[str]:
    return [s["action"]["fine"] for s in read_raw_run(path).steps]


def test_reference_controllers_act_as_named(tmp_path):
    never = run_episode(_config(controller=reference_controller("never")), tmp_path)
    assert set(_actions(never.path)) == {"WAIT"} and never.seeds_created == 0

    fixed = run_episode(_config(max_epochs=12, controller=reference_controller("fixed:conv_heavy@3")), tmp_path)
    steps = read_raw_run(fixed.path).steps
    assert [s["action"]["fine"] for s in steps[:4]] == ["WAIT", "WAIT", "WAIT", "GERMINATE_conv_heavy"]
    assert steps[3]["observation"]["epoch"] == 3
    for step in steps[4:]:
        # ADVANCE whenever it is legal, never CULL, never a second graft
        expected = "ADVANCE" if "ADVANCE" in step["action"]["legal"] else "WAIT"
        assert step["action"]["fine"] == expected and step["action"]["propensity"] == 1.0
    assert read_raw_run(fixed.path).header["controller"]["name"] == "fixed:conv_heavy@3"

    only_heavy = reference_controller("heuristic:conv_heavy")
    assert only_heavy.heuristic.blueprints == ("conv_heavy",)
    eager = reference_controller("eager").heuristic
    assert (eager.min_epochs_before_germinate, eager.plateau_epochs_to_germinate, eager.training_advance_improvement) == (2, 1, 0.5)
    random = run_episode(_config(controller=reference_controller("random")), tmp_path)
    for step in read_raw_run(random.path).steps:
        probs = step["action"]["probabilities"]
        assert probs["WAIT"] > 0 and sum(probs.values()) == pytest.approx(1.0)
    for bad in ("fixed:conv_heavy", "fixed:nope@3", "heuristic:", "policy", "gardener"):
        with pytest.raises(ValueError):
            reference_controller(bad)
    # a reference's label travels with its configuration and names the controller
    assert build_controller(reference_controller("fixed:norm@2")).name == "fixed:norm@2"


def test_task_descriptors_of_the_default_host():
    from tamiyo_models.world.features import TASK_FEATURES, observation_features, task_feature_defaults

    config = EpisodeConfig()  # digits, host (2, 4, 8), one slot after stage 1
    episode = Episode(config, load_task_data(config.dataset), "x")
    episode.measure(initial=True)
    features = observation_features(episode.observation_record())
    # conv 1->2 (18) + BN (4), conv 2->4 (72) + BN (8), conv 4->8 (288) + BN (16), linear 8->10 (90) = 496
    assert features["task_log10_host_parameters"] == pytest.approx(math.log10(496))
    assert (features["task_host_depth"], features["task_host_width_first"], features["task_host_width_last"]) == (3, 2, 8)
    assert (features["task_slot_channels"], features["task_seed_slots"]) == (4, 1)
    assert features["task_log10_train_size"] == pytest.approx(math.log10(1797 - 2 * 359))
    assert (features["task_num_classes"], features["task_input_channels"], features["task_input_size"]) == (10, 1, 8)
    # what a policy substitutes for runs recorded before the task group existed is exactly this task
    assert task_feature_defaults() == {k: features[k] for k in TASK_FEATURES}
    old = {k: v for k, v in episode.observation_record().items() if k != "task"}
    assert all(math.isnan(observation_features(old)[k]) for k in TASK_FEATURES)


def test_spec_regimes_tag_configurations_and_skip_missing_data(tmp_path):
    from tamiyo_models.episodes.generation import GenerationSpec

    spec = GenerationSpec.from_dict({
        "name": "two", "base": {"max_epochs": 5, "dataset": {"name": "synthetic"}},
        "regimes": [
            {"name": "narrow", "base": {"host": {"widths": [2, 4, 8]}}},
            {"name": "wide", "weight": 3, "base": {"host": {"widths": [8, 16, 32]}, "dataset": {"label_noise": 0.2}}},
            {"name": "elsewhere", "base": {"dataset": {"name": "fashion-mnist", "root": str(tmp_path / "none")}}},
        ],
    })  # fmt: skip
    assert spec.regime_names == ["narrow", "wide"] and "dataset-fashion-mnist" in spec.unavailable["elsewhere"]
    wide = spec.sample_regime("wide", 3, seed=1)
    assert all(c.regime() == "wide" and c.host.widths == (8, 16, 32) for c in wide)
    assert all(c.dataset.name == "synthetic" and c.dataset.label_noise == 0.2 for c in wide)  # merged, not replaced
    mixed = spec.sample(40, seed=2)
    assert {c.regime() for c in mixed} == {"narrow", "wide"}
    assert sum(c.regime() == "wide" for c in mixed) > sum(c.regime() == "narrow" for c in mixed)
    assert [c.run_id() for c in spec.sample(40, seed=2)] == [c.run_id() for c in mixed]  # reproducible
    with pytest.raises(ValueError, match="cannot run here"):
        spec.sample_regime("elsewhere", 1, seed=0)


# ----- the headroom analysis against hand-computed numbers ------------------------------------------------
def _result(test: float, val: float | None = None) -> EpisodeResult:
    return EpisodeResult("r", None, "complete", 4, val if val is not None else test, test, 1, 0, 0, 0.0, 1.0,
                         final_test_accuracy=test, test_accuracy_last=test, final_parameters=100)  # fmt: skip


def test_headroom_summary_reproduces_hand_computed_numbers():
    from tamiyo_models.common.stats import expected_best_of, pairs_needed
    from tamiyo_models.evaluation.headroom import HeadroomConfig, markdown_report, summarise
    from tamiyo_models.evaluation.paired import EpisodeOutcome, PairedRuns

    configs = [dataclasses.replace(_config(seed=s), tags={"regime": "r1"}) for s in range(4)]
    arms = {"heuristic": ControllerConfig(), "never": reference_controller("never"), "fixed": reference_controller("fixed:conv_heavy@6")}
    table = {  # (configuration, arm, order): test accuracy
        **{(i, "heuristic", 0): v for i, v in enumerate([80.0, 81.0, 82.0, 83.0])},
        **{(i, "never", 0): v for i, v in enumerate([80.0, 80.0, 83.0, 83.0])},  # diffs 0, -1, +1, 0
        **{(i, "fixed", 0): v for i, v in enumerate([81.0, 82.0, 83.0, 85.0])},  # diffs +1, +1, +1, +2
        **{(i, "heuristic", 1): v for i, v in enumerate([80.5, 80.0, 82.5, 83.0])},  # null diffs +.5, -1, +.5, 0
        **{(i, "fixed", 1): v for i, v in enumerate([81.5, 81.0, 83.5, 84.0])},  # fresh diffs +1, +1, +1, +1
    }
    runs = PairedRuns(configs, arms, "heuristic")
    for (i, arm, order), value in table.items():
        runs.outcomes[(i, arm, order)] = EpisodeOutcome(i, "r1", arm, order, _result(value))
    result = summarise(runs, HeadroomConfig(controllers=("heuristic", "never", "fixed"), configs_per_regime=4, resamples=2000))
    (regime,) = result.regimes
    fixed, never = regime.row("fixed"), regime.row("never")
    assert fixed.difference.mean == pytest.approx(1.25) and (fixed.wins, fixed.ties, fixed.losses) == (4, 0, 0)
    assert never.difference.mean == pytest.approx(0.0) and (never.wins, never.ties, never.losses) == (1, 2, 1)
    assert fixed.improvement_probability.mean == pytest.approx(1.0) and never.improvement_probability.mean == pytest.approx(0.5)
    assert fixed.fresh.mean == pytest.approx(1.0) and fixed.fresh.n == 4 and never.fresh.n == 0
    assert fixed.reproducible and not never.reproducible and regime.best_arm == "fixed"
    floor = math.sqrt((0.25 + 1 + 0.25 + 0) / 4)
    assert regime.noise_floor_test == pytest.approx(floor)
    assert regime.pairs_for_half_pp == pairs_needed(floor, 0.5) == math.ceil(((1.959964 + 0.841621) * floor / 0.5) ** 2)
    # best of the two alternatives per configuration: +1, +1, +1, +2
    assert regime.best_in_hindsight.mean == pytest.approx(1.25) and regime.best_in_hindsight_fresh.mean == pytest.approx(1.0)
    # E[max of 2 standard normals] = 1/sqrt(pi)
    assert regime.null_best_of_n == pytest.approx(floor / math.sqrt(2) / math.sqrt(math.pi), rel=1e-6)
    assert expected_best_of(1, 3.0) == 0.0
    assert regime.null_best_empirical == pytest.approx(np.mean([0.5, -1.0, 0.5, 0.0]))
    report = markdown_report(result)
    assert "against `heuristic`" in report and "| fixed | 82.75 | +1.25 [" in report
    # Another reference: every difference and heading is against it (the headroom over a fixed schedule).
    runs.reference = "fixed"
    against_fixed = summarise(runs, HeadroomConfig(controllers=("heuristic", "never", "fixed"), reference="fixed",
                                                   configs_per_regime=4, resamples=2000))  # fmt: skip
    assert against_fixed.regimes[0].row("heuristic").difference.mean == pytest.approx(-1.25)
    report = markdown_report(against_fixed)
    assert "against `fixed`" in report and "vs fixed [95% CI]" in report and "heuristic rerun" not in report


def test_fresh_orders_and_the_null_mean_are_resampled_by_configuration():
    """Two claims the headroom report must not overstate: an arm rerun on fresh orders only where it won in
    hindsight is not "reproducible" (its fresh interval covers a chosen subset), and the null mean's interval
    resamples configurations, not the fresh orders that share a configuration's original run."""
    from tamiyo_models.evaluation.headroom import HeadroomConfig, markdown_report, summarise
    from tamiyo_models.evaluation.paired import EpisodeOutcome, PairedRuns

    configs = [dataclasses.replace(_config(seed=s), tags={"regime": "r1"}) for s in range(4)]
    arms = {"heuristic": ControllerConfig(), "fixed": reference_controller("fixed:conv_heavy@6")}
    table = {
        **{(i, "heuristic", 0): v for i, v in enumerate([80.0, 81.0, 82.0, 83.0])},
        **{(i, "heuristic", 1): v for i, v in enumerate([80.5, 80.0, 82.5, 83.0])},  # null +.5, -1, +.5, 0
        **{(i, "heuristic", 2): v for i, v in enumerate([80.5, 81.0, 81.5, 84.0])},  # null +.5, 0, -.5, +1
        **{(i, "fixed", 0): v for i, v in enumerate([82.0, 82.0, 83.0, 84.0])},  # +2, +1, +1, +1
        (0, "fixed", 1): 82.0, (1, "fixed", 1): 81.5,  # rerun on 2 configurations only: +1.5, +1.5
    }
    runs = PairedRuns(configs, arms, "heuristic")
    for (i, arm, order), value in table.items():
        runs.outcomes[(i, arm, order)] = EpisodeOutcome(i, "r1", arm, order, _result(value))
    assert runs.null_by_configuration([0, 1, 2, 3]).tolist() == [0.5, -0.5, 0.0, 0.5]
    config = HeadroomConfig(controllers=("heuristic", "fixed"), configs_per_regime=4, resamples=2000)
    result = summarise(runs, config)
    (regime,) = result.regimes
    fixed = regime.row("fixed")
    assert fixed.difference.above_zero and fixed.fresh.above_zero and fixed.fresh.n == 2
    assert not fixed.fresh_on_all and not fixed.reproducible
    assert regime.null_mean.n == 4 and regime.null_mean.mean == pytest.approx(0.125)
    report = markdown_report(result)
    assert "+1.50 [+1.50, +1.50] on 2 of 4" in report and "✔" not in report.split("## Regime")[1]


def test_a_difference_that_averages_to_zero_is_a_tie():
    """Scores are float32 percentages: one policy a test image ahead of the reference and another one behind
    pool to -3.8e-06 pp, not 0. That is a tie, not a loss; one image (0.01 pp) averaged over 6 episodes is not."""
    from tamiyo_models.common.stats import TIE_TOLERANCE, probability_of_improvement, win_tie_loss

    ref, ahead, behind = (float(np.float32(v)) for v in (80.12, 80.13, 80.11))
    pooled = ((ahead - ref) + (behind - ref)) / 2
    assert pooled != 0 and abs(pooled) < TIE_TOLERANCE
    one_image_in_six = (float(np.float32(80.13)) - float(np.float32(80.12))) / 6
    assert win_tie_loss([pooled, pooled, one_image_in_six, -one_image_in_six]) == (1, 2, 1)
    assert probability_of_improvement([pooled, one_image_in_six], resamples=500).mean == pytest.approx(0.75)


def test_headroom_runs_end_to_end_and_resumes(tmp_path):
    from tamiyo_models.evaluation.headroom import HeadroomConfig, analyse_headroom

    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[base]\nmax_epochs = 4\n[base.dataset]\nname = "synthetic"\n'
                    '[[regimes]]\nname = "narrow"\n[[regimes]]\nname = "mid"\nbase = { host = { widths = [4, 8, 16] } }\n')  # fmt: skip
    config = HeadroomConfig(spec=str(spec), configs_per_regime=2, controllers=("heuristic", "never", "fixed:conv_heavy@1"),
                            replicate=1, workers=1, resamples=500)  # fmt: skip
    first = analyse_headroom(config, tmp_path / "out", log=lambda *_: None)
    assert [r.regime for r in first.regimes] == ["narrow", "mid"]
    files = sorted((tmp_path / "out" / "episodes").glob("*.jsonl"))
    # 2 regimes x 2 configurations x (3 controllers + the heuristic's fresh order + the replicated arms' fresh order)
    assert 2 * 2 * 4 < len(files) <= 2 * 2 * 6
    report = first.files["markdown"].read_text()
    assert "Regime `narrow`" in report and "Noise floor" in report and "fixed:conv_heavy@1" in report
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = analyse_headroom(config, tmp_path / "out", log=lambda *_: None)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "out" / "episodes").glob("*.jsonl"))] == mtimes  # read back
    assert again.regimes[0].row("never").difference == first.regimes[0].row("never").difference


def test_headroom_asset_materializes_with_a_report(tmp_path):
    import dagster as dg

    from assets.analysis import headroom_report

    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[base]\nmax_epochs = 3\n[base.dataset]\nname = "synthetic"\n[[regimes]]\nname = "only"\n')
    run_config = {"ops": {"headroom_report": {"config": {
        "spec": str(spec), "configs_per_regime": 2, "controllers": ["heuristic", "never"], "replicate": 1, "workers": 1,
        "out_dir": str(tmp_path / "report")}}}}  # fmt: skip
    result = dg.materialize([headroom_report], run_config=run_config)
    assert result.success
    metadata = result.asset_materializations_for_node("headroom_report")[0].metadata
    assert metadata["regimes"].value == 1 and metadata["only_best"].value == "never"
    assert (tmp_path / "report" / "headroom.html").exists() and "| only |" in metadata["summary"].value


def test_the_arena_v2_candidates_charge_rent_use_two_slots_and_hide_label_noise():
    from tamiyo_models.episodes.generation import GenerationSpec
    from tamiyo_models.world.features import TASK_FEATURES

    configs = GenerationSpec.load("arena-v2-candidates").sample(30, seed=3)
    assert {c.rent for c in configs} == {1.0} and {c.host.slots for c in configs} == {(0, 1)}
    noise = {round(c.dataset.label_noise, 6) for c in configs}
    assert len(noise) > 20 and max(noise) <= 0.35  # drawn per configuration
    assert not any("noise" in name for name in TASK_FEATURES)  # and not among what a controller is told
