"""The DuckDB warehouse file: open it (creating the tables and views), query it, export it.

DuckDB allows one process per file while anyone writes, and a reader of the file makes a writer fail. So
writers go through `writing()` (Dagster also serialises them with a concurrency pool), which publishes a read
snapshot after each successful write (snapshot.py), and every reader — `tamiyo sql`, analyses, policy
training — reads that snapshot by default; `live=True` reads the writer's file itself, when nobody writes it.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb

if TYPE_CHECKING:  # polars costs `tamiyo sql` ~0.2 s of start-up, and only `query` returns a frame
    import polars as pl

from .snapshot import Snapshot, connect_snapshot, current_snapshot, publish_snapshot

# Shipped inside the package, so a non-editable install can open a warehouse: schema.sql, views.sql, queries/.
SQL_DIR = Path(__file__).resolve().parent / "sql"
SQL_FORMATS = ("table", "csv", "json")


def sql_file(name: str) -> Path:
    path = SQL_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the warehouse SQL ships in tamiyo_models/warehouse/sql/ (a broken install?)")
    return path


def saved_queries() -> dict[str, Path]:
    """The saved analyses shipped with the package, by name (best_episodes, ...)."""
    return {p.stem: p for p in sorted((SQL_DIR / "queries").glob("*.sql"))}


def open_warehouse(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A write connection to the warehouse file, with every table and view in place (idempotent).

    It publishes nothing: writers use `writing()`, which publishes the read snapshot when they are done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise duckdb.IOException(
            f"{exc}\nThe warehouse {path} is open in another process. Readers should query its snapshot "
            "(`tamiyo sql` without --live, tamiyo_models.warehouse.connect_snapshot), which never locks it."
        ) from None
    apply_schema(con)
    return con


@contextmanager
def writing(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A write connection; when the block ends without an exception, the committed state is published as the
    new read snapshot (a failed block publishes nothing: readers keep the last good snapshot)."""
    con = open_warehouse(path)
    try:
        yield con
        publish_snapshot(con, path)
    finally:
        con.close()


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    # One transaction: outside one, each of the ~230 statements (mostly column comments) commits and syncs
    # on its own, which made opening a warehouse cost ~0.8 s instead of ~0.1 s. It also leaves no half-applied
    # schema behind if a statement fails.
    con.execute("BEGIN TRANSACTION")
    try:
        old_layout = _old_layer_gradients(con)
        if old_layout:
            con.execute(f"ALTER TABLE layer_gradients RENAME TO {old_layout}")
        unscored = _lacks_column(con, "episodes", "score")
        con.execute(sql_file("schema.sql").read_text())
        if old_layout:
            migrate_layer_gradients(con, old_layout)
        if unscored:
            migrate_scores(con)
        con.execute(sql_file("views.sql").read_text())
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _old_layer_gradients(con: duckdb.DuckDBPyConnection) -> str | None:
    """The name to move a layer_gradients table of the first layout (DOUBLE, a primary key) aside to, or None."""
    rows = con.execute(
        "SELECT data_type FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name = 'layer_gradients' AND column_name = 'norm'"
    ).fetchall()
    return "_layer_gradients_double" if rows and rows[0][0] == "DOUBLE" else None


def _lacks_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """True when `table` exists without `column` (a warehouse from before it); False for a new file."""
    found = con.execute(
        "SELECT count(*) FILTER (WHERE column_name = ?), count(*) FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [column, table],
    ).fetchone()
    return found[1] > 0 and found[0] == 0


def migrate_scores(con: duckdb.DuckDBPyConnection) -> None:
    """Fill episodes.score in a warehouse from before rent: each of its runs paid none (runs.rent defaults to
    0), so its score is its test accuracy, exactly what the footer of a rent-0 run records."""
    con.execute("UPDATE episodes SET score = final_test_accuracy")


def migrate_layer_gradients(con: duckdb.DuckDBPyConnection, old: str) -> None:
    """Move the rows of an older layer_gradients table into the compact one (schema.sql), in the caller's
    transaction: a failure leaves the old table as it was. Values of raw runs are float32 measurements, so
    they come back exactly; a legacy value with more digits than float32 holds is rounded to 7 significant
    digits. The file's freed blocks are given back by `tamiyo disk --compact`."""
    con.execute(f"INSERT INTO layer_gradients BY NAME SELECT * FROM {old}")
    con.execute(f"DROP TABLE {old}")


def connect_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the writer's file itself (live data). It fails while a writer has the file,
    and makes a writer that starts meanwhile fail: readers use the snapshot (`connect`, `live=False`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: run `tamiyo ingest --raw DIR --warehouse {path}` first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise WarehouseBusy(
            f"{path} is being written by another process, so it cannot be read live ({exc}); "
            "its snapshot can be read meanwhile (leave out --live / live=True)"
        ) from None


class WarehouseBusy(RuntimeError):
    """The writer's file is held by a writer: only its snapshot can be read now."""


def connect(path: str | Path, *, live: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection: to the current snapshot (default), or to the writer's file with `live=True`."""
    return connect_read_only(path) if live else connect_snapshot(path)


def query(path: str | Path, sql: str, *, live: bool = False) -> pl.DataFrame:
    """Run one read-only query (on the snapshot unless `live`) and return a polars frame."""
    with connect(path, live=live) as con:
        return con.sql(sql).pl()


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    snapshot: Snapshot | None = None  # the version that answered; None for a live query


def run_sql(path: str | Path, sql: str, *, live: bool = False) -> QueryResult:
    snapshot = None if live else current_snapshot(path)
    with (connect_read_only(path) if live else snapshot.connect()) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return QueryResult(columns, cursor.fetchall(), snapshot)


def format_result(result: QueryResult, fmt: str = "table") -> str:
    if fmt not in SQL_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(SQL_FORMATS)}")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buffer.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, row)) for row in result.rows], default=str, indent=1) + "\n"
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(result.columns, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def export_parquet(path: str | Path, out_dir: str | Path, *, live: bool = False) -> dict[str, Path]:
    """Write every warehouse table to `<out_dir>/<table>.parquet`, one file each (from the snapshot unless
    `live`; the snapshot itself is already Parquet, split by day: see snapshot.py)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .tables import ALL_TABLES  # here, not at the top: it imports torch, which `tamiyo sql` does not need

    written = {}
    with connect(path, live=live) as con:
        for table in ALL_TABLES:
            target = out_dir / f"{table}.parquet"
            con.execute(f"COPY {table} TO '{_sql_string(target)}' (FORMAT parquet)")
            written[table] = target
    return written


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")


def table_counts(path: str | Path, *, live: bool = False) -> dict[str, int]:
    from .tables import ALL_TABLES

    with connect(path, live=live) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ALL_TABLES}


def lineage_runs(path: str | Path, run_ids) -> pl.DataFrame:
    """The raw runs behind a training set, with their generation configuration (what a training run records
    as its lineage, so a policy can be traced back to the episodes it learned from)."""
    ids = ", ".join("'" + str(r).replace("'", "''") + "'" for r in sorted(set(run_ids)))
    return query(
        path,
        f"SELECT run_id, source_file, content_sha256, controller_kind, dataset, seed, config_json "
        f"FROM runs WHERE run_id IN ({ids}) ORDER BY run_id",
    )
