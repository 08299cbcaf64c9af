"""The observation feature schema and the one function that computes it.

`observation_features(record)` turns a raw observation record (what the generator stores in each step of a
raw telemetry run, see `rawrun.py`) into named float features. The live controller and the ingestion of
logged runs both call it, so a policy sees at serving time exactly what it was trained on (the reference
system computed them twice, differently, and its head-to-head numbers were wrong because of it).

Schema `tamiyo-features/5` has five groups, in this order:
- `base` (27): the reference V1 vector, same names and order. Fixes: `loss_delta`/`accuracy_delta` are 0 at
  the first step (the reference stored +Infinity), and `best_val_loss` is really tracked.
- `telemetry` (27): the reference V2 policy telemetry: 5 gradient-health numbers, 10 per-class validation
  accuracies (first 10 classes, 0-padded), their variance, sharpness, 7 layer gradient norms (conv weight of
  stages 0..5, 0-padded, and the classifier), 3 red flags.
- `lifecycle` (12): ours. What a controller needs to judge a seed and that the reference did not expose:
  improvement since germination (seed fully applied), measured contribution of the seed, its blueprint, time left, counts.
- `task` (10): ours, new in schema 4. What problem this is: the host's size and shape, its seed slots, the
  training set and the inputs, so one policy can act differently on a narrow host with little data than on a
  wide one with plenty (the arena's regimes differ exactly there). Counts enter as log10.

- `slots` (11 per slot, 3 slots): ours, for the factored action (world.actions). Each seed slot of the host
  by position: whether it exists, its channels, and its seed's stage, clock, alpha, improvement, measured
  contribution, size, cool-down and, new in schema 5, the share of its gradient entries that were exactly 0
  over the last epoch (the seed's own gradient health: a seed born dead, `EpisodeConfig.seed_faults`, shows
  near 1). Computed from the record's `slots` list, which every record has, so older runs get these features
  too (the gradient share 0: it was not measured).

Feature sets for policies: `base`, `base+telemetry` (the reference's 54), `base+lifecycle`,
`base+lifecycle+task`, `full` (the first four groups, as before the slots group), `base+lifecycle+task+slots`,
`full+slots`.

Values are sanitised (NaN, inf, None -> 0) but not clipped or normalised: storage keeps the true values and
policies normalise with statistics fitted on their training split. One exception: a record written before
schema 4 has no task description, and its task features are NaN (null in the warehouse) rather than a
made-up 0; `task_feature_defaults` says what a policy substitutes.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .actions import MAX_SEED_SLOTS
from .blueprint_names import BLUEPRINTS
from .lifecycle import ACTIVE_STAGES, Stage

FEATURE_SCHEMA_VERSION = "tamiyo-features/5"
PLATEAU_THRESHOLD_PP = 0.5  # an epoch whose val accuracy rose less than this is a plateau epoch
HISTORY_LENGTH = 5

# Red-flag thresholds (reference values).
SUSTAINED_PLATEAU_EPOCHS = 3
POOR_GRADIENT_HEALTH = 0.5
OVERFITTING_GAP = 0.5
HIGH_CLASS_VARIANCE = 200.0
HIGH_SHARPNESS = 1.0
VANISHING_VALUE, EXPLODING_VALUE = 1e-7, 1e3

BASE_FEATURES: tuple[str, ...] = (
    "epoch", "global_step", "train_loss", "val_loss", "loss_delta", "train_accuracy", "val_accuracy",
    "accuracy_delta", "plateau_epochs", "best_val_accuracy", "best_val_loss",
    *(f"loss_history_{i}" for i in range(HISTORY_LENGTH)),
    *(f"accuracy_history_{i}" for i in range(HISTORY_LENGTH)),
    "has_active_seed", "seed_stage", "seed_epochs_in_stage", "seed_alpha", "seed_improvement",
    "available_slots",
)  # fmt: skip
TELEMETRY_FEATURES: tuple[str, ...] = (
    "grad_mean_layer_norm", "grad_layer_norm_variance", "grad_vanishing_layers", "grad_exploding_layers",
    "grad_health",
    *(f"class_accuracy_{i}" for i in range(10)),
    "class_accuracy_variance", "sharpness",
    *(f"layer_grad_norm_{i}" for i in range(6)), "layer_grad_norm_head",
    "flag_sustained_plateau", "flag_gradient_problem", "flag_overfitting",
)  # fmt: skip
LIFECYCLE_FEATURES: tuple[str, ...] = (
    "seed_total_improvement", "seed_contribution",
    *(f"seed_blueprint_{b}" for b in BLUEPRINTS),
    "epochs_remaining", "cooldown_epochs_remaining", "seeds_fossilized", "seeds_culled", "learning_rate",
)  # fmt: skip
# Per seed slot k < MAX_SEED_SLOTS, in the host's slot order (absent slots are 0 throughout, `present` says
# which exist): what the factored action needs to tell slots apart. Slot 0 of a single-slot host repeats the
# focus-slot features of `base` and `lifecycle`, computed by the same function (`slot_values`).
SLOT_FIELDS: tuple[str, ...] = (
    "present", "channels", "stage", "active", "epochs_in_stage", "alpha", "total_improvement", "contribution",
    "log10_seed_parameters", "cooldown", "zero_gradient_share",
)  # fmt: skip
SLOT_FEATURES: tuple[str, ...] = tuple(f"slot{k}_{name}" for k in range(MAX_SEED_SLOTS) for name in SLOT_FIELDS)
TASK_FEATURES: tuple[str, ...] = (
    "task_log10_host_parameters", "task_host_depth", "task_host_width_first", "task_host_width_last",
    "task_slot_channels", "task_seed_slots", "task_log10_train_size", "task_num_classes",
    "task_input_channels", "task_input_size",
)  # fmt: skip

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "base": BASE_FEATURES,
    "telemetry": TELEMETRY_FEATURES,
    "lifecycle": LIFECYCLE_FEATURES,
    "task": TASK_FEATURES,
    "slots": SLOT_FEATURES,
}
ALL_FEATURES: tuple[str, ...] = BASE_FEATURES + TELEMETRY_FEATURES + LIFECYCLE_FEATURES + TASK_FEATURES + SLOT_FEATURES
# `full` stays the four groups it always held, so every stored policy and dataset of it reads the same vector;
# the per-slot group is added by the `+slots` sets.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "base": BASE_FEATURES,
    "base+telemetry": BASE_FEATURES + TELEMETRY_FEATURES,
    "base+lifecycle": BASE_FEATURES + LIFECYCLE_FEATURES,
    "base+lifecycle+task": BASE_FEATURES + LIFECYCLE_FEATURES + TASK_FEATURES,
    "full": BASE_FEATURES + TELEMETRY_FEATURES + LIFECYCLE_FEATURES + TASK_FEATURES,
    "base+lifecycle+task+slots": BASE_FEATURES + LIFECYCLE_FEATURES + TASK_FEATURES + SLOT_FEATURES,
    "full+slots": ALL_FEATURES,
}


def _num(value: Any) -> float:
    if value is None or isinstance(value, str):
        return 0.0
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _left_padded(values: list, length: int = HISTORY_LENGTH) -> list[float]:
    tail = [_num(v) for v in values[-length:]]
    return [0.0] * (length - len(tail)) + tail


def focus_slot(slots: list[Mapping]) -> Mapping | None:
    """The slot the seed features describe: the active seed's slot, else the most recently changed one."""
    if not slots:
        return None
    for slot in slots:
        if Stage[slot["stage"]] in ACTIVE_STAGES:
            return slot
    return max(slots, key=lambda s: (s.get("last_change_epoch") or -1, -s["index"]))


