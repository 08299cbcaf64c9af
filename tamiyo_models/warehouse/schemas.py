"""pandera (polars) schemas of the episode tables: the content rules every stored row obeys.

Ingestion validates each batch's frames with these schemas and quarantines the runs whose rows fail
(`failing_units`); the Dagster asset checks run the very same schemas on the stored tables and show the
failure cases. Types are already enforced by the parser, so the rules here are about values: ranges, known
action names, probabilities that sum to 1, consecutive steps, bounded text.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from ..world.actions import ALL_ACTIONS, COARSE_ACTIONS, SLOT_SUFFIX
from ..world.features import ALL_FEATURES
from ..world.lifecycle import Stage
from .tables import ALL_TABLES, PERCENTILES, PROBABILITY_COLUMNS
from .units import MAX_TEXT_CHARS

ACCURACY = dict(ge=0.0, le=100.0)  # percentage points
PROBABILITY_TOLERANCE = 1e-6
STAGES = list(Stage.__members__)


def _col(dtype, *checks: pa.Check, nullable: bool = True, unique: bool = False) -> pa.Column:
    return pa.Column(dtype, checks=list(checks), nullable=nullable, unique=unique)


def _text(nullable: bool = True) -> pa.Column:
    return _col(pl.String, pa.Check.str_length(max_value=MAX_TEXT_CHARS), nullable=nullable)


def _accuracy() -> pa.Column:
    return _col(pl.Float64, pa.Check.in_range(0.0, 100.0))


def _consecutive_steps(data: PolarsData) -> pl.LazyFrame:
    # Steps of a run are consecutive in file order (1, 2, 3, ...; a branch run starts at its fork step, which
    # the parser checks against the header), and epochs advance with them: a gap or a duplicate in either
    # sequence breaks the alignment of decisions and outcomes, so the run is quarantined.
    step, epoch = pl.col("step"), pl.col("epoch")
    first = step.first().over("run_id")
    ok = (step == first + pl.int_range(0, pl.len()).over("run_id")) & (
        (epoch - step) == (epoch - step).first().over("run_id")
    )
    return data.lazyframe.select(ok.alias("consecutive_steps"))


def _probabilities_sum_to_one(data: PolarsData) -> pl.LazyFrame:
    # Legacy steps logged no probabilities (all null); otherwise all eight are present and sum to 1.
    columns = [pl.col(c) for c in PROBABILITY_COLUMNS.values()]
    total = pl.sum_horizontal(columns)
    ok = pl.all_horizontal([c.is_null() for c in columns]) | ((total - 1.0).abs() <= PROBABILITY_TOLERANCE)
    return data.lazyframe.select(ok.alias("probabilities_sum_to_one"))


def _propensity_matches_probability(data: PolarsData) -> pl.LazyFrame:
    taken = pl.lit(None, dtype=pl.Float64)
    for name, column in PROBABILITY_COLUMNS.items():
        taken = pl.when(pl.col("action_fine") == name).then(pl.col(column)).otherwise(taken)
    ok = pl.col("propensity").is_null() | taken.is_null() | ((pl.col("propensity") - taken).abs() <= PROBABILITY_TOLERANCE)
    return data.lazyframe.select(ok.alias("propensity_matches_probability"))


def _coarse_matches_fine(data: PolarsData) -> pl.LazyFrame:
    # The slot suffix (_SLOT<k>, world.actions) is not part of the coarse label or the blueprint.
    fine, coarse = pl.col("action_fine").str.replace(f"{SLOT_SUFFIX}[0-9]+$", ""), pl.col("action_coarse")
    expected = pl.when(fine.str.starts_with("GERMINATE_")).then(pl.lit("GERMINATE")).otherwise(fine)
    blueprint_ok = (
        pl.when(coarse == "GERMINATE").then(fine == pl.lit("GERMINATE_") + pl.col("blueprint")).otherwise(
            pl.col("blueprint").is_null()
        )
    ).fill_null(False)
    return data.lazyframe.select(((coarse == expected) & blueprint_ok).alias("coarse_matches_fine"))


# A polars check receives the frame and the column name; NaN and infinities fail, nulls are left to `nullable`.
_FINITE = pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).is_finite()), name="finite")


def _unique_key(*columns: str):
    def check(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((~pl.struct(list(columns)).is_duplicated()).alias("unique_key"))

    check.__name__ = f"unique_{'_'.join(columns)}"
    return check


RUNS = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, pa.Check.str_length(1, 200), nullable=False, unique=True),
        "source_format": _col(pl.String, nullable=False),
        "source_file": _col(pl.String, nullable=False),
        "source_sha256": _col(pl.String, pa.Check.str_length(64, 64), nullable=False),
        "content_sha256": _col(pl.String, pa.Check.str_length(64, 64), nullable=False),
        "feature_schema_version": _col(pl.String, nullable=False),
        "max_epochs": _col(pl.Int64, pa.Check.ge(1)),
        "learning_rate": _col(pl.Float64, pa.Check.gt(0.0)),
        "rent": _col(pl.Float64, pa.Check.ge(0.0)),
        "config_json": _col(pl.String, pa.Check.str_length(max_value=1_000_000)),
    },
    name="runs",
)

EPISODES = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False, unique=True),
        "status": _col(pl.String, pa.Check.isin(["complete", "truncated", "failed"]), nullable=False),
        "error": _text(),
        "steps": _col(pl.Int64, pa.Check.ge(0), nullable=False),
        "final_val_accuracy": _accuracy(),
        "best_val_accuracy": _accuracy(),
        "final_test_accuracy": _accuracy(),
        "test_accuracy_last": _accuracy(),
        "final_test_loss": _col(pl.Float64, pa.Check.ge(0.0)),
        "seeds_created": _col(pl.Int64, pa.Check.ge(0)),
        "seeds_fossilized": _col(pl.Int64, pa.Check.ge(0)),
        "seeds_culled": _col(pl.Int64, pa.Check.ge(0)),
    },
    name="episodes",
)

STEPS = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False),
        "step": _col(pl.Int64, pa.Check.ge(1), nullable=False),
        "epoch": _col(pl.Int64, pa.Check.ge(0), nullable=False),
        "action_fine": _col(pl.String, pa.Check.isin(list(ALL_ACTIONS)), nullable=False),
        "action_coarse": _col(pl.String, pa.Check.isin(list(COARSE_ACTIONS)), nullable=False),
        "greedy_fine": _col(pl.String, pa.Check.isin(list(ALL_ACTIONS))),
        "action_index": _col(pl.Int64, pa.Check.in_range(0, len(ALL_ACTIONS) - 1), nullable=False),
        "propensity": _col(pl.Float64, pa.Check.gt(0.0), pa.Check.le(1.0)),
        **{c: _col(pl.Float64, pa.Check.in_range(0.0, 1.0)) for c in PROBABILITY_COLUMNS.values()},
        "controller": _text(),
        "reason": _text(),
        "gate_reason": _text(),
        "gate_from_stage": _col(pl.String, pa.Check.isin(STAGES)),
        "seed_stage": _col(pl.String, pa.Check.isin(STAGES)),
        "val_accuracy_before": _accuracy(),
        "val_accuracy_after": _accuracy(),
        "best_val_accuracy_before": _accuracy(),
        "best_val_accuracy_after": _accuracy(),
        "val_loss_after": _col(pl.Float64, pa.Check.ge(0.0)),
        "train_loss_after": _col(pl.Float64, pa.Check.ge(0.0)),
        "reward": _col(pl.Float64, nullable=True),
    },
    checks=[
        pa.Check(_consecutive_steps, name="consecutive_steps"),
        pa.Check(_unique_key("run_id", "step"), name="unique_run_step"),
        pa.Check(_probabilities_sum_to_one, name="probabilities_sum_to_one"),
        pa.Check(_propensity_matches_probability, name="propensity_matches_probability"),
        pa.Check(_coarse_matches_fine, name="coarse_matches_fine"),
    ],
    name="steps",
)

OBSERVATIONS = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False),
        "step": _col(pl.Int64, pa.Check.ge(1), nullable=False),
        "feature_schema_version": _col(pl.String, nullable=False),
        "epoch": _col(pl.Float64, pa.Check.ge(0.0)),
        "plateau_epochs": _col(pl.Float64, pa.Check.ge(0.0)),
        "train_accuracy": _accuracy(),
        "val_accuracy": _accuracy(),
        "best_val_accuracy": _accuracy(),
        # Every feature is a finite number or null (null: a legacy vector that lacks the feature).
        **{
            name: _col(pl.Float64, _FINITE)
            for name in ALL_FEATURES
            if name not in ("epoch", "plateau_epochs", "train_accuracy", "val_accuracy", "best_val_accuracy")
        },
    },
    checks=[pa.Check(_unique_key("run_id", "step"), name="unique_run_step")],
    name="observations",
)

LAYER_GRADIENTS = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False),
        "step": _col(pl.Int64, pa.Check.ge(1), nullable=False),
        "layer": _col(pl.String, pa.Check.str_length(1, 500), nullable=False),
        # finite: a value beyond float32's range (~3.4e38, which torch cannot produce) would be stored as
        # Infinity; this quarantines it, with the column and value named, instead.
        "norm": _col(pl.Float32, pa.Check.ge(0.0), _FINITE),
        "vanishing_share": _col(pl.Float32, pa.Check.in_range(0.0, 1.0)),
        "exploding_share": _col(pl.Float32, pa.Check.in_range(0.0, 1.0)),
        **{c: _col(pl.Float32, _FINITE) for c in ("norm_std", "mean", "std", *(f"p{p}" for p in PERCENTILES))},
    },
    checks=[pa.Check(_unique_key("run_id", "step", "layer"), name="unique_run_step_layer")],
    name="layer_gradients",
)

LIFECYCLE_EVENTS = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False),
        "step": _col(pl.Int64, pa.Check.ge(1), nullable=False),
        "from_stage": _col(pl.String, pa.Check.isin(STAGES), nullable=False),
        "to_stage": _col(pl.String, pa.Check.isin(STAGES), nullable=False),
        "cause": _col(pl.String, pa.Check.isin(["controller", "automatic"]), nullable=False),
        "detail": _text(),
    },
    name="lifecycle_events",
)

BRANCHES = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False, unique=True),
        "parent_run_id": _col(pl.String, nullable=False),
        "fork_step": _col(pl.Int64, pa.Check.ge(1), nullable=False),
        "forced_action": _col(pl.String, pa.Check.isin(list(PROBABILITY_COLUMNS)), nullable=False),
        "horizon": _col(pl.Int64, pa.Check.ge(1)),
    },
    name="branches",
)

NON_FINITE_VALUES = pa.DataFrameSchema(
    {
        "run_id": _col(pl.String, nullable=False),
        "step": _col(pl.Int64, pa.Check.ge(1)),
        "position": _text(nullable=False),
        "field": _text(nullable=False),
        "raw_text": _col(pl.String, pa.Check.isin(["NaN", "Infinity", "-Infinity"]), nullable=False),
        "expected": _col(pl.Boolean, nullable=False),
    },
    name="non_finite_values",
)

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "runs": RUNS,
    "branches": BRANCHES,
    "episodes": EPISODES,
    "steps": STEPS,
    "observations": OBSERVATIONS,
    "layer_gradients": LAYER_GRADIENTS,
    "lifecycle_events": LIFECYCLE_EVENTS,
    "non_finite_values": NON_FINITE_VALUES,
}
assert set(SCHEMAS) <= set(ALL_TABLES)


def failure_cases(table: str, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """pandera's failure cases of a frame (empty when it is valid): column, check, failing value, row index."""
    try:
        SCHEMAS[table].validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return cases.collect() if isinstance(cases, pl.LazyFrame) else cases
    return pl.DataFrame(
        schema={
            "failure_case": pl.String,
            "schema_context": pl.String,
            "column": pl.String,
            "check": pl.String,
            "check_number": pl.Int32,
            "index": pl.Int32,
        }
    )
