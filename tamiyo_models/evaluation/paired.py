"""Paired episodes of several controllers on the same configurations, with a null control and replication
on fresh data orders: the one engine behind `tamiyo evaluate` (policies vs the heuristic) and `tamiyo
headroom` (reference controllers vs the heuristic).

For every configuration (dataset, host, optimiser, schedule, seed) each *arm* (a controller) runs one episode
on the original data order (order 0). The seed fixes the initial weights and the data order, so inside a
configuration the arms differ by their decisions alone, and arm - reference is a paired difference.

Luck is measured, not assumed away:
- **null control**: the reference arm rerun on fresh data orders 1..R (same initial weights, `data_order_seed`
  set). reference(order k) - reference(order 0) is a difference made by luck alone; its RMS is the noise floor.
- **replication**: chosen arms rerun on the same fresh orders 1..K; arm(order k) - reference(order k) is the
  paired difference again, on data orders no one looked at before. An apparent win that does not replicate
  there was luck (the headroom study's best-in-hindsight +1.39 pp became -0.18).

Episodes are deterministic, so a run file already in the output folder is read back instead of rerun: a long
analysis resumes where it stopped, and a second analysis over the same configurations reuses the first's
episodes. Scores are the test split's (what no controller saw), charged for growth at the configurations'
rent, with the raw test accuracy and validation beside them (`EpisodeOutcome.score`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..controllers import ControllerConfig
from ..episodes.episode import EpisodeConfig, EpisodeResult

# What a per-run number can be. "test" decides every comparison (the paired evaluation, headroom, the nightly
# champion rule): the test accuracy charged for growth at the episode's rent (tamiyo_models.world.score), which
# at rent 0 is the test accuracy itself, bit for bit. "test_accuracy" is the raw accuracy shown beside it;
# "val" the validation accuracy the controllers watched.
SCORES = ("test", "test_accuracy", "val")


def decided_by(rent: float) -> str:
    """How a report names the number that decides, at a rent."""
    return f"the score (test accuracy charged {rent:g} pp per doubling of parameters)" if rent else "the test accuracy (rent 0)"


def fresh_order_seed(config: EpisodeConfig, order: int) -> int:
    """The data-order seed of fresh order k >= 1 of a configuration: derived, so every analysis of the same
    configuration replays the same fresh orders (and shares their episodes)."""
    digest = hashlib.sha256(f"fresh-order/{config.seed}/{order}".encode()).hexdigest()
    return int(digest[:8], 16)


def with_arm(config: EpisodeConfig, controller: ControllerConfig, order: int) -> EpisodeConfig:
    return dataclasses.replace(
        config, controller=controller, data_order_seed=None if order == 0 else fresh_order_seed(config, order)
    )


@dataclass
class EpisodeOutcome:
    """One episode of the design: which configuration, arm and data order, and how it ended."""

    config_index: int
    regime: str
    arm: str
    order: int
    result: EpisodeResult

    @property
    def ok(self) -> bool:
        return self.result.status == "complete" and math.isfinite(self.result.score)

    def score(self, which: str = "test") -> float:
        """The one per-run number every comparison reads (see SCORES); NaN for a run that did not complete."""
        if which not in SCORES:
            raise ValueError(f"unknown score {which!r}; known: {', '.join(SCORES)}")
        r = self.result
        if r.status != "complete":
            return math.nan
        return {"test": r.score, "test_accuracy": r.final_test_accuracy, "val": r.final_val_accuracy}[which]


def _mean_over_orders(per_order: np.ndarray) -> np.ndarray:
    """Rows: data orders, columns: configurations. The mean of each column's finite values (NaN: none)."""
    counts = np.isfinite(per_order).sum(axis=0)
    sums = np.where(np.isfinite(per_order), per_order, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)


