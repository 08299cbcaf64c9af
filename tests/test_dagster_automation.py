"""Schedule and sensors, evaluated with Dagster's own contexts."""

import datetime as dt
import os
import time

import dagster as dg

from pipelines.automation import full_refresh_run_config, landing_folder_sensor, nightly_schedule, retraining_sensor
from pipelines.definitions import defs
from assets.resources import RawLandingResource, WarehouseResource


def test_definitions_hold_the_schedule_and_sensors():
    assert defs.resolve_schedule_def("nightly_schedule").job_name == "nightly"
    assert {s.name for s in defs.sensors} == {"landing_folder_sensor", "retraining_sensor"}
    for sensor in defs.sensors:
        assert defs.resolve_job_def(sensor.job_name) is not None


def test_schedule_and_sensors_are_on_by_default():
    # On when the daemon runs (make ui), as the README says; TAMIYO_AUTOMATION=off starts them stopped.
    assert nightly_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert {s.default_status for s in (landing_folder_sensor, retraining_sensor)} == {dg.DefaultSensorStatus.RUNNING}


def test_the_schedule_runs_one_night_of_the_loop_on_its_partition():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.timezone.utc))
    request = nightly_schedule(context)
    # The night is the partition (it fixes the night's batch seeds); its settings are the `nightly` resource's.
    assert request.run_key == "nightly-2026-11-26" and request.partition_key == "2026-11-26"
    assert not request.run_config


def test_full_refresh_run_config_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TAMIYO_NIGHTLY_EPISODES", "37")
    monkeypatch.setenv("TAMIYO_NIGHTLY_SPEC", "exploration")
    config = full_refresh_run_config()
    assert config["ops"]["generated_runs"]["config"] == {"spec": "exploration", "episodes": 37, "workers": 2}
    # One round of the shipped curriculum a run, always in the same folder, so the rounds add up to one curriculum.
    curriculum = config["ops"]["curriculum_policy"]["config"]
    assert curriculum == {"curriculum": "default", "rounds": 1, "workers": 2, "out_dir": "var/curriculum/nightly-default"}


def test_the_nightly_job_is_the_improvement_loop_and_full_refresh_the_rest():
    nightly = {n.name for n in defs.resolve_job_def("nightly").graph.nodes}
    full = {n.name for n in defs.resolve_job_def("full_refresh").graph.nodes}
    retrain = {n.name for n in defs.resolve_job_def("train_and_evaluate_policies").graph.nodes}
    assert nightly == {"night_training_runs", "night_ingestion", "night_challengers", "night_off_policy_prediction",
                       "night_evaluation", "champion",
                       "night_evaluation_held_out_seeds_never_trained_on"}  # the last: the evaluation's check
    assert defs.resolve_job_def("nightly").partitions_def is not None  # one partition a night: backfills work
    assert "curriculum_policy" in full and "curriculum_policy" not in retrain and not nightly & full
    assert not {"phase4_online_policy", "transfer_report", "headroom_report"} & (nightly | full)  # on demand
    # The round comes after the Phase 1 policy it starts from.
    assert dg.AssetKey("phase1_imitation_policy") in defs.resolve_assets_def("curriculum_policy").asset_deps[dg.AssetKey("curriculum_policy")]


def test_landing_sensor_picks_up_new_files_once_and_only_once(tmp_path):
    landing = tmp_path / "raw"
    landing.mkdir()
    resource = RawLandingResource(folder=str(landing))
    instance = dg.DagsterInstance.ephemeral()

    def evaluate(cursor):
        context = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"raw_runs": resource})
        result = landing_folder_sensor(context)
        return result, context.cursor

    result, cursor = evaluate(None)
    assert isinstance(result, dg.SkipReason)
    (landing / "run-a.jsonl").write_text("{}\n")
    (landing / ".run-b.jsonl.partial").write_text("{}\n")  # still being written: not yet
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.RunRequest) and result.tags["tamiyo/new_files"] == "1"
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.SkipReason)  # the same file is not ingested twice
    time.sleep(0.01)
    (landing / "run-b.jsonl").write_text("{}\n")
    os.utime(landing / "run-b.jsonl", ns=(time.time_ns(), time.time_ns()))
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.RunRequest) and result.tags["tamiyo/new_files"] == "1"
    assert isinstance(evaluate(cursor)[0], dg.SkipReason)


def test_retraining_waits_for_enough_new_episodes(tmp_path, monkeypatch):
    from tamiyo_models.warehouse import writing

    monkeypatch.setenv("TAMIYO_RETRAIN_MIN_NEW_RUNS", "2")
    path = tmp_path / "w.duckdb"
    resource = WarehouseResource(path=str(path))
    context = dg.build_sensor_context(resources={"warehouse": resource})
    assert "no warehouse snapshot" in retraining_sensor(context).skip_message
    with writing(path):  # the sensor reads the snapshot each write publishes
        pass

    def evaluate(cursor):
        context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": resource})
        return retraining_sensor(context), context.cursor

    result, cursor = evaluate(None)
    assert isinstance(result, dg.SkipReason) and "0 new episodes" in result.skip_message
    with writing(path) as con:
        for i in range(3):
            con.execute("INSERT INTO episodes (run_id, status, steps) VALUES (?, 'complete', 1)", [f"run-{i}"])
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.RunRequest) and cursor == "3"
    assert isinstance(evaluate(cursor)[0], dg.SkipReason)
