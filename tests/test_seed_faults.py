"""Seeds born dead or frozen (issue 34's blueprint failure modes) and fixed schedules that graft into a chosen slot.

A configuration's hidden `seed_faults` makes a germinated conv_heavy seed dead from birth with the given
probability: its ReLUs never fire, so the body before them never learns while the seed keeps its parameters
(and its rent). The draw comes from the seed-initialisation stream: the same configuration on a fresh data order
meets the same fault, and a configuration without faults draws exactly what it always drew. With
`seed_fault_mode = "frozen"` the faulted seed is instead switched on at birth and never trains: it harms. With
"noisy" it never trains and adds fresh noise at every pass: a harm the host cannot learn around."""

from __future__ import annotations

import pytest
import torch

from tamiyo_models.controllers.config import reference_controller
from tamiyo_models.episodes.episode import EpisodeConfig, EpisodeRun
from tamiyo_models.world.blueprints import DEAD_SHIFT
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.rawrun import read_raw_run

SYNTHETIC = DatasetConfig(name="synthetic")


def _run(tmp_path, name: str, **changes) -> EpisodeRun:
    config = EpisodeConfig(**{"dataset": SYNTHETIC, "max_epochs": 5, "seed": 7, "controller": reference_controller(name), **changes})
    run = EpisodeRun(config, tmp_path)
    run.result = run.run_to(config.max_epochs)
    return run


def test_a_dead_seed_never_learns_before_its_relu_and_the_footer_names_it(tmp_path):
    run = _run(tmp_path, "fixed:conv_heavy@0", seed_faults={"conv_heavy": 1.0})
    slot = run.episode.slots[0]
    body = slot.seed.body
    first_conv, first_norm, _, second_conv, last_norm = body
    assert torch.all(first_norm.bias == DEAD_SHIFT)  # no gradient reached it in 5 epochs of training
    # Everything before the dead ReLU is as it was born; the conv after it saw only zeros.
    assert first_norm.weight.eq(1.0).all()
    assert second_conv.weight.grad is None or second_conv.weight.grad.abs().max() == 0
    with torch.no_grad():
        h = torch.randn(4, slot.channels, 6, 6)
        assert torch.relu(first_norm(first_conv(h))).abs().max() == 0
    footer = read_raw_run(run.result.path).footer
    assert footer["dead_seeds"] == [f"{run.episode.run_id}/seed-1"]
    assert run.episode.config.seed_faults == (("conv_heavy", 1.0),)


def test_the_fault_is_hidden_and_survives_a_fresh_data_order(tmp_path):
    faults = {"conv_heavy": 0.5}
    draws = []
    for seed in range(6):
        dead = []
        for order in (None, 1234):
            run = _run(tmp_path / f"{seed}-{order}", "fixed:conv_heavy@0", seed_faults=faults, seed=seed, data_order_seed=order)
            dead.append(bool(run.episode.dead_seeds))
            record = run.episode.observation_record()
            assert "dead" not in str(record)  # nothing a controller reads says so
        assert dead[0] == dead[1]
        draws.append(dead[0])
    assert 0 < sum(draws) < len(draws)  # at probability 0.5, some of six seeds are dead and some healthy