def gradient_health(layers: list[Mapping]) -> dict[str, float]:
    """Summary of per-layer gradient statistics.

    A layer is *vanishing* when more than half of its gradient values are below 1e-7 in magnitude and
    *exploding* when any value exceeds 1e3 or its norm does. Health starts at 1 and loses half the share of
    vanishing layers, half the share of exploding layers, and up to 0.2 for a spread of layer norms over
    more than two orders of magnitude (log10 variance / 4); clipped to [0, 1].
    """
    if not layers:
        return {"mean": 0.0, "variance": 0.0, "vanishing": 0.0, "exploding": 0.0, "health": 1.0}
    norms = [_num(layer.get("norm")) for layer in layers]
    mean = sum(norms) / len(norms)
    variance = sum((n - mean) ** 2 for n in norms) / len(norms)
    vanishing = sum(1 for layer in layers if _num(layer.get("vanishing_share")) > 0.5)
    exploding = sum(
        1 for layer, n in zip(layers, norms) if _num(layer.get("exploding_share")) > 0 or n > EXPLODING_VALUE
    )
    logs = [math.log10(max(n, 1e-12)) for n in norms]
    log_mean = sum(logs) / len(logs)
    log_var = sum((v - log_mean) ** 2 for v in logs) / len(logs)
    health = 1.0 - 0.5 * vanishing / len(layers) - 0.5 * exploding / len(layers) - 0.2 * min(1.0, log_var / 4)
    return {
        "mean": mean,
        "variance": variance,
        "vanishing": float(vanishing),
        "exploding": float(exploding),
        "health": min(1.0, max(0.0, health)),
    }


