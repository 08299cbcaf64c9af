"""One night of the improvement loop: generate around the champion, ingest, train challengers, evaluate them
on held-out configurations drawn fresh for the night, promote or keep, report.

Each stage is a plain function of (night, config, paths), called in turn by `run_night` and, one asset per
stage, by the Dagster `nightly` job (assets/nightly.py). Every stage resumes: episodes already on disk are read
back (they are deterministic), a challenger whose policy file exists is not retrained, and the decision is
rewritten whole. A night killed anywhere picks up where it stopped when it is run again.

    generate   training configurations of the spec, drawn from the night's batch seed, seeds registered as
               training seeds; a share run by the champion's stochastic version (epsilon around it, its
               propensities logged), the rest by the reference grid in turn. Raw runs land in
               <landing>/night-<night>/, where ingestion picks them up.
    ingest     the landing folder into the warehouse (every night's runs: the learners read them all).
    train      Phase 3 challengers (BCQ, CQL, IQL) on every night's transitions, their update budget scaled to
               the data; IQL's actor starts from the champion when the champion is a learned policy. Then Phase 4,
               from the champion: vine (the region rule over every night's stored fork studies, no episodes of
               its own) and PPO (live episodes whose seeds are registered as training seeds first; from tonight's
               Phase 3 policy when the champion has no network). Each is an MLflow model version whose lineage
               names the nights it learned from.
    ope        off-policy estimates (FQE on every night's transitions) of every arm the evaluation will run,
               made before any of its episodes: the night's prediction, scored against live by the decision
               (nightly/prediction.py; `night_ope`). No episodes; minutes of one core.
    evaluate   held-out configurations (the night's own draw, seeds registered once as evaluation seeds) on the
               test split: the champion, every challenger, the reference grid and the heuristic on the original
               data order and `fresh_orders` fresh ones; the champion's reruns are the null control.
    decide     each arm against the champion by the rule fixed beforehand (champion.PromotionRule), on the score
               (the test accuracy charged at the spec's rent); one row per arm in `champion_history`, with the rent
               and the raw test-accuracy differences beside the score's; a promotion registers the new champion in
               MLflow. With the ope stage's prediction: each arm's predicted and live difference and the
               calibration (rank correlation, error, intervals over the held-out configurations), in `night_ope`.
    report     Markdown with the night's table and the trend plot (champion vs heuristic vs best fixed schedule,
               night by night), in <nights>/<night>/.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

from ..controllers import ControllerConfig, reference_controller
from ..warehouse.seeds import EVALUATION, TRAINING, claim_seeds
from .champion import Champion, Comparison, PromotionRule, choose, compare, current_champion, record_night

STAGES = ("generate", "ingest", "train", "ope", "evaluate", "decide", "report")
# Tonight's challengers are named <phase>-<algorithm>-<night>: Phase 3 (offline RL) and Phase 4 (online RL).
CHALLENGER_PHASES = ("phase3", "phase4")
PHASE4_CHALLENGERS = ("vine", "ppo")
# The Phase 3 policy PPO starts from when the champion has no network: the most stochastic actor first (IQL's is
# a softmax policy; BCQ gives probability 0 to what its data never did, so PPO could not try it).
PPO_STARTS = ("iql", "cql", "bcq")
# The reference grid: every fixed schedule that was ever the arena's bar, never growing, and the heuristic.
DEFAULT_GRID = ("never", "fixed:conv_heavy@0", "fixed:conv_heavy@1", "fixed:conv_heavy@3", "fixed:conv_light@1")
# Where a night's fork parents branch: "directed" by the fork plan (online_rl/fork_plan.py), or at a random early step.
NIGHT_FORK_RULES = ("directed", "random")


@dataclass(frozen=True)
class NightConfig:
    """What one night does. The defaults are the arena night: about 2,000 episodes (`planned_episodes`); on 2
    cores, at 8 to 30 s per arena episode, that is 2 to 8 hours, so a 2-hour night wants about 8 cores (workers)
    or a smaller budget. `mini_night()` is the quick demo's."""

    spec: str = "arena"
    training_episodes: int = 950
    champion_share: float = 0.5  # of the training episodes: the champion's stochastic version; the rest the grid
    # Fork studies at the champion's decisions: this many more training configurations run by the champion itself,
    # each forked once at a step in [1, fork_max_step], every legal action branched to the end of the episode with
    # the same data order (about one extra episode per legal action: the costliest data, and the only data with
    # exact counterfactuals). fork_rule "directed": each parent forks where the region rule's evidence from earlier
    # nights is thinnest and undecided, earliest first (online_rl/fork_plan.py); "random": at a step drawn in the
    # window, the rule before directed forks.
    fork_parents: int = 24
    fork_max_step: int = 6
    fork_rule: str = "directed"
    epsilon: float = 0.2  # exploration around the champion (uniform over legal actions with this probability)
    reference_grid: tuple[str, ...] = DEFAULT_GRID  # compared every night (the heuristic always is)
    # The first night of a warehouse also takes every policy shipped with the package for its spec (tamiyo shipped)
    # as a challenger: the best found before the loop existed start where the loop starts.
    shipped_challengers: bool = True
    challengers: tuple[str, ...] = ("bcq", "cql", "iql")
    # Phase 4, after Phase 3 and from the champion. "vine": one region-rule improvement on the fork studies of
    # every night in the warehouse (no episodes: the forks above are its evidence, fork_parents per night).
    # "ppo": fine-tuning in ppo_episodes live episodes (the first iteration warms the critic up), about 3% of
    # the night's training episodes: at the arena's noise a few dozen episodes move a policy little, so it is
    # a cheap, small step away from the champion rather than a search.
    phase4: tuple[str, ...] = PHASE4_CHALLENGERS
    vine_updates: int = 2_000  # fine-tuning steps of the region rule's student (VineConfig's own default)
    distil_updates: int = 10_000  # the student of a champion with no network (a fixed schedule, the heuristic)
    ppo_episodes: int = 32
    ppo_episodes_per_iteration: int = 8
    # Each Phase 3 challenger is this many learners from consecutive seeds, acting on their mean scores, each to
    # its last update (OfflineRunConfig.ensemble). One network's first decision on arena-v2 was a draw of its seed:
    # 4 seeds of BCQ on the same data split 3 to 1 between grafting conv_heavy into slot 1 and waiting
    # (docs/lab/2026-12-06-a-two-hour-arena-v2-night.md). 1: one learner, its checkpoint chosen by FQE.
    ensemble: int = 5
    passes_over_data: float = 40.0  # offline updates = passes x transitions / batch size, within the bounds below
    min_updates: int = 200
    max_updates: int = 20_000
    heldout_per_regime: int = 6
    fresh_orders: int = 2
    max_epochs: int = 0  # 0: the spec's episode length; more: every episode is cut to this many epochs
    workers: int = 2
    # A Ray cluster for the night's episodes (training, fork studies, evaluation): "" runs them on `workers` local
    # processes; "local", "auto", "host:port" or "ray://host:port" as in episodes.distributed.RayConfig. PPO's
    # environments and the learners stay in this process.
    ray_address: str = ""
    ray_cpus_per_episode: float = 1.0
    # Off-policy prediction before the evaluation (the ope stage): FQE for every arm, `ope_updates` gradient updates
    # each (0: FQE's horizon budget, 6,000 on arena-v2). About a minute an arm on one core; no episodes.
    ope: bool = True
    ope_updates: int = 0
    score: str = "test"  # the charged score (the spec's rent sets the charge; docs/arena.md, "Compute rent")
    rule: PromotionRule = field(default_factory=PromotionRule)

    def __post_init__(self):
        from ..offline_rl.workflow import ALGORITHMS

        unknown = [a for a in self.challengers if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unknown challenger algorithm(s) {', '.join(unknown)}; known: {', '.join(ALGORITHMS)}")
        unknown = [a for a in self.phase4 if a not in PHASE4_CHALLENGERS]
        if unknown:
            raise ValueError(f"unknown Phase 4 challenger(s) {', '.join(unknown)}; known: {', '.join(PHASE4_CHALLENGERS)}")
        if self.ope_updates < 0:
            raise ValueError(f"ope_updates must be >= 0 (0: FQE's horizon budget), got {self.ope_updates}")
        if min(self.vine_updates, self.distil_updates, self.ppo_episodes, self.ppo_episodes_per_iteration, self.ensemble) < 1:
            raise ValueError("vine_updates, distil_updates, ppo_episodes, ppo_episodes_per_iteration and ensemble must be >= 1")
        for name in self.reference_grid:
            reference_controller(name)  # a typo fails here, naming the controller
        if not 0.0 <= self.champion_share <= 1.0:
            raise ValueError(f"champion_share must be in [0, 1], got {self.champion_share}")
        if self.training_episodes < 1 or self.heldout_per_regime < 2 or self.fresh_orders < 1:
            raise ValueError("a night needs training_episodes >= 1, heldout_per_regime >= 2 and fresh_orders >= 1")
        if self.ray_address:
            self.ray()  # a bad resource setting fails here, before any episode runs
        if self.fork_rule not in NIGHT_FORK_RULES:
            raise ValueError(f"fork_rule {self.fork_rule!r}; known: {', '.join(NIGHT_FORK_RULES)}")
        if self.score != "test":
            raise ValueError(f"score {self.score!r}: the nightly loop decides on the test score ('test': the test split's "
                             "accuracy charged for growth at the spec's rent, the accuracy itself at rent 0)")  # fmt: skip

    def ray(self):
        """Where the night's episodes run: None for local worker processes, else the Ray cluster's settings."""
        if not self.ray_address:
            return None
        from ..episodes.distributed import RayConfig

        return RayConfig(self.ray_address, cpus_per_episode=self.ray_cpus_per_episode)

    def executor(self) -> dict:
        """generate()'s and run_paired()'s executor arguments for the night's episodes."""
        return {"executor": "ray", "ray": self.ray()} if self.ray_address else {"executor": "local", "ray": None}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d, "reference_grid": list(self.reference_grid), "challengers": list(self.challengers), "phase4": list(self.phase4)}

    def planned_episodes(self, regimes: int, shipped: int = 0, fork_actions: int = 6) -> dict[str, int]:
        """The night's budget in episodes, before it runs (at most: the champion may also be in the grid, and a vine
        that labels no state is not evaluated); a fork
        parent counts itself and one branch per legal action at an early step, when no seed is active: WAIT and
        every blueprint in every slot (`fork_actions`: 6 on the arena's one slot, 11 on arena-v2's two);
        `shipped`: the arms that join some nights only (the shipped policies on a first night, the champion dethroned
        the night before)."""
        arms = 1 + 1 + len(self.reference_grid) + len(self.challengers) + len(self.phase4) + shipped  # champion, heuristic, grid, challengers
        evaluation = regimes * self.heldout_per_regime * arms * (1 + self.fresh_orders)
        ppo = self.ppo_episodes if "ppo" in self.phase4 else 0
        forks = self.fork_parents * (1 + fork_actions)
        return {"training": self.training_episodes, "forks": forks, "ppo": ppo, "evaluation": evaluation,
                "total": self.training_episodes + forks + ppo + evaluation}

    @classmethod
    def from_dict(cls, d: dict) -> "NightConfig":
        d = dict(d)
        if "rule" in d and isinstance(d["rule"], dict):
            d["rule"] = PromotionRule(**d["rule"])
        for key in ("reference_grid", "challengers", "phase4"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def mini_night(**overrides) -> NightConfig:
    """A night of every stage on a tiny budget (`make run`, tests): short digits episodes, 3 held-out
    configurations per regime, the rule asking for 3 pairs, Phase 4 learners that only show they run (a
    student of a few hundred steps, PPO's critic warm-up and one update; FQE's prediction with 400 updates an arm,
    one sweep of the 8-step horizon at target tau 0.02 instead of the default's four)."""
    settings = dict(spec="smoke", training_episodes=12, fork_parents=1, max_epochs=8, heldout_per_regime=4, fresh_orders=2,
                    reference_grid=("never", "fixed:conv_heavy@1"), passes_over_data=20.0, min_updates=100, ensemble=2,
                    vine_updates=200, distil_updates=300, ppo_episodes=4, ppo_episodes_per_iteration=2, ope_updates=400,
                    rule=PromotionRule(min_pairs=3, resamples=2_000))  # fmt: skip
    return NightConfig(**{**settings, **overrides})


def arena_v2_night(**overrides) -> NightConfig:
    """The arena-v2 night (docs/arena.md, "Arena v2": rent 1, two slots, hidden noise, seeds born noisy), sized to
    finish in about 2 hours on 2 cores: an arena-v2 episode takes 12 to 17 s on one core, so 2 workers run 7 to 9
    a minute, and the night plans about 780 (`planned_episodes`): 200 training, 10 forked parents (up to 11
    branches each: WAIT and 5 blueprints in either slot), 24 of PPO's, and 16 held-out configurations x 9 arms x
    3 data orders in the evaluation. The grid is the three schedules that decide the four-way
    (docs/lab/2026-12-05-arena-v2-noisy-four-way.md): `never`, the best fixed schedule
    `fixed:conv_light@0:slot1`, and `fixed:conv_heavy@0:slot1`, whose noisy seeds a reader must cull; the two
    slot-0 schedules lost to the slot-1 ones there and in `phase3-arena-v2`. The Phase 3 challengers are BCQ and
    IQL, the two that learned the reader's cull in that study (CQL stayed at the safe schedule).
    `arena_v2_large_night()` is the same night at about 2.4 times the budget, for 8 workers or a Ray cluster."""
    settings = dict(spec="arena-v2", training_episodes=200, fork_parents=10, ppo_episodes=24, heldout_per_regime=16,
                    reference_grid=("never", "fixed:conv_light@0:slot1", "fixed:conv_heavy@0:slot1"),
                    challengers=("bcq", "iql"))  # fmt: skip
    return NightConfig(**{**settings, **overrides})


def arena_v2_large_night(**overrides) -> NightConfig:
    """The arena-v2 night at about 1,800 episodes (3.5 to 4.5 hours on 2 cores; about 1 hour on 8): 600
    training, 24 forked parents, 32 of PPO's, and 24 held-out configurations (the four-way's count of pairs) x 12
    arms (13 on a warehouse's first night, with the shipped policy) x 3 data orders, with every Phase 3 learner
    and the four-way's whole slot-aware grid."""
    settings = dict(spec="arena-v2", training_episodes=600, heldout_per_regime=24,
                    reference_grid=("never", "fixed:conv_light@0:slot1", "fixed:conv_heavy@0:slot1", "fixed:conv_light@0",
                                    "fixed:conv_heavy@0"))  # fmt: skip
    return NightConfig(**{**settings, **overrides})


# The night's presets by name: one table for `tamiyo night --preset`, `make run PRESET=` and Dagster's resource.
PRESETS: dict[str, Callable[..., NightConfig]] = {"arena": NightConfig, "arena-v2": arena_v2_night,
                                                  "arena-v2-large": arena_v2_large_night, "mini": mini_night}


@dataclass(frozen=True)
class NightPaths:
    """Where a night reads and writes: its own folder under `nights`, its raw runs under `landing`."""

    nights: Path = Path("var/nights")
    landing: Path = Path("var/raw")
    warehouse: Path = Path("warehouse/tamiyo.duckdb")
    mlflow_root: str = "var/mlflow"
    mlflow_uri: str | None = None

    def night_dir(self, night: str) -> Path:
        return Path(self.nights) / night

    def raw_dir(self, night: str) -> Path:
        return Path(self.landing) / f"night-{night}"

    @property
    def tracking(self):
        from ..agents.tracking import TrackingConfig

        return TrackingConfig(root=self.mlflow_root, tracking_uri=self.mlflow_uri)


def check_night(night: str) -> str:
    try:
        date.fromisoformat(night)
    except ValueError:
        raise ValueError(f"night {night!r} must be a date, YYYY-MM-DD (the Dagster partition key)") from None
    return night


def batch_seed(night: str, purpose: str) -> int:
    """The night's batch seeds: one for its training configurations, another for its held-out ones."""
    return int(check_night(night).replace("-", "")) * 10 + (1 if purpose == EVALUATION else 0)


# ----- generate ----------------------------------------------------------------------------------------------
def stochastic_version(champion: Champion, epsilon: float) -> ControllerConfig:
    """The champion with epsilon-greedy exploration around it (propensities logged with every decision)."""
    c = champion.controller
    kind = {"heuristic": "epsilon-heuristic", "fixed-schedule": "epsilon-fixed-schedule",
            "vigilant-schedule": "epsilon-vigilant-schedule", "policy": "epsilon-policy"}.get(c.kind)
    if kind is None:
        raise ValueError(f"the champion {champion.name} ({c.kind}) has no stochastic version")
    return dataclasses.replace(c, kind=kind, epsilon=epsilon, label=f"explore:{champion.name}")


def training_configs(night: str, config: NightConfig, champion: Champion) -> tuple[list, list]:
    """The night's training configurations, each with its controller (before seed registration): the plain
    ones, and the fork parents (run by the champion itself, branched)."""
    from ..episodes.generation import GenerationSpec

    spec = GenerationSpec.load(config.spec)
    if spec.regimes and all(r["name"] in spec.unavailable for r in spec.regimes):
        raise ValueError(f"spec {config.spec!r}: no regime can run on this machine "
                         f"({'; '.join(sorted(set(spec.unavailable.values())))}); the mini preset runs on digits")  # fmt: skip
    drawn = spec.sample(config.training_episodes + config.fork_parents, seed=batch_seed(night, TRAINING))
    configs, parents = drawn[: config.training_episodes], drawn[config.training_episodes :]
    explore = stochastic_version(champion, config.epsilon)
    grid = [reference_controller(n) for n in ("heuristic", *config.reference_grid) if n != champion.name]
    n_explore = round(config.champion_share * len(configs))
    out = []
    for i, c in enumerate(configs):
        controller = explore if i < n_explore or not grid else grid[(i - n_explore) % len(grid)]
        c = dataclasses.replace(c, controller=controller, tags={**c.tags, "night": night, "night_role": "training"})
        out.append(_cut(c, config))
    forks = [_cut(dataclasses.replace(c, controller=champion.controller, tags={**c.tags, "night": night, "night_role": "fork"}), config)
             for c in parents]  # fmt: skip
    return out, forks


def fork_branching(config: NightConfig, step: int | None = None):
    """Every legal action at one early decision of the champion's, to the end of the episode: at `step` (a
    directed fork), or at a step drawn in [1, fork_max_step]."""
    from ..episodes.branching import BranchConfig

    if step is not None:
        return BranchConfig(horizon=None, fork_rule="steps", steps=(step,), defer=True, max_forks=1, min_step=1,
                            max_step=config.fork_max_step)  # fmt: skip
    return BranchConfig(horizon=None, fork_rule="random", max_forks=1, min_step=1, max_step=config.fork_max_step)


def fork_plan(night: str, config: NightConfig, paths: NightPaths, champion: Champion, parents: list) -> dict:
    """Where tonight's fork parents branch (fork_rule "directed"): from the forks of the champion's own parents on
    earlier nights in the warehouse, each parent to the earliest cell of its regime that the region rule still
    needs evidence in (online_rl/fork_plan.py). Written to <night>/fork-plan.json the first time and read back
    after, so a resumed night forks where it planned to, whatever was ingested since."""
    from ..online_rl.fork_plan import ForkPlanConfig, describe, plan_cells, plan_forks, stored_plan_forks

    path = paths.night_dir(night) / "fork-plan.json"
    if path.exists():
        plan = json.loads(path.read_text())
        parents_now = sorted(c.run_id() for c in parents)
        for field_name, stored, now in (("config.max_step", plan["config"]["max_step"], config.fork_max_step),
                                        ("parents", sorted(p["run_id"] for p in plan["parents"]), parents_now)):  # fmt: skip
            if stored != now:
                raise ValueError(f"{path}: field {field_name} was planned as {stored!r} and tonight's settings give {now!r}; "
                                 "rerun the night with the settings it started with, or remove the file to plan again")  # fmt: skip
        return plan
    plan_config = ForkPlanConfig(max_step=config.fork_max_step)
    nights = [n for n in learned_nights(paths.warehouse) if n < night]
    cells = plan_cells(stored_plan_forks(paths.warehouse, champion.controller.display_name(), nights), plan_config)
    steps = plan_forks([(c.tags.get("regime"), c.max_epochs) for c in parents], cells, plan_config)
    plan = {"champion": champion.name, "nights": nights, "config": plan_config.to_dict(),
            "parents": [{"run_id": c.run_id(), "regime": c.tags.get("regime"), "step": s} for c, s in zip(parents, steps)],
            "cells": describe(cells)}  # fmt: skip
    return _write_stage(paths, night, "fork-plan", plan)


def generate_night(night: str, config: NightConfig, paths: NightPaths, *, log: Callable[[str], None] = print,
                   on_result=None) -> dict:  # fmt: skip
    from ..episodes.generation import generate
    from ..warehouse import writing

    pinned = paths.night_dir(night) / "fork-plan.json"
    if config.fork_rule != "directed" and pinned.exists():
        raise ValueError(f"{pinned}: night {night} started with directed forks (fork_rule 'directed'); rerun it so, or "
                         "remove the file to fork at random steps")  # fmt: skip
    champion = champion_of(night, paths)
    check_champion_fits(champion, config)
    configs, parents = training_configs(night, config, champion)
    with writing(paths.warehouse) as con:
        configs = claim_seeds(con, configs, TRAINING, night, "generation")
        parents = claim_seeds(con, parents, TRAINING, night, "forks")
    plan = fork_plan(night, config, paths, champion, parents) if config.fork_rule == "directed" and parents else None
    if plan is not None:
        planned = {p["run_id"]: p["step"] for p in plan["parents"]}
        branching = [fork_branching(config, planned.get(c.run_id())) for c in parents]
        directed = sum(s is not None for s in planned.values())
        log(f"night {night}: fork plan from {sum(c['forks'] for c in plan['cells'])} stored forks of {champion.name}'s "
            f"parents: {directed} of {len(parents)} parents directed, the rest at a random step")  # fmt: skip
    else:
        branching = fork_branching(config)
    started = time.perf_counter()
    results = generate(configs, paths.raw_dir(night), workers=config.workers, on_result=on_result, reuse_existing=True,
                       **config.executor())  # fmt: skip
    forked = generate(parents, paths.raw_dir(night), workers=config.workers, on_result=on_result, reuse_existing=True,
                      branching=branching, **config.executor()) if parents else []  # fmt: skip
    done = sum(r.status == "complete" for r in [*results, *forked])
    branches = sum(r.branches for r in forked)
    log(f"night {night}: {done}/{len(results) + len(forked)} training episodes complete around champion {champion.name}, "
        f"{len(forked)} of them forked into {branches} branches ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    return _write_stage(paths, night, "generate", {
        "champion": champion.name, "episodes": len(results) + len(forked), "complete": done, "fork_parents": len(forked),
        "branches": branches, "by_controller": _count(c.controller.display_name() for c in [*configs, *parents]),
        "fork_rule": config.fork_rule,
        # As planned: a step with one legal action defers to the next with a choice (the branches table has the steps run).
        "planned_fork_steps": _count(str(p["step"] or "random") for p in plan["parents"]) if plan else {},
        "raw_dir": str(paths.raw_dir(night)), "batch_seed": batch_seed(night, TRAINING)})  # fmt: skip


