"""Warehouse stage (no `from __future__ import annotations`: Dagster reads the config annotations at runtime).

Raw runs in the landing folder become the episode tables, checked by pandera.

One multi-asset writes every table, because one ingestion call writes them in one transaction (DuckDB allows a
single writer per file; the `duckdb_writer` pool keeps it to one step at a time across runs). Its blocking
asset checks validate the stored tables with the same pandera schemas ingestion uses, read on the writer's
own connection (a second connection to the file would collide with it), and show the failure cases as
metadata: ingestion quarantines bad records, so a failure here means the file was changed by something else
(an older ingestion, a hand edit) and downstream analyses must not trust it. When the write is done the
resource publishes the read snapshot every reader uses (tamiyo_models/warehouse/snapshot.py).
"""


import dagster as dg
import polars as pl

from assets.resources import RawLandingResource, WarehouseResource
from tamiyo_models.warehouse import current_snapshot, discover, export_parquet, ingest_files
from tamiyo_models.warehouse.schemas import SCHEMAS, failure_cases
from tamiyo_models.warehouse.tables import ALL_TABLES

GROUP = "warehouse"
WRITER_POOL = "duckdb_writer"
MAX_FAILURE_ROWS = 50  # failure cases shown in check metadata; the count says how many there were

TABLE_DESCRIPTIONS = {
    "runs": "One row per episode run: source file and hash, configuration, code version.",
    "episodes": "Episode outcomes: final/best accuracy, seeds created/fossilized/culled, return.",
    "steps": "One row per decision: action, propensity, probabilities, reward, accuracies, stage.",
    "observations": "Observation features per decision, one named column per feature.",
    "layer_gradients": "Per-layer gradient telemetry of the epoch before each decision.",
    "lifecycle_events": "Seed lifecycle transitions (legacy episodes: derived from their actions and seed_stage).",
    "non_finite_values": "NaN/Infinity literals of legacy files, stored as NULL where they belong; their text kept here.",
    "branches": "Branch runs: replays of a parent episode from its fork step, one per alternative action.",
    "quarantine": "Records that failed validation, with reason and original text.",
    "ingest_log": "Every file each ingestion saw and what became of it.",
}


class IngestRunConfig(dg.Config):
    batch_files: int = 200  # files per transaction


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            table, description=TABLE_DESCRIPTIONS[table], group_name=GROUP, kinds={"duckdb"}, deps=["generated_runs"]
        )
        for table in ALL_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(f"{table}_schema", asset=table, blocking=True, description=f"pandera schema of {table}")
        for table in SCHEMAS
    ],
    pool=WRITER_POOL,
)
def episode_tables(
    context: dg.AssetExecutionContext,
    config: IngestRunConfig,
    warehouse: WarehouseResource,
    raw_runs: RawLandingResource,
):
    """Ingest the landing folder (raw runs, legacy episodes and packs) into the warehouse tables."""
    from tamiyo_models.warehouse import IngestConfig

    paths = discover(raw_runs.path)
    with warehouse.write() as con:
        summary = ingest_files(
            con,
            paths,
            IngestConfig(batch_files=config.batch_files),
            progress=lambda done, total, path: context.log.info(f"ingested {done}/{total} files (last: {path.name})"),
        )
        context.log.info(summary.line())
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ALL_TABLES}
        tables = {t: con.sql(f"SELECT * FROM {t}").pl() for t in SCHEMAS}
    snapshot = current_snapshot(warehouse.path)  # published as the write connection closed
    outcome_counts = {o: summary.count(o) for o in ("loaded", "replaced", "unchanged", "quarantined", "partly_quarantined")}
    for table in ALL_TABLES:
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/row_count": counts[table],
                "warehouse": warehouse.path,
                **({"ingest_summary": summary.line(), "snapshot": str(snapshot.path), **outcome_counts,
                    "non_finite_values": summary.non_finite, "non_finite_unexpected": summary.non_finite_unexpected}
                   if table == "ingest_log" else {}),
            },
        )
    for table in SCHEMAS:
        yield table_check(table, tables[table])


def table_check(table: str, frame: pl.DataFrame) -> dg.AssetCheckResult:
    """pandera on a stored table, as an asset check result with the failure cases in its metadata."""
    cases = failure_cases(table, frame)
    metadata = {"rows_checked": len(frame), "failure_count": len(cases)}
    if len(cases):
        metadata["failure_cases"] = dg.MetadataValue.md(_markdown(cases.head(MAX_FAILURE_ROWS)))
        metadata["failing_checks"] = sorted(set(cases["check"].cast(pl.String).to_list()))
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=f"{table}_schema",
        passed=cases.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _markdown(frame: pl.DataFrame) -> str:
    columns = frame.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|")[:120] for v in row) + " |")
    return "\n".join(lines)


class ParquetExportConfig(dg.Config):
    out_dir: str = "var/warehouse_parquet"


@dg.asset(
    deps=list(ALL_TABLES),
    group_name=GROUP,
    kinds={"parquet"},
    description="Every warehouse table as one Parquet file, copied from the read snapshot (itself Parquet).",
)
def warehouse_parquet(config: ParquetExportConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    # From the snapshot, not the writer's file: this step is outside the writer pool, so opening the file could
    # collide with a coverage step writing it.
    written = export_parquet(warehouse.path, config.out_dir)
    return dg.MaterializeResult(metadata={"out_dir": config.out_dir, "tables": len(written)})


WAREHOUSE_ASSETS = [episode_tables, warehouse_parquet]
