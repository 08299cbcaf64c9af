"""Where the warehouse's disk goes: per table and per night, across every store, and whether compaction pays.

Stores: the DuckDB file (plus its WAL), the read snapshot (Parquet parts by day; a file shared by several
versions through hard links is counted once), the landing folder's raw files, and their archive
(`<landing>/.archive/<night>/`).

The DuckDB file does not say how many bytes each table takes, so `duckdb_bytes` is an estimate from
`pragma_storage_info`: every segment owns its block from its offset to the next segment's (the last one to the
block's end), and extra blocks of a long segment whole; the rest of the file is DuckDB's catalog and metadata,
and free blocks (left by deleted or replaced rows), which compaction (`compact`) gives back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .archive import archive_dir
from .snapshot import MANIFEST, snapshot_dir

COMPACT_WHEN_FREE = 0.25  # compaction rewrites the whole file: worth it once a quarter of it is free blocks


@dataclass
class DiskReport:
    warehouse: Path
    duckdb_bytes: int  # the file and its WAL
    block_size: int = 0
    total_blocks: int = 0
    free_blocks: int = 0
    tables: dict[str, dict] = field(default_factory=dict)  # table -> rows, duckdb_bytes, snapshot_bytes
    nights: dict[str, dict] = field(default_factory=dict)  # night -> runs, steps, snapshot_bytes, landing/archive bytes
    snapshot_bytes: int = 0
    landing_bytes: int = 0
    archive_bytes: int = 0
    disk_free: int = 0
    disk_total: int = 0

    @property
    def total_bytes(self) -> int:
        return self.duckdb_bytes + self.snapshot_bytes + self.landing_bytes + self.archive_bytes

    @property
    def free_share(self) -> float:
        return self.free_blocks / self.total_blocks if self.total_blocks else 0.0

    @property
    def compaction_worth_it(self) -> bool:
        return self.free_share >= COMPACT_WHEN_FREE

    def night_bytes(self, night: str) -> int:
        """Disk a night takes in every store; its DuckDB share estimated by its share of the steps (without a
        connection to the file, by its share of the snapshot: the same rows, in Parquet)."""
        n = self.nights[night]
        steps = sum(x["steps"] for x in self.nights.values())
        snapshot = sum(x["snapshot_bytes"] for x in self.nights.values())
        share = n["steps"] / steps if steps else (n["snapshot_bytes"] / snapshot if snapshot else 0)
        return int(n["snapshot_bytes"] + n["landing_bytes"] + n["archive_bytes"] + self.duckdb_bytes * share)

    def disk_warning(self, min_free_bytes: int, nights_ahead: int = 7, recent: int = 3) -> str | None:
        """Why the disk will not last (None when it will): less than `min_free_bytes` free, or less than
        `nights_ahead` nights at the largest of the `recent` last nights' size."""
        largest = max((self.night_bytes(n) for n in sorted(self.nights)[-recent:]), default=0)
        needed = max(min_free_bytes, nights_ahead * largest)
        if self.disk_free >= needed:
            return None
        return (f"{self.disk_free / 1e9:.1f} GB free on the warehouse's disk, under the {needed / 1e9:.1f} GB needed "
                f"({nights_ahead} nights at up to {largest / 1e6:.0f} MB each, or at least {min_free_bytes / 1e9:.1f} GB): "
                "archive raw runs (--archive-after), compact the DuckDB file (tamiyo disk --compact) or add disk")  # fmt: skip

    def text(self) -> str:
        mb = lambda n: f"{n / 1e6:,.1f}"  # noqa: E731
        lines = [
            f"warehouse {self.warehouse}: DuckDB {mb(self.duckdb_bytes)} MB ({self.free_blocks} of {self.total_blocks} "
            f"blocks free, {self.free_share:.0%}: compaction {'worth it' if self.compaction_worth_it else 'not needed'}), "
            f"snapshot {mb(self.snapshot_bytes)} MB, landing {mb(self.landing_bytes)} MB, archive {mb(self.archive_bytes)} MB; "
            f"total {mb(self.total_bytes)} MB; disk {mb(self.disk_free)} MB free of {mb(self.disk_total)} MB",
            "",
            f"{'table':<20} {'rows':>12} {'duckdb MB':>10} {'snapshot MB':>12}",
        ]
        for table, t in sorted(self.tables.items(), key=lambda kv: -kv[1]["duckdb_bytes"]):
            lines.append(f"{table:<20} {t['rows']:>12,} {mb(t['duckdb_bytes']):>10} {mb(t['snapshot_bytes']):>12}")
        lines += ["", f"{'night':<10} {'runs':>7} {'steps':>9} {'snapshot MB':>12} {'landing MB':>11} {'archive MB':>11}"]
        for night, n in sorted(self.nights.items()):
            lines.append(f"{night:<10} {n['runs']:>7,} {n['steps']:>9,} {mb(n['snapshot_bytes']):>12} "
                         f"{mb(n['landing_bytes']):>11} {mb(n['archive_bytes']):>11}")  # fmt: skip
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "warehouse": str(self.warehouse), "duckdb_bytes": self.duckdb_bytes, "free_blocks": self.free_blocks,
            "total_blocks": self.total_blocks, "block_size": self.block_size, "snapshot_bytes": self.snapshot_bytes,
            "landing_bytes": self.landing_bytes, "archive_bytes": self.archive_bytes, "total_bytes": self.total_bytes,
            "disk_free": self.disk_free, "disk_total": self.disk_total, "tables": self.tables, "nights": self.nights,
        }  # fmt: skip