def _layer_norm_features(layers: list[Mapping]) -> list[float]:
    by_name = {layer["name"]: _num(layer.get("norm")) for layer in layers}
    stage_norms = [by_name.get(f"stages.{i}.0.weight", 0.0) for i in range(6)]
    return [*stage_norms, by_name.get("head.weight", 0.0)]


def observation_features(record: Mapping) -> dict[str, float]:
    """Named features (schema order) of one raw observation record."""
    prev_loss, prev_acc = record.get("previous_val_loss"), record.get("previous_val_accuracy")
    val_loss, val_acc = _num(record["val_loss"]), _num(record["val_accuracy"])
    slots = record.get("slots") or []
    slot = focus_slot(slots)
    active = slot is not None and Stage[slot["stage"]] in ACTIVE_STAGES
    focus = slot_values(slot, val_acc)

    f: dict[str, float] = {
        "epoch": _num(record["epoch"]),
        "global_step": _num(record["global_step"]),
        "train_loss": _num(record["train_loss"]),
        "val_loss": val_loss,
        "loss_delta": 0.0 if prev_loss is None else _num(prev_loss) - val_loss,
        "train_accuracy": _num(record["train_accuracy"]),
        "val_accuracy": val_acc,
        "accuracy_delta": 0.0 if prev_acc is None else val_acc - _num(prev_acc),
        "plateau_epochs": _num(record["plateau_epochs"]),
        "best_val_accuracy": _num(record["best_val_accuracy"]),
        "best_val_loss": _num(record["best_val_loss"]),
    }
    f.update(zip((f"loss_history_{i}" for i in range(5)), _left_padded(record.get("val_loss_history", []))))
    f.update(
        zip((f"accuracy_history_{i}" for i in range(5)), _left_padded(record.get("val_accuracy_history", [])))
    )
    f["has_active_seed"] = focus["active"]
    f["seed_stage"] = focus["stage"]
    f["seed_epochs_in_stage"] = focus["epochs_in_stage"]
    f["seed_alpha"] = focus["alpha"]
    f["seed_improvement"] = val_acc - _num(slot["accuracy_at_stage_start"]) if active else 0.0
    f["available_slots"] = float(sum(1 for s in slots if s["stage"] == "DORMANT"))

    telemetry = record.get("telemetry") or {}
    layers = (telemetry.get("gradients") or {}).get("layers") or []
    health = gradient_health(layers)
    f["grad_mean_layer_norm"] = health["mean"]
    f["grad_layer_norm_variance"] = health["variance"]
    f["grad_vanishing_layers"] = health["vanishing"]
    f["grad_exploding_layers"] = health["exploding"]
    f["grad_health"] = health["health"]
    per_class = [_num(v) for v in telemetry.get("per_class_accuracy") or []]
    f.update(zip((f"class_accuracy_{i}" for i in range(10)), (per_class + [0.0] * 10)[:10]))
    class_mean = sum(per_class) / len(per_class) if per_class else 0.0
    class_var = sum((v - class_mean) ** 2 for v in per_class) / len(per_class) if per_class else 0.0
    f["class_accuracy_variance"] = class_var
    f["sharpness"] = _num(telemetry.get("sharpness"))
    norms = _layer_norm_features(layers)
    f.update(zip([f"layer_grad_norm_{i}" for i in range(6)] + ["layer_grad_norm_head"], norms))
    f["flag_sustained_plateau"] = float(f["plateau_epochs"] >= SUSTAINED_PLATEAU_EPOCHS)
    f["flag_gradient_problem"] = float(
        bool(layers) and (health["vanishing"] > 0 or health["exploding"] > 0 or health["health"] < POOR_GRADIENT_HEALTH)
    )
    f["flag_overfitting"] = float(val_loss - f["train_loss"] > OVERFITTING_GAP)

    f["seed_total_improvement"] = focus["total_improvement"]
    f["seed_contribution"] = focus["contribution"]
    blueprint = slot.get("blueprint") if active else None
    for b in BLUEPRINTS:
        f[f"seed_blueprint_{b}"] = 1.0 if blueprint == b else 0.0
    f["epochs_remaining"] = _num(record["max_epochs"]) - f["epoch"]
    f["cooldown_epochs_remaining"] = max((_num(s.get("cooldown_remaining")) for s in slots), default=0.0)
    f["seeds_fossilized"] = _num(record.get("seeds_fossilized"))
    f["seeds_culled"] = _num(record.get("seeds_culled"))
    f["learning_rate"] = _num(record.get("learning_rate"))
    f.update(task_features(record.get("task")))
    f.update(slot_features(slots, record.get("task"), val_acc))
    return f


