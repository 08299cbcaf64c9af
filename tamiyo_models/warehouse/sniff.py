"""Recognise a source file's format from its content (never from its name) and parse it.

A landing folder may hold a mix: raw runs (`.jsonl`, a `tamiyo-raw-run` header on line 1), legacy reference
episodes (one JSON object with `decisions`) and legacy packs (`{metadata, episodes: [...]}`).
"""

from __future__ import annotations

from .legacy import parse_legacy
from .raw_runs import looks_like_raw_run, parse_raw_run
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
