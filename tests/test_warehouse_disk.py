"""Disk use per table and per night, and compaction of the DuckDB file (tamiyo_models/warehouse/disk.py), on a
real warehouse of real raw runs: the report adds up, compaction gives free blocks back, and every question
answers the same before and after it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import pytest

from tamiyo_models.warehouse import RetentionPolicy, ingest_folder, query
from tamiyo_models.warehouse import cli
from tamiyo_models.warehouse.disk import compact, disk_report
from tamiyo_models.warehouse.store import SQL_DIR, connect_read_only, open_warehouse
from test_warehouse_helpers import copy_runs, generated_runs

# The README's five questions (docs/warehouse.md), and every saved query.
QUESTIONS = [
    "SELECT * FROM outcomes_by_controller ORDER BY ALL",
    "SELECT controller_kind, action_coarse, sum(share_pct) AS pct FROM action_distribution GROUP BY ALL ORDER BY ALL",
    "SELECT * FROM seed_success_rates ORDER BY ALL",
    "SELECT plateau_epochs, count(*) AS germinations FROM plateau_before_germination GROUP BY ALL ORDER BY 1",
    "SELECT * FROM reward_by_stage WHERE action_coarse = 'ADVANCE' ORDER BY ALL",
    "SELECT run_id, step, layer, norm, p50 FROM layer_gradients ORDER BY ALL",
] + [path.read_text() for path in sorted((SQL_DIR / "queries").glob("*.sql"))]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, Path]:
    landing = tmp_path_factory.mktemp("raw")
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated")), landing)
    warehouse = tmp_path_factory.mktemp("w") / "w.duckdb"
    ingest_folder(landing, warehouse)
    return landing, warehouse


def _answers(warehouse: Path) -> list:
    with connect_read_only(warehouse) as con:
        return [_rows(con.execute(q).fetchall()) for q in QUESTIONS]


def _rows(rows: list) -> list:
    return sorted(rows, key=repr)  # some saved queries order by a column with ties: the order within them is free


def test_the_report_covers_every_table_and_night_and_adds_up(stored):
    landing, warehouse = stored
    with connect_read_only(warehouse) as con:
        report = disk_report(warehouse, con, landing)
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in report.tables}
    assert {t: e["rows"] for t, e in report.tables.items()} == counts
    assert report.tables["layer_gradients"]["duckdb_bytes"] > 0 and report.tables["layer_gradients"]["snapshot_bytes"] > 0
    assert 0 < sum(e["duckdb_bytes"] for e in report.tables.values()) <= report.total_blocks * report.block_size
    assert report.duckdb_bytes == warehouse.stat().st_size
    (night, entry), = report.nights.items()
    assert entry["runs"] == 3 and entry["steps"] == counts["steps"]
    assert entry["landing_bytes"] == report.landing_bytes == sum(p.stat().st_size for p in landing.glob("*.jsonl"))
    assert 0 < entry["snapshot_bytes"] <= report.snapshot_bytes
    assert report.total_bytes == report.duckdb_bytes + report.snapshot_bytes + report.landing_bytes
    assert report.disk_free > 0


def test_the_report_follows_archival(tmp_path):
    landing = tmp_path / "raw"
    copy_runs(generated_runs(tmp_path / "generated"), landing)
    warehouse = tmp_path / "w.duckdb"
    before = sum(p.stat().st_size for p in landing.glob("*.jsonl"))
    ingest_folder(landing, warehouse, retention=RetentionPolicy(archive_raw_after_nights=0))
    report = disk_report(warehouse, None, landing)  # no connection: from the snapshot and the folders
    (night, entry), = report.nights.items()
    assert report.landing_bytes == 0 and 0 < report.archive_bytes == entry["archive_bytes"] < before / 2


def test_disk_command_prints_the_report(stored, capsys):
    landing, warehouse = stored
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["disk", "--warehouse", str(warehouse), "--raw", str(landing), "--format", "json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tables"]["steps"]["rows"] > 0 and len(report["nights"]) == 1
    args = parser.parse_args(["disk", "--warehouse", str(warehouse)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "layer_gradients" in out and "night" in out
    args = parser.parse_args(["disk", "--warehouse", str(warehouse.parent / "missing.duckdb")])
    assert args.func(args) == 2 and "no warehouse at" in capsys.readouterr().err


def test_compaction_gives_free_blocks_back_and_every_question_answers_the_same(tmp_path):
    landing = tmp_path / "raw"
    copy_runs(generated_runs(tmp_path / "generated"), landing)
    warehouse = tmp_path / "w.duckdb"
    # ~40 MB of rows that go away once the runs are stored after them: free blocks inside the file (DuckDB cuts
    # free blocks off the end itself), as replaced runs and deleted rows leave
    with open_warehouse(warehouse) as con:
        con.execute("CREATE TABLE scratch AS SELECT range AS i, random() AS x FROM range(3000000)")
    ingest_folder(landing, warehouse)
    with open_warehouse(warehouse) as con:
        con.execute("DROP TABLE scratch")
        con.execute("CHECKPOINT")
    answers, snapshot_answers = _answers(warehouse), [_rows(query(warehouse, q).rows()) for q in QUESTIONS]
    assert any(answers)
    size = warehouse.stat().st_size

    assert not compact(warehouse, min_free_share=1.0).done  # not worth it by that threshold: untouched
    assert warehouse.stat().st_size == size
    done = compact(warehouse)
    assert done.done and done.free_share > 0.5 and done.bytes_after < size / 3 == pytest.approx(done.bytes_before / 3)
    assert _answers(warehouse) == answers
    assert [_rows(query(warehouse, q).rows()) for q in QUESTIONS] == snapshot_answers
    assert not [p.name for p in tmp_path.iterdir() if "compact" in p.name or p.name.endswith(".wal")]  # no leftovers

    again = ingest_folder(landing, warehouse)  # the compacted file is a working warehouse
    assert {f.outcome for f in again.files} == {"unchanged"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scratch'").fetchone() == (0,)


def test_the_disk_warning_says_when_the_nights_ahead_would_not_fit(stored):
    landing, warehouse = stored
    with connect_read_only(warehouse) as con:
        report = disk_report(warehouse, con, landing)
    (night,) = report.nights
    size = report.night_bytes(night)
    assert 0 < size <= report.total_bytes
    assert report.disk_warning(min_free_bytes=0, nights_ahead=1) is None
    report.disk_free = 5 * size
    assert report.disk_warning(min_free_bytes=0, nights_ahead=5) is None
    warning = report.disk_warning(min_free_bytes=0, nights_ahead=6)
    assert warning and "6 nights" in warning and "--archive-after" in warning
    assert "at least" in report.disk_warning(min_free_bytes=report.disk_free + 1, nights_ahead=0)


def test_without_a_connection_a_night_still_counts_its_share_of_the_duckdb_file(stored):
    landing, warehouse = stored
    report = disk_report(warehouse, None, landing)  # what the Dagster check sees: no connection to the file
    (night,) = [n for n, e in report.nights.items() if e["snapshot_bytes"]]
    assert report.night_bytes(night) >= report.duckdb_bytes * 0.5  # the only night holds most of the file
