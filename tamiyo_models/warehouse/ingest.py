"""Ingestion: source files in a landing folder become episode tables, in one transaction per batch.

For each file: hash it; skip it when that exact content was already stored or quarantined (re-ingestion is a
no-op); recognise its format from the content (raw run, legacy episode, legacy pack); parse it into units
(runs); validate the batch's frames with the pandera schemas; store the good runs and quarantine the bad ones
whole, with every record's original text and the reason. A changed file with the same run id replaces the
stored run inside the same transaction; the same run id arriving from another file with other content is a
conflict and goes to quarantine. An exception anywhere in a batch rolls the whole batch back.

Parsing (JSON, type checks, features, typed frames) is a pure function of a file's bytes (`parse_file`), so
above `IngestConfig.pool_min_files` files it runs in worker processes while this process validates and writes
the previous batch (DuckDB allows one writer). Results come back in file order, so the stored rows, the
quarantine and the log do not depend on which worker finished first.

Raw files are only ever read here; archival (archive.py) moves stored ones away afterwards, and archives
(`.jsonl.zst`) are read as the bytes they hold.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import duckdb
import numpy as np
import polars as pl

from . import schemas
from .archive import ArchiveError, ArchiveSummary, RetentionPolicy, archivable, archive_landing, discover, read_source
from .sniff import parse_file, parse_source
from .tables import ALL_TABLES, EPISODE_TABLES, PROVENANCE
from .units import PARSER_VERSION, ParsedFile, Problem, Unit



@dataclass(frozen=True)
class IngestConfig:
    batch_files: int = 200  # files per transaction: bounds memory, and a crash loses at most one batch of work
    validate: bool = True  # False only for the benchmark's "no validation" comparison
    # Parser processes; 0: every available CPU but one, at most 8 (see default_workers); 1: parse in this process.
    workers: int = 0
    # Below this many files to parse, parse in this process: starting the workers (a forkserver, then each
    # worker importing polars and the parser) costs about a second, more than parsing a few files.
    pool_min_files: int = 24
    # Parse again every file in quarantine, whatever parser quarantined it (a file quarantined by an older
    # parser version is always parsed again).
    retry_quarantined: bool = False


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
    non_finite: int = 0  # NaN/Infinity literals stored as NULL (legacy files)
    non_finite_unexpected: int = 0  # of those, all but the reference's first-step loss_delta = Infinity
    first_unexpected: str = ""  # where the first unexpected one was, for the warning
    retried: bool = False  # it was in quarantine and was parsed again


@dataclass
class IngestSummary:
    ingest_id: str
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    parsed_in_workers: int = 0  # files whose parse came from a worker process (the rest: this process)
    archive: ArchiveSummary | None = None  # what archival moved out of the landing folder afterwards, if asked

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

    @property
    def non_finite(self) -> int:
        return sum(f.non_finite for f in self.files)

    @property
    def non_finite_unexpected(self) -> int:
        return sum(f.non_finite_unexpected for f in self.files)

    @property
    def all_quarantined(self) -> bool:
        """Every file this ingestion had to read was quarantined: nothing new could be stored."""
        read = [f for f in self.files if f.outcome != "unchanged"]
        return bool(read) and all(f.outcome == "quarantined" for f in read)

    def non_finite_line(self) -> str:
        if not self.non_finite:
            return ""
        expected = self.non_finite - self.non_finite_unexpected
        return (
            f"{self.non_finite} non-finite values (NaN/Infinity) stored as NULL, literals in non_finite_values: "
            f"{expected} expected (first-step loss_delta), {self.non_finite_unexpected} unexpected"
        )

    def line(self) -> str:
        outcomes = Counter(f.outcome for f in self.files)
        parts = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "no files"
        non_finite = f"; {self.non_finite_line()}" if self.non_finite else ""
        return (
            f"{len(self.files)} files: {parts}; {self.runs_loaded} runs and {self.steps_loaded} steps stored, "
            f"{self.records_quarantined} records quarantined{non_finite} ({self.seconds:.2f} s)"
        )


def ingest_folder(
    raw_dir: str | Path,
    warehouse: str | Path,
    config: IngestConfig = IngestConfig(),
    progress: Callable[[int, int, Path], None] | None = None,
    retention: RetentionPolicy = RetentionPolicy(),
) -> IngestSummary:
    """Ingest a landing folder, publish the warehouse's read snapshot (see store.writing), then archive the
    landing files the retention policy lets go (archive.py; only once the publication succeeded)."""
    from .store import writing

    paths = discover(raw_dir)
    with writing(warehouse) as con:
        summary = ingest_files(con, paths, config, progress)
        eligible = archivable(con, retention.archive_raw_after_nights) if retention.archive_raw_after_nights is not None else None
    if eligible is not None:
        summary.archive = archive_landing(raw_dir, eligible, retention.compression_level)
    return summary


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
    batches = [paths[start : start + config.batch_files] for start in range(0, len(paths), config.batch_files)]
    with _Parser(config) as parser:
        # Files whose content was stored before this ingestion are not sent to the parsers (re-ingestion stays
        # a quick no-op); each batch still decides "unchanged" against the warehouse as it is when it runs.
        known_before = set(_known_sources(con, config.retry_quarantined))
        ahead = parser.read(batches[0], known_before) if batches else []
        done = 0
        for number, batch in enumerate(batches):
            current = ahead
            if number + 1 < len(batches):  # the next batch parses in the workers while this one is written
                ahead = parser.read(batches[number + 1], known_before)
            summary.files.extend(_ingest_batch(con, current, summary.ingest_id, config, parser))
            done += len(batch)
            if progress:
                progress(done, len(paths), batch[-1])
        summary.parsed_in_workers = parser.parsed_in_workers
    summary.seconds = time.perf_counter() - started
    return summary


def default_workers() -> int:
    """Parser processes for a large ingestion: every CPU but the one this process needs to validate and write.

    With 2 CPUs that is 1, i.e. parse in this process: measured on the 2-vCPU development VM, 2 workers made
    ingestion slower (benchmarks/bench_ingest.py), because the pool adds work (the forkserver importing the
    parser, bytes and frames crossing processes) and the writer competes with both workers for the 2 CPUs.
    """
    return max(1, min(len(os.sched_getaffinity(0)) - 1, 8))


class _Parser:
    """Reads and hashes files in this process; parses them here or, for large ingestions, in worker processes.

    A feeder thread hands the files to the pool in order, because the first hand-over blocks until the
    forkserver has imported the parser (polars, the feature schema): about a second on a cold start.
    Meanwhile `parsed` parses here every file no worker has been given, so nobody waits for the start-up.
    Either way a file's result is `parse_file(bytes)`: who parsed it does not change what is stored.
    """

    def __init__(self, config: IngestConfig):
        self.workers = config.workers or default_workers()
        self.min_files = config.pool_min_files
        self.pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # guards _Pending.claim between the feeder and this thread
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._feeder: threading.Thread | None = None
        self._closing = False
        self.parsed_in_workers = 0

    def __enter__(self) -> "_Parser":
        return self

    def __exit__(self, *exc) -> None:
        if self._feeder is not None:
            self._closing = True
            self._queue.put(None)
            self._feeder.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def read(self, paths: list[Path], known: set[str]) -> list["_Pending"]:
        items = []
        for path in paths:
            try:  # an archive (.zst) is read as the original bytes: same hash, same rows
                data, unreadable = read_source(path), None
            except ArchiveError as exc:
                data, unreadable = path.read_bytes(), Problem("file", "archive", str(exc))
            items.append(_Pending(path, data, hashlib.sha256(data).hexdigest(), FileOutcome(str(path), "", None, []),
                                 unreadable=unreadable))  # fmt: skip
        todo = [item for item in items if item.sha256 not in known and item.unreadable is None]
        if self.pool is None and self.workers > 1 and len(todo) >= self.min_files:
            # forkserver, not fork: the caller (a Dagster process, a test run) may hold threads (polars, DuckDB,
            # torch) that a forked child would inherit in a locked state. The server imports the parser once;
            # each worker is then forked from it ready to parse.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["tamiyo_models.warehouse.sniff"])
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            self._feeder = threading.Thread(target=self._feed, name="tamiyo-ingest-feeder", daemon=True)
            self._feeder.start()
        if self.pool is not None:
            for item in todo:
                self._queue.put(item)
        return items

    def _feed(self) -> None:
        try:
            self.pool.submit(int)  # starts the forkserver and the first worker: the slow part, claims no file
        except BaseException:  # a pool that cannot start: the files' own submissions below report why
            pass
        while (item := self._queue.get()) is not None:
            with self._lock:
                if item.claim is not None or self._closing:
                    continue
                item.claim = "pool"
            try:
                item.future = self.pool.submit(parse_file, item.data)
            except BaseException as exc:  # a broken pool: raised where the result is awaited
                item.error = exc
            finally:
                item.submitted.set()

    def skip(self, item: "_Pending") -> None:
        """The file turned out to be known when its batch ran (an earlier batch stored the same bytes)."""
        with self._lock:
            if item.claim is None:
                item.claim = "skipped"
                return
        if item.claim == "pool":
            item.submitted.wait()
            if item.future is not None:
                item.future.cancel()

    def parsed(self, item: "_Pending") -> ParsedFile:
        if item.unreadable is not None:
            return ParsedFile("unknown", [], [item.unreadable])
        with self._lock:
            if item.claim is None:
                item.claim = "here"
        if item.claim == "here":  # small ingestion, content known when read, or no worker has it yet
            return parse_file(item.data)
        item.submitted.wait()
        if item.error is not None:
            raise item.error
        if item.future.cancel():  # still queued, no worker has started it: parsing it now beats waiting
            return parse_file(item.data)
        try:
            result = item.future.result()
        except Exception:  # noqa: BLE001 - a worker that died on this file: parse it here, where it is caught
            return parse_file(item.data)
        self.parsed_in_workers += 1
        return result


@dataclass
class _Pending:
    path: Path
    data: bytes
    sha256: str
    outcome: FileOutcome
    parsed: ParsedFile | None = None
    claim: str | None = None  # who parses it: "here" or "pool" (set once, under _Parser._lock)
    submitted: threading.Event = field(default_factory=threading.Event)  # set once `future` or `error` is there
    future: Future | None = None
    error: BaseException | None = None
    units: list[tuple[int, Unit]] = field(default_factory=list)  # (batch unit id, unit)
    reparsed: ParsedFile | None = None  # only when a cleanly parsed run must be quarantined after all
    unreadable: Problem | None = None  # an archive that does not decompress: quarantined whole, with why

    @property
    def size(self) -> int:
        return len(self.data)

    def records(self, unit: Unit) -> list[tuple[str, int | None, str]]:
        """The original texts of a unit's records, parsing the file again if they were dropped."""
        if not unit.records_dropped:
            return unit.records
        index = next(k for k, u in enumerate(self.parsed.units) if u is unit)
        if self.reparsed is None:
            self.reparsed = parse_source(self.data)  # the same bytes, so the same units in the same order
        return self.reparsed.units[index].records


