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

A spec may also list **regimes** (the arena does): each is a named family of configurations with its own
`base` and `vary` on top of the spec's, and a weight. An episode first draws its regime, and its
configuration carries the regime's name (tag `regime`), so analyses compare controllers regime by regime:

    [[regimes]]
    name = "fmnist-narrow"
    weight = 1.0
    base = { dataset = { name = "fashion-mnist", train_subsample = 3000, val_subsample = 2000 }, max_epochs = 30 }
    vary = { "host.widths" = [[2, 4, 8]] }

A spec may set a **compute rent** (docs/arena.md, "Compute rent"), the same for every episode and regime, so
every score of a spec is charged alike: `rent = 1.0` at the top level charges each episode's score 1 pp per
doubling of its parameters, and its reward the same. Absent, it is 0: the score is the test accuracy.

A regime whose dataset is not on this machine (Fashion-MNIST without Debian's package, say) is left out of
sampling, with one message naming the files and how to get them (`GenerationSpec.unavailable`).

A spec file may **extend** another (`extends = "cifar-candidates"`, a shipped name or a path relative to the
file): its `base` and `vary` merge into the parent's, key by key (a table such as `dataset = {...}` merges into
the parent's table), and any other key it sets (`regimes`, `controllers`, `branching`, `rent`) replaces the
parent's. So a study points a shipped spec at other data without copying its regimes:

    extends = "cifar-candidates"
    name = "cifar10-dev"
    [base]
    dataset = { name = "imagefolder:../shared/data/cifar10-dev" }
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing
import os
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..common.shutdown import stop_pool
from ..world.datasets import dataset_unavailable
from ..world.score import check_rent
from .branching import BranchConfig, branch_settings
from .episode import EpisodeConfig, EpisodeResult
from .rollout import init_worker, run_one, stored_result

if TYPE_CHECKING:  # Ray is imported only when used
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
    regimes: list[dict] = field(default_factory=list)  # named families of configurations (see module docstring)
    source: str = "<dict>"
    unavailable: dict[str, str] = field(default_factory=dict)  # regime -> why it is left out on this machine
    rent: float = 0.0  # pp of score per doubling of parameters, for every episode of the spec

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "GenerationSpec":
        unknown = set(d) - {"name", "base", "vary", "controllers", "branching", "regimes", "rent"}
        if unknown:
            raise SpecError(
                f"{source}: unknown top-level keys {sorted(unknown)} (known: name, base, vary, controllers, branching, "
                "regimes, rent)"
            )
        try:
            rent = check_rent(d.get("rent", 0.0))
        except ValueError as exc:
            raise SpecError(f"{source}: rent: {exc}") from None
        # One rent per spec: scores charged at different rents would be compared as if they were alike.
        tables = [("base", d.get("base") or {}), ("vary", d.get("vary") or {})]
        tables += [(f"regimes[{r.get('name', i)}].{k}", r.get(k) or {}) for i, r in enumerate(d.get("regimes", [])) for k in ("base", "vary")]
        for where, table in tables:
            if isinstance(table, dict) and "rent" in table:
                raise SpecError(f"{source}: {where}.rent: the rent is set once, at the top level of a spec (rent = ...)")
        regimes = d.get("regimes", [])
        for i, regime in enumerate(regimes):
            bad = set(regime) - {"name", "weight", "base", "vary", "description"}
            if "name" not in regime or bad:
                raise SpecError(f"{source}: regimes[{i}] needs a name and may hold weight, base, vary, description"
                                + (f" (unknown: {sorted(bad)})" if bad else ""))  # fmt: skip
        names = [r["name"] for r in regimes]
        if len(set(names)) != len(names):
            raise SpecError(f"{source}: regime names must be unique, got {names}")
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
            regimes=regimes,
            source=source,
            rent=rent,
        )
        # Which regimes this machine lacks the data for, then every setting checked up front (naming the spec
        # file and key) rather than inside a worker later.
        for regime in spec.regimes:
            missing = dataset_unavailable(spec._sample(1, 0, regime)[0].dataset)
            if missing:
                spec.unavailable[regime["name"]] = missing
        if spec.regimes and len(spec.unavailable) == len(spec.regimes):
            reasons = set(spec.unavailable.values())
            raise SpecError(f"{source}: no regime can run on this machine: " + (reasons.pop() if len(reasons) == 1 else
                            "; ".join(f"{k}: {v}" for k, v in spec.unavailable.items())))  # fmt: skip
        spec.validate()
        return spec

    @property
    def regime_names(self) -> list[str]:
        """The regimes that can run here, in spec order."""
        return [r["name"] for r in self.regimes if r["name"] not in self.unavailable]

    def _regime(self, name: str) -> dict:
        for regime in self.regimes:
            if regime["name"] == name:
                if name in self.unavailable:
                    raise SpecError(f"{self.source}: regime {name!r} cannot run here: {self.unavailable[name]}")
                return regime
        raise SpecError(f"{self.source}: no regime {name!r}; regimes: {', '.join(r['name'] for r in self.regimes) or 'none'}")

    def sample_regime(self, name: str, episodes: int, seed: int) -> list[EpisodeConfig]:
        """`episodes` configurations of one regime (a headroom analysis compares controllers regime by regime)."""
        return self._sample(episodes, seed, self._regime(name))

    def validate(self) -> None:
        """Check every controller entry and every choice of every varied field, each on the base settings, and
        the datasets they name: a typo fails here, naming the key, even where sampling would rarely reach it
        (a controller of weight 0.001, one value of a list)."""
        from ..world.datasets import check_dataset_config

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
        for regime in self.regimes:  # each regime's own settings and variations, on top of the spec's
            for key, rule in (regime.get("vary") or {}).items():
                for value in _choices(rule):
                    d = copy.deepcopy(self.base)
                    for k, v in (regime.get("base") or {}).items():
                        _merge_dotted(d, k, copy.deepcopy(v))
                    _set_dotted(d, key, value)
                    build(d, f"regimes[{regime['name']}].vary.{key} = {value!r}")
            if regime["name"] not in self.unavailable:
                self.sample_regime(regime["name"], 1, seed=0)
        self.sample(1, seed=0)  # the rules themselves (weights, ranges) and their combination

    @classmethod
    def load(cls, path_or_name: str | Path) -> "GenerationSpec":
        """A spec file (.toml or .json), or the name of a spec shipped with the package."""
        data, source = _read_spec(path_or_name, Path.cwd(), ())
        return cls.from_dict(data, source=source)

    def sample(self, episodes: int, seed: int) -> list[EpisodeConfig]:
        """`episodes` configurations; with regimes, each first draws its regime (by weight, among those that can
        run here)."""
        if not self.regimes:
            return self._sample(episodes, seed, None)
        usable = [r for r in self.regimes if r["name"] not in self.unavailable]
        weights = np.array([float(r.get("weight", 1.0)) for r in usable])
        if (weights < 0).any() or weights.sum() <= 0:
            raise SpecError(f"{self.source}: regimes need positive weights")
        # The regime of each episode comes from its own stream, so adding episodes never changes earlier ones.
        picks = np.random.default_rng([seed, 1]).choice(len(usable), size=episodes, p=weights / weights.sum())
        counts = {i: int((picks == i).sum()) for i in range(len(usable))}
        drawn = {i: iter(self._sample(n, seed + 1_000_003 * (i + 1), usable[i])) for i, n in counts.items() if n}
        configs = []
        for index, pick in enumerate(picks):
            config = next(drawn[int(pick)])
            configs.append(dataclasses.replace(config, tags={**config.tags, "batch_seed": seed, "batch_index": index}))
        return configs

    def _sample(self, episodes: int, seed: int, regime: dict | None) -> list[EpisodeConfig]:
        rng = np.random.default_rng(seed)
        weights = np.array([float(c.get("weight", 1.0)) for c in self.controllers])
        if len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise SpecError(f"{self.source}: controllers need positive weights")
        where = f"{self.source}: " + (f"regime {regime['name']}: " if regime else "")
        vary = {**self.vary, **((regime or {}).get("vary") or {})}
        configs = []
        for index in range(episodes):
            d = copy.deepcopy(self.base)
            for key, value in ((regime or {}).get("base") or {}).items():
                _merge_dotted(d, key, copy.deepcopy(value))
            for key, rule in vary.items():
                _set_dotted(d, key, _draw(rule, rng, f"{where}vary.{key}"))
            chosen = self.controllers[int(rng.choice(len(weights), p=weights / weights.sum()))]
            controller = {}
            for key, value in chosen.items():
                if key in _CONTROLLER_TABLES:  # settings tables, taken as they are
                    controller[key] = value
                elif key != "weight":
                    controller[key] = _draw(value, rng, f"{self.source}: controllers.{key}")
            d["controller"] = {**d.get("controller", {}), **controller}
            d["seed"] = int(rng.integers(0, 2**31 - 1))
            d["rent"] = self.rent
            d.setdefault("tags", {}).update({"spec": self.name, "batch_seed": seed, "batch_index": index})
            if regime is not None:
                d["tags"]["regime"] = regime["name"]
            try:
                configs.append(EpisodeConfig.from_dict(d))
            except KeyError as exc:
                raise SpecError(f"{where}episode {index} has an invalid configuration: missing setting {exc}") from None
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{where}episode {index} has an invalid configuration: {exc}") from None
        return configs