# ----- ingest ------------------------------------------------------------------------------------------------
def ingest_night(night: str, paths: NightPaths, *, log: Callable[[str], None] = print) -> dict:
    from ..warehouse import ingest_folder

    summary = ingest_folder(paths.landing, paths.warehouse)
    counts = {"files": len(summary.files), "runs_loaded": summary.runs_loaded, "steps_loaded": summary.steps_loaded,
              "records_quarantined": summary.records_quarantined, "seconds": round(summary.seconds, 2)}
    log(f"night {night}: ingested the landing folder into {paths.warehouse}: {counts['runs_loaded']} new runs, "
        f"{counts['steps_loaded']} steps, {counts['records_quarantined']} records quarantined")  # fmt: skip
    return _write_stage(paths, night, "ingest", {"warehouse": str(paths.warehouse), **counts})


# ----- train -------------------------------------------------------------------------------------------------
def scaled_updates(transitions: int, config: NightConfig, batch_size: int) -> int:
    """Offline updates for this much data: `passes_over_data` passes, within [min_updates, max_updates]."""
    wanted = math.ceil(config.passes_over_data * transitions / batch_size)
    return int(min(config.max_updates, max(config.min_updates, wanted)))


def night_action_space(config: NightConfig) -> tuple[int, str]:
    """(seed slots, learners' feature set) of the night's spec: a multi-slot host's learners read the per-slot
    features (`+slots`), without which two slots at different stages look alike; a single-slot one's read what
    they always did. Every regime that can run here is read; a spec whose regimes differ in slots is refused, as
    one night's learners score one action space."""
    slots = _spec_seed_slots(config.spec)
    return slots, "base+lifecycle+task+slots" if slots > 1 else "base+lifecycle+task"


