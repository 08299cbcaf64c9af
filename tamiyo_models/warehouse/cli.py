"""`tamiyo ingest`, `tamiyo sql`, `tamiyo disk` and `tamiyo export`: the warehouse without the Dagster UI.

`tamiyo sql` and `tamiyo export` read the warehouse's published snapshot, so they answer while a writer holds
the file; `--live` reads the file itself (only when no writer has it).

`register(subparsers)` adds the four subcommands to the main `tamiyo` parser (tamiyo_models/cli.py); each
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
    ingest.add_argument(
        "--retry-quarantined", action="store_true",
        help="parse again every quarantined file still in the folder (files quarantined by an older parser "
        "version are always parsed again)",
    )  # fmt: skip
    ingest.add_argument(
        "--archive-after", type=int, metavar="NIGHTS",
        help="after the ingestion, move every landing file whose runs have been stored for NIGHTS nights or more "
        "(0: at once) and that has nothing quarantined, zstd-compressed, into RAW/.archive/NIGHT/ (bit for bit; "
        "`tamiyo ingest --raw RAW/.archive` reads it back); default: the landing folder is left as it is",
    )  # fmt: skip
    ingest.add_argument("--archive-level", type=int, default=13,  # archive.DEFAULT_LEVEL, not imported for --help
                        help="zstd level of the archives, 1..22 (default 13)")
    ingest.set_defaults(func=run_ingest)

    sql = subparsers.add_parser(
        "sql",
        help="run a read-only SQL query on the warehouse's snapshot",
        description="Run SQL on a read-only connection (writes are refused) to the snapshot published after the "
        "last write, so it answers while an ingestion runs; how fresh it is goes to stderr. Tables and views: "
        "tamiyo_models/warehouse/sql/schema.sql and views.sql; saved queries (--saved NAME): sql/queries/*.sql.",
    )
    sql.add_argument("--warehouse", type=Path, required=True,
                     help="DuckDB warehouse file; queries read its published snapshot unless --live")
    sql.add_argument(
        "--live", action="store_true",
        help="query the warehouse file itself (fails while a writer holds it, and a writer starting meanwhile fails)",
    )  # fmt: skip
    sql.add_argument("--format", choices=SQL_FORMATS, default="table", help="output format (default table)")
    sql.add_argument("--file", type=Path, help="run the query in this .sql file")
    sql.add_argument("--saved", metavar="NAME",
                     help="run a saved query shipped with the package (e.g. best_episodes; --saved list names them)")
    sql.add_argument("query", nargs="?", help="SQL text (or use --file / --saved)")
    sql.set_defaults(func=run_sql_command)

    disk = subparsers.add_parser(
        "disk",
        help="disk use of the warehouse per table and per night (DuckDB file, snapshot, landing folder, archive)",
        description="Report the disk each store takes, per table and per night, and the free disk; with --compact, "
        "rewrite the DuckDB file without its free blocks when they are at least --min-free of it. Reads the "
        "file itself read-only for the per-table estimates (skipped, with a note, while a writer holds it).",
    )
    disk.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file")
    disk.add_argument("--raw", type=Path, help="landing folder, to count its raw files and their archive")
    disk.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    disk.add_argument("--compact", action="store_true", help="compact the DuckDB file first, when worth it (takes the writer's lock)")
    disk.add_argument("--min-free", type=float, default=0.25, metavar="SHARE",
                      help="compact only when at least this share of the file's blocks is free (default 0.25; 0: always)")  # fmt: skip
    disk.set_defaults(func=run_disk)

    export = subparsers.add_parser("export", help="write every warehouse table to Parquet files")
    export.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file (opened read-only)")
    export.add_argument("--out", type=Path, required=True, help="folder for <table>.parquet")
    export.add_argument("--live", action="store_true", help="export the warehouse file itself, not its snapshot")
    export.set_defaults(func=run_export)


def run_ingest(args: argparse.Namespace) -> int:
    import duckdb

    from .archive import ArchiveError, RetentionPolicy, archivable, archive_landing, discover
    from .ingest import IngestConfig, ingest_files
    from .snapshot import SnapshotError, snapshot_dir
    from .store import writing

    try:
        paths = discover(args.raw)
    except FileNotFoundError as exc:
        print(f"tamiyo ingest: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int, path: Path) -> None:
        if not args.quiet:
            print(f"  {done}/{total} files ({path.name})", file=sys.stderr)

    if args.batch_files < 1:
        print(f"tamiyo ingest: --batch-files must be at least 1, got {args.batch_files}", file=sys.stderr)
        return 2
    if args.workers < 0:
        print(f"tamiyo ingest: --workers must be 0 (automatic) or more, got {args.workers}", file=sys.stderr)
        return 2
    config = IngestConfig(batch_files=args.batch_files, workers=args.workers, retry_quarantined=args.retry_quarantined)
    try:
        retention = RetentionPolicy(args.archive_after, args.archive_level)
    except ValueError as exc:
        print(f"tamiyo ingest: {exc}", file=sys.stderr)
        return 2
    eligible = None
    try:
        with writing(args.warehouse) as con:
            summary = ingest_files(con, paths, config, progress)
            if retention.archive_raw_after_nights is not None:
                eligible = archivable(con, retention.archive_raw_after_nights)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, duckdb.Error) as exc:
        print(f"tamiyo ingest: cannot open the warehouse {args.warehouse}: {_first_line(exc)}", file=sys.stderr)
        return 2
    for outcome in summary.files:
        if outcome.outcome in ("quarantined", "partly_quarantined", "replaced") or outcome.retried:
            print(f"{outcome.outcome}: {outcome.source_file}: {outcome.message}")
        if outcome.non_finite_unexpected:
            print(
                f"warning: {outcome.source_file}: {outcome.non_finite_unexpected} unexpected NaN/Infinity values stored "
                f"as NULL (first: {outcome.first_unexpected}); see the non_finite_values table"
            )
    counts = ", ".join(
        f"{summary.count(o)} {o}" for o in ("loaded", "quarantined", "partly_quarantined", "replaced", "unchanged")
    )
    print(f"ingest {summary.ingest_id}: {len(summary.files)} files: {counts}")
    print(
        f"stored {summary.runs_loaded} runs, {summary.steps_loaded} steps; quarantined {summary.records_quarantined} "
        f"records; {summary.seconds:.2f} s -> {args.warehouse}"
    )
    if summary.non_finite:
        print(summary.non_finite_line())
    print(f"read snapshot published: {snapshot_dir(args.warehouse) / 'current'}")
    if eligible is not None:  # only now: the runs are committed and readers can see them
        try:
            print(archive_landing(args.raw, eligible, retention.compression_level).line())
        except (OSError, ArchiveError) as exc:
            print(f"tamiyo ingest: archival stopped, nothing lost (originals are removed only once their archive "
                  f"is written and read back): {exc}", file=sys.stderr)  # fmt: skip
            return 1
    if summary.all_quarantined:
        read = sum(1 for f in summary.files if f.outcome != "unchanged")
        print(f"tamiyo ingest: all {read} files read were quarantined, nothing stored (see the quarantine table)", file=sys.stderr)
        return 1
    return 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_sql_command(args: argparse.Namespace) -> int:
    from .store import WarehouseBusy, format_result, run_sql, saved_queries

    if sum(x is not None for x in (args.file, args.query, args.saved)) != 1:
        print("tamiyo sql: give one of a query, --file QUERY.sql or --saved NAME", file=sys.stderr)
        return 2
    if args.saved is not None:
        queries = saved_queries()
        if args.saved == "list":
            for name, path in queries.items():
                print(f"{name}: {path.read_text().splitlines()[0].removeprefix('-- Purpose: ')}")
            return 0
        if args.saved not in queries:
            print(f"tamiyo sql: no saved query {args.saved!r}; saved: {', '.join(queries)}", file=sys.stderr)
            return 2
        args.file = queries[args.saved]
    try:
        text = args.file.read_text() if args.file else args.query
    except OSError as exc:
        print(f"tamiyo sql: cannot read the query file {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = run_sql(args.warehouse, text, live=args.live)
    except FileNotFoundError as exc:
        print(f"tamiyo sql: {exc}", file=sys.stderr)
        return 2
    except WarehouseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a DuckDB error: the user's SQL, shown as DuckDB words it
        print(f"tamiyo sql: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_result(result, args.format))
    # stderr, so that csv and json output stay machine-readable
    where = result.snapshot.freshness() if result.snapshot else f"live: {args.warehouse} itself"
    print(f"-- {where}", file=sys.stderr)
    return 0


def run_disk(args: argparse.Namespace) -> int:
    import json

    import duckdb

    from .disk import compact, disk_report
    from .store import WarehouseBusy, connect_read_only

    if not args.warehouse.exists():
        print(f"tamiyo disk: no warehouse at {args.warehouse}", file=sys.stderr)
        return 2
    if args.compact:
        try:
            done = compact(args.warehouse, min_free_share=args.min_free)
        except duckdb.Error as exc:
            print(f"tamiyo disk: cannot compact {args.warehouse}: {_first_line(exc)}", file=sys.stderr)
            return 3
        what = "compacted" if done.done else "not compacted (below --min-free)"
        print(f"{what}: {done.free_share:.0%} of the blocks were free; {done.bytes_before / 1e6:.1f} MB -> "
              f"{done.bytes_after / 1e6:.1f} MB", file=sys.stderr)  # fmt: skip
    try:
        con = connect_read_only(args.warehouse)
    except WarehouseBusy as exc:
        print(f"note: {exc}; per-table DuckDB sizes are left out", file=sys.stderr)
        con = None
    try:
        report = disk_report(args.warehouse, con, args.raw)
    finally:
        if con is not None:
            con.close()
    sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n" if args.format == "json" else report.text())
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .store import WarehouseBusy, export_parquet

    try:
        written = export_parquet(args.warehouse, args.out, live=args.live)
    except FileNotFoundError as exc:
        print(f"tamiyo export: {exc}", file=sys.stderr)
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
