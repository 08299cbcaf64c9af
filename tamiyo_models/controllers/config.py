"""The configuration that names a controller (what a run header stores), building the controller from it,
and the reference names (`heuristic`, `never`, `fixed:<blueprint>@<epoch>`, ...) read as configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..world.blueprint_names import BLUEPRINTS
from ..world.configs import known_fields
from .base import Controller
from .epsilon import EpsilonGreedy
from .exploration import PerturbedHeuristic, SoftmaxHeuristic
from .heuristic import HeuristicConfig, HeuristicController
from .random_controller import RandomController
from .reference import EAGER_HEURISTIC, MOSTLY_WAITING, FixedSchedule, NeverGrow, VigilantSchedule
from .saved_policy import load_policy

CONTROLLER_KINDS = (
    "heuristic", "random", "epsilon-heuristic", "softmax-heuristic", "perturbed-heuristic", "never", "fixed-schedule",
    "epsilon-fixed-schedule", "vigilant-schedule", "epsilon-vigilant-schedule", "policy", "epsilon-policy", "agent",
)  # fmt: skip


@dataclass(frozen=True)
class ControllerConfig:
    kind: str = "heuristic"
    epsilon: float = 0.1  # for the epsilon-* kinds
    temperature: float = 1.0  # for softmax-heuristic: higher explores more
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    random_weights: dict = field(default_factory=dict, hash=False)
    policy: str | None = None  # "scheme:PATH" for the policy kinds
    blueprint: str = "conv_heavy"  # for fixed-schedule: what to graft
    germinate_epoch: int = 6  # for fixed-schedule: graft at the first decision after this many epochs
    slot: int = 0  # for fixed-schedule: the seed slot it grafts into (a multi-slot host)
    label: str | None = None  # the reference name (fixed:conv_heavy@6, eager, ...) that reports group by

    def __post_init__(self):
        if self.kind not in CONTROLLER_KINDS:
            raise ValueError(f"unknown controller {self.kind!r}; known: {', '.join(CONTROLLER_KINDS)}")
        if self.kind.endswith("policy") and not self.policy:
            raise ValueError(f"controller {self.kind!r} needs a policy (scheme:PATH)")
        if self.kind.endswith("-schedule"):
            FixedSchedule(self.blueprint, self.germinate_epoch, self.slot)  # validates, naming the bad setting

    def display_name(self) -> str:
        return self.label or self.kind

    def to_dict(self) -> dict:
        d = {
            "kind": self.kind,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "heuristic": self.heuristic.to_dict(),
            "random_weights": dict(self.random_weights),
            "policy": self.policy,
        }
        # Written only where they mean something: a heuristic run's header does not list a schedule it ignores.
        if self.kind.endswith("-schedule"):
            d.update(blueprint=self.blueprint, germinate_epoch=self.germinate_epoch)
            if self.slot:  # slot 0 unwritten: a single-slot schedule keeps the run id it always had
                d["slot"] = self.slot
        if self.label is not None:
            d["label"] = self.label
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ControllerConfig":
        d = known_fields(cls, d, "controller settings")
        d["heuristic"] = HeuristicConfig.from_dict(d.get("heuristic") or {})
        return cls(**d)


def build_controller(config: ControllerConfig) -> Controller:
    controller = _build(config)
    if config.label:
        controller.name = config.label
    return controller


def _build(config: ControllerConfig) -> Controller:
    if config.kind == "agent":
        raise ValueError(f"controller 'agent' ({config.label or 'unnamed'}) is an external learner acting through "
                         "TamiyoEnv; it cannot run as a controller on its own")  # fmt: skip
    if config.kind == "heuristic":
        return HeuristicController(config.heuristic)
    if config.kind == "never":
        return NeverGrow()
    if config.kind == "fixed-schedule":
        return FixedSchedule(config.blueprint, config.germinate_epoch, config.slot)
    if config.kind == "epsilon-fixed-schedule":  # a schedule's stochastic version, when it is the nightly champion
        return EpsilonGreedy(FixedSchedule(config.blueprint, config.germinate_epoch, config.slot), config.epsilon)
    if config.kind == "vigilant-schedule":
        return VigilantSchedule(config.blueprint, config.germinate_epoch, config.slot)
    if config.kind == "epsilon-vigilant-schedule":  # exploration around the reader: its culls beside random ones
        return EpsilonGreedy(VigilantSchedule(config.blueprint, config.germinate_epoch, config.slot), config.epsilon)
    if config.kind == "random":
        return RandomController(config.random_weights)
    if config.kind == "epsilon-heuristic":
        return EpsilonGreedy(HeuristicController(config.heuristic), config.epsilon)
    if config.kind == "softmax-heuristic":
        return SoftmaxHeuristic(config.heuristic, config.temperature)
    if config.kind == "perturbed-heuristic":
        return PerturbedHeuristic(config.heuristic)
    policy = load_policy(config.policy)
    return EpsilonGreedy(policy, config.epsilon) if config.kind == "epsilon-policy" else policy


def reference_controller(name: str):
    """The ControllerConfig a reference name stands for (see the module docstring for the names); any
    controller kind is accepted as a name too ("epsilon-heuristic", "softmax-heuristic", ...)."""
    text = name.strip()
    if text == "never":
        return ControllerConfig(kind="never", label="never")
    if text == "eager":
        return ControllerConfig(kind="heuristic", heuristic=EAGER_HEURISTIC, label="eager")
    if text == "random":
        return ControllerConfig(kind="random", random_weights=dict(MOSTLY_WAITING), label="random")
    if text.startswith(("fixed:", "vigilant:")):
        kind, _, rest = text.partition(":")
        blueprint, sep, epoch = rest.partition("@")
        epoch, has_slot, slot = epoch.partition(":slot")
        if not sep or not epoch.isdigit() or (has_slot and not slot.isdigit()):
            raise ValueError(f"controller {name!r}: a {kind} schedule is written {kind}:<blueprint>@<epoch>[:slot<k>], "
                             f"e.g. {kind}:conv_heavy@6 or {kind}:conv_light@0:slot1")  # fmt: skip
        if blueprint not in BLUEPRINTS:
            raise ValueError(f"controller {name!r}: unknown blueprint {blueprint!r}; known: {', '.join(BLUEPRINTS)}")
        return ControllerConfig(kind=f"{kind}-schedule", blueprint=blueprint, germinate_epoch=int(epoch),
                                slot=int(slot or 0), label=text)  # fmt: skip
    if text.startswith("heuristic:"):
        chosen = tuple(b for b in text.removeprefix("heuristic:").split("+") if b)
        unknown = [b for b in chosen if b not in BLUEPRINTS]
        if not chosen or unknown:
            raise ValueError(f"controller {name!r}: heuristic:<blueprint>[+<blueprint>...] with blueprints among {', '.join(BLUEPRINTS)}")
        return ControllerConfig(kind="heuristic", heuristic=HeuristicConfig(blueprints=chosen), label=text)
    if text.startswith("shipped:"):
        from .shipped import shipped_policy

        shipped = shipped_policy(text)
        return ControllerConfig(kind="policy", policy=f"file:{shipped.path}", label=shipped.label)
    if text in CONTROLLER_KINDS and not text.endswith("policy") and text != "agent":
        return ControllerConfig(kind=text, label=text)
    raise ValueError(
        f"unknown controller {name!r}; reference names: heuristic, never, eager, random, fixed:<blueprint>@<epoch>[:slot<k>], vigilant:<...>, "
        f"heuristic:<blueprint>[+...], shipped:<name>, or a kind ({', '.join(k for k in CONTROLLER_KINDS if not k.endswith('policy') and k != 'agent')})"
    )


def named_controller(entry: str) -> tuple[str, ControllerConfig]:
    """(name, controller) of a controller list entry: `NAME=PATH` names a saved policy file (any phase), anything
    else is a reference name (`reference_controller`). `tamiyo headroom --state-readers` reads its list this way
    (a study's design reads `NAME=PATH` arms the same way, beside its trained arms), so a learned policy stands
    beside the hand-written controllers under its own name."""
    from pathlib import Path

    name, sep, path = entry.strip().partition("=")
    if not sep:
        return entry.strip(), reference_controller(entry)
    if not name or not Path(path).is_file():
        raise ValueError(f"controller {entry!r}: NAME=PATH needs a name and an existing policy file ({path!r} not found)")
    return name, ControllerConfig(kind="policy", policy=f"file:{Path(path).resolve()}", label=name)
