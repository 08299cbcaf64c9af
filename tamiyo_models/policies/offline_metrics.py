"""Offline metrics of a policy on held-out episodes: how well it reproduces the logged decisions.

Balanced and per-class accuracy on the coarse decision, agreement (share of decisions where the policy's
greedy legal fine action equals the logged one; and on the coarse label), and the action distribution of the
policy next to the logged one. The policy acts through its fine scores with illegal actions masked, exactly
as the controller does live, so "agreement" here is what a live run would choose on these states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..world.actions import COARSE_ACTIONS, FINE_ACTIONS, FINE_INDEX
from .data import arrays
from .metrics import balanced_accuracy, confusion_matrix, distribution, per_class_accuracy

COARSE_OF_FINE = np.array([COARSE_ACTIONS.index(a.split("_")[0]) for a in FINE_ACTIONS])


@dataclass
class OfflineMetrics:
    decisions: int
    episodes: int
    balanced_accuracy: float  # coarse head, unmasked (what model selection used)
    per_class_accuracy: dict[str, float]
    confusion: np.ndarray  # coarse, rows = logged, columns = predicted
    agreement_fine: float  # masked greedy fine action == logged fine action
    agreement_coarse: float
    policy_action_distribution: dict[str, float]  # fine, masked greedy
    logged_action_distribution: dict[str, float]

    def summary(self) -> dict[str, float]:
        return {
            "offline_balanced_accuracy": self.balanced_accuracy,
            "offline_agreement_fine": self.agreement_fine,
            "offline_agreement_coarse": self.agreement_coarse,
            **{f"offline_accuracy_{k.lower()}": v for k, v in self.per_class_accuracy.items()},
        }


def legal_mask(frame: pl.DataFrame) -> np.ndarray:
    mask = np.zeros((len(frame), len(FINE_ACTIONS)), dtype=bool)
    for row, legal in enumerate(frame["legal_actions"].to_list()):
        for name in legal or FINE_ACTIONS:
            mask[row, FINE_INDEX[name]] = True
    return mask


def evaluate_offline(model, feature_names: tuple[str, ...], frame: pl.DataFrame) -> OfflineMetrics:
    """`frame`: decisions as from `load_decisions`, plus a `legal_actions` column (list of fine names) when the
    legal set is known (`load_decisions_with_legal`); without it every action counts as legal."""
    import torch

    from ..agents.imitation_network import fine_log_scores
    from .imitation import predict_heads

    data = arrays(frame, feature_names)
    if hasattr(model, "heads"):  # the imitation network: its coarse head is what it was selected on
        coarse_logits, bp_logits = predict_heads(model, data["x"])
        fine = fine_log_scores(torch.as_tensor(coarse_logits), torch.as_tensor(bp_logits)).numpy()
    else:  # any other PolicyModule: a coarse action's score is the log-sum-exp of its fine actions' scores
        model.eval()
        with torch.no_grad():
            fine = torch.log_softmax(model.raw_logits(torch.as_tensor(data["x"])), dim=-1).numpy()
        coarse_logits = np.stack([np.logaddexp.reduce(fine[:, COARSE_OF_FINE == i], axis=1)
                                  for i in range(len(COARSE_ACTIONS))], axis=1)  # fmt: skip
    matrix = confusion_matrix(data["coarse"], coarse_logits.argmax(axis=1), len(COARSE_ACTIONS))
    if "legal_actions" in frame.columns:
        fine = np.where(legal_mask(frame), fine, -np.inf)
    chosen = fine.argmax(axis=1)
    logged = frame["action_index"].to_numpy()
    return OfflineMetrics(
        decisions=len(frame),
        episodes=frame["run_id"].n_unique(),
        balanced_accuracy=balanced_accuracy(matrix),
        per_class_accuracy=dict(zip(COARSE_ACTIONS, map(float, per_class_accuracy(matrix)))),
        confusion=matrix,
        agreement_fine=float((chosen == logged).mean()),
        agreement_coarse=float((COARSE_OF_FINE[chosen] == COARSE_OF_FINE[logged]).mean()),
        policy_action_distribution=distribution(chosen, FINE_ACTIONS),
        logged_action_distribution=distribution(logged, FINE_ACTIONS),
    )


def load_legal_actions(warehouse_path, run_ids) -> pl.DataFrame:
    """(run_id, step, legal_actions) of the given runs, to join onto a decision frame."""
    from ..warehouse import query
    from .data import _quote

    ids = ", ".join(_quote(r) for r in sorted(set(run_ids)))
    return query(warehouse_path, f"SELECT run_id, step, legal_actions FROM steps WHERE run_id IN ({ids})")