def _ingest_batch(
    con, pending: list[_Pending], ingest_id: str, config: IngestConfig, parser: _Parser
) -> list[FileOutcome]:
    known_sources = _known_sources(con, config.retry_quarantined)
    stale = _retried_sources(con, config.retry_quarantined)
    stored = _stored_runs(con)
    units: dict[int, tuple[_Pending, Unit]] = {}
    for item in pending:
        if item.sha256 in known_sources:
            item.outcome.outcome = "unchanged"
            item.outcome.message = f"same content already ingested ({known_sources[item.sha256]})"
            parser.skip(item)
            continue
        item.outcome.retried = item.sha256 in stale
        item.parsed = parser.parsed(item)
        item.outcome.source_format = item.parsed.source_format
        for unit in item.parsed.units:
            uid = len(units)
            units[uid] = (item, unit)
            item.units.append((uid, unit))
            if unit.run_id:
                item.outcome.run_ids.append(unit.run_id)
    failed: dict[int, list[Problem]] = {uid: list(u.problems) for uid, (_, u) in units.items() if u.frames is None}
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
            quarantine_rows += _file_quarantine(item, ingest_id, data=item.data)
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
            "parser_version": PARSER_VERSION,
            "non_finite_values": item.outcome.non_finite,
            "non_finite_unexpected": item.outcome.non_finite_unexpected,
        }
        for item in pending
    ]
    retried = sorted({item.sha256 for item in pending if item.outcome.retried})
    _write(con, frames, replaced, quarantine_rows, log_rows, retried)
    for item in pending:  # the batch is stored: let its bytes and frames go before the next one is built
        item.data, item.parsed, item.future, item.reparsed = b"", None, None, None
    return outcomes