def slot_values(slot: Mapping | None, val_accuracy: float) -> dict[str, float]:
    """One slot's seed as the features see it (all 0 without a slot)."""
    active = slot is not None and Stage[slot["stage"]] in ACTIVE_STAGES
    # With the seed fully applied (alpha = 1), measured every epoch from TRAINING on: the same quantity the
    # quality gates and the heuristic judge (see Episode.seed_improvement).
    with_seed = slot.get("accuracy_with_seed") if active else None
    with_seed = val_accuracy if with_seed is None else _num(with_seed)
    return {
        "active": 1.0 if active else 0.0,
        "stage": float(Stage[slot["stage"]]) if slot else 0.0,
        "epochs_in_stage": _num(slot["epochs_in_stage"]) if slot else 0.0,
        "alpha": _num(slot["alpha"]) if slot else 0.0,
        "total_improvement": with_seed - _num(slot["accuracy_at_germination"]) if active else 0.0,
        "contribution": _num(slot.get("contribution")) if active else 0.0,
    }


def slot_features(slots: list[Mapping], task: Mapping | None, val_accuracy: float) -> dict[str, float]:
    """The `slots` group: each slot of the host by its position in the record's slot list."""
    channels = [_num(c) for c in (task or {}).get("slot_channels") or []]
    f = dict.fromkeys(SLOT_FEATURES, 0.0)
    for k, slot in enumerate(slots[:MAX_SEED_SLOTS]):
        values = slot_values(slot, val_accuracy)
        values.update(present=1.0, channels=channels[k] if k < len(channels) else 0.0,
                      log10_seed_parameters=math.log10(1.0 + _num(slot.get("seed_parameters"))),
                      cooldown=_num(slot.get("cooldown_remaining")),
                      zero_gradient_share=_num(slot.get("seed_zero_gradient_share")))  # fmt: skip
        f.update({f"slot{k}_{name}": values[name] for name in SLOT_FIELDS})
    return f