def test_a_configuration_without_faults_draws_and_writes_what_it_always_did(tmp_path):
    plain = _run(tmp_path / "plain", "fixed:conv_heavy@0")
    with_zero = _run(tmp_path / "zero", "fixed:conv_heavy@0", seed_faults={"conv_heavy": 0.0})
    assert plain.episode.run_id == with_zero.episode.run_id
    assert "seed_faults" not in plain.episode.config.to_dict()
    assert "dead_seeds" not in read_raw_run(plain.result.path).footer
    for a, b in zip(plain.episode.slots[0].seed.parameters(), with_zero.episode.slots[0].seed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "faults, message",
    [({"conv_light": 0.3}, "cannot be born dead; only conv_heavy"), ({"conv_heavy": 1.5}, "must be in [0, 1]"),
     ("conv_heavy", "must map blueprints to probabilities")],
)  # fmt: skip
def test_bad_seed_faults_are_refused_naming_the_entry(faults, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        EpisodeConfig(dataset=SYNTHETIC, seed_faults=faults)
    with pytest.raises(ValueError, match="seed_faults"):
        EpisodeConfig.from_dict({**EpisodeConfig(dataset=SYNTHETIC).to_dict(), "seed_faults": faults})


def test_a_fixed_schedule_grafts_into_its_slot_and_advances_only_that_seed(tmp_path):
    host = HostConfig(widths=(2, 4, 8), slots=(0, 1))
    run = _run(tmp_path, "fixed:conv_light@0:slot1", host=host, max_epochs=12)
    slot0, slot1 = run.episode.slots
    assert slot0.state.seed_id is None and run.episode.seeds_created == 1
    assert slot1.state.blueprint == "conv_light" and slot1.stage.name != "TRAINING"  # advanced past the first gate
    assert run.controller.name == "fixed:conv_light@0:slot1"
    assert reference_controller("fixed:conv_light@0:slot1").to_dict()["slot"] == 1
    assert "slot" not in reference_controller("fixed:conv_light@0").to_dict()  # single-slot run ids unchanged
    one_slot = _run(tmp_path / "one", "fixed:conv_light@0:slot1").result
    assert one_slot.status == "failed" and "no slot 1" in one_slot.error
    with pytest.raises(ValueError, match=r"fixed:<blueprint>@<epoch>\[:slot<k>\]"):
        reference_controller("fixed:conv_light@0:slotx")


def test_a_run_with_faults_ingests_and_keeps_its_rent_and_score(tmp_path):
    import duckdb

    from tamiyo_models.warehouse import ingest_folder

    runs = tmp_path / "runs"
    _run(runs, "fixed:conv_heavy@0", seed_faults={"conv_heavy": 1.0}, rent=1.0)
    warehouse = tmp_path / "w.duckdb"
    assert ingest_folder(runs, warehouse).runs_loaded == 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (rent, score, accuracy), = con.execute("SELECT r.rent, e.score, e.final_test_accuracy FROM episodes e JOIN runs r USING (run_id)").fetchall()
    assert rent == 1.0 and score < accuracy


def test_the_vigilant_schedule_culls_a_seed_born_dead_and_grafts_again_once(tmp_path):
    dead = _run(tmp_path / "dead", "vigilant:conv_heavy@0", seed_faults={"conv_heavy": 1.0}, max_epochs=10)
    actions = [s["action"]["fine"] for s in read_raw_run(dead.result.path).steps]
    # graft at step 1, the dead seed's gradients read after its first epoch: cull at step 2; after the embargo
    # (4 epochs) and the reset (1) the slot is free again at step 8: graft again (dead again), cull at step 9.
    assert actions[:2] == ["GERMINATE_conv_heavy", "CULL"]
    assert actions.count("GERMINATE_conv_heavy") == 2 and actions.count("CULL") == 2
    healthy = _run(tmp_path / "healthy", "vigilant:conv_heavy@0", max_epochs=10)
    fixed = _run(tmp_path / "fixed", "fixed:conv_heavy@0", max_epochs=10)
    steps = [read_raw_run(r.result.path).steps for r in (healthy, fixed)]
    assert [s["action"]["fine"] for s in steps[0]] == [s["action"]["fine"] for s in steps[1]]  # a healthy seed: the schedule
    assert healthy.result.final_test_accuracy == fixed.result.final_test_accuracy
    assert reference_controller("vigilant:conv_light@1:slot1").kind == "vigilant-schedule"


def _parameters(run: EpisodeRun) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.episode.slots[0].seed.parameters()]