@functools.lru_cache(maxsize=None)
def _spec_seed_slots(spec: str) -> int:
    """The seed slots of every regime of `spec` that can run here (read once a process: each stage asks)."""
    from ..evaluation.headroom import HeadroomConfig, headroom_configs

    configs, _ = headroom_configs(HeadroomConfig(spec=spec, configs_per_regime=2, batch_seed=0))
    counts = {len(c.host.slots or (0,)) for c in configs}
    if len(counts) != 1:
        raise ValueError(f"spec {spec!r}: its regimes have {sorted(counts) or 'no runnable'} seed slot counts; one "
                         "night's learners score one action space: split the spec by slot count")  # fmt: skip
    return counts.pop()


def check_champion_fits(champion: Champion, config: NightConfig) -> None:
    """A champion that is a policy file acts on one action space; a night of a spec with another slot count
    (arena-v2 after arena nights in one warehouse) would fail deep in a learner or an episode. Refused first."""
    from ..agents.saved import load_policy
    from ..world.actions import action_names

    policy = _policy_file_of(champion.controller.to_dict())
    if policy is None:
        return  # a schedule or the heuristic acts on any host
    slots, _ = night_action_space(config)
    space = tuple(load_policy(policy)[1]["fine_actions"])
    if space != action_names(slots):
        raise ValueError(f"the warehouse's champion {champion.name} scores {len(space)} actions and spec {config.spec!r} "
                         f"has {slots} seed slot(s) ({len(action_names(slots))} actions): give each spec its own "
                         "warehouse (--warehouse, and --nights, --landing, --mlflow-root)")  # fmt: skip


