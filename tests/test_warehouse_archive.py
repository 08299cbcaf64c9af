"""Archival of the landing folder (tamiyo_models/warehouse/archive.py) with real raw runs and a real DuckDB
file: archives hold the files bit for bit and ingest to the same rows; a killed archival or ingestion loses
nothing; only stored, unquarantined files older than the retention go; a damaged archive is quarantined."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tamiyo_models.warehouse import RetentionPolicy, archivable, archive_landing, connect_read_only, ingest_folder
from tamiyo_models.warehouse import archive as archive_module
from tamiyo_models.warehouse import ingest as ingest_module
from tamiyo_models.warehouse.archive import archive_dir, compress, decompress
from test_warehouse_helpers import copy_runs, generated_runs, read_lines, write_lines

TABLES = ("runs", "episodes", "steps", "observations", "layer_gradients", "lifecycle_events")


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> list[Path]:
    return generated_runs(tmp_path_factory.mktemp("generated"))


@pytest.fixture
def landing(tmp_path, runs) -> Path:
    folder = tmp_path / "raw"
    copy_runs(runs[:2], folder)
    copy_runs(runs[2:], folder / "night-b")  # a subfolder: its path is kept inside the archive
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (hidden ones too), by relative path: the landing folder exactly."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _rows(warehouse: Path) -> dict[str, list]:
    with connect_read_only(warehouse) as con:
        return {
            t: con.execute(
                f"SELECT * EXCLUDE (ingested_at, source_file) FROM {t} ORDER BY ALL" if t == "runs" else f"SELECT * FROM {t} ORDER BY ALL"
            ).fetchall()
            for t in TABLES
        }


def test_archives_hold_the_files_bit_for_bit_and_ingest_to_the_same_rows(landing, tmp_path):
    originals = _files(landing)
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(landing, warehouse, retention=RetentionPolicy(archive_raw_after_nights=0))
    assert summary.count("loaded") == 3 and len(summary.archive.archived) == 3
    assert summary.archive.bytes_out < summary.archive.bytes_in / 2  # compressed, not copied

    archives = archive_dir(landing)
    assert [p for p in landing.rglob("*.jsonl")] == []  # the landing folder is empty of raw runs
    with connect_read_only(warehouse) as con:
        night = con.execute("SELECT DISTINCT strftime(ingested_at, '%Y-%m-%d') FROM runs").fetchall()
    assert len(night) == 1
    for relative, data in originals.items():
        packed = archives / night[0][0] / f"{relative}.zst"
        assert decompress(packed.read_bytes()) == data  # bit for bit
        assert hashlib.sha256(decompress(packed.read_bytes())).hexdigest() == hashlib.sha256(data).hexdigest()

    # Retention moved files, never rows: every decision of every raw file is in the warehouse.
    decisions = {(r[0]["run_id"], step["step"]) for r in (_records(d) for d in originals.values())
                 for step in r if step.get("type") == "step"}  # fmt: skip
    with connect_read_only(warehouse) as con:
        assert set(con.execute("SELECT run_id, step FROM steps").fetchall()) == decisions and len(decisions) > 20

    rebuilt = tmp_path / "rebuilt.duckdb"
    again = ingest_folder(archives, rebuilt)  # a warehouse rebuilt from the archive alone
    assert again.count("loaded") == 3 and again.records_quarantined == 0
    assert _rows(rebuilt) == _rows(warehouse)
    # The archive read into the warehouse it came from: the same bytes, so nothing new.
    assert {f.outcome for f in ingest_folder(archives, warehouse).files} == {"unchanged"}


def test_retention_keeps_files_for_their_nights_and_never_takes_a_quarantined_or_unstored_one(landing, tmp_path, runs):
    warehouse = tmp_path / "w.duckdb"
    records = read_lines(runs[0])
    write_lines(landing / "broken.jsonl", records[:-1])  # no footer: quarantined
    summary = ingest_folder(landing, warehouse, retention=RetentionPolicy(archive_raw_after_nights=1))
    assert summary.archive.archived == []  # stored tonight, kept one night
    with connect_read_only(warehouse) as con:
        today = con.execute("SELECT strftime(max(ingested_at), '%Y-%m-%d') FROM runs").fetchone()[0]
        tomorrow = con.execute("SELECT strftime(max(ingested_at) + INTERVAL 1 DAY, '%Y-%m-%d') FROM runs").fetchone()[0]
        assert archivable(con, 1, today=today) == {}
        eligible = archivable(con, 1, today=tomorrow)
        stored = {sha for (sha,) in con.execute("SELECT source_sha256 FROM runs").fetchall()}
    assert set(eligible) == stored and len(stored) == 3

    unstored = landing / "late.jsonl"  # landed after the ingestion: not in the warehouse yet
    shutil.copy(runs[1], unstored)
    with unstored.open("ab") as handle:
        handle.write(b"\n")  # other bytes, so another hash
    result = archive_landing(landing, eligible)
    assert len(result.archived) == 3
    assert sorted(p.name for p in landing.rglob("*.jsonl")) == ["broken.jsonl", "late.jsonl"]
    assert sum(result.kept.values()) == 2


class Killed(BaseException):
    """What SIGKILL looks like from inside: nothing after it runs (no `except Exception` catches it)."""


def test_an_archival_killed_before_its_rename_leaves_the_landing_folder_as_it_was(landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    before = _files(landing)
    with connect_read_only(warehouse) as con:
        eligible = archivable(con, 0)

    def killed_replace(source, target):
        raise Killed()

    monkeypatch.setattr(archive_module.os, "replace", killed_replace)
    with pytest.raises(Killed):
        archive_landing(landing, eligible)
    after = {k: v for k, v in _files(landing).items() if not k.startswith(".archive/.lock")}
    assert after == before  # no original touched, no temporary file left behind

    monkeypatch.undo()
    stale = archive_dir(landing) / "2026-01-01" / ".run.jsonl.zst.0badc0de.tmp"  # what a SIGKILL would leave
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an archive")
    result = archive_landing(landing, eligible)  # the next archival completes
    assert len(result.archived) == 3 and not list(landing.rglob("*.jsonl"))
    assert not stale.exists()


def test_an_archival_killed_between_rename_and_removal_loses_nothing_and_is_finished_later(landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    originals = _files(landing)
    with connect_read_only(warehouse) as con:
        eligible = archivable(con, 0)
    real_replace = os.replace
    calls = []

    def replace_then_die(source, target):
        real_replace(source, target)
        calls.append(target)
        if len(calls) == 2:
            raise Killed()

    monkeypatch.setattr(archive_module.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        archive_landing(landing, eligible)
    monkeypatch.undo()
    # The second file is in the archive and still in the landing folder: both whole.
    remaining = {k: v for k, v in _files(landing).items() if not k.startswith(".archive")}
    archived = {str(p.relative_to(archive_dir(landing))).split("/", 1)[1][: -len(".zst")]: decompress(p.read_bytes())
                for p in archive_dir(landing).rglob("*.zst")}  # fmt: skip
    assert len(remaining) == 2 and len(archived) == 2
    assert {**archived, **remaining} == originals

    result = archive_landing(landing, eligible)
    assert len(result.archived) == 2 and not list(landing.rglob("*.jsonl"))
    archived = {str(p.relative_to(archive_dir(landing))).split("/", 1)[1][: -len(".zst")]: decompress(p.read_bytes())
                for p in archive_dir(landing).rglob("*.zst")}  # fmt: skip
    assert archived == originals  # each file once, bit for bit


def test_a_killed_ingestion_archives_nothing_and_leaves_the_landing_folder_as_it_was(landing, tmp_path, monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    before = _files(landing)

    def killed_write(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(ingest_module, "_write", killed_write)
    with pytest.raises(Killed):
        ingest_folder(landing, warehouse, retention=RetentionPolicy(archive_raw_after_nights=0))
    assert _files(landing) == before
    monkeypatch.undo()
    summary = ingest_folder(landing, warehouse, retention=RetentionPolicy(archive_raw_after_nights=0))
    assert summary.count("loaded") == 3 and len(summary.archive.archived) == 3


def test_a_damaged_archive_is_quarantined_with_its_file_named(tmp_path, runs):
    folder = tmp_path / "archive"
    folder.mkdir()
    good = folder / f"{runs[0].name}.zst"
    good.write_bytes(compress(runs[0].read_bytes()))
    damaged = folder / f"{runs[1].name}.zst"
    damaged.write_bytes(compress(runs[1].read_bytes())[:-200])  # cut short
    summary = ingest_folder(folder, tmp_path / "w.duckdb")
    outcomes = {Path(f.source_file).name: f for f in summary.files}
    assert outcomes[good.name].outcome == "loaded"
    assert outcomes[damaged.name].outcome == "quarantined"
    assert str(damaged) in outcomes[damaged.name].message and "archive" in outcomes[damaged.name].message
    with connect_read_only(tmp_path / "w.duckdb") as con:
        rows = con.execute("SELECT source_file, rule FROM quarantine").fetchall()
    assert rows == [(str(damaged), "archive")]


def test_retention_policy_refuses_nonsense():
    with pytest.raises(ValueError, match="archive_raw_after_nights"):
        RetentionPolicy(archive_raw_after_nights=-1)
    with pytest.raises(ValueError, match="compression_level"):
        RetentionPolicy(archive_raw_after_nights=0, compression_level=40)


def test_ingest_command_archives_on_request(landing, tmp_path, capsys):
    from tamiyo_models.cli import main

    warehouse = tmp_path / "w.duckdb"
    assert main(["ingest", "--raw", str(landing), "--warehouse", str(warehouse), "--quiet", "--archive-after", "-1"]) == 2
    assert "archive_raw_after_nights must be 0 or more" in capsys.readouterr().err
    assert main(["ingest", "--raw", str(landing), "--warehouse", str(warehouse), "--quiet"]) == 0
    assert "archived" not in capsys.readouterr().out and len(list(landing.rglob("*.jsonl"))) == 3
    assert main(["ingest", "--raw", str(landing), "--warehouse", str(warehouse), "--quiet", "--archive-after", "0"]) == 0
    out = capsys.readouterr().out
    assert "archived 3 raw files" in out and "x)" in out and not list(landing.rglob("*.jsonl"))
