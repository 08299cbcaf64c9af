"""Archival of the landing folder: raw files the warehouse holds move, zstd-compressed, into `<landing>/.archive/`.

A night of arena episodes lands ~340 MB of JSON Lines; once its runs are stored, the warehouse answers every
question from its own tables and the files are only evidence. So after an ingestion, each file

- whose exact bytes (SHA-256) are stored in `runs` and have no record in `quarantine` (a file with a refused
  record stays in the landing folder, where someone can fix it and ingest it again),
- and whose runs were first stored at least `keep_nights` nights ago (the night: the UTC day of `ingested_at`,
  as the read snapshot splits its parts),

is compressed to `.archive/<night>/<its path in the landing folder>.zst`: a plain zstd frame of the file's bytes
(`zstd -d` restores it), which `tamiyo ingest` reads like the original (same bytes, same hash, same rows).

Order of work, so that a kill at any point loses nothing: write the archive to a hidden temporary name in the
archive folder, fsync it, read it back and compare with the original, rename it into place, fsync the folder;
only then remove the original (if it is still the file that was read: same inode, size, mtime) and fsync the
landing folder. A kill before the rename leaves the landing folder as it was and a temporary file that the next
archival removes; a kill between the rename and the removal leaves both, and the next archival, finding an
archive with the same bytes, removes the original only. The archive folder is hidden, so ingesting the landing
folder never sees it; `tamiyo ingest --raw <landing>/.archive` ingests archives (a rebuild).

pyarrow (already a dependency, through polars and DuckDB's Arrow exchange) does the zstd; the format is the
standard one, independent of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ARCHIVE_FOLDER = ".archive"
SUFFIX = ".zst"
SOURCE_SUFFIXES = (".jsonl", ".json")  # what a landing folder holds: raw runs and legacy JSON episodes
# zstd level 13 (measured on 25-step arena runs, one core): 4.57x at 5.6 MB/s, against 3.92x at 25 MB/s for
# level 9 and 4.74x at 3.9 MB/s for 15. An archive is written once and rarely read (decompression is as fast
# at any level), and a night's ~340 MB then takes about a minute: 13 MB less disk per night than level 9.
DEFAULT_LEVEL = 13


class ArchiveError(RuntimeError):
    """An archived file that cannot be read back (not zstd, or damaged)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """What stays at full size where. `archive_raw_after_nights`: None keeps raw files in the landing folder
    for ever (the default: archival is asked for); 0 archives a file as soon as its runs are stored; N keeps
    it N nights. Nothing is ever deleted: the warehouse keeps every run, step, decision and layer row, and the
    archive keeps every byte of every file."""

    archive_raw_after_nights: int | None = None
    compression_level: int = DEFAULT_LEVEL

    def __post_init__(self) -> None:
        if self.archive_raw_after_nights is not None and self.archive_raw_after_nights < 0:
            raise ValueError(f"archive_raw_after_nights must be 0 or more (or None: never), got {self.archive_raw_after_nights}")
        if not 1 <= self.compression_level <= 22:
            raise ValueError(f"compression_level must be 1..22 (zstd), got {self.compression_level}")


@dataclass
class ArchiveSummary:
    archived: list[tuple[Path, Path]] = field(default_factory=list)  # (original, archive)
    bytes_in: int = 0
    bytes_out: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # reason -> files left in the landing folder

    def keep(self, reason: str) -> None:
        self.kept[reason] = self.kept.get(reason, 0) + 1

    def line(self) -> str:
        ratio = f" ({self.bytes_in / 1e6:.1f} MB -> {self.bytes_out / 1e6:.1f} MB, {self.bytes_in / self.bytes_out:.1f}x)" if self.bytes_out else ""
        kept = ", ".join(f"{n} {why}" for why, n in sorted(self.kept.items()))
        return f"archived {len(self.archived)} raw files{ratio}" + (f"; kept in the landing folder: {kept}" if kept else "")


