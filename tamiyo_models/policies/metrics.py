"""Classification metrics of a policy against logged actions (numpy only; used in training and evaluation).

Balanced accuracy is the mean over classes of the per-class recall, over the classes that occur in the
labels: on heuristic data WAIT dominates, and overall accuracy would reward a policy that never acts.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predictions, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class absent from the labels."""
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)


def balanced_accuracy(matrix: np.ndarray) -> float:
    recalls = per_class_accuracy(matrix)
    present = ~np.isnan(recalls)
    return float(recalls[present].mean()) if present.any() else float("nan")


def distribution(indices, names: tuple[str, ...]) -> dict[str, float]:
    counts = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(names))
    total = max(int(counts.sum()), 1)
    return {name: float(c) / total for name, c in zip(names, counts)}