def train_challengers(night: str, config: NightConfig, paths: NightPaths, *, log: Callable[[str], None] = print,
                      tags: dict | None = None) -> dict:  # fmt: skip
    """Train (or find, when resuming) tonight's Phase 3, then Phase 4 challengers. Returns {"challengers":
    name -> {policy, model_version, nights_learned, ...}, "not_evaluated": name -> {the same, reason}}: a learner
    in the second is trained and registered but not evaluated tonight (a vine that labelled no state)."""
    from ..agents.tracking import Tracker
    from ..offline_rl.workflow import OfflineRunConfig, train_offline
    from ..transitions.dataset import load_transitions

    out = paths.night_dir(night) / "challengers"
    champion = champion_of(night, paths)
    check_champion_fits(champion, config)
    nights = learned_nights(paths.warehouse)
    slots, feature_set = night_action_space(config)
    data = load_transitions(paths.warehouse, feature_set, seed_slots=slots if slots > 1 else None)
    previous = _read_stage(paths, night, "train") or {}
    tracker = None
    found: dict = {}
    # Phase 4 results that are not challengers, each with the learner's reason (`not_evaluated` in what it returns):
    # a vine whose region rule labelled no state is its start refitted, so evaluating it measures fitting error.
    not_evaluated: dict = {}

    def save() -> dict:  # after each learner, so a kill keeps the finished ones
        return _write_stage(paths, night, "train", {"challengers": found, "not_evaluated": not_evaluated})

    for algorithm in config.challengers:
        name = challenger_name(algorithm, night, "phase3")
        policy = out / f"phase3-{algorithm}.pt"
        if policy.exists() and name in previous.get("challengers", {}):
            found[name] = previous["challengers"][name]
            log(f"night {night}: {name} already trained ({policy}), kept")
            continue
        run_config = OfflineRunConfig(algorithm=algorithm, parent_policy=_policy_file_of(champion.controller.to_dict()),
                                      split_seed=int(batch_seed(night, TRAINING) % 1000), feature_set=feature_set,
                                      seed_slots=slots if slots > 1 else None, ensemble=config.ensemble)  # fmt: skip
        # One budget for the learner (each member of an ensemble) and its FQE checkpoint selection (none for an
        # ensemble): both pass over the same transitions. The report's FQE keeps its own, which follows the
        # episodes' length (a value needs one backup per step; fewer updates leave the late epochs out).
        learner_updates = scaled_updates(len(data), config, run_config.learner.batch_size)
        learner = dataclasses.replace(run_config.learner, updates=learner_updates)
        run_config = dataclasses.replace(run_config, **{algorithm: learner},
                                         selection_fqe=dataclasses.replace(run_config.selection_fqe, updates=learner_updates))  # fmt: skip
        log(f"night {night}: {name} on {len(data)} transitions ({feature_set}, {slots} seed slot(s)) from nights {', '.join(nights) or 'none'} "
            f"(and earlier runs): {learner_updates} updates ({config.passes_over_data:g} passes over the data, "
            f"within [{config.min_updates}, {config.max_updates}])"
            + (f", {config.ensemble} learners from consecutive seeds acting on their mean (ensemble)" if config.ensemble > 1 else ""))  # fmt: skip
        tracker = tracker or Tracker(paths.tracking)
        run = train_offline(paths.warehouse, run_config, out, tracker=tracker, log=log,
                            tags={"tamiyo.night": night, "tamiyo.nights_learned": ",".join(nights),
                                  "tamiyo.champion": champion.name, **(tags or {})})  # fmt: skip
        found[name] = {"policy": str(run.policy_path), "model_version": run.model_version,
                       "mlflow_run_id": run.mlflow_run_id, "transitions": len(data), "updates": learner_updates,
                       "ensemble": config.ensemble, "nights_learned": nights}  # fmt: skip
        save()
    lineage = {"tamiyo.night": night, "tamiyo.nights_learned": ",".join(nights), "tamiyo.champion": champion.name, **(tags or {})}
    for algorithm in config.phase4:
        name = challenger_name(algorithm, night, "phase4")
        folder = out / f"phase4-{algorithm}"
        if (folder / f"phase4-{algorithm}.pt").exists() and name in previous.get("challengers", {}):
            found[name] = previous["challengers"][name]
            log(f"night {night}: {name} already trained ({folder / f'phase4-{algorithm}.pt'}), kept")
            continue
        if (folder / f"phase4-{algorithm}.pt").exists() and name in previous.get("not_evaluated", {}):
            not_evaluated[name] = previous["not_evaluated"][name]
            log(f"night {night}: {name} already trained, not evaluated: {not_evaluated[name]['reason']}")
            continue
        tracker = tracker or Tracker(paths.tracking)
        learn = {"vine": _phase4_vine, "ppo": _phase4_ppo}[algorithm]
        trained = learn(night, config, paths, champion, nights, found, folder, name, tracker=tracker, tags=lineage, log=log)
        reason = trained.pop("not_evaluated", None) if trained is not None else None
        if reason:
            not_evaluated[name] = {**trained, "nights_learned": nights, "reason": reason}
            log(f"night {night}: {name} is not evaluated: {reason}")
        elif trained is not None:
            found[name] = {**trained, "nights_learned": nights}
        save()
    return save()


