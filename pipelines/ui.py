"""`make ui`: the Dagster UI and the MLflow UI side by side, both on 127.0.0.1, stopped together with Ctrl-C.

    python -m pipelines.ui [--dagster-port 3000] [--mlflow-port 5000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    parser.add_argument("--dagster-port", type=int, default=3000, help="Dagster UI port (default 3000)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (default 5000)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME", str(ROOT))}
    from assets.mlflow_resource import MlflowTrackingResource

    mlflow = MlflowTrackingResource()
    Path(mlflow.root).mkdir(parents=True, exist_ok=True)
    backend = mlflow.tracking_uri or f"sqlite:///{(Path(mlflow.root) / 'mlflow.db').resolve()}"
    bin_dir = Path(sys.executable).parent
    # `dagster dev` ignores SIGINT/SIGTERM when not started from a terminal unless the default handlers are
    # restored for it; `env --default-signal` does that.
    commands = {
        "dagster": ["env", "--default-signal=INT,TERM", str(bin_dir / "dagster"), "dev", "-h", args.host, "-p", str(args.dagster_port)],
        "mlflow": [str(bin_dir / "mlflow"), "server", "--host", args.host, "--port", str(args.mlflow_port),
                   "--backend-store-uri", backend, "--default-artifact-root", str((Path(mlflow.root) / "artifacts").resolve())],  # fmt: skip
    }
    processes = {}

    def stop(signum, frame):  # SIGTERM (e.g. from a supervisor) stops both servers like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Started in the background (`make ui &`), a shell hands us SIGINT as ignored, and Python then installs no
    # handler of its own: Ctrl-C or `kill -INT` did nothing. Install the usual one whatever we inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for name, command in commands.items():
            # Own process group each: Ctrl-C here stops both trees, and nothing is left behind.
            processes[name] = subprocess.Popen(command, env=env, start_new_session=True)
        print(f"Dagster UI  http://{args.host}:{args.dagster_port}\nMLflow UI   http://{args.host}:{args.mlflow_port}\nCtrl-C stops both.")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        failed = [n for n, p in processes.items() if p.poll() is not None]
        print(f"{', '.join(failed)} exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
