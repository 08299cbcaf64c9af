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

    model = fit_descriptor_schedule(descriptors, scores, schedules, seeds)     # four_way.py runs the designs
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
    features = observation_features(run.steps[0]["observation"])
    return {name: features[name] for name in names}