def _read_spec(path_or_name: str | Path, relative_to: Path, chain: tuple[str, ...]) -> tuple[dict, str]:
    """A spec's table with every `extends` resolved (see the module docstring), and the file it came from."""
    path = Path(path_or_name)
    path = path if path.is_absolute() else relative_to / path
    if path.is_file():
        source, key = str(path), str(path.resolve())  # resolved: a file reached again through '..' or a link is itself
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files("tamiyo_models") / "specs" / f"{path_or_name}.toml"
        if not shipped.is_file():
            where = f"{chain[-1]}: extends: " if chain else ""  # the file that named it
            raise SpecError(f"{where}generation spec {str(path_or_name)!r} not found (neither a file in {relative_to.resolve()} "
                            "nor a shipped spec)")  # fmt: skip
        source, key, text = str(shipped), str(shipped), shipped.read_text()
    if key in chain:
        raise SpecError(f"{source}: extends itself through {' -> '.join((*chain, key))}")
    try:
        data = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{source}: cannot parse generation spec: {exc}") from None
    return resolve_extends(data, source, Path(source).parent, (*chain, key)), source


def read_spec_table(path_or_name: str | Path, relative_to: str | Path = ".") -> tuple[dict, str]:
    """A spec file (a path relative to `relative_to`) or a shipped spec's name, as the table `from_dict` takes,
    its `extends` resolved; and the file it came from."""
    return _read_spec(path_or_name, Path(relative_to), ())


