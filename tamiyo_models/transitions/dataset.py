"""The transition dataset: (s, a, r, s', legal(s'), terminated, truncated, mu) read from the warehouse.

The warehouse stays the source of truth; this is its learning view (the `rl_transitions` SQL view joined
with the observation features of s and s'), as NumPy arrays every learner and estimator takes:

- `observations`, `next_observations` [N, F] float32, the named features of `feature_names`;
- `actions` [N] (the flat factored index, world.actions), `rewards` [N], `terminated` / `truncated` [N];
- `legal`, `next_legal` [N, A] bool: the actions legal in s and in s' (a TD target maxes over next_legal only);
- `behaviour_probabilities` [N, A] (mu), `propensity` [N] = mu(a|s) (NaN on forced steps),
  `stochastic` [N]: importance weights are identified only there; `forced` [N]: a branch's intervention;
- per row: `run_ids`, `steps`, `family_ids` (a parent and its branches: split by family, never inside one),
  `behaviours` (controller label), `regimes`.

A is the size of the runs' action space (`action_names`: the first A names of `ALL_ACTIONS`; 8 for
single-slot hosts, 1 + 7 x slots for the factored action). One dataset holds one space: runs of hosts with
different slot counts are refused together unless `mix_action_spaces`, which puts every run in the widest
space (a narrower space is a prefix of a wider one, so its indices keep their meaning and the extra actions
are illegal and never drawn). `seed_slots` selects the runs of one space.

Task features (schema 4) are null for runs recorded before them; here they take the default task's values
(`features.task_feature_defaults`), the same substitution a policy makes.

`to_minari` / `to_d3rlpy` (minari_export.py, d3rlpy_export.py) derive the standard formats from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..world.actions import ACTION_INDEX, FINE_INDEX, action_names, slots_of_space
from ..world.features import FEATURE_SCHEMA_VERSION, FEATURE_SETS, TASK_FEATURES, task_feature_defaults


@dataclass
class TransitionDataset:
    feature_names: tuple[str, ...]
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    legal: np.ndarray
    next_legal: np.ndarray
    behaviour_probabilities: np.ndarray
    propensity: np.ndarray
    stochastic: np.ndarray
    forced: np.ndarray
    run_ids: np.ndarray
    steps: np.ndarray
    family_ids: np.ndarray
    behaviours: np.ndarray
    regimes: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_actions(self) -> int:
        """The size of the action space the arrays are over (the learners' output width)."""
        return int(self.legal.shape[1])

    @property
    def action_names(self) -> tuple[str, ...]:
        return action_names(slots_of_space(self.n_actions))

    @property
    def dones(self) -> np.ndarray:
        """Where an episode's data ends (no bootstrapping past a terminal; a truncation is not terminal)."""
        return self.terminated

    def subset(self, mask: np.ndarray) -> "TransitionDataset":
        arrays = {name: getattr(self, name)[mask] for name in _ARRAYS}
        return TransitionDataset(self.feature_names, metadata=dict(self.metadata), **arrays)

    def select_features(self, names) -> "TransitionDataset":
        index = [self.feature_names.index(n) for n in names]
        copy = self.subset(np.ones(len(self), dtype=bool))
        copy.feature_names = tuple(names)
        copy.observations, copy.next_observations = self.observations[:, index], self.next_observations[:, index]
        return copy

    def episode_slices(self) -> list[slice]:
        """Contiguous rows of each run (rows are ordered by run, then step)."""
        if len(self) == 0:
            return []
        starts = np.flatnonzero(np.r_[True, self.run_ids[1:] != self.run_ids[:-1]])
        ends = np.r_[starts[1:], len(self)]
        return [slice(int(a), int(b)) for a, b in zip(starts, ends)]

    def split_by_family(self, held_out: float, seed: int = 0) -> tuple["TransitionDataset", "TransitionDataset"]:
        """(train, held out): whole families (a parent with its branches) on one side, never both."""
        families = np.unique(self.family_ids)
        rng = np.random.default_rng(seed)
        n = max(1, int(round(held_out * len(families)))) if len(families) > 1 else 0
        chosen = set(rng.choice(families, size=n, replace=False).tolist()) if n else set()
        mask = np.array([f in chosen for f in self.family_ids], dtype=bool)
        return self.subset(~mask), self.subset(mask)

    def digest(self) -> str:
        """SHA-256 of the exact arrays (and feature names): what an MLflow run records as its dataset input."""
        h = hashlib.sha256(json.dumps(list(self.feature_names)).encode())
        for name in _ARRAYS:
            array = getattr(self, name)
            h.update(name.encode())
            h.update(array.astype(str).tobytes() if array.dtype == object else np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def summary(self) -> dict:
        return {
            "transitions": len(self),
            "episodes": len(self.episode_slices()),
            "families": int(len(np.unique(self.family_ids))) if len(self) else 0,
            "terminated": int(self.terminated.sum()),
            "truncated": int(self.truncated.sum()),
            "stochastic_share": float(self.stochastic.mean()) if len(self) else 0.0,
            "forced": int(self.forced.sum()),
            "behaviours": sorted(set(self.behaviours.tolist())),
        }

    def save_npz(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, feature_names=np.array(self.feature_names),
                            metadata=np.array(json.dumps(self.metadata)),
                            **{name: getattr(self, name) for name in _ARRAYS})  # fmt: skip
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> "TransitionDataset":
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(z["feature_names"].tolist()), metadata=json.loads(str(z["metadata"])),
                       **{name: z[name] for name in _ARRAYS})  # fmt: skip


_ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "legal", "next_legal",
           "behaviour_probabilities", "propensity", "stochastic", "forced", "run_ids", "steps", "family_ids",
           "behaviours", "regimes")  # fmt: skip


