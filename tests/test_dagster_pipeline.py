"""The whole graph through real Dagster materializations: generation writes raw runs, ingestion loads them,
the coverage analysis reads the tables and writes its own, with a report a person can open."""

import dagster as dg
import duckdb

from pipelines.definitions import defs
from assets.resources import DatasetRootResource, RawLandingResource, WarehouseResource

SPEC = """
name = "pipeline-test"
[base]
max_epochs = 6
[base.dataset]
name = "synthetic"
[vary]
"host.widths" = [[2, 4, 8], [4, 8, 16]]
[[controllers]]
kind = "epsilon-heuristic"
epsilon = 0.3
weight = 1
[branching]
horizon = 2
max_forks = 1
fork_rule = "every"
every = 2
coarse_only = true
"""


def test_every_asset_job_and_check_resolves():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"generated_runs", "steps", "branches", "counterfactual_coverage"} <= keys
    upstream = {k.to_user_string() for k in graph.get(dg.AssetKey("steps")).parent_keys}
    assert upstream == {"generated_runs"}
    for job in ("ingest_raw_runs", "nightly", "full_refresh"):
        assert defs.resolve_job_def(job) is not None


def test_generation_ingestion_and_coverage_materialize_end_to_end(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    warehouse = tmp_path / "w.duckdb"
    resources = {
        "warehouse": WarehouseResource(path=str(warehouse)),
        "raw_runs": RawLandingResource(folder=str(tmp_path / "raw")),
        "dataset_root": DatasetRootResource(root=str(tmp_path / "data")),
    }
    run_config = {"ops": {
        "generated_runs": {"config": {"spec": str(spec), "episodes": 3, "workers": 1, "seed": 7,
                                      "holes_file": str(tmp_path / "coverage" / "holes.json")}},
        "counterfactual_coverage": {"config": {"k": 4, "min_samples": 2, "out_dir": str(tmp_path / "report"),
                                               "model_dir": str(tmp_path / "coverage")}},
    }}  # fmt: skip
    from assets.analysis import counterfactual_coverage
    from assets.generation import GENERATION_ASSETS
    from assets.warehouse import episode_tables

    selection = [*GENERATION_ASSETS, episode_tables, counterfactual_coverage]
    result = dg.materialize(selection, resources=resources, run_config=run_config, partition_key="2026-11-25")
    assert result.success
    generated = result.asset_materializations_for_node("generated_runs")[0].metadata
    assert generated["episodes_complete"].value == 3 and generated["branch_runs"].value > 0
    assert generated["night"].value == "2026-11-25"
    coverage = result.asset_materializations_for_node("counterfactual_coverage")[0].metadata
    assert 0 <= coverage["coverage_clusters_pct"].value <= 100 and coverage["decision_states"].value > 0
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 3 + generated["branch_runs"].value
        assert con.execute("SELECT count(*) FROM branches").fetchall()[0][0] == generated["branch_runs"].value
        summary = con.sql("SELECT * FROM coverage_summary WHERE slice = 'all'").pl()
        assert summary.height == 1 and summary["clusters"][0] >= 2
        assert con.execute("SELECT count(*) FROM coverage_clusters").fetchall()[0][0] == summary["clusters"][0]
    # The coverage step's write was published too: readers see its tables, with the warehouse's counts.
    from tamiyo_models.warehouse import current_snapshot, table_counts

    published = current_snapshot(warehouse).counts
    assert published["coverage_clusters"] == summary["clusters"][0] and published["coverage_summary"] > 0
    assert {t: published[t] for t in table_counts(warehouse, live=True)} == table_counts(warehouse, live=True)
    assert (tmp_path / "report" / "coverage.html").stat().st_size > 10_000
    assert (tmp_path / "coverage" / "holes.json").exists()  # the next batch forks where coverage is missing
