"""Studies instead of scripts: a study file is checked before anything runs, its paired design runs on real
short episodes with its held-out seeds registered, its rows land in the warehouse, a rerun reads its episodes
back, and docs/results.md is generated from the table."""

import dataclasses
import json

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


DATA_SPEC = SPEC.replace('kind = "heuristic"', 'kind = "epsilon-heuristic"\nepsilon = 0.3')


def _data(name: str, episodes: int, batch_seed: int, *extra: str) -> str:
    """A [[data]] table on the data spec (its path filled in by _trained_study), with extra lines."""
    return "\n".join(["", "[[data]]", f'name = "{name}"', 'spec = "{data_spec}"', f"episodes = {episodes}",
                      f"batch_seed = {batch_seed}", *extra, ""])  # fmt: skip


TRAINED = STUDY.replace('arms = ["fixed:conv_heavy@1"]', 'arms = ["bcq", "imitation"]') + _data("explore", 10, 7) + """
[[train]]
name = "bcq"
data = "explore"
phase = "phase3"
settings = {{ algorithm = "bcq", bcq = {{ updates = 200 }}, selection_fqe = {{ updates = 100 }}, report_fqe = {{ updates = 100 }} }}

[[train]]
name = "imitation"
data = "explore"
phase = "phase1"
settings = {{ controllers = [], imitation = {{ epochs = 3 }} }}
"""


def _trained_study(tmp_path, text: str = TRAINED):
    data_spec = tmp_path / "data-spec.toml"
    data_spec.write_text(DATA_SPEC)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    path = tmp_path / "trained.toml"
    path.write_text(text.format(spec=spec, data_spec=data_spec))
    return path


