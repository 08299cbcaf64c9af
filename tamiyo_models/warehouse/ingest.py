"""Ingestion: source files in a landing folder become episode tables, in one transaction per batch.

For each file: hash it; skip it when that exact content was already stored or quarantined (re-ingestion is a
no-op); recognise its format from the content (raw run, legacy episode, legacy pack); parse it into units
(runs); validate the batch's frames with the pandera schemas; store the good runs and quarantine the bad ones
whole, with every record's original text and the reason. A changed file with the same run id replaces the
stored run inside the same transaction; the same run id arriving from another file with other content is a
conflict and goes to quarantine. An exception anywhere in a batch rolls the whole batch back.

Raw files are only ever read.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import duckdb
import polars as pl

from . import schemas
from .sniff import parse_source
from .tables import ALL_TABLES, EPISODE_TABLES, PROVENANCE
from .units import ParsedFile, Problem, Unit

SOURCE_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class IngestConfig:
    batch_files: int = 200  # files per transaction: bounds memory, and a crash loses at most one batch of work
    validate: bool = True  # False only for the benchmark's "no validation" comparison


@dataclass
class FileOutcome:
    source_file: str
    outcome: str  # loaded | replaced | unchanged | quarantined | partly_quarantined
    source_format: str | None
    run_ids: list[str]
    runs_loaded: int = 0
    steps_loaded: int = 0
    records_quarantined: int = 0
    message: str = ""


@dataclass
class IngestSummary:
    ingest_id: str
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def runs_loaded(self) -> int:
        return sum(f.runs_loaded for f in self.files)

    @property
    def steps_loaded(self) -> int:
        return sum(f.steps_loaded for f in self.files)

    @property
    def records_quarantined(self) -> int:
        return sum(f.records_quarantined for f in self.files)

    def line(self) -> str:
        outcomes = Counter(f.outcome for f in self.files)
        parts = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "no files"
        return (
            f"{len(self.files)} files: {parts}; {self.runs_loaded} runs and {self.steps_loaded} steps stored, "
            f"{self.records_quarantined} records quarantined ({self.seconds:.2f} s)"
        )


def discover(folder: str | Path) -> list[Path]:
    """Candidate source files under a folder (recursive), hidden names (partial raw runs) skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no landing folder at {folder}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in SOURCE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def ingest_folder(
    raw_dir: str | Path,
    warehouse: str | Path,
    config: IngestConfig = IngestConfig(),
    progress: Callable[[int, int, Path], None] | None = None,
) -> IngestSummary:
    from .store import open_warehouse

    with open_warehouse(warehouse) as con:
        return ingest_files(con, discover(raw_dir), config, progress)


def ingest_files(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[Path],
    config: IngestConfig = IngestConfig(),
    progress: Callable[[int, int, Path], None] | None = None,
) -> IngestSummary:
    """Ingest files into an open warehouse connection (tables must exist: see store.open_warehouse)."""
    started = time.perf_counter()
    paths = list(paths)
    summary = IngestSummary(ingest_id=uuid.uuid4().hex[:16])
    for start in range(0, len(paths), config.batch_files):
        batch = paths[start : start + config.batch_files]
        summary.files.extend(_ingest_batch(con, batch, summary.ingest_id, config))
        if progress:
            progress(start + len(batch), len(paths), batch[-1])
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Pending:
    path: Path
    sha256: str
    size: int
    parsed: ParsedFile | None
    outcome: FileOutcome
    units: list[tuple[int, Unit]] = field(default_factory=list)  # (batch unit id, unit)


