"""Image-classification tasks for tamiyo episodes, loaded into memory as tensors.

Every source ends up as a :class:`TaskData`: float32 images ``[N, C, H, W]``
normalised per channel with the *training* split's statistics, int64 labels,
and three splits:

- **train**: what the host trains on (label noise, if any, only here);
- **validation**: what the controller, the quality gates, the reward and the
  telemetry see after every epoch;
- **test**: scored once the episode is over, never shown to anything that
  decides. Comparisons of controllers use it, so a controller that learned
  from the validation split is not graded on what it watched.

Sources with an official test split (Fashion-MNIST, CIFAR) keep it whole as
the test split (``test_subsample`` may shrink it) and carve the validation
split out of their training pool (``val_fraction`` of the pool, then
``val_subsample``). Sources without one (digits, an unsplit imagefolder) are split three
ways, stratified: ``test_fraction`` and ``val_fraction`` of all examples.

Sources (``DatasetConfig.name``):

``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).
    Always available offline. Pixels are 0..16, scaled to 0..1. There is no
    test split, so a stratified ``val_fraction`` hold-out is used.
``fashion-mnist``
    Zalando's Fashion-MNIST (60k/10k, 1x28x28). Looked up, in this order:
    torchvision's layout ``<root>/FashionMNIST/raw/<file>`` (read by
    ``torchvision.datasets.FashionMNIST`` when the files are uncompressed), and
    the original idx files (plain or ``.gz``) directly in ``<root>`` or in
    ``<root>/FashionMNIST/raw/``, read by this module's small idx reader. The
    second form is what Debian's ``dataset-fashion-mnist`` package installs in
    ``/usr/share/datasets/fashion-mnist``, which is therefore the default root
    when it exists. With ``download=True`` torchvision fetches missing files.
    Test = the official 10,000 images; validation = part of the 60,000.
``cifar10`` / ``cifar100``
    CIFAR-10 / CIFAR-100 (fine labels) in torchvision's on-disk format
    (``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``), 3x32x32,
    test = the official test split. torchvision verifies the md5 of every
    file; when that check fails but all files are present (for instance a small
    fixture written in the same format, or a re-pickled copy) the pickled
    batches are read directly and checked structurally instead (keys, shapes,
    label range). See :func:`_load_cifar`.
``synthetic``
    A fast, deterministic, offline source for tests: 10 classes of 1x8x8
    images, each a fixed random prototype plus noise (800 train / 200 val /
    200 test).
``synthetic-cifar``
    CIFAR's shape without its files: 10 classes of 3x32x32 images, a smooth
    random prototype per class plus heavy pixel noise (5,000 train / 1,000
    val / 1,000 test). For benchmarks and device checks, never for claims.
``imagefolder:PATH``
    ``torchvision.datasets.ImageFolder(PATH)``: one sub-folder per class,
    images converted to RGB and resized to ``image_size`` squared; stratified
    ``test_fraction`` and ``val_fraction`` hold-outs. A PATH that holds
    ``train/`` and ``test/`` (each one sub-folder per class, the same classes)
    is already split: ``test/`` is the test split, whole, and validation is
    carved out of ``train/`` like an official test split's source.

Split, subsampling and label noise depend only on ``split_seed``, never on the
episode seed, so all episodes of an experiment see the same data.

torchvision and scikit-learn are imported inside the functions that need them:
importing this module must stay cheap for workers that never load those sources.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DatasetConfig",
    "DatasetError",
    "TaskData",
    "clear_dataset_cache",
    "dataset_names",
    "dataset_unavailable",
    "default_data_root",
    "load_task_data",
]

IMAGEFOLDER_PREFIX = "imagefolder:"
_BUILTIN_NAMES = ("digits", "fashion-mnist", "cifar10", "cifar100", "synthetic", "synthetic-cifar")
# Sources that read nothing from a data root: their cache key ignores `root`.
_ROOTLESS_NAMES = ("digits", "synthetic", "synthetic-cifar")
DEBIAN_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# Independent random streams derived from split_seed, so that e.g. changing
# train_subsample does not change which labels get flipped by label_noise.
_STREAM_SPLIT = 1
_STREAM_TRAIN_SUBSAMPLE = 2
_STREAM_VAL_SUBSAMPLE = 3
_STREAM_LABEL_NOISE = 4
_STREAM_SYNTHETIC_PROTOTYPES = 5
_STREAM_SYNTHETIC_SAMPLES = 6
_STREAM_TEST_SPLIT = 7
_STREAM_TEST_SUBSAMPLE = 8
_STREAM_SYNTHETIC_CIFAR_PROTOTYPES = 9
_STREAM_SYNTHETIC_CIFAR_SAMPLES = 10


class DatasetError(ValueError):
    """A dataset cannot be loaded: bad config, or files missing or malformed."""


@dataclass(frozen=True)
class DatasetConfig:
    """What data an episode trains on. Frozen and hashable: it keys the cache."""

    name: str = "digits"
    root: str | None = None
    download: bool = False
    train_subsample: int | None = None
    val_subsample: int | None = None
    test_subsample: int | None = None
    label_noise: float = 0.0
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # only for sources without an official test split
    split_seed: int = 0
    image_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(
                    f"unknown DatasetConfig key {key!r}; known keys: {sorted(known)}"
                )
        return cls(**d)


@dataclass
class TaskData:
    """In-memory train / validation / test tensors of one task.

    Instances returned by :func:`load_task_data` are shared through a
    per-process cache: callers must not modify them (nor their tensors) in
    place; clone first if a change is needed.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    noisy_label_count: int