@pytest.mark.parametrize("change, message", [
    (("bcq = {{ updates = 200 }}", "bcq = {{ updaets = 200 }}"), "train[0].settings.bcq: unknown key(s) updaets of BCQConfig"),
    (('data = "explore"\nphase = "phase3"', 'data = "nowhere"\nphase = "phase3"'), "data 'nowhere' is not a [[data]] name"),
    (('phase = "phase3"', 'phase = "phase4"'), "unknown key(s) bcq, report_fqe, selection_fqe of OnlineRunConfig"),
    (('phase = "phase1"\nsettings = {{ controllers = [], imitation = {{ epochs = 3 }} }}',
      'phase = "phase4"\nsettings = {{ algorithm = "vine", vine = {{ iterations = 2 }} }}'), "vine.iterations = 0"),
    (('data = "explore"\nphase = "phase1"\nsettings = {{ controllers = [], imitation = {{ epochs = 3 }} }}',
      'phase = "phase4"\nsettings = {{ algorithm = "vine" }}'), "a vine arm learns from the fork studies of its data: give data"),
    (('phase = "phase1"\nsettings = {{ controllers = [], imitation = {{ epochs = 3 }} }}',
      'phase = "phase4"\nsettings = {{ algorithm = "vine", initial_policy = "fixed:conv_heavy@1" }}'),
     "initial_policy 'fixed:conv_heavy@1' is a fixed schedule, not an actor: add distil"),
    (("episodes = 10", "episodes = 0"), "episodes must be >= 1"),
])  # fmt: skip
def test_a_bad_training_section_is_refused_naming_the_file_and_key(tmp_path, change, message):
    path = _trained_study(tmp_path, TRAINED.replace(*change))
    with pytest.raises(StudyError) as error:
        load_study(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_study_trains_its_own_arms_on_registered_training_seeds_and_resumes(tmp_path):
    from tamiyo_models.studies.training import learned_seeds, trained_policy

    path = _trained_study(tmp_path)
    config = load_study(path)
    assert config.trained[0].settings.bcq.updates == 200 and config.trained[0].settings.bcq.threshold == 0.3  # the library's default
    warehouse, root = tmp_path / "w.duckdb", tmp_path / "studies"
    lines = []
    first = run_study(path, warehouse=warehouse, out_root=root, log=lines.append)
    assert {r["arm"] for r in first.rows} == {"bcq", "imitation"}
    assert first.episodes == 10 + 4 * (3 + 3)  # the data, then the reference and both arms on order 0 and 1 fresh order
    con = duckdb.connect(str(warehouse), read_only=True)
    registry = dict(con.execute("SELECT source, list(seed) FROM seed_registry WHERE night = 'study:tiny' GROUP BY 1").fetchall())
    con.close()
    training, heldout = set(registry["data:explore"]), set(registry["heldout"])
    assert len(training) == 10 and all(s % 2 == 0 for s in training) and all(s % 2 == 1 for s in heldout)
    for arm in ("bcq", "imitation"):  # each learned from exactly the data's seeds, never a held-out one
        assert learned_seeds(trained_policy(root / "tiny", arm)) == training
    stamps = {arm: (root / "tiny" / "policies" / arm / "done.json").stat().st_mtime_ns for arm in ("bcq", "imitation")}
    lines.clear()
    second = run_study(path, warehouse=warehouse, out_root=root, log=lines.append)
    assert [r["difference"] for r in second.rows] == [r["difference"] for r in first.rows]
    assert {arm: (root / "tiny" / "policies" / arm / "done.json").stat().st_mtime_ns for arm in stamps} == stamps
    assert any("bcq already trained" in line for line in lines)
    # Off-policy calibration against the study's live result (tamiyo ope --live-study): the arms by their names.
    from tamiyo_models.cli import main
    from tamiyo_models.ope.report import live_differences

    reference, live = live_differences(warehouse, "tiny")
    assert reference == "heuristic" and live["heuristic"] == 0.0 and set(live) == {"heuristic", "bcq", "imitation"}
    row = next(r for r in first.rows if r["arm"] == "bcq")
    assert live["bcq"] == pytest.approx((row["difference"] + row["fresh_difference"]) / 2)  # 1 fresh order
    out = tmp_path / "ope"
    assert main(["ope", "--warehouse", str(root / "tiny" / "data" / "explore.duckdb"), "--references", "heuristic",
                 "--updates", "50", "--live-study", "tiny", "--results-warehouse", str(warehouse), "--out", str(out),
                 *(f"{arm}={trained_policy(root / 'tiny', arm)}" for arm in ("bcq", "imitation"))]) == 0  # fmt: skip
    assert json.loads((out / "ope.json").read_text())["calibration"] | {"spearman": 0, "mean_abs_error_pp": 0} == {
        "policies": 2, "baseline": "heuristic", "spearman": 0, "mean_abs_error_pp": 0}
    # Two arms cannot be ranked against themselves: no "live against itself" line (it needs 3).
    assert json.loads((out / "ope.json").read_text())["live_agreement"] is None
    assert "Live against itself" not in (out / "ope.md").read_text()
    policy = str(trained_policy(root / "tiny", "bcq"))
    for bad in (f"={policy}", f"heuristic={policy}"):  # no empty name, no policy posing as the baseline
        assert main(["ope", "--warehouse", str(root / "tiny" / "data" / "explore.duckdb"), bad, "--out", str(out)]) == 2
    assert main(["ope", "--warehouse", str(root / "tiny" / "data" / "explore.duckdb"), "--live-study", "none",
                 "--results-warehouse", str(warehouse), "--out", str(out)]) == 2  # fmt: skip


ONLINE = TRAINED.replace('arms = ["bcq", "imitation"]', 'arms = ["imitation", "ppo"]') + """
[[train]]
name = "ppo"
phase = "phase4"
settings = {{ algorithm = "ppo", spec = "{data_spec}", workers = 1, initial_policy = "imitation", ppo = {{ episodes = 4, episodes_per_iteration = 2 }} }}
"""


def test_a_study_trains_a_phase4_arm_in_live_episodes_on_registered_seeds(tmp_path):
    from tamiyo_models.studies.training import learned_seeds, trained_policy

    path = _trained_study(tmp_path, ONLINE)
    warehouse, root = tmp_path / "w.duckdb", tmp_path / "studies"
    result = run_study(path, warehouse=warehouse, out_root=root, log=lambda _: None)
    assert {r["arm"] for r in result.rows} == {"imitation", "ppo"}
    con = duckdb.connect(str(warehouse), read_only=True)
    registry = dict(con.execute("SELECT source, list(seed) FROM seed_registry WHERE night = 'study:tiny' GROUP BY 1").fetchall())
    con.close()
    ppo_seeds, heldout = set(registry["train:ppo"]), set(registry["heldout"])
    assert ppo_seeds and all(s % 2 == 0 for s in ppo_seeds) and not ppo_seeds & heldout
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    ran = {read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(root / "tiny" / "policies" / "ppo" / "raw")}
    assert ran and ran <= ppo_seeds  # the environments ran only registered configurations
    # The policy says it learned from its own episodes and from the data its start (the imitation arm) learned from.
    assert learned_seeds(trained_policy(root / "tiny", "ppo")) >= ppo_seeds | set(registry["data:explore"])


VINE = STUDY.replace('arms = ["fixed:conv_heavy@1"]', 'arms = ["vine"]') + _data(
    "forks", 6, 9, 'controller = "fixed:conv_heavy@1"     # fork studies around the schedule',
    'branching = {{ horizon = "end", fork_rule = "random", max_forks = 2, min_step = 1 }}') + """
[[train]]
name = "vine"
data = "forks"
phase = "phase4"
settings = {{ algorithm = "vine", initial_policy = "fixed:conv_heavy@1", distil = {{ updates = 200 }}, vine = {{ updates = 200, region_fdr = 1.0 }} }}
"""


def test_a_study_trains_a_vine_arm_on_the_forks_of_its_registered_data(tmp_path):
    """The vine as a study arm (issue 33): no episodes of its own, one region-rule improvement of its start (here
    a fixed schedule's student) over the fork studies its data set stored; it learned from the data's registered
    training seeds only, and the study grades it on held-out configurations."""
    from tamiyo_models.studies.training import learned_seeds, trained_policy

    path = _trained_study(tmp_path, VINE)
    warehouse, root = tmp_path / "w.duckdb", tmp_path / "studies"
    lines: list[str] = []
    result = run_study(path, warehouse=warehouse, out_root=root, log=lines.append)
    assert {r["arm"] for r in result.rows} == {"vine"}
    assert any("vine, the region rule over the forks stored in data forks" in line for line in lines)
    assert not (root / "tiny" / "policies" / "vine" / "raw").exists()  # no episodes of its own
    con = duckdb.connect(str(warehouse), read_only=True)
    registry = dict(con.execute("SELECT source, list(seed) FROM seed_registry WHERE night = 'study:tiny' GROUP BY 1").fetchall())
    con.close()
    data = duckdb.connect(str(root / "tiny" / "data" / "forks.duckdb"), read_only=True)
    forks = data.execute("SELECT count(*) FROM branches WHERE horizon IS NULL").fetchall()[0][0]
    controllers = data.execute("SELECT DISTINCT json_extract_string(config_json, '$.controller.label') FROM runs").fetchall()
    data.close()
    assert forks > 0 and controllers == [("fixed:conv_heavy@1",)]  # the data's own branching and controller
    assert learned_seeds(trained_policy(root / "tiny", "vine")) == set(registry["data:forks"])
    assert result.episodes == 6 + 4 * (2 + 1 + 1)  # the parents, then the reference and the arm on 2 orders each
    _ships_with_a_card_from_the_record(path, warehouse, root, tmp_path / "shipped")


def _ships_with_a_card_from_the_record(path, warehouse, root, folder):
    """`tamiyo study ship`: the trained arm becomes shipped:NAME, its card's numbers are the study_results rows."""
    from tamiyo_models.controllers.saved_policy import policy_controller
    from tamiyo_models.controllers.shipped import shipped_policies
    from tamiyo_models.nightly.report import ci_text
    from tamiyo_models.studies.ship import ShipConfig, ship_arm
    from tamiyo_models.studies.training import trained_policy

    config = ShipConfig(study=str(path), arm="vine", name="tiny-vine", warehouse=str(warehouse), out_root=str(root), folder=str(folder))
    shipped = ship_arm(config)
    assert [p.name for p in shipped_policies(folder=folder)] == ["tiny-vine"] and shipped.spec == "study-test"  # the spec's name
    card = shipped.card.read_text()
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("SELECT regime, pairs, difference, low, high FROM study_results WHERE arm = 'vine' ORDER BY regime").fetchall()
    con.close()
    for regime, pairs, difference, low, high in rows:
        assert f"| {regime} | {pairs} | {ci_text(difference, low, high)} |" in card
    history = json.loads(next((root / "tiny" / "policies" / "vine").rglob("vine-history.json")).read_text())
    assert "Where it acts differently from its start `fixed:conv_heavy@1`" in card  # the vine's labelled regions, from its record
    assert "## Where it acts differently from the reference" in card  # its held-out episodes beside the reference's
    for cell in (c for c in history["region_evidence"] if c["label"]):
        assert f"- {cell['region']}: {cell['action']} instead, {ci_text(cell['mean'], cell['low'], cell['high'])} pp over {cell['forks']} forks" in card
    assert policy_controller(shipped.path).metadata["policy_sha256"] == policy_controller(trained_policy(root / "tiny", "vine")).metadata["policy_sha256"]
    for change, message in [({}, "is shipped already"), ({"arm": "fixed:conv_heavy@1"}, "is not a trained arm"),
                            ({"name": "tiny vine"}, "use letters, digits"),
                            ({"name": "other", "out_root": str(root.parent / "elsewhere")}, "has no trained policy"),
                            ({"name": "other", "warehouse": str(root.parent / "none.duckdb")}, "no study_results recorded")]:  # fmt: skip
        with pytest.raises(StudyError, match=message):
            ship_arm(dataclasses.replace(config, **change))
    assert ship_arm(dataclasses.replace(config, force=True)).card.read_text() == card


# study_results as the code before the rent created it (commit be19bb4).
_OLD_STUDY_RESULTS = """CREATE TABLE study_results (
    study VARCHAR NOT NULL, claim VARCHAR NOT NULL, arm VARCHAR NOT NULL, reference VARCHAR NOT NULL,
    regime VARCHAR NOT NULL, pairs BIGINT, mean_arm DOUBLE, mean_reference DOUBLE, difference DOUBLE, low DOUBLE,
    high DOUBLE, wins BIGINT, ties BIGINT, losses BIGINT, fresh_orders BIGINT, fresh_difference DOUBLE, fresh_low DOUBLE,
    fresh_high DOUBLE, null_rms DOUBLE, holds BOOLEAN, verdict VARCHAR, heldout VARCHAR, study_file VARCHAR,
    study_sha256 VARCHAR, episodes BIGINT, seconds DOUBLE, machine VARCHAR,
    recorded_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (study, arm, regime))"""


def test_a_study_at_rent_shows_the_accuracy_beside_the_score_and_old_rows_stay_rent_zero(tmp_path):
    from tamiyo_models.studies.study import ADDED_COLUMNS, record_study

    row = {"study": "old", "claim": "c", "arm": "x", "reference": "heuristic", "regime": "all", "pairs": 6, "mean_arm": 1.0,
           "mean_reference": 0.5, "difference": 0.5, "low": 0.1, "high": 0.9, "wins": 4, "ties": 1, "losses": 1,
           "fresh_orders": 2, "fresh_difference": 0.4, "fresh_low": 0.0, "fresh_high": 0.8, "null_rms": 0.3, "holds": False,
           "verdict": "v", "heldout": "h", "study_file": "studies/old.toml", "study_sha256": "x", "episodes": 10,
           "seconds": 1.0, "machine": "m"}  # fmt: skip
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(_OLD_STUDY_RESULTS)
        con.execute(f"INSERT INTO study_results VALUES ({', '.join('?' * len(row))}, DEFAULT)", list(row.values()))
        charged = {**row, "study": "charged", "study_file": "studies/charged.toml", "difference": -0.5, "low": -0.7,
                   "high": -0.3, "rent": 1.0, "accuracy_difference": 0.5, "accuracy_low": 0.3, "accuracy_high": 0.7,
                   "fresh_accuracy_difference": 0.4, "fresh_accuracy_low": 0.2, "fresh_accuracy_high": 0.6}  # fmt: skip
        record_study(con, "charged", [charged])
        rows = dict(con.execute("SELECT study, rent FROM study_results").fetchall())
        assert rows == {"old": 0.0, "charged": 1.0}  # the old row kept, at rent 0
        assert {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'study_results' "
                                          "AND comment IS NOT NULL").fetchall()} >= {c for c, _ in ADDED_COLUMNS}  # fmt: skip
    md = results_markdown([warehouse])
    old, new = md.split("## old")[1].split("## ")[0], md.split("## charged")[1].split("## ")[0]
    assert "| x − heuristic | all | 6 | +0.50 [+0.10, +0.90] | +0.40 [+0.00, +0.80] | 0.30 | 4/1/1 | no |" in old
    assert "Rent" not in old and "Rent 1: decided by the score" in new
    assert "| x − heuristic | all | 6 | -0.50 [-0.70, -0.30] | +0.40 [+0.00, +0.80] | +0.50 [+0.30, +0.70] | +0.40 [+0.20, +0.60] | 0.30 |" in new


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).parent.parent.joinpath("studies").glob("*.toml")),
                         ids=lambda p: p.name)  # fmt: skip
