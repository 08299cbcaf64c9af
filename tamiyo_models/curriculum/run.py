"""Training through a curriculum: rounds of online RL (Phase 4) on one stage at a time, each followed by the
policy's paired margin over the heuristic on that stage's held-out configurations (test split).

- `order="manual"`: the stages in curriculum order; a stage is left when its promotion rule says so (margin
  interval above the threshold, or its episode budget spent); once the last stage is promoted, the rest of the
  total budget is spent on it, so that manual and automatic orders compare at an equal budget.
- `order="weakest"` / `"progress"`: each round trains on the stage `auto.pick_task` chooses from the margins
  measured so far, until the total budget is spent.

The policy is carried forward: each round starts from the previous round's file (its critic included, so
only the first round warms the critic up) and is its parent in MLflow; each round is an MLflow child run
of the curriculum's run when a tracker is given. Stages whose data is missing here are skipped with the
message naming the files. Every rollout lands as a raw run in `record_dir`, as for any Phase 4 training.

A curriculum resumes: `curriculum.json` in the output folder is rewritten after every round, and a later call
with the same curriculum and learner settings continues from its last round (`max_rounds` bounds one call:
the nightly job runs one round per night). Raising `budget_episodes` extends a finished curriculum.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .auto import STRATEGIES, Measurement, pick_task
from .spec import CurriculumSpec, Stage

ORDERS = ("manual", *STRATEGIES)


@dataclass(frozen=True)
class CurriculumRunConfig:
    order: str = "manual"  # manual | weakest | progress
    budget_episodes: int = 256  # training episodes in all (evaluation episodes not counted)
    algorithm: str = "ppo"
    initial_policy: str | None = None  # a policy file or MLflow reference; None: a fresh MLP actor
    workers: int = 2
    episodes_per_iteration: int = 8
    entropy_floor: float = 0.0
    record_dir: str | None = "var/raw"
    live_dir: str | None = None  # where evaluation episodes are kept (default OUT/live); runs that share it share
    #                              the heuristic's episodes on the same held-out configurations
    seed: int = 0

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"unknown curriculum order {self.order!r}; known: {', '.join(ORDERS)}")
        if self.budget_episodes < 1:
            raise ValueError("budget_episodes must be >= 1")


@dataclass
class RoundResult:
    round: int
    stage: str
    episodes: int  # training episodes of this round
    episodes_total: int  # training episodes of the whole run so far
    margin: float
    low: float
    high: float
    noise_floor: float
    policy: str
    promoted: bool = False
    reason: str = ""
    alerts: list[str] = field(default_factory=list)  # the reward-hacking watch's, from the round's training


@dataclass
class CurriculumResult:
    curriculum: str
    config: CurriculumRunConfig
    rounds: list[RoundResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why it could not run here
    policy_path: Path | None = None
    training_seeds: list[int] = field(default_factory=list)  # configurations trained on: never scored on
    new_rounds: int = 0  # rounds run by this call (the others were resumed from curriculum.json)

    @property
    def episodes_used(self) -> int:
        return self.rounds[-1].episodes_total if self.rounds else 0

    @property
    def finished(self) -> bool:
        return self.episodes_used >= self.config.budget_episodes

    def to_dict(self) -> dict:
        return {"curriculum": self.curriculum, "config": dataclasses.asdict(self.config), "skipped": self.skipped,
                "policy": str(self.policy_path) if self.policy_path else None, "finished": self.finished,
                "rounds": [dataclasses.asdict(r) for r in self.rounds], "training_seeds": self.training_seeds}  # fmt: skip


# Settings a resumed curriculum must share with the one it continues: they shape what the rounds learn.
# (The budget may grow; workers, folders and the initial policy, used by round 0 only, may differ.)
_RESUME_KEYS = ("order", "algorithm", "episodes_per_iteration", "entropy_floor", "seed")


def _resume(state_file: Path, curriculum: CurriculumSpec, config: CurriculumRunConfig, result: CurriculumResult) -> None:
    """Fill `result` with the rounds recorded in `state_file`, refusing a file made by other settings."""
    try:
        state = json.loads(state_file.read_text())
        rounds = [RoundResult(**r) for r in state["rounds"]]
        recorded, seeds = state["config"], [int(x) for x in state.get("training_seeds", [])]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{state_file}: not a curriculum state file this version can resume ({type(exc).__name__}: {exc}); "
                         "move it away or choose another output folder") from None  # fmt: skip
    if state.get("curriculum") != curriculum.name:
        raise ValueError(f"{state_file}: field curriculum is {state.get('curriculum')!r}, this run is {curriculum.name!r}: "
                         "choose another output folder")  # fmt: skip
    for key in _RESUME_KEYS:
        if recorded.get(key) != getattr(config, key):
            raise ValueError(f"{state_file}: field config.{key} is {recorded.get(key)!r}, this run asks for "
                             f"{getattr(config, key)!r}: resume with the same settings or choose another output folder")  # fmt: skip
    names = {s.name for s in curriculum.stages}
    unknown = sorted({r.stage for r in rounds} - names)
    if unknown:
        raise ValueError(f"{state_file}: rounds on stages {unknown} that curriculum {curriculum.name!r} no longer has")
    result.rounds, result.training_seeds = rounds, seeds


def _save_state(state_file: Path, result: CurriculumResult) -> None:
    # Written aside and renamed: a crash mid-write must not cost the rounds already recorded.
    partial = state_file.with_name(f".{state_file.name}.partial")
    partial.write_text(json.dumps(result.to_dict(), indent=1, default=float))
    partial.replace(state_file)


def stage_margin(policy_path, stage: Stage, out_dir: Path, *, workers: int, exclude_seeds=()) -> tuple[float, float, float, float]:
    """(mean, low, high, noise floor) of the policy's paired test-score difference from the heuristic on the
    stage's held-out configurations. The heuristic's episodes are kept in `out_dir` and reused by later rounds."""
    from ..evaluation import evaluate_live_many

    configs = stage.eval_configs_list()
    live = evaluate_live_many({"policy": policy_path}, configs, out_dir, workers=workers,
                              training_seeds={"policy": list(exclude_seeds)})  # fmt: skip
    r = live["policy"]
    return r.mean_difference, r.ci_low, r.ci_high, r.noise_floor


def run_curriculum(curriculum: CurriculumSpec, config: CurriculumRunConfig, out_dir, *, tracker=None,
                   parent_run_id: str | None = None, max_rounds: int | None = None, log=print) -> CurriculumResult:  # fmt: skip
    from ..online_rl.workflow import OnlineRunConfig, train_online_policy
    from ..world.rawrun import list_raw_runs, read_raw_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = CurriculumResult(curriculum.name, config)
    stages = []
    for stage in curriculum.stages:
        missing = stage.unavailable()
        if missing:
            result.skipped[stage.name] = missing
            log(f"stage {stage.name}: skipped, its data is missing here: {missing}")
        else:
            stages.append(stage)
    if not stages:
        raise ValueError(f"curriculum {curriculum.name!r}: no stage can run on this machine: "
                         + "; ".join(f"{k}: {v}" for k, v in result.skipped.items()))  # fmt: skip
    # One actor from the first stage to the last scores one action space, so every stage has the same seed slots;
    # the learner is told how many (a two-slot curriculum is the nightly's own action space on arena v2).
    slots = {s.name: s.seed_slots() for s in stages}
    if len(set(slots.values())) != 1:
        raise ValueError(f"curriculum {curriculum.name!r}: its stages' hosts have different seed slots ("
                         + ", ".join(f"{k}: {v}" for k, v in slots.items())
                         + "); one actor scores one action space: give every stage the same host slots")  # fmt: skip
    seed_slots = next(iter(slots.values()))
    # Two slots at different stages look alike without the per-slot features (as the night's learners read them).
    feature_set = OnlineRunConfig.feature_set + ("+slots" if seed_slots > 1 else "")
    # Each stage's generation spec as a file, written once, for the environment workers to load.
    spec_files = {s.name: str(s.write_spec(out / "stages")) for s in stages}
    live_dir = Path(config.live_dir) if config.live_dir else out / "live"
    state_file = out / "curriculum.json"
    policy, current, spent_on = config.initial_policy, 0, {s.name: 0 for s in stages}
    if state_file.exists():
        _resume(state_file, curriculum, config, result)
        for r in result.rounds:
            spent_on[r.stage] = spent_on.get(r.stage, 0) + r.episodes
            current += int(r.promoted)
        if result.rounds:
            policy = result.rounds[-1].policy
            log(f"curriculum {curriculum.name} ({config.order}): resuming after round {result.rounds[-1].round} "
                f"({result.episodes_used}/{config.budget_episodes} episodes) from {state_file}")  # fmt: skip
    history = [Measurement(r.stage, r.episodes_total, r.margin, r.low, r.high) for r in result.rounds]
    seen = result.training_seeds
    if tracker is not None and parent_run_id is None and not result.finished:
        parent_run_id = tracker.parent_run_id(f"curriculum-{curriculum.name}-{config.order}-{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.perf_counter()
    round_no = len(result.rounds)
    while result.episodes_used < config.budget_episodes and (max_rounds is None or result.new_rounds < max_rounds):
        # Manual: the current stage; once the last one is promoted, the rest of the budget goes to it (the hardest),
        # so that every order spends the same budget.
        stage = (stages[min(current, len(stages) - 1)] if config.order == "manual"
                 else _by_name(stages, pick_task([s.name for s in stages], history, config.order)))  # fmt: skip
        episodes = min(stage.episodes_per_round, config.budget_episodes - result.episodes_used)
        round_dir = out / "rounds" / f"{round_no:03d}-{stage.name}"
        base = OnlineRunConfig()
        learner = dataclasses.replace(getattr(base, config.algorithm), episodes=episodes, seed=config.seed + round_no,
                                      episodes_per_iteration=min(config.episodes_per_iteration, episodes),
                                      entropy_floor=config.entropy_floor,
                                      # the critic comes with the policy after the first round: no second warm-up
                                      critic_warmup_epochs=getattr(base, config.algorithm).critic_warmup_epochs if round_no == 0 else 0)  # fmt: skip
        run_config = OnlineRunConfig(algorithm=config.algorithm, spec=spec_files[stage.name], workers=config.workers,
                                     initial_policy=policy, record_dir=config.record_dir, seed_slots=seed_slots,
                                     feature_set=feature_set, **{config.algorithm: learner})  # fmt: skip
        log(f"round {round_no}: stage {stage.name}, {episodes} episodes from {policy or 'a fresh actor'}")
        before = set(list_raw_runs(config.record_dir)) if config.record_dir else set()
        run = train_online_policy(run_config, round_dir, tracker=tracker, parent_run_id=parent_run_id,
                                  tags={"tamiyo.curriculum": curriculum.name, "tamiyo.curriculum_stage": stage.name,
                                        "tamiyo.curriculum_round": str(round_no)}, log=log, phase="phase5")  # fmt: skip
        policy = str(run.policy_path)
        spent_on[stage.name] += episodes
        if config.record_dir:  # the configurations trained on so far: evaluation refuses to score on any of them
            seen += [read_raw_run(p).header["config"]["seed"] for p in set(list_raw_runs(config.record_dir)) - before]
        mean, low, high, floor = stage_margin(policy, stage, live_dir / stage.name, workers=config.workers, exclude_seeds=seen)
        total = result.episodes_used + episodes
        history.append(Measurement(stage.name, total, mean, low, high))
        row = RoundResult(round_no, stage.name, episodes, total, mean, low, high, floor, policy, alerts=list(run.alerts))
        if config.order == "manual" and current < len(stages):
            row.promoted, row.reason = stage.promotion.decide(low, spent_on[stage.name])
            current += int(row.promoted)
        result.rounds.append(row)
        result.new_rounds += 1
        log(f"round {round_no}: {stage.name} margin {mean:+.2f} [{low:+.2f}, {high:+.2f}] pp vs heuristic (null "
            f"{floor:.2f}), {total}/{config.budget_episodes} episodes" + (f"; promoted: {row.reason}" if row.promoted else
            (f"; stays: {row.reason}" if row.reason else "")))  # fmt: skip
        result.policy_path = Path(policy)
        _save_state(state_file, result)
        round_no += 1
    result.policy_path = Path(policy) if policy else None
    if result.rounds:
        _save_state(state_file, result)
    status = "finished" if result.finished else f"paused after {result.new_rounds} round(s) this call (resumes from {state_file})"
    log(f"curriculum {curriculum.name} ({config.order}): {len(result.rounds)} rounds, {result.episodes_used}/"
        f"{config.budget_episodes} training episodes, {status}, {time.perf_counter() - started:.0f} s; policy {result.policy_path}")  # fmt: skip
    return result


def _by_name(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)
