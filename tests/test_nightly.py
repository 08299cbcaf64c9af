"""The nightly improvement loop on real components: real short episodes, a real DuckDB warehouse, real offline
training, real MLflow on sqlite and a real Dagster materialization of the `nightly` job.

Three mini-nights run in a row (the second killed halfway and resumed, the third through Dagster): the champion
moves only when the rule passes, no training seed ever equals an evaluation seed (PPO's episodes included), the
Phase 4 challengers learn from every night so far, and champion_history holds every decision."""

import dataclasses
import json
import re
from pathlib import Path

import duckdb
import pytest

from shipped_fixtures import shipped_folder

from tamiyo_models.controllers import shipped as shipped_module
from tamiyo_models.nightly import champion as champ
from tamiyo_models.nightly.night import (
    PPO_STARTS, NightPaths, batch_seed, dethroned_champion, evaluate_night, generate_night, ingest_night, mini_night, run_night, train_challengers,
)  # fmt: skip
from tamiyo_models.warehouse.seeds import EVALUATION, TRAINING, claim_seeds, overlapping_seeds, seed_class

# The smallest night that still has every stage: 6-epoch digits episodes, one Phase 3 challenger, the mini-night's
# Phase 4 pair (vine, and PPO on 4 episodes), one grid controller.
NIGHT = mini_night(training_episodes=8, max_epochs=6, heldout_per_regime=3, reference_grid=("fixed:conv_heavy@1",),
                   challengers=("bcq",), min_updates=60, passes_over_data=5.0, ope_updates=200)  # fmt: skip
NIGHTS = ("2026-12-01", "2026-12-02", "2026-12-03")
SHIPPED = "tiny-smoke"


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
    # The night after a promotion, the dethroned champion defends once; after a kept night, none.
    assert champ.dethroned(con, "2026-12-01") is None and champ.dethroned(con, "2026-12-02").name == "heuristic"
    assert champ.dethroned(con, "2026-12-03") is None
    rows = con.execute("SELECT night, arm, decision, champion_after FROM champion_history ORDER BY night, arm").fetchall()
    assert rows == [("2026-12-01", "fixed:conv_heavy@0", "promoted", "fixed:conv_heavy@0"),
                    ("2026-12-01", "fixed:conv_heavy@3", "kept", "fixed:conv_heavy@0"),
                    ("2026-12-01", "heuristic", "champion", "fixed:conv_heavy@0"),
                    ("2026-12-02", "fixed:conv_heavy@0", "champion", "fixed:conv_heavy@0"),
                    ("2026-12-02", "fixed:conv_heavy@3", "kept", "fixed:conv_heavy@0")]  # fmt: skip


def test_the_champion_dethroned_last_night_joins_the_next_night_with_its_settings(tmp_path):
    """A promotion that was luck can be undone: the night after a promotion, the champion it replaced is a
    challenger once more, rebuilt from the settings champion_history stored for it; the night after that, not."""
    from tamiyo_models.nightly.night import night_arms
    from tamiyo_models.warehouse import open_warehouse

    paths = NightPaths(nights=tmp_path / "nights", landing=tmp_path / "raw", warehouse=tmp_path / "w.duckdb",
                       mlflow_root=str(tmp_path / "mlflow"))  # fmt: skip
    rule = champ.PromotionRule()
    first, second = _comparison("fixed:conv_heavy@0", 0.5, 0.1, 0.4, 0.05), _comparison("fixed:conv_light@2", 0.6, 0.2, 0.5, 0.1)
    second.controller = {"kind": "fixed-schedule", "blueprint": "conv_light", "germinate_epoch": 2, "label": second.arm}
    for c in (first, second):
        c.passes, c.reason = champ.judge(c, rule)
    con = open_warehouse(paths.warehouse)
    champ.record_night(con, "2026-12-01", "test", champ.starting_champion(), [first], first, 1, rule)
    champ.record_night(con, "2026-12-02", "test", champ.current_champion(con), [second], second, 2, rule)
    con.close()
    champion, arms, roles = night_arms("2026-12-03", NIGHT, paths, {})
    assert champion.name == "fixed:conv_light@2" and roles["fixed:conv_heavy@0"] == "challenger"
    defender = arms["fixed:conv_heavy@0"]
    assert (defender.kind, defender.blueprint, defender.germinate_epoch) == ("fixed-schedule", "conv_heavy", 1)  # as stored
    con = open_warehouse(paths.warehouse)
    champ.record_night(con, "2026-12-03", "test", champion, [], None, 3, rule)
    con.close()
    assert "fixed:conv_heavy@0" not in night_arms("2026-12-04", NIGHT, paths, {})[1]  # it defended once


class _Killed(RuntimeError):
    pass


