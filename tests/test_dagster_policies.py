"""The policy and report assets through a real Dagster materialization: a tiny real warehouse, real training,
real MLflow on sqlite in tmp, real live paired episodes; lineage tags carry the Dagster run id."""

import json

import dagster as dg
from policy_fixtures import build_warehouse

from assets.mlflow_resource import MlflowTrackingResource
from assets.policies import phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy
from assets.reports import off_policy_report, policy_evaluation_report
from assets.resources import DatasetRootResource, RawLandingResource, WarehouseResource
from tamiyo_models.agents.saved import load_policy

LIVE_SPEC = """
name = "live-test"
[base]
max_epochs = 3
[base.dataset]
name = "synthetic"
"""
# FQE's defaults (1,500 updates per checkpoint, 4,000 for the report) were most of this file's time
QUICK_FQE = {"selection_fqe_updates": 150, "report_fqe_updates": 300}


def test_policies_and_report_materialize_with_lineage(tmp_path):
    warehouse = build_warehouse(tmp_path / "data")
    spec = tmp_path / "live.toml"
    spec.write_text(LIVE_SPEC)
    mlflow = MlflowTrackingResource(root=str(tmp_path / "mlflow"))
    resources = {
        "warehouse": WarehouseResource(path=str(warehouse)),
        "raw_runs": RawLandingResource(folder=str(tmp_path / "data" / "raw")),
        "dataset_root": DatasetRootResource(root=str(tmp_path / "datasets")),
        "mlflow": mlflow,
    }
    quick = {"controllers": ["random"], "epochs": 2, "batch_size": 16, "out_dir": str(tmp_path / "policies")}
    run_config = {"ops": {
        "phase1_imitation_policy": {"config": quick},
        "phase2_weighted_policy": {"config": {**quick, "variants": ["B", "C"]}},
        "phase3_offline_policy": {"config": {"algorithms": ["cql"], "updates": 200, **QUICK_FQE, "out_dir": str(tmp_path / "policies")}},
        "policy_evaluation_report": {"config": {"episodes": 2, "spec": str(spec), "out_dir": str(tmp_path / "reports"),
                                                "references": ["never"]}},
        "off_policy_report": {"config": {"updates": 100, "references": ["never"], "out_dir": str(tmp_path / "ope"),
                                         "live_comparison": str(tmp_path / "reports" / "comparison.json")}},
    }}  # fmt: skip
    result = dg.materialize([phase1_imitation_policy, phase2_weighted_policy, phase3_offline_policy, policy_evaluation_report,
                             off_policy_report], resources=resources, run_config=run_config)  # fmt: skip
    assert result.success
    # Phase 3 starts from what the Phase 1 asset produced, and its checks ran on held-out states
    phase3 = result.asset_materializations_for_node("phase3_offline_policy")[0].metadata
    assert phase3["parent"].value.startswith("tamiyo-phase1-imitation/") and phase3["cql_model_version"].value
    learned = json.loads(load_policy(phase3["cql_policy_file"].value)[1]["metadata"]["config"])
    assert (learned["selection_fqe"]["updates"], learned["report_fqe"]["updates"]) == (150, 300)  # the asset's FQE budget
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"weights_finite": True, "acts_legally_on_held_out": True}
    ope = result.asset_materializations_for_node("off_policy_report")[0].metadata
    assert "phase3_cql" in ope["report"].value or "tamiyo-phase3-offline" in ope["report"].value
    phase1 = result.asset_materializations_for_node("phase1_imitation_policy")[0].metadata
    assert 0 <= phase1["val_balanced_accuracy"].value <= 1
    phase2_meta = result.asset_materializations_for_node("phase2_weighted_policy")[0].metadata
    assert phase2_meta["variants"].value == "B, C" and phase2_meta["B_model_version"].value != phase2_meta["C_model_version"].value
    report = result.asset_materializations_for_node("policy_evaluation_report")[0].metadata
    # Phase 1 and both Phase 2 variants, side by side on the same heuristic episodes
    # The asset page's table: one row per candidate, four short columns, rounded numbers, no image to break.
    text = report["report"].value
    rows = [line for line in text.splitlines() if line.startswith("| phase")]
    assert [r.split(" | ")[0] for r in rows] == ["| phase1", "| phase2_B", "| phase2_C", "| phase3_cql"]
    assert "vs heuristic" in text and "![" not in text and max(len(line) for line in text.splitlines()) <= 80
    floats = {k: v.value for k, v in report.items() if isinstance(v.value, float)}
    assert floats and {k: v for k, v in floats.items() if v == v and round(v, 4) != v} == {}  # no 16-digit floats (NaN: a class absent)
    assert report["report_html"].value.endswith("comparison.html") and report["report_html_link"].value.startswith("file://")
    assert {"phase1_live_mean_difference", "phase2_B_live_mean_difference", "phase2_C_live_mean_difference"} <= set(report)
    heuristic = {report[f"{k}_live_mean_heuristic"].value for k in ("phase1", "phase2_B", "phase2_C")}
    assert len(heuristic) == 1  # one shared heuristic episode per configuration
    assert list((tmp_path / "reports").rglob("comparison.html"))

    tracker = mlflow.tracker()
    version = tracker.resolve("tamiyo-phase1-imitation@candidate")
    run = tracker.client.get_run(version.run_id)
    assert any(v == result.run_id for v in run.data.tags.values())  # the Dagster run that trained it
    phase2 = tracker.client.get_run(tracker.resolve("tamiyo-phase2-weighted@candidate").run_id)
    assert "tamiyo-phase1-imitation" in " ".join(phase2.data.tags.values())  # its parent policy
    for variant in ("b", "c"):
        version = tracker.resolve(f"tamiyo-phase2-weighted@candidate-{variant}")
        assert version.tags["tamiyo.variant"] == variant.upper()
        artifacts = [a.path for a in tracker.client.list_artifacts(version.run_id, "evaluation")]
        assert "evaluation/report.html" in artifacts and "evaluation/comparison.html" in artifacts


