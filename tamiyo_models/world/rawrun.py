"""Raw telemetry runs: one JSON Lines file per episode, the landing format of the warehouse.

    line 1     {"type": "header", "format": "tamiyo-raw-run", "format_version": 1, "run_id", ...}
    lines 2..  {"type": "step", "step": t, "epoch": t-1, "observation": {...}, "action": {...}, "outcome": {...}}
    last line  {"type": "footer", "status": "complete" | "failed", "error", final metrics, "final_observation"}

Field by field: docs/raw-run-format.md. Strict JSON: NaN and infinities are written as null (the reference
wrote bare NaN/Infinity literals that strict parsers reject).

A run is written to a hidden `.<run_id>.jsonl.partial` and renamed to `<run_id>.jsonl` only after its
footer is written and flushed to disk, so a killed generator never leaves a file that looks complete.
Readers (and ingestion) ignore names starting with a dot.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

RAW_RUN_FORMAT = "tamiyo-raw-run"
RAW_RUN_FORMAT_VERSION = 1


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(record: dict) -> str:
    return json.dumps(_finite(record), allow_nan=False, separators=(",", ":"))


class RawRunWriter:
    def __init__(self, out_dir: str | Path, run_id: str):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.path = self.out_dir / f"{run_id}.jsonl"
        self.partial_path = self.out_dir / f".{run_id}.jsonl.partial"
        self._file = open(self.partial_path, "w", encoding="utf-8")

    def _write(self, record: dict) -> None:
        self._file.write(dumps(record) + "\n")

    def write_header(self, header: dict) -> None:
        self._write({"type": "header", "format": RAW_RUN_FORMAT, "format_version": RAW_RUN_FORMAT_VERSION, **header})

    def write_step(self, step: dict) -> None:
        self._write({"type": "step", **step})

    def close(self, footer: dict) -> Path:
        self._write({"type": "footer", **footer})
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial_path, self.path)
        return self.path


class RawRunError(ValueError):
    """A raw run that cannot be read, naming the file, the line and the field."""

    def __init__(self, path: Path, line: int | None, field: str | None, message: str):
        where = f"{path}" + (f", line {line}" if line else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field


@dataclass
class RawRun:
    path: Path
    header: dict
    steps: list[dict]
    footer: dict | None  # None: the generator died before writing it

    @property
    def run_id(self) -> str:
        return self.header["run_id"]


def iter_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RawRunError(path, number, None, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise RawRunError(path, number, None, f"expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_raw_run(path: str | Path) -> RawRun:
    """Read one raw run (structure only; the warehouse validates every field)."""
    path = Path(path)
    header, steps, footer = None, [], None
    for number, record in iter_lines(path):
        kind = record.get("type")
        if number == 1 or header is None:
            if kind != "header" or record.get("format") != RAW_RUN_FORMAT:
                raise RawRunError(path, number, "type", "the first line must be a tamiyo-raw-run header")
            if record.get("format_version") != RAW_RUN_FORMAT_VERSION:
                raise RawRunError(path, number, "format_version", f"unsupported version {record.get('format_version')!r}")
            header = record
        elif kind == "step":
            steps.append(record)
        elif kind == "footer":
            footer = record
        else:
            raise RawRunError(path, number, "type", f"unknown record type {kind!r}")
    if header is None:
        raise RawRunError(path, None, None, "empty file")
    return RawRun(path, header, steps, footer)


def list_raw_runs(folder: str | Path) -> list[Path]:
    """Complete raw run files in a folder (hidden partial files are skipped)."""
    return sorted(p for p in Path(folder).glob("*.jsonl") if not p.name.startswith("."))
