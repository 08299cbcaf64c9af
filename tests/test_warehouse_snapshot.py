"""The read snapshot: readers never wait for the writer and never stop it.

Real processes hold real locks here: a writer in another process keeps the warehouse in an open transaction
while `tamiyo sql` (a process of its own) answers from the snapshot; a reader process keeps a snapshot
connection open while this process ingests; a publishing process is killed half-way and the previous snapshot
stays complete. After every write the snapshot holds what the warehouse holds, table by table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tamiyo_models.warehouse import (
    SnapshotError,
    connect_read_only,
    current_snapshot,
    ingest_folder,
    publish_snapshot,
    snapshot_dir,
    table_counts,
    writing,
)
from tamiyo_models.warehouse.store import SQL_DIR, open_warehouse
from test_warehouse_helpers import copy_runs, generated_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    return generated_runs(tmp_path_factory.mktemp("generated"))


@pytest.fixture
def landing(tmp_path, runs) -> Path:
    """Three runs, then three copies under new run ids: two ingestions' worth."""
    folder = tmp_path / "raw"
    copy_runs(runs, folder)
    for path in runs:
        old = path.stem
        new = old[:-4] + "beef"
        (tmp_path / "later").mkdir(exist_ok=True)
        (tmp_path / "later" / f"{new}.jsonl").write_text(path.read_text().replace(old, new))
    return folder


def _add_later_runs(landing: Path) -> None:
    for path in (landing.parent / "later").iterdir():
        path.rename(landing / path.name)


def _snapshot_counts(warehouse: Path) -> dict[str, int]:
    """Row counts as a reader sees them: through the views file and, separately, the plain Parquet files."""
    snapshot = current_snapshot(warehouse)
    with snapshot.connect() as con:
        through_views = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in snapshot.counts}
    through_parquet = {t: pl.scan_parquet(snapshot.files(t)).select(pl.len()).collect().item() for t in snapshot.counts}
    assert through_views == through_parquet == snapshot.counts
    return through_views


