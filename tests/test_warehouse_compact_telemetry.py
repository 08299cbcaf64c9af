"""The compact layer_gradients table (float32, no primary key index; see schema.sql) with real raw runs and a
real DuckDB file: every value of the raw files comes back exactly, a warehouse of the first layout is rebuilt
in the new one with every row and answer kept, and a value float32 cannot hold is quarantined, not stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamiyo_models.warehouse import connect_read_only, ingest_folder
from tamiyo_models.warehouse.disk import compact
from tamiyo_models.warehouse.store import open_warehouse
from tamiyo_models.warehouse.tables import LAYER_GRADIENTS, PERCENTILES
from test_warehouse_helpers import copy_runs, generated_runs, read_lines, write_lines

STATS = [c for c in LAYER_GRADIENTS if c not in ("run_id", "step", "layer")]
OLD_LAYOUT = (
    "CREATE TABLE layer_gradients (run_id VARCHAR NOT NULL, step BIGINT NOT NULL, layer VARCHAR NOT NULL, "
    + ", ".join(f"{c} DOUBLE" for c in STATS)
    + ", PRIMARY KEY (run_id, step, layer))"
)


@pytest.fixture
def landing(tmp_path, tmp_path_factory) -> Path:
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated")), tmp_path / "raw")
    return tmp_path / "raw"


def _raw_layers(landing: Path) -> dict[tuple, tuple]:
    rows = {}
    for path in sorted(landing.glob("*.jsonl")):
        records = read_lines(path)
        run_id = records[0]["run_id"]
        observations = [(r["step"], r["observation"]) for r in records[1:-1]]
        observations.append((records[-2]["step"] + 1, records[-1]["final_observation"]))
        for step, observation in observations:
            for layer in observation["telemetry"]["gradients"]["layers"]:
                values = [layer.get(k) for k in ("norm", "norm_std", "mean", "std", "vanishing_share", "exploding_share")]
                values += [layer["percentiles"].get(p) for p in PERCENTILES]
                rows[(run_id, step, layer["name"])] = tuple(None if v is None else float(v) for v in values)
    return rows


def _stored_layers(warehouse: Path) -> dict[tuple, tuple]:
    with connect_read_only(warehouse) as con:
        return {
            tuple(r[:3]): tuple(r[3:])
            for r in con.execute(f"SELECT run_id, step, layer, {', '.join(STATS)} FROM layer_gradients").fetchall()
        }


def test_every_layer_value_of_the_raw_runs_comes_back_exactly(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    raw = _raw_layers(landing)
    assert len(raw) > 200
    assert _stored_layers(warehouse) == raw  # exact equality: float32 is the precision they were measured in
    with connect_read_only(warehouse) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'layer_gradients'").fetchall())
        keys = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'layer_gradients' "
                           "AND constraint_type = 'PRIMARY KEY'").fetchone()  # fmt: skip
    assert {types[c] for c in STATS} == {"FLOAT"} and keys == (0,)


def test_a_warehouse_of_the_first_layout_is_rebuilt_with_every_row_and_answer(landing, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    with open_warehouse(warehouse) as con:  # turn it into a file as the first layout wrote it
        con.execute("CREATE TABLE _kept AS SELECT * FROM layer_gradients")
        con.execute("DROP TABLE layer_gradients")
        con.execute(OLD_LAYOUT)
        con.execute("INSERT INTO layer_gradients SELECT * FROM _kept")
        con.execute("DROP TABLE _kept")
    question = "SELECT layer, count(*), sum(norm), max(p99) FROM layer_gradients GROUP BY 1 ORDER BY 1"
    with connect_read_only(warehouse) as con:
        assert con.execute("SELECT data_type FROM duckdb_columns() WHERE table_name = 'layer_gradients' "
                           "AND column_name = 'norm'").fetchone() == ("DOUBLE",)  # fmt: skip
        before, answer = _stored_layers(warehouse), con.execute(question).fetchall()

    with open_warehouse(warehouse) as con:  # opening it for writing rebuilds the table, in one transaction
        types = {t for (t,) in con.execute(
            "SELECT DISTINCT data_type FROM duckdb_columns() WHERE table_name = 'layer_gradients' AND data_type LIKE '%FLOAT%' "
            "OR table_name = 'layer_gradients' AND data_type = 'DOUBLE'"
        ).fetchall()}  # fmt: skip
        assert types == {"FLOAT"}
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%layer_gradients%'").fetchone() == (1,)
    assert _stored_layers(warehouse) == before
    with connect_read_only(warehouse) as con:
        assert con.execute(question).fetchall() == answer
    assert {f.outcome for f in ingest_folder(landing, warehouse).files} == {"unchanged"}
    compact(warehouse, min_free_share=0)
    assert _stored_layers(warehouse) == before


def test_a_layer_value_beyond_float32_is_quarantined_not_stored_as_infinity(landing, tmp_path, tmp_path_factory):
    records = read_lines(sorted(landing.glob("*.jsonl"))[0])
    records[3]["observation"]["telemetry"]["gradients"]["layers"][0]["norm"] = 1e39
    bad = tmp_path / "bad"
    bad.mkdir()
    write_lines(bad / "huge.jsonl", records)
    summary = ingest_folder(bad, tmp_path / "w.duckdb")
    (outcome,) = summary.files
    assert outcome.outcome == "quarantined" and "layer_gradients.norm" in outcome.message and "finite" in outcome.message
    with connect_read_only(tmp_path / "w.duckdb") as con:
        assert con.execute("SELECT count(*) FROM layer_gradients").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM quarantine WHERE rule = 'finite' AND field = 'norm'").fetchone() == (1,)
