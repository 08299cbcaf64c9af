"""Policy tracking in MLflow: runs, datasets, models, aliases and lineage (no dagster here).

Layout: one experiment; one **parent run** per orchestration run (a Dagster run, or a command-line call),
found again by its tag so that several assets of one Dagster run share it; one **child run** per policy
trained. A child run logs its parameters, per-epoch metrics, the training dataset as an MLflow dataset input
(digest of the exact rows, source = the warehouse file or its Parquet export), the raw runs behind the rows
with their generation configuration (artifact `lineage/raw_runs.json`), tags (Dagster run id, asset key,
code version, parent policy), the self-contained policy file (`policy/model.pt`, what `file:` serving
loads), and the MLflow model (input example, explicit pip requirements: inferring them costs ~7 s a call).

The model is registered under one name per phase with the alias `candidate`; `champion` moves only through
`promote_if_better`, from a live paired evaluation.

Defaults: a sqlite backend and a local artifact folder under `var/mlflow` (MLflow 3 deprecates the file
store); any tracking URI by configuration.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .phases import CANDIDATE, CHAMPION, all_phases, phase_of_model
from .phases import phase as registered_phase

TAG_PREFIX = "tamiyo."
ROLE, DAGSTER_RUN, ASSET_KEY, PARENT_POLICY = "tamiyo.role", "tamiyo.dagster_run_id", "tamiyo.asset_key", "tamiyo.parent_policy"
POLICY_ARTIFACT = "policy/model.pt"
RAW_RUNS_ARTIFACT = "lineage/raw_runs.json"


@dataclass(frozen=True)
class TrackingConfig:
    root: str = "var/mlflow"  # sqlite file and artifact folder, when no tracking URI is given
    tracking_uri: str | None = None
    experiment: str = "tamiyo-policies"

    @property
    def uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{Path(self.root).resolve() / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        # Only for our default backend; a remote server decides where artifacts go.
        return None if self.tracking_uri else (Path(self.root).resolve() / "artifacts").as_uri()


class Tracker:
    def __init__(self, config: TrackingConfig = TrackingConfig()):
        import mlflow
        from mlflow import MlflowClient

        self.config = config
        if not config.tracking_uri:
            Path(config.root).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(config.uri)
        mlflow.set_registry_uri(config.uri)
        self.client = MlflowClient(config.uri, config.uri)
        experiment = self.client.get_experiment_by_name(config.experiment)
        self.experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(config.experiment, artifact_location=config.artifact_location)
        )

    # ----- runs ---------------------------------------------------------------------------------------
    def parent_run_id(self, orchestration_id: str, name: str | None = None) -> str:
        """The parent run of one orchestration run (created on first use, found by tag afterwards)."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{DAGSTER_RUN}` = '{orchestration_id}' and tags.`{ROLE}` = 'parent'", max_results=1
        )
        if found:
            return found[0].info.run_id
        run = self.client.create_run(
            self.experiment_id, run_name=name or f"run {orchestration_id[:8]}", tags={ROLE: "parent", DAGSTER_RUN: orchestration_id}
        )
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    @contextmanager
    def child_run(self, parent_run_id: str, name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
        """A child run made active for the fluent API (log_model needs an active run)."""
        import mlflow

        from ..common.version import code_version

        version = code_version()
        parent_tags = self.client.get_run(parent_run_id).data.tags
        all_tags = {
            "mlflow.parentRunId": parent_run_id,
            ROLE: "policy",
            DAGSTER_RUN: parent_tags.get(DAGSTER_RUN, ""),
            "tamiyo.code_package": version["package"],
            "tamiyo.code_source_sha256": version["source_sha256"],
            "tamiyo.git_commit": str(version["git_commit"]),
            "tamiyo.git_dirty": str(version["git_dirty"]),
            **(tags or {}),
        }
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        with mlflow.start_run(run_id=run.info.run_id):
            yield run.info.run_id

    # ----- what a training run logs --------------------------------------------------------------------
    def log_training(self, run_id: str, result, params: dict, *, dataset_digest: str, dataset_source: str,
                     dataset_name: str, raw_runs: list[dict], dataset_rows: int) -> None:  # fmt: skip
        """An imitation run (Phases 1 and 2): per-epoch curves, the best epoch, class weights."""
        curves = []
        for m in result.history:
            curves.append({
                "train_loss": m.train_loss, "val_loss": m.val_loss, "val_balanced_accuracy": m.val_balanced_accuracy,
                "val_blueprint_accuracy": m.val_blueprint_accuracy, "updates_per_second": m.updates_per_second,
                **{f"val_accuracy_{k.lower()}": v for k, v in m.val_per_class_accuracy.items()},
                **{f"val_mix_{k.lower()}": v for k, v in m.val_action_mix.items()},
            })  # fmt: skip
        best = result.best
        summary = {
            "best_epoch": result.best_epoch, "best_val_balanced_accuracy": best.val_balanced_accuracy,
            "n_train_decisions": result.n_train, "n_val_decisions": result.n_val,
            "train_seconds": result.train_seconds, "mean_updates_per_second": result.updates_per_second,
            **{f"class_weight_{k.lower()}": v for k, v in result.class_weights.items()},
        }  # fmt: skip
        self.log_run(run_id, params, curves, summary, dataset_digest=dataset_digest, dataset_source=dataset_source,
                     dataset_name=dataset_name, raw_runs=raw_runs, dataset_rows=dataset_rows,
                     steps=[m.epoch for m in result.history])  # fmt: skip
        self._log_json(run_id, "training/history.json", [m.__dict__ for m in result.history])
        self._log_json(run_id, "training/val_confusion.json", result.val_confusion.tolist())

    def log_run(self, run_id: str, params: dict, curves: list[dict], summary: dict, *, dataset_digest: str,
                dataset_source: str, dataset_name: str, raw_runs: list[dict], dataset_rows: int,
                steps: list[int] | None = None) -> None:  # fmt: skip
        """Any training run: its parameters, learning curves (one dict of metrics per step), summary metrics, the
        data set as an MLflow dataset input (name, SHA-256 digest, rows) and the raw runs behind it."""
        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import Metric, Param
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        flat = {k: str(v)[:6000] for k, v in _flatten(params).items()}
        metrics = []
        for step, values in zip(steps or range(len(curves)), curves):
            metrics += [Metric(k, float(v), now, int(step)) for k, v in values.items() if v == v]  # NaN left out
        metrics += [Metric(k, float(v), now, 0) for k, v in summary.items() if v == v]
        params_list = [Param(k, v) for k, v in flat.items()]
        for start in range(0, len(params_list), 100):  # log_batch takes at most 100 params / 1000 metrics
            self.client.log_batch(run_id, params=params_list[start : start + 100])
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        with warnings.catch_warnings():  # a local path matches two registered source kinds that are the same class
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(dataset_source)
        dataset = MetaDataset(source, name=dataset_name, digest=dataset_digest[:36])
        mlflow.log_input(dataset, context="training", tags={"rows": str(dataset_rows), "sha256": dataset_digest})
        self.client.set_tag(run_id, "tamiyo.dataset_sha256", dataset_digest)
        self._log_json(run_id, RAW_RUNS_ARTIFACT, raw_runs)

    def log_policy(self, run_id: str, policy_file: str | Path, model, input_example, phase: str, variant: str = "") -> str:
        """Log the policy file and the MLflow model, register it for the phase, alias it `candidate` (and, for
        a Phase 2 variant, `candidate-<variant>`, so the variants of one night can be evaluated side by side).
        Returns the registered version."""
        import mlflow
        import numpy as np
        import torch

        with tempfile.TemporaryDirectory() as tmp:  # stored under one fixed name, whatever the file was called
            fixed = Path(tmp) / Path(POLICY_ARTIFACT).name
            fixed.write_bytes(Path(policy_file).read_bytes())
            self.client.log_artifact(run_id, str(fixed), artifact_path=str(Path(POLICY_ARTIFACT).parent))
        name = registered_phase(phase).registered_name
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=np.asarray(input_example, dtype=np.float32),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        self.client.set_registered_model_alias(name, CANDIDATE, version)
        if variant:
            self.client.set_registered_model_alias(name, variant_alias(variant), version)
            self.client.set_model_version_tag(name, version, "tamiyo.variant", variant)
        self.client.set_model_version_tag(name, version, "tamiyo.training_run", run_id)
        return version

    def withdraw_candidate(self, phase: str, variant: str = "") -> None:
        """Remove the variant's `candidate-<variant>` alias (the plain `candidate` for Phase 1): tonight's
        training produced nothing new for it, and an older version must not be evaluated as tonight's."""
        name = registered_phase(phase).registered_name
        alias = variant_alias(variant) if variant else CANDIDATE
        try:
            self.client.delete_registered_model_alias(name, alias)
        except Exception:  # never registered, or no such alias: nothing to withdraw
            pass

    def _log_json(self, run_id: str, artifact: str, payload) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact).name
            path.write_text(json.dumps(payload, indent=1, default=_jsonable))
            self.client.log_artifact(run_id, str(path), artifact_path=str(Path(artifact).parent))

    # ----- champion --------------------------------------------------------------------------------------
    def record_evaluation(self, phase: str, version: str, summary: dict[str, float]) -> None:
        name = registered_phase(phase).registered_name
        for key, value in summary.items():
            self.client.set_model_version_tag(name, version, f"tamiyo.eval.{key}", str(value))

    def promote_if_better(self, phase: str, version: str, summary: dict[str, float], tolerance_pp: float = 0.5) -> tuple[bool, str]:
        """Move `champion` to this version only when its live paired evaluation says it is better.

        The evaluation is on the test split (no controller saw it). Without a champion: the candidate must be
        no worse than the heuristic beyond `tolerance_pp` (the lower end of the paired interval policy -
        heuristic above -tolerance). With one: the candidate's lower interval end must exceed the champion's
        mean paired difference (both measured against the heuristic), so noise alone does not move it. When the
        evaluation replicated its pairs on fresh data orders, the rule must hold there too: the lower of the
        two interval ends is the one judged (docs/arena.md).
        """
        name = registered_phase(phase).registered_name
        self.record_evaluation(phase, version, summary)
        low = float(summary["live_ci_low"])
        fresh_low = float(summary.get("live_fresh_ci_low", float("nan")))
        replicated = fresh_low == fresh_low
        if replicated:
            low = min(low, fresh_low)
        where = "paired interval low" + (" (original and fresh data orders)" if replicated else "")
        try:
            champion = self.client.get_model_version_by_alias(name, CHAMPION)
        except Exception:  # no alias yet (MlflowException: RESOURCE_DOES_NOT_EXIST)
            champion = None
        if champion is None:
            if low > -tolerance_pp:
                self.client.set_registered_model_alias(name, CHAMPION, version)
                return True, f"first champion: {where} {low:+.2f} pp > -{tolerance_pp} pp"
            return False, f"not promoted: {where} {low:+.2f} pp <= -{tolerance_pp} pp"
        if str(champion.version) == str(version):
            return False, "already champion"
        champion_mean = float(champion.tags.get("tamiyo.eval.live_mean_difference", "nan"))
        if champion_mean == champion_mean and low > champion_mean:
            self.client.set_registered_model_alias(name, CHAMPION, version)
            return True, f"promoted over v{champion.version}: {where} {low:+.2f} > champion mean {champion_mean:+.2f} pp"
        return False, f"champion v{champion.version} kept (its mean {champion_mean:+.2f} pp, candidate {where} {low:+.2f} pp)"

    def download_policy(self, model_ref: str, out_dir: str | Path) -> Path:
        version = self.resolve(model_ref)
        return Path(self.client.download_artifacts(version.run_id, POLICY_ARTIFACT, str(out_dir)))

    def fetch_policy(self, model_ref: str, root: str | Path):
        """(label `NAME/VERSION`, the model version, its policy file under root/NAME-vVERSION/)."""
        version = self.resolve(model_ref)
        label = f"{version.name}/{version.version}"
        return label, version, self.download_policy(label, Path(root) / label.replace("/", "-v"))

    def judge(self, version, summary: dict[str, float], promote: bool) -> tuple[bool, str]:
        """Record a live evaluation on the model version; with `promote`, apply its phase's champion rule."""
        phase = phase_of(version.name)
        if promote:
            return self.promote_if_better(phase, str(version.version), summary)
        self.record_evaluation(phase, str(version.version), summary)
        return False, "promotion disabled"

    # ----- lineage -----------------------------------------------------------------------------------------
    def resolve(self, model_ref: str):
        """`name@alias`, `name/version`, `models:/name/version`, or `name` (latest version)."""
        ref = model_ref.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return self.client.get_model_version_by_alias(name, alias)
        if "/" in ref:
            name, version = ref.rsplit("/", 1)
            return self.client.get_model_version(name, version)
        versions = self.client.search_model_versions(f"name = '{ref}'")
        if not versions:
            raise ValueError(f"no registered model {ref!r}")
        return max(versions, key=lambda v: int(v.version))

    def lineage(self, model_ref: str, max_depth: int = 10) -> list["LineageNode"]:
        chain, ref = [], model_ref
        while ref and len(chain) < max_depth:
            version = self.resolve(ref)
            run = self.client.get_run(version.run_id)
            datasets = [
                {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source,
                 "tags": {t.key: t.value for t in d.tags}}
                for d in run.inputs.dataset_inputs
            ]  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                raw = json.loads(Path(self.client.download_artifacts(run.info.run_id, RAW_RUNS_ARTIFACT, tmp)).read_text())
            parent = run.data.tags.get(PARENT_POLICY) or None
            chain.append(
                LineageNode(
                    model=f"{version.name}/{version.version}",
                    aliases=list(getattr(version, "aliases", []) or []),
                    training_run=run.info.run_id,
                    run_name=run.info.run_name,
                    tags={k: v for k, v in run.data.tags.items() if k.startswith(TAG_PREFIX)},
                    datasets=datasets,
                    raw_runs=raw,
                    parent_policy=parent,
                )
            )
            ref = parent
        return chain


