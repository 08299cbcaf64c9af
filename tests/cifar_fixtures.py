"""CIFAR-10 and CIFAR-100 fixtures in the official pickled format (torchvision's on-disk layout), tiny and
random: what the loaders and the CIFAR specs are tested on without the real files."""

import pickle
from pathlib import Path

import numpy as np


def _cifar_batch(rng: np.random.Generator, labels: list[int], label_key: bytes) -> dict:
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    batch = {b"batch_label": b"fixture", b"data": data, label_key: labels}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [lab // 5 for lab in labels]
    return batch


def dump_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class: int = 2) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = [k for k in range(10) for _ in range(per_class)]
    for i in range(1, 6):
        dump_pickle(folder / f"data_batch_{i}", _cifar_batch(rng, labels, b"labels"))
    dump_pickle(folder / "test_batch", _cifar_batch(rng, labels, b"labels"))
    names = [f"c10_{k}".encode() for k in range(10)]
    dump_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": len(labels)})


def write_cifar100(root: Path, per_class: int = 2) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    labels = [k for k in range(100) for _ in range(per_class)]
    dump_pickle(folder / "train", _cifar_batch(rng, labels, b"fine_labels"))
    dump_pickle(folder / "test", _cifar_batch(rng, labels[::2], b"fine_labels"))
    dump_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine_{k}".encode() for k in range(100)],
            b"coarse_label_names": [f"coarse_{k}".encode() for k in range(20)],
        },
    )