def test_the_presets_are_one_table_for_the_cli_dagster_and_make_run(capsys):
    """`--preset arena-v2` is the arena-v2 night everywhere: its spec, the four-way's slot-aware grid, and a budget
    that counts a fork at an early step as WAIT plus 5 blueprints in either slot and fits 2 hours on 2 cores."""
    from assets.nightly import NightlyResource

    from tamiyo_models.cli import main
    from tamiyo_models.nightly.night import PRESETS, arena_v2_night

    config = arena_v2_night()
    assert config.spec == "arena-v2" and "fixed:conv_light@0:slot1" in config.reference_grid
    assert NightlyResource(preset="arena-v2").night_config() == config
    assert main(["night", "2026-12-09", "--preset", "arena-v2", "--set", "workers=1", "--show-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {**config.to_dict(), "workers": 1, "rule": dataclasses.asdict(config.rule)}
    assert config.planned_episodes(1, 1, fork_actions=11)["forks"] == config.fork_parents * 12
    with pytest.raises(ValueError, match="known presets are arena, arena-v2, arena-v2-large, mini"):
        NightlyResource(preset="arena-v3").night_config()
    assert set(PRESETS) == {"arena", "arena-v2", "arena-v2-large", "mini"}
    # The default arena-v2 night fits 2 hours on 2 cores (7 to 9 episodes a minute); the large one is for 8 workers.
    assert config.planned_episodes(1, fork_actions=11)["total"] <= 800
    assert PRESETS["arena-v2-large"]().planned_episodes(1, fork_actions=11)["total"] > 1_700


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory):
    """Night 1 whole; night 2 killed during its training stage, then rerun; night 3 through Dagster."""
    root = tmp_path_factory.mktemp("nights")
    paths = _paths(root)
    lines: list[str] = []
    # A policy shipped for the nights' spec: the first night takes it as a challenger, the later ones do not.
    patch = pytest.MonkeyPatch()
    patch.setattr(shipped_module, "SHIPPED_DIR", shipped_folder(root / "shipped", name=SHIPPED, spec="smoke"))
    try:
        return _run_three_nights(paths, lines)
    finally:
        patch.undo()


def _run_three_nights(paths, lines):
    import dagster as dg

    from tamiyo_models.online_rl import workflow as online

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
        # Tonight's learners are named by the night: a champion promoted from an earlier night keeps its name. A vine
        # whose region rule labelled no state is recorded in train.json but not evaluated (it is its start refitted).
        learners = {f"phase3-bcq-{night}", f"phase4-vine-{night}", f"phase4-ppo-{night}"}
        learners |= {f"phase3-cql-{night}"} if number == 1 else set()
        trained = json.loads((paths.night_dir(night) / "train.json").read_text())
        assert set(trained["challengers"]) | set(trained["not_evaluated"]) == learners
        for name, info in trained["not_evaluated"].items():
            assert name.startswith("phase4-vine-") and info["relabelled"] == 0 and "labelled no state" in info["reason"]
        if number == 0:  # one stored fork: the region rule tests a cell from 3, so the first vine labels nothing
            assert f"phase4-vine-{night}" in trained["not_evaluated"]
        challengers = set(trained["challengers"])
        challengers |= {f"shipped:{SHIPPED}"} if number == 0 else set()  # the shipped policy joins the first night only
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


def test_the_first_nights_shipped_policies_are_pinned_in_its_folder(three_nights):
    """The shipped policy the first night took was copied into its folder with its digest: with the package's
    shipped folder changed since (here: back to the real one), the night's arms are still that copy."""
    import hashlib

    from tamiyo_models.nightly.night import night_arms

    paths, _, _ = three_nights
    first = json.loads((paths.night_dir(NIGHTS[0]) / "shipped.json").read_text())["policies"]
    assert [p["name"] for p in first] == [SHIPPED]
    copy = Path(first[0]["path"])
    assert copy.parent == (paths.night_dir(NIGHTS[0]) / "shipped").resolve() and hashlib.sha256(copy.read_bytes()).hexdigest() == first[0]["sha256"]
    _, arms, roles = night_arms(NIGHTS[0], NIGHT, paths, {})
    assert arms[f"shipped:{SHIPPED}"].policy == f"file:{copy}" and roles[f"shipped:{SHIPPED}"] == "challenger"
    for night in NIGHTS[1:]:  # later nights recorded that they take none
        assert json.loads((paths.night_dir(night) / "shipped.json").read_text())["policies"] == []
        assert f"shipped:{SHIPPED}" not in night_arms(night, NIGHT, paths, {})[1]


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
    # The second night was killed and resumed: its summary, rewritten from the runs read back, still counts the branches.
    resumed = json.loads((paths.night_dir(NIGHTS[1]) / "generate.json").read_text())
    assert resumed["branches"] == len(list(paths.raw_dir(NIGHTS[1]).glob("run-*-b[0-9][0-9][0-9]-*.jsonl"))) >= 1
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    # The branches are in the warehouse beside their parent, which the champion (the heuristic, that night) ran.
    (branches, parents), = con.execute("SELECT count(*), count(DISTINCT parent_run_id) FROM branches").fetchall()
    assert branches >= generated["branches"] and parents >= 1
    # Directed forks: with no evidence yet, the first night's parent forks at the first decision; a later night
    # reads the forks of its champion's own parents on the nights before it, and sends its parent where they are thin.
    plans = [json.loads((paths.night_dir(n) / "fork-plan.json").read_text()) for n in NIGHTS]
    assert generated["fork_rule"] == "directed" and plans[0]["nights"] == [] and plans[0]["parents"][0]["step"] == 1
    steps = dict(con.execute("SELECT DISTINCT parent_run_id, fork_step FROM branches").fetchall())
    con.close()
    for plan in plans:
        (parent,) = plan["parents"]
        assert steps[parent["run_id"]] == parent["step"]
    for number, plan in enumerate(plans[1:], start=1):
        assert plan["nights"] == list(NIGHTS[:number])
        same = [p for p in plans[:number] if p["champion"] == plan["champion"]]
        first = [c for c in plan["cells"] if c["epochs"] == "0-0"]
        assert first and first[0]["forks"] == len(same)  # the champion's earlier forks at the first decision, no other
    report = (paths.night_dir(NIGHTS[0]) / "report.md").read_text()
    assert "## Fork studies" in report and "| thin |" in report and "Forked, as ingested: step 1 (1 parent)." in report
    # A rerun with other fork settings than the night was planned with is refused, naming the file and the field.
    with pytest.raises(ValueError, match=r"fork-plan.json: night .* started with directed forks"):
        generate_night(NIGHTS[0], dataclasses.replace(NIGHT, fork_rule="random"), paths, log=lambda line: None)
    with pytest.raises(ValueError, match=r"fork-plan.json: field config.max_step was planned as 6"):
        generate_night(NIGHTS[0], dataclasses.replace(NIGHT, fork_max_step=3), paths, log=lambda line: None)


def test_a_night_killed_halfway_resumes_without_redoing_what_finished(three_nights):
    paths, kept, _ = three_nights
    assert kept["raw"], "the resumed night reran training episodes already on disk"
    assert kept["challengers"], "the resumed night retrained a challenger that had finished"
    for name in ("phase3-bcq", "phase3-cql", "phase4-vine"):
        assert any(f"{name}-{NIGHTS[1]} already trained" in line for line in kept["log"])
    assert any(line.startswith(f"night {NIGHTS[1]}: phase4-ppo-{NIGHTS[1]} from") for line in kept["log"])  # the one the kill stopped
    stages = json.loads((paths.night_dir(NIGHTS[1]) / "train.json").read_text())
    learners = {**stages["challengers"], **stages["not_evaluated"]}
    assert set(learners) == {f"phase3-bcq-{NIGHTS[1]}", f"phase3-cql-{NIGHTS[1]}", f"phase4-vine-{NIGHTS[1]}", f"phase4-ppo-{NIGHTS[1]}"}
    assert all(NIGHTS[0] in c["nights_learned"] and NIGHTS[1] in c["nights_learned"] for c in learners.values())


def test_phase4_challengers_start_from_the_champion_and_name_the_nights_they_learned_from(three_nights):
    """Every night has a vine challenger (the region rule over the fork studies of every night so far) and a PPO
    challenger, each an MLflow model version of the Phase 4 model whose run's lineage tag names those nights."""
    from tamiyo_models.agents.saved import load_policy
    from tamiyo_models.agents.tracking import Tracker

    paths, _, result = three_nights
    tracker = Tracker(paths.tracking)
    for number, night in enumerate(NIGHTS):
        trained = json.loads((paths.night_dir(night) / "train.json").read_text())
        challengers = {**trained["challengers"], **trained["not_evaluated"]}
        for algorithm in ("vine", "ppo"):
            info = challengers[f"phase4-{algorithm}-{night}"]
            assert info["nights_learned"] == list(NIGHTS[: number + 1])
            tags = tracker.client.get_run(info["mlflow_run_id"]).data.tags
            assert tags["tamiyo.nights_learned"] == ",".join(NIGHTS[: number + 1]) and tags["tamiyo.night"] == night
            version = tracker.client.get_model_version("tamiyo-phase4-online", info["model_version"])
            assert version.run_id == info["mlflow_run_id"]
        # Each Phase 3 challenger is an ensemble (the mini-night's 2 learners), saved as one policy file.
        for info in [info for name, info in challengers.items() if name.startswith("phase3-")]:
            module, _ = load_policy(info["policy"])
            assert info["ensemble"] == NIGHT.ensemble == 2 and module.kind == "ensemble" and len(module.members) == 2
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
    assert sorted(metadata["phase4"].value) == [f"phase4-ppo-{NIGHTS[2]}", f"phase4-vine-{NIGHTS[2]}"]
    assert set(metadata["not_evaluated"].value) <= {f"phase4-vine-{NIGHTS[2]}"}


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
    trained = json.loads((paths.night_dir(NIGHTS[2]) / "train.json").read_text())
    former = dethroned_champion(NIGHTS[2], NIGHT, paths)  # the champion dethroned the night before defends once
    arms = {"heuristic", "fixed:conv_heavy@1", metadata["champion_before"].value, *trained["challengers"],
            *([former.name] if former else [])}  # fmt: skip
    assert len(means) == len(arms)  # the champion's row and one per compared controller
    for name in trained["not_evaluated"]:  # a learner that was not evaluated says why
        assert f"- {name}: not evaluated: the region rule labelled no state" in report
    # What each challenger did differently: its first parting from the champion on the same configuration and order
    # (or none), on every paired held-out configuration, and its grafts and culls beside the champion's.
    section = report.split("## Where the challengers part from the champion")[1].split("\n## ")[0]
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ") for r in section.splitlines() if r.startswith("| ") and "---" not in r}
    header = [c.strip() for c in next(r for r in report.splitlines() if r.startswith("| night |")).strip("|").split("|")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in means]
    challengers = {c[header.index("controller")].strip("*") for c in cells if c[header.index("role")] == "challenger"}
    assert set(trained["challengers"]) <= challengers
    assert set(rows) == {"controller", metadata["champion_before"].value, *challengers}
    for name in challengers:
        assert int(rows[name][1]) >= 2 and (rows[name][2] == "none" or rows[name][2].startswith("step "))


def test_each_night_predicts_its_arms_off_policy_before_the_evaluation_and_scores_the_prediction(three_nights):
    """The ope stage: FQE for every arm the evaluation runs, fitted before its first episode (ope.json is older than
    every evaluation file), then scored by the decision against live in night_ope, one row per arm, with the
    calibration and its ceiling repeated on each; the report shows it, with OPE's record night by night."""
    from tamiyo_models.nightly.night import predict_night
    from tamiyo_models.ope.report import OPERow, calibration, pooled_over_orders

    paths, _, result = three_nights
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    for night in NIGHTS:
        folder = paths.night_dir(night)
        prediction = json.loads((folder / "ope.json").read_text())
        first_episode = min(p.stat().st_mtime_ns for p in (folder / "evaluation").glob("*.jsonl"))
        assert (folder / "ope.json").stat().st_mtime_ns < first_episode  # a prediction, not a fit
        assert (folder / "ope" / "ope.md").exists()
        history = {arm: (role, d, f, n) for arm, role, d, f, n in con.execute(
            "SELECT arm, role, difference, fresh_difference, fresh_orders FROM champion_history WHERE night = ?",
            [night]).fetchall()}  # fmt: skip
        rows = con.execute("SELECT arm, champion, fqe, predicted, live, arms, spearman, mean_abs_error_pp, ceiling "
                           "FROM night_ope WHERE night = ?", [night]).fetchall()  # fmt: skip
        assert {r[0] for r in rows} == set(history) | {"heuristic"} == set(prediction["predicted"])
        champion = rows[0][1]
        assert history[champion][0] == "champion" and prediction["champion"] == champion
        for arm, _, fqe, predicted, live, *_ in rows:
            assert predicted == pytest.approx(prediction["predicted"][arm])  # the recorded prediction is the stage's
            role, d, f, n = history[arm]
            assert live == (0.0 if role == "champion" else pytest.approx(pooled_over_orders(d, f, n)))
        expected = calibration([OPERow(**r) for r in prediction["rows"]], {r[0]: r[4] for r in rows if r[4] is not None}, champion)
        assert {r[5] for r in rows} == {expected["policies"]}
        if expected["spearman"] == expected["spearman"]:  # NaN (stored NULL) where one side ties every arm
            assert all(r[6] == pytest.approx(expected["spearman"]) for r in rows)
        report = (folder / "report.md").read_text()
        assert "## Off-policy prediction (made before the evaluation)" in report
    assert f"| `{NIGHTS[0]}` |" in report and f"| `{NIGHTS[2]}` |" in report  # the last night's report: OPE's record
    meta = result.asset_materializations_for_node("night_off_policy_prediction")[0].metadata
    assert meta["champion"].value == champion and "| arm | predicted vs champion (pp) |" in meta["predicted"].value
    decided = result.asset_materializations_for_node("champion")[0].metadata["off_policy_prediction"].value
    assert "## Off-policy prediction (made before the evaluation)" in decided and f"| `{NIGHTS[0]}` |" in decided
    # Made once: a rerun of the stage reads the prediction back, it never refits after the evaluation.
    lines: list[str] = []
    assert predict_night(NIGHTS[2], NIGHT, paths, log=lines.append) == prediction and "kept" in lines[0]
    assert predict_night(NIGHTS[2], dataclasses.replace(NIGHT, ope=False), paths) is None


def test_ope_calibrates_against_a_recorded_nights_live_results(three_nights, tmp_path):
    """`tamiyo ope --live-night`: every arm of the night is estimated from the warehouse's logged transitions (its
    policy file, or its reference name) and set beside its live paired difference against the night's champion."""
    from tamiyo_models.cli import main
    from tamiyo_models.ope.report import live_night

    paths, _, _ = three_nights
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        recorded = {arm: (role, d, f, n) for arm, role, d, f, n in con.execute(
            "SELECT arm, role, difference, fresh_difference, fresh_orders FROM champion_history WHERE night = ?",
            [NIGHTS[0]]).fetchall()}  # fmt: skip
    champion, live, arms = live_night(paths.warehouse, NIGHTS[0])
    assert recorded[champion][0] == "champion" and live[champion] == 0.0
    assert set(live) == set(recorded)
    for arm, (role, d, f, n) in recorded.items():
        if role != "champion":
            assert live[arm] == pytest.approx((d + n * f) / (1 + n))  # each order weighted once
    assert arms[f"phase3-bcq-{NIGHTS[0]}"].endswith("phase3-bcq.pt") and Path(arms[f"phase3-bcq-{NIGHTS[0]}"]).exists()
    assert arms["fixed:conv_heavy@1"] == "fixed:conv_heavy@1" and "heuristic" not in arms  # the heuristic is always estimated

    out = tmp_path / "ope"
    assert main(["ope", "--warehouse", str(paths.warehouse), "--live-night", NIGHTS[0], "--updates", "30", "--out", str(out)]) == 0
    report = (out / "ope.md").read_text()
    assert f"live vs {champion} (test)" in report and "**OPE against live** over" in report
    # How firmly live ranks the arms: the original order's differences against the fresh orders', arm by arm.
    from scipy.stats import spearmanr

    from tamiyo_models.ope.report import live_agreement

    pairs = [(d, f) for role, d, f, _ in recorded.values() if role != "champion"]
    agreement = live_agreement(paths.warehouse, night=NIGHTS[0])
    assert agreement["arms"] == len(pairs) >= 3
    expected = spearmanr(*zip(*pairs)).statistic
    assert agreement["spearman"] == (None if expected != expected else pytest.approx(expected))
    assert json.loads((out / "ope.json").read_text())["live_agreement"] == agreement
    assert f"**Live against itself**: the original data order's differences and the fresh orders' rank the {len(pairs)} arms" in report
    for arm in live:
        assert f"| {arm} |" in report
    with pytest.raises(ValueError, match="no night '2031-01-01' is recorded"):
        live_night(paths.warehouse, "2031-01-01")
    assert main(["ope", "--warehouse", str(paths.warehouse), "--live-night", "2031-01-01", "--out", str(out)]) == 2
    # While a night writes the warehouse, its champion_history cannot be read live: a clear error, not a traceback.
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(paths.warehouse)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert main(["ope", "--warehouse", str(paths.warehouse), "--live-night", NIGHTS[0], "--out", str(out)]) == 2
    finally:
        writer.kill()
        writer.wait()


def test_ope_gives_the_calibration_intervals_over_the_nights_configurations_and_the_ceiling_of_lives_noise(three_nights, tmp_path):
    """With the night's evaluation folder (`--nights`), the calibration is resampled over its held-out
    configurations: OPE's Spearman on the draws, and the ceiling any estimator meets there (live's own means). The
    folder is read back by headers alone and reproduces the night's recorded differences; `--estimates-from`
    recalibrates an earlier report without fitting again."""
    import numpy as np

    from tamiyo_models.cli import main
    from tamiyo_models.ope.report import OPERow, calibration_intervals, live_by_configuration, pooled_over_orders

    paths, _, _ = three_nights
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        recorded = {arm: (role, champion, d, f, n) for arm, role, champion, d, f, n in con.execute(
            "SELECT arm, role, champion, difference, fresh_difference, fresh_orders FROM champion_history WHERE night = ?",
            [NIGHTS[0]]).fetchall()}  # fmt: skip
    champion = next(iter(recorded.values()))[1]
    by_configuration = live_by_configuration(paths.night_dir(NIGHTS[0]) / "evaluation", champion)
    assert set(by_configuration) == set(recorded)
    for arm, (role, _, d, f, n) in recorded.items():
        assert len(by_configuration[arm]) == NIGHT.heldout_per_regime
        if role != "champion":  # each configuration's orders pooled, each once: the mean is the recorded one
            assert np.mean(by_configuration[arm]) == pytest.approx(pooled_over_orders(d, f, n))
    with pytest.raises(ValueError, match="no complete run of the baseline arm 'nobody'"):
        live_by_configuration(paths.night_dir(NIGHTS[0]) / "evaluation", "nobody")

    out = tmp_path / "ope"
    argv = ["ope", "--warehouse", str(paths.warehouse), "--live-night", NIGHTS[0], "--nights", str(paths.nights)]
    assert main([*argv, "--updates", "30", "--out", str(out)]) == 0
    payload = json.loads((out / "ope.json").read_text())
    intervals = payload["calibration_intervals"]
    assert intervals["configurations"] == NIGHT.heldout_per_regime and intervals["resamples"] == 2000
    assert intervals["spearman"] == pytest.approx(payload["calibration"]["spearman"], nan_ok=True)
    assert -1 <= intervals["spearman_low"] <= intervals["on_draws"] <= intervals["spearman_high"] <= 1
    assert intervals["ceiling_low"] <= intervals["ceiling"] <= intervals["ceiling_high"] <= 1
    assert "**How much of that is live's noise** (3 held-out configurations resampled 2,000 times" in (out / "ope.md").read_text()

    # Recalibrated from that report: the same estimates, not fitted again, and the same intervals.
    again = tmp_path / "again"
    assert main([*argv, "--estimates-from", str(out / "ope.json"), "--out", str(again)]) == 0
    second = json.loads((again / "ope.json").read_text())
    assert second["rows"] == payload["rows"] and second["calibration_intervals"] == intervals
    (tmp_path / "bad.json").write_text('{"rows": [{"name": "heuristic"}], "data": {}}')
    assert main([*argv, "--estimates-from", str(tmp_path / "bad.json"), "--out", str(again)]) == 2

    # The ceiling is what an estimate equal to live's own means scores: such an estimate has no gap to it, and one
    # that ranks the arms backwards falls below it by twice the ceiling.
    rows = [OPERow(**r) for r in payload["rows"]]
    pooled = {a: float(np.mean(v)) for a, v in by_configuration.items() if a != champion}
    if np.ptp(list(pooled.values())) > 0:
        exact = [dataclasses.replace(r, fqe=pooled.get(r.name, 0.0)) for r in rows]
        perfect = calibration_intervals(exact, by_configuration, champion)
        assert perfect["spearman"] == pytest.approx(1.0) and perfect["gap"] == pytest.approx(0.0, abs=1e-9)
        backwards = calibration_intervals([dataclasses.replace(r, fqe=-pooled.get(r.name, 0.0)) for r in rows], by_configuration,
                                          champion)  # fmt: skip
        # Reversed ranks negate every draw's correlation: the gap is twice the ceiling (3 configurations are too few
        # for its interval to clear 0; the mean does).
        assert backwards["spearman"] == pytest.approx(-1.0) and backwards["on_draws"] == pytest.approx(-perfect["ceiling"])
        assert backwards["gap"] == pytest.approx(2 * perfect["ceiling"]) and perfect["ceiling"] > 0


def test_a_night_on_a_two_slot_spec_trains_its_learners_on_the_factored_action(tmp_path):
    """On a multi-slot spec (arena-v2's shape) the night's Phase 3, vine (on the night's stored fork study) and PPO
    read the per-slot features and score the factored action (1 + 7 x 2 actions)."""
    from tamiyo_models.agents.saved import load_policy
    from tamiyo_models.nightly.night import night_action_space
    from tamiyo_models.world.actions import action_names
    from tamiyo_models.world.features import SLOT_FEATURES

    spec = tmp_path / "two-slot.toml"
    spec.write_text('name = "two-slot"\n[base]\nmax_epochs = 4\ntelemetry = { enabled = false }\n[base.dataset]\n'
                    'name = "synthetic"\n[base.host]\nwidths = [2, 4, 8]\nslots = [0, 1]\n[[controllers]]\nkind = "heuristic"\n')  # fmt: skip
    config = mini_night(spec=str(spec), training_episodes=6, fork_parents=1, max_epochs=4, heldout_per_regime=3,
                        reference_grid=("fixed:conv_light@0:slot1",), challengers=("bcq",), min_updates=40,
                        passes_over_data=2.0, distil_updates=100, ppo_episodes=2, ppo_episodes_per_iteration=2,
                        shipped_challengers=False, ope_updates=100)  # fmt: skip
    assert night_action_space(config) == (2, "base+lifecycle+task+slots")
    paths, lines = _paths(tmp_path), []
    run_night("2026-12-01", config, paths, log=lines.append)
    stage = json.loads((paths.night_dir("2026-12-01") / "train.json").read_text())
    trained = {**stage["challengers"], **stage["not_evaluated"]}
    assert set(trained) == {"phase3-bcq-2026-12-01", "phase4-vine-2026-12-01", "phase4-ppo-2026-12-01"}
    assert trained["phase4-vine-2026-12-01"]["forks"] >= 1
    for info in trained.values():
        payload = load_policy(info["policy"])[1]
        assert tuple(payload["fine_actions"]) == action_names(2)
        assert set(SLOT_FEATURES) <= set(payload["feature_names"])
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        arms = {a for (a,) in con.execute("SELECT arm FROM champion_history WHERE night = '2026-12-01'").fetchall()}
    assert arms == {"heuristic", "fixed:conv_light@0:slot1", *stage["challengers"]}
    # A two-slot champion meets a single-slot spec (one warehouse for both): refused before anything runs.
    from tamiyo_models.controllers.config import ControllerConfig
    from tamiyo_models.nightly.night import check_champion_fits

    bcq = champ.Champion("phase3-bcq-2026-12-01", ControllerConfig(
        kind="policy", policy=f"file:{trained['phase3-bcq-2026-12-01']['policy']}", label="phase3-bcq-2026-12-01"), "2026-12-01")
    check_champion_fits(bcq, config)
    with pytest.raises(ValueError, match="scores 15 actions and spec 'smoke' has 1 seed slot"):
        check_champion_fits(bcq, mini_night())


# ----- the compute rent: which number decides, both recorded (docs/arena.md, "Compute rent") --------------------------
def _rent_runs(rent: float):
    """A hand-made night at `rent`: the champion (heuristic) grows to twice the host; "lean" never grows and ends
    0.3 pp lower in accuracy (+0.7 of score at rent 1: it wins on the score alone); "grow" grows to 4 times the host
    for +0.5 pp of accuracy (-0.5 of score at rent 1)."""
    from tamiyo_models.controllers.config import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeResult
    from tamiyo_models.evaluation.paired import EpisodeOutcome, PairedRuns
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.score import charged_score

    def result(test: float, parameters: int) -> EpisodeResult:
        return EpisodeResult("r", None, "complete", 4, test, test, 1, 0, 0, 0.0, 1.0, final_test_accuracy=test,
                             test_accuracy_last=test, final_parameters=parameters, rent=rent,
                             score=charged_score(test, rent, parameters, 1000))  # fmt: skip

    configs = [EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, seed=s, rent=rent) for s in range(6)]
    arms = {"heuristic": ControllerConfig(kind="heuristic", label="heuristic"),
            "lean": ControllerConfig(kind="fixed-schedule", blueprint="norm", germinate_epoch=99, label="lean"),
            "grow": ControllerConfig(kind="fixed-schedule", blueprint="conv_heavy", germinate_epoch=0, label="grow")}  # fmt: skip
    runs = PairedRuns(configs, arms, "heuristic")
    for i in range(6):
        for order in (0, 1, 2):
            base = 80.0 + i + 0.3 * order
            jitter = 0.02 * ((i * 7 + order) % 5)  # intervals of nonzero width
            for arm, test, parameters in (("heuristic", base, 2000), ("lean", base - 0.3 + jitter, 1000),
                                          ("grow", base + 0.5 + jitter, 4000)):  # fmt: skip
                runs.outcomes[(i, arm, order)] = EpisodeOutcome(i, "all", arm, order, result(test, parameters))
    return runs


