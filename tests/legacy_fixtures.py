"""Real-shaped legacy reference files (reference-system.md §7), written the way the reference wrote them.

Field names are the real ones (`loss_history_5`, `accuracy_history_5`); files are written by Python's `json`
with its defaults, so they hold the bare literals `Infinity` (every first decision's `loss_delta`, because the
previous loss starts at +inf) and `NaN`; V2 `telemetry_history` keeps only the last epochs and is matched on
each entry's own `epoch`; per-class accuracies and percentiles are keyed by strings; weight norms by parameter
names with dots; a pack is `{metadata: {num_episodes, ...}, episodes: [...]}`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# The reference's stage numbers (tamiyo_models.world.lifecycle.Stage uses the same order).
DORMANT, GERMINATED, TRAINING, BLENDING, FOSSILIZED, CULLED = 0, 1, 2, 3, 6, 7


def decision(epoch, val_acc, val_loss, prev_loss, history_acc, history_loss, *, action="WAIT", blueprint=None,
             reward=0.0, stage=DORMANT, epochs_in_stage=0, plateau=0, best_acc=None):  # fmt: skip
    active = stage in (GERMINATED, TRAINING, BLENDING)
    return {
        "observation": {
            "epoch": epoch, "global_step": epoch * 390, "train_loss": val_loss + 0.1, "val_loss": val_loss,
            "loss_delta": prev_loss - val_loss, "train_accuracy": val_acc - 1, "val_accuracy": val_acc,
            "accuracy_delta": 1.0, "plateau_epochs": plateau, "best_val_accuracy": best_acc or val_acc,
            "best_val_loss": 0.0,  # never filled by the reference (a constant)
            "loss_history_5": history_loss[-5:], "accuracy_history_5": history_acc[-5:],
            "has_active_seed": int(active), "seed_stage": stage, "seed_epochs_in_stage": epochs_in_stage,
            "seed_alpha": 1.0 if stage == BLENDING else 0.0, "seed_improvement": 0.0, "available_slots": int(not active),
        },
        "action": {"action": action, "blueprint_id": blueprint, "target_seed_id": "seed-0" if active else None,
                   "confidence": 0.9, "reason": "plateau" if action != "WAIT" else "waiting"},
        "outcome": {"accuracy_after": val_acc, "accuracy_change": 1.0, "loss_after": val_loss, "loss_change": 0.0,
                    "seed_still_alive": None, "seed_stage_after": None, "reward": reward},
        "timestamp": "2025-11-26T10:00:00",
    }  # fmt: skip


def episode(episode_id: int, accuracies: list[float], v2: bool = False, *, story: str = "germinate-cull") -> dict:
    """One episode. `story` sets the seed's life: germinate-cull (germinated at the 2nd decision, culled at the
    last), germinate-fossilize (germinated, trained, blended, fossilized: needs >= 5 decisions), or none."""
    losses = [2.0 - a / 100 for a in accuracies]
    n = len(accuracies)
    actions = ["WAIT"] * n
    stages = [DORMANT] * n
    if story == "germinate-cull" and n >= 2:
        actions[1] = "GERMINATE"
        stages[2:] = [TRAINING] * (n - 2)
        actions[-1] = "CULL" if n >= 3 else actions[-1]
    elif story == "germinate-fossilize":
        assert n >= 5
        actions[1], actions[3], actions[4] = "GERMINATE", "ADVANCE", "ADVANCE"
        stages[2:] = [TRAINING, TRAINING, BLENDING] + [FOSSILIZED] * (n - 5)
    decisions = [
        decision(i + 1, a, losses[i], math.inf if i == 0 else losses[i - 1], accuracies[: i + 1], losses[: i + 1],
                 action=actions[i], blueprint="conv_enhance" if actions[i] == "GERMINATE" else None,
                 reward=10.0 * (a - (accuracies[i - 1] if i else 0)), stage=stages[i], plateau=i % 4,
                 best_acc=max(accuracies[: i + 1]))
        for i, a in enumerate(accuracies)
    ]  # fmt: skip
    fossilized = int(story == "germinate-fossilize")
    culled = int(story == "germinate-cull" and n >= 3)
    doc = {
        "episode_id": episode_id, "started_at": "2025-11-26T10:00:00", "ended_at": "2025-11-26T10:05:00",
        "max_epochs": n, "initial_lr": 0.01, "model_name": "HostCNN", "dataset_name": "cifar10",
        "decisions": decisions, "final_accuracy": accuracies[-1] + 0.5, "best_accuracy": max(accuracies) + 0.5,
        "total_seeds_created": int(story != "none"), "total_seeds_fossilized": fossilized,
        "total_seeds_culled": culled,
    }  # fmt: skip
    if v2:
        doc["telemetry_config"] = {"history_length": 2, "sharpness_samples": 10}
        # Only the last two epochs are kept: entries are matched on their own epoch, not on their index.
        doc["telemetry_history"] = [telemetry_entry(e) for e in (n - 1, n)]
    return doc


def telemetry_entry(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "gradient_stats": [
            {"layer_name": "conv1.weight", "norm": 0.5, "std": 0.01, "mean": 0.0, "vanishing_ratio": 0.0,
             "exploding_ratio": 0.0, "percentiles": {"1": 1e-4, "50": 1e-3, "99": 1e-2}},
            {"layer_name": "fc.weight", "norm": 0.2, "std": 0.02, "mean": 0.0, "vanishing_ratio": 0.0,
             "exploding_ratio": 0.0, "percentiles": {"1": 1e-4, "50": 1e-3, "99": 1e-2}},
        ],
        "per_class_accuracy": {str(c): 50.0 + c for c in range(10)},
        "sharpness": 0.3,
        "weight_norms": {"conv1.weight": 3.0, "fc.weight": 1.0},
        "train_val_gap": 0.1,
    }  # fmt: skip


def pack(episodes: list[dict], version: str = "v1", num_episodes: int | None = None) -> dict:
    count = len(episodes) if num_episodes is None else num_episodes
    return {"metadata": {"num_episodes": count, "version": version, "created_at": "2025-11-26T12:00:00"},
            "episodes": episodes}  # fmt: skip


def write(path: Path, document: dict, indent: int | None = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=indent))  # Python's json defaults: bare Infinity/NaN, like the reference
    return path
