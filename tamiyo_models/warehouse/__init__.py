"""The episode warehouse: raw telemetry runs and legacy episodes become validated DuckDB tables.

    ingest_folder(raw_dir, warehouse_file)   parse, validate (pandera), quarantine, load (ingest.py)
    query(warehouse_file, sql)               read-only SQL into polars (store.py)
    export_parquet(warehouse_file, out_dir)  every table as Parquet (store.py)

Tables and views: warehouse/schema.sql and warehouse/views.sql; how-to: docs/warehouse.md. No dagster here:
the Dagster assets in assets/warehouse.py are thin wrappers around these functions.

Names are imported lazily, so `tamiyo --help` (which imports warehouse.cli) does not pay for polars, duckdb
and pandera.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "IngestConfig": "ingest",
    "IngestSummary": "ingest",
    "discover": "ingest",
    "ingest_files": "ingest",
    "ingest_folder": "ingest",
    "connect_read_only": "store",
    "export_parquet": "store",
    "open_warehouse": "store",
    "query": "store",
    "run_sql": "store",
    "table_counts": "store",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