def _masks(lists, width: int) -> np.ndarray:
    out = np.zeros((len(lists), width), dtype=bool)
    for row, names in enumerate(lists):
        for name in names or ():
            out[row, ACTION_INDEX[name]] = True
    return out


def _probabilities(lists, width: int) -> np.ndarray:
    # Each run's list covers its own space; a narrower run padded with zeros is the same distribution in the wider one.
    out = np.zeros((len(lists), width), dtype=np.float64)
    for row, probs in enumerate(lists):
        out[row, : len(probs)] = probs
    return out


def _one_action_space(frame, mix: bool, warehouse_path) -> int:
    """The slot count of the dataset's action space: the runs' own, or the widest when mixing is asked for."""
    if "seed_slots" not in frame.columns:
        # A read snapshot published before the view carried the factored action: single-slot runs read as they
        # always did, a wider run cannot be read right from it.
        if frame["action_index"].max() >= len(action_names(1)):
            raise ValueError(f"{warehouse_path}: its read snapshot predates the factored action's transition view, "
                             "and it holds runs of several seed slots; ingest (or republish) to refresh it")  # fmt: skip
        return 1
    per_run = dict(zip(frame["run_id"].to_list(), frame["seed_slots"].to_list()))
    spaces = sorted(set(per_run.values()))
    if len(spaces) > 1 and not mix:
        examples = "; ".join(
            f"{len(action_names(k))} actions ({k} slot{'s' if k > 1 else ''}): "
            + ", ".join(sorted(r for r, s in per_run.items() if s == k)[:3])
            + (" ..." if sum(s == k for s in per_run.values()) > 3 else "")
            for k in spaces
        )
        raise ValueError(f"these runs have different action spaces ({examples}); a learner needs one: select one "
                         "with seed_slots=, or pass mix_action_spaces=True to put every run in the widest")  # fmt: skip
    return spaces[-1]


def transitions_sql(features: tuple[str, ...], where: str) -> str:
    current = ", ".join(f"o.{n} AS s_{n}" for n in features)
    following = ", ".join(f"n.{n} AS n_{n}" for n in features)
    return f"""
        SELECT t.*, n.run_id IS NOT NULL AS has_next, {current}, {following}
        FROM rl_transitions t
        JOIN observations o ON o.run_id = t.run_id AND o.step = t.step
        LEFT JOIN observations n ON n.run_id = t.run_id AND n.step = t.next_step
        {where}
        ORDER BY t.run_id, t.step
    """