@dataclass
class _RawSplits:
    """Un-normalised arrays straight from a source, before subsampling.

    Images stay in their stored dtype (uint8 for the big sets) until after
    subsampling, so a 1000-image subsample of CIFAR never costs a float copy
    of all 50k images.
    """

    train_x: np.ndarray  # [N, C, H, W]
    train_y: np.ndarray  # [N] integer
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    pixel_max: float  # divide by this to bring pixels to 0..1


# ---------------------------------------------------------------- public API


def check_dataset_config(config: DatasetConfig) -> None:
    """Raise DatasetError for settings no source accepts (an unknown name, a noise rate out of range), before
    any episode starts rather than once per episode."""
    _validate_config(config)


def dataset_names() -> list[str]:
    """Names accepted by ``DatasetConfig.name`` (PATH stands for a folder)."""
    return [*_BUILTIN_NAMES, f"{IMAGEFOLDER_PREFIX}PATH"]


def default_data_root(name: str) -> str:
    """Where a source's files are looked for when ``DatasetConfig.root`` is None."""
    if name == "fashion-mnist" and os.path.isdir(DEBIAN_FASHION_MNIST_ROOT):
        return DEBIAN_FASHION_MNIST_ROOT
    env_root = os.environ.get("TAMIYO_DATA_ROOT")
    if env_root:
        return env_root
    return str(Path.home() / ".cache" / "tamiyo" / "datasets")


def load_task_data(config: DatasetConfig) -> TaskData:
    """Load (or fetch from the per-process cache) the task described by ``config``.

    The returned object is shared with later calls using an equal config: do
    not mutate it.
    """
    _validate_config(config)
    return _load_cached(_resolve_root(config))


def dataset_unavailable(config: DatasetConfig) -> str | None:
    """None when the source's files are on this machine (or torchvision may download them); otherwise one
    line naming the files and how to get them. Reads nothing but the file system, so a spec can tell up
    front which of its regimes can run here."""
    _validate_config(config)
    config = _resolve_root(config)
    root = str(config.root)
    if config.name in _ROOTLESS_NAMES or config.download:
        return None
    if config.name == "fashion-mnist":
        torchvision_raw = os.path.join(root, "FashionMNIST", "raw")
        if any(_find_idx_files(folder, compressed_ok=True) for folder in (torchvision_raw, root)):
            return None
        return (f"Fashion-MNIST's idx files are not in {root} (nor {torchvision_raw}): install Debian's package "
                "(apt-get install dataset-fashion-mnist), or set TAMIYO_DATA_ROOT to a folder holding them, or "
                "let torchvision download them (download = true)")  # fmt: skip
    if config.name in ("cifar10", "cifar100"):
        folder = os.path.join(root, "cifar-10-batches-py" if config.name == "cifar10" else "cifar-100-python")
        if os.path.isdir(folder):
            return None
        return (f"{config.name}: no folder {folder}; it needs internet once: set download = true (torchvision "
                f"fetches it into {root}), or extract the official archive there")  # fmt: skip
    path = config.name[len(IMAGEFOLDER_PREFIX):]
    return None if os.path.isdir(path) else f"{config.name}: folder {path} does not exist"


