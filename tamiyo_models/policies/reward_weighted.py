"""Phase 2: reward-weighted imitation, the roadmap's three options, each one function of the training frame.

Same loop as Phase 1 (`train_imitation`), different data weighting. The validation episodes get the same
weighting and the epoch kept is the one with the lowest weighted validation loss: the variant's own objective,
measured on episodes it did not train on. (Balanced accuracy against logged actions of mixed controllers,
random included, rewarded staying near the Phase 1 parent and kept epoch 1.) Whether a variant *acts* better
is for the live evaluation to say.

- **A, episode weighting**: every decision of an episode weighs exp(z / temperature), z = the episode's final
  accuracy standardised within its dataset configuration. Within, because a 300-image noisy task ends 20 pp
  below full digits whatever the controller does: a raw-accuracy weight would favour easy tasks, not good
  decisions.
- **B, decision weighting**: weight exp(A / temperature) with A the decision's reward (`reward`) or its
  advantage (`advantage`: reward minus the mean reward at the same epoch of the same dataset configuration;
  early epochs gain many points whatever is decided, and the raw reward would mostly weight by epoch), as in
  advantage-weighted regression. Weights are clipped to [min_weight, max_weight].
- **C, filtering**: keep only episodes whose final accuracy reaches `threshold` (pp), or, when no threshold is
  given, the top `keep_fraction` of episodes within each dataset configuration (same reason as A).

All weights are normalised to mean 1, so the learning rate means the same in every variant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

VARIANTS = ("A", "B", "C")
GROUP = "dataset_config"


@dataclass(frozen=True)
class RewardWeightingConfig:
    variant: str = "A"
    temperature: float = 1.0  # A: on z-scores; B: on rewards/advantages (pp x reward scale)
    decision_signal: str = "advantage"  # B: "reward" or "advantage"
    threshold: float | None = None  # C: absolute final accuracy (pp)
    keep_fraction: float = 0.5  # C: when no threshold, the best share of episodes per dataset configuration
    min_weight: float = 0.05
    max_weight: float = 20.0
    # The epoch kept: "loss" = the weighted loss on validation episodes weighted the same way (the variant's
    # own objective, out of sample); "balanced_accuracy" = agreement with the logged actions, which on mixed
    # controller data (random included) keeps the epoch nearest the Phase 1 parent (docs/policies.md).
    select_on: str = "loss"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Phase 2 variant {self.variant!r}; known: {', '.join(VARIANTS)}")
        if self.decision_signal not in ("reward", "advantage"):
            raise ValueError(f"decision_signal must be reward or advantage, got {self.decision_signal!r}")
        if self.temperature <= 0 or not 0 < self.keep_fraction <= 1:
            raise ValueError("temperature must be > 0 and keep_fraction in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


def weighted_training_set(train: pl.DataFrame, config: RewardWeightingConfig) -> tuple[pl.DataFrame, np.ndarray]:
    """(the decisions to train on, one weight per decision, mean 1)."""
    if config.variant == "A":
        episodes = _episode_z(train)
        frame = train.join(episodes.select("run_id", "z"), on="run_id", how="left")
        weights = np.exp(frame["z"].fill_null(0.0).to_numpy() / config.temperature)
        frame = frame.drop("z")
    elif config.variant == "B":
        frame = train
        signal = frame["reward"].fill_null(0.0).to_numpy()
        if config.decision_signal == "advantage":
            baseline = frame.with_columns(pl.col("reward").fill_null(0.0).mean().over(GROUP, "step").alias("_b"))["_b"]
            signal = signal - baseline.to_numpy()
        weights = np.exp(np.clip(signal / config.temperature, -50, 50))
    else:
        episodes = train.group_by("run_id").agg(pl.col("final_val_accuracy").first(), pl.col(GROUP).first())
        if config.threshold is not None:
            keep = episodes.filter(pl.col("final_val_accuracy") >= config.threshold)["run_id"]
        else:
            ranked = episodes.with_columns(
                pl.col("final_val_accuracy").rank("ordinal", descending=True).over(GROUP).alias("_rank"),
                pl.len().over(GROUP).alias("_n"),
            )
            keep = ranked.filter(pl.col("_rank") <= (pl.col("_n") * config.keep_fraction).ceil())["run_id"]
        frame = train.filter(pl.col("run_id").is_in(keep.to_list()))
        if frame.is_empty():
            raise ValueError(f"Phase 2 C kept no episode (threshold {config.threshold})")
        weights = np.ones(len(frame))
    weights = np.clip(weights, config.min_weight, config.max_weight) if config.variant != "C" else weights
    return frame, (weights / weights.mean()).astype(np.float32)


def degenerate_weighting(before: pl.DataFrame, after: pl.DataFrame, weights: np.ndarray, config: RewardWeightingConfig) -> str | None:
    """Why a variant's weighting does nothing (the decisions and weights plain imitation would use), or None.

    A and B standardise within a dataset configuration; with one episode per configuration (or a few with
    equal outcomes) every weight is 1, and C keeps every episode when each configuration holds too few to
    drop any. The variant then trains exactly like its siblings and its parent's objective: say so rather
    than present it as a different policy."""
    if len(weights) == 0:
        return None
    uniform = float(np.std(weights)) <= 1e-6 * max(float(np.mean(weights)), 1e-12)
    episodes = before.group_by(GROUP).agg(pl.col("run_id").n_unique().alias("n"))["n"]
    sizes = f"{len(episodes)} dataset configurations of {episodes.min()}-{episodes.max()} training episodes"
    if config.variant == "C":
        if after["run_id"].n_unique() == before["run_id"].n_unique():
            return f"variant C kept every episode ({sizes}): nothing was filtered out"
        return None
    if not uniform:
        return None
    if config.variant == "A":
        return f"variant A weights are all equal ({sizes}): no configuration has episodes of different outcomes to weigh"
    return f"variant B weights are all equal ({sizes}): every decision's {config.decision_signal} is the same"


def _episode_z(train: pl.DataFrame) -> pl.DataFrame:
    episodes = train.group_by("run_id").agg(pl.col("final_val_accuracy").first(), pl.col(GROUP).first())
    return episodes.with_columns(
        (
            (pl.col("final_val_accuracy") - pl.col("final_val_accuracy").mean().over(GROUP))
            / pl.col("final_val_accuracy").std().over(GROUP).fill_null(1.0).clip(lower_bound=1e-6)
        )
        .fill_nan(0.0)
        .fill_null(0.0)
        .alias("z")
    )


def train_reward_weighted(train: pl.DataFrame, val: pl.DataFrame, weighting: RewardWeightingConfig, config=None, *, init_from=None, on_epoch=None):
    """Phase 2: `train_imitation` on the weighted (or filtered) training decisions."""
    from .imitation import ImitationConfig, train_imitation

    frame, weights = weighted_training_set(train, weighting)
    return train_imitation(frame, val, config or ImitationConfig(), sample_weight=weights, init_from=init_from, on_epoch=on_epoch)
