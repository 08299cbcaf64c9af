"""The nightly improvement loop on real components: real short episodes, a real DuckDB warehouse, real offline
training, real MLflow on sqlite and a real Dagster materialization of the `nightly` job.

Three mini-nights run in a row (the second killed halfway and resumed, the third through Dagster): the champion
moves only when the rule passes, no training seed ever equals an evaluation seed (PPO's episodes included), the
Phase 4 challengers learn from every night so far, and champion_history holds every decision."""

import dataclasses
import json
from pathlib import Path

import duckdb
import pytest

from tamiyo_models.nightly import champion as champ
from tamiyo_models.nightly.night import (
    PPO_STARTS, NightPaths, batch_seed, evaluate_night, generate_night, ingest_night, mini_night, run_night, train_challengers,
)  # fmt: skip
from tamiyo_models.warehouse.seeds import EVALUATION, TRAINING, claim_seeds, overlapping_seeds, seed_class

# The smallest night that still has every stage: 6-epoch digits episodes, one Phase 3 challenger, the mini-night's
# Phase 4 pair (vine, and PPO on 4 episodes), one grid controller.
NIGHT = mini_night(training_episodes=8, max_epochs=6, heldout_per_regime=3, reference_grid=("fixed:conv_heavy@1",),
                   challengers=("bcq",), min_updates=60, passes_over_data=5.0)  # fmt: skip
NIGHTS = ("2026-12-01", "2026-12-02", "2026-12-03")


def _paths(root: Path) -> NightPaths:
    return NightPaths(nights=root / "nights", landing=root / "raw", warehouse=root / "warehouse.duckdb",
                      mlflow_root=str(root / "mlflow"))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Config:
    seed: int


