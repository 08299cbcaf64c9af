"""Episodes on a Ray cluster: a real head node started as its own process, a batch with one failing episode,
the same cluster through `tamiyo generate --ray-address`, and through the Dagster `generated_runs` asset."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the 'ray' extra is not installed (make test installs it)")

from tamiyo_models.cli import main  # noqa: E402
from tamiyo_models.episodes.distributed import RayConfig  # noqa: E402
from tamiyo_models.episodes.episode import EpisodeConfig  # noqa: E402
from tamiyo_models.episodes.generation import generate  # noqa: E402
from tamiyo_models.world.datasets import DatasetConfig  # noqa: E402
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Ray's head starts the GCS, the raylet, agents and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name in field 2 may hold spaces; the parent PID is the 2nd field after ')'.
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


# 127.0.0.1 in /proc/net/tcp, and as the IPv4-mapped ::ffff:127.0.0.1 in /proc/net/tcp6
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def _session_members(sid: int) -> set[int]:
    """Processes in session `sid`: the head starts its own session, and everything Ray starts below it stays in
    it even after its parent exits and it is re-parented (which a walk down from the head would miss)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _describe(pids) -> str:
    lines = []
    for pid in sorted(pids):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {command[:120]}")
        except OSError:
            lines.append(f"{pid}: (gone)")
    return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A one-machine Ray cluster (2 CPUs) as a separate process, on 127.0.0.1 only; yields its address."""
    port, client_port = _free_port(), _free_port()
    env = {
        **os.environ,
        # Explicit, so that a token file left in ~/.ray by some earlier local cluster cannot switch this cluster
        # (and the driver) to token authentication.
        "RAY_AUTH_MODE": "disabled",
        # Without it Ray replaces 127.0.0.1 by the machine's outward address and listens on every interface.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # Ray's sockets, logs and session files, not the shared /tmp/ray. Not under tmp_path: Ray puts its Unix
    # sockets three folders below this one, and a socket path may not exceed 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    log_path = tmp_path / "ray-head.log"
    log = open(log_path, "w")
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={port}", f"--ray-client-server-port={client_port}",
            "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    started: set[int] = {head.pid}
    try:
        # `ray start --block` prints this once the GCS, the raylet and the agents are up; connecting earlier
        # would leave the driver retrying for minutes if the head had failed.
        # The Ray Client server is a process of its own that may bind its port a moment later: wait for both.
        deadline = time.monotonic() + 120  # a guard against a hung start, not a speed requirement
        while "Ray runtime started" not in log_path.read_text() or not all(map(_listen_addresses, (port, client_port))):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        for listening in (port, client_port):  # the GCS and the Ray Client server: loopback only
            assert _listen_addresses(listening) <= LOOPBACK, (listening, _listen_addresses(listening))
        yield f"127.0.0.1:{port}"
    finally:
        # Stop by PID: the head, then anything it started that is still there (ray stop would look for
        # processes by name, including other people's clusters).
        started.update(_descendants(head.pid), _session_members(head.pid))
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=40)  # the head drains its node for up to 30 s before it exits
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        # A worker may still have been starting when the list above was taken: sweep the session until it is
        # empty (SIGKILL is delivered at once; the loop only waits for the kernel to reap).
        deadline = time.monotonic() + 20
        while True:
            started.update(_session_members(head.pid))
            survivors = [pid for pid in started - {head.pid} if _alive(pid)]
            if not survivors or time.monotonic() > deadline:
                break
            for pid in survivors:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        survivors = [pid for pid in started if _alive(pid)]
        assert not survivors, f"Ray processes outlived the test:\n{_describe(survivors)}"


def test_batch_on_ray_records_the_failed_episode_after_retries_and_lands_the_others(ray_head, tmp_path):
    out = tmp_path / "raw"
    configs = [
        EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=2, seed=0),
        # The dataset root does not exist: DatasetError before the run file exists, on every attempt.
        EpisodeConfig(dataset=DatasetConfig(name="cifar10", root=str(tmp_path / "nowhere")), max_epochs=2, seed=1),
        EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=2, seed=2),
    ]
    seen = []
    results = generate(
        configs, out, executor="ray", ray=RayConfig(ray_head, cpus_per_episode=1, max_retries=2), on_result=seen.append
    )

    assert [r.run_id for r in results] == [c.run_id() for c in configs]  # configuration order
    assert sorted(r.run_id for r in seen) == sorted(c.run_id() for c in configs)  # each reported once
    good = [results[0], results[2]]
    assert [r.status for r in good] == ["complete", "complete"]
    assert sorted(list_raw_runs(out)) == sorted(r.path for r in good)
    for r in good:
        run = read_raw_run(r.path)
        assert run.footer["status"] == "complete" and len(run.steps) == 2

    failed = results[1]
    assert failed.status == "failed" and not failed.path.exists()
    assert "DatasetError" in failed.error
    # Ray retried it twice: the last attempt (numbered by Ray inside the task) was the third.
    assert "gave up after 3 attempts: attempt 3 of 3: DatasetError" in failed.error

    # The same cluster through the command line: only the address changes.
    cli_out = tmp_path / "cli"
    code = main([
        "generate", "--episodes", "2", "--dataset", "synthetic", "--max-epochs", "2", "--seed", "10",
        "--out", str(cli_out), "--quiet", "--ray-address", ray_head, "--cpus-per-episode", "1",
    ])  # fmt: skip
    assert code == 0
    assert len(list_raw_runs(cli_out)) == 2

    # The same cluster through the Dagster asset: the nightly step with `ray_address` set, same outcome.
    import dagster as dg

    from assets.generation import generated_runs
    from assets.resources import RawLandingResource

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "ray-asset"\n[base]\nmax_epochs = 2\n[base.dataset]\nname = "synthetic"\n')
    asset_out = tmp_path / "asset"
    result = dg.materialize(
        [generated_runs], partition_key="2026-11-26", resources={"raw_runs": RawLandingResource(folder=str(asset_out))},
        run_config={"ops": {"generated_runs": {"config": {"spec": str(spec), "episodes": 2, "seed": 20,
                                                          "ray_address": ray_head, "cpus_per_episode": 1.0}}}},
    )  # fmt: skip
    assert result.success
    metadata = result.asset_materializations_for_node("generated_runs")[0].metadata
    assert metadata["episodes_complete"].value == 2 and metadata["episodes_failed"].value == 0
    assert len(list_raw_runs(asset_out)) == 2

    # Resuming on Ray reads the complete runs back and runs only the rest, each with its own branching.
    from tamiyo_models.episodes.branching import BranchConfig

    before = {r.path: r.path.stat().st_mtime_ns for r in good}
    more = [*configs, EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=3, seed=3)]
    fork = BranchConfig(horizon=None, fork_rule="steps", steps=(1,), max_forks=1, min_step=1)
    again = generate(more, out, executor="ray", ray=RayConfig(ray_head, cpus_per_episode=1, max_retries=0),
                     reuse_existing=True, branching=[None, None, None, fork])  # fmt: skip
    assert {r.path: r.path.stat().st_mtime_ns for r in good} == before
    assert again[3].status == "complete" and again[3].branches >= 1

    # A night's episodes on the same cluster: the generate stage with `ray_address` set, its fork plan followed.
    from tamiyo_models.nightly.night import NightPaths, generate_night, mini_night

    night = mini_night(ray_address=ray_head, training_episodes=2, max_epochs=3)
    paths = NightPaths(nights=tmp_path / "nights", landing=tmp_path / "landing", warehouse=tmp_path / "w.duckdb")
    stage = generate_night("2026-12-01", night, paths, log=lambda line: None)
    assert stage["complete"] == 3 and stage["planned_fork_steps"] == {"1": 1} and stage["branches"] >= 1
    assert mini_night().ray() is None  # no address: local worker processes
    with pytest.raises(ValueError, match="cpus_per_episode must be > 0"):
        mini_night(ray_address=ray_head, ray_cpus_per_episode=0)


def test_online_rollouts_on_ray_equal_the_local_worker_processes_for_the_same_seeds(ray_head, tmp_path):
    """Phase 4's Ray path: the same TamiyoEnv episodes (configurations drawn from a spec, actions sampled by one
    policy with one generator) give the same rollouts on Ray actors as on AsyncVectorEnv worker processes, and
    every finished episode is recorded as a complete raw run with the sampled propensities."""
    import torch

    from tamiyo_models.agents import ActorCritic, MLPActor, ValueNetwork
    from tamiyo_models.env.vector import make_vector_env
    from tamiyo_models.online_rl.rollout import collect_episodes
    from tamiyo_models.world.features import FEATURE_SETS

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "p4ray"\n[base]\nmax_epochs = 3\ntelemetry = { enabled = false }\n[base.dataset]\nname = "synthetic"\n')
    n = len(FEATURE_SETS["base+lifecycle"])
    torch.manual_seed(0)
    agent = ActorCritic(MLPActor(n, (16,)), ValueNetwork(n, (16,)))
    traces = {}
    for name, ray in (("local", None), ("ray", RayConfig(ray_head, cpus_per_episode=1))):
        envs = make_vector_env(2, spec=str(spec), feature_set="base+lifecycle", record_dir=tmp_path / name, agent="p4", ray=ray)
        try:
            episodes = collect_episodes(envs, agent, 5, seed=11, generator=torch.Generator().manual_seed(11), record=True)
        finally:
            envs.close()
        traces[name] = [(e.actions, e.rewards, e.terminated, [o.tolist() for o in e.obs]) for e in episodes]
    assert traces["ray"] == traces["local"] and len(traces["ray"]) == 5
    runs = [read_raw_run(p) for p in list_raw_runs(tmp_path / "ray")]
    complete = [r for r in runs if r.footer and r.footer["status"] == "complete"]
    steps = [s["action"] for r in complete for s in r.steps]
    assert len(complete) >= 5 and any(a["stochastic"] for a in steps)
    # mu = the probability the action was drawn with (a step with one possible action is logged as a choice)
    assert all(a["propensity"] == a["probabilities"][a["fine"]] > 0 for a in steps)

    # The same through the command line: only the address changes (4 episodes of PPO, no MLflow).
    code = main(["train", "phase4", "--algorithm", "ppo", "--episodes", "4", "--episodes-per-iteration", "2",
                 "--spec", str(spec), "--feature-set", "base+lifecycle", "--ray-address", ray_head, "--no-mlflow",
                 "--record-dir", str(tmp_path / "cli-raw"), "--out", str(tmp_path / "cli")])  # fmt: skip
    assert code == 0 and (tmp_path / "cli" / "phase4-ppo.pt").exists()
    assert len([p for p in list_raw_runs(tmp_path / "cli-raw") if read_raw_run(p).footer]) >= 4
