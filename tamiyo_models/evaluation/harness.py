"""Evaluate a saved policy: offline on its held-out episodes, live on fresh paired episodes, then the report.

The policy file carries what this needs: its feature names, the held-out test episodes of its split (`test_runs`)
and every episode seed of its training data (`data_seeds`), so live evaluation can refuse seeds it was
trained on. Live configurations are sampled from a generation spec with their own batch seed (the controller
of the sampled configurations is replaced in each pair).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..common.stats import TIE_TOLERANCE


@dataclass(frozen=True)
class EvaluationConfig:
    episodes: int = 20  # pairs
    spec: str = "nightly"  # generation spec (shipped name or file) the live configurations are drawn from
    batch_seed: int = 7_700_001  # draws configurations and seeds; pick one unused for training batches
    workers: int = 1
    resamples: int = 10_000
    confidence: float = 0.95
    tie_tolerance: float = TIE_TOLERANCE  # pp: identical trajectories tie, and so do averages truly 0 (stats.py)
    null_orders: int = 1  # the heuristic rerun on this many fresh data orders: the noise floor
    replicate: int = 0  # every pair rerun on K fresh data orders; a win counts only if it holds there too
    references: tuple[str, ...] = ()  # reference controllers evaluated on the same pairs (never, fixed:conv_heavy@6, ...)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        return d


@dataclass
class PolicyEvaluation:
    name: str  # a label: the MLflow model reference or the file name
    policy_path: Path
    metadata: dict  # the policy file's metadata (phase, feature set, variant, dataset digest, ...)
    offline: object  # OfflineMetrics, or None without a warehouse / held-out episodes
    live: object  # LiveEvaluation
    paths: dict[str, Path]  # its report files


def evaluate_policy(policy_path, warehouse_path, out_dir, config: EvaluationConfig = EvaluationConfig(), *,
                    configs=None, training=None, title: str | None = None, log=print):  # fmt: skip
    """One policy: offline and live metrics and its report in `out_dir/report`; returns (offline, live, paths)."""
    name = Path(policy_path).name
    evaluation = evaluate_policies({name: policy_path}, warehouse_path, out_dir, config, configs=configs,
                                   training={name: training} if training else None,
                                   titles={name: title} if title else None, log=log, compare=False)[0]  # fmt: skip
    return evaluation.offline, evaluation.live, evaluation.paths


def evaluate_policies(policies: dict, warehouse_path, out_dir, config: EvaluationConfig = EvaluationConfig(), *,
                      configs=None, training: dict | None = None, titles: dict | None = None, log=print,
                      compare: bool = True) -> list[PolicyEvaluation]:  # fmt: skip
    """Several policies on the same live configurations, each paired with one shared heuristic episode.

    `policies`: label -> policy file. Each gets its report (out_dir/report with one policy, else
    out_dir/<label>/report); with `compare`, out_dir/comparison.{md,html,json} sets them side by side, so
    Phase 1 and the Phase 2 variants are read against the same heuristic episodes.
    """
    import polars as pl

    from ..controllers import reference_controller
    from ..episodes.generation import GenerationSpec
    from ..policies.data import load_decisions
    from ..policies.imitation import TrainingSummary
    from ..policies.offline_metrics import evaluate_offline, load_legal_actions
    from ..policies.relabel import relabel_with_heuristic
    from ..policies.saved import load_policy_file
    from .live import evaluate_live_many
    from .report import write_comparison, write_report

    out = Path(out_dir)
    loaded, offline = {}, {}
    for name, path in policies.items():
        model, payload = load_policy_file(path)
        loaded[name] = payload
        meta = payload["metadata"]
        offline[name] = None
        # Offline metrics on the episodes held out from training and from model selection (older files: val_runs).
        held_out = list(meta.get("test_runs") or meta.get("val_runs") or [])
        if warehouse_path and held_out:
            frame = load_decisions(warehouse_path, meta["feature_set"]).filter(pl.col("run_id").is_in(held_out))
            if meta.get("labels") == "heuristic":  # it learned the heuristic's decision in every state: grade on that
                frame = relabel_with_heuristic(frame)
            frame = frame.join(load_legal_actions(warehouse_path, held_out), on=["run_id", "step"], how="left")
            offline[name] = evaluate_offline(model, tuple(payload["feature_names"]), frame)
            log(f"{name}: offline balanced accuracy {offline[name].balanced_accuracy:.4f} on {offline[name].episodes} held-out episodes")
    from_spec = configs is None
    if from_spec:
        configs = GenerationSpec.load(config.spec).sample(config.episodes, seed=config.batch_seed)
    references = {name: reference_controller(name) for name in config.references if name != "heuristic"}
    live = evaluate_live_many(
        policies, configs, out / "episodes", training_seeds={n: p["metadata"].get("data_seeds") or [] for n, p in loaded.items()},
        workers=config.workers, resamples=config.resamples, confidence=config.confidence, tie_tolerance=config.tie_tolerance,
        null_orders=config.null_orders, replicate=config.replicate, references=references,
    )  # fmt: skip
    for name in references:
        log(f"reference {name}: {_live_line(live[name])}")
    results = []
    for name, path in policies.items():
        meta, result = loaded[name]["metadata"], live[name]
        log(f"{name}: {_live_line(result)}")
        report_dir = out / "report" if len(policies) == 1 else out / _slug(name) / "report"
        trained = (training or {}).get(name)
        if trained is None and meta.get("training"):  # the learning curves the policy file carries
            trained = TrainingSummary.from_dict(meta["training"])
        paths = write_report(
            report_dir, (titles or {}).get(name) or f"Evaluation of {name}", training=trained,
            offline=offline[name], live=result,
            extra={"policy": str(Path(path).resolve()), "phase": meta.get("phase"), "variant": meta.get("variant", "-"),
                   "feature set": meta.get("feature_set"), "dataset sha256": meta.get("dataset_sha256"), "live pairs": len(configs),
                   "live configurations": f"spec {config.spec}, batch seed {config.batch_seed}" if from_spec else "given",
                   **({"warning: degenerate weighting": meta["weighting_note"]} if meta.get("weighting_note") else {})},
        )  # fmt: skip
        results.append(PolicyEvaluation(name, Path(path), meta, offline[name], result, paths))
    if compare:
        comparison = write_comparison(out, results, f"{len(configs)} paired configurations"
                                      + (f" (spec {config.spec}, batch seed {config.batch_seed})" if from_spec else ""),
                                      references={name: live[name] for name in references})  # fmt: skip
        log(f"comparison: {comparison['markdown']}")
        for evaluation in results:
            evaluation.paths.update({f"comparison_{k}": v for k, v in comparison.items()})
    return results


def _live_line(result) -> str:
    """One line per controller: the paired difference on the test split, and what luck alone does."""
    line = (f"test {result.mean_policy:.2f} vs heuristic {result.mean_heuristic:.2f}, paired difference "
            f"{result.mean_difference:+.2f} [{result.ci_low:+.2f}, {result.ci_high:+.2f}] pp, W/T/L "
            f"{result.wins}/{result.ties}/{result.losses}; noise floor {result.noise_floor:.2f} pp RMS")  # fmt: skip
    if result.fresh_orders:
        line += f"; on {result.fresh_orders} fresh data orders {result.fresh}" + (" (counts)" if result.counts else "")
    return line


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)
