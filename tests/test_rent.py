"""Compute rent (docs/arena.md, "Compute rent"): the score charges for growth, the reward follows it, and
rent 0 is the arena as it was, bit for bit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tamiyo_models.controllers.config import ControllerConfig
from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeResult, run_episode
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.rawrun import read_raw_run
from tamiyo_models.world.score import charged_score, check_rent, growth_charge

# A growing episode: conv_heavy grafted after epoch 1 on the default host (496 parameters -> 800).
GROWING = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=6, seed=3,
                        controller=ControllerConfig(kind="fixed-schedule", blueprint="conv_heavy", germinate_epoch=1))  # fmt: skip

# What this episode gave before rent existed (commit 1807b39), on the CPU. The run id pins the whole default
# configuration (a default rent other than 0 would change it); the rewards and scores are counts of images,
# so they are exact. If a deliberate change of the world moves them, regenerate them, knowing why.
BEFORE_RENT = {
    "run_id": "run-83ac0348ae5f5c25",
    "actions": ["WAIT", "GERMINATE_conv_heavy", "ADVANCE", "ADVANCE", "ADVANCE", "ADVANCE"],
    "rewards": [5.0, 16.0, 6.0, 14.5, 4.0, 0.5],
    "return": 46.0,
    "final_test_accuracy": 49.5,
    "final_parameters": 800,
    "host_parameters": 496,
}


def _without_timing(run) -> dict:
    header = dict(run.header)
    footer = {k: v for k, v in run.footer.items() if k != "wall_seconds"}
    return {"header": header, "steps": [{k: v for k, v in s.items() if k != "timing"} for s in run.steps], "footer": footer}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rent")
    explicit = dataclasses.replace(GROWING, rent=0)
    charged = dataclasses.replace(GROWING, rent=1.5)
    return {name: (result, read_raw_run(result.path))
            for name, result in (("default", run_episode(GROWING, out / "default")),
                                 ("rent0", run_episode(explicit, out / "rent0")),
                                 ("charged", run_episode(charged, out / "charged")))}  # fmt: skip


def test_rent_zero_is_the_arena_before_rent_bit_for_bit(runs):
    (default, default_run), (explicit, explicit_run) = runs["default"], runs["rent0"]
    assert GROWING.rent == 0.0 and dataclasses.replace(GROWING, rent=0).to_dict() == GROWING.to_dict()
    assert "rent" not in GROWING.to_dict()  # the configuration, hence the run id, of every stored run
    assert _without_timing(default_run) == _without_timing(explicit_run)
    assert default.episode_return == explicit.episode_return and default.score == explicit.score
    # ... and both are what the episode gave before rent existed.
    assert default_run.run_id == BEFORE_RENT["run_id"]
    assert [s["action"]["fine"] for s in default_run.steps] == BEFORE_RENT["actions"]
    assert [s["outcome"]["reward"] for s in default_run.steps] == BEFORE_RENT["rewards"]
    assert all("rent_charge" not in s["outcome"] for s in default_run.steps)
    footer = default_run.footer
    assert footer["return"] == BEFORE_RENT["return"] == default.episode_return
    assert footer["final_test_accuracy"] == BEFORE_RENT["final_test_accuracy"]
    assert footer["score"] == footer["final_test_accuracy"] == default.score and footer["rent"] == 0.0
    assert footer["final_parameters"] == BEFORE_RENT["final_parameters"]
    assert default_run.header["host_parameters"] == BEFORE_RENT["host_parameters"]


def test_a_positive_rent_charges_the_growing_step_and_the_score(runs):
    (base, base_run), (charged, charged_run) = runs["default"], runs["charged"]
    ratio = math.log2(BEFORE_RENT["final_parameters"] / BEFORE_RENT["host_parameters"])
    assert charged_run.run_id != base_run.run_id and charged_run.header["config"]["rent"] == 1.5
    # The rent changes what the controller is paid, never what it does or what trains.
    def trajectory(run):
        return [[s["action"]["fine"], s["outcome"]["val_accuracy_after"], [e["to_stage"] for e in s["outcome"]["events"]]]
                for s in run.steps]  # fmt: skip

    assert trajectory(charged_run) == trajectory(base_run)
    charges = [s["outcome"]["rent_charge"] for s in charged_run.steps]
    assert charges[1] == pytest.approx(1.5 * ratio) and charges[0] == 0 and charges[2:] == [0.0] * 4
    assert charged.episode_return == pytest.approx(base.episode_return - 1.5 * ratio, abs=1e-12)
    footer = charged_run.footer
    assert footer["rent"] == 1.5 and footer["final_test_accuracy"] == base_run.footer["final_test_accuracy"]
    assert footer["score"] == pytest.approx(footer["final_test_accuracy"] - 1.5 * ratio, abs=1e-12)
    assert charged.score == footer["score"] == charged_score(footer["final_test_accuracy"], 1.5, 800, 496)
    assert "score" in charged.summary_line()
    from tamiyo_models.episodes.story import episode_story

    assert "at rent 1.5 (what decides)" in episode_story(charged.path)
    assert "at rent" not in episode_story(base.path)


def test_tamiyo_env_returns_follow_the_rent():
    from tamiyo_models.env import TamiyoEnv
    from tamiyo_models.world.actions import FINE_INDEX

    plan = ["WAIT", "GERMINATE_conv_heavy", "ADVANCE", "ADVANCE", "ADVANCE", "ADVANCE"]
    returns = {}
    for rent in (0.0, 1.0):
        env = TamiyoEnv(dataclasses.replace(GROWING, rent=rent))
        env.reset(options={"config": dataclasses.replace(GROWING, rent=rent)})
        returns[rent] = [env.step(FINE_INDEX[name])[1] for name in plan]
    assert returns[0.0] == BEFORE_RENT["rewards"]
    assert sum(returns[1.0]) == pytest.approx(sum(returns[0.0]) - math.log2(800 / 496), abs=1e-12)


def test_the_score_function_and_bad_rents():
    assert growth_charge(0, 10**6, 1) == 0.0 and charged_score(81.25, 0, 2886, 1702) == 81.25
    assert growth_charge(1.0, 800, 400) == 1.0 and charged_score(None, 1.0, 800, 400) is None
    assert charged_score(80.0, 2.0, 1702, 1702) == 80.0  # no growth, no charge
    assert check_rent(1) == 1.0
    for bad in (-0.5, "1", True, math.nan, math.inf, None):
        with pytest.raises(ValueError, match="rent must be"):
            check_rent(bad)
    with pytest.raises(ValueError, match="rent must be"):
        EpisodeConfig(rent=-1)
    assert EpisodeConfig.from_dict({**GROWING.to_dict(), "rent": 2}).rent == 2.0
    # A footer written before rent existed: rent 0, its score is its test accuracy.
    old = {"status": "complete", "steps": 6, "final_val_accuracy": 50.0, "best_val_accuracy": 51.0, "seeds_created": 1,
           "seeds_fossilized": 1, "seeds_culled": 0, "return": 46.0, "final_test_accuracy": 49.5, "final_parameters": 800}
    result = EpisodeResult.from_footer(None, "run-x", old)
    assert result.rent == 0.0 and result.score == 49.5


SPEC = """
name = "rented"
{rent}
[base]
max_epochs = 4
dataset = {{ name = "synthetic" }}
[vary]
learning_rate = {{ min = 0.01, max = 0.1, log = true }}
"""


def test_a_spec_sets_the_rent_of_every_episode(tmp_path):
    from tamiyo_models.episodes.generation import GenerationSpec

    path = tmp_path / "rented.toml"
    path.write_text(SPEC.format(rent="rent = 1"))
    spec = GenerationSpec.load(path)
    assert spec.rent == 1.0 and {c.rent for c in spec.sample(5, seed=1)} == {1.0}
    path.write_text(SPEC.format(rent=""))
    unrented = GenerationSpec.load(path).sample(5, seed=1)
    assert {c.rent for c in unrented} == {0.0} and all("rent" not in c.to_dict() for c in unrented)


@pytest.mark.parametrize("line, message", [
    ("rent = -1", "rent: rent must be finite and >= 0"),
    ('rent = "high"', "rent: rent must be a number"),
    ("rent = true", "rent: rent must be a number"),
    ("rent = nan", "rent: rent must be finite"),
])  # fmt: skip
def test_a_bad_rent_names_the_spec_file_and_the_field(tmp_path, line, message):
    from tamiyo_models.episodes.generation import GenerationSpec, SpecError

    path = tmp_path / "bad-rent.toml"
    path.write_text(SPEC.format(rent=line))
    with pytest.raises(SpecError, match=rf"bad-rent\.toml: {message}"):
        GenerationSpec.load(path)


def test_the_rent_is_set_once_per_spec(tmp_path):
    from tamiyo_models.episodes.generation import GenerationSpec, SpecError

    path = tmp_path / "split-rent.toml"
    path.write_text(SPEC.format(rent="") + '[[regimes]]\nname = "a"\nbase = { rent = 2.0 }\n')
    with pytest.raises(SpecError, match=r"split-rent\.toml: regimes\[a\]\.base\.rent: the rent is set once"):
        GenerationSpec.load(path)


def test_ingestion_stores_rent_and_score_and_older_runs_pay_none(runs, tmp_path):
    import json

    from tamiyo_models.warehouse import connect_read_only, ingest_folder, query

    landing = tmp_path / "raw"
    landing.mkdir()
    # A run written before rent existed: no rent in its configuration, no rent or score in its footer.
    lines = [json.loads(line) for line in runs["default"][0].path.read_text().splitlines()]
    assert "rent" not in lines[0]["config"]
    lines[-1] = {k: v for k, v in lines[-1].items() if k not in ("rent", "score")}
    (landing / runs["default"][0].path.name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    charged = runs["charged"][0]
    (landing / charged.path.name).write_bytes(charged.path.read_bytes())
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(landing, warehouse)
    assert summary.count("loaded") == 2 and summary.records_quarantined == 0
    with connect_read_only(warehouse) as con:
        rows = dict(con.execute("SELECT r.run_id, (r.rent, e.score, e.final_test_accuracy) FROM runs r JOIN episodes e USING (run_id)").fetchall())
    assert rows[runs["default"][0].run_id] == (0.0, 49.5, 49.5)
    assert rows[charged.run_id] == (1.5, charged.score, 49.5)
    summary_rows = query(warehouse, "SELECT run_id, rent, score, final_test_accuracy, decided_by, host_parameters, "
                                    "final_parameters FROM episode_summary ORDER BY rent").to_dicts()  # fmt: skip
    assert [r["decided_by"] for r in summary_rows] == ["test accuracy (rent 0)", "score (charged)"]
    assert summary_rows[1]["score"] == pytest.approx(49.5 - 1.5 * math.log2(800 / 496))
    assert (summary_rows[1]["host_parameters"], summary_rows[1]["final_parameters"]) == (496, 800)
    by_controller = query(warehouse, "SELECT rent, mean_score, mean_test_accuracy FROM outcomes_by_controller ORDER BY rent")
    assert by_controller.height == 2 and by_controller["mean_test_accuracy"].to_list() == [49.5, 49.5]
    transitions = query(warehouse, "SELECT run_id, sum(reward) AS total, any_value(score) AS score, any_value(rent) AS rent "
                                   "FROM rl_transitions GROUP BY run_id ORDER BY rent").to_dicts()  # fmt: skip
    assert transitions[0]["total"] == 46.0 and transitions[1]["total"] == pytest.approx(46.0 - 1.5 * math.log2(800 / 496))


def test_a_warehouse_from_before_rent_is_migrated_without_losing_a_row(runs, tmp_path):
    import duckdb

    from tamiyo_models.warehouse import ingest_folder, table_counts
    from tamiyo_models.warehouse.store import open_warehouse
    from tamiyo_models.warehouse.tables import ALL_TABLES

    landing = tmp_path / "raw"
    landing.mkdir()
    result = runs["default"][0]
    (landing / result.path.name).write_bytes(result.path.read_bytes())
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(landing, warehouse)
    before = table_counts(warehouse, live=True)
    # Back to the layout before rent: no runs.rent, no episodes.score (views over them dropped first).
    with duckdb.connect(str(warehouse)) as con:
        for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall():
            con.execute(f"DROP VIEW {view}")
        con.execute("ALTER TABLE runs DROP COLUMN rent")
        con.execute("ALTER TABLE episodes DROP COLUMN score")
    open_warehouse(warehouse).close()
    open_warehouse(warehouse).close()  # and again: the migration runs once, opening stays idempotent
    assert table_counts(warehouse, live=True) == before and set(before) == set(ALL_TABLES)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT rent, score, final_test_accuracy FROM runs JOIN episodes USING (run_id)").fetchall() == [(0.0, 49.5, 49.5)]


def _hand_made(test: float, parameters: int, rent: float) -> EpisodeResult:
    score = charged_score(test, rent, parameters, 1000)
    return EpisodeResult("r", None, "complete", 4, test, test, 1, 0, 0, 0.0, 1.0, final_test_accuracy=test,
                         test_accuracy_last=test, final_parameters=parameters, rent=rent, score=score)  # fmt: skip


def test_headroom_decides_on_the_score_and_shows_the_accuracy_beside_it():
    from tamiyo_models.evaluation.headroom import HeadroomConfig, markdown_report, summarise
    from tamiyo_models.evaluation.paired import EpisodeOutcome, PairedRuns

    configs = [dataclasses.replace(GROWING, seed=s, rent=1.0) for s in range(4)]
    arms = {"heuristic": ControllerConfig(kind="heuristic"), "grow": ControllerConfig(kind="fixed-schedule")}
    runs = PairedRuns(configs, arms, "heuristic")
    for i in range(4):
        # Growing doubles the network (charge 1 pp) for +0.5 pp of accuracy: it wins on accuracy, loses on score.
        for arm, test, parameters in (("heuristic", 80.0 + i, 1000), ("grow", 80.5 + i, 2000)):
            runs.outcomes[(i, arm, 0)] = EpisodeOutcome(i, "all", arm, 0, _hand_made(test, parameters, 1.0))
        runs.outcomes[(i, "heuristic", 1)] = EpisodeOutcome(i, "all", "heuristic", 1, _hand_made(80.25 + i, 1000, 1.0))
    assert runs.rent() == 1.0 and runs.score(0, "grow") == 79.5 and runs.score(0, "grow", which="test_accuracy") == 80.5
    result = summarise(runs, HeadroomConfig(controllers=("heuristic", "grow"), configs_per_regime=4, resamples=200))
    row = result.regimes[0].row("grow")
    assert row.difference.mean == pytest.approx(-0.5) and row.accuracy_difference.mean == pytest.approx(0.5)
    assert (row.wins, row.losses) == (0, 4) and row.mean_test == pytest.approx(81.0) and row.mean_accuracy == pytest.approx(82.0)
    md = markdown_report(result)
    assert "charged 1 pp per doubling of parameters" in md and "the score decides" in md and "test accuracy diff" in md
    mixed = PairedRuns([configs[0], GROWING], arms, "heuristic")
    with pytest.raises(ValueError, match="different rents"):
        mixed.rent()


def test_live_evaluation_and_the_champion_rule_read_the_same_charged_score(tmp_path):
    from tamiyo_models.evaluation.live import evaluate_live_many
    from tamiyo_models.evaluation.paired import run_paired
    from tamiyo_models.evaluation.report import live_section
    from tamiyo_models.nightly.champion import PromotionRule, compare

    configs = [dataclasses.replace(GROWING, seed=s, max_epochs=4, rent=2.0) for s in (11, 12)]
    grow = ControllerConfig(kind="fixed-schedule", blueprint="conv_heavy", germinate_epoch=0)
    live = evaluate_live_many({}, configs, tmp_path, references={"grow": grow}, resamples=200)["grow"]
    assert live.rent == 2.0 and "charged 2 pp" in live.decided_by
    for pair in live.pairs:
        assert pair.policy_parameters == 800
        charge = 2.0 * math.log2(800 / 496)
        assert pair.policy_final == pytest.approx(pair.policy_accuracy - charge, abs=1e-12)
    assert live.mean_difference == pytest.approx(live.accuracy_difference.mean - 2.0 * math.log2(800 / 496)
                                                 + np.mean([2.0 * math.log2(p.heuristic_parameters / 496) for p in live.pairs]))  # fmt: skip
    assert any("decides" in line for line in live_section(live))
    # The nightly's champion rule goes through PairedRuns.score("test"): the same charged score, episodes reused.
    runs = run_paired(configs, {"heuristic": ControllerConfig(kind="heuristic"), "grow": grow}, tmp_path)
    comparison = compare(runs, "grow", "challenger", grow, PromotionRule(min_pairs=1, resamples=200))
    assert comparison.difference == pytest.approx(live.mean_difference)