def test_seed_classes_keep_training_and_evaluation_apart(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    drawn = [_Config(s) for s in (10, 11, 12, 12, 7)]
    train = claim_seeds(con, drawn, TRAINING, "2026-12-01", "generation")
    assert [c.seed for c in train] == [10, 10, 12, 12, 6]  # even: training
    first = claim_seeds(con, drawn, EVALUATION, "2026-12-01", "evaluation")
    assert [c.seed for c in first] == [11, 13, 15, 17, 7]  # odd, each used once (12 -> 13 taken -> 15, ...)
    # The same night and source asking again (a resumed night) gets the very same seeds ...
    assert [c.seed for c in claim_seeds(con, drawn, EVALUATION, "2026-12-01", "evaluation")] == [c.seed for c in first]
    # ... another night never does.
    second = claim_seeds(con, drawn, EVALUATION, "2026-12-02", "evaluation")
    assert not {c.seed for c in second} & {c.seed for c in first}
    assert all(c.seed % 2 == 1 for c in second)
    purposes = dict(con.execute("SELECT seed, purpose FROM seed_registry").fetchall())
    assert all((purpose == TRAINING) == (seed % 2 == 0) for seed, purpose in purposes.items())
    assert seed_class(11, TRAINING) == 10 and seed_class(10, EVALUATION) == 11
    with pytest.raises(ValueError, match="unknown seed purpose"):
        seed_class(3, "tuning")


def test_an_evaluation_seed_avoids_every_run_already_in_the_warehouse(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE runs (run_id VARCHAR, seed BIGINT)")
    con.execute("INSERT INTO runs VALUES ('old', 21), ('older', 23)")  # ingested before the registry existed
    assert [c.seed for c in claim_seeds(con, [_Config(20)], EVALUATION, "2026-12-01", "evaluation")] == [25]
    assert overlapping_seeds(con) == []


def _comparison(arm: str, difference: float, low: float, fresh: float, fresh_low: float, pairs: int = 8) -> champ.Comparison:
    return champ.Comparison(arm=arm, role="challenger", controller={"kind": "fixed-schedule", "blueprint": "conv_heavy",
                            "germinate_epoch": 1, "label": arm}, pairs=pairs, mean_arm=90.0, mean_champion=89.0,
                            difference=difference, low=low, high=difference + 1, wins=5, ties=1, losses=2, fresh_orders=2,
                            fresh_difference=fresh, fresh_low=fresh_low, fresh_high=fresh + 1, null_rms=0.7)  # fmt: skip


def test_the_rule_promotes_only_on_both_intervals_above_zero():
    rule = champ.PromotionRule(min_pairs=6)
    cases = {
        "both": _comparison("fixed:conv_heavy@0", 0.5, 0.1, 0.4, 0.05),
        "original only": _comparison("fixed:conv_heavy@1", 0.9, 0.3, 0.2, -0.1),
        "fresh only": _comparison("fixed:conv_heavy@3", 0.2, -0.1, 0.6, 0.2),
        "too few pairs": _comparison("fixed:conv_light@1", 2.0, 1.0, 2.0, 1.0, pairs=5),
        "both, smaller": _comparison("never", 0.3, 0.05, 0.3, 0.01),
    }
    for name, c in cases.items():
        c.passes, c.reason = champ.judge(c, rule)
    assert {n for n, c in cases.items() if c.passes} == {"both", "both, smaller"}
    assert "not replicated" in cases["original only"].reason and "fewer than" in cases["too few pairs"].reason
    assert champ.choose(list(cases.values())).arm == "fixed:conv_heavy@0"  # the highest fresh-order mean
    assert champ.choose([cases["original only"], cases["fresh only"]]) is None


def test_a_promotion_moves_the_champion_in_the_warehouse_and_the_mlflow_alias(tmp_path):
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    rule = champ.PromotionRule()
    start = champ.current_champion(con)
    assert start.name == "heuristic" and start.since is None
    winner = _comparison("fixed:conv_heavy@0", 0.5, 0.1, 0.4, 0.05)
    loser = _comparison("fixed:conv_heavy@3", 0.2, -0.1, 0.6, 0.2)
    for c in (winner, loser):
        c.passes, c.reason = champ.judge(c, rule)
    tracking = TrackingConfig(root=str(tmp_path / "mlflow"))
    version = champ.register_champion(tracking, "test", "2026-12-01", winner, None)
    champ.record_night(con, "2026-12-01", "test", start, [winner, loser], winner, 1, rule, version)
    now = champ.current_champion(con)
    assert now.name == "fixed:conv_heavy@0" and now.since == "2026-12-01"
    assert now.controller.kind == "fixed-schedule" and now.controller.germinate_epoch == 1  # the stored settings
    assert champ.current_champion(con, before="2026-12-01").name == "heuristic"
    alias = Tracker(tracking).client.get_model_version_by_alias("tamiyo-champion-test", "champion")
    assert str(alias.version) == version
    # A rerun of the same night replaces its rows, never duplicates them; a night without a pass keeps the champion.
    champ.record_night(con, "2026-12-01", "test", start, [winner, loser], winner, 1, rule, version)
    champ.record_night(con, "2026-12-02", "test", now, [loser], None, 2, rule)
    rows = con.execute("SELECT night, arm, decision, champion_after FROM champion_history ORDER BY night, arm").fetchall()
    assert rows == [("2026-12-01", "fixed:conv_heavy@0", "promoted", "fixed:conv_heavy@0"),
                    ("2026-12-01", "fixed:conv_heavy@3", "kept", "fixed:conv_heavy@0"),
                    ("2026-12-01", "heuristic", "champion", "fixed:conv_heavy@0"),
                    ("2026-12-02", "fixed:conv_heavy@0", "champion", "fixed:conv_heavy@0"),
                    ("2026-12-02", "fixed:conv_heavy@3", "kept", "fixed:conv_heavy@0")]  # fmt: skip


class _Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory):
    """Night 1 whole; night 2 killed during its training stage, then rerun; night 3 through Dagster."""
    import dagster as dg

    from tamiyo_models.online_rl import workflow as online

    root = tmp_path_factory.mktemp("nights")
    paths = _paths(root)
    lines: list[str] = []
    run_night(NIGHTS[0], NIGHT, paths, log=lines.append)

    two_challengers = dataclasses.replace(NIGHT, challengers=("bcq", "cql"))
    generate_night(NIGHTS[1], two_challengers, paths, log=lines.append)
    ingest_night(NIGHTS[1], paths, log=lines.append)
    real_train = online.train_online_policy

    def killed_at_ppo(*args, **kwargs):  # the night's last learner: every challenger before it has finished
        if args[0].algorithm == "ppo":
            raise _Killed("the machine went down")
        return real_train(*args, **kwargs)

    online.train_online_policy = killed_at_ppo
    try:
        with pytest.raises(_Killed):
            train_challengers(NIGHTS[1], two_challengers, paths, log=lines.append)
    finally:
        online.train_online_policy = real_train
    raw = sorted(paths.raw_dir(NIGHTS[1]).glob("*.jsonl"))
    before = {p: p.stat().st_mtime_ns for p in raw}
    folder = paths.night_dir(NIGHTS[1]) / "challengers"
    finished = [folder / "phase3-bcq.pt", folder / "phase3-cql.pt", folder / "phase4-vine" / "phase4-vine.pt"]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    resumed: list[str] = []
    run_night(NIGHTS[1], two_challengers, paths, log=resumed.append)
    kept = {"raw": {p: p.stat().st_mtime_ns for p in raw} == before,
            "challengers": [p.stat().st_mtime_ns for p in finished] == mtimes, "log": resumed}  # fmt: skip

    from assets.mlflow_resource import MlflowTrackingResource
    from assets.nightly import NightlyResource
    from assets.resources import RawLandingResource, WarehouseResource
    from pipelines.definitions import defs

    job = defs.resolve_job_def("nightly")
    settings = {k: v for k, v in NIGHT.to_dict().items() if k != "rule"} | {"rule": dataclasses.asdict(NIGHT.rule)}
    result = job.execute_in_process(
        partition_key=NIGHTS[2], instance=dg.DagsterInstance.ephemeral(),
        resources={"nightly": NightlyResource(preset="mini", settings_json=json.dumps(settings), nights_dir=str(paths.nights)),
                   "warehouse": WarehouseResource(path=str(paths.warehouse)),
                   "raw_runs": RawLandingResource(folder=str(paths.landing)),
                   "mlflow": MlflowTrackingResource(root=paths.mlflow_root)})  # fmt: skip
    return paths, kept, result


def test_three_nights_record_every_decision_and_the_champion_moves_only_by_the_rule(three_nights):
    paths, _, result = three_nights
    assert result.success
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    rows = con.execute("SELECT night, arm, role, champion, champion_after, passes, decision, pairs, difference, low, "
                       "fresh_low, fresh_orders, null_rms FROM champion_history ORDER BY night, arm").fetchall()  # fmt: skip
    by_night: dict[str, list] = {}
    for row in rows:
        by_night.setdefault(row[0], []).append(row)
    assert sorted(by_night) == list(NIGHTS)
    previous_after = "heuristic"  # the champion before the first night
    for number, night in enumerate(NIGHTS):
        night_rows = by_night[night]
        champion = {r[3] for r in night_rows}
        after = {r[4] for r in night_rows}
        assert champion == {previous_after} and len(after) == 1  # each night starts with the last night's champion
        arms = {r[1] for r in night_rows}
        # Tonight's challengers are named by the night: a champion promoted from an earlier night keeps its name.
        challengers = {f"phase3-bcq-{night}", f"phase4-vine-{night}", f"phase4-ppo-{night}"}
        challengers |= {f"phase3-cql-{night}"} if number == 1 else set()
        assert arms == {"heuristic", "fixed:conv_heavy@1", previous_after} | challengers
        compared = [r for r in night_rows if r[2] != "champion"]
        promoted = [r for r in compared if r[6] == "promoted"]
        passing = [r for r in compared if r[5]]
        # The champion moves exactly when some controller passed, and only to one that did.
        assert bool(promoted) == bool(passing) and len(promoted) <= 1
        if promoted:
            assert after == {promoted[0][1]} and promoted[0][5]
        else:
            assert after == champion
        for r in compared:
            assert r[7] == NIGHT.heldout_per_regime and r[11] == NIGHT.fresh_orders and r[12] > 0
            # passes means: both intervals above 0 (and enough pairs)
            assert r[5] == (r[7] >= NIGHT.rule.min_pairs and r[9] > 0 and r[10] > 0)
        previous_after = after.pop()


def test_no_training_seed_ever_equals_an_evaluation_seed(three_nights):
    paths, _, result = three_nights
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"held_out_seeds_never_trained_on": True}
    from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    assert overlapping_seeds(con) == []
    trained = {s for (s,) in con.execute("SELECT DISTINCT seed FROM runs").fetchall()}
    registry = dict(con.execute("SELECT seed, purpose FROM seed_registry").fetchall())
    evaluated = set()
    for night in NIGHTS:
        seeds = {read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(paths.night_dir(night) / "evaluation")}
        assert seeds and not seeds & evaluated  # never reused by a later night
        evaluated |= seeds
    assert trained and not trained & evaluated
    assert all(registry[s] == EVALUATION for s in evaluated) and all(registry[s] == TRAINING for s in trained)
    # The learners' policy files list their data's seeds: none of them is a held-out one.
    from tamiyo_models.agents.saved import load_policy

    policies = [*paths.nights.glob("*/challengers/*.pt"), *paths.nights.glob("*/challengers/phase4-*/phase4-*.pt")]
    assert len(policies) == 3 * 3 + 1  # bcq, vine, ppo each night; cql on the second
    for policy in policies:
        assert not set(load_policy(policy)[1]["metadata"]["data_seeds"]) & evaluated
    assert batch_seed(NIGHTS[0], TRAINING) != batch_seed(NIGHTS[0], EVALUATION)
    # PPO's episodes: every seed they ran on was registered as a training seed before they ran (the last night's
    # are not ingested yet: read from their raw runs), and its policy lists them.
    ppo_registered = {s for (s,) in con.execute("SELECT seed FROM seed_registry WHERE source = 'ppo'").fetchall()}
    ppo_ran = set()
    for night in NIGHTS:
        ran = {read_raw_run(p).header["config"]["seed"] for p in list_raw_runs(paths.raw_dir(night))
               if read_raw_run(p).header["config"]["tags"].get("night_role") == "ppo"}  # fmt: skip
        assert ran, f"no PPO episode on night {night}"
        ppo_ran |= ran
    assert ppo_ran <= ppo_registered and all(registry[s] == TRAINING and s % 2 == 0 for s in ppo_registered)
    assert not ppo_registered & evaluated
    for night in NIGHTS:
        meta = load_policy(paths.night_dir(night) / "challengers" / "phase4-ppo" / "phase4-ppo.pt")[1]["metadata"]
        night_ran = {s for s in ppo_ran if s in set(json.loads((paths.night_dir(night) / "train.json").read_text())
                                                         ["challengers"][f"phase4-ppo-{night}"]["seeds"])}  # fmt: skip
        assert night_ran and night_ran <= set(meta["data_seeds"])


