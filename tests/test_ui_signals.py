"""`make ui` (pipelines/ui.py) stops both servers on SIGINT even when it was started with SIGINT ignored, as a
shell does for a background job (`make ui &`), and `.nux/` (the UI's state under DAGSTER_HOME, the repository
root) is ignored by git."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ui_stops_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
    dagster_port, mlflow_port = _free_port(), _free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TAMIYO_AUTOMATION": "off", "TAMIYO_RAW_DIR": str(tmp_path / "raw"),
           "TAMIYO_WAREHOUSE": str(tmp_path / "w.duckdb"), "TAMIYO_MLFLOW_ROOT": str(tmp_path / "mlflow")}  # fmt: skip
    ui = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ui", "--dagster-port", str(dagster_port), "--mlflow-port", str(mlflow_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # what `make ui &` inherits
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (_listening(dagster_port) and _listening(mlflow_port)):
            assert ui.poll() is None, "the UI exited on its own"
            assert time.monotonic() < deadline, "the servers did not start"
            time.sleep(1)
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0
        time.sleep(1)
        assert not _listening(dagster_port) and not _listening(mlflow_port)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)


def test_the_ui_state_folder_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", ".nux/nux.yaml"], cwd=ROOT)
    assert result.returncode == 0