def disk_report(warehouse: str | Path, con=None, raw_dir: str | Path | None = None) -> DiskReport:
    """Disk use of a warehouse. `con`: a connection to the file (the writer's own, or read-only) for the
    per-table DuckDB estimates and the per-night runs; without one, those come from the snapshot alone."""
    warehouse = Path(warehouse)
    report = DiskReport(warehouse, sum(_size(p) for p in (warehouse, Path(f"{warehouse}.wal"))))
    usage = shutil.disk_usage(warehouse.parent if warehouse.parent.exists() else ".")
    report.disk_free, report.disk_total = usage.free, usage.total

    manifest = _manifest(warehouse)
    snapshot_root = snapshot_dir(warehouse)
    report.snapshot_bytes = _tree_bytes(snapshot_root)
    night_parts: dict[str, int] = {}
    if manifest is not None:
        version = snapshot_root / manifest["version"]
        for table, entry in manifest["tables"].items():
            parts = entry.get("parts") or {}
            by_file = {f: _size(version / f) for f in entry["files"]}
            report.tables[table] = {"rows": entry["rows"], "duckdb_bytes": 0, "snapshot_bytes": sum(by_file.values())}
            for part, info in parts.items():
                if entry.get("partitioned_by") == "day":
                    night_parts[part] = night_parts.get(part, 0) + sum(by_file.get(f, 0) for f in info["files"])

    runs_by_night: dict[str, tuple[int, int]] = {}
    landing_by_night: dict[str, int] = {}
    if con is not None:
        sizes = con.execute("SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
                            "WHERE database_name = current_database()").fetchone()  # fmt: skip
        report.block_size, report.total_blocks, report.free_blocks = sizes
        for table, rows, size in _duckdb_tables(con, report.block_size):
            entry = report.tables.setdefault(table, {"rows": rows, "duckdb_bytes": 0, "snapshot_bytes": 0})
            entry["rows"], entry["duckdb_bytes"] = rows, size
        if "runs" in report.tables:
            for night, runs, steps in con.execute(
                "SELECT strftime(r.ingested_at, '%Y-%m-%d'), count(*), coalesce(sum(e.steps), 0) FROM runs r "
                "LEFT JOIN episodes e USING (run_id) GROUP BY 1"
            ).fetchall():
                runs_by_night[night] = (runs, int(steps))
            if raw_dir is not None:
                for night, source in con.execute(
                    "SELECT DISTINCT strftime(min(ingested_at) OVER (PARTITION BY source_file), '%Y-%m-%d'), source_file FROM runs"
                ).fetchall():
                    landing_by_night[night] = landing_by_night.get(night, 0) + _size(Path(source))

    archive_by_night: dict[str, int] = {}
    if raw_dir is not None:
        raw_dir = Path(raw_dir)
        archives = archive_dir(raw_dir)
        report.archive_bytes = _tree_bytes(archives)
        report.landing_bytes = _tree_bytes(raw_dir) - report.archive_bytes
        if archives.is_dir():
            for night in archives.iterdir():
                if night.is_dir() and not night.name.startswith("."):
                    archive_by_night[night.name] = _tree_bytes(night)
    for night in sorted(set(night_parts) | set(runs_by_night) | set(archive_by_night) | set(landing_by_night)):
        runs, steps = runs_by_night.get(night, (0, 0))
        report.nights[night] = {"runs": runs, "steps": steps, "snapshot_bytes": night_parts.get(night, 0),
                                "landing_bytes": landing_by_night.get(night, 0),
                                "archive_bytes": archive_by_night.get(night, 0)}  # fmt: skip
    return report