@dataclass
class PairedRuns:
    """Every episode of a paired design, indexed by (configuration, arm, order)."""

    configs: list[EpisodeConfig]
    arms: dict[str, ControllerConfig]
    reference: str
    outcomes: dict[tuple[int, str, int], EpisodeOutcome] = field(default_factory=dict)

    def regimes(self) -> list[str]:
        seen = []
        for c in self.configs:
            name = c.regime() or "all"
            if name not in seen:
                seen.append(name)
        return seen

    def indices(self, regime: str | None = None) -> list[int]:
        return [i for i, c in enumerate(self.configs) if regime is None or (c.regime() or "all") == regime]

    def score(self, i: int, arm: str, order: int = 0, which: str = "test") -> float:
        outcome = self.outcomes.get((i, arm, order))
        return outcome.score(which) if outcome is not None else math.nan

    def rent(self) -> float:
        """The rent the design's scores are charged at (one per design: a spec sets one rent)."""
        rents = {c.rent for c in self.configs}
        if len(rents) > 1:
            raise ValueError(f"configurations at different rents ({sorted(rents)}) cannot be compared by one score")
        return rents.pop() if rents else 0.0

    def orders(self, arm: str) -> list[int]:
        return sorted({o for (_, a, o) in self.outcomes if a == arm})

    def differences(self, arm: str, indices: list[int], order: int = 0, which: str = "test") -> np.ndarray:
        """arm - reference on each configuration, at one data order (NaN where either side failed)."""
        return np.array([self.score(i, arm, order, which) - self.score(i, self.reference, order, which) for i in indices])

    def fresh_differences(self, arm: str, indices: list[int], which: str = "test") -> np.ndarray:
        """arm - reference per configuration, averaged over the fresh orders both sides ran (NaN: none)."""
        orders = [o for o in self.orders(arm) if o > 0 and o in self.orders(self.reference)]
        if not orders:
            return np.full(len(indices), math.nan)
        return _mean_over_orders(np.array([self.differences(arm, indices, o, which) for o in orders]))

    def _null_per_order(self, indices: list[int], which: str) -> np.ndarray:
        """reference(fresh order k) - reference(order 0): luck alone, one row per fresh order k, one column per
        configuration."""
        orders = [o for o in self.orders(self.reference) if o > 0]
        values = [[self.score(i, self.reference, o, which) - self.score(i, self.reference, 0, which) for i in indices]
                  for o in orders]  # fmt: skip
        return np.array(values, dtype=np.float64).reshape(len(orders), len(indices))

    def null_differences(self, indices: list[int], which: str = "test") -> np.ndarray:
        """Every null difference, each fresh order and configuration (what the noise floor's RMS is taken over)."""
        return self._null_per_order(indices, which).ravel()

    def null_by_configuration(self, indices: list[int], which: str = "test") -> np.ndarray:
        """The null differences averaged over the fresh orders, one per configuration (NaN: none ran). What an
        interval of the null *mean* resamples: a configuration's orders share its order-0 run, so they are not
        independent pairs, and resampling them apart would make the interval too narrow."""
        return _mean_over_orders(self._null_per_order(indices, which))

    def failures(self, regime: str | None = None) -> list[str]:
        return [f"{o.arm} on configuration {o.config_index} (order {o.order}): {o.result.error}"
                for o in self.outcomes.values()
                if o.result.status != "complete" and (regime is None or o.regime == regime)]  # fmt: skip


def run_paired(
    configs: list[EpisodeConfig],
    arms: dict[str, ControllerConfig],
    out_dir: str | Path,
    *,
    reference: str = "heuristic",
    null_orders: int = 1,
    replicate: int = 0,
    replicate_arms: list[str] | dict[int, list[str]] | None = None,
    workers: int = 1,
    on_result: Callable[[EpisodeResult], None] | None = None,
    existing: PairedRuns | None = None,
    execute: bool = True,
    executor: str = "local",
    ray=None,
) -> PairedRuns:
    """Run (or read back) the design: every arm on order 0; the reference on fresh orders 1..max(null_orders,
    replicate); `replicate_arms` (default: every arm; or per configuration index) on fresh orders 1..replicate.

    `existing`: a design already run on the same configurations, to extend (its outcomes are kept).
    `execute=False`: run nothing, read back only the episodes already on disk (a look at a study in progress).
    `executor`, `ray`: where the episodes run (generation.generate: local worker processes, or a Ray cluster).
    """
    from ..episodes.generation import generate
    from ..episodes.rollout import stored_result

    if reference not in arms:
        raise ValueError(f"the reference arm {reference!r} is not among the arms ({', '.join(arms)})")
    if not configs:
        raise ValueError("no configurations to run")
    runs = existing or PairedRuns(list(configs), dict(arms), reference)
    runs.rent()  # configurations at different rents fail here, before any episode runs
    wanted: list[tuple[int, str, int]] = []
    for i in range(len(configs)):
        for arm in arms:
            wanted.append((i, arm, 0))
        for order in range(1, max(null_orders, replicate) + 1):
            wanted.append((i, reference, order))
        if isinstance(replicate_arms, dict):
            to_replicate = replicate_arms.get(i, [])
        else:
            to_replicate = replicate_arms if replicate_arms is not None else list(arms)
        for arm in to_replicate:
            if arm != reference:
                wanted += [(i, arm, order) for order in range(1, replicate + 1)]
    # Interleave regimes (the k-th configuration of every regime, then the (k+1)-th, ...), so an analysis cut
    # short still has balanced pairs in every regime.
    position = {}
    for i, c in enumerate(configs):
        regime = c.regime() or "all"
        position[i] = (sum(1 for j in range(i) if (configs[j].regime() or "all") == regime), i)
    todo = sorted((key for key in dict.fromkeys(wanted) if key not in runs.outcomes), key=lambda key: position[key[0]])
    episode_configs = [with_arm(configs[i], arms[arm], order) for i, arm, order in todo]
    if execute:
        results = generate(episode_configs, Path(out_dir), workers=workers, on_result=on_result, reuse_existing=True,
                           executor=executor, ray=ray)  # fmt: skip
    else:
        results = [stored_result(Path(out_dir), c.run_id(), c) for c in episode_configs]
    for (i, arm, order), result in zip(todo, results):
        if result is not None:
            runs.outcomes[(i, arm, order)] = EpisodeOutcome(i, configs[i].regime() or "all", arm, order, result)
    return runs
