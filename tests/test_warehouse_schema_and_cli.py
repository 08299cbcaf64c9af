"""The SQL side: schema.sql agrees with the polars dtypes and comments every column; views and saved queries
run; `tamiyo ingest`, `tamiyo sql` (read-only) and `tamiyo export` work end to end."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tamiyo_models.warehouse import cli
from tamiyo_models.warehouse.store import SQL_DIR, apply_schema
from tamiyo_models.warehouse.tables import ALL_TABLES
from test_warehouse_helpers import copy_runs, generated_runs

DUCKDB_TYPES = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Float64: "DOUBLE", pl.Float32: "FLOAT",
                pl.Boolean: "BOOLEAN", pl.List(pl.String): "VARCHAR[]"}  # fmt: skip


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="tamiyo")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_sql_matches_the_frames_and_comments_every_column():
    con = duckdb.connect()
    apply_schema(con)
    apply_schema(con)  # idempotent
    for table, columns in ALL_TABLES.items():
        rows = con.execute(
            "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        stored = {name: dtype for name, dtype, _ in rows if name not in ("ingested_at", "quarantined_at", "seen_at")}
        assert stored.keys() == columns.keys(), table
        for name, dtype in columns.items():
            expected = DUCKDB_TYPES[dtype]
            assert stored[name] in (expected, "JSON"), (table, name, stored[name])
        assert all(comment for *_, comment in rows), [n for n, _, c in rows if not c]


def test_every_saved_query_has_a_purpose_line():
    queries = sorted((SQL_DIR / "queries").glob("*.sql"))
    assert len(queries) >= 5
    for path in queries:
        assert path.read_text().startswith("-- Purpose: "), path.name


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated")), folder)
    path = tmp_path_factory.mktemp("warehouse") / "w.duckdb"
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["ingest", "--raw", str(folder), "--warehouse", str(path), "--quiet"])
    assert args.func(args) == 0
    return path


def test_ingest_command_prints_a_summary(warehouse, tmp_path, capsys):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "empty.jsonl").write_bytes(b"")
    code, out, err = _run(["ingest", "--raw", str(folder), "--warehouse", str(warehouse)], capsys)
    assert code == 1  # every file read was quarantined: nothing new could be stored
    assert "quarantined: " in out and "empty file" in out
    assert "1 files: 0 loaded, 1 quarantined" in out and "1/1 files" in err
    assert "all 1 files read were quarantined" in err
    assert f"read snapshot published: {warehouse.parent / 'w.snapshot' / 'current'}" in out


def test_views_and_saved_queries_run(warehouse, capsys):
    for path in sorted((SQL_DIR / "queries").glob("*.sql")):
        code, out, err = _run(["sql", "--warehouse", str(warehouse), "--format", "csv", "--file", str(path)], capsys)
        assert code == 0, (path.name, err)
        assert next(csv.reader(io.StringIO(out)))  # a header row at least
    code, out, _ = _run(["sql", "--warehouse", str(warehouse), "--format", "json",
                         "SELECT controller_kind, episodes FROM outcomes_by_controller ORDER BY 1"], capsys)  # fmt: skip
    assert code == 0
    assert json.loads(out) == [{"controller_kind": k, "episodes": 1} for k in ("epsilon-heuristic", "heuristic", "random")]
    code, out, _ = _run(["sql", "--warehouse", str(warehouse), "SELECT count(*) AS n FROM transitions"], capsys)
    assert code == 0 and "(1 row)" in out


def test_sql_command_is_read_only(warehouse, capsys):
    code, _, err = _run(["sql", "--warehouse", str(warehouse), "DELETE FROM runs"], capsys)
    assert code == 1 and "Can only delete from base table" in err  # the snapshot's tables are Parquet views
    code, _, err = _run(["sql", "--warehouse", str(warehouse), "CREATE TABLE scratch AS SELECT 1"], capsys)
    assert code == 1 and "read-only" in err
    code, _, err = _run(["sql", "--warehouse", str(warehouse), "--live", "DELETE FROM runs"], capsys)
    assert code == 1 and "read-only" in err
    code, out, _ = _run(["sql", "--warehouse", str(warehouse), "--format", "csv", "SELECT count(*) AS n FROM runs"], capsys)
    assert out == "n\n3\n"


def test_export_writes_every_table_as_parquet(warehouse, tmp_path, capsys):
    code, out, _ = _run(["export", "--warehouse", str(warehouse), "--out", str(tmp_path / "pq")], capsys)
    assert code == 0
    for table in ALL_TABLES:
        frame = pl.read_parquet(tmp_path / "pq" / f"{table}.parquet")
        with duckdb.connect(str(warehouse), read_only=True) as con:
            assert len(frame) == con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_saved_queries_run_by_name(tmp_path, capsys):
    from tamiyo_models.cli import main
    from tamiyo_models.warehouse import ingest_folder

    warehouse = tmp_path / "w.duckdb"
    ingest_folder(tmp_path, warehouse)  # an empty warehouse, published
    assert main(["sql", "--warehouse", str(warehouse), "--saved", "list"]) == 0
    assert "best_episodes:" in capsys.readouterr().out
    assert main(["sql", "--warehouse", str(warehouse), "--saved", "best_episodes", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("run_id,")
    assert main(["sql", "--warehouse", str(warehouse), "--saved", "nope"]) == 2
    assert "no saved query 'nope'" in capsys.readouterr().err


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_fast_commands_are_what_their_module_registers_with_the_same_flags():
    from tamiyo_models import cli as main_cli

    full = _subcommands(main_cli.build_parser())
    for module_name in set(main_cli._FAST_COMMANDS.values()):
        parser = argparse.ArgumentParser()
        __import__(module_name, fromlist=["register"]).register(parser.add_subparsers())
        owned = {c for c, m in main_cli._FAST_COMMANDS.items() if m == module_name}
        assert set(_subcommands(parser)) == owned, module_name
    for command in main_cli._FAST_COMMANDS:
        fast = _subcommands(main_cli.build_parser(command))[command]
        flags = lambda p: sorted((tuple(a.option_strings), a.dest, str(a.default), a.help) for a in p._actions)  # noqa: E731
        assert flags(fast) == flags(full[command]), command


def test_sql_command_imports_neither_torch_nor_polars(warehouse):
    import subprocess
    import sys

    code = (
        "import sys; from tamiyo_models.cli import main; "
        f"status = main(['sql', '--warehouse', {str(warehouse)!r}, '--format', 'csv', 'SELECT count(*) AS n FROM runs']); "
        "heavy = sorted(m for m in ('torch', 'polars', 'pandera', 'dagster', 'numpy') if m in sys.modules); "
        "print(status, heavy, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout == "n\n3\n", done.stderr
    assert done.stderr.splitlines()[-1] == "0 []", done.stderr
