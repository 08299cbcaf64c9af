"""Branching policy iteration (online_rl/vine.py): the fork states read back from real branched episodes carry
the measured outcome of every legal action, the improvement step learns the better action where it was
measured and keeps the policy's own choice elsewhere, and a real run on synthetic episodes is resumable with
its lineage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tamiyo_models.agents.base import categorical_columns
from tamiyo_models.agents.networks import MLPActor
from tamiyo_models.agents.saved import load_policy, save_policy
from tamiyo_models.episodes.branching import branch_run_id
from tamiyo_models.online_rl.vine import ForkState, VineConfig, improve_actor, improvement_labels, train_vine
from tamiyo_models.world.actions import Action
from tamiyo_models.world.features import FEATURE_SETS
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

SPEC = """name = "vine-test"
[base]
max_epochs = 6
dataset = { name = "synthetic" }
[vary]
learning_rate = { min = 0.05, max = 0.1 }
"""


def actor_file(path, seed: int = 0):
    features = FEATURE_SETS["base+lifecycle+task"]
    torch.manual_seed(seed)
    actor = MLPActor(len(features), (32, 32), categorical=categorical_columns(features))
    return save_policy(actor, features, path, algorithm="test-actor", phase="phase1")


def region_run_setup(tmp_path, **settings):
    """The synthetic spec, an initial actor and a region-rule config on small runs (3 parents, forks at steps 1-3,
    margin 0, 2 forks per tested cell) for `settings` to adjust."""
    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    config = VineConfig(**{"episodes_per_iteration": 3, "forks_per_episode": 2, "max_step": 3, "margin": 0.0, "updates": 50,
                           "label_rule": "region", "region_min_forks": 2, **settings})  # fmt: skip
    return spec, actor_file(tmp_path / "initial.pt"), config


def test_improvement_labels_take_the_best_action_only_past_the_margin():
    fork = ForkState("r", 3, [0.0], [True] * 8, taken=0, outcome={0: 80.0, 1: 80.2, 5: 80.6})
    assert improvement_labels([fork], margin=0.25) == [([0.0], [True] * 8, 5)]
    assert improvement_labels([fork], margin=0.6) == []  # +0.6 is not more than 0.6
    worse = ForkState("r", 4, [0.0], [True] * 8, taken=0, outcome={0: 80.0, 1: 79.0})
    assert improvement_labels([worse], margin=0.0) == []
    with pytest.raises(ValueError, match="margin"):
        VineConfig(margin=-1)


def test_with_confirmation_a_label_also_needs_its_gain_on_the_new_data_orders():
    # +0.6 on the parent's order; on two new orders +0.5 and -0.1 (mean +0.2): below the margin, no label.
    fork = ForkState("r", 3, [0.0], [True] * 8, taken=0, outcome={0: 80.0, 1: 80.2, 5: 80.6},
                     fresh={1: {0: 81.0, 5: 81.5}, 2: {0: 80.4, 5: 80.3}})  # fmt: skip
    assert fork.fresh_gains(5) == pytest.approx([0.5, -0.1])
    assert improvement_labels([fork], margin=0.25) == [([0.0], [True] * 8, 5)]  # unconfirmed: the single pair decides
    assert improvement_labels([fork], margin=0.25, confirm=True) == []
    assert improvement_labels([fork], margin=0.15, confirm=True) == [([0.0], [True] * 8, 5)]  # mean +0.2 > 0.15
    unreplayed = dataclasses.replace(fork, fresh={1: {0: 81.0}})  # the alternative's replay failed: no evidence
    assert improvement_labels([unreplayed], margin=0.15, confirm=True) == []
    with pytest.raises(ValueError, match="confirm_orders"):
        VineConfig(confirm_orders=-1)


def test_improve_actor_learns_the_measured_action_and_keeps_its_own_elsewhere():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    actor = MLPActor(3, (32, 32))
    legal = [True, True, False, True, False, False, False, False]
    visited = [("run", rng.normal(size=3).tolist(), legal) for _ in range(400)]
    with torch.no_grad():
        own = actor.logits(torch.tensor([v[1] for v in visited]), torch.tensor([v[2] for v in visited])).argmax(-1)
    # The improved action: 3 wherever the first feature is above 1 (a region, as real fork states would form).
    labels = [(v[1], v[2], 3) for v in visited if v[1][0] > 1.0][:40]
    assert labels and any(int(own[i]) != 3 for i, v in enumerate(visited) if v[1][0] > 1.0)
    config = VineConfig(updates=1500, learning_rate=3e-3, fork_weight=8.0)
    student, on_labels, elsewhere = improve_actor(actor, visited, labels, config, log=lambda *_: None)
    assert on_labels == 1.0
    assert elsewhere > 0.85  # the visited states inside the relabelled region count as "elsewhere" too
    with torch.no_grad():
        new = student.logits(torch.tensor([v[1] for v in visited]), torch.tensor([v[2] for v in visited])).argmax(-1)
    outside = [i for i, v in enumerate(visited) if v[1][0] < 0.5]
    assert float((new[outside] == own[outside]).float().mean()) > 0.95  # far from the region: unchanged
    with torch.no_grad():
        probs = torch.softmax(student.logits(torch.tensor([visited[0][1]]), torch.tensor([legal])), -1)[0]
        assert float(probs[2]) == 0.0 and float(probs[4:].sum()) == 0.0  # illegal actions: no probability


def test_train_vine_measures_every_action_at_the_forks_and_is_resumable(tmp_path):
    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    initial = actor_file(tmp_path / "initial.pt")
    # The run ids (which fix the drawn fork steps) hold the policy's path under tmp_path; the window 2..3 makes
    # the forks certain: step 2 always has a choice.
    config = VineConfig(iterations=2, episodes_per_iteration=2, forks_per_episode=2, max_step=3, margin=0.0, updates=200,
                        label_rule="fork")  # fmt: skip
    result = train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lambda *_: None)

    assert [row["iteration"] for row in result.history] == [1, 2]
    assert result.forks, "no fork was measured"
    raw = tmp_path / "out" / "raw"
    for fork in result.forks:
        parent = read_raw_run(raw / f"{fork.run_id}.jsonl")
        record = next(s for s in parent.steps if s["step"] == fork.step)
        legal = sorted(Action.from_fine(name).index for name in record["action"]["legal"])
        assert sorted(fork.outcome) == legal  # every legal action measured, the parent's own from the parent
        assert fork.outcome[fork.taken] == parent.footer["final_val_accuracy"]
        for index, value in fork.outcome.items():
            if index != fork.taken:
                branch = read_raw_run(raw / f"{branch_run_id(fork.run_id, fork.step, Action.from_index(index))}.jsonl")
                assert branch.footer["final_val_accuracy"] == value
                # Run to the end of the episode, so the outcome is the final validation accuracy.
                assert branch.steps[-1]["step"] == parent.steps[-1]["step"]
    # The policies form a chain: iteration 1's parent is the initial file, iteration 2's is iteration 1's.
    first, second = (load_policy(tmp_path / "out" / "policies" / f"vine-iter-0{k}.pt")[1] for k in (1, 2))
    assert first["parent"] == str(initial.resolve())
    assert second["parent"] == str((tmp_path / "out" / "policies" / "vine-iter-01.pt").resolve())
    final = load_policy(result.policy_path)[1]
    assert final["algorithm"] == "vine" and final["phase"] == "phase4"
    # The test split is never read: a fork's outcomes are validation accuracies.
    assert all(0.0 <= v <= 100.0 for f in result.forks for v in f.outcome.values())

    # Resume: nothing is rerun (the run files are read back), the iteration policies are reused.
    runs_before = {p.name: p.stat().st_mtime_ns for p in list_raw_runs(raw)}
    lines = []
    again = train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lines.append)
    assert {p.name: p.stat().st_mtime_ns for p in list_raw_runs(raw)} == runs_before
    assert sum("reusing" in line for line in lines) == 2
    assert sum(f"parent {k}/2 complete" in line for line in lines for k in (1, 2)) == 4  # each parent said, per iteration
    assert [f.outcome for f in again.forks] == [f.outcome for f in result.forks]
    # Other settings on the same folder: the episodes are still read back, the policies are trained anew.
    lines = []
    train_vine(initial, tmp_path / "out", dataclasses.replace(config, margin=0.1), spec=str(spec), workers=1, log=lines.append)
    assert not any("reusing" in line for line in lines)
    assert load_policy(tmp_path / "out" / "policies" / "vine-iter-01.pt")[1]["metadata"]["vine"]["margin"] == 0.1


def test_train_vine_replays_its_candidate_labels_on_new_data_orders(tmp_path):
    """With `confirm_orders`, exactly the forks whose best action beat the parent's own by more than the margin are
    replayed (best and own action, each new order), read back per order, and only those whose mean gain there
    also clears the margin become labels."""
    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    initial = actor_file(tmp_path / "initial.pt")
    config = VineConfig(iterations=1, episodes_per_iteration=3, forks_per_episode=2, max_step=3, margin=0.0, updates=50,
                        confirm_orders=1, label_rule="fork")  # fmt: skip
    result = train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lambda *_: None)
    assert result.forks
    for fork in result.forks:
        best, gain = fork.best()
        assert bool(fork.fresh) == (gain > 0.0)
        if fork.fresh:
            assert set(fork.fresh) == {1} and set(fork.fresh[1]) == {best, fork.taken}
            replay = read_raw_run(tmp_path / "out" / "raw" / f"{branch_run_id(fork.run_id, fork.step, Action.from_index(best), 1)}.jsonl")
            assert replay.footer["final_val_accuracy"] == fork.fresh[1][best]
    row = result.history[0]
    candidates = [f for f in result.forks if f.best()[1] > 0.0]
    assert row["candidates"] == row["candidates_replayed"] == len(candidates)
    assert row["relabelled"] == len(improvement_labels(result.forks, 0.0, confirm=True)) == \
        sum(f.fresh_gains(f.best()[0])[0] > 0.0 for f in candidates)  # fmt: skip


def test_tamiyo_train_vine_lands_parents_and_branches_and_registers_the_policy(tmp_path, capsys):
    """The command line end to end: parents and their branches land in the landing folder and ingest as linked
    runs (the measured counterfactuals the next night's Phase 3 learns from), and the policy is registered as
    Phase 4's candidate-vine with the initial file as its lineage parent."""
    from tamiyo_models.agents.tracking import Tracker, TrackingConfig
    from tamiyo_models.cli import main
    from tamiyo_models.warehouse import ingest_folder, query

    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    initial = actor_file(tmp_path / "initial.pt")
    # The fork window pins the one fork to step 2, which always has a choice (a seed grafted at step 1 can be
    # culled, else one can be grafted); a random step could land on WAIT-only states to the end of the episode
    # (after a cull, during the embargo), and the run ids, hence the drawn steps, change with tmp_path.
    code = main(["train", "phase4", "--algorithm", "vine", "--parent", str(initial), "--spec", str(spec),
                 "--episodes", "4", "--episodes-per-iteration", "2", "--forks", "1", "--fork-max-step", "2", "--workers", "1",
                 "--confirm-orders", "1", "--label-rule", "fork", "--record-dir", str(tmp_path / "landing"), "--out", str(tmp_path / "out"),
                 "--mlflow-root", str(tmp_path / "mlflow")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    policy = tmp_path / "out" / "phase4-vine.pt"
    assert f"policy: {policy}" in capsys.readouterr().out
    payload = load_policy(policy)[1]
    assert payload["algorithm"] == "vine" and payload["parent"] == str(initial)
    assert [row["episodes_used"] for row in json.loads(payload["metadata"]["history"])] == [2, 4]
    tracker = Tracker(TrackingConfig(root=str(tmp_path / "mlflow")))
    assert tracker.resolve("tamiyo-phase4-online@candidate-vine").version
    summary = ingest_folder(tmp_path / "landing", tmp_path / "w.duckdb")
    assert summary.records_quarantined == 0, summary.line()
    runs = query(tmp_path / "w.duckdb", "SELECT run_id FROM runs")
    branches = query(tmp_path / "w.duckdb", "SELECT run_id, parent_run_id, horizon, fork_step FROM branches")
    assert runs.height - branches.height == 4 and branches["parent_run_id"].n_unique() == 4  # every parent forked
    assert set(branches["fork_step"]) == {2}
    assert set(branches["parent_run_id"]) <= set(runs["run_id"]) and branches["horizon"].is_null().all()  # to the end


def test_val_subsample_enlarges_only_the_training_episodes_validation_split(tmp_path):
    """The learner's outcomes are validation accuracies; `val_subsample` sets that split's size in the training
    episodes (drawn from the training pool, never the test split) and nothing else of their configuration."""
    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC.replace('dataset = { name = "synthetic" }', 'dataset = { name = "synthetic", val_subsample = 40 }'))
    initial = actor_file(tmp_path / "initial.pt")
    config = VineConfig(iterations=1, episodes_per_iteration=1, forks_per_episode=1, updates=10, val_subsample=60)
    train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lambda *_: None)
    headers = [read_raw_run(p).header for p in list_raw_runs(tmp_path / "out" / "raw")]
    assert headers and all(h["config"]["dataset"]["val_subsample"] == 60 for h in headers)
    assert {h["config"]["dataset"]["test_subsample"] for h in headers} == {None}
    with pytest.raises(ValueError, match="val_subsample"):
        VineConfig(val_subsample=0)


def test_tamiyo_train_vine_from_a_fixed_schedule_branches_its_graft(tmp_path, capsys):
    """`--parent fixed:conv_heavy@1 --distil`: the learner starts from the schedule's student, which waits at the
    first decision (step 1, epoch 0) and grafts conv_heavy at the second (epoch 1) like the schedule; with forks at
    both (`--fork-min-step 1 --fork-max-step 2 --forks 2`) every other legal action is measured there (a graft at
    epoch 0; waiting or another blueprint at epoch 1), in training episodes with their own validation size
    (`--val-subsample`); the lineage names the schedule."""
    from policy_fixtures import build_warehouse

    from tamiyo_models.cli import main

    warehouse = build_warehouse(tmp_path / "data")
    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    code = main(["train", "phase4", "--algorithm", "vine", "--parent", "fixed:conv_heavy@1", "--distil", "0.05",
                 "--distil-updates", "1000",
                 "--warehouse", str(warehouse), "--spec", str(spec), "--episodes", "2", "--episodes-per-iteration", "2",
                 "--forks", "2", "--fork-min-step", "1", "--fork-max-step", "2", "--val-subsample", "60", "--workers", "1",
                 "--record-dir", str(tmp_path / "landing"), "--out", str(tmp_path / "out"), "--no-mlflow"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert load_policy(tmp_path / "out" / "phase4-vine.pt")[1]["parent"] == "fixed:conv_heavy@1"
    assert load_policy(tmp_path / "out" / "initial-distilled.pt")[1]["metadata"]["distil"]["updates"] == 1000
    runs = [read_raw_run(p) for p in list_raw_runs(tmp_path / "landing")]
    parents = [r for r in runs if not r.header.get("branch")]
    branches = [r for r in runs if r.header.get("branch")]
    assert len(parents) == 2 and all(r.header["config"]["dataset"]["val_subsample"] == 60 for r in runs)
    for parent in parents:
        assert [s["action"]["fine"] for s in parent.steps[:2]] == ["WAIT", "GERMINATE_conv_heavy"]  # the schedule's graft
        forced: dict[int, set] = {}
        for b in branches:
            if b.header["branch"]["parent_run_id"] == parent.run_id:
                forced.setdefault(b.header["branch"]["fork_step"], set()).add(b.header["branch"]["forced_action"])
        others = {"GERMINATE_conv_light", "GERMINATE_attention", "GERMINATE_norm", "GERMINATE_depthwise"}
        assert forced == {1: others | {"GERMINATE_conv_heavy"}, 2: others | {"WAIT"}}


def test_train_vine_with_the_region_rule_labels_every_state_of_a_region_the_pooled_forks_support(tmp_path):
    """label_rule="region": each iteration pools every fork so far against the initial policy's action
    (fork_evidence.py), its labels are exactly the visited states of the regions whose alternative passed,
    recomputed from the runs on disk, and every iteration's actor is the initial one fine-tuned on them."""
    from tamiyo_models.online_rl.vine import fork_states, reference_actions, region_rule_labels

    # A lax test (any mean above 0 at a 90% false discovery rate, 2 forks) so that tiny synthetic runs label something.
    spec, initial, config = region_run_setup(tmp_path, iterations=2, region_fdr=0.9)
    result = train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lambda *_: None)
    features = load_policy(initial)[1]["feature_names"]
    raw = tmp_path / "out" / "raw"
    parents = [p.stem for p in list_raw_runs(raw) if not read_raw_run(p).header.get("branch")]
    visited = fork_states(raw, parents, features).visited
    start = load_policy(initial)[0]
    expected, cells = region_rule_labels(start, result.forks, visited, features, config)
    row = result.history[-1]
    assert row["relabelled"] == row["relabelled_total"] == len(expected)
    assert any(c.label for c in cells) and expected, "nothing passed even the lax test; the check would be empty"
    assert {c.region.own for c in cells} <= set(reference_actions(start, result.forks))  # measured against the start
    final = load_policy(result.policy_path)[1]
    assert final["metadata"]["vine"]["label_rule"] == "region"
    # Each iteration's actor is the start fine-tuned (its lineage parent is still the last iteration's, whose
    # episodes it learned from): a label the later forks drop is not carried on by the actor that learned it.
    assert final["metadata"]["vine"]["fine_tuned_from"] == str(initial.resolve())
    # The evidence as it stood at the end is in the run's history, one row per (region, alternative).
    written = json.loads((tmp_path / "out" / "vine-history.json").read_text())["region_evidence"]
    assert len(written) == len(cells) and sum(row["label"] for row in written) == sum(c.label for c in cells)
    assert final["parent"] == str((tmp_path / "out" / "policies" / "vine-iter-01.pt").resolve())


def test_region_rule_pools_the_evidence_of_earlier_runs(tmp_path):
    """evidence_from: a second region-rule run pools the first run's forks and visited states with its own, so
    its labels are exactly those of both runs' evidence together, while its history keeps only its own forks
    (pooling it later does not count the first run's twice). A run with another rule, or an earlier run whose
    policy reads other features, is refused with the folder named."""
    from tamiyo_models.online_rl.fork_evidence import task_names_of
    from tamiyo_models.online_rl.vine import fork_states, read_vine_run, region_rule_labels

    # Any mean above 0 passes (false discovery rate 1): this test is about what is pooled, not the statistics.
    spec, initial, config = region_run_setup(tmp_path, iterations=1, region_fdr=1.0)
    first = train_vine(initial, tmp_path / "first", config, spec=str(spec), workers=1, log=lambda *_: None)
    lines: list[str] = []
    pooled = dataclasses.replace(config, seed=1, evidence_from=(str(tmp_path / "first"),))
    second = train_vine(initial, tmp_path / "second", pooled, spec=str(spec), workers=1, log=lines.append)
    assert any(line.startswith(f"vine: pooling {len(first.forks)} forks") for line in lines)

    features = load_policy(initial)[1]["feature_names"]
    runs = [read_vine_run(tmp_path / name) for name in ("first", "second")]
    assert [len(r.forks) for r in runs] == [len(first.forks), len(second.forks)]  # each history: its own forks
    assert {f.run_id for f in runs[0].forks}.isdisjoint(f.run_id for f in runs[1].forks)  # new configurations
    visited = [v for r in runs for v in fork_states(r.raw_dir, r.parents, features).visited]
    assert len({v[0] for v in visited}) == 6  # both runs' parents
    expected, cells = region_rule_labels(load_policy(initial)[0], runs[0].forks + runs[1].forks, visited, features, pooled)
    assert any(c.label for c in cells), "nothing passed even the lax test; the check would be empty"
    own_cells = region_rule_labels(load_policy(initial)[0], runs[1].forks, visited, features, pooled)[1]
    assert sum(len(c.gains) for c in cells) > sum(len(c.gains) for c in own_cells)  # the first run's forks count too
    written = json.loads((tmp_path / "second" / "vine-history.json").read_text())
    rows = [c.row(task_names_of(features)) for c in cells]
    keys = ("region", "action", "forks", "label")
    assert [tuple(r[k] for k in keys) for r in written["region_evidence"]] == [tuple(r[k] for k in keys) for r in rows]
    assert second.history[-1]["relabelled"] == len(expected)
    assert any(f"of {len(visited)} others" in line for line in lines)  # the student keeps its own on both runs' states
    assert load_policy(second.policy_path)[1]["metadata"]["vine"]["evidence_from"] == (str(tmp_path / "first"),)

    with pytest.raises(ValueError, match="needs label_rule='region'"):
        dataclasses.replace(pooled, label_rule="fork")
    with pytest.raises(ValueError, match="needs label_rule='fork'"):  # the default rule pools forks, it replays none
        VineConfig(confirm_orders=2)
    other = MLPActor(len(FEATURE_SETS["base"]), (32, 32), categorical=categorical_columns(FEATURE_SETS["base"]))
    save_policy(other, FEATURE_SETS["base"], tmp_path / "other.pt", algorithm="test-actor", phase="phase1")
    with pytest.raises(ValueError, match="evidence from .*first.*other features"):
        train_vine(tmp_path / "other.pt", tmp_path / "third", pooled, spec=str(spec), workers=1, log=lambda *_: None)


def test_episodes_run_first_elsewhere_are_read_back_and_only_learned_from(tmp_path):
    """An iteration's parents and branches are fixed by its settings (vine.iteration_configs), so they can run
    first on their own (as on a machine with more cores); train_vine with the same settings then runs no episode:
    every parent is read back with its branches, and the forks are those the branches measured."""
    from tamiyo_models.episodes.generation import GenerationSpec, generate
    from tamiyo_models.online_rl.vine import iteration_configs

    spec = tmp_path / "vine-test.toml"
    spec.write_text(SPEC)
    initial = actor_file(tmp_path / "initial.pt").resolve()
    raw = tmp_path / "out" / "raw"
    config = VineConfig(iterations=1, episodes_per_iteration=3, forks_per_episode=1, min_step=1, max_step=1, updates=20, seed=5)
    first = generate(iteration_configs(GenerationSpec.load(str(spec)), None, config, 0, initial), raw, workers=1,
                     branching=config.branching(), reuse_existing=True)  # fmt: skip
    families = [r.run_id for r in first if r.status == "complete"]
    assert len(families) == 3
    written = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    assert len(written) == 3 * 6  # each parent and a branch per other legal action at step 1 (5 on this host)

    lines: list[str] = []
    result = train_vine(initial, tmp_path / "out", config, spec=str(spec), workers=1, log=lines.append)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == written  # nothing ran again
    # Read back, each parent counts the branch runs lying beside it (5), none of which ran again (above).
    assert sum("complete, 5 branch runs" in line for line in lines) == 3
    assert sorted(f.run_id for f in result.forks) == sorted(families)
    assert all(len(f.outcome) == 6 for f in result.forks)


def test_stored_forks_read_from_the_warehouse_are_the_forks_of_the_raw_runs(tmp_path):
    """stored_forks: a vine run's parents and branches, ingested, give back exactly the fork states and visited
    states that fork_states reads from their raw runs (what the nightly loop's vine challenger learns from), a
    night filter keeps only tagged parents, and iterations=0 improves the start on that evidence alone."""
    from tamiyo_models.online_rl.vine import fork_states, region_rule_labels, stored_forks
    from tamiyo_models.warehouse import ingest_folder

    spec, initial, config = region_run_setup(tmp_path, iterations=1, region_fdr=1.0)
    run = train_vine(initial, tmp_path / "run", config, spec=str(spec), workers=1, log=lambda *_: None)
    warehouse = tmp_path / "w.duckdb"
    ingest_folder(tmp_path / "run" / "raw", warehouse)
    features = load_policy(initial)[1]["feature_names"]
    parents = sorted({f.run_id for f in run.forks})
    raw = fork_states(tmp_path / "run" / "raw", parents, features)
    stored = stored_forks(warehouse, features)

    def key(f):
        return (f.run_id, f.step, f.taken, tuple(f.legal), tuple(sorted(f.outcome.items())))

    assert sorted(map(key, stored.forks)) == sorted(map(key, raw.forks)) and stored.forks
    by_state = {(f.run_id, f.step): f.features for f in raw.forks}
    for fork in stored.forks:
        assert fork.features == pytest.approx(by_state[(fork.run_id, fork.step)], abs=1e-5)
    assert sorted((v[0], tuple(v[2])) for v in stored.visited) == sorted((v[0], tuple(v[2])) for v in raw.visited)
    assert len(stored.seeds) == len(parents)
    assert stored_forks(warehouse, features, nights=("2026-12-01",)).forks == []  # none of these runs is a night's

    lines: list[str] = []
    only = dataclasses.replace(config, iterations=0, evidence_warehouse=str(warehouse))
    improved = train_vine(initial, tmp_path / "evidence", only, spec=str(spec), workers=1, log=lines.append)
    assert not (tmp_path / "evidence" / "raw").exists()  # no episode of its own
    assert any(line.startswith(f"vine: pooling {len(stored.forks)} stored forks") for line in lines)
    expected, _ = region_rule_labels(load_policy(initial)[0], stored.forks, stored.visited, features, only)
    assert improved.history[-1]["relabelled"] == len(expected) and improved.metadata["data_seeds"] == stored.seeds
    assert load_policy(improved.policy_path)[1]["parent"] == str(initial.resolve())
    with pytest.raises(ValueError, match="iterations=0"):
        dataclasses.replace(config, iterations=0)


def test_with_rent_forks_compare_validation_accuracy_charged_for_growth(tmp_path):
    """At rent > 0 a fork's outcome is the final validation accuracy charged like the score (a graft must pay for
    its parameters before it becomes a label), the same from the raw runs and from the warehouse; at rent 0 the
    charge is exactly nothing."""
    from tamiyo_models.controllers.config import reference_controller
    from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.online_rl.vine import charged_val, fork_states, stored_forks
    from tamiyo_models.warehouse import ingest_folder
    from tamiyo_models.world.datasets import DatasetConfig

    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=4, seed=5, rent=3.0,
                           controller=reference_controller("never"))  # fmt: skip
    raw = tmp_path / "raw"
    parent = run_with_branches(config, raw, BranchConfig(horizon=None, fork_rule="steps", steps=(1,), min_step=1)).parent
    features = FEATURE_SETS["base"]
    forks = fork_states(raw, [parent.run_id], features).forks
    (fork,) = forks
    grown = [a for a in fork.outcome if a != fork.taken]
    assert grown  # every graft at step 1 was branched
    for path in list_raw_runs(raw):
        run = read_raw_run(path)
        charge = run.footer["final_val_accuracy"] - charged_val(run.header, run.footer)
        grew = run.footer["final_parameters"] > run.header["host_parameters"]
        assert (charge > 0) == grew and charge == pytest.approx(run.footer["final_test_accuracy"] - run.footer["score"])
    ingest_folder(raw, tmp_path / "w.duckdb")
    (stored,) = stored_forks(tmp_path / "w.duckdb", features).forks
    assert stored.outcome == pytest.approx(fork.outcome)
    free = {"final_val_accuracy": 71.25, "final_parameters": 900, "rent": 0.0}
    assert charged_val({"host_parameters": 500}, free) == 71.25
