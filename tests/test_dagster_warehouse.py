"""The warehouse through real Dagster materializations against a temporary DuckDB file: the definitions load,
tables match the raw files, the blocking pandera checks pass on good data and fail with failure cases on bad
data, and materializing again changes nothing."""

from __future__ import annotations


import dagster as dg
import duckdb
import pytest

from assets.warehouse import episode_tables, warehouse_parquet
from assets.resources import DatasetRootResource, RawLandingResource, WarehouseResource
from tamiyo_models.warehouse import current_snapshot, table_counts
from test_warehouse_helpers import copy_runs, generated_runs, read_lines


def test_definitions_load_with_every_table_and_check():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"runs", "episodes", "steps", "observations", "layer_gradients", "lifecycle_events", "quarantine",
            "ingest_log", "warehouse_parquet"} <= keys  # fmt: skip
    checks = {key.name for key in graph.asset_check_keys}
    assert {"steps_schema", "observations_schema", "runs_schema"} <= checks
    assert defs.resolve_job_def("ingest_raw_runs") is not None
    assert episode_tables.op.pool == "duckdb_writer"


@pytest.fixture
def resources(tmp_path, tmp_path_factory) -> dict:
    landing = tmp_path / "raw"
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated")), landing)
    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
        "raw_runs": RawLandingResource(folder=str(landing)),
        "dataset_root": DatasetRootResource(root=str(tmp_path / "data")),
    }


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_materialize_loads_tables_and_checks_pass(resources, tmp_path):
    result = dg.materialize([episode_tables, warehouse_parquet], resources=resources,
                            run_config={"ops": {"warehouse_parquet": {"config": {"out_dir": str(tmp_path / "pq")}}}})  # fmt: skip
    assert result.success
    files = [read_lines(p) for p in sorted(resources["raw_runs"].path.glob("*.jsonl"))]
    counts = table_counts(resources["warehouse"].path)
    assert counts["runs"] == 3 and counts["steps"] == sum(len(f) - 2 for f in files)
    materialized = {m.asset_key.to_user_string(): m for m in result.asset_materializations_for_node("episode_tables")}
    assert materialized["steps"].metadata["dagster/row_count"].value == counts["steps"]
    checks = _checks(result)
    assert len(checks) == 8 and all(c.passed for c in checks.values())  # one per table with a pandera schema
    assert (tmp_path / "pq" / "steps.parquet").exists()
    # The write published the read snapshot that readers (and warehouse_parquet) use: the same counts.
    assert current_snapshot(resources["warehouse"].path).counts == table_counts(resources["warehouse"].path, live=True)
    assert materialized["ingest_log"].metadata["snapshot"].value == str(current_snapshot(resources["warehouse"].path).path)

    # Materializing again is a no-op on the data; the log records the files as unchanged.
    again = dg.materialize([episode_tables], resources=resources)
    assert again.success and table_counts(resources["warehouse"].path) | {"ingest_log": 3} == counts
    log = {m.asset_key.to_user_string(): m for m in again.asset_materializations_for_node("episode_tables")}
    assert log["ingest_log"].metadata["unchanged"].value == 3


def test_checks_fail_with_failure_cases_when_stored_data_is_bad(resources):
    assert dg.materialize([episode_tables], resources=resources).success
    # Something other than ingestion (an older version, a hand edit) corrupted stored rows.
    with duckdb.connect(resources["warehouse"].path) as con:
        con.execute("UPDATE steps SET val_accuracy_after = 150.0 WHERE step = 2")
        con.execute("UPDATE steps SET action_fine = 'EXPLODE' WHERE step = 3")

    result = dg.materialize([episode_tables], resources=resources, raise_on_error=False)
    checks = _checks(result)
    assert not checks["steps_schema"].passed and checks["observations_schema"].passed
    metadata = checks["steps_schema"].metadata
    # 3 runs x (accuracy out of range, unknown action, fine action that no longer matches its coarse label)
    assert metadata["failure_count"].value == 9
    table = metadata["failure_cases"].value
    assert "150.0" in table and "EXPLODE" in table and "in_range" in table
