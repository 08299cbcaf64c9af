"""One call from a TransitionDataset to d3rlpy's `MDPDataset` (a benchmark-only dependency: d3rlpy's
DiscreteCQL and DiscreteFQE are the cross-checks of our own algorithms)."""

from __future__ import annotations

import numpy as np

from .dataset import TransitionDataset


def to_d3rlpy(dataset: TransitionDataset):
    """Episodes end where the data says: `terminals` at the last epoch, `timeouts` where a run was truncated
    (a branch at its horizon), so d3rlpy bootstraps neither past a terminal nor blindly across runs."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    ends = np.zeros(len(dataset), dtype=bool)
    for rows in dataset.episode_slices():
        ends[rows.stop - 1] = True
    terminals = dataset.terminated.astype(np.float32)
    # A run that ends without a terminal or a truncation flag (none in the warehouse today) still ends there.
    timeouts = (ends & ~dataset.terminated).astype(np.float32)
    return MDPDataset(
        observations=dataset.observations.astype(np.float32),
        actions=dataset.actions.reshape(-1, 1).astype(np.int64),
        rewards=dataset.rewards.reshape(-1, 1).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        # Said, not inferred: d3rlpy would size a discrete space by the largest action present, which a dataset
        # whose last actions were never taken (a CULL, a slot's block) would cut short.
        action_space=ActionSpace.DISCRETE,
        action_size=dataset.n_actions,
    )