def _ingest_batch(con, paths: list[Path], ingest_id: str, config: IngestConfig) -> list[FileOutcome]:
    known_sources = _known_sources(con)
    stored = _stored_runs(con)
    pending: list[_Pending] = []
    units: dict[int, tuple[_Pending, Unit]] = {}
    for path in paths:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        item = _Pending(path, sha, len(data), None, FileOutcome(str(path), "", None, []))
        pending.append(item)
        if sha in known_sources:
            item.outcome.outcome = "unchanged"
            item.outcome.message = f"same content already ingested ({known_sources[sha]})"
            continue
        item.parsed = parse_source(data)
        item.outcome.source_format = item.parsed.source_format
        for unit in item.parsed.units:
            uid = len(units)
            units[uid] = (item, unit)
            item.units.append((uid, unit))
            if unit.run_id:
                item.outcome.run_ids.append(unit.run_id)
    failed: dict[int, list[Problem]] = {uid: list(u.problems) for uid, (_, u) in units.items() if u.rows is None}
    replaced: set[str] = set()
    unchanged_units: set[int] = set()
    _resolve_run_ids(units, stored, failed, replaced, unchanged_units)

    good = [uid for uid in units if uid not in failed and uid not in unchanged_units]
    frames = _frames(units, good)
    if config.validate:
        for uid, problems in _validate(frames).items():
            failed.setdefault(uid, []).extend(problems)
        if failed:
            keep = pl.Series([uid for uid in good if uid not in failed], dtype=pl.Int64)
            frames = {t: f.filter(pl.col("_unit").is_in(keep.implode())) for t, f in frames.items()}

    quarantine_rows = []
    for item in pending:
        if item.parsed is not None and item.parsed.problems:
            quarantine_rows += _file_quarantine(item, ingest_id, data=item.path.read_bytes())
    for uid, problems in failed.items():
        item, unit = units[uid]
        quarantine_rows += _unit_quarantine(item, unit, problems, ingest_id)
    outcomes = _outcomes(pending, failed, replaced, unchanged_units, quarantine_rows)
    log_rows = [
        {
            "ingest_id": ingest_id,
            "source_file": item.outcome.source_file,
            "source_sha256": item.sha256,
            "size_bytes": item.size,
            "source_format": item.outcome.source_format,
            "outcome": item.outcome.outcome,
            "run_ids": item.outcome.run_ids,
            "runs_loaded": item.outcome.runs_loaded,
            "steps_loaded": item.outcome.steps_loaded,
            "records_quarantined": item.outcome.records_quarantined,
            "message": item.outcome.message,
        }
        for item in pending
    ]
    _write(con, frames, replaced, quarantine_rows, log_rows)
    return outcomes


def _known_sources(con) -> dict[str, str]:
    """Content hashes already stored or quarantined, with where they are (for the log message)."""
    rows = con.execute(
        "SELECT source_sha256, 'stored from ' || any_value(source_file) FROM runs GROUP BY 1 "
        "UNION ALL SELECT source_sha256, 'quarantined from ' || any_value(source_file) FROM quarantine GROUP BY 1"
    ).fetchall()
    return dict(rows)


def _stored_runs(con) -> dict[str, tuple[str, str]]:
    return {r: (f, c) for r, f, c in con.execute("SELECT run_id, source_file, content_sha256 FROM runs").fetchall()}


def _resolve_run_ids(units, stored, failed, replaced, unchanged_units) -> None:
    """Decide, per parsed run, whether it is new, a replacement, already stored, or a run id conflict."""
    by_run: dict[str, list[int]] = {}
    for uid, (item, unit) in units.items():
        if uid not in failed and unit.run_id:
            by_run.setdefault(unit.run_id, []).append(uid)
    for run_id, uids in by_run.items():
        contents = {units[uid][1].content_sha256 for uid in uids}
        if len(contents) > 1:
            files = sorted({str(units[uid][0].path) for uid in uids})
            for uid in uids:
                failed.setdefault(uid, []).append(
                    Problem("file", "duplicate_run_id", f"run id {run_id} arrives with different content from {files}", "run_id")
                )
            continue
        for extra in uids[1:]:  # the same run twice in one batch (a copy): store it once
            unchanged_units.add(extra)
        uid = uids[0]
        item, unit = units[uid]
        if run_id not in stored:
            continue
        stored_file, stored_content = stored[run_id]
        if stored_content == unit.content_sha256:
            unchanged_units.add(uid)
        elif stored_file == str(item.path):
            replaced.add(run_id)
        else:
            failed.setdefault(uid, []).append(
                Problem(
                    "file",
                    "duplicate_run_id",
                    f"run id {run_id} is already stored from {stored_file} with different content",
                    "run_id",
                )
            )


def _frames(units: dict[int, tuple[_Pending, Unit]], good: list[int]) -> dict[str, pl.DataFrame]:
    rows: dict[str, list[dict]] = {t: [] for t in EPISODE_TABLES}
    for uid in good:
        item, unit = units[uid]
        for table, table_rows in unit.rows.items():
            for row in table_rows:
                row["_unit"] = uid
            rows[table].extend(table_rows)
        for run in unit.rows["runs"]:
            run["source_file"] = str(item.path)
            run["source_sha256"] = item.sha256
            run["content_sha256"] = unit.content_sha256
    return {
        table: pl.from_dicts(rows[table], schema={**columns, **PROVENANCE})
        for table, columns in EPISODE_TABLES.items()
    }


def _validate(frames: dict[str, pl.DataFrame]) -> dict[int, list[Problem]]:
    """Run the pandera schemas over the batch; map each failure case back to its unit and position."""
    problems: dict[int, list[Problem]] = {}
    for table, frame in frames.items():
        if frame.is_empty():
            continue
        cases = schemas.failure_cases(table, frame)
        if cases.is_empty():
            continue
        units, positions = frame["_unit"], frame["_position"]
        for case in cases.iter_rows(named=True):
            column = case["column"] if case["column"] != schemas.SCHEMAS[table].name else None
            where = f"{table}.{column}" if column else table
            reason = f"{where}: check {case['check']} failed" + (
                f" for value {str(case['failure_case'])[:200]!r}" if case["failure_case"] is not None else ""
            )
            if case["index"] is None:  # a whole-frame failure (should not happen with typed frames): all units
                for uid in units.unique().to_list():
                    problems.setdefault(uid, []).append(Problem("file", _rule(case["check"]), reason, column))
                continue
            index = int(case["index"])
            position = positions[index]
            line = int(position.split()[-1]) if position and position.startswith("line ") else None
            problems.setdefault(int(units[index]), []).append(
                Problem(position, _rule(case["check"]), reason, column, line)
            )
    return problems