def _phase4_vine(night: str, config: NightConfig, paths: NightPaths, champion: Champion, nights: list[str], found: dict,
                 folder: Path, name: str, *, tracker, tags: dict, log) -> dict | None:  # fmt: skip
    """The champion improved by the region rule on the fork studies of every night so far (fork_evidence.py),
    through a student where it cannot be fine-tuned as it is (_student_reason)."""
    from ..online_rl.distil import DistilConfig, is_schedule
    from ..online_rl.vine import VineConfig
    from ..online_rl.workflow import OnlineRunConfig, train_online_policy

    slots, feature_set = night_action_space(config)
    policy = _policy_file_of(champion.controller.to_dict())
    if policy is None and not is_schedule(champion.name):
        log(f"night {night}: {name} skipped: the champion {champion.name} is neither a policy file nor a schedule to start from")
        return None
    forks = _stored_fork_parents(paths.warehouse, nights)
    if not forks:
        log(f"night {night}: {name} skipped: no fork study of nights {', '.join(nights) or 'none'} is in the warehouse")
        return None
    student = _student_reason(policy, champion.name, regions=True)
    start = (f"a student of the champion {champion.name} ({student}; {config.distil_updates} distillation updates on every "
             f"state of the warehouse, distil_updates)" if student else f"the champion's policy file {policy}")  # fmt: skip
    vine = VineConfig(iterations=0, evidence_warehouse=str(paths.warehouse), evidence_nights=tuple(nights),
                      updates=config.vine_updates, seed=_learner_seed(night))  # fmt: skip
    log(f"night {night}: {name} from {start}; the region rule over the fork studies of nights {', '.join(nights)} "
        f"({forks} forked parent(s)), {config.vine_updates} fine-tuning updates (vine_updates); no episodes of its own")  # fmt: skip
    run = train_online_policy(
        OnlineRunConfig(algorithm="vine", spec=config.spec, workers=config.workers, initial_policy=policy or champion.name,
                        distil=DistilConfig(updates=config.distil_updates, seed=_learner_seed(night)) if student else None,
                        distil_warehouse=str(paths.warehouse), record_dir=None, vine=vine, seed_slots=slots,
                        feature_set=feature_set),
        folder, tracker=tracker, tags=tags, log=log)  # fmt: skip
    last = run.history[-1] if run.history else {}
    trained = {"policy": str(run.policy_path), "model_version": run.model_version, "mlflow_run_id": run.mlflow_run_id,
               "start": policy or champion.name, "forks": last.get("forks", 0), "relabelled": last.get("relabelled", 0),
               "cells_tested": last.get("cells_tested", 0), "cells_labelled": last.get("cells_labelled", 0),
               "updates": config.vine_updates}  # fmt: skip
    if not trained["relabelled"]:  # its start refitted on its own choices: evaluating it would measure fitting error
        trained["not_evaluated"] = (f"the region rule labelled no state ({trained['cells_tested']} cells tested over "
                                    f"{trained['forks']} stored forks), so it is its start refitted on its own choices")  # fmt: skip
    return trained


