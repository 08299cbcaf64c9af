"""Recognise a source file's format from its content (never from its name) and parse it.

A landing folder may hold a mix: raw runs (`.jsonl`, a `tamiyo-raw-run` header on line 1), legacy reference
episodes (one JSON object with `decisions`) and legacy packs (`{metadata, episodes: [...]}`).

`parse_file` is what ingestion's worker processes run: this module imports only the parsers and polars (not
DuckDB or pandera), so a worker starts quickly.
"""

from __future__ import annotations

import gc

import polars as pl

from .legacy import parse_legacy
from .raw_runs import looks_like_raw_run, parse_raw_run
from .tables import EPISODE_TABLES, PROVENANCE
from .units import ParsedFile, Problem

UNKNOWN = "unknown"


def parse_source(data: bytes) -> ParsedFile:
    if not data.strip():
        return ParsedFile(UNKNOWN, [], [Problem("file", "empty", "empty file")])
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    # A first line that is a typed record ({"type": ...}) marks a raw run even when its header is broken,
    # so that the raw-run parser, which knows the format, explains what is wrong.
    if looks_like_raw_run(first_line) or first_line.replace(" ", "").startswith('{"type":'):
        return parse_raw_run(data)
    if data.lstrip()[:1] in (b"{", b"["):
        return parse_legacy(data)
    return ParsedFile(
        UNKNOWN,
        [],
        [
            Problem(
                "file",
                "unknown_format",
                "not a raw run (no tamiyo-raw-run header on line 1), a legacy episode or a legacy pack",
            )
        ],
    )


def parse_file(data: bytes) -> ParsedFile:
    """Parse one source file's bytes; each run that parsed cleanly gets its rows as typed frames, one per
    table, and loses its rows and record texts (see `Unit.records`). A pure function of the bytes: a worker
    process and this one give the same result."""
    # A file's parse allocates ~100,000 small dicts, lists and floats and keeps them until its frames are
    # built; the cyclic garbage collector would walk them again and again for nothing (they hold no cycles and
    # are freed by reference counting): pausing it made a 300-file ingestion ~10% faster.
    enabled = gc.isenabled()
    gc.disable()
    try:
        parsed = parse_source(data)
    except Exception as exc:  # noqa: BLE001 - whatever one file does to the parser is that file's quarantine
        return ParsedFile(UNKNOWN, [], [parser_failure(exc)])
    finally:
        if enabled:
            gc.enable()
    for unit in parsed.units:
        if unit.rows is not None:
            try:
                unit.frames = {
                    table: pl.from_dicts(unit.rows.get(table, []), schema={**columns, **PROVENANCE})
                    for table, columns in EPISODE_TABLES.items()
                }
            except Exception as exc:  # noqa: BLE001 - a value no column can hold (say, an integer beyond 64 bits)
                unit.rows, unit.frames = None, None
                unit.problems.append(Problem("file", "column_type", f"a value does not fit its column: {_short(exc)}"))
                continue
            unit.rows, unit.records, unit.records_dropped = None, [], True
    return parsed


def parser_failure(exc: BaseException) -> Problem:
    """A file that made the parser itself fail: quarantined whole, with what went wrong."""
    return Problem("file", "parser_error", f"the parser failed on this file: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:300]
