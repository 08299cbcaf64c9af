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
    from tamiyo_models.controllers import reference_controller

    # A graft at epoch 0 with half the seeds born dead, telemetry on: the seed code (germination, the fault, the
    # gradient zero share, fossilisation) runs on the device too.
    config = EpisodeConfig(dataset=DatasetConfig(name="synthetic"), host=HostConfig(widths=(2, 4, 8)), max_epochs=4,
                           controller=reference_controller("fixed:conv_heavy@0"), seed_faults=(("conv_heavy", 0.5),))  # fmt: skip
    cpu = read_raw_run(run_episode(config, tmp_path / "cpu").path)
    gpu = read_raw_run(run_episode(dataclasses.replace(config, device="cuda"), tmp_path / "gpu").path)
    assert gpu.footer["status"] == "complete" and gpu.header["config"]["device"] == "cuda"
    assert gpu.footer["dead_seeds"] == cpu.footer["dead_seeds"]  # the same draws: the generators stay on the CPU
    # CUDA kernels may differ from the CPU's in the last bits, and training amplifies that: close, not equal.
    assert abs(gpu.footer["final_test_accuracy"] - cpu.footer["final_test_accuracy"]) < 5.0


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


def test_a_child_spec_gets_what_its_base_pins_or_is_told_why_not(tmp_path):
    (tmp_path / "parent.toml").write_text(
        'name = "parent"\n[base]\nmax_epochs = 3\ndataset = { name = "synthetic" }\n[vary]\nlearning_rate = { min = 0.01, max = 0.02 }\n'
        '"dataset.label_noise" = [0.1, 0.2]\n[[regimes]]\nname = "a"\nbase = { host = { widths = [2, 4, 8] } }\n'
        'vary = { batch_size = [32, 64] }\n')  # fmt: skip
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n[base]\nlearning_rate = 0.5\n"dataset.label_noise" = 0.0\n')
    configs = GenerationSpec.load(child).sample(6, seed=0)  # the parent's variations of what the child pins are dropped
    assert {(c.learning_rate, c.dataset.label_noise) for c in configs} == {(0.5, 0.0)}
    for text, field in (('[base]\nhost = { widths = [8, 16, 32] }\n', "host.widths"), ('[vary]\nbatch_size = [16]\n', "batch_size"),
                        ('[base]\nbatch_size = 16\n', "batch_size")):  # fmt: skip
        child.write_text('extends = "parent.toml"\n' + text)
        with pytest.raises(SpecError, match=rf"child.toml: {field}: regime 'a' of .*parent.toml sets it too"):
            GenerationSpec.load(child)
    child.write_text('extends = "parent.toml"\n[base]\nhost = { widths = [8, 16, 32] }\n[[regimes]]\nname = "mine"\n')
    assert {c.host.widths for c in GenerationSpec.load(child).sample(3, seed=0)} == {(8, 16, 32)}  # regimes replaced: fine
    (tmp_path / "sub").mkdir()  # a loop through '..' is still a loop
    (tmp_path / "sub" / "a.toml").write_text('extends = "../sub/b.toml"\n')
    (tmp_path / "sub" / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(SpecError, match="extends itself"):
        GenerationSpec.load(tmp_path / "sub" / "a.toml")
    child.write_text('extends = "parent.toml"\nbase = 3\n')
    with pytest.raises(SpecError, match="child.toml: base must be a table"):
        GenerationSpec.load(child)


def test_an_inline_stage_spec_that_extends_is_named_after_the_stage(tmp_path):
    from tamiyo_models.curriculum.spec import CurriculumError, CurriculumSpec

    path = tmp_path / "c.toml"
    path.write_text('[[stages]]\nname = "tiny-stage"\nspec = { extends = "smoke", base = { max_epochs = 2 } }\n')
    assert {c.tags["spec"] for c in CurriculumSpec.load(path).stage("tiny-stage").eval_configs_list()} == {"tiny-stage"}
    path.write_text('[[stages]]\nname = "s"\nspec = { extends = "no-such-spec" }\n')
    with pytest.raises(CurriculumError) as info:
        CurriculumSpec.load(path)
    assert str(info.value).count("stages[0]") == 1 and "no-such-spec" in str(info.value)


def test_gpu_episodes_can_be_reported_on_without_a_gpu_and_spec_data_is_not_set_by_flags(tmp_path, capsys):
    # --report-only runs nothing, so the device only names which episodes to read: no GPU needed.
    assert main(["headroom", "--spec", "smoke", "--device", "cuda", "--report-only", "--configs-per-regime", "2",
                 "--controllers", "heuristic,never", "--out", str(tmp_path / "h")]) in (0, 2)  # fmt: skip
    assert "no CUDA GPU" not in capsys.readouterr().err
    assert main(["generate", "--spec", "smoke", "--data-root", str(tmp_path), "--out", str(tmp_path / "g"), "--quiet"]) == 2
    assert "--data-root and --download go with --dataset" in capsys.readouterr().err


def test_a_fine_tuning_target_is_checked_before_any_episode(tmp_path, capsys):
    policy = tmp_path / "p.pt"
    policy.write_bytes(b"not read: the target is refused first")
    base = ["curriculum", "transfer", str(policy), "--curriculum", "digits-only", "--out", str(tmp_path / "t")]
    assert main([*base, "--fine-tune", "8", "--fine-tune-target", "heuristic"]) == 2
    assert "its own is 0" in capsys.readouterr().err
    assert main([*base, "--fine-tune-target", "fixed:conv_heavy@1"]) == 2
    assert "needs --fine-tune" in capsys.readouterr().err
    assert main([*base, "--fine-tune", "8", "--fine-tune-target", "fixed:nothing@1"]) == 2
    assert "unknown blueprint" in capsys.readouterr().err
