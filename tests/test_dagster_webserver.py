"""End to end through the real Dagster webserver: start it on a free local port, ask it (GraphQL) for the
asset graph, launch a tiny ingestion run, wait for its success, and stop the server by its PID."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_YAML = """
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture
def webserver(tmp_path):
    from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
    from tamiyo_models.world.datasets import DatasetConfig

    home, raw = tmp_path / "home", tmp_path / "raw"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)  # runs launch at once: no daemon needed for the test
    run_episode(EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=3), raw)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TAMIYO_RAW_DIR": str(raw),
           "TAMIYO_WAREHOUSE": str(tmp_path / "w.duckdb"), "TAMIYO_MLFLOW_ROOT": str(tmp_path / "mlflow")}  # fmt: skip
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-m", "pipelines.definitions", "-d", str(ROOT)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "the webserver exited during start-up"
                time.sleep(0.5)
        else:
            pytest.fail("the webserver did not answer within 120 s")
        yield port, tmp_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the code server it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_webserver_serves_the_graph_and_runs_an_ingestion(webserver):
    port, tmp_path = webserver
    nodes = _graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"generated_runs", "steps", "counterfactual_coverage", "phase1_imitation_policy", "policy_evaluation_report"} <= keys

    repos = _graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    repo = repos["repositoriesOrError"]["nodes"][0]
    launched = _graphql(
        port,
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {"params": {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                                 "jobName": "ingest_raw_runs"},
                    "runConfigData": {"ops": {"warehouse_parquet": {"config": {"out_dir": str(tmp_path / "parquet")}}}}}},  # fmt: skip
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.time() + 240, None
    while time.time() < deadline:
        status = _graphql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM steps").fetchall()[0][0] == 3
    assert (tmp_path / "parquet" / "steps.parquet").exists()