def _assert_a_fork_replays_bit_for_bit(tmp_path, faults: dict) -> None:
    """A snapshot taken at epoch 4, while the faulted seed is blended in, replays the rest of the episode exactly."""
    from tamiyo_models.episodes.branching import restore, take_snapshot

    config = EpisodeConfig(dataset=SYNTHETIC, max_epochs=8, seed=7, controller=reference_controller("fixed:conv_heavy@0"), **faults)
    parent = EpisodeRun(config, tmp_path / "parent")
    for _ in range(4):
        parent.step()
    snapshot = take_snapshot(parent)
    rest = [parent.step() for _ in range(4)]
    replay = restore(snapshot, tmp_path / "replay", "replay", {})
    strip = lambda step: {k: v for k, v in step.items() if k != "timing"}  # noqa: E731
    assert [strip(replay.step()) for _ in range(4)] == [strip(s) for s in rest]


def _final_test_accuracies(tmp_path, modes: tuple[str, ...], seeds=range(4)) -> dict[str, list[float]]:
    """`fixed:conv_heavy@0` with every seed faulted, paired over the same configurations, per fault mode."""
    out = {mode: [] for mode in modes}
    for seed in seeds:
        for mode in modes:
            run = _run(tmp_path / f"{mode}-{seed}", "fixed:conv_heavy@0", max_epochs=12, seed=seed,
                       seed_faults={"conv_heavy": 1.0}, seed_fault_mode=mode)  # fmt: skip
            out[mode].append(run.result.final_test_accuracy)
    return out


def test_a_frozen_seed_is_switched_on_never_learns_and_replays_bit_for_bit(tmp_path):
    """Its weights after 2 and after 5 epochs are its weights at birth (a healthy seed's move), its last BatchNorm
    scale is 1 (its branch adds a random transform at once), no gradient reaches it, the footer names it, and a
    snapshot taken while it is blended in replays the rest of the episode exactly."""
    frozen = {"seed_faults": {"conv_heavy": 1.0}, "seed_fault_mode": "frozen"}
    short, long = (_run(tmp_path / f"frozen-{n}", "fixed:conv_heavy@0", max_epochs=n, **frozen) for n in (2, 5))
    assert all(torch.equal(a, b) for a, b in zip(_parameters(short), _parameters(long)))
    healthy = [_parameters(_run(tmp_path / f"healthy-{n}", "fixed:conv_heavy@0", max_epochs=n)) for n in (2, 5)]
    assert not all(torch.equal(a, b) for a, b in zip(*healthy))
    seed = long.episode.slots[0].seed
    assert seed.body[-1].weight.eq(1.0).all() and not any(p.requires_grad for p in seed.parameters())
    footer = read_raw_run(long.result.path).footer
    assert footer["dead_seeds"] == [f"{long.episode.run_id}/seed-1"]
    assert long.episode.config.to_dict()["seed_fault_mode"] == "frozen"
    assert "seed_fault_mode" not in EpisodeConfig(dataset=SYNTHETIC, seed_faults={"conv_heavy": 1.0}).to_dict()

    _assert_a_fork_replays_bit_for_bit(tmp_path, frozen)


def test_a_frozen_seed_harms_the_host_where_a_dead_one_only_costs_its_rent(tmp_path):
    """Paired over the same configurations: the frozen seed ends below the dead one in test accuracy, and the
    vigilant schedule, reading the gradient telemetry, culls it as it culls a dead one."""
    accuracies = _final_test_accuracies(tmp_path, ("frozen", "dead"))
    frozen, dead = accuracies["frozen"], accuracies["dead"]
    assert sum(frozen) / 4 < sum(dead) / 4 - 1.0, (frozen, dead)
    vigilant = _run(tmp_path / "vigilant", "vigilant:conv_heavy@0", max_epochs=6, seed_faults={"conv_heavy": 1.0},
                    seed_fault_mode="frozen")  # fmt: skip
    assert [s["action"]["fine"] for s in read_raw_run(vigilant.result.path).steps][:2] == ["GERMINATE_conv_heavy", "CULL"]


