"""`kill PID` on a long command: it stops with exit code 143 and leaves no worker process behind. Before
`shutdown.exit_on_sigterm`, the generator's forkserver workers outlived a SIGTERM'd `tamiyo generate`, orphaned."""

import os
import signal
import subprocess
import sys
import time

import pytest

SPEC = 'name = "long"\n[base]\nmax_epochs = 400\ntelemetry = { enabled = false }\n[base.dataset]\nname = "synthetic"\n'


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc (Linux)")
@pytest.mark.parametrize("command", ["generate", "train"])
def test_sigterm_stops_the_command_and_its_workers(tmp_path, command):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    args = {"generate": ["generate", "--spec", str(spec), "--episodes", "6", "--workers", "2", "--out", str(tmp_path / "raw")],
            "train": ["train", "phase4", "--spec", str(spec), "--episodes", "8", "--workers", "2", "--no-mlflow",
                      "--record-dir", "", "--feature-set", "base+lifecycle", "--out", str(tmp_path / "out")]}[command]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tamiyo_models.cli", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        # Workers: a forkserver and its 2 episode workers (and the resource tracker).
        while len(_descendants(process.pid)) < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(3)  # into the episodes: each lasts far longer than this test waits
        workers = _descendants(process.pid)
        assert len(workers) >= 4, workers
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "worker processes outlived the command"
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _descendants(process.pid):
            os.kill(pid, signal.SIGKILL)