def _phase4_ppo(night: str, config: NightConfig, paths: NightPaths, champion: Champion, nights: list[str], found: dict,
                folder: Path, name: str, *, tracker, tags: dict, log) -> dict | None:  # fmt: skip
    """PPO fine-tuning in live episodes, from the champion's policy file or, when the champion has no network,
    from tonight's Phase 3 policy (PPO_STARTS). Every configuration its environments can run is drawn and its
    seed registered as a training seed before the first episode; the environments refuse any other."""
    from ..agents.saved import load_policy
    from ..online_rl.distil import DistilConfig
    from ..online_rl.loop import assign_episode_configs, episode_slots
    from ..online_rl.workflow import OnlineRunConfig, train_online_policy
    from ..warehouse import writing

    seed_slots, feature_set = night_action_space(config)
    policy = _policy_file_of(champion.controller.to_dict())
    if policy is not None:
        why = f"the champion {champion.name}'s policy file"
    else:
        phase3 = [challenger_name(a, night, "phase3") for a in PPO_STARTS if challenger_name(a, night, "phase3") in found]
        if not phase3:
            log(f"night {night}: {name} skipped: the champion {champion.name} has no network to fine-tune and no "
                "Phase 3 challenger was trained tonight")  # fmt: skip
            return None
        policy = found[phase3[0]]["policy"]
        why = f"tonight's {phase3[0]}, since the champion {champion.name} has no network to fine-tune"
    ppo = dataclasses.replace(OnlineRunConfig().ppo, episodes=config.ppo_episodes,
                              episodes_per_iteration=config.ppo_episodes_per_iteration, seed=_learner_seed(night))  # fmt: skip
    slots = episode_slots(ppo, config.workers)
    configs = _ppo_configs(night, config, sum(slots.values()))
    with writing(paths.warehouse) as con:
        configs = claim_seeds(con, configs, TRAINING, night, "ppo")
    given = assign_episode_configs(slots, configs)
    iterations = math.ceil(config.ppo_episodes / config.ppo_episodes_per_iteration)
    log(f"night {night}: {name} from {why}: {config.ppo_episodes} episodes in {iterations} iterations of "
        f"{config.ppo_episodes_per_iteration} (the first only warms the critic up), {config.workers} environments; "
        f"{len(configs)} configurations (every one an environment may start) registered as training seeds first")  # fmt: skip
    student = _student_reason(policy, Path(policy).stem, regions=False)
    if student:
        log(f"night {night}: {name} starts from a student of it ({student}; {config.distil_updates} distillation updates)")
    learned = set((load_policy(policy)[1].get("metadata") or {}).get("data_seeds") or [])
    run = train_online_policy(
        OnlineRunConfig(algorithm="ppo", spec=config.spec, workers=config.workers, initial_policy=policy,
                        seed_slots=seed_slots, feature_set=feature_set,
                        distil=DistilConfig(updates=config.distil_updates, seed=_learner_seed(night)) if student else None,
                        distil_warehouse=str(paths.warehouse), record_dir=str(paths.raw_dir(night)), ppo=ppo),
        folder, tracker=tracker, tags=tags, log=log, episode_configs=given,
        metadata={"data_seeds": sorted(learned | {c.seed for c in configs})})  # fmt: skip
    return {"policy": str(run.policy_path), "model_version": run.model_version, "mlflow_run_id": run.mlflow_run_id,
            "start": policy, "episodes": config.ppo_episodes, "seeds": sorted({c.seed for c in configs}),
            "alerts": run.alerts}  # fmt: skip


def _student_reason(policy: str | None, name: str, *, regions: bool) -> str | None:
    """Why a learner must start from a student of this start rather than the start itself (None: it need not).
    A schedule or the heuristic has no network; BCQ gives probability 0 to every action its data never took
    (no gradient step or exploration can raise it); the region rule places states by epoch and length."""
    if policy is None:
        return f"{name} has no network"
    from ..agents.saved import load_policy

    module, payload = load_policy(policy)
    if module.kind == "bcq":
        return "BCQ's actions outside its data have probability 0"
    if module.kind == "ensemble":
        return f"an ensemble of {len(module.members)} {module.members[0].kind} networks is not one network to fine-tune"
    if regions and not {"epoch", "epochs_remaining"} <= set(payload["feature_names"]):
        return "its policy does not read epoch and epochs_remaining, which place a state in a region"
    return None


def _ppo_configs(night: str, config: NightConfig, count: int) -> list:
    """PPO's configurations: the spec's, from a batch seed of their own (the training draw's last digit is 0,
    the evaluation's 1, PPO's 2), cut like the night's, tagged with the night so later learners count it."""
    from ..episodes.generation import GenerationSpec

    drawn = GenerationSpec.load(config.spec).sample(count, seed=batch_seed(night, TRAINING) + 2)
    return [_cut(dataclasses.replace(c, tags={**c.tags, "night": night, "night_role": "ppo"}), config) for c in drawn]


def _learner_seed(night: str) -> int:
    return int(batch_seed(night, TRAINING) % 1000)


def _stored_fork_parents(warehouse: Path, nights: list[str]) -> int:
    from ..warehouse import query

    if not nights:
        return 0
    listed = ", ".join(f"'{n}'" for n in nights)
    try:
        frame = query(warehouse, "SELECT count(DISTINCT b.parent_run_id) AS n FROM branches b JOIN runs p ON p.run_id = b.parent_run_id "
                                 f"WHERE json_extract_string(p.config_json, '$.tags.night') IN ({listed})")  # fmt: skip
    except Exception:  # noqa: BLE001 - no warehouse or no branches table yet: no evidence
        return 0
    return int(frame["n"][0])


def challenger_name(algorithm: str, night: str, phase: str = "phase3") -> str:
    """A challenger's name carries its phase and night: a champion promoted from an earlier night keeps its own
    name beside tonight's challenger of the same algorithm."""
    if phase not in CHALLENGER_PHASES:
        raise ValueError(f"challenger phase {phase!r}; known: {', '.join(CHALLENGER_PHASES)}")
    return f"{phase}-{algorithm}-{night}"


def learned_nights(warehouse: Path) -> list[str]:
    """The nights whose training episodes are in the warehouse (what tonight's learners read)."""
    from ..warehouse import query

    try:
        frame = query(warehouse, "SELECT DISTINCT json_extract_string(config_json, '$.tags.night') AS night FROM runs "
                                 "WHERE json_extract_string(config_json, '$.tags.night') IS NOT NULL ORDER BY 1", live=True)  # fmt: skip
    except Exception:  # noqa: BLE001 - no warehouse yet: nothing learned from
        return []
    return [n for n in frame["night"].to_list() if n]