def _known_sources(con, retry_quarantined: bool = False) -> dict[str, str]:
    """Content hashes already stored or quarantined, with where they are (for the log message); a file with
    records quarantined by an older parser (or by any, with `retry_quarantined`) is not known: it is parsed
    again, so a parser fix reaches the files it used to refuse."""
    rows = con.execute(
        "SELECT source_sha256, 'stored from ' || any_value(source_file) FROM runs GROUP BY 1 "
        "UNION ALL SELECT source_sha256, 'quarantined from ' || any_value(source_file) FROM quarantine GROUP BY 1"
    ).fetchall()
    stale = _retried_sources(con, retry_quarantined)
    return {sha: where for sha, where in rows if sha not in stale}


def _retried_sources(con, retry_quarantined: bool) -> set[str]:
    """Files in quarantine that this ingestion parses again when it sees them."""
    if retry_quarantined:
        rows = con.execute("SELECT DISTINCT source_sha256 FROM quarantine").fetchall()
    else:
        rows = con.execute(
            "SELECT DISTINCT source_sha256 FROM quarantine WHERE parser_version IS DISTINCT FROM ?", [PARSER_VERSION]
        ).fetchall()
    return {sha for (sha,) in rows}


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
    """The batch's good runs, one frame per table, rows in unit order; `_unit` says which run a row is from."""
    frames = {}
    for table, columns in EPISODE_TABLES.items():
        parts = [units[uid][1].frames[table] for uid in good]
        if not parts:
            frames[table] = pl.DataFrame(schema={**columns, **PROVENANCE})
            continue
        frame = pl.concat(parts, how="vertical", rechunk=True)
        unit_ids = np.repeat(np.asarray(good, dtype=np.int64), [part.height for part in parts])
        frame = frame.with_columns(pl.Series("_unit", unit_ids, dtype=pl.Int64))
        if table == "runs":  # where the run came from: known here, not to the parser of its bytes
            owners = [units[uid] for uid, part in zip(good, parts) for _ in range(part.height)]
            frame = frame.with_columns(
                pl.Series("source_file", [str(item.path) for item, _ in owners], dtype=pl.String),
                pl.Series("source_sha256", [item.sha256 for item, _ in owners], dtype=pl.String),
                pl.Series("content_sha256", [unit.content_sha256 for _, unit in owners], dtype=pl.String),
            )
        frames[table] = frame
    return frames


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
        sequences: dict[int, str] = {}
        for case in cases.iter_rows(named=True):
            column = case["column"] if case["column"] != schemas.SCHEMAS[table].name else None
            where = f"{table}.{column}" if column else table
            reason = f"{where}: check {case['check']} failed" + (
                f" for value {str(case['failure_case'])[:200]!r}" if case["failure_case"] is not None else ""
            )
            if table == "steps" and case["check"] in ("consecutive_steps", "unique_run_step") and case["index"] is not None:
                # The failing row alone says nothing; what is missing or repeated in the run does.
                uid = int(units[int(case["index"])])
                if uid not in sequences:
                    sequences[uid] = sequence_gaps(frame.filter(pl.col("_unit") == uid))
                reason = f"{where}: {sequences[uid]}"
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


