"""The descriptor-keyed schedule: one fixed schedule per configuration, chosen from what is known before the
episode starts, the strongest baseline a policy that reads the training state has to beat (issue 34).

A fixed schedule ignores everything; the best schedule per regime knows the regime. A configuration's visible
descriptors say more: the host's size and shape, the training-set size, the episode's length, the learning
rate, all of them in the observation at the first decision. This baseline learns, on *training*
configurations where every schedule of a grid ran on the same data order, which schedule wins for which
descriptors (a small decision tree, scikit-learn), and then picks one schedule per held-out configuration
before it runs. Whatever a policy gains over it comes from reading the run as it unfolds (the *state-dependent
headroom*: the per-configuration oracle minus this, on fresh data orders).

Fitted only on training configurations: the seed registry makes training seeds even and evaluation seeds odd
(warehouse/seeds.py), and `fit_descriptor_schedule` refuses any odd seed, so a held-out configuration can never
shape the choice it is scored with.

    model = fit_descriptor_schedule(descriptors, scores, schedules, seeds)     # arrays, or from_paired_runs(...)
    model.choose({"task_host_width_first": 2.0, ...}) -> "fixed:conv_heavy@1"
    print(model.rules())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..world.features import TASK_FEATURES

# Everything a controller knows at its first decision that the run has not yet shown: the task, the episode's
# length and its learning rate.
DEFAULT_DESCRIPTORS: tuple[str, ...] = (*TASK_FEATURES, "epochs_remaining", "learning_rate")


@dataclass(frozen=True)
class DescriptorScheduleConfig:
    descriptors: tuple[str, ...] = DEFAULT_DESCRIPTORS
    max_depth: int = 2  # a few readable rules: the baseline must not memorise configurations
    min_samples_leaf: int = 4
    seed: int = 0


@dataclass
class DescriptorSchedule:
    schedules: tuple[str, ...]
    descriptors: tuple[str, ...]
    tree: object  # sklearn.tree.DecisionTreeClassifier
    training_seeds: tuple[int, ...]
    training_winners: dict[str, int] = field(default_factory=dict)  # schedule -> training configurations it won

    def choose(self, descriptors: Mapping[str, float]) -> str:
        row = np.array([[float(descriptors[name]) for name in self.descriptors]], dtype=np.float64)
        return self.schedules[int(self.tree.predict(np.nan_to_num(row, nan=-1.0))[0])]

    def rules(self) -> str:
        from sklearn.tree import export_text

        classes = [self.schedules[int(c)] for c in self.tree.classes_]
        text = export_text(self.tree, feature_names=list(self.descriptors), class_names=classes)
        return text.replace("class: ", "schedule: ")


def fit_descriptor_schedule(descriptors: Sequence[Mapping[str, float]], scores: np.ndarray, schedules: Sequence[str],
                            seeds: Sequence[int], config: DescriptorScheduleConfig = DescriptorScheduleConfig()) -> DescriptorSchedule:  # fmt: skip
    """Fit on training configurations: `descriptors[i]` of configuration i, `scores[i, j]` the score of
    `schedules[j]` on it (same data order; NaN where the run failed), `seeds[i]` its configuration seed."""
    from sklearn.tree import DecisionTreeClassifier

    from ..warehouse.seeds import EVALUATION, seed_class

    held_out = sorted(int(s) for s in seeds if seed_class(int(s), EVALUATION) == int(s))
    if held_out:
        raise ValueError(f"the descriptor-keyed schedule is fitted on training configurations only; {len(held_out)} "
                         f"have evaluation seeds (odd: held-out), e.g. {held_out[:5]}")  # fmt: skip
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(descriptors), len(schedules)):
        raise ValueError(f"scores must be configurations x schedules, {len(descriptors)} x {len(schedules)}; got {scores.shape}")
    complete = np.isfinite(scores).all(axis=1)
    if complete.sum() < 2:
        raise ValueError(f"{int(complete.sum())} training configurations have a score for every schedule; need at least 2")
    x = np.array([[float(d[name]) for name in config.descriptors] for d, ok in zip(descriptors, complete) if ok])
    y = scores[complete].argmax(axis=1)  # ties: the first schedule listed
    tree = DecisionTreeClassifier(max_depth=config.max_depth, min_samples_leaf=config.min_samples_leaf,
                                  random_state=config.seed).fit(np.nan_to_num(x, nan=-1.0), y)  # fmt: skip
    winners = {schedules[j]: int((y == j).sum()) for j in range(len(schedules))}
    return DescriptorSchedule(tuple(schedules), tuple(config.descriptors), tree,
                              tuple(int(s) for s, ok in zip(seeds, complete) if ok), winners)  # fmt: skip


def run_descriptors(path, names: Sequence[str] = DEFAULT_DESCRIPTORS) -> dict[str, float]:
    """A configuration's descriptors, read from the first decision of one of its raw runs (any controller: before
    the first decision no controller has acted)."""
    from ..world.features import observation_features
    from ..world.rawrun import read_raw_run

    run = read_raw_run(path)
    if not run.steps:
        raise ValueError(f"{path}: no decision recorded, so no descriptors")
    features = observation_features(run.steps[0])
    return {name: features[name] for name in names}


def from_paired_runs(runs, schedules: Sequence[str], *, order: int = 0, which: str = "test",
                     config: DescriptorScheduleConfig = DescriptorScheduleConfig()) -> DescriptorSchedule:  # fmt: skip
    """Fit on a paired design over training configurations (every schedule ran on each, e.g. `tamiyo headroom` on
    a training batch): the scores on data order `order`, the descriptors from each configuration's first run."""
    descriptors, scores, seeds = [], [], []
    for i, c in enumerate(runs.configs):
        outcome = next((o for (k, a, r), o in runs.outcomes.items() if k == i and r == order and o.result.steps > 0), None)
        if outcome is None:
            continue
        descriptors.append(run_descriptors(outcome.result.path, config.descriptors))
        scores.append([runs.score(i, s, order, which) for s in schedules])
        seeds.append(c.seed)
    return fit_descriptor_schedule(descriptors, np.array(scores), schedules, seeds, config)


