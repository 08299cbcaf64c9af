"""Resources: where the warehouse file, the raw-run landing folder and the dataset root are.

Small `ConfigurableResource`s of our own (rather than dagster-duckdb's): the warehouse resource opens the file
through `tamiyo_models.warehouse.open_warehouse`, which creates the tables and views, so a fresh file is a
working warehouse. Defaults come from the environment so `dagster dev` and the tests can point elsewhere.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from tamiyo_models.warehouse import connect_read_only, open_warehouse

DEFAULT_WAREHOUSE = "warehouse/tamiyo.duckdb"  # ignored by git (warehouse/*.duckdb)
DEFAULT_RAW_DIR = "var/raw"
DEFAULT_DATASET_ROOT = "var/datasets"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. One writer at a time: writing assets run in the `duckdb_writer` pool."""

    path: str = os.environ.get("TAMIYO_WAREHOUSE", DEFAULT_WAREHOUSE)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = open_warehouse(self.path)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect_read_only(self.path)
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
