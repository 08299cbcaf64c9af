"""Phase 5: curriculum specs, promotion, the automatic curriculum's choice, missing data, and transfer to an
imagefolder dataset, on real (tiny) training and real live evaluation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tamiyo_models.curriculum import (
    CurriculumError,
    CurriculumRunConfig,
    CurriculumSpec,
    Measurement,
    PromotionRule,
    dataset_task,
    pick_task,
    run_curriculum,
    write_transfer_report,
    zero_shot,
)

TINY = {"base": {"max_epochs": 3, "telemetry": {"enabled": False}, "dataset": {"name": "synthetic"}}}


def _curriculum(tmp_path, extra_stage: str = "", **defaults) -> CurriculumSpec:
    settings = {"episodes_per_round": 4, "eval_configs": 3, "eval_batch_seed": 99} | defaults
    text = "name = \"tiny\"\n[defaults]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    text += "promotion = { min_margin_low = -0.25, max_episodes = 8 }\n"
    # "short" can only be left by spending its budget (no margin clears +50 pp); "long" by the default rule.
    for name, epochs, rule in (("short", 2, "promotion = { min_margin_low = 50.0 }\n"), ("long", 4, "")):
        text += (f'[[stages]]\nname = "{name}"\n{rule}spec = {{ base = {{ max_epochs = {epochs}, telemetry = {{ enabled = false }}, '
                 'dataset = { name = "synthetic" } } }\n')  # fmt: skip
    text += extra_stage
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return CurriculumSpec.load(path)


def test_the_shipped_curricula_load_and_say_which_stages_need_missing_data():
    for name in ("default", "digits-only"):
        spec = CurriculumSpec.load(name)
        assert [s.name for s in spec.stages][:2] == ["digits-short", "digits-hard"]
        assert spec.stage("digits-short").unavailable() is None  # digits ship with scikit-learn
        assert len(spec.stage("digits-hard").eval_configs_list()) == 16
    assert "fashion-mnist" in [t.name for t in CurriculumSpec.load("digits-only").transfer]


def test_bad_curricula_are_refused_naming_the_file_and_entry(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[stages]]\nname = "a"\nspec = "no-such-spec"\n')
    with pytest.raises(CurriculumError, match=r"bad.toml: stages\[0\]: generation spec 'no-such-spec' not found"):
        CurriculumSpec.load(bad)
    bad.write_text('name = "x"\n[[stages]]\nname = "a"\nspec = "arena"\nregime = "fm-wide"\n')
    with pytest.raises(CurriculumError, match=r"stages\[0\]: its spec has no regime 'fm-wide' \(regimes: fm-narrow, "):
        CurriculumSpec.load(bad)
    bad.write_text('name = "x"\n[[stages]]\nname = "a"\nspec = "arena"\npromotion = { min_margin = 0 }\n')
    with pytest.raises(CurriculumError, match=r"stages\[0\]: promotion: .*min_margin"):
        CurriculumSpec.load(bad)
    bad.write_text('name = "x"\n')
    with pytest.raises(CurriculumError, match="at least one"):
        CurriculumSpec.load(bad)


@pytest.mark.parametrize(
    ("low", "episodes", "promote"),
    [(None, 0, False), (-0.30, 4, False), (-0.25, 4, False), (-0.24, 4, True), (float("nan"), 4, False),
     (-1.0, 7, False), (-1.0, 8, True), (None, 8, True)],
)  # fmt: skip
def test_the_promotion_rule_is_exactly_its_two_conditions(low, episodes, promote):
    ok, why = PromotionRule(min_margin_low=-0.25, max_episodes=8).decide(low, episodes)
    assert ok is promote, why


def test_the_automatic_curriculum_picks_the_weakest_task_and_the_fastest_moving_one():
    tasks = ["a", "b", "c"]
    table = [Measurement("a", 16, +0.3), Measurement("b", 32, -0.4), Measurement("c", 48, +0.1)]
    assert pick_task(tasks, table, "weakest") == "b"
    assert pick_task(tasks, table[:2], "weakest") == "c"  # never measured: weakest by definition
    assert pick_task(tasks, [*table, Measurement("b", 64, +0.5)], "weakest") == "c"  # b improved; c is now lowest
    assert pick_task(tasks, [*table, Measurement("a", 64, -0.4), Measurement("c", 64, -0.4)], "weakest") == "a"  # tie: order
    # Progress: |margin change| per episode between each task's last two measurements.
    table2 = [*table, Measurement("a", 64, +0.4), Measurement("b", 80, -0.2), Measurement("c", 96, -0.7)]
    assert pick_task(tasks, table2, "progress") == "c"  # 0.8 pp over 48 episodes beats 0.6/48 and 0.1/48
    assert pick_task(tasks, table, "progress") == "a"  # not every task measured twice: the first such one
    with pytest.raises(ValueError, match="unknown curriculum strategy"):
        pick_task(tasks, table, "easiest")


def test_manual_curriculum_promotes_exactly_when_the_rule_says_and_skips_a_stage_without_data(tmp_path):
    missing = (f'[[stages]]\nname = "cifar"\nspec = {{ base = {{ max_epochs = 2, dataset = {{ name = "cifar10", '
               f'root = "{tmp_path / "nowhere"}" }} }} }}\n')  # fmt: skip
    spec = _curriculum(tmp_path, missing)
    lines = []
    config = CurriculumRunConfig(order="manual", budget_episodes=24, workers=2, record_dir=str(tmp_path / "raw"),
                                 episodes_per_iteration=4)  # fmt: skip
    result = run_curriculum(spec, config, tmp_path / "out", log=lines.append)
    assert "cifar" in result.skipped and "cifar-10-batches-py" in result.skipped["cifar"]
    assert any("stage cifar: skipped" in line and "cifar-10-batches-py" in line for line in lines)
    rules = {"short": PromotionRule(50.0, 8), "long": PromotionRule(-0.25, 8)}
    spent: dict[str, int] = {}
    stage_index = 0
    for r in result.rounds:
        # Stages in order, never one before its predecessor's promotion; after the last promotion, the rest of the
        # budget goes to the last stage (every order spends the same budget).
        assert r.stage == ["short", "long"][min(stage_index, 1)]
        spent[r.stage] = spent.get(r.stage, 0) + r.episodes
        expected = rules[r.stage].decide(r.low, spent[r.stage])[0] if stage_index < 2 else False
        assert r.promoted is expected, r
        stage_index += int(r.promoted)
    assert result.episodes_used == 24
    first, second = result.rounds[:2]
    assert (first.stage, first.promoted) == ("short", False) and "0/8" not in first.reason and "4/8 episodes" in first.reason
    assert (second.stage, second.promoted) == ("short", True) and "budget spent" in second.reason
    assert result.rounds[2].stage == "long"
    assert result.policy_path.exists()
    saved = json.loads((tmp_path / "out" / "curriculum.json").read_text())
    assert len(saved["rounds"]) == len(result.rounds) and "cifar" in saved["skipped"]


def test_zero_shot_transfer_runs_offline_on_a_generated_imagefolder_and_skips_missing_data(tmp_path):
    from PIL import Image

    from tamiyo_models.agents import MLPActor, save_policy
    from tamiyo_models.world.features import FEATURE_SETS

    root = tmp_path / "images"
    for cls, colour in (("red", (240, 20, 20)), ("blue", (20, 20, 240)), ("green", (20, 240, 20))):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (10 + i % 3, 10), tuple(max(0, c - 9 * i) for c in colour)).save(root / cls / f"{i}.png")
    features = FEATURE_SETS["base+lifecycle+task"]
    policy = save_policy(MLPActor(len(features), (16,)), features, tmp_path / "p.pt", algorithm="test", phase="phase1")
    task = dataset_task(f"imagefolder:{root}", max_epochs=2, widths=(2, 4, 8), eval_configs=2, image_size=8)
    result = zero_shot(policy, task, tmp_path / "live", workers=1, log=lambda *_: None)
    assert result.pairs == 2 and not result.skipped and result.meets_bar in (True, False)
    gone = zero_shot(policy, dataset_task(f"imagefolder:{tmp_path / 'absent'}"), tmp_path / "live2", log=lambda *_: None)
    assert gone.skipped and str(tmp_path / "absent") in gone.skipped and gone.meets_bar is None
    report = write_transfer_report([result, gone], [], tmp_path / "transfer.md")
    text = report.read_text()
    assert "| 2 |" in text and "skipped" in text and report.with_suffix(".json").exists()


def test_the_command_line_shows_a_curriculum_and_reports_transfer_to_an_imagefolder(tmp_path, capsys):
    from PIL import Image

    from tamiyo_models.agents import MLPActor, save_policy
    from tamiyo_models.cli import main
    from tamiyo_models.world.features import FEATURE_SETS

    assert main(["curriculum", "show", "--curriculum", "default"]) == 0
    shown = capsys.readouterr().out
    assert "stage digits-short" in shown and "transfer cifar10" in shown and "SKIPPED here: cifar10" in shown
    assert main(["curriculum", "show", "--curriculum", str(tmp_path / "none.toml")]) == 2
    assert "not found" in capsys.readouterr().err

    root = tmp_path / "images"
    for cls, colour in (("a", (240, 20, 20)), ("b", (20, 20, 240))):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (9, 9), tuple(max(0, c - 11 * i) for c in colour)).save(root / cls / f"{i}.png")
    features = FEATURE_SETS["base+lifecycle+task"]
    policy = save_policy(MLPActor(len(features), (16,)), features, tmp_path / "p.pt", algorithm="test", phase="phase1")
    code = main(["curriculum", "transfer", str(policy), "--task", "cifar10", "--dataset", f"imagefolder:{root}", "--configs", "2",
                 "--workers", "1", "--out", str(tmp_path / "t")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "cifar10: skipped" in out and "2 pairs" in out
    assert "| cifar10 | - | skipped" in (tmp_path / "t" / "transfer.md").read_text()


def first_rounds_alerts(folder) -> list[str]:
    return [a for r in json.loads((folder / "curriculum.json").read_text())["rounds"] for a in r["alerts"]]


def test_curriculum_and_transfer_assets_materialize_with_mlflow(tmp_path):
    import dagster as dg

    from assets.curriculum import curriculum_policy, transfer_report
    from assets.mlflow_resource import MlflowTrackingResource

    _curriculum(tmp_path)  # writes tiny.toml
    text = (tmp_path / "tiny.toml").read_text()
    text += '[[transfer]]\nname = "synthetic-long"\nspec = { base = { max_epochs = 5, telemetry = { enabled = false }, dataset = { name = "synthetic" } } }\n'
    (tmp_path / "tiny.toml").write_text(text)
    resources = {"mlflow": MlflowTrackingResource(root=str(tmp_path / "mlflow"))}
    curriculum = {"curriculum": str(tmp_path / "tiny.toml"), "budget_episodes": 8, "workers": 1, "initial_policy": "none",
                  "record_dir": str(tmp_path / "raw"), "out_dir": str(tmp_path / "cur")}  # fmt: skip
    run_config = {"ops": {
        "curriculum_policy": {"config": curriculum},
        "transfer_report": {"config": {"curriculum": str(tmp_path / "tiny.toml"), "workers": 1, "out_dir": str(tmp_path / "tr")}},
    }}  # fmt: skip
    # As the nightly job does: one round per materialization (the default), the next one resumed from the folder.
    first = dg.materialize([curriculum_policy], resources=resources, run_config={"ops": {"curriculum_policy": {"config": curriculum}}})
    meta = first.asset_materializations_for_node("curriculum_policy")[0].metadata
    assert (meta["episodes"].value, meta["new_rounds"].value, meta["finished"].value) == (4, 1, False)
    check = first.get_asset_check_evaluations()[0]
    assert check.check_name == "no_reward_hacking" and check.passed is (not first_rounds_alerts(tmp_path / "cur"))
    result = dg.materialize([curriculum_policy, transfer_report], resources=resources, run_config=run_config)
    assert result.success
    meta = result.asset_materializations_for_node("curriculum_policy")[0].metadata
    assert (meta["episodes"].value, meta["new_rounds"].value, meta["finished"].value) == (8, 1, True)
    assert "| 0 | short |" in meta["rounds"].value and "| 1 | short |" in meta["rounds"].value
    report = result.asset_materializations_for_node("transfer_report")[0].metadata
    assert "synthetic-long" in report["report"].value and meta["policy_file"].value == report["policy"].value
    client = resources["mlflow"].tracker().client
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    stages = {r.data.tags.get("tamiyo.curriculum_stage") for r in runs}
    assert {"short"} <= stages and any(r.info.run_name == "transfer-report" for r in runs)
    # Registered as Phase 5 (evaluated as such by the nightly report), not as tonight's Phase 4 candidate.
    assert str(client.get_model_version_by_alias("tamiyo-phase5-curriculum", "candidate").version) == "2"
    assert not any(m.name == "tamiyo-phase4-online" for m in client.search_registered_models())


def test_fine_tuning_counts_the_episodes_to_the_bar_and_shares_the_heuristic_episodes(tmp_path):
    from tamiyo_models.curriculum import Stage, fine_tune_efficiency
    from tamiyo_models.curriculum.transfer import ZERO_SHOT_BAR

    task = Stage(name="synthetic", spec=TINY, eval_configs=2, eval_batch_seed=5)
    result = fine_tune_efficiency(task, None, tmp_path / "ft", budget_episodes=8, episodes_per_round=4, workers=1,
                                  live_dir=tmp_path / "live", log=lambda *_: None)  # fmt: skip
    rounds = result["rounds"]
    assert result["initial_policy"] == "fresh" and 1 <= len(rounds) <= 2 and rounds[0]["episodes_total"] == 4
    first_clear = next((r["episodes_total"] for r in rounds if r["low"] > ZERO_SHOT_BAR), None)
    assert result["episodes_to_bar"] == first_clear  # stops at the first round whose interval clears the bar
    assert (tmp_path / "live" / "synthetic").is_dir()  # evaluation episodes where the caller said


def test_fine_tuning_toward_a_target_counts_the_episodes_to_its_score_and_plots_the_curves(tmp_path):
    from tamiyo_models.curriculum import Stage, fine_tune_efficiency
    from tamiyo_models.curriculum.transfer import target_margin, write_transfer_report

    task = Stage(name="synthetic", spec=TINY, eval_configs=2, eval_batch_seed=5)
    result = fine_tune_efficiency(task, None, tmp_path / "ft", budget_episodes=8, episodes_per_round=4, workers=1,
                                  live_dir=tmp_path / "live", target="never", log=lambda *_: None)  # fmt: skip
    # The target's own margin over the heuristic on the same held-out configurations, read back unchanged.
    assert result["target"] == "never" and result["target_margin"] == target_margin(task, "never", tmp_path / "live", workers=1)
    first = next((r["episodes_total"] for r in result["rounds"] if r["margin"] >= result["target_margin"]), None)
    assert result["episodes_to_target"] == first
    report = write_transfer_report([], [result], tmp_path / "transfer.md")
    text = report.read_text()
    assert "| synthetic | fresh |" in text and "never (" in text and "transfer-fine-tuning.png" in text
    assert (tmp_path / "transfer-fine-tuning.png").stat().st_size > 5000


def test_a_curriculum_resumed_round_by_round_ends_where_the_uninterrupted_one_does(tmp_path):
    """The nightly job runs one round at a time: two calls of one round each make the same rounds, margins and
    policy as one call of two; other learner settings on the same folder are refused, naming the file and field;
    a finished curriculum runs nothing more until its budget is raised."""
    import torch

    spec = _curriculum(tmp_path)
    config = CurriculumRunConfig(order="manual", budget_episodes=8, workers=1, record_dir=None, episodes_per_iteration=4,
                                 live_dir=str(tmp_path / "live"))  # fmt: skip
    straight = run_curriculum(spec, config, tmp_path / "straight", log=lambda *_: None)
    first = run_curriculum(spec, config, tmp_path / "nightly", max_rounds=1, log=lambda *_: None)
    assert (first.new_rounds, first.episodes_used, first.finished) == (1, 4, False)
    with pytest.raises(ValueError, match=r"curriculum.json: field config.order is 'manual', this run asks for 'weakest'"):
        run_curriculum(spec, dataclasses.replace(config, order="weakest"), tmp_path / "nightly", max_rounds=1)
    lines: list[str] = []
    second = run_curriculum(spec, config, tmp_path / "nightly", max_rounds=1, log=lines.append)
    assert any("resuming after round 0" in line for line in lines)
    assert (second.new_rounds, second.episodes_used, second.finished) == (1, 8, True)
    key = lambda r: (r.round, r.stage, r.episodes, r.episodes_total, r.margin, r.low, r.high, r.promoted)  # noqa: E731
    assert [key(r) for r in second.rounds] == [key(r) for r in straight.rounds]
    for a, b in zip(torch.load(straight.policy_path, weights_only=False)["state_dict"].values(),
                    torch.load(second.policy_path, weights_only=False)["state_dict"].values()):  # fmt: skip
        assert torch.equal(a, b)
    assert run_curriculum(spec, config, tmp_path / "nightly", max_rounds=1, log=lambda *_: None).new_rounds == 0
    more = run_curriculum(spec, dataclasses.replace(config, budget_episodes=12), tmp_path / "nightly", log=lambda *_: None)
    assert (more.new_rounds, more.episodes_used, more.finished) == (1, 12, True)


def test_the_nightly_champion_and_a_fixed_schedule_transfer_zero_shot(tmp_path, capsys):
    """Issue 35 asks for zero-shot transfer of the nightly champion too: a champion that is a fixed schedule is
    evaluated as the controller it is, read from the warehouse's champion_history."""
    from tamiyo_models.cli import main
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.nightly.champion import ensure_history
    from tamiyo_models.warehouse import open_warehouse

    spec = _curriculum(tmp_path, extra_stage='[[transfer]]\nname = "unseen"\nspec = { base = { max_epochs = 3, dataset = { name = "synthetic" } } }\n')
    base = ["curriculum", "transfer", "--curriculum", spec.source, "--configs", "2", "--workers", "1"]
    assert main([*base[:2], "champion", *base[2:], "--warehouse", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    warehouse = tmp_path / "w.duckdb"
    con = open_warehouse(warehouse)
    ensure_history(con)
    schedule = reference_controller("fixed:conv_heavy@0")
    con.execute("INSERT INTO champion_history (night, score, arm, role, champion, controller_json, decision, champion_after) "
                "VALUES ('2026-12-05', 'test', 'fixed:conv_heavy@0', 'grid', 'heuristic', ?, 'promoted', 'fixed:conv_heavy@0')",
                [json.dumps(schedule.to_dict())])  # fmt: skip
    con.close()
    assert main([*base[:2], "champion", *base[2:], "--warehouse", str(warehouse), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "unseen:" in out and "2 pairs" in out
    report = json.loads((tmp_path / "c" / "transfer.json").read_text())["zero_shot"][0]
    assert report["policy"] == "champion fixed:conv_heavy@0 (since 2026-12-05)" and report["pairs"] == 2
    # The same controller by its name gives the same pairs (its episodes are read back, not rerun).
    assert main([*base[:2], "fixed:conv_heavy@0", *base[2:], "--out", str(tmp_path / "c")]) == 0
    again = json.loads((tmp_path / "c" / "transfer.json").read_text())["zero_shot"][0]
    assert (again["margin"], again["pairs"]) == (report["margin"], report["pairs"])
    assert main([*base[:2], "fixed:conv_heavy@0", *base[2:], "--fine-tune", "4", "--out", str(tmp_path / "c")]) == 2
    assert "no weights to fine-tune" in capsys.readouterr().err
    assert main([*base[:2], "no-such-thing", *base[2:], "--out", str(tmp_path / "c")]) == 2
    assert "no policy file, not 'champion', and no controller name" in capsys.readouterr().err

    # Head to head: the policy minus another controller on the same pairs. Against itself: exactly 0, acting alike
    # everywhere; against never growing: the zero-shot margins' difference, acting differently on every pair.
    assert main([*base[:2], "fixed:conv_heavy@0", *base[2:], "--against", "fixed:conv_heavy@0", "--against", "never",
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    versus = json.loads((tmp_path / "c" / "transfer.json").read_text())["head_to_head"]
    itself, never = versus
    assert (itself["margin"], itself["differ"], itself["pairs"]) == (0.0, 0, 2) and itself["against"] == "fixed:conv_heavy@0"
    assert never["differ"] == 2 and never["pairs"] == 2
    assert never["noise_floor"] == never["noise_floor"]  # finite: the other controller reran on a fresh order
    assert main([*base[:2], "never", *base[2:], "--out", str(tmp_path / "c")]) == 0
    margin_never = json.loads((tmp_path / "c" / "transfer.json").read_text())["zero_shot"][0]["margin"]
    assert never["margin"] == pytest.approx(report["margin"] - margin_never)
    assert "## Head to head" not in (tmp_path / "c" / "transfer.md").read_text()  # this run had no --against
    assert main([*base[:2], "never", *base[2:], "--against", "fixed:conv_heavy@0", "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "transfer.md").read_text()
    assert "## Head to head" in text and "| unseen | never - fixed:conv_heavy@0 | 2 |" in text
    assert main([*base[:2], "never", *base[2:], "--against", "no-such-thing", "--out", str(tmp_path / "c")]) == 2
    assert "--against" in capsys.readouterr().err


def test_a_two_slot_curriculum_trains_the_factored_action_and_fine_tunes_a_two_slot_policy(tmp_path):
    """The nightly's action space (two slots) through a curriculum: the learner scores every (operation, slot,
    blueprint) action and reads the per-slot features, and a two-slot policy fine-tunes on a two-slot task (it was
    refused as a one-slot space's before); stages of different slot counts are refused before any episode."""
    from tamiyo_models.agents.saved import load_policy
    from tamiyo_models.curriculum import Stage, fine_tune_efficiency
    from tamiyo_models.world.actions import action_names

    two = (f'[[stages]]\nname = "two-slots"\nspec = {{ base = {{ max_epochs = 3, telemetry = {{ enabled = false }}, '
           'dataset = { name = "synthetic" }, host = { widths = [2, 4, 8], slots = [0, 1] } } }\n')  # fmt: skip
    text = 'name = "two"\n[defaults]\nepisodes_per_round = 4\neval_configs = 2\neval_batch_seed = 7\n' + two
    (tmp_path / "two.toml").write_text(text)
    config = CurriculumRunConfig(order="manual", budget_episodes=4, workers=1, record_dir=None, episodes_per_iteration=4)
    result = run_curriculum(CurriculumSpec.load(tmp_path / "two.toml"), config, tmp_path / "out", log=lambda *_: None)
    _, payload = load_policy(result.policy_path)
    assert tuple(payload["fine_actions"]) == tuple(action_names(2)) and any("slot" in f for f in payload["feature_names"])

    two_slot_host = {"base": {**TINY["base"], "host": {"widths": [2, 4, 8], "slots": [0, 1]}}}
    task = Stage(name="two-slots", spec=two_slot_host, eval_configs=2, eval_batch_seed=5)
    tuned = fine_tune_efficiency(task, str(result.policy_path), tmp_path / "ft", budget_episodes=4, episodes_per_round=4,
                                 workers=1, live_dir=tmp_path / "live", log=lambda *_: None)  # fmt: skip
    assert tuned["rounds"][0]["episodes_total"] == 4
    assert tuple(load_policy(tuned["rounds"][0]["policy"])[1]["fine_actions"]) == tuple(action_names(2))

    (tmp_path / "mixed.toml").write_text(text + two.replace('"two-slots"', '"one-slot"').replace("slots = [0, 1]", "slots = [1]"))
    with pytest.raises(ValueError, match=r"different seed slots \(two-slots: 2, one-slot: 1\)"):
        run_curriculum(CurriculumSpec.load(tmp_path / "mixed.toml"), config, tmp_path / "mixed", log=lambda *_: None)
