"""Phase 3 end to end: transitions from the warehouse -> an offline learner (CQL, IQL or BCQ) -> checkpoint
selected by FQE on held-out episode families -> one policy file -> the off-policy report -> MLflow. With
`ensemble` = K > 1, K learners from consecutive seeds, each to its last update, make one policy that acts on
their mean scores.

Training data is every controller's logged transitions plus branch runs (a branch's steps are real
transitions), optionally restricted to some behaviours or arena regimes. Whole episode families (a parent with
its branches) are held out for selection and for the off-policy report, never split. The policy file carries
the episode seeds of its data, so a live evaluation refuses to grade it on configurations it learned from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..ope.fqe import FQEConfig
from .base import OfflineResult
from .bcq import BCQConfig
from .cql import CQLConfig
from .iql import IQLConfig

ALGORITHMS = ("cql", "iql", "bcq")


@dataclass(frozen=True)
class OfflineRunConfig:
    algorithm: str = "cql"
    feature_set: str = "base+lifecycle+task"
    behaviours: tuple[str, ...] = ()  # empty: every controller's transitions (and branches)
    regimes: tuple[str, ...] = ()  # empty: every regime (and runs outside regimes)
    # One action space per policy: runs of hosts with other slot counts are refused together unless one is
    # selected here, or mixing is asked for (every run in the widest space; transitions/dataset.py).
    seed_slots: int | None = None
    mix_action_spaces: bool = False
    held_out: float = 0.2  # share of episode families for checkpoint selection and the off-policy report
    split_seed: int = 0
    parent_policy: str | None = None  # Phase 1 policy (file or MLflow ref): IQL's initial actor; lineage parent
    cql: CQLConfig = field(default_factory=CQLConfig)
    iql: IQLConfig = field(default_factory=IQLConfig)
    bcq: BCQConfig = field(default_factory=BCQConfig)
    selection_fqe: FQEConfig = field(default_factory=lambda: FQEConfig(updates=1_500))
    report_fqe: FQEConfig = field(default_factory=FQEConfig)  # its budget follows the held-out episodes' length
    # More than 1: that many learners, seeds seed, seed + 1, ..., each trained to its last update (no checkpoint
    # selection), saved as one policy acting on their mean scores (agents.networks.Ensemble). Why: one network's
    # choice where the candidates' values differ by less than its seed noise is a draw of its seed, and FQE's
    # checkpoint estimates move by about as much (docs/lab/2026-12-06-a-two-hour-arena-v2-night.md).
    ensemble: int = 1

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown offline algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if not 0.0 <= self.held_out < 1.0:
            raise ValueError(f"held_out must be in [0, 1), got {self.held_out}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")

    @property
    def learner(self):
        return {"cql": self.cql, "iql": self.iql, "bcq": self.bcq}[self.algorithm]

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("cql", "iql", "bcq", "selection_fqe", "report_fqe"):
            d[key] = getattr(self, key).to_dict()
        return {**d, "behaviours": list(self.behaviours), "regimes": list(self.regimes)}


@dataclass
class OfflineRun:
    config: OfflineRunConfig
    policy_path: Path
    result: OfflineResult
    dataset_digest: str
    summary: dict  # the transition data set's
    train_families: int
    held_out_families: int
    ope: dict = field(default_factory=dict)  # the off-policy report on held-out families
    mlflow_run_id: str | None = None
    model_version: str | None = None


def _resolve_parent(parent: str | None, tracker, out_dir: Path):
    """(the parent PolicyModule or None, a reference to record)."""
    if not parent:
        return None, None
    from ..agents.saved import load_policy

    path = Path(parent)
    ref = str(path.resolve()) if path.exists() else parent
    if not path.exists():
        if tracker is None:
            raise ValueError(f"parent policy {parent!r} is not a file and no MLflow tracker was given")
        version = tracker.resolve(parent)
        ref = f"{version.name}/{version.version}"
        path = tracker.download_policy(ref, out_dir / "parent")
    module, payload = load_policy(path)
    return (module, payload), ref


def train_offline(warehouse_path, config: OfflineRunConfig, out_dir, *, tracker=None, parent_run_id: str | None = None,
                  tags: dict | None = None, log=print) -> OfflineRun:  # fmt: skip
    from ..agents.saved import save_policy
    from ..transitions.dataset import load_transitions
    from .base import fqe_selector
    from .bcq import train_bcq
    from .cql import train_cql
    from .iql import train_iql

    out = Path(out_dir)
    data = load_transitions(warehouse_path, config.feature_set, behaviours=config.behaviours or None,
                            regimes=config.regimes or None, seed_slots=config.seed_slots,
                            mix_action_spaces=config.mix_action_spaces)  # fmt: skip
    summary = data.summary()
    log(f"{summary['transitions']} transitions, {summary['episodes']} runs in {summary['families']} families; "
        f"behaviours {', '.join(summary['behaviours'])}")  # fmt: skip
    train, held = data.split_by_family(config.held_out, config.split_seed) if config.held_out > 0 else (data, None)
    selector = fqe_selector(held, config.selection_fqe) if config.ensemble == 1 else None
    parent, parent_ref = _resolve_parent(config.parent_policy, tracker, out)
    actor = None
    if config.algorithm == "iql":
        same_space = parent is not None and len(parent[1]["fine_actions"]) == data.n_actions
        if same_space and tuple(parent[1]["feature_names"]) == tuple(data.feature_names):
            actor = parent[0]  # IQL's actor starts as Phase 1's network: the heuristic, moved by the advantages
            log(f"IQL actor initialised from {parent_ref}")
        elif parent is not None and not same_space:
            log(f"IQL actor starts fresh: the parent {parent_ref} scores {len(parent[1]['fine_actions'])} actions, "
                f"the data's space has {data.n_actions}")  # fmt: skip
        elif parent is not None:
            log(f"IQL actor starts fresh: the parent {parent_ref} reads other features than {config.feature_set}")
    learn = {"iql": train_iql, "cql": train_cql, "bcq": train_bcq}[config.algorithm]
    # An ensemble parent hands one of its members to each member (member k starts from its member k mod n), so a
    # promoted ensemble's IQL is K actors again, not K copies of the whole ensemble nested one level deeper.
    starts = list(actor.members) if actor is not None and actor.kind == "ensemble" else [actor]
    members = []
    for k in range(config.ensemble):
        learner = dataclasses.replace(config.learner, seed=config.learner.seed + k)
        if config.ensemble > 1:
            log(f"ensemble member {k + 1} of {config.ensemble}: seed {learner.seed}, trained to its last update")
        extra = {"actor": copy.deepcopy(starts[k % len(starts)])} if config.algorithm == "iql" else {}
        members.append(learn(train, learner, selector=selector, log=log, **extra))
    result = members[0] if len(members) == 1 else _ensemble(members)

    ope = {}
    if held is not None and len(held):
        ope = off_policy_report(result.module, held, config.report_fqe, log=log)
    seeds = sorted({int(s) for s in _seeds(warehouse_path, data.run_ids)})
    policy_path = save_policy(
        result.module, data.feature_names, out / f"phase3-{config.algorithm}.pt", algorithm=config.algorithm,
        phase="phase3", parent=parent_ref, actions=data.action_names,
        metadata={
            "phase": "phase3", "variant": config.algorithm, "feature_set": config.feature_set,
            "dataset_sha256": data.digest(), "warehouse": str(Path(warehouse_path).resolve()),
            "selected_update": result.selected_update, "checkpoints": json.dumps(result.checkpoints),
            "held_out_runs": sorted(set(held.run_ids.tolist())) if held is not None else [],
            "data_seeds": seeds, "parent_policy": parent_ref or "", "ope": json.dumps(ope),
            "config": json.dumps(config.to_dict()), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )  # fmt: skip
    run = OfflineRun(config, policy_path, result, data.digest(), summary, len(set(train.family_ids.tolist())),
                     len(set(held.family_ids.tolist())) if held is not None else 0, ope)  # fmt: skip
    log(f"policy: {policy_path}")
    if tracker is not None:
        _track(run, data, warehouse_path, tracker, parent_run_id, parent_ref, tags, log)
    return run


def _ensemble(members: list[OfflineResult]) -> OfflineResult:
    """One result of K members: their policies as one Ensemble, the first member's loss curves, the mean speed."""
    from ..agents.networks import Ensemble

    module = Ensemble([m.module for m in members]).eval()
    speed = len(members) / sum(1.0 / m.updates_per_second for m in members)
    return OfflineResult(module, members[0].algorithm, {**members[0].config, "ensemble": len(members)},
                         members[0].selected_update, [], members[0].losses, speed)  # fmt: skip