def test_a_noisy_seed_never_learns_meets_fresh_noise_each_pass_and_replays_bit_for_bit(tmp_path):
    """Its weights stay those of its birth and no gradient reaches them; its output is the identity plus noise that
    changes with every training pass and stands still in eval mode; the footer names it; a snapshot taken while
    it is blended in replays the rest of the episode exactly (the pass counter travels with the snapshot)."""
    noisy = {"seed_faults": {"conv_heavy": 1.0}, "seed_fault_mode": "noisy", "seed_fault_scale": 0.5}
    short, long = (_run(tmp_path / f"noisy-{n}", "fixed:conv_heavy@0", max_epochs=n, **noisy) for n in (2, 5))
    assert all(torch.equal(a, b) for a, b in zip(_parameters(short), _parameters(long)))
    seed = long.episode.slots[0].seed
    assert not any(p.requires_grad for p in seed.parameters()) and seed.body[-1].weight.eq(0.0).all()
    assert int(seed.fault_noise_passes) > int(short.episode.slots[0].seed.fault_noise_passes) > 0
    assert read_raw_run(long.result.path).footer["dead_seeds"] == [f"{long.episode.run_id}/seed-1"]
    assert long.episode.config.to_dict()["seed_fault_mode"] == "noisy" and long.episode.config.to_dict()["seed_fault_scale"] == 0.5

    channels = next(m for m in seed.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    h = torch.randn(4, channels, 6, 6)
    seed.eval()
    first, second = seed(h), seed(h)
    assert torch.equal(first, second) and not torch.equal(first, h)  # eval: the same noise each time
    noise = first - h
    assert 0.3 < float(noise.std() / h.std()) < 0.7  # as large as scale x the input's spread
    seed.train()
    assert not torch.equal(seed(h), seed(h))  # training passes: fresh noise each time

    _assert_a_fork_replays_bit_for_bit(tmp_path, noisy)


def test_a_noisy_seed_harms_more_than_a_frozen_one_and_the_vigilant_schedule_culls_it(tmp_path):
    """Paired over the same configurations: a frozen branch is a fixed function the host learns around, fresh
    noise is not, so the noisy seed ends lower; the gradient telemetry shows it as it shows a frozen one."""
    accuracies = _final_test_accuracies(tmp_path, ("noisy", "frozen"))
    noisy, frozen = accuracies["noisy"], accuracies["frozen"]
    assert sum(noisy) / 4 < sum(frozen) / 4 - 1.0, (noisy, frozen)
    vigilant = _run(tmp_path / "vigilant", "vigilant:conv_heavy@0", max_epochs=6, seed_faults={"conv_heavy": 1.0},
                    seed_fault_mode="noisy")  # fmt: skip
    assert [s["action"]["fine"] for s in read_raw_run(vigilant.result.path).steps][:2] == ["GERMINATE_conv_heavy", "CULL"]


def test_an_unknown_fault_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="seed_fault_mode: unknown mode 'melted'; known: dead, frozen, noisy"):
        EpisodeConfig(dataset=SYNTHETIC, seed_faults={"conv_heavy": 0.5}, seed_fault_mode="melted")


def test_a_frozen_seeds_scale_sets_its_branch_and_is_refused_outside_frozen(tmp_path):
    run = _run(tmp_path, "fixed:conv_heavy@0", max_epochs=2, seed_faults={"conv_heavy": 1.0}, seed_fault_mode="frozen",
               seed_fault_scale=3.0)  # fmt: skip
    assert run.episode.slots[0].seed.body[-1].weight.eq(3.0).all()
    assert run.episode.config.to_dict()["seed_fault_scale"] == 3.0
    assert "seed_fault_scale" not in EpisodeConfig(dataset=SYNTHETIC, seed_faults={"conv_heavy": 1.0}, seed_fault_mode="frozen").to_dict()
    with pytest.raises(ValueError, match="needs seed_fault_mode 'frozen' or 'noisy'"):
        EpisodeConfig(dataset=SYNTHETIC, seed_faults={"conv_heavy": 1.0}, seed_fault_scale=2.0)
    with pytest.raises(ValueError, match="seed_fault_scale must be a positive number"):
        EpisodeConfig(dataset=SYNTHETIC, seed_faults={"conv_heavy": 1.0}, seed_fault_mode="frozen", seed_fault_scale=0)