@dataclass
class LineageNode:
    model: str
    aliases: list[str]
    training_run: str
    run_name: str
    tags: dict[str, str]
    datasets: list[dict]
    raw_runs: list[dict]
    parent_policy: str | None = None
    extra: dict = field(default_factory=dict)

    def lines(self, max_runs: int = 5) -> list[str]:
        out = [f"model {self.model}" + (f" (aliases: {', '.join(self.aliases)})" if self.aliases else "")]
        out.append(f"  <- training run {self.training_run} ({self.run_name}), dagster run {self.tags.get(DAGSTER_RUN, '-')}, "
                   f"asset {self.tags.get(ASSET_KEY, '-')}, code {self.tags.get('tamiyo.code_source_sha256', '-')} "
                   f"(git {self.tags.get('tamiyo.git_commit', '-')[:12]})")  # fmt: skip
        for d in self.datasets:
            out.append(f"  <- dataset {d['name']} digest {d['tags'].get('sha256', d['digest'])} rows {d['tags'].get('rows', '?')} source {d['source']}")
        out.append(f"  <- {len(self.raw_runs)} raw runs:")
        for r in self.raw_runs[:max_runs]:
            config = r.get("config") or {}
            dataset = config.get("dataset", {})
            out.append(
                f"       {r['run_id']} seed {r.get('seed')} {r.get('controller_kind')} on {dataset.get('name')} "
                f"(subsample {dataset.get('train_subsample')}, noise {dataset.get('label_noise')}), widths "
                f"{config.get('host', {}).get('widths')}, {config.get('max_epochs')} epochs, file {r.get('source_file')}"
            )
        if len(self.raw_runs) > max_runs:
            out.append(f"       ... and {len(self.raw_runs) - max_runs} more (artifact {RAW_RUNS_ARTIFACT})")
        out.append(f"  <- parent policy: {self.parent_policy or 'none (trained from scratch)'}")
        return out


