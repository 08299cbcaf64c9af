"""The score an episode is judged on, and the compute rent that charges it for growth (docs/arena.md).

    score = final test accuracy (pp) - rent x log2(final parameters / host parameters)

`rent` is in pp of score per doubling of the network's parameters (seeds in any stage counted, as the footer's
`final_parameters` counts them). A log scale, because growth is judged relative to the host it grows: a seed
that doubles a 500-parameter host costs what one doubling a 5,000-parameter host costs. Rent 0 is the arena
before rent existed: the score is the test accuracy itself, bit for bit, so every stored run keeps its meaning.
"""

from __future__ import annotations

import math
import numbers


def growth_charge(rent: float, parameters: int, host_parameters: int) -> float:
    """rent x log2(parameters / host_parameters), in pp: what the network's size costs its score."""
    if rent == 0:
        # Exactly 0.0 without touching the parameter counts: rent-0 scores and rewards stay what they were.
        return 0.0
    return rent * math.log2(parameters / host_parameters)


def charged_score(accuracy: float | None, rent: float, parameters: int, host_parameters: int) -> float | None:
    """The score a comparison decides on; None where there is no test accuracy (a run stopped early)."""
    if accuracy is None:
        return None
    return accuracy - growth_charge(rent, parameters, host_parameters)


def check_rent(value: object) -> float:
    """`value` as a rent (a finite number >= 0), or ValueError saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"rent must be a number (pp of score per doubling of parameters), got {value!r}")
    rent = float(value)
    if not math.isfinite(rent) or rent < 0:
        raise ValueError(f"rent must be finite and >= 0 (pp of score per doubling of parameters), got {value!r}")
    return rent
