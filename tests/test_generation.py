"""Diverse batches from a spec, parallel workers, and the `tamiyo generate` / `tamiyo story` commands."""

import json

import pytest

from tamiyo_models.cli import main
from tamiyo_models.episodes.generation import GenerationSpec, SpecError, generate
from tamiyo_models.world.rawrun import list_raw_runs, read_raw_run

SPEC = """
name = "unit"
[base]
max_epochs = 4
[base.dataset]
name = "synthetic"
[vary]
"host.widths" = [[2, 4, 8], [4, 8, 16]]
learning_rate = { min = 0.01, max = 0.1, log = true }
max_epochs = { min = 3, max = 5, int = true }
batch_size = { values = [32, 64], weights = [1, 3] }
[[controllers]]
kind = "heuristic"
weight = 1
[[controllers]]
kind = "epsilon-heuristic"
epsilon = { min = 0.1, max = 0.3 }
weight = 1
[[controllers]]
kind = "random"
random_weights = { WAIT = 5.0, GERMINATE = 1.0 }
weight = 1
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text(SPEC)
    return path


def test_spec_sampling_is_diverse_and_reproducible(spec_file):
    spec = GenerationSpec.load(spec_file)
    configs = spec.sample(40, seed=7)
    assert [c.to_dict() for c in configs] == [c.to_dict() for c in spec.sample(40, seed=7)]
    assert {c.host.widths for c in configs} == {(2, 4, 8), (4, 8, 16)}
    assert {c.controller.kind for c in configs} == {"heuristic", "epsilon-heuristic", "random"}
    assert all(3 <= c.max_epochs <= 5 and 0.01 <= c.learning_rate <= 0.1 for c in configs)
    assert all(0.1 <= c.controller.epsilon <= 0.3 for c in configs if c.controller.kind == "epsilon-heuristic")
    assert len({c.run_id() for c in configs}) == 40
    assert {c.tags["spec"] for c in configs} == {"unit"}


def test_shipped_specs_load():
    for name in ("nightly", "smoke", "exploration", "imitation"):
        configs = GenerationSpec.load(name).sample(20, seed=0)
        assert all(c.dataset.name == "digits" for c in configs if c.regime() in (None, "digits"))
    # the nightly batch draws about a fifth of its episodes from the arena's regimes where Fashion-MNIST is here
    nightly_spec = GenerationSpec.load("nightly")
    arena = {"fm-narrow", "fm-small-data", "fm-noisy", "fm-short"}
    assert set(nightly_spec.regime_names) | set(nightly_spec.unavailable) == arena | {"digits"}
    drawn = [c.regime() for c in nightly_spec.sample(200, seed=1)]
    share = sum(r in arena for r in drawn) / len(drawn)
    assert share == 0.0 if nightly_spec.unavailable else 0.1 < share < 0.35
    exploration = GenerationSpec.load("exploration")
    assert exploration.branching is not None and exploration.branching.horizon == 5
    assert {c.controller.kind for c in exploration.sample(40, seed=0)} >= {"softmax-heuristic", "perturbed-heuristic"}
    imitation = GenerationSpec.load("imitation").sample(60, seed=0)
    assert {c.controller.kind for c in imitation} == {"heuristic"} and any(c.dataset.label_noise >= 0.3 for c in imitation)
    nightly = [c for c in GenerationSpec.load("nightly").sample(50, seed=0) if c.regime() == "digits"]
    assert 25 <= min(c.max_epochs for c in nightly) and max(c.max_epochs for c in nightly) <= 75


@pytest.mark.parametrize(
    "text,message",
    [
        ("name = 'x'\n[vary]\nlearning_rate = { min = 0.2, max = 0.1 }\n", "vary.learning_rate: min 0.2 > max 0.1"),
        ("name = 'x'\n[base]\nepochs = 3\n", "unknown episode settings: epochs"),
        ("name = 'x'\n[vary]\nbatch_size = []\n", "empty list"),
        ("name = 'x'\nworkers = 2\n", "unknown top-level keys"),
        ("name = 'x\n", "cannot parse"),
        ('extends = "no-such-spec"\n', "extends: generation spec 'no-such-spec' not found"),  # a spec extending another
        ('extends = "bad.toml"\n', "extends itself"),
        ("extends = 3\n", "extends must name a spec"),
    ],
)
def test_bad_specs_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        GenerationSpec.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_two_workers_write_the_same_runs_as_one(tmp_path, spec_file):
    configs = GenerationSpec.load(spec_file).sample(3, seed=1)
    serial = generate(configs, tmp_path / "serial", workers=1)
    parallel = generate(configs, tmp_path / "parallel", workers=2)
    assert [r.status for r in serial + parallel] == ["complete"] * 6
    for a, b in zip(serial, parallel):
        steps_a = [{k: v for k, v in s.items() if k != "timing"} for s in read_raw_run(a.path).steps]
        steps_b = [{k: v for k, v in s.items() if k != "timing"} for s in read_raw_run(b.path).steps]
        assert a.run_id == b.run_id and steps_a == steps_b


def test_a_failing_episode_is_recorded_and_the_others_land(tmp_path):
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.world.datasets import DatasetConfig

    good = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=2)
    bad = EpisodeConfig(dataset=DatasetConfig(name="cifar10", root=str(tmp_path / "nowhere")), max_epochs=2)
    results = generate([good, bad], tmp_path / "out", workers=1)
    assert [r.status for r in results] == ["complete", "failed"]
    assert "nowhere" in results[1].error
    assert list_raw_runs(tmp_path / "out") == [results[0].path]


def test_generate_and_story_commands(tmp_path, capsys):
    out = tmp_path / "raw"
    code = main(["generate", "--episodes", "2", "--dataset", "synthetic", "--max-epochs", "3",
                 "--controller", "epsilon-heuristic", "--epsilon", "0.5", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    runs = list_raw_runs(out)
    assert len(runs) == 2
    err = capsys.readouterr().err
    assert "2 complete, 0 failed" in err and err.count("final ") >= 2
    header = read_raw_run(runs[0]).header
    assert header["config"]["controller"]["kind"] == "epsilon-heuristic" and header["config"]["max_epochs"] == 3
    assert main(["story", str(runs[0])]) == 0
    story = capsys.readouterr().out
    assert header["run_id"] in story and "complete: test" in story


def test_generate_command_with_branching(tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["generate", "--episodes", "1", "--dataset", "synthetic", "--max-epochs", "6", "--controller",
                 "softmax-heuristic", "--branch-horizon", "2", "--max-forks", "1", "--fork-rule", "every", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    runs = [read_raw_run(p) for p in list_raw_runs(out)]
    branches = [r for r in runs if "branch" in r.header]
    assert len(runs) - len(branches) == 1 and branches
    assert "branch runs" in capsys.readouterr().err


def test_generate_command_rejects_bad_input(tmp_path, capsys):
    assert main(["generate", "--spec", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps([1, 2]) + "\n")
    assert main(["story", str(bad)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
