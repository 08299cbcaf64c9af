"""Decision states from the warehouse: one row per logged decision with its features, the action taken and
what followed it.

Outcomes (pp of validation accuracy):
- `outcome_h`: accuracy after the H-th epoch following the decision (the decision's own epoch included)
  minus accuracy when deciding; comparable between a parent run and its branch runs, which last H steps;
- `reward_to_go`: sum of rewards from the decision to the end of its run;
- `final_accuracy`: the run's final validation accuracy (for a branch: at the end of its horizon).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..world.features import FEATURE_SETS


def decision_states_sql(feature_names: list[str], horizon: int) -> str:
    columns = ", ".join(f'o."{name}"' for name in feature_names)
    return f"""
        WITH outcome AS (
            SELECT run_id, step, action_fine, action_coarse, len(legal_actions) AS n_legal, legal_actions,
                   val_accuracy_before,
                   last_value(val_accuracy_after) OVER (
                       PARTITION BY run_id ORDER BY step ROWS BETWEEN CURRENT ROW AND {horizon - 1} FOLLOWING
                   ) - val_accuracy_before AS outcome_h,
                   sum(reward) OVER (
                       PARTITION BY run_id ORDER BY step ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
                   ) AS reward_to_go
            FROM steps
        )
        SELECT u.run_id, u.step, u.action_fine, u.action_coarse, u.n_legal, u.legal_actions, u.outcome_h,
               u.reward_to_go, e.final_val_accuracy AS final_accuracy,
               r.controller_kind, r.dataset, CAST(r.ingested_at AS DATE) AS ingest_date,
               b.run_id IS NOT NULL AS is_branch,
               {columns}
        FROM outcome u
        JOIN observations o ON o.run_id = u.run_id AND o.step = u.step AND NOT o.is_final
        JOIN runs r ON r.run_id = u.run_id
        JOIN episodes e ON e.run_id = u.run_id
        LEFT JOIN branches b ON b.run_id = u.run_id
        ORDER BY u.run_id, u.step
    """


def load_decision_states(
    warehouse: str | Path, feature_set: str = "full", horizon: int = 5, min_legal: int = 2
) -> pl.DataFrame:
    """Decision states with at least `min_legal` legal actions (states where only WAIT is legal, such as an
    embargo or a fossilized single slot, can never hold a counterfactual and are left out)."""
    from ..warehouse import query

    names = list(FEATURE_SETS[feature_set])
    states = query(warehouse, decision_states_sql(names, horizon))
    return states.filter(pl.col("n_legal") >= min_legal)