def task_features(task: Mapping | None) -> dict[str, float]:
    """The `task` group from a record's task description; NaN throughout when the record has none (written
    before schema 4, or a legacy episode), so storage says "unknown" instead of a misleading 0."""
    if not task:
        return {name: math.nan for name in TASK_FEATURES}
    widths = [_num(w) for w in task.get("host_widths") or []]
    slots = [_num(c) for c in task.get("slot_channels") or []]
    shape = [_num(v) for v in task.get("input_shape") or []] + [0.0, 0.0, 0.0]
    return {
        "task_log10_host_parameters": math.log10(max(1.0, _num(task.get("host_parameters")))),
        "task_host_depth": float(len(widths)),
        "task_host_width_first": widths[0] if widths else 0.0,
        "task_host_width_last": widths[-1] if widths else 0.0,
        "task_slot_channels": slots[0] if slots else 0.0,
        "task_seed_slots": float(len(slots)),
        "task_log10_train_size": math.log10(max(1.0, _num(task.get("train_size")))),
        "task_num_classes": _num(task.get("num_classes")),
        "task_input_channels": shape[0],
        "task_input_size": shape[1],
    }


def task_feature_defaults() -> dict[str, float]:
    """What a policy feeds for an unknown task description: the default digits task with the default host
    (widths 2-4-8, one slot, 1,079 training images of 1x8x8, 10 classes), where every run before schema 4
    was generated."""
    return task_features({"host_parameters": 496, "host_widths": [2, 4, 8], "slot_channels": [4],
                          "train_size": 1079, "num_classes": 10, "input_shape": [1, 8, 8]})  # fmt: skip


_UNIT_INTERVAL = ("has_active_seed", "seed_alpha", "grad_health", "flag_sustained_plateau", "flag_gradient_problem",
                  "flag_overfitting", *(f"seed_blueprint_{b}" for b in BLUEPRINTS),
                  *(f"slot{k}_{n}" for k in range(MAX_SEED_SLOTS) for n in ("present", "active", "alpha", "zero_gradient_share")))  # fmt: skip
_PERCENT = ("train_accuracy", "val_accuracy", "best_val_accuracy", *(f"accuracy_history_{i}" for i in range(HISTORY_LENGTH)),
            *(f"class_accuracy_{i}" for i in range(10)))  # fmt: skip
_SIGNED_PP = ("accuracy_delta", "seed_improvement", "seed_total_improvement", "seed_contribution",
              *(f"slot{k}_{n}" for k in range(MAX_SEED_SLOTS) for n in ("total_improvement", "contribution")))  # fmt: skip
_UNBOUNDED = ("loss_delta",)


def feature_bounds(name: str) -> tuple[float, float]:
    """The range a feature's values can take (an environment's observation space declares it): accuracies
    0..100 pp, their differences -100..100, shares and flags 0..1, the stage number 0..9, the rest >= 0."""
    if name not in ALL_FEATURES:
        raise ValueError(f"unknown feature {name!r}")
    if name in _UNIT_INTERVAL:
        return 0.0, 1.0
    if name in _PERCENT:
        return 0.0, 100.0
    if name in _SIGNED_PP:
        return -100.0, 100.0
    if name == "seed_stage" or (name.startswith("slot") and name.endswith("_stage")):
        return 0.0, float(max(Stage))
    if name in _UNBOUNDED:
        return -math.inf, math.inf
    return 0.0, math.inf


def feature_vector(features: Mapping[str, float], feature_set: str = "full") -> list[float]:
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    return [features[name] for name in FEATURE_SETS[feature_set]]


def red_flags(record: Mapping, features: Mapping[str, float]) -> dict[str, bool]:
    """All reference red flags by name (the vector keeps three; the raw run keeps every one)."""
    return {
        "sustained_plateau": features["flag_sustained_plateau"] > 0,
        "vanishing_gradients": features["grad_vanishing_layers"] > 0,
        "exploding_gradients": features["grad_exploding_layers"] > 0,
        "poor_gradient_health": bool((record.get("telemetry") or {}).get("gradients"))
        and features["grad_health"] < POOR_GRADIENT_HEALTH,
        "overfitting": features["flag_overfitting"] > 0,
        "high_class_variance": features["class_accuracy_variance"] > HIGH_CLASS_VARIANCE,
        "high_sharpness": features["sharpness"] > HIGH_SHARPNESS,
    }