def clear_dataset_cache() -> None:
    """Drop cached TaskData (frees memory; tests use it to force a reload)."""
    _load_cached.cache_clear()
    _read_idx_files.cache_clear()


# ---------------------------------------------------------------- config


def _validate_config(config: DatasetConfig) -> None:
    if config.name not in _BUILTIN_NAMES and not config.name.startswith(IMAGEFOLDER_PREFIX):
        raise DatasetError(
            f"unknown dataset {config.name!r}; known: {', '.join(dataset_names())}"
        )
    if config.name.startswith(IMAGEFOLDER_PREFIX) and not config.name[len(IMAGEFOLDER_PREFIX):]:
        raise DatasetError("dataset 'imagefolder:' needs a folder, e.g. 'imagefolder:/data/pets'")
    if not 0.0 <= config.label_noise < 1.0:
        raise DatasetError(
            f"dataset {config.name!r}: label_noise must be in [0, 1), got {config.label_noise}"
        )
    for field in ("val_fraction", "test_fraction"):
        value = getattr(config, field)
        if not 0.0 < value < 1.0:
            raise DatasetError(f"dataset {config.name!r}: {field} must be in (0, 1), got {value}")
    if config.val_fraction + config.test_fraction >= 1.0:
        raise DatasetError(
            f"dataset {config.name!r}: val_fraction + test_fraction must leave examples to train on, "
            f"got {config.val_fraction} + {config.test_fraction}"
        )
    for field in ("train_subsample", "val_subsample", "test_subsample"):
        value = getattr(config, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise DatasetError(
                f"dataset {config.name!r}: {field} must be a positive integer or None, got {value!r}"
            )
    if config.image_size <= 0:
        raise DatasetError(
            f"dataset {config.name!r}: image_size must be positive, got {config.image_size}"
        )


def _resolve_root(config: DatasetConfig) -> DatasetConfig:
    """Fill in the root now, so equal effective configs share one cache entry."""
    if config.name in _ROOTLESS_NAMES or config.name.startswith(IMAGEFOLDER_PREFIX):
        return dataclasses.replace(config, root=None)
    if config.root is None:
        return dataclasses.replace(config, root=default_data_root(config.name))
    return config


# ---------------------------------------------------------------- pipeline


# Small maxsize: a CIFAR task is ~0.7 GB of float32, and a worker normally
# cycles through very few configs.
@functools.lru_cache(maxsize=4)
def _load_cached(config: DatasetConfig) -> TaskData:
    raw = _load_raw(config)
    num_classes = len(raw.class_names)

    train_idx = _subsample_indices(
        raw.train_y, config.train_subsample, config, "train_subsample", _STREAM_TRAIN_SUBSAMPLE
    )
    val_idx = _subsample_indices(
        raw.val_y, config.val_subsample, config, "val_subsample", _STREAM_VAL_SUBSAMPLE
    )
    test_idx = _subsample_indices(
        raw.test_y, config.test_subsample, config, "test_subsample", _STREAM_TEST_SUBSAMPLE
    )
    train_x = _to_unit_float(raw.train_x[train_idx], raw.pixel_max)
    val_x = _to_unit_float(raw.val_x[val_idx], raw.pixel_max)
    test_x = _to_unit_float(raw.test_x[test_idx], raw.pixel_max)
    train_y = torch.as_tensor(raw.train_y[train_idx], dtype=torch.int64)
    val_y = torch.as_tensor(raw.val_y[val_idx], dtype=torch.int64)
    test_y = torch.as_tensor(raw.test_y[test_idx], dtype=torch.int64)

    noisy_count = _flip_labels(train_y, num_classes, config)
    _normalise_with_train_stats(train_x, val_x, test_x)

    return TaskData(
        name=config.name,
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]),  # type: ignore[arg-type]
        class_names=list(raw.class_names),
        noisy_label_count=noisy_count,
    )