# ----- evaluate ----------------------------------------------------------------------------------------------
def heldout_configs(night: str, config: NightConfig, paths: NightPaths) -> list:
    """The night's held-out configurations: `heldout_per_regime` of each regime, from the night's evaluation
    batch seed, their seeds registered once as evaluation seeds (odd, never used before)."""
    from ..evaluation.headroom import HeadroomConfig, headroom_configs
    from ..warehouse import writing

    draw = HeadroomConfig(spec=config.spec, configs_per_regime=config.heldout_per_regime,
                          batch_seed=batch_seed(night, EVALUATION))  # fmt: skip
    configs, skipped = headroom_configs(draw)
    if not configs:
        raise ValueError(f"spec {config.spec!r}: no regime can run here ({'; '.join(skipped.values())})")
    configs = [_cut(dataclasses.replace(c, tags={**c.tags, "night": night, "night_role": "evaluation"}), config)
               for c in configs]  # fmt: skip
    with writing(paths.warehouse) as con:
        return claim_seeds(con, configs, EVALUATION, night, "evaluation")


def night_arms(night: str, config: NightConfig, paths: NightPaths, challengers: dict) -> tuple[Champion, dict, dict]:
    """(champion, name -> controller, name -> role) of the night's evaluation."""
    champion = champion_of(night, paths)
    arms = {champion.name: champion.controller}
    roles = {champion.name: "champion"}
    for name in ("heuristic", *config.reference_grid):
        if name not in arms:
            arms[name], roles[name] = reference_controller(name), ("heuristic" if name == "heuristic" else "reference")
    for name, info in challengers.items():
        arms[name] = ControllerConfig(kind="policy", policy=f"file:{Path(info['policy']).resolve()}", label=name)
        roles[name] = "challenger"
    for shipped in shipped_challengers(night, config, paths):
        if shipped.label not in arms:
            arms[shipped.label] = ControllerConfig(kind="policy", policy=f"file:{shipped.path}", label=shipped.label)
            roles[shipped.label] = "challenger"
    former = dethroned_champion(night, config, paths)
    if former is not None and former.name not in arms:
        arms[former.name], roles[former.name] = former.controller, "challenger"
    return champion, arms, roles


def dethroned_champion(night: str, config: NightConfig, paths: NightPaths):
    """The champion that last night's promotion dethroned, or None (champion.dethroned: it defends once)."""
    from ..warehouse import open_warehouse
    from .champion import dethroned

    con = open_warehouse(paths.warehouse)
    try:
        return dethroned(con, night, config.score)
    finally:
        con.close()


def shipped_challengers(night: str, config: NightConfig, paths: NightPaths) -> list:
    """The policies shipped for the night's spec, when this is the warehouse's first night (no night recorded
    before it). They are pinned the first time they are asked for: copied into the night's folder (shipped/) and
    listed with their digests in shipped.json, which every later call (a resumed stage, a Dagster asset, a rerun of
    the night) reads instead of the package, so an upgrade or a `study ship --force` never changes a night's arms
    or a champion promoted from them."""
    import hashlib
    import shutil

    from ..controllers.shipped import ShippedPolicy, shipped_policies
    from ..episodes.generation import GenerationSpec

    if not config.shipped_challengers:
        return []
    recorded = _read_stage(paths, night, "shipped")
    if recorded is None:
        policies = [] if _recorded_nights(night, paths, before=True) else shipped_policies(spec=GenerationSpec.load(config.spec).name)
        folder = paths.night_dir(night) / "shipped"
        pinned = []
        for policy in policies:
            folder.mkdir(parents=True, exist_ok=True)
            for source in (policy.path, policy.card):
                shutil.copyfile(source, folder / source.name)
            pinned.append({"name": policy.name, "path": str((folder / policy.path.name).resolve()),
                           "card": str((folder / policy.card.name).resolve()), "spec": policy.spec, "study": policy.study,
                           "summary": policy.summary, "source": str(policy.path),
                           "sha256": hashlib.sha256(policy.path.read_bytes()).hexdigest()})  # fmt: skip
        recorded = _write_stage(paths, night, "shipped", {"policies": pinned})
    return [ShippedPolicy(p["name"], Path(p["path"]), Path(p["card"]), p["spec"], p["study"], p["summary"])
            for p in recorded["policies"]]  # fmt: skip


def predict_night(night: str, config: NightConfig, paths: NightPaths, *, log: Callable[[str], None] = print) -> dict | None:
    """The ope stage: every arm the evaluation will run (night_arms) estimated off-policy on the warehouse's
    transitions, before any held-out episode, written to ope.json and the night's ope/ report (None when
    `config.ope` is off). Read back when already made: a prediction is never refitted after the evaluation."""
    from .prediction import estimate_arms

    if not config.ope:
        return None
    found = _read_stage(paths, night, "ope")
    if found is not None:
        log(f"night {night}: the off-policy prediction was made before the evaluation ({len(found['predicted'])} arms), kept")
        return found
    challengers = (_read_stage(paths, night, "train") or {}).get("challengers", {})
    champion, arms, _ = night_arms(night, config, paths, challengers)
    policies = {name: controller.policy.removeprefix("file:") if controller.kind == "policy" else name
                for name, controller in arms.items() if name != "heuristic"}  # fmt: skip
    slots, _ = night_action_space(config)
    log(f"night {night}: off-policy prediction of {len(arms)} arms (FQE on every night's transitions), before the evaluation")
    payload = estimate_arms(policies, paths.warehouse, slots, config.ope_updates, paths.night_dir(night) / "ope",
                            champion=champion.name, title=f"Night {night}: off-policy prediction, before the evaluation",
                            log=lambda line: log(f"  {line}"))  # fmt: skip
    log(f"night {night}: predicted in {payload['seconds']:.0f} s on {payload['data']['transitions']} transitions")
    return _write_stage(paths, night, "ope", payload)


def evaluate_night(night: str, config: NightConfig, paths: NightPaths, *, log: Callable[[str], None] = print,
                   on_result=None):  # fmt: skip
    """Run (or read back) the night's paired design; returns (champion, PairedRuns, roles)."""
    from ..agents.saved import load_policy
    from ..evaluation.paired import run_paired

    challengers = (_read_stage(paths, night, "train") or {}).get("challengers", {})
    configs = heldout_configs(night, config, paths)
    champion, arms, roles = night_arms(night, config, paths, challengers)
    seeds = {c.seed for c in configs}
    for name, controller in arms.items():  # no policy is graded on a configuration it learned from
        if controller.kind == "policy":
            learned = set((load_policy(controller.policy.removeprefix("file:"))[1].get("metadata") or {}).get("data_seeds") or [])
            if learned & seeds:
                raise RuntimeError(f"{name} learned from held-out seeds {sorted(learned & seeds)[:5]}: the seed registry was bypassed")
    started = time.perf_counter()
    runs = run_paired(configs, arms, paths.night_dir(night) / "evaluation", reference=champion.name,
                      null_orders=config.fresh_orders, replicate=config.fresh_orders, workers=config.workers,
                      on_result=on_result, **config.executor())  # fmt: skip
    log(f"night {night}: evaluated {len(arms)} controllers on {len(configs)} held-out configurations x "
        f"{1 + config.fresh_orders} data orders ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    _write_stage(paths, night, "evaluate", {"configurations": len(configs), "arms": list(arms), "champion": champion.name,
                                            "batch_seed": batch_seed(night, EVALUATION), "failures": runs.failures()})  # fmt: skip
    return champion, runs, roles


