"""Tests for tamiyo_models.world.datasets: all offline, on bundled data or tiny fixtures
written in the exact on-disk formats torchvision (and Debian) use."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import dump_pickle, write_cifar10, write_cifar100

from tamiyo_models.world.datasets import (
    DatasetConfig,
    DatasetError,
    clear_dataset_cache,
    dataset_names,
    default_data_root,
    load_task_data,
    read_idx,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Fixtures reuse tmp paths across tests only by accident, but a stale
    # cache entry would hide reader bugs: start every test clean.
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def _class_counts(y: torch.Tensor, num_classes: int) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=num_classes)


# ---------------------------------------------------------------- config


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = DatasetConfig(name="cifar10", root="/x", train_subsample=100, label_noise=0.1, split_seed=3)
    assert DatasetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        DatasetConfig.from_dict({"name": "digits", "bogus": 1})


def test_dataset_names_lists_sources():
    names = dataset_names()
    assert {"digits", "fashion-mnist", "cifar10", "cifar100", "synthetic", "synthetic-cifar"} <= set(names)
    assert "imagefolder:PATH" in names


def test_default_root_uses_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TAMIYO_DATA_ROOT", str(tmp_path))
    assert default_data_root("cifar10") == str(tmp_path)
    monkeypatch.delenv("TAMIYO_DATA_ROOT")
    assert default_data_root("cifar10").endswith(os.path.join(".cache", "tamiyo", "datasets"))


# ---------------------------------------------------------------- digits


def test_digits_shapes_split_and_normalisation():
    data = load_task_data(DatasetConfig(name="digits"))
    assert data.num_classes == 10
    assert data.input_shape == (1, 8, 8)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert len(data.train_y) + len(data.val_y) + len(data.test_y) == 1797
    assert len(data.val_y) == len(data.test_y) == round(0.2 * 1797)
    assert data.train_x.shape == (len(data.train_y), 1, 8, 8)
    mean = data.train_x.mean(dim=(0, 2, 3))
    std = data.train_x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(1), atol=1e-4)
    assert torch.allclose(std, torch.ones(1), atol=1e-4)
    # stratified: every class in all three splits, roughly 20% of each held out for validation and for test
    counts = {name: _class_counts(getattr(data, f"{name}_y"), 10) for name in ("train", "val", "test")}
    total = sum(counts.values())
    for held_out in ("val", "test"):
        assert np.all(np.abs(counts[held_out] / total - 0.2) < 0.02)
    assert data.noisy_label_count == 0


def test_digits_split_is_disjoint_and_seeded():
    a = load_task_data(DatasetConfig(name="digits", split_seed=0))
    clear_dataset_cache()
    again = load_task_data(DatasetConfig(name="digits", split_seed=0))
    other = load_task_data(DatasetConfig(name="digits", split_seed=1))
    assert torch.equal(a.train_x, again.train_x) and torch.equal(a.val_y, again.val_y)
    assert not torch.equal(a.val_y, other.val_y) or not torch.equal(a.val_x, other.val_x)
    # disjoint: no held-out image appears in another split
    rows = {name: {tuple(r) for r in getattr(a, f"{name}_x").flatten(1).numpy().round(4).tolist()} for name in ("train", "val", "test")}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]


def test_test_split_does_not_move_with_the_validation_share():
    # The test split is drawn first, from its own stream: a different validation share must not change it.
    a = load_task_data(DatasetConfig(name="digits"))
    b = load_task_data(DatasetConfig(name="digits", val_fraction=0.3))
    assert torch.equal(a.test_y, b.test_y) and len(b.val_y) == round(0.3 * 1797)
    small = load_task_data(DatasetConfig(name="digits", test_subsample=100))
    assert len(small.test_y) == 100 and torch.equal(small.val_y, a.val_y)


def test_cache_returns_same_object_and_ignores_root_for_digits():
    a = load_task_data(DatasetConfig(name="digits"))
    b = load_task_data(DatasetConfig(name="digits", root="/irrelevant"))
    assert a is b


# ---------------------------------------------------------------- subsample / noise


def test_train_subsample_is_exact_and_stratified():
    full = load_task_data(DatasetConfig(name="digits"))
    data = load_task_data(DatasetConfig(name="digits", train_subsample=203, val_subsample=51))
    assert len(data.train_y) == 203 and len(data.val_y) == 51
    expected = _class_counts(full.train_y, 10) * 203 / len(full.train_y)
    assert np.all(np.abs(_class_counts(data.train_y, 10) - expected) < 1.0)


def test_label_noise_flips_exact_count_to_other_classes():
    base_cfg = DatasetConfig(name="digits", train_subsample=500, split_seed=4)
    clean = load_task_data(base_cfg)
    noisy = load_task_data(DatasetConfig(**{**base_cfg.to_dict(), "label_noise": 0.3}))
    assert torch.equal(clean.train_x, noisy.train_x)
    changed = clean.train_y != noisy.train_y
    assert int(changed.sum()) == round(0.3 * 500) == noisy.noisy_label_count
    assert torch.equal(clean.val_y, noisy.val_y) and torch.equal(clean.test_y, noisy.test_y)  # held-out splits stay clean
    assert noisy.train_y.min() >= 0 and noisy.train_y.max() < 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "mnist-imaginary"}, "unknown dataset"),
        ({"label_noise": 1.0}, "label_noise"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"train_subsample": 0}, "train_subsample"),
        ({"val_subsample": -3}, "val_subsample"),
        ({"train_subsample": 100_000}, "only"),
    ],
)
def test_bad_config_raises_dataset_error(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_task_data(DatasetConfig(**{"name": "digits", **kwargs}))


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_with_expected_shapes():
    a = load_task_data(DatasetConfig(name="synthetic"))
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train_y) == 800 and len(a.val_y) == 200 and len(a.test_y) == 200
    assert np.all(_class_counts(a.train_y, 10) == 80)
    clear_dataset_cache()
    b = load_task_data(DatasetConfig(name="synthetic"))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    c = load_task_data(DatasetConfig(name="synthetic", split_seed=1))
    assert not torch.equal(a.train_x, c.train_x)


def test_synthetic_cifar_has_cifars_shape_and_carries_signal():
    a = load_task_data(DatasetConfig(name="synthetic-cifar"))
    assert a.input_shape == (3, 32, 32) and a.num_classes == 10
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (5000, 1000, 1000)
    assert np.all(_class_counts(a.train_y, 10) == 500)
    clear_dataset_cache()
    assert torch.equal(load_task_data(DatasetConfig(name="synthetic-cifar")).test_x, a.test_x)
    # The class lives in the coarse picture (a nearest class mean on 8x8 averages finds it); single pixels are noise.
    pool = lambda x: torch.nn.functional.avg_pool2d(x, 4).flatten(1)  # noqa: E731
    means = torch.stack([pool(a.train_x[a.train_y == k]).mean(0) for k in range(10)])
    assert (torch.cdist(pool(a.val_x), means).argmin(1) == a.val_y).float().mean() > 0.9
    assert abs(float(torch.corrcoef(a.train_x[:2].flatten(1))[0, 1])) < 0.2


def test_synthetic_is_learnable_by_nearest_class_mean():
    # A cheap check that classes carry signal (a CNN does better than this).
    data = load_task_data(DatasetConfig(name="synthetic"))
    means = torch.stack([data.train_x[data.train_y == k].mean(0) for k in range(10)])
    dist = torch.cdist(data.val_x.flatten(1), means.flatten(1))
    acc = (dist.argmin(1) == data.val_y).float().mean().item()
    assert 0.5 < acc < 1.0


# ---------------------------------------------------------------- cifar


def test_cifar10_reads_torchvision_format_offline(tmp_path):
    write_cifar10(tmp_path)
    data = load_task_data(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    # the official test batch is the test split; validation is carved out of the training batches
    assert len(data.test_y) == 20 and len(data.val_y) == 20 and len(data.train_y) == 5 * 20 - 20
    assert data.class_names == [f"c10_{k}" for k in range(10)]
    assert torch.allclose(data.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(data.train_x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)


def test_cifar10_pixels_keep_channel_layout(tmp_path):
    # One red image: the R plane is the first 1024 bytes of a row.
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(tmp_path)
    batch = pickle.loads((folder / "test_batch").read_bytes())
    batch[b"data"][0] = np.concatenate([np.full(1024, 255), np.zeros(2048)]).astype(np.uint8)
    dump_pickle(folder / "test_batch", batch)
    data = load_task_data(DatasetConfig(name="cifar10", root=str(tmp_path)))
    img = data.test_x[0]
    assert img[0].std() < 1e-5 and img[1].std() < 1e-5  # each plane constant
    assert img[0, 0, 0] > img[1, 0, 0] and img[0, 0, 0] > img[2, 0, 0]


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    data = load_task_data(DatasetConfig(name="cifar100", root=str(tmp_path), val_subsample=10, test_subsample=50))
    assert data.num_classes == 100 and data.input_shape == (3, 32, 32)
    assert len(data.train_y) == 160 and len(data.val_y) == 10 and len(data.test_y) == 50
    assert int(data.train_y.max()) == 99  # fine, not coarse (max 19)
    assert data.class_names[:2] == ["fine_0", "fine_1"]


def test_missing_cifar_folder_names_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_task_data(DatasetConfig(name="cifar10", root=str(root)))
    assert str(root) in str(info.value)
    assert "download=True" in str(info.value)


def test_corrupt_cifar_batch_is_a_dataset_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_task_data(DatasetConfig(name="cifar10", root=str(tmp_path)))


# ---------------------------------------------------------------- fashion-mnist fixtures


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, compress: bool, n_train: int = 30, n_test: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        blob = _idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)


def test_idx_reader_round_trips(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    assert np.array_equal(read_idx(str(tmp_path / "a-idx3-ubyte.gz")), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(DatasetError, match="bytes"):
        read_idx(str(tmp_path / "bad"))


@pytest.mark.parametrize(
    "layout, compress",
    [
        ("debian", True),  # <root>/train-images-idx3-ubyte.gz, as dataset-fashion-mnist installs
        ("torchvision", True),  # <root>/FashionMNIST/raw/*.gz, not yet extracted
        ("torchvision", False),  # <root>/FashionMNIST/raw/* extracted: torchvision reads it
    ],
)
def test_fashion_mnist_layouts(tmp_path, layout, compress):
    folder = tmp_path if layout == "debian" else tmp_path / "FashionMNIST" / "raw"
    _write_fashion(folder, compress)
    data = load_task_data(DatasetConfig(name="fashion-mnist", root=str(tmp_path)))
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    # the official t10k files are the test split, whole; validation comes out of the training files
    assert len(data.train_y) == 24 and len(data.val_y) == 6 and len(data.test_y) == 20
    assert data.class_names[0] == "T-shirt/top"
    assert torch.equal(data.test_y, torch.arange(20) % 10)


def test_fashion_mnist_missing_names_root_and_fix(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_task_data(DatasetConfig(name="fashion-mnist", root=str(tmp_path)))
    message = str(info.value)
    assert str(tmp_path) in message and "dataset-fashion-mnist" in message


# ---------------------------------------------------------------- imagefolder


def test_imagefolder_two_classes(tmp_path):
    from PIL import Image

    for cls, colour in (("cats", (250, 10, 10)), ("dogs", (10, 10, 250))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            size = (12 + i, 9 + i)  # varied sizes: all must be resized
            Image.new("RGB", size, colour).save(tmp_path / cls / f"{i}.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "dogs" / "gray.png")  # converted to RGB

    data = load_task_data(DatasetConfig(name=f"imagefolder:{tmp_path}", image_size=16, val_fraction=0.2, test_fraction=0.2))
    assert data.class_names == ["cats", "dogs"]
    assert data.input_shape == (3, 16, 16)
    assert len(data.train_y) + len(data.val_y) + len(data.test_y) == 11
    assert set(data.train_y.tolist()) == {0, 1} and len(data.val_y) == len(data.test_y) == 2


def _class_folders(root: Path, per_class: dict[str, int], shade: int = 0) -> None:
    from PIL import Image

    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        colour = (250, 10, 10) if cls == "cats" else (10, 10, 250)
        for i in range(n):
            Image.new("RGB", (10, 10), tuple(max(0, c - shade - i) for c in colour)).save(root / cls / f"{i}.png")


def test_imagefolder_with_train_and_test_scores_on_the_test_folder(tmp_path):
    # The layout of the CIFAR-10 dev subset: train/<class>/ and test/<class>/. Read naively it would be a
    # two-class "train vs test" task; instead test/ is the scored split, whole, and validation comes from train/.
    _class_folders(tmp_path / "train", {"cats": 10, "dogs": 10})
    _class_folders(tmp_path / "test", {"cats": 3, "dogs": 3}, shade=100)
    data = load_task_data(DatasetConfig(name=f"imagefolder:{tmp_path}", image_size=8, val_fraction=0.2))
    assert data.class_names == ["cats", "dogs"] and data.num_classes == 2
    assert len(data.test_y) == 6 and sorted(data.test_y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(data.train_y) + len(data.val_y) == 20 and len(data.val_y) == 4
    # No test image reaches train or validation: the test folder's darker shades appear only in the test split.
    test_rows = {tuple(r) for r in data.test_x.flatten(1).numpy().round(4).tolist()}
    seen_rows = {tuple(r) for r in torch.cat([data.train_x, data.val_x]).flatten(1).numpy().round(4).tolist()}
    assert not test_rows & seen_rows


@pytest.mark.parametrize("layout,match", [
    ({"train": {"cats": 2, "dogs": 2}}, "exactly train/ and test/"),
    ({"train": {"cats": 2, "dogs": 2}, "test": {"cats": 1, "dogs": 1}, "extra": {"cats": 1, "dogs": 1}}, "exactly train/ and test/"),
    ({"train": {"cats": 2, "dogs": 2}, "test": {"cats": 1, "birds": 1}}, "same class folders"),
])  # fmt: skip
def test_an_image_folder_layout_it_cannot_read_is_a_clear_error(tmp_path, layout, match):
    for split, classes in layout.items():
        _class_folders(tmp_path / split, classes)
    with pytest.raises(DatasetError, match=match) as info:
        load_task_data(DatasetConfig(name=f"imagefolder:{tmp_path}", image_size=8))
    assert str(tmp_path) in str(info.value)


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_task_data(DatasetConfig(name=f"imagefolder:{tmp_path / 'absent'}"))