def archive_dir(raw_dir: str | Path) -> Path:
    return Path(raw_dir) / ARCHIVE_FOLDER


def is_archive(path: Path) -> bool:
    return path.name.endswith(SUFFIX)


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=level).compress(data, asbytes=True)


def decompress(data: bytes, where: str | Path = "") -> bytes:
    import pyarrow as pa

    try:
        return pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(f"{where}: not a readable zstd archive ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def read_source(path: Path) -> bytes:
    """A landing file's bytes; an archive's original bytes."""
    data = path.read_bytes()
    return decompress(data, path) if is_archive(path) else data


def discover(folder: str | Path) -> list[Path]:
    """Candidate source files under a folder (recursive), archives included; hidden names (partial raw runs,
    the archive folder) skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no landing folder at {folder}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and (p.suffix in SOURCE_SUFFIXES or (p.suffix == SUFFIX and Path(p.stem).suffix in SOURCE_SUFFIXES))
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def archivable(con, keep_nights: int, today: str | None = None) -> dict[str, str]:
    """SHA-256 -> night of the files whose every run is stored, with nothing quarantined, for `keep_nights`
    nights or more (`today`: YYYY-MM-DD, default the warehouse's clock, the one `ingested_at` comes from)."""
    if today is None:
        today = con.execute("SELECT strftime(current_timestamp::TIMESTAMP, '%Y-%m-%d')").fetchone()[0]
    rows = con.execute(
        "SELECT source_sha256, strftime(min(ingested_at), '%Y-%m-%d') AS night FROM runs "
        "WHERE source_sha256 NOT IN (SELECT source_sha256 FROM quarantine) GROUP BY 1 "
        "HAVING date_diff('day', CAST(night AS DATE), CAST(? AS DATE)) >= ?",
        [today, keep_nights],
    ).fetchall()
    return dict(rows)


def archive_landing(raw_dir: str | Path, eligible: dict[str, str], level: int = DEFAULT_LEVEL) -> ArchiveSummary:
    """Move the landing files whose bytes are in `eligible` (see `archivable`) into the archive; see the module
    docstring for the order that makes a kill harmless. One archival at a time per landing folder (a lock)."""
    raw_dir = Path(raw_dir)
    root = archive_dir(raw_dir)
    root.mkdir(exist_ok=True)
    summary = ArchiveSummary()
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in root.rglob(".*.tmp"):  # a killed archival's temporary file: never renamed, never needed
            stale.unlink(missing_ok=True)
        for path in discover(raw_dir):
            if is_archive(path):  # the landing folder given was an archive (a rebuild): archives stay as they are
                summary.keep("already archives")
                continue
            before = path.stat()
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            night = eligible.get(sha)
            if night is None:
                summary.keep("not yet stored, quarantined or within the retention")
                continue
            target = root / night / f"{path.relative_to(raw_dir)}{SUFFIX}"
            if target.exists() and _holds(target, data) is False:  # another version of the file, same night
                target = target.with_name(f"{target.name[: -len(SUFFIX)]}.{sha[:12]}{SUFFIX}")
            if not target.exists() or not _holds(target, data):
                packed = compress(data, level)
                if decompress(packed, target) != data:  # never remove an original on the word of an unread archive
                    raise ArchiveError(f"{path}: its compressed copy does not read back identically; nothing removed")
                _write_durably(target, packed)
            after = path.stat()
            if (after.st_ino, after.st_size, after.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
                summary.keep("changed while being archived")  # the new content is ingested, then archived, later
                continue
            path.unlink()
            _fsync(path.parent)
            summary.archived.append((path, target))
            summary.bytes_in += len(data)
            summary.bytes_out += target.stat().st_size
    return summary


def _holds(archive: Path, data: bytes) -> bool | None:
    """Whether an existing archive holds exactly these bytes (None: it exists but cannot be read)."""
    try:
        return decompress(archive.read_bytes(), archive) == data
    except (OSError, ArchiveError):
        return None


def _write_durably(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(target.parent)


def _fsync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
