"""CIFAR-10 as the arena's harder task (issue 35): the shipped `cifar-candidates` spec and specs that extend it
(pointed at other data), and episodes placed on a device (`--device`), checked here without a GPU."""

import dataclasses

import pytest
from cifar_fixtures import write_cifar10

from tamiyo_models.cli import main
from tamiyo_models.episodes.episode import EpisodeConfig, check_device, run_episode
from tamiyo_models.episodes.generation import GenerationSpec, SpecError
from tamiyo_models.evaluation.four_way import FourWayConfig, _draw
from tamiyo_models.evaluation.headroom import HeadroomConfig, headroom_configs
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.host import HostConfig
from tamiyo_models.world.rawrun import read_raw_run

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False


def _extending(tmp_path, root, extra: str = "") -> str:
    path = tmp_path / "cifar-fixture.toml"
    path.write_text(f'extends = "cifar-candidates"\n{extra}\n[base]\ndataset = {{ root = "{root}" }}\n')
    return str(path)


def test_the_cifar_spec_runs_the_research_host_family_with_rent_and_two_slots(tmp_path):
    write_cifar10(tmp_path / "data", per_class=40)
    spec = GenerationSpec.load(_extending(tmp_path, tmp_path / "data"))
    assert spec.name == "cifar-fixture" and spec.rent == 1.0  # the child's name, the parent's rent
    assert spec.regime_names == ["c-narrow", "c-mid", "c-research"] and not spec.unavailable
    widths = {name: {c.host.widths for c in spec.sample_regime(name, 4, seed=1)} for name in spec.regime_names}
    assert widths == {"c-narrow": {(8, 16, 32)}, "c-mid": {(16, 32, 64)}, "c-research": {(32, 64, 128)}}
    config = spec.sample_regime("c-narrow", 1, seed=1)[0]
    # The base dataset table merged: the child's root beside the parent's source and subsample sizes.
    assert (config.dataset.name, config.dataset.root, config.dataset.train_subsample) == ("cifar10", str(tmp_path / "data"), 4000)
    assert config.host.slots == (0, 1) and config.rent == 1.0 and config.tags["spec"] == "cifar-fixture"
    # One real (short) episode on the fixture, on the spec's host and score: the footer charges the growth.
    short = dataclasses.replace(config, max_epochs=2, score_epochs=1, dataset=dataclasses.replace(config.dataset, train_subsample=200, val_subsample=40))
    run = read_raw_run(run_episode(short, tmp_path / "runs").path)
    assert run.footer["status"] == "complete" and run.header["config"]["rent"] == 1.0


def test_without_cifar_the_shipped_spec_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TAMIYO_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(SpecError) as info:
        GenerationSpec.load("cifar-candidates")
    message = str(info.value)
    assert "no regime can run" in message and str(tmp_path / "nowhere") in message and "download = true" in message
    assert message.count("cifar-10-batches-py") == 1  # one reason, said once, not once per regime


def test_an_extending_spec_merges_base_and_vary_and_replaces_the_rest(tmp_path):
    (tmp_path / "parent.toml").write_text(
        'name = "parent"\nrent = 0.5\n[base]\nmax_epochs = 5\ndataset = { name = "synthetic", label_noise = 0.1 }\n'
        '[vary]\nlearning_rate = { min = 0.01, max = 0.02 }\n"dataset.label_noise" = [0.1, 0.2]\n'
        '[[regimes]]\nname = "a"\n[[regimes]]\nname = "b"\nbase = { max_epochs = 3 }\n')  # fmt: skip
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.toml"
    child.write_text('extends = "../parent.toml"\n[base]\ndataset = { split_seed = 3 }\n[vary]\n"dataset.label_noise" = [0.3]\n')
    spec = GenerationSpec.load(child)
    assert spec.name == "child" and spec.rent == 0.5 and spec.regime_names == ["a", "b"]
    configs = spec.sample_regime("b", 5, seed=0)
    assert {(c.dataset.name, c.dataset.split_seed, c.dataset.label_noise, c.max_epochs) for c in configs} == {("synthetic", 3, 0.3, 3)}
    assert all(0.01 <= c.learning_rate <= 0.02 for c in configs)
    child.write_text('extends = "../parent.toml"\nrent = 0.0\n[[regimes]]\nname = "only"\n')
    replaced = GenerationSpec.load(child)
    assert replaced.rent == 0.0 and replaced.regime_names == ["only"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('extends = "no-such-spec"\n', "extends: generation spec 'no-such-spec' not found"),
        ('extends = "loop.toml"\n', "extends itself"),
        ("extends = 3\n", "extends must name a spec"),
    ],
)
def test_a_bad_extends_names_the_file(tmp_path, text, message):
    path = tmp_path / "loop.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        GenerationSpec.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_device_names_are_checked_up_front():
    assert check_device("cpu") == "cpu" and check_device("cuda:1") == "cuda:1"  # spelled right; not looked for
    for bad in ("gpu", "mps", ""):
        with pytest.raises(ValueError, match="cpu, cuda"):
            EpisodeConfig(device=bad)
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            check_device("cuda", available=True)