def _load_raw(config: DatasetConfig) -> _RawSplits:
    name = config.name
    if name == "digits":
        return _load_digits(config)
    if name == "synthetic":
        return _load_synthetic(config)
    if name == "synthetic-cifar":
        return _load_synthetic_cifar(config)
    if name == "fashion-mnist":
        return _load_fashion_mnist(config)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(config)
    return _load_imagefolder(config)


def _rng(config: DatasetConfig, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.split_seed, stream])


def _to_unit_float(x: np.ndarray, pixel_max: float) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
    return tensor.div_(pixel_max)


def _normalise_with_train_stats(train_x: torch.Tensor, *held_out: torch.Tensor) -> None:
    """Standardise every split in place per channel, using training statistics only
    (held-out statistics would leak information about the held-out data)."""
    std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0, keepdim=True)
    # A constant channel would divide by zero; leave its scale alone instead.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    for x in (train_x, *held_out):
        x.sub_(mean).div_(std)


def _stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` indices of ``y`` whose class mix follows ``y``'s.

    Per-class quotas use largest remainders, so the total is exact even when
    ``n`` is not a multiple of the class proportions; ties go to random classes.
    """
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * (n / len(y))
    take = np.floor(quotas).astype(np.int64)
    shortfall = n - int(take.sum())
    if shortfall > 0:
        tie_break = rng.permutation(len(classes))
        order = np.lexsort((tie_break, -(quotas - take)))
        take[order[:shortfall]] += 1
    chosen = [
        rng.choice(np.flatnonzero(y == cls), size=int(k), replace=False)
        for cls, k in zip(classes, take)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _subsample_indices(
    y: np.ndarray, n: int | None, config: DatasetConfig, field: str, stream: int
) -> np.ndarray:
    if n is None:
        return np.arange(len(y))
    if n > len(y):
        raise DatasetError(
            f"dataset {config.name!r}: {field}={n} but only {len(y)} examples are available"
        )
    return _stratified_indices(y, n, _rng(config, stream))


def _flip_labels(train_y: torch.Tensor, num_classes: int, config: DatasetConfig) -> int:
    """Replace exactly round(label_noise * N) training labels, in place, each with a
    different class drawn uniformly from the other classes."""
    count = int(round(config.label_noise * len(train_y)))
    if count == 0:
        return 0
    if num_classes < 2:
        raise DatasetError(f"dataset {config.name!r}: label_noise needs at least 2 classes")
    rng = _rng(config, _STREAM_LABEL_NOISE)
    idx = rng.choice(len(train_y), size=count, replace=False)
    # Adding 1..C-1 modulo C never returns the original class and hits each
    # other class with equal probability.
    shift = rng.integers(1, num_classes, size=count)
    labels = train_y.numpy()
    labels[idx] = (labels[idx] + shift) % num_classes
    return count


def _stratified_split(
    x: np.ndarray, y: np.ndarray, class_names: list[str], pixel_max: float, config: DatasetConfig
) -> _RawSplits:
    """Hold out ``test_fraction`` and ``val_fraction`` of a source that has no official test split.

    The test split is drawn first from its own stream, so changing ``val_fraction`` never moves an image
    into or out of the test split."""
    n_test = int(round(config.test_fraction * len(y)))
    n_val = int(round(config.val_fraction * len(y)))
    if n_val == 0 or n_test == 0 or n_val + n_test >= len(y):
        raise DatasetError(
            f"dataset {config.name!r}: val_fraction={config.val_fraction} and test_fraction="
            f"{config.test_fraction} of {len(y)} examples leave an empty train, validation or test split"
        )
    test_idx = _stratified_indices(y, n_test, _rng(config, _STREAM_TEST_SPLIT))
    rest = np.setdiff1d(np.arange(len(y)), test_idx)
    val_idx = rest[_stratified_indices(y[rest], n_val, _rng(config, _STREAM_SPLIT))]
    train_idx = np.setdiff1d(rest, val_idx)
    return _RawSplits(
        train_x=x[train_idx], train_y=y[train_idx], val_x=x[val_idx], val_y=y[val_idx],
        test_x=x[test_idx], test_y=y[test_idx], class_names=class_names, pixel_max=pixel_max,
    )


def _split_official(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    class_names: list[str], pixel_max: float, config: DatasetConfig,
) -> _RawSplits:
    """A source with an official test split: it stays the test split, whole; validation is carved out of the
    training pool (stratified ``val_fraction``), so the controller never watches the images it is scored on."""
    n_val = int(round(config.val_fraction * len(train_y)))
    if n_val == 0 or n_val == len(train_y):
        raise DatasetError(
            f"dataset {config.name!r}: val_fraction={config.val_fraction} of {len(train_y)} training "
            "examples leaves an empty train or validation split"
        )
    val_idx = _stratified_indices(train_y, n_val, _rng(config, _STREAM_SPLIT))
    is_val = np.zeros(len(train_y), dtype=bool)
    is_val[val_idx] = True
    return _RawSplits(
        train_x=train_x[~is_val], train_y=train_y[~is_val], val_x=train_x[is_val], val_y=train_y[is_val],
        test_x=test_x, test_y=test_y, class_names=class_names, pixel_max=pixel_max,
    )


# ---------------------------------------------------------------- digits / synthetic


def _load_digits(config: DatasetConfig) -> _RawSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # [1797, 1, 8, 8], values 0..16
    y = bunch.target.astype(np.int64)
    return _stratified_split(x, y, [str(c) for c in bunch.target_names], 16.0, config)


_SYNTHETIC_CLASSES = 10
_SYNTHETIC_TRAIN_PER_CLASS = 80
_SYNTHETIC_VAL_PER_CLASS = 20
# Tuned so a small CNN reaches roughly 80-95% validation accuracy in a few
# epochs: low enough to be learnable, high enough that classes overlap.
_SYNTHETIC_NOISE_STD = 1.6


def _load_synthetic(config: DatasetConfig) -> _RawSplits:
    prototypes = _rng(config, _STREAM_SYNTHETIC_PROTOTYPES).normal(
        size=(_SYNTHETIC_CLASSES, 1, 8, 8)
    )
    rng = _rng(config, _STREAM_SYNTHETIC_SAMPLES)

    def sample(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(_SYNTHETIC_CLASSES), per_class)
        y = y[rng.permutation(len(y))]
        noise = rng.normal(scale=_SYNTHETIC_NOISE_STD, size=(len(y), 1, 8, 8))
        return (prototypes[y] + noise).astype(np.float32), y.astype(np.int64)

    train_x, train_y = sample(_SYNTHETIC_TRAIN_PER_CLASS)
    val_x, val_y = sample(_SYNTHETIC_VAL_PER_CLASS)
    test_x, test_y = sample(_SYNTHETIC_VAL_PER_CLASS)  # drawn after validation: validation is unchanged
    names = [f"class_{i}" for i in range(_SYNTHETIC_CLASSES)]
    return _RawSplits(train_x, train_y, val_x, val_y, test_x, test_y, names, pixel_max=1.0)


# CIFAR's shape and size without its files: what benchmarks and device checks run on where no CIFAR is at hand.
_SYNTHETIC_CIFAR_SPLITS = (5000, 1000, 1000)  # train, validation, test images
_SYNTHETIC_CIFAR_NOISE_STD = 10.0  # a host (8,16,32) reaches about 50% in 4 epochs: room to grow


def _load_synthetic_cifar(config: DatasetConfig) -> _RawSplits:
    """10 classes of 3x32x32 images: a smooth prototype per class (random 3x8x8, upsampled 4x so convolutions
    have spatial structure to find) plus pixel noise heavy enough that a small host needs several epochs."""
    coarse = _rng(config, _STREAM_SYNTHETIC_CIFAR_PROTOTYPES).normal(size=(_SYNTHETIC_CLASSES, 3, 8, 8))
    prototypes = coarse.repeat(4, axis=2).repeat(4, axis=3)
    rng = _rng(config, _STREAM_SYNTHETIC_CIFAR_SAMPLES)

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(count) % _SYNTHETIC_CLASSES)
        noise = rng.normal(scale=_SYNTHETIC_CIFAR_NOISE_STD, size=(count, 3, 32, 32))
        return (prototypes[y] + noise).astype(np.float32), y.astype(np.int64)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (sample(n) for n in _SYNTHETIC_CIFAR_SPLITS)
    names = [f"class_{i}" for i in range(_SYNTHETIC_CLASSES)]
    return _RawSplits(train_x, train_y, val_x, val_y, test_x, test_y, names, pixel_max=1.0)


# ---------------------------------------------------------------- fashion-mnist

_FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "val_x": "t10k-images-idx3-ubyte",
    "val_y": "t10k-labels-idx1-ubyte",
}


def _load_fashion_mnist(config: DatasetConfig) -> _RawSplits:
    root = str(config.root)
    torchvision_raw = os.path.join(root, "FashionMNIST", "raw")
    if _find_idx_files(torchvision_raw, compressed_ok=False) is not None:
        return _fashion_via_torchvision(config)
    for folder in (torchvision_raw, root):
        files = _find_idx_files(folder, compressed_ok=True)
        if files is not None:
            return _fashion_from_idx(files, config)
    if config.download:
        return _fashion_via_torchvision(config)
    raise DatasetError(
        f"dataset 'fashion-mnist': no idx files under root {root!r}; expected "
        f"{os.path.join(torchvision_raw, 'train-images-idx3-ubyte')}[.gz] (torchvision layout) or "
        f"{os.path.join(root, 'train-images-idx3-ubyte')}[.gz] (plus the train-labels, t10k-images "
        "and t10k-labels files). Pass download=True, or install Debian's dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist, files in {DEBIAN_FASHION_MNIST_ROOT})."
    )


def _find_idx_files(folder: str, compressed_ok: bool) -> dict[str, str] | None:
    """Paths of the four Fashion-MNIST idx files in ``folder``, or None if any is missing."""
    found = {}
    for key, base in _FASHION_FILES.items():
        candidates = [base, base + ".gz"] if compressed_ok else [base]
        path = next(
            (os.path.join(folder, c) for c in candidates if os.path.isfile(os.path.join(folder, c))),
            None,
        )
        if path is None:
            return None
        found[key] = path
    return found


def _fashion_via_torchvision(config: DatasetConfig) -> _RawSplits:
    from torchvision.datasets import FashionMNIST

    try:
        train = FashionMNIST(str(config.root), train=True, download=config.download)
        test = FashionMNIST(str(config.root), train=False, download=config.download)
    except Exception as exc:  # RuntimeError when missing, URLError/OSError when download fails
        raise DatasetError(
            f"dataset 'fashion-mnist': torchvision could not load it from root {config.root!r} "
            f"(download={config.download}): {exc}. Without internet, install Debian's "
            "dataset-fashion-mnist or copy the idx files there."
        ) from exc
    return _split_official(
        train.data.numpy()[:, None], train.targets.numpy().astype(np.int64),
        test.data.numpy()[:, None], test.targets.numpy().astype(np.int64),
        list(FASHION_MNIST_CLASSES), 255.0, config,
    )


@functools.lru_cache(maxsize=2)
def _read_idx_files(files: tuple[tuple[str, str], ...]) -> dict[str, np.ndarray]:
    """The four idx arrays, decoded once per process: an arena's regimes are several subsets of the same files,
    and decompressing them took about a second per regime switch."""
    return {key: read_idx(path) for key, path in files}


def _fashion_from_idx(files: dict[str, str], config: DatasetConfig) -> _RawSplits:
    arrays = _read_idx_files(tuple(sorted(files.items())))
    for split in ("train", "val"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(
                f"dataset 'fashion-mnist' under root {config.root!r}: {split} images "
                f"{x.shape} and labels {y.shape} do not match"
            )
        _check_label_range(y, len(FASHION_MNIST_CLASSES), "fashion-mnist", files[f"{split}_y"])
    return _split_official(
        arrays["train_x"][:, None], arrays["train_y"].astype(np.int64),
        arrays["val_x"][:, None], arrays["val_y"].astype(np.int64),
        list(FASHION_MNIST_CLASSES), 255.0, config,
    )


_IDX_UINT8 = 0x08


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (plain or gzip) holding unsigned bytes.

    Format (LeCun's MNIST page): two zero bytes, a type byte (0x08 = uint8),
    a byte with the number of dimensions, each dimension as a big-endian
    uint32, then the data in C order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read idx file {path!r}: {exc}") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise DatasetError(f"{path!r} is not an idx file (bad magic number)")
    dtype_code, ndim = blob[2], blob[3]
    if dtype_code != _IDX_UINT8:
        raise DatasetError(f"{path!r}: idx element type 0x{dtype_code:02x} unsupported, only uint8")
    header_len = 4 + 4 * ndim
    if len(blob) < header_len:
        raise DatasetError(f"{path!r}: idx header truncated")
    dims = struct.unpack(f">{ndim}I", blob[4:header_len])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(blob) - header_len != expected:
        raise DatasetError(
            f"{path!r}: idx dims {dims} need {expected} bytes of data, file has {len(blob) - header_len}"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header_len).reshape(dims)


# ---------------------------------------------------------------- cifar


def _load_cifar(config: DatasetConfig) -> _RawSplits:
    """CIFAR via torchvision, or via the pickles directly when only md5 fails.

    torchvision's CIFAR10/CIFAR100 refuse any file whose md5 differs from the
    official archive's. That protects real downloads, but also rejects small
    test fixtures and re-pickled copies in the identical format. So: try
    torchvision first (it also does the download when asked); if it refuses
    and all expected files exist, read the same pickles here and validate their
    structure. A truncated or foreign file then fails on unpickling or on the
    shape/label checks rather than on md5.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    tv_class = CIFAR10 if config.name == "cifar10" else CIFAR100
    root = str(config.root)
    folder = os.path.join(root, tv_class.base_folder)
    try:
        train = tv_class(root, train=True, download=config.download)
        test = tv_class(root, train=False, download=False)
        return _split_official(
            np.asarray(train.data).transpose(0, 3, 1, 2),  # torchvision keeps HWC
            np.asarray(train.targets, dtype=np.int64),
            np.asarray(test.data).transpose(0, 3, 1, 2),
            np.asarray(test.targets, dtype=np.int64),
            list(train.classes), 255.0, config,
        )
    except Exception as exc:  # RuntimeError on missing/md5, URLError/OSError on download
        tv_error = exc

    train_files = [name for name, _md5 in tv_class.train_list]
    test_files = [name for name, _md5 in tv_class.test_list]
    meta_file = tv_class.meta["filename"]
    missing = [
        f for f in (*train_files, *test_files, meta_file) if not os.path.isfile(os.path.join(folder, f))
    ]
    if missing:
        raise DatasetError(
            f"dataset {config.name!r}: folder {folder!r} under root {root!r} lacks "
            f"{', '.join(missing)} (torchvision said: {tv_error}). Pass download=True "
            f"to fetch it, or extract {tv_class.filename} into {root!r}."
        ) from tv_error

    label_key = "labels" if config.name == "cifar10" else "fine_labels"
    class_names = _read_cifar_meta(os.path.join(folder, meta_file), tv_class.meta["key"], config.name)
    train_x, train_y = _read_cifar_batches(folder, train_files, label_key, len(class_names), config.name)
    test_x, test_y = _read_cifar_batches(folder, test_files, label_key, len(class_names), config.name)
    return _split_official(train_x, train_y, test_x, test_y, class_names, 255.0, config)


def _unpickle(path: str, dataset: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # The official batches are Python-2 pickles with bytes keys;
            # latin1 is what torchvision uses too. Keys are normalised to str.
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise DatasetError(f"dataset {dataset!r}: cannot unpickle {path!r}: {exc}") from exc
    if not isinstance(entry, dict):
        raise DatasetError(f"dataset {dataset!r}: {path!r} does not hold a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_cifar_meta(path: str, key: str, dataset: str) -> list[str]:
    meta = _unpickle(path, dataset)
    if key not in meta:
        raise DatasetError(f"dataset {dataset!r}: {path!r} has no {key!r} entry")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _read_cifar_batches(
    folder: str, files: list[str], label_key: str, num_classes: int, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        path = os.path.join(folder, name)
        entry = _unpickle(path, dataset)
        if "data" not in entry or label_key not in entry:
            raise DatasetError(f"dataset {dataset!r}: {path!r} lacks 'data' or {label_key!r}")
        data = np.asarray(entry["data"], dtype=np.uint8)
        y = np.asarray(entry[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(y):
            raise DatasetError(
                f"dataset {dataset!r}: {path!r} has data {data.shape} and {len(y)} labels; "
                "expected [n, 3072] and n labels"
            )
        _check_label_range(y, num_classes, dataset, path)
        images.append(data.reshape(-1, 3, 32, 32))  # stored channel-major: R plane, G, B
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _check_label_range(y: np.ndarray, num_classes: int, dataset: str, path: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(
            f"dataset {dataset!r}: labels in {path!r} fall outside 0..{num_classes - 1}"
        )


# ---------------------------------------------------------------- imagefolder


SPLIT_FOLDERS = ("train", "test")  # an image folder that holds these two is one already split into train and test


def _load_imagefolder(config: DatasetConfig) -> _RawSplits:
    """One folder of class folders (split three ways here), or a folder holding `train/` and `test/`, each a folder
    of class folders: then `test/` is the test split, whole, and validation is carved out of `train/`, exactly as
    for a source with an official test split. Read as one class folder each, `train` and `test` would make a
    two-class "train vs test" task, so that layout is recognised, never guessed at."""
    path = config.name[len(IMAGEFOLDER_PREFIX):]
    if not os.path.isdir(path):
        raise DatasetError(
            f"dataset {config.name!r}: folder {path!r} does not exist; it should hold one "
            "sub-folder of images per class, or train/ and test/ folders that each do"
        )
    subfolders = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    split = [name for name in subfolders if name in SPLIT_FOLDERS]
    if not split:
        x, y, classes = _read_image_folder(path, config)
        return _stratified_split(x, y, classes, 255.0, config)
    if set(subfolders) != set(SPLIT_FOLDERS):
        raise DatasetError(
            f"dataset {config.name!r}: {path!r} holds {', '.join(subfolders)}; a split image folder holds exactly "
            "train/ and test/ (each one sub-folder per class), an unsplit one only class folders"
        )
    train_x, train_y, classes = _read_image_folder(os.path.join(path, "train"), config)
    test_x, test_y, test_classes = _read_image_folder(os.path.join(path, "test"), config)
    if test_classes != classes:
        raise DatasetError(
            f"dataset {config.name!r}: train/ and test/ in {path!r} must hold the same class folders; "
            f"train has {', '.join(classes)}, test has {', '.join(test_classes)}"
        )
    return _split_official(train_x, train_y, test_x, test_y, classes, 255.0, config)


def _read_image_folder(path: str, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    size = config.image_size

    def to_array(img: Image.Image) -> np.ndarray:
        # ImageFolder's default loader already converts to RGB; resizing here
        # avoids importing torchvision.transforms.
        resized = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)

    try:
        folder = ImageFolder(path, transform=to_array)
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(f"dataset {config.name!r}: no usable images in {path!r}: {exc}") from exc
    if len(folder.classes) < 2:
        raise DatasetError(f"dataset {config.name!r}: {path!r} needs at least 2 class folders")

    x = np.empty((len(folder), 3, size, size), dtype=np.uint8)
    y = np.empty(len(folder), dtype=np.int64)
    for i in range(len(folder)):
        x[i], y[i] = folder[i]
    return x, y, list(folder.classes)
