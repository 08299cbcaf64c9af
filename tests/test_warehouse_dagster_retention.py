"""The warehouse asset's retention, compaction and disk report through real Dagster materializations (a real
DuckDB file, real raw runs): archival by config, disk use in the ingest_log metadata, and the disk-space check
that warns before the disk fills."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.resources import DatasetRootResource, RawLandingResource, WarehouseResource
from assets.warehouse import WAREHOUSE_CHECKS, episode_tables, warehouse_disk_space
from tamiyo_models.warehouse import table_counts
from tamiyo_models.warehouse.archive import archive_dir
from test_warehouse_helpers import copy_runs, generated_runs


@pytest.fixture
def resources(tmp_path, tmp_path_factory) -> dict:
    landing = tmp_path / "raw"
    copy_runs(generated_runs(tmp_path_factory.mktemp("generated")), landing)
    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
        "raw_runs": RawLandingResource(folder=str(landing)),
        "dataset_root": DatasetRootResource(root=str(tmp_path / "data")),
    }


def test_archival_by_config_and_disk_use_in_the_metadata(resources):
    landing = resources["raw_runs"].path
    kept = dg.materialize([episode_tables], resources=resources)  # default: the landing folder as it is
    assert kept.success and len(list(landing.glob("*.jsonl"))) == 3
    config = {"ops": {"episode_tables": {"config": {"archive_raw_after_nights": 0}}}}
    result = dg.materialize([episode_tables], resources=resources, run_config=config)
    assert result.success
    assert not list(landing.glob("*.jsonl")) and len(list(archive_dir(landing).rglob("*.jsonl.zst"))) == 3
    log = {m.asset_key.to_user_string(): m for m in result.asset_materializations_for_node("episode_tables")}
    metadata = log["ingest_log"].metadata
    assert metadata["archived_files"].value == 3 and metadata["disk_landing_mb"].value == 0
    assert metadata["disk_archive_mb"].value > 0 and metadata["disk_total_mb"].value > 0
    assert "| night |" in metadata["disk_by_night"].value
    assert log["layer_gradients"].metadata["duckdb_mb"].value > 0
    assert table_counts(resources["warehouse"].path)["runs"] == 3  # nothing dropped


def test_the_disk_space_check_warns_when_the_coming_nights_would_not_fit(resources):
    assert WAREHOUSE_CHECKS == [warehouse_disk_space]
    ok = dg.materialize([episode_tables, warehouse_disk_space], resources=resources)
    (evaluation,) = [e for e in ok.get_asset_check_evaluations() if e.check_name == "warehouse_disk_space"]
    assert evaluation.passed and evaluation.metadata["disk_free_gb"].value > 0
    full = {"ops": {"ingest_log_warehouse_disk_space": {"config": {"min_free_gb": 1e9}}}}  # an exabyte
    result = dg.materialize([episode_tables, warehouse_disk_space], resources=resources, run_config=full)
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "warehouse_disk_space"]
    assert result.success  # a warning, not a failure: the night's data is stored
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "GB free" in evaluation.description


def test_a_full_disk_during_archival_keeps_the_files_and_the_materialization(resources, monkeypatch):
    from tamiyo_models.warehouse import archive as archive_module

    def full_disk(target, data):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(archive_module, "_write_durably", full_disk)
    landing = resources["raw_runs"].path
    before = {p: p.read_bytes() for p in landing.glob("*.jsonl")}
    config = {"ops": {"episode_tables": {"config": {"archive_raw_after_nights": 0}}}}
    result = dg.materialize([episode_tables], resources=resources, run_config=config)
    assert result.success  # the night's data is stored and published; archival waits for the next run
    log = {m.asset_key.to_user_string(): m for m in result.asset_materializations_for_node("episode_tables")}
    assert "No space left on device" in log["ingest_log"].metadata["archive_error"].value
    assert {p: p.read_bytes() for p in landing.glob("*.jsonl")} == before
    assert table_counts(resources["warehouse"].path)["runs"] == 3
