"""The nightly loop: a schedule that runs one night of the improvement loop (the `nightly` job: generate around
the champion, ingest, train challengers, evaluate, promote or keep), a sensor that ingests raw runs as they
land (from the generator, by hand, or from other machines), and a sensor that retrains the policies only once
enough new episodes have arrived (not on every file).

The schedule and both sensors are ON by default: a nightly tool that waits for someone to switch it on in the
UI is not nightly. They run whenever the Dagster daemon runs (`make ui` starts one); TAMIYO_AUTOMATION=off
makes them start stopped (each can still be switched on in the UI).

Configuration comes from the environment, so a deployment changes it without code:
  TAMIYO_NIGHTLY_CRON (default "0 2 * * *", UTC), TAMIYO_NIGHT_PRESET (arena, or mini), TAMIYO_NIGHT_SETTINGS
  (JSON overrides of NightConfig's fields, e.g. {"workers": 8, "training_episodes": 3000}), TAMIYO_RETRAIN_MIN_NEW_RUNS
  (100), TAMIYO_AUTOMATION (on). The full_refresh job (every Phase 1-3 asset, the curriculum round) runs on
  demand with `full_refresh_run_config()`: TAMIYO_NIGHTLY_SPEC (nightly), TAMIYO_NIGHTLY_EPISODES (200),
  TAMIYO_NIGHTLY_WORKERS (2), TAMIYO_NIGHTLY_CURRICULUM (default).
(No `from __future__ import annotations`: Dagster inspects the decorated functions' signatures.)
"""

import json
import os
from pathlib import Path

import dagster as dg

from assets.resources import RawLandingResource, WarehouseResource


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


NIGHTLY_CRON = os.environ.get("TAMIYO_NIGHTLY_CRON", "0 2 * * *")


def automation_on() -> bool:
    value = os.environ.get("TAMIYO_AUTOMATION", "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"environment variable TAMIYO_AUTOMATION={value!r} must be on or off")
    return value == "on"


SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if automation_on() else dg.DefaultScheduleStatus.STOPPED
SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if automation_on() else dg.DefaultSensorStatus.STOPPED


def full_refresh_run_config() -> dict:
    """The full_refresh job's configuration. The batch seed comes from the partition key (its date), so a rerun
    reproduces its batch."""
    workers = _env_int("TAMIYO_NIGHTLY_WORKERS", 2)
    curriculum = os.environ.get("TAMIYO_NIGHTLY_CURRICULUM", "default")
    return {"ops": {
        "generated_runs": {"config": {"spec": os.environ.get("TAMIYO_NIGHTLY_SPEC", "nightly"),
                                      "episodes": _env_int("TAMIYO_NIGHTLY_EPISODES", 200), "workers": workers}},
        # One round a night of a curriculum kept in its own folder, so that the nights add up to one curriculum.
        "curriculum_policy": {"config": {"curriculum": curriculum, "rounds": 1, "workers": workers,
                                         "out_dir": f"var/curriculum/nightly-{Path(curriculum).stem}"}},
    }}  # fmt: skip


@dg.schedule(cron_schedule=NIGHTLY_CRON, job_name="nightly", execution_timezone="UTC", default_status=SCHEDULE_STATUS,
             description="Every night: one night of the improvement loop (generate around the champion, ingest, train "
             "challengers, evaluate on held-out configurations, promote or keep the champion).")  # fmt: skip
def nightly_schedule(context: dg.ScheduleEvaluationContext):
    # The night's settings live in the `nightly` resource (TAMIYO_NIGHT_PRESET / TAMIYO_NIGHT_SETTINGS); the
    # partition key is the night, which fixes its batch seeds, so a rerun or a backfill replays that night.
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"nightly-{night}", partition_key=night, tags={"tamiyo/night": night})


def landing_files(folder: Path) -> dict[str, int]:
    """Complete run files (hidden .partial files are still being written) with their modification times."""
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
            and p.suffix in (".jsonl", ".json")}  # fmt: skip


@dg.sensor(job_name="ingest_raw_runs", minimum_interval_seconds=60, default_status=SENSOR_STATUS,
           description="Ingest raw runs as they appear in the landing folder (each new or changed file once).")  # fmt: skip
def landing_folder_sensor(context: dg.SensorEvaluationContext, raw_runs: RawLandingResource):
    # Cursor: the newest modification time already ingested, and the files that carry it (ties are common on
    # coarse file systems). Files newer than that, or at it but unseen, are new.
    cursor = json.loads(context.cursor) if context.cursor else {"mtime": -1, "names": []}
    files = landing_files(raw_runs.path)
    fresh = sorted(p for p, t in files.items() if t > cursor["mtime"] or (t == cursor["mtime"] and p not in cursor["names"]))
    if not fresh:
        return dg.SkipReason(f"no new files in {raw_runs.path}")
    newest = max(files[p] for p in fresh)
    names = [p for p, t in files.items() if t == newest]
    context.update_cursor(json.dumps({"mtime": newest, "names": names}))
    return dg.RunRequest(run_key=f"ingest-{newest}-{len(fresh)}", tags={"tamiyo/new_files": str(len(fresh))})


@dg.sensor(job_name="train_and_evaluate_policies", minimum_interval_seconds=600, default_status=SENSOR_STATUS,
           description="Retrain and re-evaluate the policies once enough new episodes are in the warehouse.")  # fmt: skip
def retraining_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    threshold = _env_int("TAMIYO_RETRAIN_MIN_NEW_RUNS", 100)
    not_branches = "SELECT count(*) FROM episodes WHERE run_id NOT IN (SELECT run_id FROM branches)"
    try:
        with warehouse.read() as con:
            episodes = con.execute(not_branches).fetchall()[0][0]
    except FileNotFoundError:  # nothing ingested (so nothing published) yet
        return dg.SkipReason(f"no warehouse snapshot of {warehouse.path} yet")
    trained_at = int(context.cursor) if context.cursor else 0
    if episodes - trained_at < threshold:
        return dg.SkipReason(f"{episodes - trained_at} new episodes since the last retraining; waiting for {threshold}")
    context.update_cursor(str(episodes))
    return dg.RunRequest(run_key=f"retrain-at-{episodes}", tags={"tamiyo/episodes": str(episodes)})


SCHEDULES = [nightly_schedule]
SENSORS = [landing_folder_sensor, retraining_sensor]
