"""`tamiyo ingest`, `tamiyo sql` and `tamiyo export`: the warehouse without the Dagster UI.

`tamiyo sql` and `tamiyo export` read the warehouse's published snapshot, so they answer while a writer holds
the file; `--live` reads the file itself (only when no writer has it).

`register(subparsers)` adds the three subcommands to the main `tamiyo` parser (tamiyo_models/cli.py); each
sets `func(args) -> int` (the exit status).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SQL_FORMATS = ("table", "csv", "json")  # as store.SQL_FORMATS; kept here so --help imports nothing heavy


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser(
        "ingest",
        help="load raw runs, legacy episodes and packs from a folder into the DuckDB warehouse",
        description="Parse, validate and load every raw run, legacy episode and pack under --raw; bad records "
        "go to the quarantine table with a reason; re-ingesting the same files changes nothing. Then the read "
        "snapshot that `tamiyo sql` queries is published.",
    )
    ingest.add_argument("--raw", type=Path, required=True, help="landing folder (searched recursively)")
    ingest.add_argument("--warehouse", type=Path, required=True, help="DuckDB file (created if missing)")
    ingest.add_argument("--batch-files", type=int, default=200, help="files per transaction (default 200)")
    ingest.add_argument(
        "--workers", type=int, default=0,
        help="parser processes (default 0: every CPU but one, at most 8; 1: parse in the writing process)",
    )  # fmt: skip
    ingest.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    ingest.set_defaults(func=run_ingest)

    sql = subparsers.add_parser(
        "sql",
        help="run a read-only SQL query on the warehouse's snapshot",
        description="Run SQL on a read-only connection (writes are refused) to the snapshot published after the "
        "last write, so it answers while an ingestion runs; how fresh it is goes to stderr. Tables and views: "
        "warehouse/schema.sql, warehouse/views.sql; saved queries: warehouse/queries/*.sql.",
    )
    sql.add_argument("--warehouse", type=Path, required=True)
    sql.add_argument(
        "--live", action="store_true",
        help="query the warehouse file itself (fails while a writer holds it, and a writer starting meanwhile fails)",
    )  # fmt: skip
    sql.add_argument("--format", choices=SQL_FORMATS, default="table")
    sql.add_argument("--file", type=Path, help="run the query in this .sql file")
    sql.add_argument("query", nargs="?", help="SQL text (or use --file)")
    sql.set_defaults(func=run_sql_command)

    export = subparsers.add_parser("export", help="write every warehouse table to Parquet files")
    export.add_argument("--warehouse", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True, help="folder for <table>.parquet")
    export.add_argument("--live", action="store_true", help="export the warehouse file itself, not its snapshot")
    export.set_defaults(func=run_export)


def run_ingest(args: argparse.Namespace) -> int:
    from .ingest import IngestConfig, discover, ingest_files
    from .snapshot import SnapshotError, snapshot_dir
    from .store import writing

    try:
        paths = discover(args.raw)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int, path: Path) -> None:
        if not args.quiet:
            print(f"  {done}/{total} files ({path.name})", file=sys.stderr)

    try:
        with writing(args.warehouse) as con:
            summary = ingest_files(
                con, paths, IngestConfig(batch_files=args.batch_files, workers=args.workers), progress
            )
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for outcome in summary.files:
        if outcome.outcome in ("quarantined", "partly_quarantined", "replaced"):
            print(f"{outcome.outcome}: {outcome.source_file}: {outcome.message}")
    counts = ", ".join(
        f"{summary.count(o)} {o}" for o in ("loaded", "quarantined", "partly_quarantined", "replaced", "unchanged")
    )
    print(f"ingest {summary.ingest_id}: {len(summary.files)} files: {counts}")
    print(
        f"stored {summary.runs_loaded} runs, {summary.steps_loaded} steps; quarantined {summary.records_quarantined} "
        f"records; {summary.seconds:.2f} s -> {args.warehouse}"
    )
    print(f"read snapshot published: {snapshot_dir(args.warehouse) / 'current'}")
    return 0


def run_sql_command(args: argparse.Namespace) -> int:
    from .store import WarehouseBusy, format_result, run_sql

    if (args.file is None) == (args.query is None):
        print("error: give either a query or --file QUERY.sql", file=sys.stderr)
        return 2
    text = args.file.read_text() if args.file else args.query
    try:
        result = run_sql(args.warehouse, text, live=args.live)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WarehouseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a DuckDB error: the user's SQL, shown as DuckDB words it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_result(result, args.format))
    # stderr, so that csv and json output stay machine-readable
    where = result.snapshot.freshness() if result.snapshot else f"live: {args.warehouse} itself"
    print(f"-- {where}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .store import WarehouseBusy, export_parquet

    try:
        written = export_parquet(args.warehouse, args.out, live=args.live)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WarehouseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    for table, path in written.items():
        print(f"{table}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m tamiyo_models.warehouse.cli ...`) until the main CLI wires `register`."""
    parser = argparse.ArgumentParser(prog="tamiyo")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