def _decide(runs, con, night: str, champion=None):
    rule = champ.PromotionRule(min_pairs=3, resamples=500)
    champion = champion or champ.starting_champion()
    comparisons = [champ.compare(runs, arm, "reference", runs.arms[arm], rule) for arm in ("lean", "grow")]
    promoted = champ.choose(comparisons)
    champ.record_night(con, night, "test", champion, comparisons, promoted, 1, rule)
    return {c.arm: c for c in comparisons}, promoted


def test_a_night_at_rent_decides_on_the_score_and_records_the_accuracy_beside_it(tmp_path):
    from tamiyo_models.nightly.report import champion_table, format_table, write_night_report

    runs = _rent_runs(1.0)
    paths = _paths(tmp_path)
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(paths.warehouse)) as con:
        by_arm, promoted = _decide(runs, con, "2026-12-01")
        rows = {r[0]: r for r in con.execute(
            "SELECT arm, rent, decision, difference, accuracy_difference, accuracy_low, accuracy_high, fresh_difference, "
            "fresh_accuracy_difference, fresh_accuracy_low, fresh_accuracy_high, reason FROM champion_history").fetchall()}  # fmt: skip
    lean, grow = by_arm["lean"], by_arm["grow"]
    # lean is worse in accuracy and better in score: the score decides, so it is promoted; grow the other way round.
    assert lean.rent == grow.rent == 1.0 and promoted is lean
    assert lean.difference == pytest.approx(0.7 + lean.accuracy_difference + 0.3) and lean.accuracy_difference < 0 < lean.low
    assert grow.accuracy_low > 0 > grow.high and not grow.passes
    assert lean.accuracy_low <= lean.accuracy_difference <= lean.accuracy_high
    assert lean.fresh_accuracy_difference == pytest.approx(lean.fresh_difference - 1.0)
    assert {a: r[1] for a, r in rows.items()} == {"heuristic": 1.0, "lean": 1.0, "grow": 1.0}
    assert rows["lean"][2] == "promoted" and rows["grow"][2] == "kept"
    assert rows["lean"][3:11] == pytest.approx((lean.difference, lean.accuracy_difference, lean.accuracy_low, lean.accuracy_high,
                                                lean.fresh_difference, lean.fresh_accuracy_difference,
                                                lean.fresh_accuracy_low, lean.fresh_accuracy_high))  # fmt: skip
    assert "score at rent 1" in rows["grow"][11] and "raw test accuracy beside it (does not decide)" in rows["grow"][11]
    # The report and the table name the rent and which number decides, the raw accuracy beside the score.
    table = format_table(champion_table(paths.warehouse, night="2026-12-01"))
    assert "test accuracy vs champion (original order)" in table and "| 2026-12-01 | 1 | lean |" in table
    assert f"{lean.accuracy_difference:+.2f} [{lean.accuracy_low:+.2f}, {lean.accuracy_high:+.2f}]" in table
    report = write_night_report("2026-12-01", paths, mini_night()).read_text()
    assert "charged 1 pp per doubling" in report and "Decided by the score" in report and table in report
    with pytest.raises(ValueError, match="different rents"):  # one night, one rent
        champ.record_night(duckdb.connect(), "2026-12-02", "test", champ.starting_champion(),
                           [lean, dataclasses.replace(grow, rent=0.0)], None, 1, champ.PromotionRule())  # fmt: skip


