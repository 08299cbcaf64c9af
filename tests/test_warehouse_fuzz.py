"""Fuzzing the readers with hypothesis: raw runs, legacy episodes and packs, as arbitrary bytes and as
structure-aware mutations of real-shaped records (a value replaced by null, NaN, Infinity, a string, a huge
number, a deep nesting, a key removed, a record repeated or dropped, the file cut short).

The property, per batch of generated files ingested together into a warehouse that already holds real runs:
ingestion returns; each file is stored or quarantined, a quarantined record with its file, position, rule
and reason; the summary's counts add up to what the tables gained; and everything stored before is intact.

Bounded for CI (FUZZ_BATCHES batches of up to 4 files; ~30-40 s on a 2-core machine); the number of files
tried is printed at the end of the test session (conftest.py). The cases depend on the project modules loaded in
the process (Hypothesis draws constants from them too), so `make test` runs this file in a process of its own:
CI tries the same cases as `pytest tests/test_warehouse_fuzz.py` on any machine, and a failure reproduces there.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import legacy_fixtures as L
from tamiyo_models.warehouse.ingest import IngestConfig, ingest_files
from tamiyo_models.warehouse.store import open_warehouse
from test_warehouse_helpers import generated_runs, read_lines

FUZZ_BATCHES = int(os.environ.get("TAMIYO_FUZZ_BATCHES", "200"))
OUTCOMES = {"loaded", "replaced", "unchanged", "quarantined", "partly_quarantined"}
CASES = {"files": 0, "batches": 0, "seconds": 0.0, "outcomes": {}}
# Makes each generated episode and raw run distinct, so that few cases merely repeat content already stored
# (`unchanged`); not drawn, so hypothesis replays the same cases with only this label changed.
_UNIQUE = iter(range(10**9))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Real-shaped records to mutate: a raw run's records, a V1 and a V2 legacy episode."""
    raw = read_lines(generated_runs(tmp_path_factory.mktemp("generated"))[2])
    for record in raw:
        # Wall-clock timings are all that differs between two generations of the run: fixed, so that the files
        # cut at drawn lengths do not move with them. The cases still depend on which project modules the process
        # has loaded (Hypothesis also draws constants found in them): this file alone, as `make test` runs it,
        # gives the same cases every run, the whole suite in one process others (docs/warehouse.md).
        if "timing" in record:
            record["timing"] = dict.fromkeys(record["timing"], 0.25)
        if "wall_seconds" in record:
            record["wall_seconds"] = 3.0
    return {"raw": raw, "v1": L.episode(1, [40.0, 50.0, 55.0, 56.0]), "v2": L.episode(2, [30.0, 45.0, 47.0], v2=True)}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, seeds):
    """A warehouse holding real content before any fuzzed file arrives."""
    folder = tmp_path_factory.mktemp("prior")
    paths = [L.write(folder / "prior_v1.json", seeds["v1"]), L.write(folder / "prior_v2.json", seeds["v2"])]
    raw = folder / "prior_raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in seeds["raw"]))
    con = open_warehouse(tmp_path_factory.mktemp("w") / "w.duckdb")
    summary = ingest_files(con, [*paths, raw], IngestConfig(workers=1))
    assert [f.outcome for f in summary.files] == ["loaded"] * 3
    yield con
    con.close()


# ----- strategies ------------------------------------------------------------------------------------------
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.just([]), st.just({}), st.just([[[[[]]]]]), st.just("x" * 20_000),
    st.just(json.loads("[" * 80 + "]" * 80)),
)  # fmt: skip


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