def sequence_gaps(steps: pl.DataFrame) -> str:
    """What breaks a run's step/epoch sequence, in words: "epoch 5 missing, epoch 9 twice"."""
    parts = []
    for column in ("epoch", "step"):
        values = steps[column].to_list()
        counts = Counter(values)
        # From the gaps between the values present, never from range(min, max): a corrupt epoch of 9e15 must
        # cost what a correct one does.
        present = sorted(v for v in counts if v is not None)
        missing, n_missing = [], 0
        for low, high in zip(present, present[1:]):
            n_missing += high - low - 1
            missing += range(low + 1, high)[: 5 - len(missing)]  # a range slices lazily
        parts += [f"{column} {v} missing" for v in missing] + ([f"{n_missing - 5} more missing"] if n_missing > 5 else [])
        repeated = sorted(v for v, n in counts.items() if n > 1)
        words = {2: "twice", 3: "three times"}
        parts += [f"{column} {v} {words.get(counts[v], f'{counts[v]} times')}" for v in repeated[:5]]
        if parts:  # epochs first: they are what the source files number; steps only when epochs are fine
            break
    if not parts:
        out_of_order = [str(v) for v in steps["epoch"].to_list()]
        return "epochs out of order: " + ", ".join(out_of_order[:12])
    return ", ".join(parts)


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
            "parser_version": PARSER_VERSION,
        }
        for p in item.parsed.problems
    ]


def _unit_quarantine(item: _Pending, unit: Unit, problems: list[Problem], ingest_id: str) -> list[dict]:
    """Every record of a failed run goes to quarantine: the failing ones with their reasons, the rest
    marked `run_quarantined` (a run is stored whole or not at all)."""
    records = item.records(unit)
    texts = {position: text for position, _, text in records}
    lines = {position: line for position, line, _ in records}
    base = {
        "ingest_id": ingest_id,
        "source_file": str(item.path),
        "source_sha256": item.sha256,
        "source_format": unit.source_format,
        "run_id": unit.run_id,
        "parser_version": PARSER_VERSION,
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
        for position, line, text in records
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
        for _, unit in stored_units:
            values = unit.frames["non_finite_values"]
            unexpected = values.filter(~pl.col("expected"))
            out.non_finite += values.height
            out.non_finite_unexpected += unexpected.height
            if unexpected.height and not out.first_unexpected:
                first = unexpected.row(0, named=True)
                out.first_unexpected = f"{first['position']}.{first['field']} = {first['raw_text']}"
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
        if out.retried:
            out.message = "; ".join(filter(None, ["parsed again (it was in quarantine, from an older parser or on request)", out.message]))
    return [item.outcome for item in pending]


def _write(con, frames, replaced, quarantine_rows, log_rows, retried=()) -> None:
    """One transaction: replace, insert, quarantine, log. Any exception leaves the warehouse as it was.
    A file parsed again loses its old quarantine rows here: whatever still fails was quarantined again."""
    con.execute("BEGIN TRANSACTION")
    try:
        if retried:
            con.execute("DELETE FROM quarantine WHERE source_sha256 IN (SELECT unnest(?::VARCHAR[]))", [list(retried)])
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