def _seeds(warehouse_path, run_ids) -> list[int]:
    from ..warehouse import query

    ids = ", ".join("'" + r.replace("'", "''") + "'" for r in sorted(set(run_ids.tolist())))
    frame = query(warehouse_path, f"SELECT DISTINCT seed FROM runs WHERE run_id IN ({ids}) AND seed IS NOT NULL")
    return frame["seed"].to_list()


def off_policy_report(module, held, fqe_config: FQEConfig, log=print) -> dict:
    """FQE (with its interval over episode starts) and PDWIS / WDR where identified, on held-out families."""
    import torch

    from ..ope.fqe import fit_fqe, policy_probabilities
    from ..ope.importance import estimate_is

    fqe = fit_fqe(module, held, fqe_config)
    interval = fqe.interval()
    obs, legal = torch.as_tensor(held.observations), torch.as_tensor(held.legal)
    pi = policy_probabilities(module, obs, legal, greedy=True).numpy()
    pi_taken = pi[np.arange(len(held)), held.actions]
    with torch.no_grad():
        q = fqe.q_network.raw_logits(obs).masked_fill(~legal, 0.0).numpy() / fqe_config.reward_scale
    q_taken = q[np.arange(len(held)), held.actions]
    v = (pi * q).sum(axis=1)
    estimates = estimate_is(held, pi_taken, gamma=fqe_config.gamma, q_taken=q_taken, v=v)
    report = {"fqe": {"value": fqe.value, "low": interval.low, "high": interval.high, "starts": len(fqe.start_values)}}
    for e in estimates:
        report[e.method.lower()] = dataclasses.asdict(e)
    log(f"off-policy, held-out families: FQE {fqe.value:+.2f} pp [{interval.low:+.2f}, {interval.high:+.2f}] over "
        f"{len(fqe.start_values)} starts; " + "; ".join(str(e) for e in estimates))  # fmt: skip
    return report


