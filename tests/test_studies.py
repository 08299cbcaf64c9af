"""Studies instead of scripts: a study file is checked before anything runs, its paired design runs on real
short episodes with its held-out seeds registered, its rows land in the warehouse, a rerun reads its episodes
back, and docs/results.md is generated from the table."""

import duckdb
import pytest

from tamiyo_models.studies.study import StudyError, load_study, results_markdown, run_study

SPEC = """
name = "study-test"
[base]
max_epochs = 5
[base.dataset]
name = "synthetic"
[vary]
"host.widths" = [[2, 4, 8], [4, 8, 16]]
learning_rate = { min = 0.03, max = 0.08, log = true }
[[controllers]]
kind = "heuristic"
"""

STUDY = """
name = "tiny"
claim = "grafting conv_heavy at epoch 1 beats the heuristic on 5-epoch synthetic episodes"
[heldout]
spec = "{spec}"
configs_per_regime = 4
batch_seed = 42
[design]
reference = "heuristic"
arms = ["fixed:conv_heavy@1"]
fresh_orders = 1
[rule]
min_pairs = 3
[compute]
workers = 2
"""


def _study(tmp_path, text: str = STUDY):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    path = tmp_path / "tiny.toml"
    path.write_text(text.format(spec=spec))
    return path


@pytest.mark.parametrize("change, message", [
    (("configs_per_regime = 4", "configs_per_regime = \"four\""), "heldout.configs_per_regime must be int"),
    (("arms = [\"fixed:conv_heavy@1\"]", "arms = [\"fixed:conv_heavy@x\"]"), "a fixed schedule is written"),
    (("arms = [\"fixed:conv_heavy@1\"]", "arms = [\"mine=missing.pt\"]"), "policy file 'missing.pt' of arm 'mine' not found"),
    (("batch_seed = 42\n", ""), "missing heldout.batch_seed"),
    (("[rule]", "[rules]"), "unknown key(s) rules"),
])  # fmt: skip
def test_a_bad_study_file_is_refused_naming_the_file_and_key(tmp_path, change, message):
    path = _study(tmp_path, STUDY.replace(*change))
    with pytest.raises(StudyError) as error:
        load_study(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_study_runs_records_its_rows_and_reruns_from_disk(tmp_path):
    path = _study(tmp_path)
    warehouse = tmp_path / "w.duckdb"
    seen = []
    first = run_study(path, warehouse=warehouse, out_root=tmp_path / "studies", on_result=seen.append, log=lambda _: None)
    assert first.episodes == 4 * (2 + 1 + 1)  # each arm on order 0, each on 1 fresh order
    assert len(seen) == first.episodes
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("SELECT arm, reference, regime, pairs, fresh_orders, null_rms, holds, study_sha256 FROM study_results").fetchall()
    assert rows and rows[0][:5] == ("fixed:conv_heavy@1", "heuristic", "all", 4, 1) and rows[0][5] >= 0
    # The held-out seeds are registered as evaluation seeds (odd) under the study's name.
    registered = con.execute("SELECT count(*), bool_and(seed % 2 = 1) FROM seed_registry WHERE night = 'study:tiny'").fetchall()
    assert registered == [(4, True)]
    con.close()
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "studies" / "tiny" / "episodes").rglob("*.jsonl")}
    assert len(files) == first.episodes
    second = run_study(path, warehouse=warehouse, out_root=tmp_path / "studies", log=lambda _: None)
    assert second.rows[0]["difference"] == first.rows[0]["difference"]
    assert {p: p.stat().st_mtime_ns for p in files} == files  # read back, not rerun
    text = results_markdown([warehouse])
    assert "## tiny" in text and "fixed:conv_heavy@1 − heuristic" in text and "Do not edit by hand" in text
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM study_results").fetchall()[0][0] == len(first.rows)  # replaced, not added