def test_the_readers_stochastic_version_logs_propensities_around_its_culls(tmp_path):
    import dataclasses

    from tamiyo_models.nightly.champion import Champion
    from tamiyo_models.nightly.night import stochastic_version

    reader = reference_controller("vigilant:conv_heavy@0")
    explore = stochastic_version(Champion("vigilant:conv_heavy@0", reader, "2026-12-05"), 0.2)
    assert explore.kind == "epsilon-vigilant-schedule" and explore.label == "explore:vigilant:conv_heavy@0"
    faults = {"seed_faults": {"conv_heavy": 1.0}, "max_epochs": 10}
    greedy = _run(tmp_path / "greedy", "vigilant:conv_heavy@0", **faults)
    calm = EpisodeRun(dataclasses.replace(greedy.config, controller=dataclasses.replace(explore, epsilon=0.0)), tmp_path / "calm")
    calm.result = calm.run_to(10)
    steps = [read_raw_run(r.result.path).steps for r in (greedy, calm)]
    assert [s["action"]["fine"] for s in steps[1]] == [s["action"]["fine"] for s in steps[0]]  # epsilon 0: the reader
    noisy = EpisodeRun(dataclasses.replace(greedy.config, controller=explore, seed=11), tmp_path / "noisy")
    noisy.result = noisy.run_to(10)
    for step in read_raw_run(noisy.result.path).steps:  # the reader's own action: 0.8 + 0.2 / n; another: 0.2 / n
        action, share = step["action"], 0.2 / len(step["action"]["legal"])
        expected = 0.8 + share if action["fine"] == action["greedy_fine"] else share
        assert action["propensity"] == pytest.approx(expected)


def test_a_cards_behaviour_section_finds_the_state_where_the_reader_parts_from_the_schedule(tmp_path):
    """Until their first different action two episodes of one configuration and order are in the same state: the
    reader's first divergence from the fixed schedule is its cull of the dead seed, on a zero gradient share."""
    from tamiyo_models.evaluation.behaviour import behaviour_markdown, read_behaviour
    from tamiyo_models.world.features import FEATURE_SETS

    faults = {"seed_faults": {"conv_heavy": 1.0}, "max_epochs": 10}
    for seed in (7, 8):
        for name in ("vigilant:conv_heavy@0", "fixed:conv_heavy@0"):
            config = EpisodeConfig(dataset=SYNTHETIC, seed=seed, controller=reference_controller(name), **faults)
            EpisodeRun(config, tmp_path / "episodes").run_to(10)
    names = list(FEATURE_SETS["base+lifecycle+task+slots"])
    found = read_behaviour(tmp_path / "episodes", "vigilant:conv_heavy@0", "fixed:conv_heavy@0", names)
    assert found.episodes == 2
    (first,) = found.divergences
    assert (first["step"], first["arm"], first["episodes"]) == (2, "CULL", 2) and first["reference"] != "CULL"
    assert first["features"]["slot0_zero_gradient_share"] > 0.5
    assert {a["action"]: a["episodes"] for a in found.actions}["CULL"] == 2
    assert "class: CULL" in found.rules and "CULL" in found.classes  # the tree names the states of its culls
    text = "\n".join(behaviour_markdown(found, "vigilant:conv_heavy@0", "fixed:conv_heavy@0", keys=("epoch", "slot0_zero_gradient_share")))
    assert "| 2 | CULL |" in text and "## Where it acts differently from the reference" in text
