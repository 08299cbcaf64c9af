"""Phase 1: imitation of the logged controller (behaviour cloning), selected on balanced accuracy.

Reads top to bottom like a CleanRL script, as a function: config, seeding, data to tensors, normaliser fitted
on the training split, class weights, the training loop (per-epoch metrics and throughput), and the best
epoch's weights kept by validation balanced accuracy (ties broken by lower validation loss), or, for Phase 2,
by the validation loss under its own weighting (`select_on="loss"`).

Loss: class-weighted cross-entropy on the coarse label (WAIT / GERMINATE / ADVANCE / CULL) plus cross-entropy
of the blueprint head on GERMINATE decisions. Optional per-decision sample weights multiply both terms:
Phase 2 (`reward_weighted.py`) is this same loop with weights from the episode outcomes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from ..agents.imitation_network import NetworkConfig, PolicyNetwork, categorical_columns
from ..world.actions import COARSE_ACTIONS
from ..world.blueprints import BLUEPRINTS
from .class_weights import DEFAULT_BETA, effective_number_weights
from .data import arrays, feature_names
from .metrics import balanced_accuracy, confusion_matrix, distribution, per_class_accuracy


@dataclass(frozen=True)
class ImitationConfig:
    feature_set: str = "base"  # "base" (27), "base+telemetry" (54) or "full" (66)
    epochs: int = 150  # ~24 updates per epoch on a 200-episode warehouse: 30 epochs left WAIT/ADVANCE under-fit
    batch_size: int = 256
    learning_rate: float = 1e-3  # AdamW, as the reference
    weight_decay: float = 0.01
    beta: float = DEFAULT_BETA  # class weights by effective number of samples
    blueprint_loss_weight: float = 1.0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    # Which epoch to keep: "balanced_accuracy" on validation (imitation: the metric we report), or "loss", the
    # validation loss under the validation sample weights (Phase 2: its own weighted objective out of sample).
    select_on: str = "balanced_accuracy"
    seed: int = 0
    threads: int = 1  # the machine is shared; one thread also keeps runs reproducible

    def __post_init__(self):
        if self.select_on not in ("balanced_accuracy", "loss"):
            raise ValueError(f"select_on must be 'balanced_accuracy' or 'loss', got {self.select_on!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["network"] = self.network.to_dict()
        return d


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_balanced_accuracy: float
    val_per_class_accuracy: dict[str, float]
    val_blueprint_accuracy: float  # on GERMINATE decisions (NaN when none)
    val_action_mix: dict[str, float]  # predicted coarse actions on the validation split
    updates_per_second: float


@dataclass
class TrainResult:
    model: PolicyNetwork
    config: ImitationConfig
    feature_names: tuple[str, ...]
    history: list[EpochMetrics]
    best_epoch: int
    class_counts: dict[str, int]
    class_weights: dict[str, float]
    val_confusion: np.ndarray  # coarse, at the best epoch
    n_train: int
    n_val: int
    updates_per_second: float  # over the whole run
    train_seconds: float

    @property
    def best(self) -> EpochMetrics:
        return self.history[self.best_epoch - 1]


@dataclass
class TrainingSummary:
    """What a report needs of a training run. It travels inside the policy file (plain types, loadable with
    weights_only), so learning curves can be drawn wherever the policy is evaluated."""

    history: list[EpochMetrics]
    best_epoch: int
    n_train: int
    n_val: int
    updates_per_second: float
    train_seconds: float
    class_counts: dict[str, int]
    class_weights: dict[str, float]

    @classmethod
    def from_result(cls, result: TrainResult) -> "TrainingSummary":
        return cls(list(result.history), result.best_epoch, result.n_train, result.n_val, float(result.updates_per_second),
                   float(result.train_seconds), dict(result.class_counts), dict(result.class_weights))  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)  # recursive: the history becomes plain dicts

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingSummary":
        return cls(**{**d, "history": [EpochMetrics(**m) for m in d["history"]]})


def predict_heads(model: PolicyNetwork, x: np.ndarray, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Coarse and blueprint logits in eval mode (BatchNorm running statistics, no dropout)."""
    import torch

    model.eval()
    coarse, blueprint = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            c, b = model.heads(torch.as_tensor(x[start : start + batch]))
            coarse.append(c.numpy())
            blueprint.append(b.numpy())
    if not coarse:
        return np.zeros((0, len(COARSE_ACTIONS)), np.float32), np.zeros((0, len(BLUEPRINTS)), np.float32)
    return np.concatenate(coarse), np.concatenate(blueprint)