# ----- decide ------------------------------------------------------------------------------------------------
@dataclass
class NightDecision:
    night: str
    champion: str
    champion_after: str
    promoted: Comparison | None
    comparisons: list[Comparison]
    model_version: str | None = None

    def to_dict(self) -> dict:
        return {"night": self.night, "champion": self.champion, "champion_after": self.champion_after,
                "promoted": self.promoted.arm if self.promoted else None, "model_version": self.model_version,
                "comparisons": [dataclasses.asdict(c) for c in self.comparisons]}  # fmt: skip


def decide_night(night: str, config: NightConfig, paths: NightPaths, champion: Champion, runs, roles: dict, *,
                 log: Callable[[str], None] = print) -> NightDecision:  # fmt: skip
    from ..warehouse import writing

    later = _recorded_nights(night, paths)
    if later:
        log(f"night {night}: nights {', '.join(later)} are recorded already; they started from the champion they had, "
            "so tonight's decision does not change them (rerun them, in order, to follow it)")  # fmt: skip

    comparisons = [compare(runs, arm, roles[arm], controller, config.rule, config.score)
                   for arm, controller in runs.arms.items() if arm != champion.name]  # fmt: skip
    promoted = choose(comparisons)
    prediction = _read_stage(paths, night, "ope") if config.ope else None
    scored = None
    if prediction is not None:
        from .prediction import score_prediction

        scored = score_prediction(prediction, runs, comparisons, champion.name)
    version = None
    if promoted is not None:
        from .champion import register_champion

        version = register_champion(paths.tracking, config.score, night, promoted, _policy_file_of(promoted.controller))
    with writing(paths.warehouse) as con:
        record_night(con, night, config.score, champion, comparisons, promoted, batch_seed(night, EVALUATION),
                     config.rule, version)  # fmt: skip
        if scored is not None:
            from .prediction import record_prediction

            record_prediction(con, night, config.score, scored, roles)
    decision = NightDecision(night, champion.name, promoted.arm if promoted else champion.name, promoted, comparisons, version)
    rent = runs.rent()
    if rent:
        from ..evaluation.paired import decided_by

        log(f"night {night}: rent {rent:g}; decided by {decided_by(rent)}, the raw test accuracy recorded beside it")
    log(f"night {night}: " + (f"promoted {promoted.arm} over {champion.name} ({promoted.reason})" if promoted
                              else f"kept {champion.name}: no controller passed the rule"))  # fmt: skip
    if scored is not None and scored["calibration"]["policies"] >= 2:
        calib = scored["calibration"]
        log(f"night {night}: the off-policy prediction against live: Spearman {calib['spearman']:+.2f} over "
            f"{calib['policies']} arms, mean absolute error {calib['mean_abs_error_pp']:.2f} pp"
            + (f"; ceiling set by live's noise {scored['intervals']['ceiling']:+.2f}" if scored["intervals"] else ""))  # fmt: skip
    _write_stage(paths, night, "decide", decision.to_dict())
    return decision


def _recorded_nights(night: str, paths: NightPaths, *, before: bool = False) -> list[str]:
    """The nights recorded in champion_history after `night` (before it, with `before`)."""
    from ..warehouse import open_warehouse
    from .champion import ensure_history

    con = open_warehouse(paths.warehouse)
    try:
        ensure_history(con)
        return [n for (n,) in con.execute(f"SELECT DISTINCT night FROM champion_history WHERE night {'<' if before else '>'} ? "
                                          "ORDER BY 1", [night]).fetchall()]  # fmt: skip
    finally:
        con.close()


def champion_of(night: str, paths: NightPaths) -> Champion:
    """The champion a night starts with: the last one recorded before it."""
    from ..warehouse import open_warehouse

    con = open_warehouse(paths.warehouse)
    try:
        return current_champion(con, before=night)
    finally:
        con.close()


# ----- the whole night ---------------------------------------------------------------------------------------
def run_night(night: str, config: NightConfig, paths: NightPaths, *, log: Callable[[str], None] = print,
              on_result=None) -> NightDecision:  # fmt: skip
    """Every stage in turn (each resumes; see the module docstring). `on_result` sees every finished episode."""
    from ..episodes.generation import GenerationSpec
    from .report import write_night_report

    check_night(night)
    started = time.perf_counter()
    spec = GenerationSpec.load(config.spec)
    regimes = max(1, len([r for r in spec.regimes if r["name"] not in spec.unavailable]))
    shipped = shipped_challengers(night, config, paths)
    slots, _ = night_action_space(config)
    blueprints = len(spec.sample(1, seed=0)[0].blueprints)  # with the slots, how wide a fork at an early step is
    former = dethroned_champion(night, config, paths)
    defends = former is not None and former.name not in ("heuristic", *config.reference_grid)  # else an arm already
    budget = config.planned_episodes(regimes, len(shipped) + defends, fork_actions=1 + blueprints * slots)
    if shipped:
        log(f"night {night}: the warehouse's first night takes the shipped {', '.join(p.label for p in shipped)} as challenger(s)")
    if former is not None:
        log(f"night {night}: {former.name}, the champion dethroned last night, is a challenger once more (a promotion "
            "that was luck is undone by the same rule)")  # fmt: skip
    log(f"night {night}: at most {budget['total']} episodes planned ({budget['training']} training, up to "
        f"{budget['forks']} in fork studies, {budget['ppo']} of PPO's, {budget['evaluation']} in the evaluation, over {regimes} regime(s) of "
        f"spec {config.spec}); episodes already on disk are read back")  # fmt: skip
    _write_stage(paths, night, "config", {**config.to_dict(), "planned_episodes": budget})
    generate_night(night, config, paths, log=log, on_result=on_result)
    ingest_night(night, paths, log=log)
    train_challengers(night, config, paths, log=log)
    predict_night(night, config, paths, log=log)
    champion, runs, roles = evaluate_night(night, config, paths, log=log, on_result=on_result)
    decision = decide_night(night, config, paths, champion, runs, roles, log=log)
    report = write_night_report(night, paths, config)
    log(f"night {night} done in {(time.perf_counter() - started) / 60:.1f} min; report {report}")
    return decision


# ----- helpers -----------------------------------------------------------------------------------------------
def _cut(config, night_config: NightConfig):
    if night_config.max_epochs and config.max_epochs > night_config.max_epochs:
        return dataclasses.replace(config, max_epochs=night_config.max_epochs)
    return config


def _policy_file_of(controller: dict) -> str | None:
    policy = controller.get("policy")
    return policy.removeprefix("file:") if policy and policy.startswith("file:") else None


def _count(names) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def _write_stage(paths: NightPaths, night: str, stage: str, payload: dict) -> dict:
    """The stage's record, written atomically (a reader or a resumed night never sees half of one)."""
    folder = paths.night_dir(night)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stage}.json.partial"
    tmp.write_text(json.dumps({"night": night, "stage": stage, **payload}, indent=1, default=str) + "\n")
    tmp.replace(folder / f"{stage}.json")
    return payload


def _read_stage(paths: NightPaths, night: str, stage: str) -> dict | None:
    path = paths.night_dir(night) / f"{stage}.json"
    return json.loads(path.read_text()) if path.exists() else None