def test_phase4_starts_from_the_distilled_phase3_bcq_candidate(tmp_path):
    """Phase 3 BCQ, then Phase 4 PPO started from a stochastic student of it (distilled on the warehouse's
    states), through real Dagster materializations: the Phase 4 policy's lineage names the BCQ candidate."""
    from assets.policies import phase4_online_policy

    warehouse = build_warehouse(tmp_path / "data")
    spec = tmp_path / "live.toml"
    spec.write_text(LIVE_SPEC)
    mlflow = MlflowTrackingResource(root=str(tmp_path / "mlflow"))
    resources = {"warehouse": WarehouseResource(path=str(warehouse)), "mlflow": mlflow}
    policies = str(tmp_path / "policies")
    run_config = {"ops": {
        "phase1_imitation_policy": {"config": {"controllers": ["random"], "epochs": 2, "batch_size": 16, "out_dir": policies}},
        "phase3_offline_policy": {"config": {"algorithms": ["bcq"], "updates": 200, "start_from_phase1": False, **QUICK_FQE,
                                             "feature_set": "base+lifecycle", "out_dir": policies}},
        "phase4_online_policy": {"config": {"initial_policy": "tamiyo-phase3-offline@candidate-bcq", "distil_smoothing": 0.05,
                                            "distil_updates": 500,
                                            "spec": str(spec), "episodes": 4, "episodes_per_iteration": 2, "workers": 2,
                                            "record_dir": str(tmp_path / "rollouts"), "out_dir": policies}},
    }}  # fmt: skip
    offline = {"ops": {k: v for k, v in run_config["ops"].items() if k != "phase4_online_policy"}}
    assert dg.materialize([phase1_imitation_policy, phase3_offline_policy], resources=resources, run_config=offline).success
    # On demand, as in use: a later run, reading the candidate the offline run registered.
    result = dg.materialize([phase4_online_policy], resources=resources,
                            run_config={"ops": {"phase4_online_policy": run_config["ops"]["phase4_online_policy"]}})  # fmt: skip
    assert result.success
    policy = result.asset_materializations_for_node("phase4_online_policy")[0].metadata["policy_file"].value
    _, payload = load_policy(policy)
    assert payload["parent"].startswith("tamiyo-phase3-offline/") and payload["phase"] == "phase4"
    _, meta = load_policy(tmp_path / "policies" / "initial-distilled.pt")
    assert meta["algorithm"] == "distilled-bcq" and 0 < meta["metadata"]["agreement_train"] <= 1
    assert meta["metadata"]["distil"]["updates"] == 500  # the asset's distillation budget
    assert len(list((tmp_path / "rollouts").glob("*.jsonl"))) == 4  # every rollout landed as a raw run


def test_phase4_vine_with_the_region_rule_pools_an_earlier_run_through_dagster(tmp_path):
    """The Phase 4 asset runs vine with the region rule, and a second materialization pools the first one's forks
    (evidence_from): its policy records the pooled folder, its history keeps only its own forks."""
    from assets.policies import phase4_online_policy
    from tamiyo_models.agents.base import categorical_columns
    from tamiyo_models.agents.networks import MLPActor
    from tamiyo_models.agents.saved import save_policy
    from tamiyo_models.world.features import FEATURE_SETS

    spec = tmp_path / "live.toml"
    spec.write_text(LIVE_SPEC)
    features = FEATURE_SETS["base+lifecycle+task"]
    initial = save_policy(MLPActor(len(features), (32, 32), categorical=categorical_columns(features)), features,
                          tmp_path / "initial.pt", algorithm="test-actor", phase="phase1")  # fmt: skip
    resources = {"warehouse": WarehouseResource(path=str(tmp_path / "unused.duckdb")),
                 "mlflow": MlflowTrackingResource(root=str(tmp_path / "mlflow"))}  # fmt: skip
    vine = {"algorithm": "vine", "initial_policy": str(initial), "spec": str(spec), "episodes": 2, "episodes_per_iteration": 2,
            "workers": 1, "forks": 1, "fork_min_step": 1, "fork_max_step": 1, "label_rule": "region",
            "record_dir": str(tmp_path / "rollouts")}  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    for out, earlier in ((first, []), (second, [str(first)])):
        config = {**vine, "out_dir": str(out), "evidence_from": earlier}
        result = dg.materialize([phase4_online_policy], resources=resources,
                                run_config={"ops": {"phase4_online_policy": {"config": config}}})  # fmt: skip
        assert result.success
    policy = result.asset_materializations_for_node("phase4_online_policy")[0].metadata["policy_file"].value
    vine_config = json.loads(load_policy(policy)[1]["metadata"]["config"])["vine"]
    assert vine_config["label_rule"] == "region" and vine_config["evidence_from"] == [str(first)]
    histories = [json.loads((out / "vine-history.json").read_text()) for out in (first, second)]
    assert [len(h["forks"]) for h in histories] == [2, 2]  # one fork per parent, each run its own
    assert sum(row["forks"] for row in histories[1]["region_evidence"]) >= sum(row["forks"] for row in histories[0]["region_evidence"])