def test_a_night_forks_the_champion_at_one_decision_into_every_legal_action(three_nights):
    paths, _, _ = three_nights
    generated = json.loads((paths.night_dir(NIGHTS[0]) / "generate.json").read_text())
    assert generated["fork_parents"] == NIGHT.fork_parents == 1 and generated["branches"] >= 2
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    # The branches are in the warehouse beside their parent, which the champion (the heuristic, that night) ran.
    (branches, parents), = con.execute("SELECT count(*), count(DISTINCT parent_run_id) FROM branches").fetchall()
    assert branches >= generated["branches"] and parents >= 1


def test_a_night_killed_halfway_resumes_without_redoing_what_finished(three_nights):
    paths, kept, _ = three_nights
    assert kept["raw"], "the resumed night reran training episodes already on disk"
    assert kept["challengers"], "the resumed night retrained a challenger that had finished"
    for name in ("phase3-bcq", "phase3-cql", "phase4-vine"):
        assert any(f"{name}-{NIGHTS[1]} already trained" in line for line in kept["log"])
    assert any(line.startswith(f"night {NIGHTS[1]}: phase4-ppo-{NIGHTS[1]} from") for line in kept["log"])  # the one the kill stopped
    stages = json.loads((paths.night_dir(NIGHTS[1]) / "train.json").read_text())
    assert set(stages["challengers"]) == {f"phase3-bcq-{NIGHTS[1]}", f"phase3-cql-{NIGHTS[1]}", f"phase4-vine-{NIGHTS[1]}",
                                          f"phase4-ppo-{NIGHTS[1]}"}  # fmt: skip
    assert all(NIGHTS[0] in c["nights_learned"] and NIGHTS[1] in c["nights_learned"] for c in stages["challengers"].values())