@st.composite
def mutated(draw, document):
    """A copy of `document` with 1-3 structure-aware mutations."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate"]))
        if kind == "replace":
            parent[last] = copy.deepcopy(draw(ODD_VALUES))  # st.just values are shared: never mutate them
        elif kind == "delete":
            del parent[last]
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:
            parent[last] = [copy.deepcopy(parent[last])] * 2
    return doc


def _dump(document) -> bytes:
    return json.dumps(document, indent=draw_indent(document)).encode()


def draw_indent(document) -> int | None:
    return None if isinstance(document, dict) and len(document) % 2 else 1


@st.composite
def legacy_file(draw, seeds):
    base = copy.deepcopy(seeds[draw(st.sampled_from(["v1", "v2"]))])
    # Its own id and start time: otherwise most cases would repeat an episode already stored (unchanged).
    base["episode_id"] = draw(st.integers(100, 10**6))
    base["model_name"] = f"HostCNN-{next(_UNIQUE):09d}"  # fixed width: a cut-short draw depends on the length
    doc = draw(mutated(base))
    if draw(st.booleans()):  # a pack of the mutated episode and untouched ones, its count right or not
        episodes = [doc, copy.deepcopy(seeds["v1"])] if draw(st.booleans()) else [doc]
        count = draw(st.one_of(st.just(len(episodes)), st.integers(-1, 5)))
        doc = L.pack(episodes, num_episodes=count)
    data = _dump(doc)
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # cut short
    return ".json", data


@st.composite
def raw_file(draw, seeds):
    records = copy.deepcopy(seeds["raw"])
    records[0]["run_id"] = f"run-fuzz-{next(_UNIQUE):09d}"  # else every case is the stored run's conflict
    action = draw(st.sampled_from(["mutate", "mutate", "mutate", "drop", "repeat", "swap"]))
    index = draw(st.integers(0, len(records) - 1))
    if action == "mutate":
        records[index] = draw(mutated(records[index]))
    elif action == "drop":
        del records[index]
    elif action == "repeat":
        records.insert(index, records[index])
    else:
        other = draw(st.integers(0, len(records) - 1))
        records[index], records[other] = records[other], records[index]
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    data = ("\n".join(lines) + "\n").encode()
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return ".jsonl", data


def any_file(seeds):
    return st.one_of(
        st.tuples(st.sampled_from([".json", ".jsonl"]), st.binary(max_size=600)),
        legacy_file(seeds),
        raw_file(seeds),
    )


# ----- the property ------------------------------------------------------------------------------------------
def _snapshot(con) -> dict:
    return {
        "runs": set(con.execute("SELECT run_id, content_sha256 FROM runs").fetchall()),
        "steps": dict(con.execute("SELECT run_id, count(*) FROM steps GROUP BY 1").fetchall()),
        "counts": {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "steps", "quarantine")},
    }


def test_fuzzed_files_are_stored_or_quarantined_and_nothing_stored_is_lost(warehouse, seeds, tmp_path_factory):
    con = warehouse
    folder = tmp_path_factory.mktemp("fuzz")
    counter = iter(range(10**9))

    @settings(max_examples=FUZZ_BATCHES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(any_file(seeds), min_size=1, max_size=4))
    def check(files):
        started = time.perf_counter()
        paths = []
        for suffix, data in files:
            path = folder / f"case_{next(counter):05d}{suffix}"
            path.write_bytes(data)
            paths.append(path)
        before = _snapshot(con)
        summary = ingest_files(con, paths, IngestConfig(workers=1))
        after = _snapshot(con)

        assert [Path(f.source_file) for f in summary.files] == paths
        for outcome in summary.files:
            assert outcome.outcome in OUTCOMES, outcome
            CASES["outcomes"][outcome.outcome] = CASES["outcomes"].get(outcome.outcome, 0) + 1
        # Everything stored before is still there, unchanged.
        assert before["runs"] <= after["runs"]
        assert all(after["steps"].get(run) == n for run, n in before["steps"].items())
        # The counts add up to what the tables gained (no file here replaces a run: every path is new).
        assert after["counts"]["runs"] - before["counts"]["runs"] == summary.runs_loaded
        assert after["counts"]["steps"] - before["counts"]["steps"] == summary.steps_loaded
        assert after["counts"]["quarantine"] - before["counts"]["quarantine"] == summary.records_quarantined
        rows = con.execute(
            "SELECT source_file, position, rule, reason FROM quarantine WHERE ingest_id = ?", [summary.ingest_id]
        ).fetchall()
        for source_file, position, rule, reason in rows:
            assert source_file in map(str, paths) and position and rule and reason
        for outcome in summary.files:
            if outcome.outcome in ("quarantined", "partly_quarantined"):
                assert any(r[0] == outcome.source_file for r in rows), outcome
            if outcome.outcome in ("loaded", "partly_quarantined"):
                assert outcome.runs_loaded > 0
        logged = con.execute("SELECT count(*) FROM ingest_log WHERE ingest_id = ?", [summary.ingest_id]).fetchone()[0]
        assert logged == len(paths)
        CASES["files"] += len(paths)
        CASES["batches"] += 1
        CASES["seconds"] += time.perf_counter() - started

    check()
    assert CASES["files"] >= FUZZ_BATCHES  # at least one file per batch was really tried
    assert CASES["outcomes"].get("quarantined", 0) > 0


def fuzz_report() -> str | None:
    if not CASES["files"]:
        return None
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(CASES["outcomes"].items()))
    return (
        f"hypothesis fuzz of the readers: {CASES['files']} files in {CASES['batches']} batches tried "
        f"in {CASES['seconds']:.1f} s ({outcomes})"
    )