def resolve_extends(data: dict, source: str, relative_to: Path, chain: tuple[str, ...] = (), *, name: str | None = None,
                    regime: str | None = None) -> dict:
    # chain: the resolved files being read, innermost last (an inline table, a curriculum stage's, has none)
    """`data` with its `extends` (a spec name, or a file relative to `relative_to`) merged in: the parent's table
    with `base` merged key by key, `vary` key by key, and every other key the child sets replacing the parent's.
    The name is the child's, else `name`, else its file's stem: runs are tagged with it.

    A setting the child pins in `base` must win: the parent's `vary` of the same field is dropped, and a parent
    regime that sets or varies it (regimes are applied after the base) is refused, naming the field and the
    regime, unless the child replaces the regimes. So a child never asks for a setting its episodes do not get.
    `regime`: keep only that regime of the parent (a curriculum stage takes one), and check against it alone."""
    if "extends" not in data:
        return data
    data = dict(data)
    parent_name = data.pop("extends")
    if not isinstance(parent_name, str) or not parent_name:
        raise SpecError(f"{source}: extends must name a spec (a shipped name or a file), got {parent_name!r}")
    for table in ("base", "vary"):
        if not isinstance(data.get(table, {}), dict):
            raise SpecError(f"{source}: {table} must be a table, got {data[table]!r}")
    parent, parent_source = _read_spec(parent_name, relative_to, chain)
    if regime is not None and "regimes" not in data:
        kept = [r for r in parent.get("regimes", []) if r.get("name") == regime]
        if not kept:
            known = ", ".join(str(r.get("name")) for r in parent.get("regimes", [])) or "none"
            raise SpecError(f"{source}: {parent_source} has no regime {regime!r} (regimes: {known})")
        parent = {**parent, "regimes": kept}
    merged = {**parent, **{k: v for k, v in data.items() if k not in ("base", "vary")}}
    merged["name"] = data.get("name", name or Path(source).stem)
    merged["base"] = copy.deepcopy(parent.get("base", {}))
    for key, value in data.get("base", {}).items():
        _merge_dotted(merged["base"], key, copy.deepcopy(value))
    pinned = _leaf_keys(data.get("base", {}))
    vary = dict(parent.get("vary", {}))
    for key in list(vary):
        covered = [k for k in pinned if k.startswith(key + ".")]
        if covered:
            raise SpecError(f"{source}: base.{covered[0]}: the parent {parent_source} varies all of {key!r}; "
                            f"set {key!r} in vary here instead")  # fmt: skip
        if key in pinned:
            del vary[key]  # the child pins what the parent varied
    merged["vary"] = {**vary, **data.get("vary", {})}  # a varied field is one dotted key
    if "regimes" not in data:
        for theirs in parent.get("regimes", []):
            # A regime's base comes after the spec's base, and its vary after the spec's vary.
            regime_vary = set(theirs.get("vary") or {})
            clash = _overlap(pinned, _leaf_keys(theirs.get("base") or {}) | regime_vary) + _overlap(set(data.get("vary", {})), regime_vary)
            if clash:
                raise SpecError(f"{source}: {clash[0]}: regime {theirs.get('name')!r} of {parent_source} sets it too, and a "
                                "regime's settings come after the spec's; give the regimes here (regimes = [...]) to change it")  # fmt: skip
    return merged


