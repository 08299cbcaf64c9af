"""The episode warehouse: raw telemetry runs and legacy episodes become validated DuckDB tables.

    ingest_folder(raw_dir, warehouse_file)   parse, validate (pandera), quarantine, load (ingest.py)
    writing(warehouse_file)                  a write connection that publishes the read snapshot (store.py)
    query(warehouse_file, sql)               SQL on the read snapshot into polars; live=True: the file (store.py)
    current_snapshot(warehouse_file)         the published snapshot: Parquet by table, views, manifest (snapshot.py)
    export_parquet(warehouse_file, out_dir)  every table as one Parquet file (store.py)
    RetentionPolicy, archive_landing         stored raw files zstd-compressed into <landing>/.archive (archive.py)
    disk_report, compact                     disk use per table and night; the file without free blocks (disk.py)

Tables and views: tamiyo_models/warehouse/sql/schema.sql and views.sql; how-to: docs/warehouse.md. No dagster here:
the Dagster assets in assets/warehouse.py are thin wrappers around these functions.

Names are imported lazily, so `tamiyo --help` (which imports warehouse.cli) does not pay for polars, duckdb
and pandera.
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "ArchiveSummary": "archive",
    "RetentionPolicy": "archive",
    "archivable": "archive",
    "archive_landing": "archive",
    "compact": "disk",
    "disk_report": "disk",
    "IngestConfig": "ingest",
    "IngestSummary": "ingest",
    "discover": "archive",
    "ingest_files": "ingest",
    "ingest_folder": "ingest",
    "Snapshot": "snapshot",
    "SnapshotError": "snapshot",
    "WarehouseBusy": "store",
    "connect": "store",
    "connect_read_only": "store",
    "connect_snapshot": "snapshot",
    "current_snapshot": "snapshot",
    "export_parquet": "store",
    "lineage_runs": "store",
    "open_warehouse": "store",
    "publish_snapshot": "snapshot",
    "query": "store",
    "run_sql": "store",
    "snapshot_dir": "snapshot",
    "table_counts": "store",
    "writing": "store",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
