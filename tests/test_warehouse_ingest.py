"""Ingestion of raw runs: counts match the files, features come from the one feature function, re-ingestion is
a no-op, replacement is atomic, a crash leaves the warehouse as it was, and every bad input is quarantined
with a reason while the rest still loads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_warehouse_helpers import copy_runs, generated_runs, read_lines, write_lines

from tamiyo_models.warehouse import connect_read_only, ingest_folder, table_counts
from tamiyo_models.warehouse import ingest as ingest_module
from tamiyo_models.world.features import ALL_FEATURES, observation_features


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> list[Path]:
    return generated_runs(tmp_path_factory.mktemp("generated"))


@pytest.fixture
def landing(tmp_path, runs) -> Path:
    copy_runs(runs, tmp_path / "raw")
    return tmp_path / "raw"


def _snapshot(warehouse: Path) -> dict:
    with connect_read_only(warehouse) as con:
        return {
            t: con.execute(f"SELECT * EXCLUDE (ingested_at) FROM {t} ORDER BY ALL").fetchall()
            if t == "runs"
            else con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("runs", "episodes", "steps", "observations", "layer_gradients", "lifecycle_events")
        }


def test_tables_match_the_raw_files(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(landing, warehouse)
    assert summary.count("loaded") == 3 and summary.records_quarantined == 0

    files = [read_lines(p) for p in sorted(landing.glob("*.jsonl"))]
    steps = sum(len(f) - 2 for f in files)
    layers = sum(
        len(r["observation"]["telemetry"]["gradients"]["layers"]) for f in files for r in f[1:-1]
    ) + sum(len(f[-1]["final_observation"]["telemetry"]["gradients"]["layers"]) for f in files)
    events = sum(len(r["outcome"]["events"]) for f in files for r in f[1:-1])
    counts = table_counts(warehouse)
    assert counts["runs"] == counts["episodes"] == 3
    assert counts["steps"] == steps == summary.steps_loaded
    assert counts["observations"] == steps + 3  # + the final observation of each complete run
    assert counts["layer_gradients"] == layers and counts["lifecycle_events"] == events
    assert counts["ingest_log"] == 3 and counts["quarantine"] == 0

    # The stored features are exactly what the live controller's feature function computes.
    record = files[0][3]
    with connect_read_only(warehouse) as con:
        stored = con.execute(
            f"SELECT {', '.join(ALL_FEATURES)} FROM observations WHERE run_id = ? AND step = ?",
            [files[0][0]["run_id"], record["step"]],
        ).fetchone()
        step_row = con.execute(
            "SELECT action_fine, propensity, reward, is_last FROM steps WHERE run_id = ? AND step = ?",
            [files[0][0]["run_id"], record["step"]],
        ).fetchone()
    assert list(stored) == pytest.approx(list(observation_features(record["observation"]).values()))
    assert step_row == (record["action"]["fine"], pytest.approx(record["action"]["propensity"]),
                        pytest.approx(record["outcome"]["reward"]), False)  # fmt: skip


def test_reingestion_is_a_no_op(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    before = _snapshot(warehouse)
    again = ingest_folder(landing, warehouse)
    assert [f.outcome for f in again.files] == ["unchanged"] * 3
    assert _snapshot(warehouse) == before


def test_changed_file_with_the_same_run_id_replaces_the_old_version(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    path = sorted(landing.glob("*.jsonl"))[0]
    records = read_lines(path)
    records[2]["action"]["reason"] = "edited reason"
    write_lines(path, records)
    counts = table_counts(warehouse)

    summary = ingest_folder(landing, warehouse)
    assert sorted(f.outcome for f in summary.files) == ["replaced", "unchanged", "unchanged"]
    assert table_counts(warehouse)["steps"] == counts["steps"]
    with connect_read_only(warehouse) as con:
        reason = con.execute(
            "SELECT reason FROM steps WHERE run_id = ? AND step = ?", [records[0]["run_id"], records[2]["step"]]
        ).fetchone()[0]
        sha = con.execute("SELECT source_sha256 FROM runs WHERE run_id = ?", [records[0]["run_id"]]).fetchone()[0]
        logged = con.execute("SELECT outcome FROM ingest_log WHERE source_file = ? ORDER BY seen_at", [str(path)]).fetchall()
    assert reason == "edited reason" and sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [o for (o,) in logged] == ["loaded", "replaced"]


def test_a_crash_in_the_middle_leaves_the_warehouse_as_it_was(landing, tmp_path, monkeypatch, runs):
    warehouse = tmp_path / "w.duckdb"
    first = landing / runs[0].name
    other = tmp_path / "other"
    other.mkdir()
    first.rename(other / first.name)
    ingest_folder(other, warehouse)
    before, counts = _snapshot(warehouse), table_counts(warehouse)

    real_insert = ingest_module.insert_frame

    def failing_insert(con, table, frame):
        if table == "lifecycle_events":  # after runs, episodes, steps, observations were inserted
            raise OSError("disk full (injected)")
        real_insert(con, table, frame)

    monkeypatch.setattr(ingest_module, "insert_frame", failing_insert)
    with pytest.raises(OSError, match="injected"):
        ingest_folder(landing, warehouse)
    assert _snapshot(warehouse) == before and table_counts(warehouse) == counts


# ---- bad input: each ends in quarantine with a reason; the good file beside it still loads -------------


def _edit(path: Path, edit) -> None:
    records = read_lines(path)
    edit(records)
    write_lines(path, records)


def _replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _set(records, index, dotted, value):
    target = records[index]
    *parents, last = dotted.split(".")
    for key in parents:
        target = target[key]
    target[last] = value


def _delete(records, index, dotted):
    target = records[index]
    *parents, last = dotted.split(".")
    for key in parents:
        target = target[key]
    del target[last]


def _drop_step(records, index):
    del records[index]
    records[-1]["steps"] -= 1


def _duplicate_step(records, index):
    records.insert(index, json.loads(json.dumps(records[index])))
    records[-1]["steps"] += 1


BAD_INPUTS = {
    "truncated file": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), {"json", "footer_missing"}),
    "empty file": (lambda p: p.write_bytes(b""), {"empty"}),
    "non-UTF-8 bytes": (lambda p: p.write_bytes(p.read_bytes().replace(b'"reason":"', b'"reason":"\xff\xfe', 1)), {"utf8"}),
    "missing field": (lambda p: _edit(p, lambda r: _delete(r, 2, "action.propensity")), {"required"}),
    "wrong type": (lambda p: _edit(p, lambda r: _set(r, 2, "outcome.reward", "high")), {"type"}),
    "NaN literal": (lambda p: _replace_text(p, '"reward":', '"reward":NaN,"x":'), {"strict_json"}),
    "Infinity literal": (lambda p: _replace_text(p, '"shaping":', '"shaping":Infinity,"y":'), {"strict_json"}),
    "unknown action name": (lambda p: _edit(p, lambda r: _set(r, 3, "action.fine", "EXPLODE")), {"unknown_action"}),
    "accuracy above 100": (lambda p: _edit(p, lambda r: _set(r, 2, "outcome.val_accuracy_after", 150.0)), {"in_range"}),
    "accuracy below 0": (lambda p: _edit(p, lambda r: _set(r, 2, "observation.val_accuracy", -5.0)), {"in_range"}),
    "negative epoch": (lambda p: _edit(p, lambda r: (_set(r, 1, "epoch", -1))), {"epoch_sequence"}),
    # The raw-run twin of the fuzz suite's legacy case (test_warehouse_legacy.py), which ran the ingest out of memory
    "epoch far out of range": (lambda p: _edit(p, lambda r: _set(r, 2, "epoch", 9_214_055_445_031_988)), {"epoch_sequence"}),
    "gap in the steps": (lambda p: _edit(p, lambda r: _drop_step(r, 3)), {"consecutive_steps"}),
    "duplicate step": (lambda p: _edit(p, lambda r: _duplicate_step(r, 3)), {"consecutive_steps"}),
    "list where an object belongs": (lambda p: _edit(p, lambda r: _set(r, 2, "action", ["WAIT"])), {"type"}),
    "whole line is a list": (lambda p: _replace_text(p, '{"type":"step","step":2,', '[{"type":"step","step":2,'), {"json"}),
    "huge string field": (lambda p: _edit(p, lambda r: _set(r, 2, "action.reason", "x" * 50_000)), {"str_length"}),
    "no footer (crashed generator)": (lambda p: p.write_text("".join(p.read_text().splitlines(True)[:-1])), {"footer_missing"}),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_quarantined_with_a_reason_and_nothing_is_lost(case, landing, tmp_path):
    corrupt, rules = BAD_INPUTS[case]
    bad, *good = sorted(landing.glob("*.jsonl"))
    corrupt(bad)
    raw_before = {p: p.read_bytes() for p in landing.iterdir()}
    warehouse = tmp_path / "w.duckdb"

    summary = ingest_folder(landing, warehouse)

    outcome = {Path(f.source_file).name: f for f in summary.files}
    assert outcome[bad.name].outcome == "quarantined", outcome[bad.name]
    assert all(outcome[g.name].outcome == "loaded" for g in good)
    with connect_read_only(warehouse) as con:
        rows = con.execute(
            "SELECT rule, reason, position, original_text FROM quarantine WHERE source_file = ?", [str(bad)]
        ).fetchall()
        stored = con.execute("SELECT count(*) FROM runs WHERE source_file = ?", [str(bad)]).fetchone()[0]
        logged = con.execute("SELECT outcome, message FROM ingest_log WHERE source_file = ?", [str(bad)]).fetchall()
    assert stored == 0 and logged[0][0] == "quarantined" and logged[0][1]
    assert rules & {rule for rule, *_ in rows}, rows[:3]
    assert all(reason for _, reason, _, _ in rows)
    # Nothing lost: every non-blank line of the file is in quarantine (or the whole file, for file-level faults).
    lines = [line for line in bad.read_bytes().split(b"\n") if line.strip()]
    texts = {text for *_, text in rows}
    if rows[0][2] != "file":
        assert all(line.decode("utf-8", errors="backslashreplace") in texts for line in lines)
    assert table_counts(warehouse)["runs"] == len(good)
    assert {p: p.read_bytes() for p in landing.iterdir()} == raw_before  # raw files are never modified
    # Re-ingesting the same bad file adds nothing.
    again = ingest_folder(landing, warehouse)
    assert {f.outcome for f in again.files} == {"unchanged"}
    assert table_counts(warehouse)["quarantine"] == len(rows)


def test_duplicate_run_id_with_different_content_is_quarantined(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    original = sorted(landing.glob("*.jsonl"))[0]
    impostor = landing / "copied-elsewhere.jsonl"
    records = read_lines(original)
    records[2]["action"]["reason"] = "different content"
    write_lines(impostor, records)

    summary = ingest_folder(landing, warehouse)
    outcome = {Path(f.source_file).name: f for f in summary.files}
    assert outcome["copied-elsewhere.jsonl"].outcome == "quarantined"
    assert "already stored from" in outcome["copied-elsewhere.jsonl"].message
    with connect_read_only(warehouse) as con:
        rules = {r for (r,) in con.execute("SELECT rule FROM quarantine WHERE source_file = ?", [str(impostor)]).fetchall()}
        source = con.execute("SELECT source_file FROM runs WHERE run_id = ?", [records[0]["run_id"]]).fetchone()[0]
    assert "duplicate_run_id" in rules and source == str(original)


def test_branch_runs_load_with_their_link_and_a_gap_at_the_start_is_quarantined(tmp_path):
    from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.warehouse import ingest_folder, query
    from tamiyo_models.world.datasets import DatasetConfig

    raw = tmp_path / "raw"
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=5, seed=1)
    result = run_with_branches(config, raw, BranchConfig(fork_rule="steps", steps=(3,), horizon=2))
    # A branch whose first step is not its fork step: a hole at the start of the run.
    broken = result.branches[0].path
    lines = broken.read_text().splitlines()
    (raw / "broken.jsonl").write_text("\n".join([lines[0].replace(result.branches[0].run_id, "run-broken"), *lines[2:]]) + "\n")
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(raw, warehouse)
    branches = query(warehouse, "SELECT * FROM branches ORDER BY run_id")
    assert branches.height == len(result.branches)
    assert set(branches["parent_run_id"]) == {result.parent.run_id} and set(branches["fork_step"]) == {3}
    steps = query(warehouse, f"SELECT min(step) AS first, max(step) AS last FROM steps WHERE run_id = '{result.branches[0].run_id}'")
    assert steps.row(0) == (3, 4)
    finals = query(warehouse, f"SELECT step FROM observations WHERE is_final AND run_id = '{result.branches[0].run_id}'")
    assert finals["step"].to_list() == [5]
    quarantined = query(warehouse, "SELECT rule, reason FROM quarantine WHERE run_id = 'run-broken'")
    assert "first_step" in quarantined["rule"].to_list()
    outcomes = query(warehouse, "SELECT is_parent, count(*) AS n FROM branch_outcomes GROUP BY ALL ORDER BY 1")
    assert outcomes.rows() == [(False, len(result.branches)), (True, 1)]  # every branch, and the parent's own arm
