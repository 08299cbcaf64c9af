"""State abstractions: which logged states count as "the same state" when looking for counterfactuals.

Two documented variants:
- `ReferenceBuckets`: the reference system's committed check, (epoch // 5, min(plateau_epochs, 5),
  has_active_seed). Coarse and hand-made; kept so our numbers can be set beside the reference's.
- `KMeansAbstraction`: k-means (default k = 100) over standardised observation features, the reference's
  design note. Fitted reproducibly (fixed seed, k-means++ init, several restarts) and saved as plain JSON
  (feature names, standardisation, centres), so later data is assigned to the same clusters by nearest
  centre without refitting and without unpickling anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..world.features import FEATURE_SETS

ABSTRACTIONS = ("kmeans", "reference-buckets")


@dataclass(frozen=True)
class AbstractionConfig:
    kind: str = "kmeans"
    k: int = 100
    feature_set: str = "base"  # the 27 base features: the decision-relevant state, without telemetry noise
    seed: int = 0
    restarts: int = 4

    def __post_init__(self):
        if self.kind not in ABSTRACTIONS:
            raise ValueError(f"unknown state abstraction {self.kind!r}; known: {', '.join(ABSTRACTIONS)}")
        if self.kind == "kmeans" and self.k < 2:
            raise ValueError("k-means needs k >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


class ReferenceBuckets:
    name = "reference-buckets"

    def assign(self, states: pl.DataFrame) -> np.ndarray:
        epoch = states["epoch"].to_numpy() // 5
        plateau = np.minimum(states["plateau_epochs"].to_numpy(), 5)
        seed = states["has_active_seed"].to_numpy()
        # Encode the triple as one integer label: epoch bucket * 12 + plateau * 2 + seed.
        return (epoch * 12 + plateau * 2 + seed).astype(np.int64)

    def describe(self) -> dict:
        return {"kind": self.name, "buckets": "(epoch // 5, min(plateau_epochs, 5), has_active_seed)"}


class KMeansAbstraction:
    name = "kmeans"

    def __init__(self, feature_names: list[str], mean: np.ndarray, scale: np.ndarray, centers: np.ndarray, meta: dict):
        self.feature_names, self.mean, self.scale, self.centers, self.meta = feature_names, mean, scale, centers, meta

    @classmethod
    def fit(cls, states: pl.DataFrame, config: AbstractionConfig) -> "KMeansAbstraction":
        from sklearn.cluster import KMeans

        names = list(FEATURE_SETS[config.feature_set])
        x = states.select(names).to_numpy().astype(np.float64)
        if len(x) < config.k:
            raise ValueError(f"k-means with k={config.k} needs at least {config.k} states, got {len(x)}")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0  # constant features (e.g. an unused slot) must not divide by zero
        model = KMeans(n_clusters=config.k, n_init=config.restarts, random_state=config.seed).fit((x - mean) / scale)
        meta = {**config.to_dict(), "states_fitted": len(x), "inertia": float(model.inertia_)}
        return cls(names, mean, scale, model.cluster_centers_, meta)

    def assign(self, states: pl.DataFrame) -> np.ndarray:
        x = (states.select(self.feature_names).to_numpy().astype(np.float64) - self.mean) / self.scale
        # Squared distances via the expansion |x|^2 - 2 x.c + |c|^2, without a [n, k, d] temporary.
        d = (x * x).sum(1)[:, None] - 2 * x @ self.centers.T + (self.centers * self.centers).sum(1)[None, :]
        return d.argmin(axis=1).astype(np.int64)

    def assign_one(self, features) -> int:
        """The cluster of one observation (a mapping of feature name to value), for live decisions."""
        x = (np.array([features[n] for n in self.feature_names], dtype=np.float64) - self.mean) / self.scale
        return int(((self.centers - x) ** 2).sum(axis=1).argmin())

    def describe(self) -> dict:
        return {"kind": self.name, **self.meta}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "kind": self.name,
            "feature_names": self.feature_names,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "centers": self.centers.tolist(),
            "meta": self.meta,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "KMeansAbstraction":
        try:
            payload = json.loads(Path(path).read_text())
            return cls(
                payload["feature_names"], np.array(payload["mean"]), np.array(payload["scale"]),
                np.array(payload["centers"]), payload["meta"],
            )  # fmt: skip
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a saved k-means state abstraction ({exc})") from None


def build_abstraction(config: AbstractionConfig, states: pl.DataFrame, saved: str | Path | None = None):
    """The abstraction to use: reference buckets, a saved k-means model (so clusters stay stable across
    nights), or a k-means fitted now (and saved, when a path is given)."""
    if config.kind == "reference-buckets":
        return ReferenceBuckets()
    if saved is not None and Path(saved).exists():
        model = KMeansAbstraction.load(saved)
        if model.meta.get("k") == config.k and model.meta.get("feature_set") == config.feature_set:
            return model
    model = KMeansAbstraction.fit(states, config)
    if saved is not None:
        model.save(saved)
    return model
