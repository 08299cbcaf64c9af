"""Bad input, one kind per test: each file is stored or quarantined with file, record and field, the others in
the batch still land, and what the warehouse already held is intact. Legacy files have the real shape
(legacy_fixtures.py). docs/warehouse.md lists these kinds with the test that shows each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import legacy_fixtures as L
from tamiyo_models.warehouse import connect_read_only, ingest_folder
from tamiyo_models.warehouse.ingest import IngestConfig
from tamiyo_models.warehouse.units import MAX_JSON_DEPTH, MAX_RECORD_BYTES, PARSER_VERSION

ROOT = Path(__file__).resolve().parents[1]


def _rows(warehouse: Path, sql: str, params=()) -> list[tuple]:
    with connect_read_only(warehouse) as con:
        return con.execute(sql, list(params)).fetchall()


def _outcomes(summary) -> dict[str, str]:
    return {Path(f.source_file).name: f.outcome for f in summary.files}


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tamiyo_models.cli", *argv], capture_output=True, text=True,
                          cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)  # fmt: skip


@pytest.fixture
def good(tmp_path) -> Path:
    folder = tmp_path / "raw"
    L.write(folder / "episode_0001.json", L.episode(1, [40.0, 50.0, 55.0, 56.0]))
    return folder


def test_real_history_names_and_the_old_ones_both_load(tmp_path):
    folder = tmp_path / "raw"
    L.write(folder / "real.json", L.episode(1, [40.0, 50.0, 55.0]))
    old = L.episode(2, [41.0, 51.0, 56.0])
    for d in old["decisions"]:
        obs = d["observation"]
        obs["loss_history"], obs["accuracy_history"] = obs.pop("loss_history_5"), obs.pop("accuracy_history_5")
    L.write(folder / "old_names.json", old)
    missing = L.episode(3, [42.0, 52.0])
    del missing["decisions"][1]["observation"]["accuracy_history_5"]
    L.write(folder / "missing.json", missing)
    summary = ingest_folder(folder, tmp_path / "w.duckdb")
    assert _outcomes(summary) == {"real.json": "loaded", "old_names.json": "loaded", "missing.json": "quarantined"}
    (field, reason), = _rows(tmp_path / "w.duckdb", "SELECT field, reason FROM quarantine WHERE rule = 'required'")
    assert field == "observation.accuracy_history_5" and "accuracy_history_5" in reason and "accuracy_history'" in reason
    history = _rows(tmp_path / "w.duckdb", "SELECT accuracy_history_3, accuracy_history_4 FROM observations o "
                    "JOIN runs USING (run_id) WHERE source_file LIKE '%real.json' AND step = 2")  # fmt: skip
    assert history == [(40.0, 50.0)]  # left-padded to 5, oldest first


def test_legacy_runs_are_heuristic_everywhere_and_get_lifecycle_events(tmp_path):
    folder = tmp_path / "raw"
    L.write(folder / "culled.json", L.episode(1, [40.0, 50.0, 55.0, 56.0], story="germinate-cull"))
    L.write(folder / "fossilized.json", L.episode(2, [30.0, 40.0, 45.0, 47.0, 50.0, 52.0], v2=True, story="germinate-fossilize"))
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(folder, warehouse)
    assert _rows(warehouse, "SELECT DISTINCT controller_kind, controller_name FROM runs") == [("heuristic", "reference-heuristic")]
    for view in ("action_distribution", "episode_summary", "outcomes_by_controller", "plateau_before_germination"):
        assert _rows(warehouse, f"SELECT DISTINCT controller_kind FROM {view}") == [("heuristic",)], view
    events = _rows(warehouse, "SELECT r.source_file, e.step, e.from_stage, e.to_stage, e.cause, e.detail FROM lifecycle_events e "
                   "JOIN runs r USING (run_id) ORDER BY r.source_file, e.step, e.event_index")  # fmt: skip
    culled = [(step, a, b, cause) for f, step, a, b, cause, _ in events if f.endswith("culled.json")]
    assert culled == [(2, "DORMANT", "GERMINATED", "controller"), (2, "GERMINATED", "TRAINING", "automatic"),
                      (4, "TRAINING", "CULLED", "controller")]  # fmt: skip
    fossil = [(step, a, b) for f, step, a, b, *_ in events if f.endswith("fossilized.json")]
    assert fossil == [(2, "DORMANT", "GERMINATED"), (2, "GERMINATED", "TRAINING"), (4, "TRAINING", "BLENDING"),
                      (5, "BLENDING", "FOSSILIZED")]  # fmt: skip
    assert {detail for *_, b, _, detail in events if b == "GERMINATED"} == {"conv_heavy"}
    # "Which blueprints become permanent?" now has an answer for legacy data.
    assert _rows(warehouse, "SELECT blueprint, seeds, fossilized, culled FROM seed_success_rates") == [("conv_heavy", 2, 1, 1)]

    from tamiyo_models.policies.data import load_decisions

    frame = load_decisions(warehouse, "base", controllers=("heuristic",))
    assert frame["run_id"].n_unique() == 2 and len(frame) == 10  # training sees legacy decisions too


def test_non_finite_values_are_null_with_their_literal_kept_and_counted(tmp_path):
    folder = tmp_path / "raw"
    doc = L.episode(1, [40.0, 50.0, 55.0, 56.0], v2=True)
    doc["decisions"][2]["observation"]["val_loss"] = float("nan")
    doc["decisions"][1]["observation"]["accuracy_history_5"][0] = float("-inf")
    doc["telemetry_history"][0]["sharpness"] = float("nan")
    L.write(folder / "episode_0001.json", doc)
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(folder, warehouse)
    assert summary.non_finite == 4 and summary.non_finite_unexpected == 3
    assert "4 non-finite values" in summary.line() and "3 unexpected" in summary.line()
    kept = _rows(warehouse, "SELECT step, position, field, raw_text, expected FROM non_finite_values ORDER BY step, field")
    assert kept == [
        (1, "decisions[0]", "observation.loss_delta", "Infinity", True),
        (2, "decisions[1]", "observation.accuracy_history_5[0]", "-Infinity", False),
        (3, "decisions[2]", "observation.val_loss", "NaN", False),
        (3, "telemetry_history[0]", "sharpness", "NaN", False),
    ]
    stored = _rows(warehouse, "SELECT step, val_loss, loss_delta, accuracy_history_3, sharpness FROM observations ORDER BY step")
    assert stored[0][2] is None and stored[1][3] is None and stored[2][1] is None and stored[2][4] is None
    assert stored[3][4] == pytest.approx(0.3)
    assert _rows(warehouse, "SELECT non_finite_values, non_finite_unexpected, parser_version FROM ingest_log") == [(4, 3, PARSER_VERSION)]

    # The feature default (0) applies where features are read for a policy, not in storage.
    from tamiyo_models.policies.data import arrays, load_decisions

    frame = load_decisions(warehouse, "base")
    x = arrays(frame, ("val_loss", "loss_delta"))["x"]
    assert x[2, 0] == 0.0 and x[0, 1] == 0.0


def test_pack_with_a_repeated_episode_id_or_a_wrong_count_is_quarantined(tmp_path):
    folder = tmp_path / "raw"
    a, b = L.episode(7, [40.0, 50.0, 55.0]), L.episode(7, [30.0, 35.0, 36.0])
    L.write(folder / "dup_pack.json", L.pack([L.episode(1, [10.0, 20.0, 25.0]), a, b, a]))
    L.write(folder / "short_pack.json", L.pack([L.episode(1, [10.0, 20.0, 25.0])], num_episodes=3))
    L.write(folder / "same_twice.json", L.pack([L.episode(9, [10.0, 20.0, 21.0])] * 2))
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(folder, warehouse)
    assert _outcomes(summary) == {"dup_pack.json": "partly_quarantined", "short_pack.json": "quarantined", "same_twice.json": "loaded"}
    rows = _rows(warehouse, "SELECT source_file, position, field, rule, reason FROM quarantine WHERE rule <> 'run_quarantined' ORDER BY 1, 2")
    dup = [r for r in rows if r[0].endswith("dup_pack.json")]
    assert [(p, f, rule) for _, p, f, rule, _ in dup] == [
        ("episodes[1].episode", "episode_id", "duplicate_episode_id"),
        ("episodes[2].episode", "episode_id", "duplicate_episode_id"),
        ("episodes[3].episode", "episode_id", "duplicate_episode_id"),
    ]
    assert "episode_id 7 appears at episodes[1], episodes[2], episodes[3]" in dup[0][4]
    (short,) = [r for r in rows if r[0].endswith("short_pack.json")]
    assert short[1:4] == ("metadata", "metadata.num_episodes", "episode_count")
    assert "num_episodes is 3 but the pack holds 1 episodes" in short[4]
    assert _rows(warehouse, "SELECT count(*) FROM runs") == [(2,)]  # episodes[0] of dup_pack, and same_twice once


def test_a_file_nested_too_deep_is_quarantined_and_the_batch_goes_on(good, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (good / "deep_legacy.json").write_text('{"decisions": ' + deep + "}")
    (good / "deep_raw.jsonl").write_text('{"type": "header", "x": ' + deep + "}\n")
    (good / "medium.json").write_text('{"decisions": ' + "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5) + "}")
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(good, warehouse)
    assert _outcomes(summary) == {"episode_0001.json": "loaded", "deep_legacy.json": "quarantined",
                                  "deep_raw.jsonl": "quarantined", "medium.json": "quarantined"}  # fmt: skip
    rules = dict(_rows(warehouse, "SELECT source_file, rule FROM quarantine WHERE rule <> 'run_quarantined'"))
    assert {Path(f).name: r for f, r in rules.items()} == {"deep_legacy.json": "depth", "deep_raw.jsonl": "depth", "medium.json": "depth"}
    # And again: the landing folder is not blocked, nothing changes.
    assert set(_outcomes(ingest_folder(good, warehouse)).values()) == {"unchanged"}


def test_a_record_over_the_size_limit_is_refused_before_it_is_parsed(good, tmp_path):
    doc = L.episode(2, [40.0, 50.0])
    doc["decisions"][0]["action"]["reason"] = "x" * (MAX_RECORD_BYTES + 10)
    L.write(good / "huge_field.json", doc)
    big = L.episode(3, [40.0, 50.0])
    big["decisions"][1]["observation"]["extra"] = ["a"] * (MAX_RECORD_BYTES // 4)  # many quotes: seen after parsing
    L.write(good / "huge_record.json", big, indent=None)
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(good, warehouse)
    assert _outcomes(summary) == {"episode_0001.json": "loaded", "huge_field.json": "quarantined", "huge_record.json": "quarantined"}
    rows = {Path(f).name: (p, r) for f, p, r in _rows(
        warehouse, "SELECT source_file, position, rule FROM quarantine WHERE rule <> 'run_quarantined'")}  # fmt: skip
    assert rows == {"huge_field.json": ("file", "record_too_large"), "huge_record.json": ("decisions[1]", "record_too_large")}


def test_a_parser_failure_quarantines_that_file_only(good, tmp_path):
    doc = L.episode(2, [40.0, 50.0])
    doc["total_seeds_created"] = 10**30  # an integer no BIGINT column holds
    L.write(good / "overflow.json", doc)
    (good / "digits.json").write_text('{"decisions": [], "max_epochs": ' + "9" * 5000 + "}")
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(good, warehouse)
    assert _outcomes(summary) == {"episode_0001.json": "loaded", "overflow.json": "quarantined", "digits.json": "quarantined"}
    rules = {Path(f).name: r for f, r in _rows(warehouse, "SELECT source_file, rule FROM quarantine WHERE rule <> 'run_quarantined'")}
    assert rules == {"overflow.json": "column_type", "digits.json": "json"}


def test_quarantined_files_are_retried_by_a_newer_parser_or_on_request(good, tmp_path):
    bad = L.episode(5, [40.0, 50.0, 60.0])
    bad["decisions"][1]["action"]["action"] = "FOSSILIZE_NOW"
    L.write(good / "bad.json", bad)
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(good, warehouse)
    assert _rows(warehouse, "SELECT DISTINCT parser_version FROM quarantine") == [(PARSER_VERSION,)]
    assert set(_outcomes(ingest_folder(good, warehouse)).values()) == {"unchanged"}

    # Rows quarantined by an older parser (or before versions were recorded) are parsed again automatically.
    import duckdb

    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE quarantine SET parser_version = NULL")
    again = ingest_folder(good, warehouse)
    assert _outcomes(again) == {"episode_0001.json": "unchanged", "bad.json": "quarantined"}
    assert "parsed again" in next(f.message for f in again.files if f.source_file.endswith("bad.json"))
    assert _rows(warehouse, "SELECT DISTINCT parser_version FROM quarantine") == [(PARSER_VERSION,)]  # no stale rows left

    # On request, every quarantined file is parsed again (here it still fails, and says so).
    result = _cli("ingest", "--raw", str(good), "--warehouse", str(warehouse), "--quiet", "--retry-quarantined")
    assert result.returncode == 1 and "parsed again" in result.stdout and "Traceback" not in result.stderr


def test_a_real_file_quarantined_by_the_old_parser_loads_after_the_upgrade(tmp_path):
    """The state of a warehouse built before the real history names were accepted: the file's records sit in
    quarantine, rule `required`, with no parser version. The next ingestion parses it again and stores it."""
    folder = tmp_path / "raw"
    path = L.write(folder / "episode_0001.json", L.episode(1, [40.0, 50.0, 55.0]))
    warehouse = tmp_path / "w.duckdb"
    import hashlib

    from tamiyo_models.warehouse.store import open_warehouse

    with open_warehouse(warehouse) as con:
        con.execute(
            "INSERT INTO quarantine (ingest_id, source_file, source_sha256, source_format, position, rule, reason) "
            "VALUES ('old', ?, ?, 'legacy-episode-v1', 'decisions[0]', 'required', "
            "'field ''observation.loss_history'' is missing')",
            [str(path), hashlib.sha256(path.read_bytes()).hexdigest()],
        )
    result = _cli("ingest", "--raw", str(folder), "--warehouse", str(warehouse), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "loaded: " in result.stdout and "parsed again" in result.stdout
    assert _rows(warehouse, "SELECT count(*) FROM quarantine") == [(0,)]
    assert _rows(warehouse, "SELECT count(*) FROM steps") == [(3,)]


def test_ingest_exit_status_all_quarantined_vs_mixed(good, tmp_path):
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    (bad_only / "a.json").write_text("{not json")
    (bad_only / "b.jsonl").write_text("")
    result = _cli("ingest", "--raw", str(bad_only), "--warehouse", str(tmp_path / "w.duckdb"), "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["tamiyo ingest: all 2 files read were quarantined, nothing stored (see the quarantine table)"]
    (good / "c.json").write_text("[1, 2]")
    result = _cli("ingest", "--raw", str(good), "--warehouse", str(tmp_path / "w.duckdb"), "--quiet")
    assert result.returncode == 0 and "1 loaded, 1 quarantined" in result.stdout
    assert "1 non-finite values" in result.stdout  # the first-step loss_delta, expected: no warning line
    assert "warning:" not in result.stdout


def test_an_epoch_gap_is_explained_in_words(tmp_path):
    doc = L.episode(1, [40.0, 50.0, 55.0, 56.0, 57.0])
    doc["decisions"][3]["observation"]["epoch"] = 3  # epochs 1 2 3 3 5: epoch 4 missing, epoch 3 twice
    L.write(tmp_path / "raw" / "gap.json", doc)
    ingest_folder(tmp_path / "raw", tmp_path / "w.duckdb")
    reasons = {r for (r,) in _rows(tmp_path / "w.duckdb", "SELECT reason FROM quarantine WHERE rule = 'consecutive_steps'")}
    assert reasons == {"steps: epoch 4 missing, epoch 3 twice"}


def test_prior_content_survives_a_batch_of_bad_files(good, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(good, warehouse)
    before = _rows(warehouse, "SELECT run_id, content_sha256 FROM runs")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "deep.json").write_text("[" * 50_000)
    (bad / "episode_0001.json").write_text("{}")  # same name, other folder
    ingest_folder(bad, warehouse, IngestConfig(batch_files=1))
    assert _rows(warehouse, "SELECT run_id, content_sha256 FROM runs") == before


def test_the_ingest_path_does_not_import_torch(good, tmp_path):
    code = (
        "import re, sys\n"
        "from tamiyo_models.warehouse.cli import main\n"
        f"code = main(['ingest', '--raw', {str(good)!r}, '--warehouse', {str(tmp_path / 'w.duckdb')!r}, '--quiet'])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'dagster', 'mlflow')))\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, with torch loaded).
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    modules, peak_mb = result.stdout.strip().splitlines()[-2:]
    assert modules == "[]"
    assert int(peak_mb) < 450, f"ingesting one small file peaked at {peak_mb} MB"  # ~300 MB measured; 1.15 GB with torch
