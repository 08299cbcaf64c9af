"""Branching: measure the outcome of every action from the same state.

At chosen decision points the whole episode (host and seed weights, optimiser state, lifecycle, the RNG
streams of initialisation, data order, probes and the controller, and the controller's own state) is
snapshotted, and the episode is replayed from there once per alternative action, each for `horizon` steps
(or to the end); the parent itself supplies the outcome of its own action. Each branch is written as its own raw run whose header links it to its parent and its fork
step, so a state in the warehouse then has the *measured* outcome of each action taken from it, which
exploration alone gives only by chance. The reference system never had this; its offline RL starved for it.

Exactness: replaying the parent's own action from a snapshot reproduces the parent's next steps bit for bit
on the CPU (tests/test_branching.py), so differences between branches are caused by the action alone.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..world.actions import Action
from ..world.configs import known_fields
from ..world.features import observation_features
from ..world.lifecycle import Stage
from .episode import EpisodeConfig, EpisodeResult, EpisodeRun

FORK_RULES = ("decision-points", "holes", "every", "steps", "random")


@dataclass(frozen=True)
class BranchConfig:
    horizon: int | None = 5  # steps per branch, fork step included; None = to the end of the episode
    fork_rule: str = "decision-points"  # see should_fork
    every: int = 5  # for fork_rule "every"
    steps: tuple[int, ...] = ()  # for fork_rule "steps"
    # For fork_rule "steps": a listed step where fewer than 2 actions are legal (an embargoed slot, say) moves to the
    # next step with a choice, within max_step, as a random draw does; without it that fork is simply not taken.
    defer: bool = False
    max_forks: int = 3  # per parent episode; for fork_rule "random", the steps drawn

    min_step: int = 2  # no forks on the untrained host
    # The last step a fork may start at (None: any). Forks late in an episode mostly compare WAIT with ADVANCE on
    # a seed already on its way, and tie; the decisions that move final accuracy come early.
    max_step: int | None = None
    coarse_only: bool = False  # one branch per coarse action (GERMINATE with a random blueprint) instead of per fine action
    holes_file: str | None = None  # for fork_rule "holes": written by the coverage analysis (coverage/holes.py)
    # Confirmation on fresh data orders (branches to the end only). Two branches of one fork share everything,
    # the data order included, and after the fork their trajectories diverge: a difference in final accuracy is
    # the action's effect plus that order's luck for each trajectory, which is as large as the effects to learn.
    # So once the parent has ended, each fork where the best alternative beat the parent's final validation
    # accuracy by more than `confirm_margin` pp is replayed from its snapshot on `confirm_orders` new data orders,
    # the best alternative and the parent's own action on each (paired: both get the same new order).
    confirm_orders: int = 0
    confirm_margin: float = 0.0

    def __post_init__(self):
        if self.fork_rule not in FORK_RULES:
            raise ValueError(f"unknown fork rule {self.fork_rule!r}; known: {', '.join(FORK_RULES)}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError("horizon must be >= 1 (or None, \"end\" in a spec, for the rest of the episode)")
        if self.max_step is not None and self.max_step < self.min_step:
            raise ValueError(f"max_step ({self.max_step}) must be >= min_step ({self.min_step}) (or None)")
        if self.fork_rule == "holes" and not self.holes_file:
            raise ValueError("fork rule 'holes' needs a holes_file (written by the coverage analysis)")
        if self.defer and self.fork_rule != "steps":
            raise ValueError(f"defer moves a listed fork step to the next choice: it needs fork_rule 'steps', not {self.fork_rule!r}")
        if self.confirm_orders < 0:
            raise ValueError(f"confirm_orders must be >= 0, got {self.confirm_orders}")
        if self.confirm_orders and self.horizon is not None:
            raise ValueError("confirm_orders compares final accuracies: it needs branches to the end (horizon None)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = list(self.steps)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "BranchConfig":
        d = known_fields(cls, d, "branching settings")
        if d.get("horizon") == "end":  # TOML has no null: `horizon = "end"` runs every branch to the episode's end
            d["horizon"] = None
        elif isinstance(d.get("horizon"), str):
            raise ValueError(f"branching horizon must be a number of steps or \"end\", got {d['horizon']!r}")
        if "steps" in d:
            d["steps"] = tuple(d["steps"])
        return cls(**d)


def branch_settings(branching: BranchConfig | Sequence[BranchConfig | dict | None] | None, count: int) -> list[dict | None]:
    """One branching dict (or None) per configuration, from one BranchConfig for all or a list of them."""
    if branching is None or isinstance(branching, BranchConfig):
        return [branching.to_dict() if branching else None] * count
    if len(branching) != count:
        raise ValueError(f"branching: {len(branching)} settings for {count} configurations; give one each, or one for all")
    return [(b if isinstance(b, dict) else b.to_dict()) if b else None for b in branching]  # dicts: already settled


ForkPredicate = Callable[[Mapping[str, float], tuple[bool, ...], int], bool]


def decision_point(features: Mapping[str, float], legal: tuple[bool, ...], step: int) -> bool:
    """States where the right action is genuinely in question: a plateau with a free slot (germinate now or
    wait?), or an active seed that could be advanced or culled (keep it or not?). Elsewhere only WAIT is
    sensible or legal, and branching there would spend compute on nothing."""
    if sum(legal) < 2:
        return False
    if features["has_active_seed"]:
        return Stage(int(features["seed_stage"])) in (Stage.TRAINING, Stage.BLENDING, Stage.PROBATIONARY)
    return features["plateau_epochs"] >= 1 and features["available_slots"] > 0


def should_fork(config: BranchConfig, features, legal, step: int, forks_so_far: int, extra: ForkPredicate | None) -> bool:
    if forks_so_far >= config.max_forks or step < config.min_step or sum(legal) < 2:
        return False
    if config.max_step is not None and step > config.max_step:
        return False
    if config.fork_rule == "steps":
        return step in config.steps
    if config.fork_rule == "every":
        return (step - config.min_step) % config.every == 0
    if config.fork_rule == "random":
        raise ValueError("fork rule 'random' is resolved into steps per episode (see random_fork_steps)")
    if config.fork_rule == "holes":
        # Active filling: fork wherever the last coverage analysis found a cluster with one action only. The
        # predicate reading the holes file is injected (rollout.run_one builds it from coverage.holes).
        if extra is None:
            raise ValueError("fork rule 'holes' needs the holes predicate as fork_filter (see rollout.run_one)")
        return extra(features, legal, step)
    return decision_point(features, legal, step) and (extra is None or extra(features, legal, step))


@dataclass
class Snapshot:
    run_id: str
    step: int  # the next step to be decided
    episode: object
    controller: object
    episode_return: float
    seconds: float = 0.0


def _shared(episode) -> dict:
    """deepcopy memo for what a fork may share: the task data and configuration are never mutated, and the
    last telemetry record is replaced, not modified, by the next epoch (copying its many small dicts was
    most of the snapshot's cost)."""
    return {id(x): x for x in (episode.data, episode.config, episode.telemetry)}


def take_snapshot(run: EpisodeRun) -> Snapshot:
    """Deep copy of everything that determines the rest of the episode."""
    t0 = time.perf_counter()
    episode, controller = copy.deepcopy((run.episode, run.controller), _shared(run.episode))
    return Snapshot(run.run_id, run.episode.epoch + 1, episode, controller, run.episode_return, time.perf_counter() - t0)


def restore(snapshot: Snapshot, out_dir: str | Path, run_id: str, extra_header: dict) -> EpisodeRun:
    """A new run continuing from the snapshot (the snapshot itself stays untouched, ready for the next branch)."""
    episode, controller = copy.deepcopy((snapshot.episode, snapshot.controller), _shared(snapshot.episode))
    run = EpisodeRun(episode.config, out_dir, controller, run_id=run_id, episode=episode, extra_header=extra_header)
    run.episode_return = 0.0  # a branch's return counts from its fork step
    return run


def random_fork_steps(config: BranchConfig, run_id: str, max_epochs: int) -> tuple[int, ...]:
    """Fork rule "random": `max_forks` distinct steps drawn uniformly from [min_step, max_step or max_epochs], a
    fixed draw per run id. Unlike decision points, every kind of state gets measured in time, including those where a
    controller that waits for a plateau would never think of acting. A drawn step whose only legal action is
    WAIT (a seed mid-blend, say) moves the fork to the next step with a choice (see run_with_branches)."""
    last = max_epochs if config.max_step is None else min(config.max_step, max_epochs)
    candidates = np.arange(max(config.min_step, 1), last + 1)
    rng = np.random.default_rng(int(hashlib.sha256(f"{run_id}/fork-steps".encode()).hexdigest()[:8], 16))
    steps = rng.choice(candidates, size=min(config.max_forks, len(candidates)), replace=False)
    return tuple(sorted(int(s) for s in steps))


def branch_actions(legal: tuple[bool, ...], coarse_only: bool, rng, taken: Action) -> list[Action]:
    """The actions to branch on: every legal action but the one the parent took (with `coarse_only`, one
    action per coarse kind other than the parent's, a random blueprint standing for GERMINATE)."""
    actions = [Action.from_index(i) for i, ok in enumerate(legal) if ok and Action.from_index(i) != taken]
    if coarse_only:
        actions = [a for a in actions if a.coarse != taken.coarse]
    if not coarse_only:
        return actions
    by_coarse: dict[str, list[Action]] = {}
    for a in actions:
        by_coarse.setdefault(a.coarse, []).append(a)
    return [group[int(rng.integers(len(group)))] for group in by_coarse.values()]


def branch_run_id(parent_run_id: str, step: int, action: Action, order: int = 0) -> str:
    """Order 0: the parent's own data order; k >= 1: the k-th confirmation order (see BranchConfig.confirm_orders)."""
    if order:
        return f"{parent_run_id}-o{order}-b{step:03d}-{action.fine.lower()}"
    return f"{parent_run_id}-b{step:03d}-{action.fine.lower()}"


def confirmation_order_seed(parent_run_id: str, step: int, order: int) -> int:
    """The `order`-th new data-order seed of a fork: the same for every action of that fork and order, so the
    actions stay paired. Only the data-order stream changes, as in the null control."""
    return int(hashlib.sha256(f"{parent_run_id}/{step}/order-{order}".encode()).hexdigest()[:8], 16)


@dataclass
class BranchingResult:
    parent: EpisodeResult
    branches: list[EpisodeResult] = field(default_factory=list)  # confirmation runs included
    fork_steps: list[int] = field(default_factory=list)
    confirmed_steps: list[int] = field(default_factory=list)  # forks replayed on new data orders
    snapshot_seconds: list[float] = field(default_factory=list)


def run_with_branches(
    config: EpisodeConfig,
    out_dir: str | Path,
    branching: BranchConfig,
    *,
    fork_filter: ForkPredicate | None = None,
) -> BranchingResult:
    """Run a parent episode; at each fork point, branch once per alternative action. The parent's own action
    needs no branch: the parent's next `horizon` steps are exactly what that branch would replay (bit for bit),
    so the parent steps first and the branches cover the other actions."""
    if branching.fork_rule == "holes" and fork_filter is None:
        raise ValueError("fork rule 'holes' needs the holes predicate as fork_filter (see rollout.run_one)")
    parent = EpisodeRun(config, out_dir)
    # Fork rule "random" (and "steps" with defer): the steps still to fork at; each moves on to the next state with a choice.
    pending = None
    if branching.fork_rule == "random":
        pending = list(random_fork_steps(branching, parent.run_id, config.max_epochs))
    elif branching.fork_rule == "steps" and branching.defer:
        pending = sorted(s for s in set(branching.steps) if s >= branching.min_step)[: branching.max_forks]
    result = BranchingResult(parent=None)  # type: ignore[arg-type]
    kept: list[tuple[Snapshot, Action, dict[Action, EpisodeResult]]] = []  # for confirmation, once the parent ends
    try:
        while not parent.done:
            step = parent.episode.epoch + 1
            record = parent.episode.observation_record()
            features, legal = observation_features(record), parent.episode.legal_mask()
            if pending is not None:
                fork = bool(pending) and step >= pending[0] and sum(legal) >= 2
                if fork:
                    pending.pop(0)
                if branching.max_step is not None and step > branching.max_step:
                    fork = False  # a draw deferred past the window is dropped
            else:
                fork = should_fork(branching, features, legal, step, len(result.fork_steps), fork_filter)
            if not fork:
                parent.step()
                continue
            snapshot = take_snapshot(parent)  # a copy: the parent moves on before its branches run
            result.snapshot_seconds.append(snapshot.seconds)
            result.fork_steps.append(step)
            taken = Action.from_fine(parent.step()["action"]["fine"])
            last = config.max_epochs if branching.horizon is None else min(config.max_epochs, step + branching.horizon - 1)
            # Its own RNG: drawing from the parent's streams would change the parent's own trajectory.
            rng = np.random.default_rng(int(hashlib.sha256(f"{parent.run_id}/{step}".encode()).hexdigest()[:8], 16))
            measured: dict[Action, EpisodeResult] = {}
            if branching.confirm_orders:
                kept.append((snapshot, taken, measured))
            for action in branch_actions(legal, branching.coarse_only, rng, taken):
                run_id = branch_run_id(parent.run_id, step, action)
                branch = restore(
                    snapshot, out_dir, run_id,
                    {"branch": {"parent_run_id": parent.run_id, "fork_step": step, "forced_action": action.fine,
                                "horizon": branching.horizon, "last_step": last}},
                )  # fmt: skip
                try:
                    branch.step(forced_action=action)
                except Exception as exc:
                    result.branches.append(branch.finish(error=f"{type(exc).__name__}: {exc}"))
                    continue
                measured[action] = branch.run_to(last)
                result.branches.append(measured[action])
    except Exception as exc:
        result.parent = parent.finish(error=f"{type(exc).__name__}: {exc}")
        return result
    result.parent = parent.finish()
    for snapshot, taken, measured in kept:
        confirm(snapshot, taken, measured, result, out_dir, branching, config.max_epochs)
    return result


def confirm(snapshot: Snapshot, taken: Action, measured: dict[Action, EpisodeResult], result: BranchingResult,
            out_dir: str | Path, branching: BranchConfig, max_epochs: int) -> None:  # fmt: skip
    """Replay one fork on `branching.confirm_orders` new data orders, the best alternative and the parent's own
    action each, if the best alternative beat the parent by more than `confirm_margin` pp (see BranchConfig)."""
    # Charged for growth like the score (val_score): with rent, a bigger network must win by its charge too.
    finals = {a: r.val_score for a, r in measured.items() if r.status == "complete"}
    if result.parent.status != "complete" or not finals:
        return
    best = max(sorted(finals, key=lambda a: a.index), key=finals.__getitem__)  # of tied ones, the first by index
    if finals[best] - result.parent.val_score <= branching.confirm_margin:
        return
    result.confirmed_steps.append(snapshot.step)
    for order in range(1, branching.confirm_orders + 1):
        seed = confirmation_order_seed(snapshot.run_id, snapshot.step, order)
        for action in (best, taken):
            header = {"branch": {"parent_run_id": snapshot.run_id, "fork_step": snapshot.step, "forced_action": action.fine,
                                 "horizon": None, "last_step": max_epochs, "data_order": order, "data_order_seed": seed}}  # fmt: skip
            branch = restore(snapshot, out_dir, branch_run_id(snapshot.run_id, snapshot.step, action, order), header)
            branch.episode.data_generator = torch.Generator().manual_seed(seed)
            try:
                branch.step(forced_action=action)
            except Exception as exc:
                result.branches.append(branch.finish(error=f"{type(exc).__name__}: {exc}"))
                continue
            result.branches.append(branch.run_to(max_epochs))