def _live_counts(warehouse: Path) -> dict[str, int]:
    with connect_read_only(warehouse) as con:
        listing = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
        tables = [t for (t,) in listing]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _python(code: str) -> subprocess.Popen:
    """A separate Python process (its own DuckDB instance, so its locks are real file locks)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for(process: subprocess.Popen, word: str) -> str:
    line = process.stdout.readline()
    if word not in line:
        process.kill()
        raise AssertionError(f"expected {word!r} from the helper process, got {line!r}; {process.stderr.read()}")
    return line


def _tamiyo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tamiyo_models.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300)  # fmt: skip


def test_snapshot_equals_the_warehouse_after_every_write(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    assert _snapshot_counts(warehouse) == _live_counts(warehouse) and table_counts(warehouse)["runs"] == 3
    first = current_snapshot(warehouse)

    _add_later_runs(landing)
    ingest_folder(landing, warehouse)
    second = current_snapshot(warehouse)
    assert second.version != first.version
    assert _snapshot_counts(warehouse) == _live_counts(warehouse) and second.counts["runs"] == 6
    assert first.counts["runs"] == 3  # a published version never changes

    # Any writer's new table is published too (coverage results, policy tables), with its types.
    with writing(warehouse) as con:
        con.execute("CREATE TABLE policy_scores AS SELECT 'p1' AS policy, 0.5::DOUBLE AS score, ['a', 'b'] AS tags")
    assert _snapshot_counts(warehouse) == _live_counts(warehouse)
    with current_snapshot(warehouse).connect() as snap, connect_read_only(warehouse) as live:
        for table in current_snapshot(warehouse).counts:
            columns = f"SELECT column_name, column_type FROM (DESCRIBE \"{table}\")"
            assert snap.execute(columns).fetchall() == live.execute(columns).fetchall(), table
        # The warehouse's views and column comments answer the same way.
        for view in ("outcomes_by_controller", "transitions"):
            assert snap.execute(f"SELECT * FROM {view} ORDER BY ALL").fetchall() == live.execute(
                f"SELECT * FROM {view} ORDER BY ALL").fetchall()  # fmt: skip
        comment = "SELECT comment FROM duckdb_columns() WHERE table_name = 'steps' AND column_name = 'propensity'"
        assert snap.execute(comment).fetchone() == live.execute(comment).fetchone() != (None,)

    # A change made behind the tool's back (a hand edit) reaches readers at the next publication: the part
    # whose rows changed is written again, the others are the previous version's files (hard links).
    before = current_snapshot(warehouse)
    with writing(warehouse) as con:
        con.execute("UPDATE steps SET reward = 99.5 WHERE step = 1")
    after = current_snapshot(warehouse)
    with after.connect() as snap:
        assert snap.execute("SELECT count(*) FROM steps WHERE reward = 99.5").fetchone()[0] == 6
    assert os.stat(after.files("steps")[0]).st_ino != os.stat(before.files("steps")[0]).st_ino
    assert os.stat(after.files("observations")[0]).st_ino == os.stat(before.files("observations")[0]).st_ino


def test_sql_answers_from_the_snapshot_while_a_writer_holds_the_warehouse(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    writer = _python(
        "import sys\n"
        "from tamiyo_models.warehouse.store import open_warehouse\n"
        f"con = open_warehouse({str(warehouse)!r})\n"
        "con.execute('BEGIN TRANSACTION')\n"
        "con.execute(\"DELETE FROM episodes\")\n"  # uncommitted: nobody may see it
        "print('holding', flush=True)\n"
        "sys.stdin.readline()\n"
        "con.execute('ROLLBACK')\n"
    )
    try:
        _wait_for(writer, "holding")
        answer = _tamiyo("sql", "--warehouse", str(warehouse), "--format", "csv", "SELECT count(*) AS n FROM episodes")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout == "n\n3\n"
        assert f"snapshot {current_snapshot(warehouse).version}, published " in answer.stderr and "ago" in answer.stderr
        saved = _tamiyo("sql", "--warehouse", str(warehouse), "--file", str(SQL_DIR / "queries" / "best_episodes.sql"))
        assert saved.returncode == 0 and "(3 rows)" in saved.stdout, saved.stderr

        live = _tamiyo("sql", "--warehouse", str(warehouse), "--live", "SELECT count(*) FROM episodes")
        assert live.returncode == 3 and "being written by another process" in live.stderr
    finally:
        writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0, writer.stderr
    # The writer is gone: --live reads the file itself again.
    live = _tamiyo("sql", "--warehouse", str(warehouse), "--live", "--format", "csv", "SELECT count(*) AS n FROM runs")
    assert live.returncode == 0 and live.stdout == "n\n3\n" and "live:" in live.stderr


def test_a_reader_holding_a_snapshot_connection_does_not_stop_an_ingest(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    reader = _python(
        "import sys\n"
        "from tamiyo_models.warehouse import connect_snapshot\n"
        f"con = connect_snapshot({str(warehouse)!r})\n"
        "print('runs', con.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True)\n"
        "sys.stdin.readline()\n"
        "print('runs', con.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True)\n"
    )
    try:
        assert _wait_for(reader, "runs").split() == ["runs", "3"]
        _add_later_runs(landing)
        summary = ingest_folder(landing, warehouse)  # would raise if the reader's connection blocked the file
        assert summary.count("loaded") == 3 and current_snapshot(warehouse).counts["runs"] == 6
        # The notebook's open connection still answers, from the version it opened (consistent, not mixed).
        reader.stdin.write("again\n")
        reader.stdin.flush()
        assert _wait_for(reader, "runs").split() == ["runs", "3"]
    finally:
        reader.communicate(timeout=60)
    assert reader.returncode == 0, reader.stderr

    # What the snapshot avoids: a reader of the writer's file itself does make the ingestion fail.
    live_reader = _python(
        "import sys, duckdb\n"
        f"con = duckdb.connect({str(warehouse)!r}, read_only=True)\n"
        "print('holding', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    try:
        _wait_for(live_reader, "holding")
        with pytest.raises(duckdb.IOException, match="connect_snapshot"):
            ingest_folder(landing, warehouse)
    finally:
        live_reader.communicate("done\n", timeout=60)


def _assert_complete(warehouse: Path, expected: dict[str, int]) -> None:
    """The current version is whole: every file it lists is there and holds the rows its manifest says."""
    snapshot = current_snapshot(warehouse)
    for table, entry in snapshot.manifest["tables"].items():
        for part in entry["parts"].values():
            files = [snapshot.path / f for f in part["files"]]
            assert pl.scan_parquet(files).select(pl.len()).collect().item() == part["rows"], table
    assert _snapshot_counts(warehouse) == expected
    answer = _tamiyo("sql", "--warehouse", str(warehouse), "--format", "json", "SELECT count(*) AS n FROM steps")
    assert answer.returncode == 0 and json.loads(answer.stdout) == [{"n": expected["steps"]}]


def test_a_publication_that_raises_half_way_leaves_the_previous_snapshot(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    published = current_snapshot(warehouse)
    expected = _snapshot_counts(warehouse)

    def fail_after_three(table: str, done: int, total: int) -> None:
        if done == 3:
            raise OSError("disk full (simulated)")

    with open_warehouse(warehouse) as con:
        con.execute("DELETE FROM quarantine")  # any committed change, so a new version would differ
        con.execute("INSERT INTO episodes (run_id, status, steps) VALUES ('extra', 'complete', 1)")
        with pytest.raises(SnapshotError, match="disk full.*readers still see v-"):
            publish_snapshot(con, warehouse, progress=fail_after_three)
    assert current_snapshot(warehouse).version == published.version
    assert sorted(p.name for p in snapshot_dir(warehouse).iterdir() if p.name.startswith("v-")) == [published.version]
    _assert_complete(warehouse, expected)


def test_a_publisher_killed_half_way_leaves_the_previous_snapshot(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    published = current_snapshot(warehouse)
    expected = _snapshot_counts(warehouse)

    _add_later_runs(landing)
    publisher = _python(
        "import os, signal\n"
        "from tamiyo_models.warehouse import discover, ingest_files, publish_snapshot\n"
        "from tamiyo_models.warehouse.store import open_warehouse\n"
        "def die(table, done, total):\n"
        "    if done == 4:\n"
        "        print('dying after', table, flush=True)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"con = open_warehouse({str(warehouse)!r})\n"
        f"ingest_files(con, discover({str(landing)!r}))\n"
        f"publish_snapshot(con, {str(warehouse)!r}, progress=die)\n"
    )
    out, err = publisher.communicate(timeout=300)
    assert publisher.returncode == -signal.SIGKILL and "dying after" in out, err
    # Its half-built version is on disk, but `current` never pointed at it.
    versions = [p for p in snapshot_dir(warehouse).iterdir() if p.name.startswith("v-")]
    leftovers = [p for p in versions if p.name != published.version]
    assert len(leftovers) == 1 and not (leftovers[0] / "manifest.json").exists()
    assert current_snapshot(warehouse).version == published.version
    _assert_complete(warehouse, expected)

    # The killed process had committed its ingestion: the next write publishes it and clears the leftover.
    assert ingest_folder(landing, warehouse).count("unchanged") == 6
    assert _snapshot_counts(warehouse) == _live_counts(warehouse) and current_snapshot(warehouse).counts["runs"] == 6
    assert not leftovers[0].exists()


def test_old_versions_stay_while_recent_and_go_later(landing, tmp_path, monkeypatch):
    from tamiyo_models.warehouse import snapshot as snapshot_module

    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    versions = [current_snapshot(warehouse).version]
    for _ in range(4):
        with writing(warehouse):
            pass
        versions.append(current_snapshot(warehouse).version)
    on_disk = sorted(p.name for p in snapshot_dir(warehouse).iterdir() if p.name.startswith("v-"))
    assert on_disk == sorted(versions)  # all superseded just now: within the grace period
    monkeypatch.setattr(snapshot_module, "GRACE_SECONDS", 0.0)
    with writing(warehouse):
        pass
    on_disk = sorted(p.name for p in snapshot_dir(warehouse).iterdir() if p.name.startswith("v-"))
    assert len(on_disk) == snapshot_module.KEEP_VERSIONS and current_snapshot(warehouse).version == on_disk[-1]
    assert os.readlink(snapshot_dir(warehouse) / "current") == on_disk[-1]  # relative: the folder can move


def test_sql_without_a_snapshot_says_how_to_get_one(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    open_warehouse(warehouse).close()  # a warehouse from before snapshots: never published
    answer = _tamiyo("sql", "--warehouse", str(warehouse), "SELECT 1")
    assert answer.returncode == 2 and "no read snapshot" in answer.stderr and "tamiyo ingest" in answer.stderr
