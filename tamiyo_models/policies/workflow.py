"""One policy training run end to end, as the command line and the Dagster assets call it:

warehouse -> decisions (SQL into polars) -> split by episode -> Phase 1 or Phase 2 training -> policy file ->
offline metrics on the held-out episodes -> (optionally) MLflow child run, dataset input, model registered as
`candidate` for its phase.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..agents.phases import phase as registered_phase
from .imitation import ImitationConfig, TrainingSummary
from .reward_weighted import RewardWeightingConfig

PHASES = ("phase1", "phase2")
# The feature set `tamiyo train` and the Dagster policy assets give Phases 1 and 2 when none is named:
# base+lifecycle (39), since the heuristic judges seeds on seed_total_improvement, outside base (27), and the
# telemetry columns of "full" cost ~1 pp on held-out episodes (docs/policies.md). ImitationConfig's own default
# ("base") is the library's and stays as it is; this names the one the entry points have used since 2026-11-26.
IMITATION_FEATURE_SET = "base+lifecycle"


@dataclass(frozen=True)
class PolicyRunConfig:
    phase: str = "phase1"
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    weighting: RewardWeightingConfig = field(default_factory=RewardWeightingConfig)  # phase2 only
    controllers: tuple[str, ...] = ("heuristic",)  # whose decisions to imitate (runs.controller_kind)
    # "logged": the actions taken; "heuristic": every state (any controller, branches too) labelled with the
    # heuristic's decision there (relabel.py), which shows the learner the heuristic's rare CULLs and ADVANCEs.
    labels: str = "logged"
    test_fraction: float = 0.2  # held-out episodes the reported metrics come from (never used for selection)
    val_fraction: float = 0.2  # of the rest: episodes that select the best epoch
    split_seed: int = 0
    group_by: str | None = None  # e.g. "dataset_config": hold out whole configurations
    parent_policy: str | None = None  # phase2: a policy file, or an MLflow model ref, to start from

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")
        if self.labels not in ("logged", "heuristic"):
            raise ValueError(f"labels must be 'logged' or 'heuristic', got {self.labels!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["imitation"] = self.imitation.to_dict()
        if self.phase == "phase1":
            d.pop("weighting")
        return d

    @property
    def run_name(self) -> str:
        name = f"{self.phase}-{self.imitation.feature_set}"
        return f"{name}-{self.weighting.variant}" if self.phase == "phase2" else name


@dataclass
class PolicyRun:
    config: PolicyRunConfig
    policy_path: Path
    result: object  # TrainResult
    offline: object  # OfflineMetrics on the held-out episodes
    train_runs: tuple[str, ...]
    val_runs: tuple[str, ...]
    test_runs: tuple[str, ...]
    dataset_digest: str
    training_seeds: list[int]
    mlflow_run_id: str | None = None
    model_version: str | None = None
    weighting_note: str | None = None  # phase 2: why its weighting does nothing, when it does nothing
    identical_to: str | None = None  # the policy it is parameter-for-parameter identical to (then not registered)


def train_policy(
    warehouse_path: str | Path,
    config: PolicyRunConfig,
    out_dir: str | Path,
    *,
    tracker=None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    log=print,
    compare_with: dict | None = None,
) -> PolicyRun:
    """`compare_with`: {name: model} of policies trained before this one (a night's other variants); a result
    identical to one of them, or to the parent, is not registered as a new model version."""
    import polars as pl

    from .data import frame_digest, load_decisions, raw_runs, split_episodes
    from .imitation import train_imitation
    from .offline_metrics import evaluate_offline, load_legal_actions
    from .reward_weighted import weighted_training_set
    from .saved import load_policy_file, save_policy

    log(f"policy run {config.run_name}: {config.to_dict()}")
    if config.labels == "heuristic":
        from .relabel import relabel_with_heuristic

        frame = relabel_with_heuristic(load_decisions(warehouse_path, config.imitation.feature_set))
    else:
        frame = load_decisions(warehouse_path, config.imitation.feature_set, controllers=config.controllers)
    # Three ways, by episode: selecting the best epoch on the episodes we report on would flatter the number.
    outer = split_episodes(frame, config.test_fraction, config.split_seed, config.group_by)
    rest, test = outer.frames(frame)
    split = split_episodes(rest, config.val_fraction, config.split_seed + 1, config.group_by)
    train, val = split.frames(rest)
    test_runs = outer.val_runs
    weights = None
    parent_model, parent_ref = None, config.parent_policy
    val_weights = None
    imitation = config.imitation
    weighting_note = None
    if config.phase == "phase2":
        from .reward_weighted import degenerate_weighting

        unweighted = train
        train, weights = weighted_training_set(train, config.weighting)
        val, val_weights = weighted_training_set(val, config.weighting)
        weighting_note = degenerate_weighting(unweighted, train, weights, config.weighting)
        if weighting_note:
            log(f"WARNING phase 2 {config.weighting.variant}: degenerate weighting: {weighting_note}")
        imitation = dataclasses.replace(imitation, select_on=config.weighting.select_on)
        if parent_ref:
            parent_file = Path(parent_ref)
            if not parent_file.exists():  # an MLflow model reference: fetch its policy file
                if tracker is None:
                    raise ValueError(f"parent policy {parent_ref!r} is not a file and no MLflow tracker was given")
                version = tracker.resolve(parent_ref)
                parent_ref = f"{version.name}/{version.version}"
                parent_file = tracker.download_policy(parent_ref, Path(out_dir) / "parent")
            parent_model, _ = load_policy_file(parent_file)
    log(f"{frame['run_id'].n_unique()} episodes, {len(frame)} decisions; train {len(split.train_runs)} episodes "
        f"({len(train)} decisions{'' if weights is None else ', weighted'}), validation {len(split.val_runs)} episodes, test {len(test_runs)} episodes")  # fmt: skip

    result = train_imitation(
        train, val, imitation, sample_weight=weights, val_sample_weight=val_weights, init_from=parent_model,
        on_epoch=lambda m: log(f"epoch {m.epoch:3d} train loss {m.train_loss:.4f} val loss {m.val_loss:.4f} "
                               f"balanced acc {m.val_balanced_accuracy:.4f} ({m.updates_per_second:.0f} updates/s)"),
    )  # fmt: skip
    identical_to = _identical(result.model, {**({f"its parent {parent_ref}": parent_model} if parent_model is not None else {}),
                                             **(compare_with or {})})  # fmt: skip
    if identical_to:
        log(f"WARNING {config.run_name} is identical, parameter for parameter, to {identical_to}: not registered as a new version")
    digest = frame_digest(train, config.imitation.feature_set)
    training_seeds = sorted({int(s) for s in frame.filter(pl.col("run_id").is_in(list(split.train_runs)))["seed"].drop_nulls()})
    all_seeds = sorted({int(s) for s in frame["seed"].drop_nulls()})
    policy_path = save_policy(
        result.model,
        result.feature_names,
        Path(out_dir) / f"{config.run_name}.pt",
        metadata={
            "phase": config.phase,
            "variant": config.weighting.variant if config.phase == "phase2" else "",
            "labels": config.labels,
            "feature_set": config.imitation.feature_set,
            "dataset_sha256": digest,
            "warehouse": str(Path(warehouse_path).resolve()),
            "best_epoch": result.best_epoch,
            "val_balanced_accuracy": result.best.val_balanced_accuracy,
            "val_runs": list(split.val_runs),
            "test_runs": list(test_runs),
            "data_seeds": all_seeds,  # every episode seed of the data set: live evaluation must avoid them
            "parent_policy": parent_ref or "",
            "weighting_note": weighting_note or "",
            "identical_to": identical_to or "",
            "training": TrainingSummary.from_result(result).to_dict(),  # learning curves for any later report
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    test_with_legal = test.join(load_legal_actions(warehouse_path, test_runs), on=["run_id", "step"], how="left")
    offline = evaluate_offline(result.model, result.feature_names, test_with_legal)
    log(f"best epoch {result.best_epoch} (validation balanced accuracy {result.best.val_balanced_accuracy:.4f}); "
        f"held-out test: balanced accuracy {offline.balanced_accuracy:.4f}, per class "
        f"{ {k: round(v, 4) for k, v in offline.per_class_accuracy.items()} }, agreement {offline.agreement_fine:.4f}")  # fmt: skip
    run = PolicyRun(config, policy_path, result, offline, split.train_runs, split.val_runs, test_runs, digest, training_seeds,
                    weighting_note=weighting_note, identical_to=identical_to)  # fmt: skip

    if tracker is not None:
        from ..agents import tracking

        parent_run_id = parent_run_id or tracker.parent_run_id(f"local-{time.strftime('%Y%m%d-%H%M%S')}")
        run_tags = {"tamiyo.phase": config.phase, tracking.PARENT_POLICY: parent_ref or "", **(tags or {})}
        if not run_tags[tracking.PARENT_POLICY]:
            run_tags.pop(tracking.PARENT_POLICY)
        runs = raw_runs(warehouse_path, list(split.train_runs))
        raw = [{**row, "config": _json(row.pop("config_json"))} for row in runs.to_dicts()]
        with tracker.child_run(parent_run_id, config.run_name, run_tags) as run_id:
            tracker.log_training(
                run_id, result, config.to_dict(), dataset_digest=digest, dataset_source=str(Path(warehouse_path).resolve()),
                dataset_name=f"decisions-{config.imitation.feature_set}", raw_runs=raw, dataset_rows=len(train),
            )  # fmt: skip
            import mlflow

            mlflow.log_metrics(offline.summary())
            if weights is not None:
                mlflow.log_metric("weight_cv", float(weights.std() / max(weights.mean(), 1e-12)))
            if weighting_note:
                tracker.client.set_tag(run_id, "tamiyo.weighting_degenerate", weighting_note[:5000])
            run.mlflow_run_id = run_id
            variant = config.weighting.variant if config.phase == "phase2" else ""
            if identical_to:
                tracker.client.set_tag(run_id, "tamiyo.identical_to", identical_to)
                tracker.withdraw_candidate(config.phase, variant)
            else:
                run.model_version = tracker.log_policy(
                    run_id, policy_path, result.model, train.select(result.feature_names).head(1).to_numpy(), config.phase,
                    variant=variant,
                )  # fmt: skip
        if run.model_version:
            log(f"MLflow run {run.mlflow_run_id}, registered {registered_phase(config.phase).registered_name} v{run.model_version} as candidate")
        else:
            log(f"MLflow run {run.mlflow_run_id}, not registered (identical to {identical_to})")
    return run


def _identical(model, others: dict) -> str | None:
    """The name of the first model in `others` whose every parameter and buffer equals `model`'s."""
    import torch

    state = model.state_dict()
    for name, other in others.items():
        theirs = other.state_dict()
        if theirs.keys() == state.keys() and all(torch.equal(state[k], theirs[k]) for k in state):
            return name
    return None


def _json(text):
    import json

    return json.loads(text) if isinstance(text, str) else text
