"""Legacy reference episodes (V1, V2) and packs load into the same tables, recognised by content, with their
known defects handled: bare NaN/Infinity literals, the first step's Infinity loss_delta, the never-filled
best_val_loss, and the reward stored one step late. The files have the real shape (legacy_fixtures.py): the
histories are `loss_history_5` / `accuracy_history_5`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamiyo_models.warehouse import connect_read_only, ingest_folder
import legacy_fixtures as L
from test_warehouse_helpers import copy_runs, generated_runs


def _episode(episode_id: int, accuracies: list[float], v2: bool = False) -> dict:
    return L.episode(episode_id, accuracies, v2)


def _write(path: Path, document: dict) -> Path:
    return L.write(path, document, indent=1)


@pytest.fixture
def legacy_folder(tmp_path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write(folder / "episode_0001.json", _episode(1, [40.0, 50.0, 55.0, 56.0]))
    _write(folder / "episode_0002.json", _episode(1, [30.0, 45.0, 47.0], v2=True))  # same id, other folder
    broken = _episode(3, [20.0, 30.0])
    broken["decisions"][1]["action"]["action"] = "FOSSILIZE_NOW"
    pack = {"metadata": {"num_episodes": 3, "version": "v1"},
            "episodes": [_episode(4, [10.0, 20.0, 25.0]), _episode(5, [60.0, 61.0]), broken]}  # fmt: skip
    _write(folder / "simic_pack.json", pack)
    text = (folder / "episode_0001.json").read_text()
    assert "Infinity" in text
    return folder


def test_legacy_episodes_and_packs_load_beside_raw_runs(legacy_folder, tmp_path, tmp_path_factory):
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated"))[:1], legacy_folder / "raw")
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(legacy_folder, warehouse)
    outcome = {Path(f.source_file).name: f for f in summary.files}
    assert outcome["episode_0001.json"].outcome == "loaded"
    assert outcome["episode_0002.json"].outcome == "loaded"
    assert outcome["simic_pack.json"].outcome == "partly_quarantined" and outcome["simic_pack.json"].runs_loaded == 2
    assert [f.outcome for f in summary.files if f.source_file.endswith(".jsonl")] == ["loaded"]

    with connect_read_only(warehouse) as con:
        formats = dict(con.execute("SELECT source_format, count(*) FROM runs GROUP BY 1").fetchall())
        versions = dict(con.execute("SELECT feature_schema_version, count(*) FROM observations GROUP BY 1").fetchall())
        quarantined = con.execute("SELECT position, rule, reason FROM quarantine WHERE rule <> 'run_quarantined'").fetchall()
        run_id = con.execute("SELECT run_id FROM runs WHERE source_file LIKE '%episode_0001.json'").fetchone()[0]
        steps = con.execute(
            "SELECT step, action_fine, val_accuracy_before, val_accuracy_after, reward, reward_as_logged, propensity "
            "FROM steps WHERE run_id = ? ORDER BY step", [run_id]).fetchall()  # fmt: skip
        first = con.execute(
            "SELECT loss_delta, best_val_loss, grad_health, seed_contribution FROM observations WHERE run_id = ? AND step = 1",
            [run_id]).fetchone()  # fmt: skip
        later_best_loss = con.execute(
            "SELECT best_val_loss FROM observations WHERE run_id = ? AND step = 4", [run_id]).fetchone()[0]  # fmt: skip
        v2 = con.execute(
            "SELECT o.step, o.grad_health IS NOT NULL, o.class_accuracy_9, o.sharpness FROM observations o "
            "JOIN runs r USING (run_id) WHERE r.source_format = 'legacy-episode-v2' ORDER BY step").fetchall()  # fmt: skip
        v2_layers = con.execute(
            "SELECT count(*) FROM layer_gradients l JOIN runs r USING (run_id) WHERE r.source_format = 'legacy-episode-v2'"
        ).fetchone()[0]
        ret = con.execute('SELECT "return" FROM episodes WHERE run_id = ?', [run_id]).fetchone()[0]
        non_finite = con.execute(
            "SELECT step, position, field, raw_text, expected FROM non_finite_values WHERE run_id = ?", [run_id]).fetchall()  # fmt: skip

    assert formats == {"tamiyo-raw-run/1": 1, "legacy-episode-v1": 3, "legacy-episode-v2": 1}
    assert versions["legacy-v1"] == 4 + 3 + 2 and versions["legacy-v2"] == 3
    assert quarantined == [("episodes[2].decisions[1]", "unknown_action", quarantined[0][2])]
    assert "FOSSILIZE_NOW" in quarantined[0][2]
    # Reward realigned: decision t gets val(t+1) - val(t); the last one the episode's final accuracy.
    assert [s[1] for s in steps] == ["WAIT", "GERMINATE_conv_heavy", "WAIT", "CULL"]
    assert [(s[2], s[3]) for s in steps] == [(40.0, 50.0), (50.0, 55.0), (55.0, 56.0), (56.0, 56.5)]
    assert [s[4] for s in steps] == pytest.approx([100.0, 50.0, 10.0, 5.0])
    assert steps[1][5] == pytest.approx(100.0) and steps[0][6] is None  # as logged (mis-timed); no propensity
    assert ret == pytest.approx(165.0)
    # Infinity -> NULL (its literal kept, as expected); best loss tracked; no telemetry/lifecycle features
    assert first == (None, pytest.approx(1.6), None, None)
    assert non_finite == [(1, "decisions[0]", "observation.loss_delta", "Infinity", True)]
    assert later_best_loss == pytest.approx(2.0 - 0.56)
    assert [row[:2] for row in v2] == [(1, False), (2, True), (3, True)]  # matched on the entry's own epoch
    assert v2[1][2] == 59.0 and v2[1][3] == pytest.approx(0.3) and v2_layers == 4


def test_a_legacy_file_that_is_not_json_is_quarantined_whole(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "episode_0009.json").write_text('{"episode_id": 9, "decisions": [')
    (folder / "notes.json").write_text('{"hello": "world"}')
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(folder, warehouse)
    assert {f.outcome for f in summary.files} == {"quarantined"}
    with connect_read_only(warehouse) as con:
        rows = dict(con.execute("SELECT rule, original_text FROM quarantine").fetchall())
    assert rows == {"json": '{"episode_id": 9, "decisions": [', "unknown_format": '{"hello": "world"}'}


def test_an_epoch_far_out_of_range_is_quarantined_with_its_gap_in_words(tmp_path):
    """Found by the fuzz suite: a legacy episode whose third decision says epoch 9.2e15. Describing the gap used
    to build range(1, 9.2e15) and ran the ingest out of memory; now the reason counts what it cannot list."""
    folder = tmp_path / "in"
    folder.mkdir()
    corrupt = _episode(7, [40.0, 50.0, 55.0, 56.0])
    corrupt["decisions"][2]["observation"]["epoch"] = 9_214_055_445_031_988
    _write(folder / "episode_0007.json", corrupt)
    _write(folder / "episode_0008.json", _episode(8, [40.0, 50.0, 55.0, 56.0]))
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(folder, warehouse)
    outcome = {Path(f.source_file).name: f.outcome for f in summary.files}
    assert outcome == {"episode_0007.json": "quarantined", "episode_0008.json": "loaded"}
    with connect_read_only(warehouse) as con:
        reasons = [r for (r,) in con.execute("SELECT reason FROM quarantine").fetchall()]
    assert any("steps: epoch 3 missing" in r and "9214055445031979 more missing" in r for r in reasons), reasons
