"""Class weights by the effective number of samples (Cui et al., 2019), as the reference's Phase 1 used.

    E_c = (1 - beta^n_c) / (1 - beta),   w_c = 1 / E_c = (1 - beta) / (1 - beta^n_c)

then normalised so the weights of the classes present sum to their number. With beta -> 0 every class weighs
the same; with beta -> 1 weights approach 1 / n_c. WAIT is ~90% of heuristic decisions, so without weights a
policy that always waits looks 90% accurate. A class with no sample gets weight 0 (it cannot appear in the
loss, and 1 / E_0 would divide by zero).
"""

from __future__ import annotations

import numpy as np

DEFAULT_BETA = 0.999


def effective_number_weights(counts, beta: float = DEFAULT_BETA) -> np.ndarray:
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    if present.any():
        weights *= present.sum() / weights.sum()
    return weights
