"""Trained arms of a study: the data they learn from and how they learn it, stated in the study file.

A study whose arm is a learned policy names, before any episode runs, the training data and the run config:

    [[data]]                         # episodes drawn from a spec; seeds registered as training seeds
    name = "exploration"
    spec = "exploration"
    episodes = 80
    batch_seed = 31002
    [[train]]                        # one trained arm; its name is what design.arms lists
    name = "iql-exploration"
    data = "exploration"
    phase = "phase3"                 # phase1 | phase2 (PolicyRunConfig) | phase3 (OfflineRunConfig) | phase4
    settings = { algorithm = "iql", iql = { tau = 0.7, updates = 10000 } }   # fields of that run config

`settings` is the library's run config itself, read field by field (world.configs.from_mapping): a default is the
library's, a misspelt key is an error naming the file and the key. A `parent_policy` (phases 2, 3) or an
`initial_policy` (phase 4) naming an earlier [[train]] entry starts from that arm's policy.

A phase 4 arm (OnlineRunConfig: PPO, A2C or REINFORCE in live episodes of its `spec`) learns from episodes it
runs itself; `data` is optional for it (the warehouse a `distil` student learns on). Every configuration its
environments may start is drawn first and its seed registered as a training seed, as the night does for PPO;
the environments refuse any other. Its episodes land in policies/<arm>/raw.

Everything lands under var/studies/<study>/: data/<name>/raw (the raw runs), data/<name>.duckdb (their own
warehouse: one study's data never mixes with a night's), policies/<arm>/ (the trained file and a done.json). A
study killed anywhere resumes: episodes on disk are read back, an arm with its done.json is not retrained.

A vine arm (phase4, `algorithm = "vine"`) learns as the night's does: no episodes of its own, one region-rule
improvement of its start over every fork study stored in its `data` (whose spec must branch: a `[branching]`
table). Its branch runs reuse their parents' seeds, which the study registered with the data set.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

PHASES = ("phase1", "phase2", "phase3", "phase4")
ONLINE_ALGORITHMS = ("ppo", "a2c", "reinforce")


@dataclass(frozen=True)
class DataSet:
    name: str
    spec: str
    episodes: int
    batch_seed: int
    regimes: tuple[str, ...] = ()
    max_epochs: int = 0  # 0: the spec's episode length
    controller: str = ""  # a controller name every episode runs under (the parents of fork studies); "": the spec's mix
    # A [branching] table (episodes.branching.BranchConfig, `horizon = "end"` for branches to the end) that forks
    # these episodes, in place of the spec's own; empty: the spec's.
    branching: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TrainedArm:
    name: str
    data: str | None  # None: a phase 4 arm that needs no stored data
    phase: str
    settings: Any  # the phase's run config (PolicyRunConfig, OfflineRunConfig or OnlineRunConfig)


def parse_data(entries: Any, source: str) -> tuple[DataSet, ...]:
    from ..controllers import reference_controller
    from ..episodes.branching import BranchConfig
    from ..world.configs import from_mapping

    if not isinstance(entries, list):
        raise ValueError(f"{source}: data must be an array of tables ([[data]])")
    out = tuple(from_mapping(DataSet, entry, f"{source}: data[{i}]") for i, entry in enumerate(entries))
    for d in out:
        if d.episodes < 1:
            raise ValueError(f"{source}: data {d.name!r}: episodes must be >= 1")
        try:
            if d.controller:
                reference_controller(d.controller)
            if d.branching:
                BranchConfig.from_dict(d.branching)
        except ValueError as exc:
            raise ValueError(f"{source}: data {d.name!r}: {exc}") from None
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: data names must be unique, got {names}")
    return out


def parse_train(entries: Any, data: tuple[DataSet, ...], source: str) -> tuple[TrainedArm, ...]:
    from ..policies.run_configs import run_config_class
    from ..world.configs import from_mapping

    if not isinstance(entries, list):
        raise ValueError(f"{source}: train must be an array of tables ([[train]])")
    data_names, out = {d.name for d in data}, []
    for i, entry in enumerate(entries):
        where = f"{source}: train[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a table")
        unknown = sorted(set(entry) - {"name", "data", "phase", "settings"})
        needed = ("name", "phase") if entry.get("phase") == "phase4" else ("name", "data", "phase")
        if unknown or not all(isinstance(entry.get(k), str) for k in needed):
            raise ValueError(f"{where}: a trained arm has {', '.join(needed)} (strings) and a settings table"
                             f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}")  # fmt: skip
        name, phase, data_name = entry["name"], entry["phase"], entry.get("data")
        if data_name is not None and data_name not in data_names:
            raise ValueError(f"{where} ({name}): data {data_name!r} is not a [[data]] name ({', '.join(sorted(data_names)) or 'none'})")
        if phase not in PHASES:
            raise ValueError(f"{where} ({name}): phase {phase!r}; a study trains {', '.join(PHASES)}")
        settings = dict(entry.get("settings") or {})
        if phase in ("phase1", "phase2"):
            settings["phase"] = phase  # PolicyRunConfig names its own phase
        if phase == "phase4" and settings.get("algorithm") == "vine":
            settings["vine"] = _vine_settings(settings.get("vine"), data_name, f"{where} ({name})")
        config = from_mapping(run_config_class(phase), settings, f"{where}.settings")
        if phase == "phase4" and config.algorithm not in ONLINE_ALGORITHMS + ("vine",):
            raise ValueError(f"{where} ({name}): phase4 algorithm {config.algorithm!r}; a study trains "
                             f"{', '.join(ONLINE_ALGORITHMS + ('vine',))}")  # fmt: skip
        if phase == "phase4" and config.distil is not None and data_name is None:
            raise ValueError(f"{where} ({name}): a distil student learns on stored states: give data")
        parent = getattr(config, "parent_policy", None) or getattr(config, "initial_policy", None)
        if phase == "phase2" and not parent:
            raise ValueError(f"{where} ({name}): phase2 starts from a parent_policy (a file, or an earlier [[train]] name)")
        is_schedule = phase == "phase4" and str(parent).startswith("fixed:")  # a distil start: a schedule by name
        if is_schedule and config.distil is None:  # caught here, not after the data episodes ran
            raise ValueError(f"{where} ({name}): initial_policy {parent!r} is a fixed schedule, not an actor: add "
                             f"distil = {{ smoothing = 0.05 }} to its settings (the learner starts from its student)")
        if parent and not is_schedule and parent not in {a.name for a in out} and not Path(parent).exists():
            raise ValueError(f"{where} ({name}): the policy it starts from, {parent!r}, is neither an earlier [[train]] name nor a file")
        out.append(TrainedArm(name, data_name, phase, config))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: train names must be unique, got {names}")
    return tuple(out)


# What a vine arm's evidence_warehouse says until the study resolves it to its data set's own warehouse.
_STUDY_DATA = "study-data:"


def _vine_settings(vine: Any, data_name: str | None, where: str) -> dict:
    """A study's vine arm learns from the fork studies stored in its data set's warehouse (iterations = 0, the
    region rule over every fork, as the night's vine): its evidence is that data set, whose seeds the study
    registered before any episode ran. A vine running parents of its own would draw them inside the learner, out
    of the registry's sight, so a study refuses it."""
    vine = dict(vine or {})
    if data_name is None:
        raise ValueError(f"{where}: a vine arm learns from the fork studies of its data: give data (a [[data]] set "
                         "whose spec branches, e.g. one with a [branching] table)")  # fmt: skip
    if vine.get("iterations", 0) != 0:
        raise ValueError(f"{where}: a study's vine learns from its data's stored forks only (vine.iterations = 0); "
                         "parents of its own would be drawn outside the seed registry")  # fmt: skip
    if "evidence_warehouse" in vine or "evidence_from" in vine:
        raise ValueError(f"{where}: a study's vine takes its evidence from its data set; leave out evidence_warehouse and evidence_from")
    return {**vine, "iterations": 0, "evidence_warehouse": f"{_STUDY_DATA}{data_name}"}


def data_warehouse(root: Path, dataset: DataSet) -> Path:
    return root / "data" / f"{dataset.name}.duckdb"


def prepare_data(study: str, dataset: DataSet, registry, root: Path, *, workers: int,
                 log: Callable[[str], None] = print, on_result=None) -> dict:  # fmt: skip
    """Draw the data set's configurations, register their seeds as training seeds (in `registry`, the warehouse
    that holds the seed registry), run them (episodes on disk are read back) and ingest them into their own
    warehouse. Returns what was run."""
    import dataclasses

    from ..controllers import reference_controller
    from ..episodes.branching import BranchConfig
    from ..episodes.generation import GenerationSpec, generate
    from ..warehouse import ingest_folder, writing
    from ..warehouse.seeds import TRAINING, claim_seeds

    spec = GenerationSpec.load(dataset.spec)
    runnable = [r["name"] for r in spec.regimes if r["name"] not in spec.unavailable] if spec.regimes else []
    if spec.regimes and not runnable:
        raise ValueError(f"data {dataset.name}: no regime of spec {dataset.spec!r} can run here")
    configs = spec.sample(dataset.episodes, seed=dataset.batch_seed)
    if dataset.regimes:
        configs = [c for c in configs if c.tags.get("regime") in dataset.regimes]
    if dataset.max_epochs:
        configs = [dataclasses.replace(c, max_epochs=min(c.max_epochs, dataset.max_epochs)) for c in configs]
    if dataset.controller:
        controller = reference_controller(dataset.controller)
        configs = [dataclasses.replace(c, controller=controller) for c in configs]
    configs = [dataclasses.replace(c, tags={**c.tags, "study": study, "study_data": dataset.name}) for c in configs]
    with writing(registry) as con:
        configs = claim_seeds(con, configs, TRAINING, f"study:{study}", f"data:{dataset.name}")
    raw = root / "data" / dataset.name / "raw"
    started = time.perf_counter()
    # The spec's own branching (the exploration spec forks every action at decision points) comes with its data.
    branching = BranchConfig.from_dict(dataset.branching) if dataset.branching else spec.branching
    results = generate(configs, raw, workers=workers, on_result=on_result, reuse_existing=True, branching=branching)
    summary = ingest_folder(raw, data_warehouse(root, dataset))
    done = sum(r.status == "complete" for r in results)
    branches = sum(r.branches for r in results)
    log(f"study {study}: data {dataset.name}: {done}/{len(results)} episodes of spec {dataset.spec} complete"
        f"{f', {branches} branch runs' if branches else ''}, {summary.runs_loaded} new runs ingested "
        f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    return {"episodes": len(results), "complete": done, "seeds": sorted(c.seed for c in configs)}


def policy_dir(root: Path, arm: str) -> Path:
    return root / "policies" / arm


def trained_policy(root: Path, arm: str) -> Path | None:
    """The arm's policy file once its training finished (done.json written last), else None."""
    done = policy_dir(root, arm) / "done.json"
    return Path(json.loads(done.read_text())["policy"]) if done.exists() else None


def train_arm(study: str, arm: TrainedArm, dataset: DataSet | None, root: Path, registry, *,
              log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Train one arm with its run config (or find it, when resuming): phases 1-3 on its data set's warehouse,
    phase 4 in live episodes whose seeds are registered in `registry` first."""
    found = trained_policy(root, arm.name)
    if found is not None and found.exists():
        log(f"study {study}: {arm.name} already trained ({found}), kept")
        return found
    config = arm.settings
    start_field = "initial_policy" if arm.phase == "phase4" else "parent_policy"
    start = getattr(config, start_field, None)
    if start and trained_policy(root, start) is not None:  # an earlier arm of the study
        config = replace(config, **{start_field: str(trained_policy(root, start))})
    out = policy_dir(root, arm.name)
    warehouse = data_warehouse(root, dataset) if dataset is not None else None
    started = time.perf_counter()
    if arm.phase == "phase4" and config.algorithm == "vine":
        from ..online_rl.workflow import train_online_policy

        config = replace(config, vine=replace(config.vine, evidence_warehouse=str(warehouse)), distil_warehouse=str(warehouse),
                         record_dir=None)  # fmt: skip
        log(f"study {study}: {arm.name}: vine, the region rule over the forks stored in data {arm.data}; no episodes of its own")
        run = train_online_policy(config, out, log=log)
    elif arm.phase == "phase4":
        run = _train_online(study, arm, config, warehouse, out, registry, log)
    elif arm.phase == "phase3":
        from ..offline_rl.workflow import train_offline

        run = train_offline(warehouse, config, out, log=log)
    else:
        from ..policies.workflow import train_policy

        run = train_policy(warehouse, config, out, log=log)
    path = Path(run.policy_path).resolve()
    (out / "done.json").write_text(json.dumps({"policy": str(path), "phase": arm.phase, "data": arm.data,
                                               "seconds": round(time.perf_counter() - started, 1)}))  # fmt: skip
    log(f"study {study}: {arm.name} ({arm.phase}) trained{f' on data {arm.data}' if arm.data else ''} in "
        f"{time.perf_counter() - started:.0f} s: {path}")  # fmt: skip
    return path


def _train_online(study: str, arm: TrainedArm, config, warehouse: Path | None, out: Path, registry, log):
    """Phase 4: every configuration the environments may start is drawn from the arm's own batch seed and
    registered as a training seed before the first episode (loop.episode_slots says how many each may start)."""
    from ..episodes.generation import GenerationSpec
    from ..online_rl.loop import assign_episode_configs, episode_slots
    from ..online_rl.workflow import train_online_policy
    from ..warehouse import writing
    from ..warehouse.seeds import TRAINING, claim_seeds

    slots = episode_slots(config.learner, config.workers)
    spec = GenerationSpec.load(config.spec)
    # The arm's own stream of configurations: its name keys it, so two arms of a study never share a draw.
    batch = int.from_bytes(hashlib.sha256(f"{study}/{arm.name}".encode()).digest()[:4], "big")
    total = sum(slots.values())
    configs = spec.sample_regime(config.regime, total, batch) if config.regime else spec.sample(total, seed=batch)
    configs = [replace(c, tags={**c.tags, "study": study, "study_arm": arm.name}) for c in configs]
    with writing(registry) as con:
        configs = claim_seeds(con, configs, TRAINING, f"study:{study}", f"train:{arm.name}")
    given = assign_episode_configs(slots, configs)
    started_from = set()
    if config.initial_policy and Path(config.initial_policy).exists():
        started_from = learned_seeds(Path(config.initial_policy))
    log(f"study {study}: {arm.name}: {config.algorithm} on {config.learner.episodes} episodes of spec {config.spec}, "
        f"{len(configs)} configurations registered as training seeds first")  # fmt: skip
    config = replace(config, record_dir=str(out / "raw"), distil_warehouse=str(warehouse) if warehouse else config.distil_warehouse)
    return train_online_policy(config, out, log=log, episode_configs=given,
                               metadata={"data_seeds": sorted(started_from | {c.seed for c in configs})})  # fmt: skip


def learned_seeds(policy: Path) -> set[int]:
    """The episode seeds a policy file says it learned from (its metadata's data_seeds)."""
    from ..agents.saved import load_policy

    return {int(s) for s in (load_policy(policy)[1].get("metadata") or {}).get("data_seeds") or []}
