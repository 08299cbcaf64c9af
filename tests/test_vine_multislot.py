"""Vine on a two-slot host (online_rl/vine.py, the nightly loop's path): with no episodes of its own, the region
rule over fork studies stored in a real warehouse relabels a two-slot policy over the factored action space
(15 actions) and the improved policy takes the measured better action in that region and its own elsewhere.

The optimum is known by construction: the parents never grow after the fork and the rent is steep, so a seed
that never blends changes nothing but the charge (rent x log2 of the grown size), and WAIT, which grows nothing,
ends best at every fork; a big graft into slot 1 trails it by the most. The start grafts that one everywhere."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tamiyo_models.agents.base import categorical_columns
from tamiyo_models.agents.networks import MLPActor
from tamiyo_models.agents.saved import load_policy, save_policy
from tamiyo_models.controllers.config import reference_controller
from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
from tamiyo_models.episodes.episode import EpisodeConfig
from tamiyo_models.online_rl.distil import fit_targets, smoothed_targets, teacher_actions
from tamiyo_models.online_rl.vine import VineConfig, stored_forks, train_vine
from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy
from tamiyo_models.warehouse import ingest_folder
from tamiyo_models.world.actions import FINE_ACTIONS, WAIT, action_names, germinate
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.features import FEATURE_SETS
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.telemetry import TelemetryConfig

SPACE = action_names(2)
FEATURES = FEATURE_SETS["base+lifecycle+task+slots"]
BIG_SLOT1 = germinate("conv_heavy", slot=1).index  # 9: beyond the single-slot space
NIGHT = "2026-12-07"


def episode(seed: int, host: HostConfig) -> EpisodeConfig:
    # Few blueprints per slot keep the branches few (a fork branches every legal action); tiny splits keep them fast.
    data = DatasetConfig(name="synthetic", train_subsample=256, val_subsample=128, test_subsample=128)
    return EpisodeConfig(dataset=data, host=host, max_epochs=4, seed=seed, rent=10.0, controller=reference_controller("never"),
                         telemetry=TelemetryConfig(enabled=False), tags={"night": NIGHT})  # fmt: skip


def fork_study(tmp_path):
    """Four two-slot parents and one single-slot parent, each forked at its first decision, in a warehouse."""
    raw = tmp_path / "raw"
    fork = BranchConfig(horizon=None, fork_rule="steps", steps=(1,), min_step=1)
    two = HostConfig(widths=(2, 4, 8), slots=(0, 1), slot_blueprints=(("norm",), ("conv_heavy", "norm")))
    for seed in (11, 12, 13, 14):
        run_with_branches(episode(seed, two), raw, fork)
    run_with_branches(episode(15, HostConfig(widths=(2, 4, 8), slot_blueprints=(("norm",),))), raw, fork)
    warehouse = tmp_path / "w.duckdb"
    summary = ingest_folder(raw, warehouse)
    assert summary.records_quarantined == 0, summary.line()
    return warehouse


def grafting_policy(path, visited):
    """A two-slot actor that grafts conv_heavy into slot 1 wherever it can, fitted on the stored states."""
    torch.manual_seed(0)
    actor = MLPActor(len(FEATURES), (32, 32), len(SPACE), categorical=categorical_columns(FEATURES))
    obs = torch.tensor([v[1] for v in visited], dtype=torch.float32)
    mask = torch.tensor([v[2] for v in visited], dtype=torch.bool)
    targets = smoothed_targets(torch.full((len(obs),), BIG_SLOT1), mask, 0.05)
    fit_targets(actor, obs, mask, targets, updates=200, learning_rate=3e-3, batch_size=16, seed=0)
    assert (teacher_actions(actor, obs, mask) == BIG_SLOT1).all()
    return save_policy(actor, FEATURES, path, algorithm="test-actor", phase="phase1")


def test_vine_on_stored_two_slot_forks_learns_the_better_action_in_its_region_only(tmp_path):
    warehouse = fork_study(tmp_path)
    stored = stored_forks(warehouse, FEATURES, (NIGHT,), SPACE)
    assert len(stored.forks) == 4 and stored.skipped == 1  # the single-slot parent is not mixed in
    for fork in stored.forks:  # the construction: WAIT ends best, the big slot-1 graft trails it clearly
        assert max(fork.outcome, key=fork.outcome.get) == WAIT.index and len(fork.legal) == len(SPACE)
        assert fork.outcome[WAIT.index] - fork.outcome[BIG_SLOT1] > 3.0
    single = stored_forks(warehouse, FEATURES, (NIGHT,))  # a single-slot policy sees only the single-slot parent
    assert len(single.forks) == 1 and single.skipped == 4
    assert all(len(v[2]) == len(FINE_ACTIONS) for v in single.visited)
    start = grafting_policy(tmp_path / "start.pt", stored.visited)

    vine = VineConfig(iterations=0, evidence_warehouse=str(warehouse), evidence_nights=(NIGHT,), updates=600,
                      learning_rate=3e-3, batch_size=32)  # fmt: skip
    config = OnlineRunConfig(algorithm="vine", spec="arena-v2", seed_slots=2, feature_set="base+lifecycle+task+slots",
                             initial_policy=str(start), record_dir=None, vine=vine)  # fmt: skip
    lines: list[str] = []
    run = train_online_policy(config, tmp_path / "out", log=lines.append)
    assert any(line.startswith("vine: left out 1 forked parent(s)") for line in lines), lines
    assert not (tmp_path / "out" / "raw").exists()  # no episode of its own
    row = run.history[-1]
    # One region (the first decision, both slots dormant, own: the big slot-1 graft) holds all four forks; its
    # label, WAIT, covers exactly the four states visited there.
    assert row["forks"] == 4 and row["cells_labelled"] >= 1 and row["relabelled"] == 4
    evidence = load_policy(run.policy_path)[1]
    assert evidence["fine_actions"] == list(SPACE) and evidence["parent"] == str(start)

    improved = load_policy(run.policy_path)[0]
    first = [v for v in stored.visited if v[1][FEATURES.index("epoch")] == 0]
    later = [v for v in stored.visited if v[1][FEATURES.index("epoch")] > 0]
    assert len(first) == 4 and len(later) == 12
    for states, expected in ((first, WAIT.index), (later, BIG_SLOT1)):
        obs = torch.tensor([v[1] for v in states], dtype=torch.float32)
        chosen = teacher_actions(improved, obs, torch.tensor([v[2] for v in states], dtype=torch.bool))
        assert chosen.tolist() == [expected] * len(states), [SPACE[a] for a in chosen.tolist()]

    rows = json.loads((tmp_path / "out" / "vine-history.json").read_text())["region_evidence"]
    # Every cheaper alternative passes; the region's label is the best of them.
    assert max((r for r in rows if r["label"]), key=lambda r: r["mean"])["action"] == "WAIT"
    assert all("slots DORMANT/DORMANT" in r["region"] and "own GERMINATE_conv_heavy_SLOT1" in r["region"] for r in rows)

    # Its own parents and forks stay single-slot: refused before any episode, naming why.
    with pytest.raises(ValueError, match="single-slot hosts only for its own episodes"):
        own_episodes = dataclasses.replace(config, vine=dataclasses.replace(vine, iterations=1))
        train_online_policy(own_episodes, tmp_path / "o2", log=lines.append)
    with pytest.raises(ValueError, match="scores 15 actions .*branches every legal action"):
        train_vine(start, tmp_path / "o3", dataclasses.replace(vine, iterations=1), spec="arena-v2", log=lines.append)
