"""The shape of the Dagster definitions, snapshotted: every asset with its group, upstream assets and
partitioning, every check, job, schedule and sensor. A definition that breaks or drifts fails here, fast and readably.

After an intended change: `TAMIYO_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py`
rewrites tests/snapshots/definitions.json; review its diff like code."""

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def definitions_shape() -> dict:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "upstream": sorted(k.to_user_string() for k in node.parent_keys),
            # kind and start of the partitioning (a daily partition set's start is the first night)
            "partitions": None if partitions is None else f"{type(partitions).__name__} {_partition_start(partitions)}",
        }
    return {
        "assets": assets,
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys),
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules),
        "sensors": sorted(s.name for s in defs.sensors),
    }


def _partition_start(partitions) -> str:
    start = getattr(partitions, "start", None)
    return start.strftime("%Y-%m-%d") if start is not None else ""


def test_definitions_match_the_snapshot():
    shape = definitions_shape()
    if os.environ.get("TAMIYO_UPDATE_SNAPSHOT") or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(shape, indent=1, sort_keys=True) + "\n")
    assert shape == json.loads(SNAPSHOT.read_text())