def test_a_device_is_part_of_the_configuration_and_of_no_cpu_run_id():
    cpu = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), host=HostConfig(widths=(2, 4, 8)))
    gpu = dataclasses.replace(cpu, device="cuda")
    assert "device" not in cpu.to_dict() and gpu.to_dict()["device"] == "cuda"
    assert cpu.run_id() != gpu.run_id() and EpisodeConfig.from_dict(gpu.to_dict()) == gpu
    # headroom and the four-way put every configuration they draw on their device
    configs, _ = headroom_configs(HeadroomConfig(spec="smoke", configs_per_regime=2, controllers=("heuristic",), device="cuda"))
    assert configs and {c.device for c in configs} == {"cuda"}
    drawn = _draw(FourWayConfig(spec="smoke", device="cuda:0"), 2, 5, "training")
    assert {c.device for c in drawn} == {"cuda:0"}


@pytest.mark.skipif(HAS_CUDA, reason="checks the message a machine without a GPU gives")
def test_the_commands_refuse_a_gpu_this_machine_lacks(tmp_path, capsys):
    assert main(["generate", "--dataset", "synthetic", "--device", "cuda", "--out", str(tmp_path), "--quiet"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert main(["headroom", "--spec", "smoke", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert main(["headroom", "--four-way", "--spec", "smoke", "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "not a torch device" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_an_episode_on_the_gpu_completes_and_scores_like_the_cpu(tmp_path):  # pragma: no cover - GPU machines only
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), host=HostConfig(widths=(2, 4, 8)), max_epochs=3)
    cpu = read_raw_run(run_episode(config, tmp_path / "cpu").path)
    gpu = read_raw_run(run_episode(dataclasses.replace(config, device="cuda"), tmp_path / "gpu").path)
    assert gpu.footer["status"] == "complete" and gpu.header["config"]["device"] == "cuda"
    # The same draws on both (the generators stay on the CPU); CUDA kernels may differ in the last bits.
    assert abs(gpu.footer["test_accuracy"] - cpu.footer["test_accuracy"]) < 5.0


def test_the_cifar_curriculum_ends_on_cifar_with_one_slot_and_skips_it_without_the_data(tmp_path, monkeypatch):
    from tamiyo_models.curriculum.spec import CurriculumSpec
    from tamiyo_models.world.datasets import clear_dataset_cache

    monkeypatch.setenv("TAMIYO_DATA_ROOT", str(tmp_path / "nowhere"))
    curriculum = CurriculumSpec.load("cifar")
    assert [s.name for s in curriculum.stages][-2:] == ["cifar-1k", "cifar-4k"]
    assert "cifar-10-batches-py" in curriculum.stage("cifar-4k").unavailable()
    assert curriculum.stage("digits-short").unavailable() is None
    write_cifar10(tmp_path / "data", per_class=40)
    monkeypatch.setenv("TAMIYO_DATA_ROOT", str(tmp_path / "data"))
    clear_dataset_cache()
    curriculum = CurriculumSpec.load("cifar")
    drawn = {s.name: s.eval_configs_list() for s in (*curriculum.stages, *curriculum.transfer) if s.name.startswith("cifar")}
    assert {name: {(c.host.widths, c.host.slots, c.rent) for c in configs} for name, configs in drawn.items()} == {
        "cifar-1k": {((8, 16, 32), (1,), 1.0)}, "cifar-4k": {((8, 16, 32), (1,), 1.0)},
        "cifar-mid": {((16, 32, 64), (1,), 1.0)}, "cifar-research": {((32, 64, 128), (1,), 1.0)}}  # fmt: skip
    assert {c.dataset.train_subsample for c in drawn["cifar-1k"]} == {1000} and {c.max_epochs for c in drawn["cifar-1k"]} == {12}


def test_a_curriculum_stage_may_name_a_spec_file_beside_it(tmp_path):
    from tamiyo_models.curriculum.spec import CurriculumSpec

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.toml").write_text('[base]\nmax_epochs = 3\ndataset = { name = "synthetic" }\n'
                                                  '[[regimes]]\nname = "a"\n[[regimes]]\nname = "b"\nbase = { max_epochs = 4 }\n')  # fmt: skip
    (tmp_path / "curricula").mkdir()
    path = tmp_path / "curricula" / "c.toml"
    path.write_text('[[stages]]\nname = "s"\nspec = "../specs/tiny.toml"\nregime = "b"\n'
                    '[[stages]]\nname = "t"\nspec = { extends = "../specs/tiny.toml", base = { max_epochs = 5 } }\nregime = "a"\n')  # fmt: skip
    curriculum = CurriculumSpec.load(path)
    assert {c.max_epochs for c in curriculum.stage("s").eval_configs_list()} == {4}
    assert {c.max_epochs for c in curriculum.stage("t").eval_configs_list()} == {5}
