"""A curriculum as data: an ordered list of stages (each a generation spec, a held-out evaluation set and a
promotion rule) and the transfer tasks a curriculum policy is judged on zero-shot.

TOML, shipped under `tamiyo_models/curricula/` (`CurriculumSpec.load("default")`) or any file:

    name = "digits-to-fashion"
    [defaults]                      # every stage's settings unless it says otherwise
    episodes_per_round = 16         # training episodes between two evaluations
    eval_configs = 16               # held-out configurations the stage's margin is measured on
    eval_batch_seed = 20270101      # their batch seed (training draws its configurations elsewhere)
    promotion = { min_margin_low = -0.25, max_episodes = 96 }

    [[stages]]
    name = "digits-short"
    spec = { base = { max_epochs = 12, dataset = { name = "digits" } } }   # an inline generation spec, or
    # spec = "arena"; regime = "fm-narrow"                                    # a shipped spec (one regime)

    [[transfer]]                    # never trained on; same keys as a stage, no promotion
    name = "fashion-mnist"
    spec = "arena"

A stage whose data this machine lacks (Fashion-MNIST without Debian's `dataset-fashion-mnist`, CIFAR without
its files) is not an error: `unavailable()` says which files are missing and how to get them, and the runner
skips the stage with that message.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..episodes.generation import GenerationSpec, SpecError, read_spec_table, resolve_extends

_STAGE_KEYS = {"name", "description", "spec", "regime", "episodes_per_round", "eval_configs", "eval_batch_seed", "promotion"}


class CurriculumError(ValueError):
    pass


@dataclass(frozen=True)
class PromotionRule:
    """When a stage is done: the policy's paired margin over the heuristic on the stage's held-out
    configurations has the lower end of its interval above `min_margin_low` (pp), or `max_episodes` training
    episodes were spent on the stage."""

    min_margin_low: float = -0.25
    max_episodes: int = 96

    def decide(self, margin_low: float | None, episodes_used: int) -> tuple[bool, str]:
        """(promote, why). `margin_low`: the interval's lower end, None when not measured yet."""
        if margin_low is not None and math.isfinite(margin_low) and margin_low > self.min_margin_low:
            return True, f"margin interval above {self.min_margin_low:+.2f} pp (low end {margin_low:+.2f})"
        if episodes_used >= self.max_episodes:
            return True, f"episode budget spent ({episodes_used} >= {self.max_episodes})"
        low = "not measured" if margin_low is None else f"low end {margin_low:+.2f} pp"
        return False, f"{low}, not above {self.min_margin_low:+.2f}; {episodes_used}/{self.max_episodes} episodes"


@dataclass(frozen=True)
class Stage:
    name: str
    spec: dict  # a generation spec as a dict (GenerationSpec.from_dict)
    description: str = ""
    episodes_per_round: int = 16
    eval_configs: int = 16
    eval_batch_seed: int = 20_270_101
    promotion: PromotionRule = field(default_factory=PromotionRule)

    def generation_spec(self) -> GenerationSpec:
        return GenerationSpec.from_dict(self.spec, source=f"curriculum stage {self.name!r}")

    def unavailable(self) -> str | None:
        """Why this stage cannot run here (its data is missing: which files, how to get them), or None."""
        from ..world.datasets import dataset_unavailable

        try:
            spec = self.generation_spec()
        except SpecError as exc:
            if "no regime can run on this machine" in str(exc):
                return str(exc).split("no regime can run on this machine: ", 1)[1]
            raise
        if spec.regimes:
            return None  # at least one regime can run (from_dict raised otherwise)
        return dataset_unavailable(spec.sample(1, 0)[0].dataset)

    def eval_configs_list(self):
        """The stage's held-out configurations (never drawn by training, which uses the environment's seeds)."""
        return self.generation_spec().sample(self.eval_configs, self.eval_batch_seed)

    def seed_slots(self) -> int:
        """The seed slots of the stage's hosts (read from its held-out configurations): the size of the action
        space a policy trained or fine-tuned on it scores. A stage whose configurations differ is refused."""
        counts = {len(c.host.slots or (0,)) for c in self.eval_configs_list()}
        if len(counts) != 1:
            raise CurriculumError(f"stage {self.name!r}: its configurations have {sorted(counts)} seed slots; one "
                                  "stage trains one action space: split it by slot count")  # fmt: skip
        return counts.pop()

    def write_spec(self, folder: str | Path) -> Path:
        """The stage's generation spec as a file, for the environment workers to load."""
        path = Path(folder) / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"name": self.name, **{k: v for k, v in self.spec.items() if k != "name"}}, indent=1))
        return path


