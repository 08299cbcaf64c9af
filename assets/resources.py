"""Resources: where the warehouse file, the raw-run landing folder and the dataset root are.

Small `ConfigurableResource`s of our own (rather than dagster-duckdb's): the warehouse resource writes through
`tamiyo_models.warehouse.writing`, which creates the tables and views (a fresh file is a working warehouse)
and publishes the read snapshot after each successful write; it reads that snapshot, so a reader never
collides with a writer. Defaults come from the environment so `dagster dev` and the tests can point elsewhere.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from tamiyo_models.warehouse import connect_snapshot, writing

DEFAULT_WAREHOUSE = "warehouse/tamiyo.duckdb"  # ignored by git (warehouse/*.duckdb)
DEFAULT_RAW_DIR = "var/raw"
DEFAULT_DATASET_ROOT = "var/datasets"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. One writer at a time: writing assets run in the `duckdb_writer` pool."""

    path: str = os.environ.get("TAMIYO_WAREHOUSE", DEFAULT_WAREHOUSE)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The write connection; the read snapshot is published when the block ends without an exception."""
        with writing(self.path) as con:
            yield con

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The current read snapshot (never the writer's file: that would collide with a running write)."""
        con = connect_snapshot(self.path)
        try:
            yield con
        finally:
            con.close()


class RawLandingResource(dg.ConfigurableResource):
    """The landing folder of raw telemetry runs (and legacy episodes or packs). Only ever read."""

    folder: str = os.environ.get("TAMIYO_RAW_DIR", DEFAULT_RAW_DIR)

    @property
    def path(self) -> Path:
        return Path(self.folder)


class DatasetRootResource(dg.ConfigurableResource):
    """Where host datasets (digits, CIFAR-10) are stored, for the generation assets."""

    root: str = os.environ.get("TAMIYO_DATASET_ROOT", DEFAULT_DATASET_ROOT)
