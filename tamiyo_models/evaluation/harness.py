"""Evaluate a saved policy: offline on its held-out episodes, live on fresh paired episodes, then the report.

The policy file carries what this needs: its feature names, the held-out test episodes of its split (`test_runs`)
and every episode seed of its training data (`data_seeds`), so live evaluation can refuse seeds it was
trained on. Live configurations are sampled from a generation spec with their own batch seed (the controller
of the sampled configurations is replaced in each pair).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvaluationConfig:
    episodes: int = 20  # pairs
    spec: str = "nightly"  # generation spec (shipped name or file) the live configurations are drawn from
    batch_seed: int = 7_700_001  # draws configurations and seeds; pick one unused for training batches
    workers: int = 1
    resamples: int = 10_000
    confidence: float = 0.95
    tie_tolerance: float = 0.0  # pp; episodes are deterministic, so identical trajectories tie exactly

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_policy(policy_path, warehouse_path, out_dir, config: EvaluationConfig = EvaluationConfig(), *,
                    configs=None, training=None, title: str | None = None, log=print):  # fmt: skip
    import polars as pl

    from ..generation import GenerationSpec
    from ..policies.data import load_decisions
    from ..policies.saved import load_policy_file
    from .live import evaluate_live
    from .offline import evaluate_offline, load_legal_actions
    from .report import write_report

    out = Path(out_dir)
    model, payload = load_policy_file(policy_path)
    meta = payload["metadata"]
    offline = None
    # Offline metrics on the episodes held out from training and from model selection (older files: val_runs).
    val_runs = list(meta.get("test_runs") or meta.get("val_runs") or [])
    if warehouse_path and val_runs:
        frame = load_decisions(warehouse_path, meta["feature_set"]).filter(pl.col("run_id").is_in(val_runs))
        frame = frame.join(load_legal_actions(warehouse_path, val_runs), on=["run_id", "step"], how="left")
        offline = evaluate_offline(model, tuple(payload["feature_names"]), frame)
        log(f"offline: balanced accuracy {offline.balanced_accuracy:.4f} on {offline.episodes} held-out episodes")
    from_spec = configs is None
    if from_spec:
        configs = GenerationSpec.load(config.spec).sample(config.episodes, seed=config.batch_seed)
    live = evaluate_live(
        policy_path, configs, out / "episodes", training_seeds=meta.get("data_seeds") or [], workers=config.workers,
        resamples=config.resamples, confidence=config.confidence, tie_tolerance=config.tie_tolerance,
    )  # fmt: skip
    log(f"live: policy {live.mean_policy:.2f} vs heuristic {live.mean_heuristic:.2f} pp, paired difference "
        f"{live.mean_difference:+.2f} [{live.ci_low:+.2f}, {live.ci_high:+.2f}], W/T/L {live.wins}/{live.ties}/{live.losses}")  # fmt: skip
    paths = write_report(
        out / "report", title or f"Evaluation of {Path(policy_path).name}", training=training, offline=offline, live=live,
        extra={"policy": str(Path(policy_path).resolve()), "phase": meta.get("phase"), "feature set": meta.get("feature_set"),
               "dataset sha256": meta.get("dataset_sha256"), "live pairs": len(configs),
               "live configurations": f"spec {config.spec}, batch seed {config.batch_seed}" if from_spec else "given"},
    )  # fmt: skip
    return offline, live, paths
