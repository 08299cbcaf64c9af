"""Episodes on a Ray cluster: one Ray task per episode, so a batch outgrows one machine by configuration alone.

`generate(..., executor="ray", ray=RayConfig(address=...))` (and `tamiyo generate --ray-address`, and the
Dagster `GenerationConfig.ray_address`) land here. The episode code is the same as with local worker
processes: every task runs `rollout.run_one`.

What a cluster needs (docs/scaling.md says more):
- the same environment on every node (this package and its pinned dependencies), since tasks import
  `tamiyo_models` by name;
- a raw-run store every node sees at the same path (a shared filesystem such as NFS, or a mounted object
  store): each task writes its run file itself, and nothing is copied back to the driver but the summary;
- datasets under the same root on every node (or the bundled/synthetic ones).

Failures: an episode that fails before its run file exists (dataset missing on that node, bad policy path)
raises inside its task, so Ray retries it, possibly on another node; a worker or node that dies is retried by
Ray too. When the retries are spent the episode is recorded as a failed `EpisodeResult`, never dropped, and
the other episodes still land. An episode that fails mid-run is not retried: its run file already records the
failure in its footer, and the same configuration would fail the same way.
"""

from __future__ import annotations

import ipaddress
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .branching import BranchConfig, branch_settings
from .episode import EpisodeConfig, EpisodeResult
from .rollout import run_one


@dataclass(frozen=True)
class RayConfig:
    """Where and how episodes run on Ray.

    address: "local" starts a Ray cluster inside this process (127.0.0.1 only, no dashboard) for one batch;
        "auto" joins the cluster named by RAY_ADDRESS or the one `ray start` last started on this machine;
        "host:port" joins that cluster's head (GCS port); "ray://host:port" joins through Ray Client.
    cpus_per_episode, gpus_per_episode: what each episode task reserves; fractions are allowed (0.25 GPU puts
        four episodes on one GPU). Ray runs as many episodes at once as the cluster's resources allow.
    max_retries: further attempts for an episode whose task raised or whose worker died.
    """

    address: str
    cpus_per_episode: float = 1.0
    gpus_per_episode: float = 0.0
    max_retries: int = 2

    def __post_init__(self):
        if not self.address:
            raise ValueError("a Ray address is needed: 'local', 'auto', 'host:port' or 'ray://host:port'")
        if self.cpus_per_episode <= 0 or self.gpus_per_episode < 0 or self.max_retries < 0:
            raise ValueError("cpus_per_episode must be > 0, gpus_per_episode >= 0 and max_retries >= 0")


class EpisodeNotStarted(RuntimeError):
    """Raised inside a task so that Ray retries an episode that failed before its run file existed."""


def _episode_task(payload: dict, out_dir: str, branching: dict | None, threads: int, attempts: int) -> EpisodeResult:
    import ray
    import torch

    # As many torch threads as CPUs reserved: Ray packs tasks by their reservation, so more would oversubscribe.
    torch.set_num_threads(threads)
    result = run_one(payload, out_dir, branching)
    if result.status == "failed" and result.steps == 0 and not Path(result.path).exists():
        # Ray exposes no public attempt counter; this one (Ray 2.60, pinned) lets the recorded error say how
        # many attempts were made, which is the only trace of the retries the batch's caller gets.
        attempt = ray._private.worker.global_worker.core_worker.get_current_task_attempt_number() + 1
        raise EpisodeNotStarted(f"attempt {attempt} of {attempts}: {result.error}")
    return result


def _host(address: str) -> str | None:
    if address in ("local", "auto"):
        return None
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def ray_session(address: str) -> Iterator:
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():  # the caller already connected (a notebook, a Ray job): use that session
        yield ray
        return
    # Ray replaces 127.0.0.1 by the machine's outward address and then listens on every interface, unless it is
    # told the cluster is this one machine. Its switch for that is read once at import (the environment
    # variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), so it is set here on the imported value, for this session
    # only: a later multi-node session must advertise a reachable address again.
    single_machine = address == "local" or _is_loopback(_host(address))
    saved = ray_constants.ENABLE_RAY_CLUSTER
    if single_machine:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
        yield ray
    finally:
        ray.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _failure_message(exc: Exception, attempts: int) -> str:
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, EpisodeNotStarted):
        return f"gave up after {attempts} attempts: {exc.cause}"
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        return f"gave up after {attempts} attempts: {type(exc.cause).__name__}: {exc.cause}"
    # WorkerCrashedError, NodeDiedError, OutOfMemoryError...: the process running the episode vanished.
    return f"gave up after {attempts} attempts, worker died: {type(exc).__name__}: {exc}"


def generate_on_ray(
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    *,
    address: str,
    cpus_per_episode: float = 1.0,
    gpus_per_episode: float = 0.0,
    max_retries: int = 2,
    branching: BranchConfig | Sequence[BranchConfig | dict | None] | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Run every configuration as one Ray task on the cluster at `address` (see `RayConfig`).

    `out_dir` must be a path every node sees (a shared filesystem): tasks write their run files there
    themselves. Every episode ends as a result, complete or failed; results come back in completion order
    through `on_result` and in configuration order as the return value, as with `generation.generate`.
    """
    ray_config = RayConfig(address, cpus_per_episode, gpus_per_episode, max_retries)  # validates the settings
    # Absolute: a relative path would be resolved against each worker's own working directory.
    out_dir = str(Path(out_dir).resolve())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    per_config = branch_settings(branching, len(configs))  # one for all, or one each (generation.generate)
    attempts = ray_config.max_retries + 1
    threads = max(1, int(ray_config.cpus_per_episode))
    results: list[EpisodeResult | None] = [None] * len(configs)
    with ray_session(ray_config.address) as ray:
        task = ray.remote(_episode_task)
        pending = {}
        for i, config in enumerate(configs):
            ref = task.options(
                name=f"episode {config.run_id()}",  # what Ray's dashboard and logs call the task
                num_cpus=ray_config.cpus_per_episode,
                num_gpus=ray_config.gpus_per_episode,
                max_retries=ray_config.max_retries,
                retry_exceptions=True,
            ).remote(config.to_dict(), out_dir, per_config[i], threads, attempts)
            pending[ref] = i
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries spent: record the episode, never drop it
                    results[i] = EpisodeResult.not_started(configs[i], out_dir, _failure_message(exc, attempts))
                if on_result:
                    on_result(results[i])
    return results
