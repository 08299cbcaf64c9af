"""What parsing a source file produces: runs as rows per table, and problems with where and why.

A *unit* is one run: a raw run file, or one legacy episode (a pack holds many). A unit is stored whole or
quarantined whole: a run with a broken step never lands with a hole in it. Parsing checks structure and types
(a wrong type cannot even become a typed column); the pandera schemas (`schemas.py`) then check the content
of the typed frames, and their failures are traced back to units through the `_unit`/`_position` columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# A free-text field longer than this is refused (rule `max_length`): the ingestion of a runaway string
# (a whole traceback, a repeated buffer) should not bloat every query of the steps table.
MAX_TEXT_CHARS = 10_000
# A record (a raw run's line, a legacy decision, telemetry entry or episode head) larger than this is refused
# before it is parsed when that can be seen from the bytes (rule `line_too_long` / `record_too_large`), else
# after: real step lines are ~10 KB, real legacy decisions ~2 KB. Without it one runaway field (a 50 MB string)
# made ingestion hold gigabytes just to reject it.
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = MAX_RECORD_BYTES
# JSON nesting deeper than this is refused (rule `depth`). Real records nest ~8 levels (pack, episode,
# telemetry entry, gradient stats, percentiles); the stdlib parser would otherwise recurse until Python's own
# limit and raise RecursionError, which is not a JSON error and used to crash the whole batch.
MAX_JSON_DEPTH = 64
# Parsing rules change; a file quarantined by an older parser is tried again by a newer one (ingest.py). Bump
# this whenever a change to the parsers can turn a quarantined file into a stored one.
PARSER_VERSION = 2


@dataclass
class Problem:
    """Why a record (or a whole file) goes to quarantine."""

    position: str  # "line 5", "decisions[3]", "episodes[2].decisions[0]", "file"
    rule: str  # short rule name: strict_json, required, type, in_range, unknown_action, ...
    reason: str
    field: str | None = None
    line: int | None = None


class RecordError(ValueError):
    """Raised by the field readers; the parser turns it into a Problem at the record's position."""

    def __init__(self, field: str | None, rule: str, reason: str):
        super().__init__(reason)
        self.field, self.rule, self.reason = field, rule, reason


@dataclass
class Unit:
    """One run parsed from a source: its rows per table (None when parsing failed) and its records' texts."""

    source_format: str
    run_id: str | None
    rows: dict[str, list[dict]] | None
    # (position, line, original text) of every record of the run. Ingestion drops them from a run that parsed
    # cleanly (they are only needed to quarantine it, and parsing them again from the same bytes is cheaper
    # than carrying every line's text between processes) and sets `records_dropped`.
    records: list[tuple[str, int | None, str]]
    problems: list[Problem] = field(default_factory=list)
    content_sha256: str | None = None
    steps: int = 0
    # The rows as one typed polars frame per table (ingestion builds them from `rows`, then drops `rows`).
    frames: dict[str, Any] | None = None
    records_dropped: bool = False


@dataclass
class ParsedFile:
    source_format: str
    units: list[Unit]
    problems: list[Problem] = field(default_factory=list)  # file-level: empty, unreadable, unknown format


_MISSING = object()


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when a parsed JSON value nests containers more than `limit` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


def depth_problem(position: str, line: int | None = None) -> Problem:
    return Problem(position, "depth", f"JSON nested more than {MAX_JSON_DEPTH} levels deep", line=line)


def get(obj: dict, key: str, path: str, kind: str, *, nullable: bool = False, finite: bool = True,
        optional: bool = False) -> Any:  # fmt: skip
    """Read `obj[key]` as `kind` ("int", "number", "str", "bool", "object", "list"), or raise RecordError.
    `finite=False` lets a non-finite number through (legacy files, which store it as NULL and keep its text).
    `optional`: a field that older files lack; missing reads as None (present, it is checked as usual)."""
    name = f"{path}.{key}" if path else key
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        if optional:
            return None
        raise RecordError(name, "required", f"field {name!r} is missing")
    if value is None:
        if nullable:
            return None
        raise RecordError(name, "not_null", f"field {name!r} is null")
    if kind == "number":
        if isinstance(value, float):
            if finite and not math.isfinite(value):
                raise RecordError(name, "finite", f"field {name!r} is {value} (not a finite number)")
            return value
        if type(value) is int:
            return float(value)
    elif kind == "int":
        if type(value) is int:
            return value
    elif kind == "str":
        if type(value) is str:
            return value
    elif kind == "bool":
        if type(value) is bool:
            return value
    elif kind == "object":
        if type(value) is dict:
            return value
    elif kind == "list":
        if type(value) is list:
            return value
    raise RecordError(name, "type", f"field {name!r} should be {_KIND_WORDS[kind]}, got {json_type(value)}")


_KIND_WORDS = {
    "number": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "object": "a JSON object",
    "list": "a JSON list",
}


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a reason: "a JSON list", "a string", ..."""
    return {
        dict: "a JSON object",
        list: "a JSON list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)