@dataclass(frozen=True)
class CurriculumSpec:
    name: str
    stages: tuple[Stage, ...]
    transfer: tuple[Stage, ...] = ()
    description: str = ""
    source: str = "<dict>"

    def stage(self, name: str) -> Stage:
        for stage in (*self.stages, *self.transfer):
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in (*self.stages, *self.transfer))
        raise CurriculumError(f"{self.source}: no stage or transfer task {name!r}; known: {known}")

    @classmethod
    def load(cls, path_or_name: str | Path) -> "CurriculumSpec":
        """A curriculum file (.toml), or the name of one shipped in tamiyo_models/curricula/."""
        path = Path(path_or_name)
        if not path.exists():
            shipped = resources.files("tamiyo_models") / "curricula" / f"{path_or_name}.toml"
            if not shipped.is_file():
                raise CurriculumError(f"curriculum {str(path_or_name)!r} not found (neither a file nor a shipped curriculum)")
            return cls.from_dict(tomllib.loads(shipped.read_text()), source=str(shipped), folder=Path(str(shipped)).parent)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CurriculumError(f"{path}: cannot parse the curriculum: {exc}") from None
        return cls.from_dict(data, source=str(path), folder=path.parent)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>", folder: str | Path = ".") -> "CurriculumSpec":
        """`folder`: where spec files the stages name are looked for (the curriculum file's own folder)."""
        unknown = set(d) - {"name", "description", "defaults", "stages", "transfer"}
        if unknown:
            raise CurriculumError(f"{source}: unknown top-level keys {sorted(unknown)} (known: name, description, "
                                  "defaults, stages, transfer)")  # fmt: skip
        defaults = d.get("defaults", {})
        stages = tuple(_stage(s, defaults, f"{source}: stages[{i}]", Path(folder)) for i, s in enumerate(d.get("stages", [])))
        transfer = tuple(_stage(s, defaults, f"{source}: transfer[{i}]", Path(folder)) for i, s in enumerate(d.get("transfer", [])))
        if not stages:
            raise CurriculumError(f"{source}: a curriculum needs at least one [[stages]] entry")
        names = [s.name for s in (*stages, *transfer)]
        if len(set(names)) != len(names):
            raise CurriculumError(f"{source}: stage and transfer names must be unique, got {names}")
        return cls(d.get("name", Path(source).stem), stages, transfer, d.get("description", ""), source)


def _stage(d: dict, defaults: dict, where: str, folder: Path) -> Stage:
    bad = set(d) - _STAGE_KEYS
    if "name" not in d or "spec" not in d or bad:
        raise CurriculumError(f"{where}: needs name and spec and may hold {', '.join(sorted(_STAGE_KEYS - {'name', 'spec'}))}"
                              + (f" (unknown: {sorted(bad)})" if bad else ""))  # fmt: skip
    merged = {**{k: v for k, v in defaults.items() if k != "promotion"}, **d}
    promotion = {**defaults.get("promotion", {}), **d.get("promotion", {})}
    try:
        rule = PromotionRule(**promotion)
    except TypeError as exc:
        raise CurriculumError(f"{where}: promotion: {exc} (known: min_margin_low, max_episodes)") from None
    spec = _stage_spec(d["spec"], d.get("regime"), where, folder, d["name"])
    stage = Stage(name=d["name"], spec=spec, description=d.get("description", ""),
                  episodes_per_round=int(merged.get("episodes_per_round", 16)), eval_configs=int(merged.get("eval_configs", 16)),
                  eval_batch_seed=int(merged.get("eval_batch_seed", 20_270_101)), promotion=rule)  # fmt: skip
    if stage.episodes_per_round < 1 or stage.eval_configs < 2 or rule.max_episodes < 1:
        raise CurriculumError(f"{where}: episodes_per_round and max_episodes must be >= 1, eval_configs >= 2")
    try:
        stage.generation_spec()
    except SpecError as exc:
        if "no regime can run on this machine" not in str(exc):  # missing data is not an error: the stage is skipped
            raise CurriculumError(f"{where}: {exc}") from None
    return stage


def _stage_spec(spec, regime: str | None, where: str, folder: Path, stage: str) -> dict:
    """A stage's generation spec as a table: a shipped spec's name or a spec file (relative to the curriculum's
    folder), or an inline table, which may extend either (and is then named after the stage); `regime` keeps one
    regime of it. Regimes with missing data stay in: whether they can run is decided where the stage runs."""
    try:
        if isinstance(spec, str):
            data, _ = read_spec_table(spec, folder)
        elif isinstance(spec, dict):
            data = resolve_extends(spec, where, folder, name=spec.get("name", stage), regime=regime)
        else:
            raise CurriculumError(f"{where}: spec must be a spec's name or file, or an inline generation spec table")
    except SpecError as exc:
        message = str(exc)  # an inline table's errors already start with `where`
        raise CurriculumError(message if message.startswith(where) else f"{where}: {message}") from None
    if regime is not None:
        regimes = [r for r in data.get("regimes", []) if r["name"] == regime]
        if not regimes:
            raise CurriculumError(f"{where}: its spec has no regime {regime!r}"
                                  + (f" (regimes: {', '.join(r['name'] for r in data.get('regimes', []))})" if data.get("regimes") else ""))  # fmt: skip
        data = {**data, "regimes": regimes}
    return data
