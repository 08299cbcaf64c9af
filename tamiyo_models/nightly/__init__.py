"""The nightly improvement loop: a champion that moves only on evidence (no Dagster here).

- `seeds`: the seed registry (training seeds even, evaluation seeds odd and used once).
- `champion`: the promotion rule, `champion_history`, the champion's MLflow alias.
- `night`: one night's stages (generate, ingest, train, evaluate, decide, report) and `run_night`.
- `report`: the night's report and the champion's trend plot.

Dagster runs the stages as the daily-partitioned `nightly` job (assets/nightly.py); `tamiyo night` runs one
night from the command line.
"""

from ..common.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "NightConfig": "night", "NightPaths": "night", "run_night": "night", "mini_night": "night",
    "PromotionRule": "champion", "current_champion": "champion", "claim_seeds": "seeds",
    "champion_table": "report", "champion_trend": "report",
})  # fmt: skip