def choices_for(model: DescriptorSchedule, runs, *, order: int = 0) -> list[str | None]:
    """The schedule the model picks for each configuration of a (held-out) design, from its descriptors."""
    out: list[str | None] = []
    for i in range(len(runs.configs)):
        outcome = next((o for (k, a, r), o in runs.outcomes.items() if k == i and r == order and o.result.steps > 0), None)
        out.append(None if outcome is None else model.choose(run_descriptors(outcome.result.path, model.descriptors)))
    return out


# ----- the four-way headroom ---------------------------------------------------------------------------------
LEVELS = ("best fixed schedule", "best schedule per regime", "descriptor-keyed schedule", "per-configuration oracle")


@dataclass
class FourWay:
    """Four baselines on held-out configurations, each a schedule per configuration, scored on fresh data orders:
    what the choice knew is what separates them. `choices[level][i]` is the schedule index for configuration i."""

    schedules: tuple[str, ...]
    regimes: list[str]
    choices: dict[str, np.ndarray]
    fresh: dict[str, np.ndarray]  # level -> the chosen schedule's mean fresh-order score per configuration
    steps: dict[str, tuple[float, float, float, int]]  # "B - A" -> (mean, low, high, pairs), B the next level

    @property
    def state_dependent(self) -> tuple[float, float, float, int]:
        """The per-configuration oracle minus the descriptor-keyed schedule, on fresh orders: what only a policy
        reading the run could still gain over choosing before it starts."""
        return self.steps[f"{LEVELS[3]} - {LEVELS[2]}"]


def four_way_headroom(train_scores: np.ndarray, train_regimes: Sequence[str], train_descriptors: Sequence[Mapping[str, float]],
                      train_seeds: Sequence[int], held_scores: np.ndarray, held_fresh: np.ndarray,
                      held_regimes: Sequence[str], held_descriptors: Sequence[Mapping[str, float]], schedules: Sequence[str],
                      config: DescriptorScheduleConfig = DescriptorScheduleConfig(), confidence: float = 0.95) -> FourWay:  # fmt: skip
    """Items 1 to 4 of issue 34's headroom, from score tables (configurations x schedules): the first three are
    chosen on training configurations (original data order) and applied to held-out ones; the oracle takes each
    held-out configuration's best schedule in hindsight (original order). All four are then scored on the
    held-out configurations' fresh orders (`held_fresh`, the mean over them), so the oracle's luck on the
    original order does not count."""
    from ..common.stats import mean_ci

    train_scores, held_scores, held_fresh = (np.asarray(a, dtype=np.float64) for a in (train_scores, held_scores, held_fresh))
    n = len(held_scores)
    fixed = int(np.nanargmax(np.nanmean(train_scores, axis=0)))
    per_regime = {}
    for regime in sorted(set(held_regimes)):
        rows = [i for i, r in enumerate(train_regimes) if r == regime]
        per_regime[regime] = int(np.nanargmax(np.nanmean(train_scores[rows], axis=0))) if rows else fixed
    model = fit_descriptor_schedule(train_descriptors, train_scores, schedules, train_seeds, config)
    index = {s: j for j, s in enumerate(schedules)}
    oracle_scores = np.where(np.isfinite(held_scores), held_scores, -np.inf)
    choices = {
        LEVELS[0]: np.full(n, fixed),
        LEVELS[1]: np.array([per_regime[r] for r in held_regimes]),
        LEVELS[2]: np.array([index[model.choose(d)] for d in held_descriptors]),
        LEVELS[3]: oracle_scores.argmax(axis=1),
    }
    fresh = {level: held_fresh[np.arange(n), c] for level, c in choices.items()}
    steps = {}
    for a, b in zip(LEVELS, LEVELS[1:]):
        diff = fresh[b] - fresh[a]
        ci = mean_ci(diff, confidence)
        steps[f"{b} - {a}"] = (float(np.nanmean(diff)), ci.low, ci.high, int(np.isfinite(diff).sum()))
    return FourWay(tuple(schedules), list(held_regimes), choices, fresh, steps)