def test_every_shipped_study_file_is_valid(path, capsys):
    """A study file under studies/ is checked as `tamiyo study run` checks it before any episode: keys, arms,
    the trained arms' settings and data; a study written but not yet run must still be runnable, and
    `tamiyo study run --check` prints its design (an optional settings section once broke that print)."""
    from tamiyo_models.cli import main

    config = load_study(path)
    assert config.name == path.stem and config.arms
    assert main(["study", "run", str(path), "--check"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{config.name}: ") and printed.count("  trained arm ") == len(config.trained)


def test_results_keep_the_sections_of_warehouses_not_read_this_time(tmp_path):
    """`tamiyo study results --write FILE --keep`: a section no warehouse given holds stays (marked as kept), a
    section a warehouse holds is replaced whole, studies stay before the nightly champion, and a rerun changes
    nothing."""
    from tamiyo_models.cli import main
    from tamiyo_models.studies.study import KEPT_NOTE, merge_results

    head = results_markdown([tmp_path / "none.duckdb"]).split("No study recorded yet.")[0]
    earlier = (head + "## old-study\n\nClaim: old\n\n| a |\n\n## shared\n\nClaim: before\n\n"
               "## The nightly champion (gone.duckdb)\n\n| night |\n")  # fmt: skip
    fresh = head + "## shared\n\nClaim: after\n\n## new-study\n\nClaim: new\n\n## The nightly champion (here.duckdb)\n\n| n |\n"
    merged = merge_results(earlier, fresh)
    headings = [line for line in merged.splitlines() if line.startswith("## ")]
    assert headings == ["## old-study", "## shared", "## new-study", "## The nightly champion (gone.duckdb)",
                        "## The nightly champion (here.duckdb)"]  # fmt: skip
    assert "Claim: after" in merged and "Claim: before" not in merged
    assert merged.count(KEPT_NOTE) == 2 and "Claim: old\n\n| a |" in merged
    assert merge_results(merged, fresh) == merged
    # A file that holds a heading twice (a hand edit, a bad merge) gets each section once, the first one kept.
    twice = earlier + "\n## old-study\n\nClaim: old again\n\n## shared\n\nClaim: before again\n"
    merged_twice = merge_results(twice, fresh)
    assert [line for line in merged_twice.splitlines() if line.startswith("## ")] == headings
    assert "Claim: old\n" in merged_twice and "old again" not in merged_twice and "Claim: before" not in merged_twice

    out = tmp_path / "results.md"
    out.write_text(earlier)
    assert main(["study", "results", "--warehouse", str(tmp_path / "none.duckdb"), "--write", str(out), "--keep"]) == 0
    assert "## old-study" in out.read_text() and "No study recorded yet." not in out.read_text()
    assert main(["study", "results", "--keep"]) == 2
