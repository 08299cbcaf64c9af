"""The episode warehouse: raw telemetry runs and legacy episodes become validated DuckDB tables.

    ingest_folder(raw_dir, warehouse_file)   parse, validate (pandera), quarantine, load (ingest.py)
    query(warehouse_file, sql)               read-only SQL into polars (store.py)
    export_parquet(warehouse_file, out_dir)  every table as Parquet (store.py)

Tables and views: warehouse/schema.sql and warehouse/views.sql; how-to: docs/warehouse.md. No dagster here:
the Dagster assets in assets/warehouse.py are thin wrappers around these functions.
"""

from .ingest import IngestConfig, IngestSummary, discover, ingest_files, ingest_folder
from .store import connect_read_only, export_parquet, open_warehouse, query, run_sql, table_counts

__all__ = [
    "IngestConfig",
    "IngestSummary",
    "connect_read_only",
    "discover",
    "export_parquet",
    "ingest_files",
    "ingest_folder",
    "open_warehouse",
    "query",
    "run_sql",
    "table_counts",
]