# champion_history as the code before the rent created it (commit be19bb4).
_OLD_CHAMPION_HISTORY = """CREATE TABLE champion_history (
    night VARCHAR NOT NULL, score VARCHAR NOT NULL, arm VARCHAR NOT NULL, role VARCHAR NOT NULL, champion VARCHAR NOT NULL,
    controller_json JSON, pairs BIGINT, mean_arm DOUBLE, mean_champion DOUBLE, difference DOUBLE, low DOUBLE, high DOUBLE,
    wins BIGINT, ties BIGINT, losses BIGINT, fresh_orders BIGINT, fresh_difference DOUBLE, fresh_low DOUBLE,
    fresh_high DOUBLE, null_rms DOUBLE, passes BOOLEAN, decision VARCHAR NOT NULL, reason VARCHAR,
    champion_after VARCHAR NOT NULL, heldout_batch_seed BIGINT, model_version VARCHAR,
    recorded_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (night, score, arm))"""


def test_an_old_champion_history_gains_the_rent_columns_on_open_and_the_trend_splits_at_a_new_rent(tmp_path, capsys):
    import argparse

    from tamiyo_models.nightly.cli import run_champion_command
    from tamiyo_models.nightly.report import champion_table, champion_trend, plot_trend, rent_changes
    from tamiyo_models.studies.study import results_markdown

    warehouse = tmp_path / "w.duckdb"
    old = [("2026-11-30", "test", "heuristic", "champion", "heuristic", None, *[None] * 15, "champion", "start", "heuristic", 1, None),
           ("2026-11-30", "test", "never", "reference", "heuristic", "{}", 6, 80.0, 80.5, -0.5, -0.9, -0.1, 1, 0, 5, 2,
            -0.4, -0.8, 0.0, 0.6, False, "kept", "the champion stays", "heuristic", 1, None)]  # fmt: skip
    with duckdb.connect(str(warehouse)) as con:
        con.execute(_OLD_CHAMPION_HISTORY)
        con.executemany(f"INSERT INTO champion_history VALUES ({', '.join(['?'] * 26)}, DEFAULT)", old)
        before = con.execute("SELECT * FROM champion_history ORDER BY arm").fetchall()
    # Read before any writer opened it (read-only: not migrated), it reads as rent 0.
    assert champion_table(warehouse)["rent"].to_list() == [0.0, 0.0]
    with duckdb.connect(str(warehouse)) as con:
        champ.ensure_history(con)
        champ.ensure_history(con)  # idempotent
        after = con.execute("SELECT * FROM champion_history ORDER BY arm").fetchall()
        assert [r[:27] for r in after] == before  # no row lost, none changed
        assert [r[27:] for r in after] == [(0.0, *[None] * 6)] * 2
        comments = dict(con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'champion_history'").fetchall())
        assert all(comments[c] for c, _ in champ.ADDED_COLUMNS)
        _decide(_rent_runs(1.0), con, "2026-12-01")
    # Nights at different rents are never one line: the trend splits where the rent changes.
    trend = champion_trend(warehouse)
    assert trend["rent"].to_list() == [0.0, 1.0] and trend["segment"].to_list() == [1, 2]
    assert rent_changes(trend) == [("2026-12-01", 1.0)]
    assert plot_trend(trend, tmp_path / "trend.png").stat().st_size > 1000
    assert run_champion_command(argparse.Namespace(warehouse=warehouse, night=None, plot=None)) == 0
    out = capsys.readouterr().out
    assert "--- rent 1 from 2026-12-01: scores above and below are not comparable ---" in out
    assert "night 2026-12-01: rent 1; decided by the score" in out and "test accuracy vs champion" in out
    md = results_markdown([warehouse])
    assert "| *rent 1 from here* |" in md and "test accuracy: original" in md


def test_rent_zero_nights_and_studies_print_as_before_the_rent(tmp_path, capsys):
    """What a rent-0 night's report, `tamiyo champion` and docs/results.md printed before the rent existed."""
    import argparse

    from tamiyo_models.nightly.cli import run_champion_command
    from tamiyo_models.nightly.report import write_night_report
    from tamiyo_models.studies.study import record_study, results_markdown

    paths = _paths(tmp_path)
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    rule = champ.PromotionRule()
    winner, loser = _comparison("fixed:conv_heavy@0", 0.5, 0.1, 0.4, 0.05), _comparison("fixed:conv_heavy@3", 0.2, -0.1, 0.6, 0.2)
    for c in (winner, loser):
        c.passes, c.reason = champ.judge(c, rule)
    row = {"study": "s", "claim": "c", "arm": "x", "reference": "heuristic", "regime": "all", "pairs": 6, "mean_arm": 1.0,
           "mean_reference": 0.5, "difference": 0.5, "low": 0.1, "high": 0.9, "wins": 4, "ties": 1, "losses": 1,
           "fresh_orders": 2, "fresh_difference": 0.4, "fresh_low": 0.0, "fresh_high": 0.8, "null_rms": 0.3, "holds": False,
           "verdict": "v", "heldout": "h", "study_file": "studies/s.toml", "study_sha256": "x", "episodes": 10,
           "seconds": 1.0, "machine": "m"}  # fmt: skip
    with duckdb.connect(str(paths.warehouse)) as con:
        champ.record_night(con, "2026-12-01", "test", champ.starting_champion(), [winner, loser], winner, 1, rule, "1")
        record_study(con, "s", [row])
    table = ["| night | controller | role | pairs | vs champion (original order) | fresh orders | null RMS | decision |",
             "|---|---|---|---:|---|---|---:|---|",
             "| 2026-12-01 | **heuristic** | champion | | | | | → fixed:conv_heavy@0 |",
             "| 2026-12-01 | fixed:conv_heavy@0 | challenger | 8 | +0.50 [+0.10, +1.50] | +0.40 [+0.05, +1.40] | 0.70 | promoted |",
             "| 2026-12-01 | fixed:conv_heavy@3 | challenger | 8 | +0.20 [-0.10, +1.20] | +0.60 [+0.20, +1.60] | 0.70 | kept |"]  # fmt: skip
    report = write_night_report("2026-12-01", paths, mini_night()).read_text().splitlines()
    assert report[6] == ("Score: final accuracy on the test split (pp), which no controller sees; held-out configurations "
                         "drawn for this night only (4 per regime of spec `smoke`), each controller on the original data "
                         "order and 2 fresh ones; the null control is the champion rerun on the fresh orders.")  # fmt: skip
    assert report[8:13] == table and report[13:16] == ["", "![the champion night by night](trend.png)", ""]
    assert report[16:] == ["## Why", "", "- fixed:conv_heavy@0: passed the rule: original +0.50 [+0.10, +1.50] pp, fresh "
                           "orders +0.40 [+0.05, +1.40], 8 pairs", "- fixed:conv_heavy@3: the champion stays: original "
                           "order +0.20 [-0.10, +1.20] pp: the interval is not above 0"]  # fmt: skip
    assert run_champion_command(argparse.Namespace(warehouse=paths.warehouse, night=None, plot=None)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "night        champion at start            -> at end                     champion  heuristic  best fixed",
        "2026-12-01   heuristic                    -> fixed:conv_heavy@0              89.00      89.00  90.00 (fixed:conv_heavy@0)",
        "", *table]  # fmt: skip
    md = results_markdown([paths.warehouse]).splitlines()
    assert md[md.index("## s") + 6:md.index("## s") + 9] == [
        "| arm − reference | regime | pairs | original order | fresh orders | null RMS | W/T/L | holds |", "|---|---|---:|---|---|---:|---|---|",
        "| x − heuristic | all | 6 | +0.50 [+0.10, +0.90] | +0.40 [+0.00, +0.80] | 0.30 | 4/1/1 | no |"]  # fmt: skip
    assert any(line.endswith("): mean test accuracy (pp).") for line in md)
    assert not re.search(r"\brent\b", "\n".join(md), re.IGNORECASE)
