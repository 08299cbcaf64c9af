"""Batches of episodes: diverse configurations sampled from a generation spec, run in parallel processes.

A generation spec (TOML or JSON) says what varies between episodes and how:

    name = "nightly"
    [base]                       # EpisodeConfig fields shared by every episode (nested tables allowed)
    max_epochs = 25
    [vary]                       # one entry per varied field; a list = uniform choice,
    "host.widths" = [[2, 4, 8], [4, 8, 16]]                # {values, weights} = weighted choice,
    "learning_rate" = {min = 0.02, max = 0.1, log = true}  # {min, max[, log, int]} = a range
    "max_epochs" = {min = 25, max = 75, int = true}
    [[controllers]]              # the controller mix; each entry: weight + ControllerConfig fields
    kind = "heuristic"
    weight = 0.5
    [[controllers]]
    kind = "epsilon-heuristic"
    epsilon = {min = 0.05, max = 0.3}
    weight = 0.5

Dotted keys address nested fields ("dataset.train_subsample"). Each episode's seed is drawn from the batch
seed, so a batch is reproducible: the same spec and seed give the same configurations, hence the same runs.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .branching import BranchConfig, run_with_branches
from .episode import EpisodeConfig, EpisodeResult, run_episode

if TYPE_CHECKING:  # distributed.py imports this module (for _run_one); Ray is imported only when used
    from .distributed import RayConfig

DEFAULT_SPEC = "nightly"  # tamiyo_models/specs/nightly.toml
_CONTROLLER_TABLES = {"heuristic", "random_weights"}


class SpecError(ValueError):
    pass


@dataclass
class GenerationSpec:
    name: str
    base: dict = field(default_factory=dict)
    vary: dict = field(default_factory=dict)
    controllers: list[dict] = field(default_factory=lambda: [{"kind": "heuristic", "weight": 1.0}])
    branching: BranchConfig | None = None  # fork branch runs at decision points of every episode
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "GenerationSpec":
        unknown = set(d) - {"name", "base", "vary", "controllers", "branching"}
        if unknown:
            raise SpecError(
                f"{source}: unknown top-level keys {sorted(unknown)} (known: name, base, vary, controllers, branching)"
            )
        try:
            branching = BranchConfig.from_dict(d["branching"]) if "branching" in d else None
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{source}: branching: {exc}") from None
        spec = cls(
            branching=branching,
            name=d.get("name", Path(source).stem),
            base=d.get("base", {}),
            vary=d.get("vary", {}),
            controllers=d.get("controllers", [{"kind": "heuristic", "weight": 1.0}]),
            source=source,
        )
        spec.validate()  # fail now, naming the spec file and key, rather than inside a worker later
        return spec

    def validate(self) -> None:
        """Check every controller entry and every choice of every varied field, each on the base settings, and
        the datasets they name: a typo fails here, naming the key, even where sampling would rarely reach it
        (a controller of weight 0.001, one value of a list)."""
        from .datasets import check_dataset_config

        rng = np.random.default_rng(0)

        def build(d: dict, where: str) -> None:
            try:
                config = EpisodeConfig.from_dict(d)
                check_dataset_config(config.dataset)
            except KeyError as exc:
                raise SpecError(f"{self.source}: {where}: missing setting {exc}") from None
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{self.source}: {where}: {exc}") from None

        for index, entry in enumerate(self.controllers):
            d = copy.deepcopy(self.base)
            controller = {}
            for key, value in entry.items():
                if key in _CONTROLLER_TABLES:
                    controller[key] = value
                elif key != "weight":
                    controller[key] = _draw(value, rng, f"{self.source}: controllers[{index}].{key}")
            d["controller"] = {**d.get("controller", {}), **controller}
            build(d, f"controllers[{index}] (kind {entry.get('kind', 'heuristic')!r})")
        for key, rule in self.vary.items():
            for value in _choices(rule):
                d = copy.deepcopy(self.base)
                _set_dotted(d, key, value)
                build(d, f"vary.{key} = {value!r}")
        self.sample(1, seed=0)  # the rules themselves (weights, ranges) and their combination

    @classmethod
    def load(cls, path_or_name: str | Path) -> "GenerationSpec":
        """A spec file (.toml or .json), or the name of a spec shipped with the package."""
        path = Path(path_or_name)
        if not path.exists():
            shipped = resources.files("tamiyo_models") / "specs" / f"{path_or_name}.toml"
            if not shipped.is_file():
                raise SpecError(f"generation spec {str(path_or_name)!r} not found (neither a file nor a shipped spec)")
            return cls.from_dict(tomllib.loads(shipped.read_text()), source=str(shipped))
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SpecError(f"{path}: cannot parse generation spec: {exc}") from None
        return cls.from_dict(data, source=str(path))

    def sample(self, episodes: int, seed: int) -> list[EpisodeConfig]:
        rng = np.random.default_rng(seed)
        weights = np.array([float(c.get("weight", 1.0)) for c in self.controllers])
        if len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise SpecError(f"{self.source}: controllers need positive weights")
        configs = []
        for index in range(episodes):
            d = copy.deepcopy(self.base)
            for key, rule in self.vary.items():
                _set_dotted(d, key, _draw(rule, rng, f"{self.source}: vary.{key}"))
            chosen = self.controllers[int(rng.choice(len(weights), p=weights / weights.sum()))]
            controller = {}
            for key, value in chosen.items():
                if key in _CONTROLLER_TABLES:  # settings tables, taken as they are
                    controller[key] = value
                elif key != "weight":
                    controller[key] = _draw(value, rng, f"{self.source}: controllers.{key}")
            d["controller"] = {**d.get("controller", {}), **controller}
            d["seed"] = int(rng.integers(0, 2**31 - 1))
            d.setdefault("tags", {}).update({"spec": self.name, "batch_seed": seed, "batch_index": index})
            try:
                configs.append(EpisodeConfig.from_dict(d))
            except KeyError as exc:
                raise SpecError(f"{self.source}: episode {index} has an invalid configuration: missing setting {exc}") from None
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{self.source}: episode {index} has an invalid configuration: {exc}") from None
        return configs


def _draw(rule: Any, rng: np.random.Generator, where: str) -> Any:
    if isinstance(rule, list):
        if not rule:
            raise SpecError(f"{where}: empty list of choices")
        return copy.deepcopy(rule[int(rng.integers(len(rule)))])
    if isinstance(rule, dict) and "values" in rule:
        values, weights = rule["values"], np.asarray(rule.get("weights", [1.0] * len(rule["values"])), float)
        if len(weights) != len(values) or weights.sum() <= 0:
            raise SpecError(f"{where}: weights must match values and be positive")
        return copy.deepcopy(values[int(rng.choice(len(values), p=weights / weights.sum()))])
    if isinstance(rule, dict) and {"min", "max"} <= set(rule):
        low, high = rule["min"], rule["max"]
        if low > high:
            raise SpecError(f"{where}: min {low} > max {high}")
        if rule.get("int"):
            return int(rng.integers(int(low), int(high) + 1))
        if rule.get("log"):
            return float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return float(rng.uniform(low, high))
    if isinstance(rule, dict):
        raise SpecError(f"{where}: expected a list, {{values, weights}} or {{min, max}}, got keys {sorted(rule)}")
    return rule


def _choices(rule: Any) -> list:
    """Every value a rule can give (a range: its two ends)."""
    if isinstance(rule, list):
        return list(rule)
    if isinstance(rule, dict) and "values" in rule:
        return list(rule["values"])
    if isinstance(rule, dict) and {"min", "max"} <= set(rule):
        return [int(rule["min"]), int(rule["max"])] if rule.get("int") else [rule["min"], rule["max"]]
    return [rule]


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        d = d.setdefault(key, {})
    d[last] = value


# ----- running a batch ----------------------------------------------------------------------------------
def _init_worker() -> None:
    import torch

    # One thread per worker: parallelism comes from processes, and results stay reproducible.
    torch.set_num_threads(1)


def _run_one(config_dict: dict, out_dir: str, branching: dict | None) -> EpisodeResult:
    config = EpisodeConfig.from_dict(config_dict)
    try:
        if branching is None:
            return run_episode(config, out_dir)
        outcome = run_with_branches(config, out_dir, BranchConfig.from_dict(branching))
        outcome.parent.branches = len(outcome.branches)
        return outcome.parent
    except Exception as exc:  # failures before the run file exists (dataset missing, bad policy path...)
        return EpisodeResult.not_started(config, out_dir, f"{type(exc).__name__}: {exc}")


def generate(
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    workers: int = 1,
    on_result: Callable[[EpisodeResult], None] | None = None,
    branching: BranchConfig | None = None,
    executor: str = "local",
    ray: "RayConfig | None" = None,
) -> list[EpisodeResult]:
    """Run every configuration, `workers` episodes at a time in separate processes; with `branching`, each
    episode also forks branch runs at its decision points (counted in `EpisodeResult.branches`).

    `executor="ray"` runs the episodes as tasks on the Ray cluster that `ray` names instead (address,
    resources per episode, retries; see tamiyo_models.distributed); `workers` is then unused, as the
    cluster's resources set how many run at once.

    Every episode ends as a result, complete or failed; a failure never stops the others. Results come back
    in completion order through `on_result` and in configuration order as the return value.
    """
    if executor == "ray":
        if ray is None:
            raise ValueError("executor='ray' needs a RayConfig (at least the cluster address)")
        from .distributed import generate_on_ray

        return generate_on_ray(
            configs, out_dir, address=ray.address, cpus_per_episode=ray.cpus_per_episode,
            gpus_per_episode=ray.gpus_per_episode, max_retries=ray.max_retries, branching=branching,
            on_result=on_result,
        )  # fmt: skip
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}; known: local, ray")
    out_dir = str(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    payloads = [c.to_dict() for c in configs]
    branch_dict = branching.to_dict() if branching else None
    results: list[EpisodeResult | None] = [None] * len(configs)
    if workers <= 1:
        _init_worker()
        for i, payload in enumerate(payloads):
            results[i] = _run_one(payload, out_dir, branch_dict)
            if on_result:
                on_result(results[i])
        return results
    # forkserver, not fork: a forked copy of a process that already ran torch threads can deadlock. The
    # server imports torch and the library once, so each worker starts in milliseconds instead of seconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch._dynamo", "tamiyo_models.episode", "sklearn.datasets"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_run_one, payload, out_dir, branch_dict): i for i, payload in enumerate(payloads)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker process itself died (killed, out of memory)
                results[i] = EpisodeResult.not_started(configs[i], out_dir, f"worker died: {type(exc).__name__}: {exc}")
            if on_result:
                on_result(results[i])
    return results


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))