def _overlap(mine: set[str], theirs: set[str]) -> list[str]:
    """The dotted settings of `mine` that one of `theirs` also sets: the same field, or a table holding it."""
    return sorted(k for k in mine for t in theirs if k == t or k.startswith(t + ".") or t.startswith(k + "."))


def _leaf_keys(table: dict, prefix: str = "") -> set[str]:
    """The dotted names of the settings a (nested, possibly dotted) table sets: {"dataset.name", "max_epochs"}."""
    keys = set()
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        keys |= _leaf_keys(value, dotted + ".") if isinstance(value, dict) else {dotted}
    return keys


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


def _merge_dotted(d: dict, dotted: str, value: Any) -> None:
    """Like _set_dotted, but a table merges into the table already there (a regime's `dataset = {...}` adds
    to the spec's base dataset instead of replacing it)."""
    *parents, last = dotted.split(".")
    for key in parents:
        d = d.setdefault(key, {})
    if isinstance(value, dict) and isinstance(d.get(last), dict):
        for key, inner in value.items():
            _merge_dotted(d[last], key, inner)
    else:
        d[last] = value


# ----- running a batch ----------------------------------------------------------------------------------
def generate(
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    workers: int = 1,
    on_result: Callable[[EpisodeResult], None] | None = None,
    branching: BranchConfig | Sequence[BranchConfig | None] | None = None,
    executor: str = "local",
    ray: "RayConfig | None" = None,
    reuse_existing: bool = False,
) -> list[EpisodeResult]:
    """Run every configuration, `workers` episodes at a time in separate processes; with `branching`, each
    episode also forks branch runs at its decision points (counted in `EpisodeResult.branches`); a list gives
    each configuration its own (None: that one is not branched), as a plan of directed forks does.

    `reuse_existing`: an episode whose complete run file is already in `out_dir` is read back instead of run
    again (episodes are deterministic, so its file is what a rerun would write): long analyses resume.

    `executor="ray"` runs the episodes as tasks on the Ray cluster that `ray` names instead (address,
    resources per episode, retries; see tamiyo_models.episodes.distributed); `workers` is then unused, as the
    cluster's resources set how many run at once.

    Every episode ends as a result, complete or failed; a failure never stops the others. Results come back
    in completion order through `on_result` and in configuration order as the return value.
    """
    per_config = branch_settings(branching, len(configs))
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; known: local, ray")
    if executor == "ray" and ray is None:
        raise ValueError("executor='ray' needs a RayConfig (at least the cluster address)")
    out_dir = str(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    results: list[EpisodeResult | None] = [None] * len(configs)
    if reuse_existing:  # on either executor: a night or a study on Ray resumes like one on local workers
        for i, config in enumerate(configs):
            results[i] = stored_result(Path(out_dir), config.run_id(), config)
            if results[i] is not None and on_result:
                on_result(results[i])
        pending = [i for i, r in enumerate(results) if r is None]
        if pending:
            rest = generate([configs[i] for i in pending], out_dir, workers, on_result, [per_config[i] for i in pending],
                            executor=executor, ray=ray)  # fmt: skip
            for i, result in zip(pending, rest):
                results[i] = result
        return results
    if executor == "ray":
        from .distributed import generate_on_ray

        return generate_on_ray(
            configs, out_dir, address=ray.address, cpus_per_episode=ray.cpus_per_episode,
            gpus_per_episode=ray.gpus_per_episode, max_retries=ray.max_retries,
            branching=per_config, on_result=on_result,
        )  # fmt: skip
    payloads = [c.to_dict() for c in configs]
    if workers <= 1:
        init_worker()
        for i, payload in enumerate(payloads):
            results[i] = run_one(payload, out_dir, per_config[i])
            if on_result:
                on_result(results[i])
        return results
    # forkserver, not fork: a forked copy of a process that already ran torch threads can deadlock. The
    # server imports torch and the library once, so each worker starts in milliseconds instead of seconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch._dynamo", "tamiyo_models.episodes.episode", "sklearn.datasets"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker)
    try:
        futures = {pool.submit(run_one, payload, out_dir, per_config[i]): i for i, payload in enumerate(payloads)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker process itself died (killed, out of memory)
                results[i] = EpisodeResult.not_started(configs[i], out_dir, f"worker died: {type(exc).__name__}: {exc}")
            if on_result:
                on_result(results[i])
    except BaseException:  # Ctrl-C, SIGTERM (shutdown.exit_on_sigterm), a failing callback: stop, don't drain the queue
        stop_pool(pool)
        raise
    pool.shutdown()
    return results


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))