def load_transitions(
    warehouse_path: str | Path,
    feature_set: str = "full",
    *,
    behaviours: tuple[str, ...] | None = None,
    datasets: tuple[str, ...] | None = None,
    regimes: tuple[str, ...] | None = None,
    seed_slots: int | None = None,
    mix_action_spaces: bool = False,
) -> TransitionDataset:
    """Every transition of complete and truncated runs (branch runs included: their steps are real
    transitions), optionally only some behaviours (controller labels or kinds), datasets, regimes or runs of
    hosts with `seed_slots` slots. Runs of different action spaces are refused together unless
    `mix_action_spaces` (the module docstring)."""
    from ..warehouse import query

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    features = FEATURE_SETS[feature_set]
    filters = []
    quote = lambda values: ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)  # noqa: E731
    if behaviours:
        filters.append(f"(t.behaviour IN ({quote(behaviours)}) OR t.behaviour_kind IN ({quote(behaviours)}))")
    if datasets:
        filters.append(f"t.dataset IN ({quote(datasets)})")
    if regimes:
        filters.append(f"t.regime IN ({quote(regimes)})")
    if seed_slots is not None:
        action_names(seed_slots)  # refuses a slot count no host can have
        filters.append(f"t.seed_slots = {int(seed_slots)}")
    where = ("WHERE " + " AND ".join(filters)) if filters else ""
    frame = query(warehouse_path, transitions_sql(features, where))
    defaults = task_feature_defaults()

    def matrix(prefix: str) -> np.ndarray:
        columns = []
        for name in features:
            column = frame[f"{prefix}{name}"].to_numpy().astype(np.float64)
            fill = defaults[name] if name in TASK_FEATURES else 0.0
            columns.append(np.where(np.isnan(column), fill, column))
        return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((frame.height, 0), np.float32)

    n = frame.height
    if n == 0:
        raise ValueError(f"no transitions in {warehouse_path} with these filters (behaviours {behaviours}, "
                         f"datasets {datasets}, regimes {regimes}, seed slots {seed_slots})")  # fmt: skip
    space = action_names(_one_action_space(frame, mix_action_spaces, warehouse_path))
    width = len(space)
    filters_used = {"behaviours": behaviours, "datasets": datasets, "regimes": regimes}
    # Only when asked, so the metadata of a dataset read as before the factored action stays what it was.
    filters_used.update({k: v for k, v in (("seed_slots", seed_slots), ("mix_action_spaces", mix_action_spaces)) if v})
    observations, next_observations = matrix("s_"), matrix("n_")
    has_next = frame["has_next"].to_numpy()
    # A legacy episode stores no observation after its last decision: that transition ends the episode, and its
    # next state is never bootstrapped from, so the current state stands in.
    next_observations[~has_next] = observations[~has_next]
    propensity = frame["propensity"].to_numpy().astype(np.float64)
    return TransitionDataset(
        feature_names=tuple(features),
        observations=observations,
        actions=frame["action_index"].to_numpy().astype(np.int64),
        rewards=frame["reward"].to_numpy().astype(np.float32),
        next_observations=next_observations,
        terminated=frame["terminated"].to_numpy().astype(bool),
        truncated=frame["truncated"].to_numpy().astype(bool),
        legal=_masks(frame["legal_actions"].to_list(), width),
        next_legal=_masks(frame["next_legal_actions"].to_list(), width),
        behaviour_probabilities=_probabilities(frame["behaviour_probabilities"].to_list(), width),
        propensity=propensity,
        stochastic=frame["stochastic"].to_numpy().astype(bool),
        forced=frame["forced"].to_numpy().astype(bool),
        run_ids=frame["run_id"].to_numpy().astype(str),
        steps=frame["step"].to_numpy().astype(np.int64),
        family_ids=frame["family_id"].to_numpy().astype(str),
        behaviours=frame["behaviour"].fill_null("unknown").to_numpy().astype(str),
        regimes=frame["regime"].fill_null("").to_numpy().astype(str),
        metadata={"feature_set": feature_set, "feature_schema_version": FEATURE_SCHEMA_VERSION,
                  "warehouse": str(warehouse_path), "action_space": list(space), "filters": filters_used},
    )  # fmt: skip


__all__ = ["TransitionDataset", "load_transitions", "FINE_INDEX"]
