"""Warehouse stage (no `from __future__ import annotations`: Dagster reads the config annotations at runtime).

Raw runs in the landing folder become the episode tables, checked by pandera.

One multi-asset writes every table, because one ingestion call writes them in one transaction (DuckDB allows a
single writer per file; the `duckdb_writer` pool keeps it to one step at a time across runs). Its blocking
asset checks validate the stored tables with the same pandera schemas ingestion uses, read on the writer's
own connection (a second connection to the file would collide with it), and show the failure cases as
metadata: ingestion quarantines bad records, so a failure here means the file was changed by something else
(an older ingestion, a hand edit) and downstream analyses must not trust it. When the write is done the
resource publishes the read snapshot every reader uses (tamiyo_models/warehouse/snapshot.py); then, by its
config, landing files are archived (retention) and the DuckDB file compacted, and the `ingest_log`
materialization carries the disk use per store and per night. `warehouse_disk_space` warns before the disk fills.
"""


from typing import Optional

import dagster as dg
import duckdb
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
    # Retention (tamiyo_models/warehouse/archive.py): after the write, landing files stored this many nights
    # ago or more move zstd-compressed into <landing>/.archive/; None leaves the landing folder as it is.
    archive_raw_after_nights: Optional[int] = None
    archive_level: int = 13  # zstd; see archive.DEFAULT_LEVEL
    # Compact the DuckDB file after the write once this share of its blocks is free (> 1: never).
    compact_when_free: float = 0.25


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
    from tamiyo_models.warehouse import IngestConfig, RetentionPolicy, archivable, archive_landing
    from tamiyo_models.warehouse.archive import ArchiveError
    from tamiyo_models.warehouse.disk import compact, disk_report

    retention = RetentionPolicy(config.archive_raw_after_nights, config.archive_level)
    paths = discover(raw_runs.path)
    eligible = None
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
        if retention.archive_raw_after_nights is not None:
            eligible = archivable(con, retention.archive_raw_after_nights)
    snapshot = current_snapshot(warehouse.path)  # published as the write connection closed
    # Both after the publication, still inside the writer pool: archival only removes files whose runs readers
    # can already see, and compaction takes the writer's lock for the time of a copy.
    archived, archive_error = None, ""
    if eligible is not None:
        try:
            archived = archive_landing(raw_runs.path, eligible, retention.compression_level)
            context.log.info(archived.line())
        except (OSError, ArchiveError) as exc:  # the night's data is stored: a full disk here must not hide that
            archive_error = f"archival stopped, nothing lost (an original goes only once its archive reads back): {exc}"
            context.log.warning(archive_error)
    compaction = compact(warehouse.path, min_free_share=config.compact_when_free) if config.compact_when_free <= 1 else None
    if compaction is not None and compaction.done:
        context.log.info(f"compacted {warehouse.path}: {compaction.bytes_before / 1e6:.1f} MB -> {compaction.bytes_after / 1e6:.1f} MB")
    with duckdb.connect(warehouse.path, read_only=True) as con:  # the writer pool holds off other writers
        disk = disk_report(warehouse.path, con, raw_runs.path)
    outcome_counts = {o: summary.count(o) for o in ("loaded", "replaced", "unchanged", "quarantined", "partly_quarantined")}
    for table in ALL_TABLES:
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/row_count": counts[table],
                "warehouse": warehouse.path,
                "duckdb_mb": round(disk.tables.get(table, {}).get("duckdb_bytes", 0) / 1e6, 3),
                "snapshot_mb": round(disk.tables.get(table, {}).get("snapshot_bytes", 0) / 1e6, 3),
                **({"ingest_summary": summary.line(), "snapshot": str(snapshot.path), **outcome_counts,
                    "non_finite_values": summary.non_finite, "non_finite_unexpected": summary.non_finite_unexpected,
                    "archived_files": len(archived.archived) if archived else 0,
                    **({"archive_error": archive_error} if archive_error else {}),
                    "compacted": bool(compaction and compaction.done), **_disk_metadata(disk)}
                   if table == "ingest_log" else {}),
            },
        )
    for table in SCHEMAS:
        yield table_check(table, tables[table])


def _disk_metadata(disk) -> dict:
    nights = ["| night | runs | steps | snapshot MB | landing MB | archive MB |", "|---|---|---|---|---|---|"]
    nights += [f"| {night} | {n['runs']} | {n['steps']} | {n['snapshot_bytes'] / 1e6:.1f} | {n['landing_bytes'] / 1e6:.1f} "
               f"| {n['archive_bytes'] / 1e6:.1f} |" for night, n in sorted(disk.nights.items())]  # fmt: skip
    return {
        "disk_total_mb": round(disk.total_bytes / 1e6, 3),
        "disk_duckdb_mb": round(disk.duckdb_bytes / 1e6, 3),
        "disk_snapshot_mb": round(disk.snapshot_bytes / 1e6, 3),
        "disk_landing_mb": round(disk.landing_bytes / 1e6, 3),
        "disk_archive_mb": round(disk.archive_bytes / 1e6, 3),
        "disk_free_gb": round(disk.disk_free / 1e9, 2),
        "duckdb_free_block_share": round(disk.free_share, 3),
        "disk_by_night": dg.MetadataValue.md("\n".join(nights)),
    }


class DiskCheckConfig(dg.Config):
    min_free_gb: float = 10.0  # warn below this much free disk, whatever the nights cost
    nights_ahead: int = 7  # ... or below this many nights at the size of the largest of the last three


@dg.asset_check(
    asset="ingest_log",
    name="warehouse_disk_space",
    description="Warns before the warehouse's disk fills: free disk against the coming nights at the recent nights' size.",
)
def warehouse_disk_space(
    config: DiskCheckConfig, warehouse: WarehouseResource, raw_runs: RawLandingResource
) -> dg.AssetCheckResult:
    from tamiyo_models.warehouse.disk import disk_report

    # No connection to the DuckDB file (this check runs outside the writer pool): the snapshot, the folders,
    # and the file's size are enough to size a night.
    disk = disk_report(warehouse.path, None, raw_runs.path)
    warning = disk.disk_warning(int(config.min_free_gb * 1e9), config.nights_ahead)
    return dg.AssetCheckResult(
        passed=warning is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=warning or f"{disk.disk_free / 1e9:.1f} GB free: enough for {config.nights_ahead} more nights",
        metadata=_disk_metadata(disk),
    )


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
# Apart from WAREHOUSE_ASSETS: a free-standing check goes to the Definitions' asset_checks (pipelines/definitions.py).
WAREHOUSE_CHECKS = [warehouse_disk_space]