def train_imitation(
    train: pl.DataFrame,
    val: pl.DataFrame,
    config: ImitationConfig = ImitationConfig(),
    *,
    sample_weight: np.ndarray | None = None,
    val_sample_weight: np.ndarray | None = None,
    init_from: PolicyNetwork | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    import torch
    import torch.nn.functional as F

    # --- seeding and threads, up front
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    # --- data
    features = feature_names(config.feature_set)
    tr, va = arrays(train, features), arrays(val, features)
    if len(tr["x"]) < 2 or len(va["x"]) < 1:
        raise ValueError(f"too few decisions to train ({len(tr['x'])} train, {len(va['x'])} validation)")
    x, y, y_bp = (torch.as_tensor(tr[k]) for k in ("x", "coarse", "blueprint"))
    w = _decision_weights(sample_weight, len(tr["x"]), "sample_weight", "training")
    val_w = _decision_weights(val_sample_weight, len(va["x"]), "val_sample_weight", "validation")

    # --- model: a parent policy's weights and normaliser (Phase 2 fine-tuning), or fresh with a new normaliser
    if init_from is not None:
        if init_from.n_features != len(features):
            raise ValueError(f"parent policy has {init_from.n_features} features, feature set {config.feature_set} has {len(features)}")
        model = copy.deepcopy(init_from)
    else:
        model = PolicyNetwork(len(features), config.network, categorical_columns(features, config.network))
        model.normaliser.fit(tr["x"])
    # fused: one kernel for the whole parameter update instead of a handful per tensor (CPU too since torch 2.4)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    with torch.no_grad():
        z = model.encode(x)  # normalised + one-hot once: neither changes while the weights learn

    # --- class weights from the (weighted) training labels: the loss sees the weighted data
    counts = np.bincount(tr["coarse"], minlength=len(COARSE_ACTIONS))
    class_w = torch.as_tensor(effective_number_weights(counts, config.beta), dtype=torch.float32)

    def loss_terms(coarse_logits, bp_logits, yc, yb, sw):
        per_decision = F.cross_entropy(coarse_logits, yc, reduction="none") * class_w[yc] * sw
        loss = per_decision.sum() / (class_w[yc] * sw).sum().clamp_min(1e-12)
        if config.blueprint_loss_weight > 0:
            # Blueprint labels exist on GERMINATE rows only (-1 elsewhere): ignored rows add 0 to the sum and
            # their weight is masked out, with no data-dependent branch or boolean indexing in the step.
            germ_w = sw * (yb >= 0)
            bp = F.cross_entropy(bp_logits, yb, reduction="none", ignore_index=-1) * germ_w
            loss = loss + config.blueprint_loss_weight * bp.sum() / germ_w.sum().clamp_min(1e-12)
        return loss

    # --- training loop
    history: list[EpochMetrics] = []
    best_key, best_state, best_epoch, best_confusion = None, None, 0, None
    total_updates, total_update_seconds = 0, 0.0
    started = time.perf_counter()
    n = len(x)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.as_tensor(rng.permutation(n))
        losses, updates = [], 0
        t0 = time.perf_counter()
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two rows to compute batch statistics
                continue
            coarse_logits, bp_logits = model.heads_from_encoded(z[idx])
            loss = loss_terms(coarse_logits, bp_logits, y[idx], y_bp[idx], w[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            updates += 1
        seconds = time.perf_counter() - t0
        total_updates += updates
        total_update_seconds += seconds

        # validation: accuracies on the unweighted labels (imitation of what was logged); the class-weighted
        # loss under the validation sample weights (all ones unless Phase 2 passes its own weighting)
        coarse_logits, bp_logits = predict_heads(model, va["x"])
        with torch.no_grad():
            val_loss = loss_terms(
                torch.as_tensor(coarse_logits), torch.as_tensor(bp_logits), torch.as_tensor(va["coarse"]),
                torch.as_tensor(va["blueprint"]), val_w,
            ).item()  # fmt: skip
        predicted = coarse_logits.argmax(axis=1)
        matrix = confusion_matrix(va["coarse"], predicted, len(COARSE_ACTIONS))
        germ = va["blueprint"] >= 0
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=float(np.mean(losses)) if losses else float("nan"),
            val_loss=val_loss,
            val_balanced_accuracy=balanced_accuracy(matrix),
            val_per_class_accuracy=dict(zip(COARSE_ACTIONS, map(float, per_class_accuracy(matrix)))),
            val_blueprint_accuracy=float((bp_logits[germ].argmax(axis=1) == va["blueprint"][germ]).mean()) if germ.any() else float("nan"),
            val_action_mix=distribution(predicted, COARSE_ACTIONS),
            updates_per_second=updates / seconds if seconds > 0 else float("nan"),
        )
        history.append(metrics)
        if on_epoch:
            on_epoch(metrics)
        if config.select_on == "loss":
            key = (-metrics.val_loss,)
        else:
            key = (metrics.val_balanced_accuracy, -metrics.val_loss)
        if best_key is None or key > best_key:
            best_key, best_epoch, best_confusion = key, epoch, matrix
            best_state = copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        config=config,
        feature_names=features,
        history=history,
        best_epoch=best_epoch,
        class_counts=dict(zip(COARSE_ACTIONS, map(int, counts))),
        class_weights=dict(zip(COARSE_ACTIONS, map(float, class_w.tolist()))),
        val_confusion=best_confusion,
        n_train=n,
        n_val=len(va["x"]),
        updates_per_second=total_updates / total_update_seconds if total_update_seconds > 0 else float("nan"),
        train_seconds=time.perf_counter() - started,
    )


def _decision_weights(weights, n: int, name: str, split: str):
    """One non-negative weight per decision as a tensor (all ones when none are given)."""
    import torch

    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != (n,) or (w < 0).any():
        raise ValueError(f"{name} must be one non-negative weight per {split} decision")
    return torch.as_tensor(w)
