"""Heuristic relabelling (DAgger-style): label every logged state with the action the heuristic takes there.

The heuristic's rarest decisions are its most consequential: it culled 8 times in 12,000 decisions of its own
episodes, so imitation of logged heuristic actions alone sees a handful of CULL examples. Exploration and
branch runs visit many more states where a seed should be culled or advanced. The heuristic's coarse decision
is a function of the observation features and the legal actions alone (its round-robin only picks the
blueprint), so it can label those states too; the blueprint label is kept only where the heuristic itself
chose it, in its own runs.
"""

from __future__ import annotations

import polars as pl

from ..controllers import HeuristicConfig, HeuristicController, Observation
from ..world.actions import FINE_ACTIONS

# The observation features the heuristic reads (see controllers/heuristic.py).
HEURISTIC_INPUTS = (
    "epoch", "plateau_epochs", "has_active_seed", "seed_stage", "seed_epochs_in_stage", "seed_total_improvement",
)  # fmt: skip


def relabel_with_heuristic(frame: pl.DataFrame, config: HeuristicConfig | None = None) -> pl.DataFrame:
    """`frame` needs `legal_actions`, `controller_kind` and the HEURISTIC_INPUTS columns (prefixed `h_`)."""
    controller = HeuristicController(config)
    labels = []
    columns = [frame[f"h_{name}"].to_list() for name in HEURISTIC_INPUTS]
    for values, legal_names, logged in zip(zip(*columns), frame["legal_actions"].to_list(), frame["action_coarse"].to_list()):
        if legal_names is None:
            # Legacy episodes logged no legal set; they are the reference heuristic's own decisions, whose
            # logged action is the label the relabelling would aim for anyway.
            labels.append(logged)
            continue
        legal = tuple(a in legal_names for a in FINE_ACTIONS)
        features = dict(zip(HEURISTIC_INPUTS, (float(v or 0.0) for v in values)))
        labels.append(controller.decide(Observation({}, features, legal)).action.coarse)
    own = pl.col("controller_kind") == "heuristic"
    return frame.with_columns(
        pl.Series("action_coarse", labels),
        pl.when(own).then(pl.col("blueprint")).otherwise(None).alias("blueprint"),
        pl.col("action_coarse").alias("logged_action_coarse"),
    )
