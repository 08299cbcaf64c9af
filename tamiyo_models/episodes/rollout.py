"""One episode as a worker runs it, wherever it runs: a local worker process (generation.py), a Ray task
(distributed.py) or the caller's own process. Both executors import this module and neither imports the
other; the stored result of an episode already on disk is read back here too.
"""

from __future__ import annotations

from pathlib import Path

from .branching import BranchConfig, run_with_branches
from .episode import EpisodeConfig, EpisodeResult, run_episode


def init_worker() -> None:
    import torch

    # One thread per worker: parallelism comes from processes, and results stay reproducible.
    torch.set_num_threads(1)


def run_one(config_dict: dict, out_dir: str, branching: dict | None) -> EpisodeResult:
    """Run one configuration (with its branches, when `branching` says so); a failure before the run file
    exists (dataset missing, bad policy path...) comes back as a failed result, never as an exception."""
    config = EpisodeConfig.from_dict(config_dict)
    try:
        if branching is None:
            return run_episode(config, out_dir)
        branch_config = BranchConfig.from_dict(branching)
        fork_filter = None
        if branch_config.fork_rule == "holes":
            # Forks where the last coverage analysis found a single-action cluster: the predicate comes from
            # the coverage package and is handed to branching, which knows nothing of coverage.
            from ..coverage.holes import hole_finder

            fork_filter = hole_finder(branch_config.holes_file)
        outcome = run_with_branches(config, out_dir, branch_config, fork_filter=fork_filter)
        outcome.parent.branches = len(outcome.branches)
        return outcome.parent
    except Exception as exc:
        return EpisodeResult.not_started(config, out_dir, f"{type(exc).__name__}: {exc}")


def stored_result(out_dir: Path, run_id: str, config=None) -> EpisodeResult | None:
    """The result recorded in a complete run file already in the folder, or None (absent, failed, unreadable,
    or, given the episode's `config`, played by a policy file that has changed since: see `_stale_policy`)."""
    from ..world.rawrun import RawRunError, read_raw_run

    path = Path(out_dir) / f"{run_id}.jsonl"
    if not path.exists():
        return None
    try:
        run = read_raw_run(path)
    except (RawRunError, OSError):
        return None
    footer = run.footer
    if not footer or footer.get("status") != "complete":
        return None
    if config is not None and _stale_policy(config, run.header):
        return None
    result = EpisodeResult.from_footer(path, run_id, footer)
    # Its branch runs lie beside it (<run id>[-o<order>]-b<step>-<action>.jsonl): read back, it counts them as run.
    result.branches = sum(1 for _ in Path(out_dir).glob(f"{run_id}-*b[0-9][0-9][0-9]-*.jsonl"))
    return result


def _stale_policy(config, header: dict) -> bool:
    """Whether the run was played by other weights than the policy file now at the configured path. Run ids name
    the file by path, so a policy retrained in place would otherwise be judged by its predecessor's episodes.
    Runs recorded before headers carried the digest cannot be checked and are kept."""
    spec = getattr(config.controller, "policy", None) or ""
    if config.controller.kind not in ("policy", "epsilon-policy") or not spec.startswith("file:"):
        return False
    described = header.get("controller") or {}
    recorded = described.get("policy_sha256") or (described.get("base") or {}).get("policy_sha256")
    if not recorded:
        return False
    from ..agents.saved import policy_file_digest

    try:
        return recorded != policy_file_digest(spec.removeprefix("file:"))
    except OSError:
        return False  # the file is gone: the episode on disk is all there is