def _duckdb_tables(con, block_size: int) -> list[tuple[str, int, int]]:
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database() "
        "AND NOT temporary ORDER BY 1"
    ).fetchall()]  # fmt: skip
    if not tables:
        return []
    segments = " UNION ALL ".join(
        f"SELECT {_literal(t)} AS t, block_id, block_offset, len(additional_block_ids) AS extra "
        f"FROM pragma_storage_info({_literal(t)}) WHERE persistent AND block_id >= 0"
        for t in tables
    )
    owned = dict(
        con.execute(
            f"SELECT t, sum(owned)::BIGINT FROM (SELECT t, coalesce(lead(block_offset) OVER (PARTITION BY block_id "
            f"ORDER BY block_offset), {block_size}) - block_offset + extra * {block_size} AS owned FROM ({segments})) GROUP BY t"
        ).fetchall()
    )
    rows = dict(con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
    ).fetchall())  # fmt: skip
    return [(t, int(rows.get(t) or 0), int(owned.get(t) or 0)) for t in tables]


def _manifest(warehouse: Path) -> dict | None:
    try:
        version = Path(os.path.realpath(snapshot_dir(warehouse) / "current", strict=True))
        return json.loads((version / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_bytes(folder: Path) -> int:
    """Bytes under a folder, each inode once (snapshot versions share their unchanged parts as hard links)."""
    seen, total = set(), 0
    if not folder.is_dir():
        return 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Compaction:
    bytes_before: int
    bytes_after: int
    free_share: float  # of the blocks before
    done: bool  # False: not worth it (below the threshold), the file untouched


def compact(warehouse: str | Path, *, min_free_share: float = COMPACT_WHEN_FREE) -> Compaction:
    """Rewrite the DuckDB file without its free blocks, when at least `min_free_share` of it is free (0: always).

    DuckDB reuses free blocks but never shrinks its file, so a warehouse that replaced runs or rolled back
    large batches keeps their space. The copy is made while this connection holds the writer's lock (no other
    writer can change the file meanwhile), fsynced, then renamed over the file (atomic): a kill at any point
    leaves the old file or the new one, whole. Readers use the snapshot, which does not change.
    """
    import uuid

    from .store import open_warehouse

    warehouse = Path(warehouse)
    con = open_warehouse(warehouse)
    try:
        con.execute("CHECKPOINT")  # the WAL into the file: the copy and the size below are the whole state
        name, total, free = con.execute(
            "SELECT database_name, total_blocks, free_blocks FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchone()
        before = _size(warehouse)
        share = free / total if total else 0.0
        if share < min_free_share:
            return Compaction(before, before, share, False)
        temporary = warehouse.with_name(f".{warehouse.name}.compact-{uuid.uuid4().hex[:8]}")
        try:
            con.execute(f"ATTACH {_literal(str(temporary))} AS _compacted")
            con.execute(f'COPY FROM DATABASE "{name}" TO _compacted')
            con.execute("DETACH _compacted")
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, warehouse)
        finally:
            for leftover in (temporary, Path(f"{temporary}.wal")):
                leftover.unlink(missing_ok=True)
        fd = os.open(warehouse.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return Compaction(before, _size(warehouse), share, True)
    finally:
        con.close()
