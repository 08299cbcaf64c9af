"""Parsing in worker processes stores exactly what parsing in one process stores, row for row and in the same
order; orjson parses what the stdlib parses, and the lines it rejects still get the stdlib's verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tamiyo_models.warehouse import IngestConfig, connect_read_only, ingest_folder
from tamiyo_models.warehouse.raw_runs import _loads, parse_raw_run
from test_warehouse_helpers import generated_runs
from test_warehouse_ingest import BAD_INPUTS
from test_warehouse_legacy import _episode, _write

TABLES = (
    "runs", "branches", "episodes", "steps", "observations", "layer_gradients", "lifecycle_events", "quarantine",
    "ingest_log",
)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    return generated_runs(tmp_path_factory.mktemp("generated"))


def _mixed_landing(runs: list[Path], folder: Path) -> Path:
    """Copies of the real runs under new run ids, a few corrupted ones of each kind of fault, a legacy file."""
    folder.mkdir()
    for i in range(9):
        source = runs[i % len(runs)]
        new_id = f"run-copy{i:012x}"
        (folder / f"{new_id}.jsonl").write_text(source.read_text().replace(source.stem, new_id))
    for i, case in enumerate(("truncated file", "NaN literal", "accuracy above 100", "duplicate step", "empty file")):
        path = folder / f"bad-{i}.jsonl"
        shutil.copy(runs[i % len(runs)], path)
        path.write_text(path.read_text().replace(runs[i % len(runs)].stem, f"run-bad{i:013x}"))
        BAD_INPUTS[case][0](path)
    shutil.copy(folder / "run-copy000000000000.jsonl", folder / "same-bytes-elsewhere.jsonl")
    _write(folder / "episode_0001.json", _episode(1, [40.0, 50.0, 55.0, 56.0]))
    return folder


def _tables(warehouse: Path) -> dict[str, list[tuple]]:
    """Every table in insertion order, without the columns that differ between ingestions by design (the
    ingestion's id and the clock)."""
    with connect_read_only(warehouse) as con:
        out = {}
        for table in TABLES:
            columns = [
                name
                for name, dtype in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                    [table],
                ).fetchall()
                if name != "ingest_id" and not dtype.startswith("TIMESTAMP")
            ]
            quoted = ", ".join(f'"{c}"' for c in columns)
            out[table] = con.execute(f"SELECT {quoted} FROM {table}").fetchall()
        return out


def test_worker_processes_store_exactly_what_one_process_stores(runs, tmp_path):
    landing = _mixed_landing(runs, tmp_path / "raw")
    # Small batches, so the pool parses the next batch while the first is written, and a pool for 4 files.
    serial = ingest_folder(landing, tmp_path / "serial.duckdb", IngestConfig(workers=1, batch_files=4))
    pooled_config = IngestConfig(workers=2, batch_files=4, pool_min_files=1)
    # The first pool of a process waits for the forkserver (seconds), and meanwhile this process parses the
    # files itself; once the server runs, workers start at once and take their share.
    ingest_folder(landing, tmp_path / "warm-up.duckdb", pooled_config)
    pooled = ingest_folder(landing, tmp_path / "pooled.duckdb", pooled_config)
    assert serial.parsed_in_workers == 0 and pooled.parsed_in_workers > 0

    def outcomes(summary):
        return [(f.source_file, f.outcome, f.run_ids, f.steps_loaded, f.records_quarantined, f.message) for f in summary.files]

    assert outcomes(pooled) == outcomes(serial)
    assert {f.outcome for f in serial.files} >= {"loaded", "quarantined", "unchanged"}
    serial_tables, pooled_tables = _tables(tmp_path / "serial.duckdb"), _tables(tmp_path / "pooled.duckdb")
    for table in TABLES:
        assert pooled_tables[table] == serial_tables[table], table
    assert serial_tables["steps"] and serial_tables["quarantine"]
    # A run that parsed cleanly but failed a pandera rule is quarantined with every line's original text,
    # recovered by parsing its file again (the workers do not send the texts back).
    bad = landing / "bad-2.jsonl"
    with connect_read_only(tmp_path / "pooled.duckdb") as con:
        texts = {t for (t,) in con.execute("SELECT original_text FROM quarantine WHERE source_file = ?", [str(bad)]).fetchall()}
    assert texts == {line for line in bad.read_text().splitlines() if line.strip()}

    again = ingest_folder(landing, tmp_path / "pooled.duckdb", IngestConfig(workers=2, pool_min_files=1))
    assert {f.outcome for f in again.files} == {"unchanged"}


def test_orjson_reads_every_line_as_the_stdlib_does(runs):
    for path in runs:
        for raw in path.read_bytes().splitlines():
            assert _loads(raw, raw.decode()) == json.loads(raw)


@pytest.mark.parametrize(
    "line, rule, reason",
    [
        ('{"a": 1} x', "json", "not valid JSON (Extra data at column 10)"),
        ('{"a": [1, 2,]}', "json", "not valid JSON (Expecting value at column 13)"),
        ('{"a": NaN}', "strict_json", "bare NaN literal"),
        ('{"a": -Infinity}', "strict_json", "bare -Infinity literal"),
    ],
)
def test_lines_orjson_rejects_get_the_stdlib_verdict(runs, line, rule, reason):
    lines = runs[0].read_text().splitlines()
    data = "\n".join([lines[0], line, *lines[1:]]).encode()
    problems = parse_raw_run(data).units[0].problems
    assert [(p.position, p.rule) for p in problems][:1] == [("line 2", rule)]
    assert problems[0].reason.startswith(reason)


def test_a_number_beyond_float_range_is_refused_as_not_finite(runs):
    # orjson refuses 1e400; the stdlib reads it as infinity, which the field reader refuses by name.
    lines = runs[0].read_text().splitlines()
    assert '"reward":' in lines[2]
    lines[2] = lines[2].replace('"reward":', '"reward":1e400,"was":', 1)
    problems = parse_raw_run("\n".join(lines).encode()).units[0].problems
    assert [(p.position, p.rule, p.field) for p in problems] == [("line 3", "finite", "outcome.reward")]