def phase_of(model_name: str) -> str:
    """The phase whose registered model this is (its champion and evaluations live there)."""
    return phase_of_model(model_name).key


def variant_alias(variant: str) -> str:
    """The alias of a Phase 2 variant's newest candidate (`candidate-a`, ...)."""
    return f"{CANDIDATE}-{variant.lower()}"


def candidate_refs(tracker: "Tracker") -> list[str]:
    """Every candidate to evaluate, phase by phase (the registry's order): each variant's newest where the phase
    has variants aliased (Phase 2's A/B/C, Phase 3's algorithms, ...), else the phase's plain candidate, as
    MODEL@alias references; models never registered are skipped."""
    refs = []
    for phase in all_phases():
        try:
            aliases = dict(tracker.client.get_registered_model(phase.registered_name).aliases)
        except Exception:  # not registered yet (MlflowException: RESOURCE_DOES_NOT_EXIST)
            continue
        variants = sorted(a for a in aliases if a.startswith(f"{CANDIDATE}-"))
        chosen = variants if phase.variants and variants else ([CANDIDATE] if CANDIDATE in aliases else [])
        refs += [f"{phase.registered_name}@{alias}" for alias in chosen]
    return refs


def format_lineage(chain: list[LineageNode], max_runs: int = 5) -> str:
    return "\n".join(line for node in chain for line in node.lines(max_runs))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