def test_phase4_challengers_start_from_the_champion_and_name_the_nights_they_learned_from(three_nights):
    """Every night has a vine challenger (the region rule over the fork studies of every night so far) and a PPO
    challenger, each an MLflow model version of the Phase 4 model whose run's lineage tag names those nights."""
    from tamiyo_models.agents.tracking import Tracker

    paths, _, result = three_nights
    tracker = Tracker(paths.tracking)
    for number, night in enumerate(NIGHTS):
        challengers = json.loads((paths.night_dir(night) / "train.json").read_text())["challengers"]
        for algorithm in ("vine", "ppo"):
            info = challengers[f"phase4-{algorithm}-{night}"]
            assert info["nights_learned"] == list(NIGHTS[: number + 1])
            tags = tracker.client.get_run(info["mlflow_run_id"]).data.tags
            assert tags["tamiyo.nights_learned"] == ",".join(NIGHTS[: number + 1]) and tags["tamiyo.night"] == night
            version = tracker.client.get_model_version("tamiyo-phase4-online", info["model_version"])
            assert version.run_id == info["mlflow_run_id"]
        # The vine pooled every night's forks so far (one forked parent a night); PPO starts from the champion's
        # policy file, or from tonight's Phase 3 policy when the champion is a schedule or the heuristic.
        assert challengers[f"phase4-vine-{night}"]["forks"] >= number + 1
        champion = json.loads((paths.night_dir(night) / "generate.json").read_text())["champion"]
        start = challengers[f"phase4-ppo-{night}"]["start"]
        assert start.endswith(".pt") and (night in start or "challengers" in start)
        if champion == "heuristic" or champion.startswith("fixed:"):
            phase3 = [challengers[f"phase3-{a}-{night}"]["policy"] for a in PPO_STARTS if f"phase3-{a}-{night}" in challengers]
            assert start == phase3[0]  # IQL before CQL before BCQ: the most stochastic actor there is
    metadata = result.asset_materializations_for_node("night_challengers")[0].metadata
    assert metadata["phase4"].value == [f"phase4-vine-{NIGHTS[2]}", f"phase4-ppo-{NIGHTS[2]}"]


def test_the_night_report_and_the_dagster_page_show_the_champion(three_nights):
    paths, _, result = three_nights
    report = (paths.night_dir(NIGHTS[2]) / "report.md").read_text()
    assert "Champion at the start" in report and "![the champion night by night](trend.png)" in report
    assert (paths.night_dir(NIGHTS[2]) / "trend.png").stat().st_size > 1000
    materialization = result.asset_materializations_for_node("champion")[0]
    metadata = materialization.metadata
    assert metadata["champion_after"].value in report
    trend = metadata["trend"].value
    assert all(night in trend for night in NIGHTS) and "data:image/png;base64," in trend
    assert materialization.partition == NIGHTS[2]
    means = [r for r in report.splitlines() if r.startswith(f"| {NIGHTS[2]} |")]
    arms = {"heuristic", "fixed:conv_heavy@1", metadata["champion_before"].value, f"phase3-bcq-{NIGHTS[2]}",
            f"phase4-vine-{NIGHTS[2]}", f"phase4-ppo-{NIGHTS[2]}"}
    assert len(means) == len(arms)  # the champion's row and one per compared controller
