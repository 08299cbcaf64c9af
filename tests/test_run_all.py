"""`make run`'s driver (pipelines/run_all.py) runs a job of the definitions by name, so the run is listed under
that job in the UI; the console gets one line per step and where to look, the full log goes to a file.
The whole nightly job is too long for the suite: the same code path runs the ingest_raw_runs job here, on a
real landing folder, warehouse and Dagster instance in tmp."""

import os
import subprocess
import sys
from pathlib import Path

import legacy_fixtures as L

ROOT = Path(__file__).resolve().parent.parent


def test_run_all_runs_a_job_by_name_with_one_line_per_step(tmp_path):
    raw, home, log = tmp_path / "raw", tmp_path / "home", tmp_path / "run.log"
    home.mkdir()
    L.write(raw / "episode_0001.json", L.episode(1, [40.0, 50.0, 55.0]))
    env = {**os.environ, "DAGSTER_HOME": str(home), "TAMIYO_RAW_DIR": str(raw), "TAMIYO_WAREHOUSE": str(tmp_path / "w.duckdb"),
           "TAMIYO_MLFLOW_ROOT": str(tmp_path / "mlflow"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "pipelines.run_all", "--job", "ingest_raw_runs", "--log", str(log),
                             "--workdir", str(tmp_path)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("make run: the ingest_raw_runs job") and str(log) in lines[0]
    steps = [line for line in lines if line.rstrip().endswith("s)") and " done (" in line]
    assert any("episode_tables" in line for line in steps) and any("warehouse_parquet" in line for line in steps)
    assert "DEBUG" not in result.stdout and result.stderr == ""
    assert len(lines) < 40  # progress and where to look, not the event stream
    assert (tmp_path / "var" / "warehouse_parquet" / "runs.parquet").exists()  # relative defaults under --workdir
    assert "STEP_SUCCESS" in log.read_text() or "step_success" in log.read_text().lower()  # the full log is in the file

    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            assert [r.job_name for r in instance.get_runs()] == ["ingest_raw_runs"]
    finally:
        os.environ.pop("DAGSTER_HOME")