def _track(run: OfflineRun, data, warehouse_path, tracker, parent_run_id, parent_ref, tags, log) -> None:
    import mlflow
    import torch

    from ..agents import tracking
    from ..warehouse import lineage_runs

    parent_run_id = parent_run_id or tracker.parent_run_id(f"local-{time.strftime('%Y%m%d-%H%M%S')}")
    run_tags = {"tamiyo.phase": "phase3", "tamiyo.algorithm": run.config.algorithm, **(tags or {})}
    if parent_ref:
        run_tags[tracking.PARENT_POLICY] = parent_ref
    rows = lineage_runs(warehouse_path, sorted(set(data.run_ids.tolist())))
    raw = [{**row, "config": json.loads(row.pop("config_json") or "{}")} for row in rows.to_dicts()]
    curves = run.result.losses
    summary = {"selected_update": run.result.selected_update, "updates_per_second": run.result.updates_per_second,
               "transitions": run.summary["transitions"], "train_families": run.train_families,
               "held_out_families": run.held_out_families}  # fmt: skip
    if run.ope:
        summary.update({"ope_fqe_value": run.ope["fqe"]["value"], "ope_fqe_low": run.ope["fqe"]["low"],
                        "ope_fqe_high": run.ope["fqe"]["high"]})  # fmt: skip
        for method in ("pdwis", "wdr"):
            if run.ope.get(method, {}).get("identified"):
                summary[f"ope_{method}_value"] = run.ope[method]["value"]
    with tracker.child_run(parent_run_id, f"phase3-{run.config.algorithm}", run_tags) as run_id:
        tracker.log_run(run_id, run.config.to_dict(), curves, summary, dataset_digest=run.dataset_digest,
                        dataset_source=str(Path(warehouse_path).resolve()),
                        dataset_name=f"transitions-{run.config.feature_set}", raw_runs=raw, dataset_rows=len(data),
                        steps=[(i + 1) * max(1, run.config.learner.updates // 10) for i in range(len(curves))])  # fmt: skip
        for update, estimate in run.result.checkpoints:
            if estimate == estimate:
                mlflow.log_metric("checkpoint_heldout_fqe", estimate, step=update)
        example = torch.as_tensor(data.observations[:1])
        run.mlflow_run_id = run_id
        run.model_version = tracker.log_policy(run_id, run.policy_path, run.result.module, example.numpy(), "phase3",
                                               variant=run.config.algorithm)  # fmt: skip
    log(f"MLflow run {run.mlflow_run_id}, registered {tracking.registered_phase('phase3').registered_name} "
        f"v{run.model_version} as candidate-{run.config.algorithm}")  # fmt: skip