def _rule(check: str) -> str:
    return str(check).split("(")[0]


def _file_quarantine(item: _Pending, ingest_id: str, data: bytes) -> list[dict]:
    return [
        {
            "ingest_id": ingest_id,
            "source_file": str(item.path),
            "source_sha256": item.sha256,
            "source_format": item.parsed.source_format,
            "position": p.position,
            "line": p.line,
            "run_id": None,
            "field": p.field,
            "rule": p.rule,
            "reason": p.reason,
            "original_text": data.decode("utf-8", errors="backslashreplace"),
        }
        for p in item.parsed.problems
    ]


def _unit_quarantine(item: _Pending, unit: Unit, problems: list[Problem], ingest_id: str) -> list[dict]:
    """Every record of a failed run goes to quarantine: the failing ones with their reasons, the rest
    marked `run_quarantined` (a run is stored whole or not at all)."""
    texts = {position: text for position, _, text in unit.records}
    lines = {position: line for position, line, _ in unit.records}
    base = {
        "ingest_id": ingest_id,
        "source_file": str(item.path),
        "source_sha256": item.sha256,
        "source_format": unit.source_format,
        "run_id": unit.run_id,
    }
    rows = [
        {
            **base,
            "position": p.position,
            "line": p.line if p.line is not None else lines.get(p.position),
            "field": p.field,
            "rule": p.rule,
            "reason": p.reason,
            "original_text": texts.get(p.position),
        }
        for p in problems
    ]
    failing = {p.position for p in problems}
    first = problems[0]
    because = f"quarantined with its run: {first.position}: {first.reason}"
    rows += [
        {**base, "position": position, "line": line, "field": None, "rule": "run_quarantined", "reason": because,
         "original_text": text}
        for position, line, text in unit.records
        if position not in failing
    ]  # fmt: skip
    return rows


def _outcomes(pending, failed, replaced, unchanged_units, quarantine_rows) -> list[FileOutcome]:
    quarantined_per_file = Counter(r["source_file"] for r in quarantine_rows)
    for item in pending:
        out = item.outcome
        if out.outcome == "unchanged":
            continue
        out.records_quarantined = quarantined_per_file.get(str(item.path), 0)
        stored_units = [(uid, u) for uid, u in item.units if uid not in failed and uid not in unchanged_units]
        out.runs_loaded = len(stored_units)
        out.steps_loaded = sum(u.steps for _, u in stored_units)
        bad = [uid for uid, _ in item.units if uid in failed]
        if item.parsed.problems or (bad and not stored_units):
            out.outcome = "quarantined"
            reasons = item.parsed.problems or failed[bad[0]]
            out.message = f"{reasons[0].position}: {reasons[0].rule}: {reasons[0].reason}"
        elif bad:
            out.outcome = "partly_quarantined"
            out.message = f"{len(bad)} of {len(item.units)} runs quarantined"
        elif not stored_units:
            out.outcome = "unchanged"
            out.message = "every run in it is already stored with the same content"
        elif any(u.run_id in replaced for _, u in stored_units):
            out.outcome = "replaced"
            out.message = "new content for a stored run id: the old version was replaced"
        else:
            out.outcome = "loaded"
    return [item.outcome for item in pending]


def _write(con, frames, replaced, quarantine_rows, log_rows) -> None:
    """One transaction: replace, insert, quarantine, log. Any exception leaves the warehouse as it was."""
    con.execute("BEGIN TRANSACTION")
    try:
        if replaced:
            ids = sorted(replaced)
            for table in reversed(list(EPISODE_TABLES)):
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
        for table, frame in frames.items():
            insert_frame(con, table, frame.drop(list(PROVENANCE)))
        if quarantine_rows:
            insert_frame(con, "quarantine", pl.from_dicts(quarantine_rows, schema=ALL_TABLES["quarantine"]))
        insert_frame(con, "ingest_log", pl.from_dicts(log_rows, schema=ALL_TABLES["ingest_log"]))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def insert_frame(con, table: str, frame: pl.DataFrame) -> None:
    if frame.is_empty():
        return
    con.register("_incoming", frame.to_arrow())
    try:
        con.execute(f'INSERT INTO {table} BY NAME SELECT * FROM _incoming')
    finally:
        con.unregister("_incoming")
