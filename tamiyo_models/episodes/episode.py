"""One episode: train a host for `max_epochs` epochs under a controller, one decision per epoch, and write
every step to a raw telemetry run.

Step t (t = 1..max_epochs) is:
  1. observe the state after epoch t-1 (epoch 0 = the untrained host) as a raw observation record;
  2. the controller decides on `observation_features(record)` (the same function ingestion uses);
  3. the action is applied to the seed slots (a refused quality gate leaves the seed where it was);
  4. epoch t trains the host, and a TRAINING seed in isolation; automatic moves follow
     (GERMINATED -> TRAINING at once, CULLED -> EMBARGOED -> RESETTING -> DORMANT by cool-down);
  5. validation, seed contribution and telemetry after epoch t give the reward of the action at step t.

After the last `score_epochs` epochs the host is also scored on the dataset's *test* split. Those numbers go
to the footer only: the observation, the gates, the reward and the telemetry never see the test split, so a
controller that learns from logged runs is never graded on what it watched.

Reproducible on the CPU: the same configuration (which includes the seed) gives the same steps. Separate
random streams drive weight initialisation, data order, telemetry probes and the controller, so measuring
something never changes what is trained. `data_order_seed` replaces the data-order stream alone: the null
control of an evaluation reruns a configuration with the same initial weights and a new order of batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..common.version import code_version
from ..controllers import Controller, ControllerConfig, Decision, Observation, build_controller
from ..world.actions import Action, action_names
from ..world.blueprint_names import SCALED_FAULT_MODES
from ..world.blueprints import BLUEPRINTS, FAULT_BLUEPRINTS, FAULT_MODES, fault_seed, parameter_count
from ..world.configs import known_fields
from ..world.datasets import DatasetConfig, TaskData, load_task_data
from ..world.features import (
    FEATURE_SCHEMA_VERSION,
    HISTORY_LENGTH,
    PLATEAU_THRESHOLD_PP,
    observation_features,
    red_flags,
)
from ..world.host import HostConfig, HostNetwork
from ..world.lifecycle import NEXT_STAGE, GateConfig, Stage, check_gate
from ..world.rawrun import RawRunWriter
from ..world.reward import RewardConfig, step_reward
from ..world.score import charged_score, check_rent, growth_charge
from ..world.seed_slot import SeedSlot
from ..world.telemetry import GradientMonitor, TelemetryConfig, evaluate, sharpness, weight_norms

LR_SCHEDULES = ("constant", "cosine")
SEED_GRADIENT_BATCHES = 4  # batches per epoch whose seed gradients are read for the zero share


def _check_seed_faults(value) -> tuple[tuple[str, float], ...]:
    """`seed_faults` as sorted (blueprint, probability) pairs, from a mapping or pairs; ValueError naming the bad entry."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        faults = {str(b): float(p) for b, p in pairs}
    except (TypeError, ValueError):
        raise ValueError(f"seed_faults must map blueprints to probabilities, e.g. {{conv_heavy = 0.4}}; got {value!r}") from None
    for blueprint, p in faults.items():
        if blueprint not in FAULT_BLUEPRINTS:
            raise ValueError(f"seed_faults: blueprint {blueprint!r} cannot be born dead; only {', '.join(FAULT_BLUEPRINTS)} can")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"seed_faults: the probability for {blueprint} must be in [0, 1], got {p}")
    return tuple(sorted((b, p) for b, p in faults.items() if p > 0))


def check_device(device: str, *, available: bool = False) -> str:
    """`device` as torch spells it ("cpu", "cuda", "cuda:1"); ValueError naming it when torch cannot parse it, or,
    with `available`, when this machine lacks it (checked once, up front, rather than in every worker)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: episodes run on cpu, cuda or cuda:<index>") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: episodes run on cpu, cuda or cuda:<index>, not {parsed.type}")
    if available and parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA GPU on this machine (torch.cuda.is_available() "
                             f"is False; torch {torch.__version__}, built for CUDA {torch.version.cuda}); run on cpu")  # fmt: skip
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")  # fmt: skip
    return str(parsed)


@dataclass(frozen=True)
class EpisodeConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    host: HostConfig = field(default_factory=HostConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    max_epochs: int = 25
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # cosine decay steadies final accuracy (see headroom notes)
    seed: int = 0
    # None: the data order follows `seed`. Set, it alone changes (null controls, fresh-order replications).
    data_order_seed: int | None = None
    score_epochs: int = 1  # test-split accuracy after each of the last k epochs (footer only)
    blueprints: tuple[str, ...] = BLUEPRINTS  # blueprints that may be germinated
    embargo_epochs: int = 4  # EMBARGOED epochs after a cull, then 1 RESETTING epoch
    gates: GateConfig = field(default_factory=GateConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    # pp of score per doubling of parameters (tamiyo_models.world.score); 0: the score is the test accuracy.
    rent: float = 0.0
    # A hidden fault of the world (docs/arena.md, "Seeds born dead"): {blueprint: probability} that a germinated
    # seed of that blueprint is born dead (world.blueprints.kill_units). Drawn per germination from the seed
    # initialisation stream, so a fresh data order meets the same fault; never in the observation.
    seed_faults: tuple[tuple[str, float], ...] = ()
    # What a faulted seed suffers (world.blueprint_names.FAULT_MODES): "dead" (the default; silent ReLUs, it adds
    # almost nothing and costs its rent), "frozen" (its random body switched on, never trained: it harms once
    # blended in, so culling it pays in accuracy as well as rent) or "noisy" (never trained, fresh noise in its
    # output at every pass: a harm the host cannot learn around). Written to the run only with seed_faults set.
    seed_fault_mode: str = "dead"
    # A frozen seed's last BatchNorm scale (the size of its random branch against the host's features), or a noisy
    # seed's noise against the spread of its input; 1: as large.
    seed_fault_scale: float = 1.0
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    tags: dict = field(default_factory=dict, hash=False, compare=False)  # free-form, e.g. spec name
    # Where the host, its seeds and the data live ("cpu", "cuda", "cuda:1"). Random draws stay on the CPU
    # generators of the episode, so the draws are the same on every device; CUDA kernels may still differ in
    # the last bits, so bit-for-bit replays (branching) are promised on the CPU only.
    device: str = "cpu"

    def __post_init__(self):
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("batch_size must be >= 1 and learning_rate > 0")
        if not 1 <= self.score_epochs <= self.max_epochs:
            raise ValueError(f"score_epochs must be in [1, max_epochs={self.max_epochs}], got {self.score_epochs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}")
        unknown = set(self.blueprints) - set(BLUEPRINTS)
        if unknown:
            raise ValueError(f"unknown blueprints {sorted(unknown)}; known: {', '.join(BLUEPRINTS)}")
        object.__setattr__(self, "rent", check_rent(self.rent))
        object.__setattr__(self, "seed_faults", _check_seed_faults(self.seed_faults))
        if self.seed_fault_mode not in FAULT_MODES:
            raise ValueError(f"seed_fault_mode: unknown mode {self.seed_fault_mode!r}; known: {', '.join(FAULT_MODES)}")
        if not (isinstance(self.seed_fault_scale, (int, float)) and 0 < self.seed_fault_scale < float("inf")):
            raise ValueError(f"seed_fault_scale must be a positive number, got {self.seed_fault_scale!r}")
        if self.seed_fault_scale != 1.0 and self.seed_fault_mode not in SCALED_FAULT_MODES:
            raise ValueError("seed_fault_scale sizes a frozen seed's branch or a noisy seed's noise: it needs seed_fault_mode "
                             f"{' or '.join(repr(m) for m in SCALED_FAULT_MODES)}")  # fmt: skip
        object.__setattr__(self, "device", check_device(self.device))

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset.to_dict(),
            "host": self.host.to_dict(),
            "controller": self.controller.to_dict(),
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "lr_schedule": self.lr_schedule,
            "seed": self.seed,
            "data_order_seed": self.data_order_seed,
            "score_epochs": self.score_epochs,
            "blueprints": list(self.blueprints),
            "embargo_epochs": self.embargo_epochs,
            "gates": self.gates.__dict__.copy(),
            "reward": self.reward.to_dict(),
            "telemetry": self.telemetry.to_dict(),
            "tags": dict(self.tags),
            # Only when set: a CPU configuration without rent keeps the run id it always had.
            **({"rent": self.rent} if self.rent else {}),
            **({"seed_faults": dict(self.seed_faults)} if self.seed_faults else {}),
            # Only where it changes something: a mode without faults makes no seed faulty, so the run is the same.
            **({"seed_fault_mode": self.seed_fault_mode} if self.seed_faults and self.seed_fault_mode != "dead" else {}),
            **({"seed_fault_scale": self.seed_fault_scale} if self.seed_faults and self.seed_fault_scale != 1.0 else {}),
            **({"device": self.device} if self.device != "cpu" else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeConfig":
        d = known_fields(cls, d, "episode settings")
        builders = {
            "dataset": DatasetConfig.from_dict,
            "host": HostConfig.from_dict,
            "controller": ControllerConfig.from_dict,
            "gates": lambda g: GateConfig(**g),
            "reward": RewardConfig.from_dict,
            "telemetry": TelemetryConfig.from_dict,
        }
        for key, build in builders.items():
            if key in d and isinstance(d[key], dict):
                d[key] = build(d[key])
        if "blueprints" in d:
            d["blueprints"] = tuple(d["blueprints"])
        return cls(**d)

    def run_id(self) -> str:
        """Deterministic: the same configuration (seed included) always names the same run."""
        canonical = json.dumps({k: v for k, v in self.to_dict().items() if k != "tags"}, sort_keys=True)
        return "run-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def regime(self) -> str | None:
        """The arena regime this configuration was drawn from (a spec's [[regimes]] table), if any."""
        return self.tags.get("regime")


@dataclass
class EpisodeResult:
    run_id: str
    path: Path
    status: str
    steps: int
    final_val_accuracy: float
    best_val_accuracy: float
    seeds_created: int
    seeds_fossilized: int
    seeds_culled: int
    episode_return: float
    wall_seconds: float
    error: str | None = None
    branches: int = 0  # branch runs forked from this episode (tamiyo_models.episodes.branching)
    final_test_accuracy: float = float("nan")  # the score comparisons use: test split, after the last epoch
    test_accuracy_last: float = float("nan")  # mean test accuracy over the last `score_epochs` epochs
    final_parameters: int = 0
    rent: float = 0.0
    score: float = float("nan")  # what comparisons decide on: final_test_accuracy charged for growth

    def __post_init__(self):
        # Without rent the score is the test accuracy: a footer from before rent, or a result built by hand.
        if self.rent == 0 and math.isnan(self.score):
            self.score = self.final_test_accuracy

    @property
    def val_score(self) -> float:
        """The final validation accuracy charged for growth like the score (pp): what a learner may compare
        branches on (it never sees the test split). Exactly `final_val_accuracy` without rent."""
        if self.rent == 0:
            return self.final_val_accuracy
        return self.final_val_accuracy - (self.final_test_accuracy - self.score)  # the score's own charge

    @classmethod
    def not_started(cls, config: EpisodeConfig, out_dir: str | Path, error: str) -> "EpisodeResult":
        """An episode that failed before its run file existed (or whose worker process died)."""
        nan = float("nan")
        run_id = config.run_id()
        return cls(run_id, Path(out_dir) / f"{run_id}.jsonl", "failed", 0, nan, nan, 0, 0, 0, 0.0, 0.0, error)

    @classmethod
    def from_footer(cls, path: Path, run_id: str, footer: dict) -> "EpisodeResult":
        """The result of an episode already on disk (a rerun of a deterministic configuration is skipped)."""
        def number(key: str) -> float:
            return float("nan") if footer.get(key) is None else float(footer[key])

        return cls(
            run_id=run_id, path=path, status=footer["status"], steps=footer["steps"],
            final_val_accuracy=number("final_val_accuracy"), best_val_accuracy=number("best_val_accuracy"),
            seeds_created=footer["seeds_created"], seeds_fossilized=footer["seeds_fossilized"],
            seeds_culled=footer["seeds_culled"], episode_return=number("return"), wall_seconds=number("wall_seconds"),
            error=footer.get("error"), final_test_accuracy=number("final_test_accuracy"),
            test_accuracy_last=number("test_accuracy_last"), final_parameters=int(footer.get("final_parameters") or 0),
            rent=float(footer.get("rent") or 0.0), score=number("score"),
        )  # fmt: skip

    def summary_line(self) -> str:
        if self.status != "complete":
            return f"{self.run_id}: {self.status.upper()} after {self.steps} steps: {self.error}"
        test = "" if math.isnan(self.final_test_accuracy) else f"test {self.final_test_accuracy:.2f}%, "
        if self.rent and not math.isnan(self.score):
            test += f"score {self.score:.2f} at rent {self.rent:g}, "
        return (
            f"{self.run_id}: {test}final val {self.final_val_accuracy:.2f}% (best {self.best_val_accuracy:.2f}%), "
            f"seeds {self.seeds_created} created / {self.seeds_fossilized} fossilized / "
            f"{self.seeds_culled} culled, return {self.episode_return:+.2f}, {self.wall_seconds:.1f}s"
            + (f", {self.branches} branch runs" if self.branches else "")
        )


class Episode:
    """The whole mutable state of one episode (everything a fork would need to snapshot)."""

    def __init__(self, config: EpisodeConfig, data: TaskData, run_id: str):
        self.device = torch.device(config.device)
        if self.device.type != "cpu":  # one copy per episode on the device; the cached CPU tensors stay untouched
            data = dataclasses.replace(data, **{k: getattr(data, k).to(self.device) for k in
                                                ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})  # fmt: skip
        self.config, self.data, self.run_id = config, data, run_id
        streams = np.random.SeedSequence(config.seed).spawn(5)
        # Seeds are initialised from the episode's own stream, not torch's global one, so a snapshot of the
        # episode carries everything a fork needs to replay it exactly.
        self.seed_init_generator = torch.Generator().manual_seed(int(streams[4].generate_state(1)[0]))
        order = streams[1] if config.data_order_seed is None else np.random.SeedSequence([config.data_order_seed, 1])
        self.data_generator = torch.Generator().manual_seed(int(order.generate_state(1)[0]))
        self.probe_generator = torch.Generator().manual_seed(int(streams[2].generate_state(1)[0]))
        self.controller_rng = np.random.default_rng(streams[3])

        # The host's initial weights come from torch's global RNG (layer constructors draw from it); forking it
        # keeps the caller's own random stream (an RL learner stepping episodes in its process) untouched.
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also reseed the CUDA generators, which fork_rng(devices=[])
            # does not restore, and nothing here draws from them.
            torch.default_generator.manual_seed(int(streams[0].generate_state(1)[0]))
            self.model = HostNetwork(config.host, data.input_shape, data.num_classes).to(self.device)
        self.initial_parameters = sum(p.numel() for p in self.model.parameters())
        self.host_optimizer = self._sgd(self.model.host_parameters())
        self.seed_optimizers: dict[int, torch.optim.Optimizer] = {}
        self.epoch = 0
        self.global_step = 0
        self.seeds_created = self.seeds_fossilized = self.seeds_culled = 0
        self.dead_seeds: list[str] = []  # faulted by seed_faults (dead or frozen, seed_fault_mode); footer only, never observed
        self.seed_zero_gradient_share: dict[int, float] = {}  # slot index -> the last epoch's share (train_epoch)
        self.val_loss_history: list[float] = []
        self.val_accuracy_history: list[float] = []
        self.best_val_accuracy = -math.inf
        self.best_val_loss = math.inf
        self.plateau_epochs = 0
        self.train_loss = self.train_accuracy = 0.0
        self.telemetry: dict = {}
        self.contributions: dict[int, dict] = {}
        self.batches_per_epoch = math.ceil(len(data.train_x) / config.batch_size)
        # Test-split scores, kept apart from everything a decision reads (observation_record never includes them).
        self.test_scores: list[dict] = []

    def _sgd(self, params) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay)

    @property
    def slots(self) -> list[SeedSlot]:
        return list(self.model.seed_slots)

    def learning_rate(self, epoch: int) -> float:
        c = self.config
        if c.lr_schedule == "constant":
            return c.learning_rate
        return c.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / c.max_epochs))

    # ----- observation ---------------------------------------------------------------------------------
    @property
    def action_space(self) -> tuple[str, ...]:
        """The flat action names of this host (world.actions): the single-slot space for one slot."""
        return action_names(len(self.slots))

    def legal_mask(self) -> tuple[bool, ...]:
        """Per action of `action_space`. Each slot on its own: GERMINATE a blueprint into a DORMANT slot that
        takes it (the episode's blueprints, narrowed by the host's slot_blueprints), ADVANCE a seed whose stage
        has a next one, CULL any active seed. A seed in one slot never blocks another slot."""
        legal = []
        for name in self.action_space:
            action = Action.from_fine(name)
            slot = self.slots[action.slot]
            if action.coarse == "WAIT":
                legal.append(True)
            elif action.coarse == "GERMINATE":
                allowed = self.config.host.blueprints_of_slot(action.slot, self.config.blueprints)
                legal.append(slot.stage == Stage.DORMANT and action.blueprint in allowed)
            elif action.coarse == "ADVANCE":
                legal.append(slot.is_active and slot.stage in NEXT_STAGE)
            else:
                legal.append(slot.is_active)
        return tuple(legal)

    def slot_record(self, slot: SeedSlot) -> dict:
        s = slot.state
        cooldown = 0
        if slot.stage == Stage.EMBARGOED:
            cooldown = self.config.embargo_epochs - s.epochs_in_stage + 1
        elif slot.stage == Stage.RESETTING:
            cooldown = 1 - s.epochs_in_stage
        measured = self.contributions.get(slot.index, {})
        return {
            "index": slot.index,
            "stage": slot.stage.name,
            "seed_id": s.seed_id,
            "blueprint": s.blueprint,
            "epochs_in_stage": s.epochs_in_stage,
            "alpha": slot.alpha,
            "blend_epochs": s.blend_epochs,
            "accuracy_at_germination": s.accuracy_at_germination,
            "accuracy_at_stage_start": s.accuracy_at_stage_start,
            "contribution": measured.get("contribution"),
            "accuracy_with_seed": measured.get("with_seed"),
            "accuracy_without_seed": measured.get("without_seed"),
            "cooldown_remaining": max(0, cooldown),
            # Of the seed now in the slot, measured while it trained in the last epoch (None: it has not yet).
            "seed_zero_gradient_share": self.seed_zero_gradient_share.get(slot.index) if slot.is_active else None,
            "seed_parameters": sum(p.numel() for p in slot.seed.parameters()) if slot.seed else 0,
            "last_change_epoch": s.events[-1].epoch if s.events else None,
        }

    def observation_record(self) -> dict:
        vl, va = self.val_loss_history, self.val_accuracy_history
        return {
            "epoch": self.epoch,
            "max_epochs": self.config.max_epochs,
            "global_step": self.global_step,
            "learning_rate": self.learning_rate(self.epoch + 1),
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": vl[-1],
            "val_accuracy": va[-1],
            "previous_val_loss": vl[-2] if len(vl) > 1 else None,
            "previous_val_accuracy": va[-2] if len(va) > 1 else None,
            "best_val_accuracy": self.best_val_accuracy,
            "best_val_loss": self.best_val_loss,
            "plateau_epochs": self.plateau_epochs,
            "val_loss_history": vl[-HISTORY_LENGTH:],
            "val_accuracy_history": va[-HISTORY_LENGTH:],
            "seeds_created": self.seeds_created,
            "seeds_fossilized": self.seeds_fossilized,
            "seeds_culled": self.seeds_culled,
            "slots": [self.slot_record(s) for s in self.slots],
            "task": self.task_record(),
            "telemetry": self.telemetry,
        }

    def task_record(self) -> dict:
        """What kind of problem this is, as a controller may know it before training: the host's size and
        shape, its seed slots, the training set and the inputs (the `task` feature group). Constant in an
        episode, so a policy trained across tasks can tell them apart."""
        c, data = self.config, self.data
        return {
            "host_parameters": self.initial_parameters,
            "host_widths": list(c.host.widths),
            "slot_channels": [c.host.widths[s] for s in c.host.slots],
            "train_size": len(data.train_x),
            "num_classes": data.num_classes,
            "input_shape": list(data.input_shape),
        }

    def seed_improvement(self, slot: SeedSlot) -> float:
        """Val accuracy with the seed fully applied minus val accuracy just before it was germinated (pp).

        Measured with the seed at alpha = 1 whatever the stage, so a TRAINING seed (not yet in the host's
        output) is judged on what it would add; the same quantity as the `seed_total_improvement` feature.
        """
        with_seed = self.contributions.get(slot.index, {}).get("with_seed", self.val_accuracy_history[-1])
        return with_seed - slot.state.accuracy_at_germination

    # ----- acting --------------------------------------------------------------------------------------
    def apply(self, action: Action) -> dict:
        """Apply the controller's action to its slot; returns what happened (events, gate outcome)."""
        epoch, slot = self.epoch, self.slots[action.slot]
        events, gate = [], None
        if action.coarse == "GERMINATE":
            self.seeds_created += 1
            seed_id = f"{self.run_id}/seed-{self.seeds_created}"
            acc = self.val_accuracy_history[-1]
            init_draw = int(torch.randint(2**62, (1,), generator=self.seed_init_generator))
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(init_draw)
                events.append(slot.germinate(action.blueprint, seed_id=seed_id, epoch=epoch, val_accuracy=acc, device=self.device))
            fault = dict(self.config.seed_faults).get(action.blueprint, 0.0)
            # Drawn only for a blueprint that can fault, so a configuration without faults draws what it always drew.
            if fault and torch.rand(1, generator=self.seed_init_generator).item() < fault:
                fault_seed(slot.seed, action.blueprint, self.config.seed_fault_mode, self.config.seed_fault_scale, key=init_draw)
                self.dead_seeds.append(seed_id)
            self.seed_optimizers[slot.index] = self._sgd(slot.seed.parameters())
            # GERMINATED is transient: the seed starts training in the epoch that follows the decision.
            events.append(slot.move(Stage.TRAINING, epoch=epoch, cause="automatic"))
            slot.state.accuracy_at_stage_start = acc
        elif action.coarse == "ADVANCE":
            result = check_gate(
                self.config.gates,
                slot.stage,
                epochs_in_stage=slot.state.epochs_in_stage,
                alpha=slot.alpha,
                improvement_since_germination=self.seed_improvement(slot),
            )
            gate = {"passed": result.passed, "reason": result.reason, "from_stage": slot.stage.name}
            if result.passed:
                events.append(slot.move(NEXT_STAGE[slot.stage], epoch=epoch, cause="controller", detail=result.reason))
                slot.state.accuracy_at_stage_start = self.val_accuracy_history[-1]
                if slot.stage == Stage.FOSSILIZED:
                    self._fossilize(slot)
        elif action.coarse == "CULL":
            events.append(slot.cull(epoch=epoch))
            self.seed_optimizers.pop(slot.index, None)
            self.contributions.pop(slot.index, None)
            self.seeds_culled += 1
            events.append(slot.move(Stage.EMBARGOED, epoch=epoch, cause="automatic"))
        return {"applied": gate is None or gate["passed"], "gate": gate, "events": [e.to_record() for e in events]}

    def _fossilize(self, slot: SeedSlot) -> None:
        # The seed joins the host: from now on the host optimiser trains it, and no one can cull it.
        self.seed_optimizers.pop(slot.index, None)
        self.contributions.pop(slot.index, None)  # no longer measured: the seed cannot leave any more
        self.host_optimizer.add_param_group({"params": list(slot.seed.parameters())})
        self.seeds_fossilized += 1

    def advance_clocks(self) -> list[dict]:
        """After an epoch: stage clocks tick, blending progresses, cool-downs expire."""
        events = []
        for slot in self.slots:
            slot.state.epochs_in_stage += 1
            if slot.stage == Stage.BLENDING:
                slot.state.blend_epochs += 1
            if slot.stage == Stage.EMBARGOED and slot.state.epochs_in_stage >= self.config.embargo_epochs:
                events.append(slot.move(Stage.RESETTING, epoch=self.epoch, cause="automatic"))
            elif slot.stage == Stage.RESETTING and slot.state.epochs_in_stage >= 1:
                events.append(slot.move(Stage.DORMANT, epoch=self.epoch, cause="automatic"))
                slot.state = type(slot.state)(events=slot.state.events)
        return [e.to_record() for e in events]

    # ----- training ------------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """Train one epoch; returns seconds spent in telemetry collection."""
        c, data = self.config, self.data
        lr = self.learning_rate(self.epoch + 1)
        optimizers = [self.host_optimizer, *self.seed_optimizers.values()]
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        monitor = None
        if c.telemetry.enabled:
            monitor = GradientMonitor(self.model.host_weight_tensors(), self.batches_per_epoch, c.telemetry.sampled_batches)
        # Each learning seed's own gradient health (schema 5): the share of its gradient entries exactly 0, on a
        # few batches spread over the epoch. Reading gradients changes nothing that is trained.
        seeds = {slot.index: list(slot.seed.parameters()) for slot in self.slots if slot.is_active and slot.seed is not None}
        every = max(1, self.batches_per_epoch // SEED_GRADIENT_BATCHES)
        zeros, read = dict.fromkeys(seeds, 0), 0  # zero gradient entries per seed; batches read
        self.model.train()
        order = torch.randperm(len(data.train_x), generator=self.data_generator)
        loss_sum, correct, telemetry_seconds = 0.0, 0, 0.0
        for batch_index, start in enumerate(range(0, len(order), c.batch_size)):
            idx = order[start : start + c.batch_size]
            xb, yb = data.train_x[idx], data.train_y[idx]
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            logits = self.model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            total = loss
            for seed_logits in self.model.isolated_seed_logits():
                total = total + nn.functional.cross_entropy(seed_logits, yb)
            total.backward()
            if monitor is not None:
                t0 = time.perf_counter()
                monitor.observe(batch_index)
                telemetry_seconds += time.perf_counter() - t0
            if batch_index % every == every // 2:
                read += 1
                for index, params in seeds.items():  # a parameter without a gradient counts as all zeros
                    zeros[index] += sum(p.numel() if p.grad is None else int((p.grad == 0).sum()) for p in params)
            for opt in optimizers:
                opt.step()
            self.global_step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        self.epoch += 1
        self.train_loss = loss_sum / len(order)
        self.train_accuracy = 100.0 * correct / len(order)
        if monitor is not None:
            self.telemetry = {"gradients": monitor.summary()}
        self.seed_zero_gradient_share = {index: zeros[index] / (read * sum(p.numel() for p in params))
                                         for index, params in seeds.items() if read}  # fmt: skip
        return telemetry_seconds

    def score_test(self) -> None:
        """Test-split accuracy of the host as it stands (seeds at their current alpha), after one of the last
        `score_epochs` epochs. Evaluation mode and no gradient: nothing the episode does next changes."""
        data = self.data
        result = evaluate(self.model, data.test_x, data.test_y, data.num_classes, max(256, self.config.batch_size))
        self.test_scores.append({"epoch": self.epoch, "accuracy": result.accuracy, "loss": result.loss})

    def measure(self, initial: bool = False) -> float:
        """Validation, seed contributions and telemetry after an epoch; returns telemetry seconds."""
        c, data = self.config, self.data
        bs = max(256, c.batch_size)
        if initial:
            # No training yet: train metrics come from the first batches, in eval mode.
            n = min(len(data.train_x), 10 * c.batch_size)
            ev = evaluate(self.model, data.train_x[:n], data.train_y[:n], data.num_classes, bs)
            self.train_loss, self.train_accuracy = ev.loss, ev.accuracy
            self.telemetry = {"gradients": {"batches_seen": 0, "batches_sampled": 0, "layers": []}}
        val = evaluate(self.model, data.val_x, data.val_y, data.num_classes, bs)
        previous = self.val_accuracy_history[-1] if self.val_accuracy_history else None
        self.plateau_epochs = 0 if previous is None or val.accuracy - previous >= PLATEAU_THRESHOLD_PP else self.plateau_epochs + 1
        self.val_loss_history.append(val.loss)
        self.val_accuracy_history.append(val.accuracy)
        self.best_val_accuracy = max(self.best_val_accuracy, val.accuracy)
        self.best_val_loss = min(self.best_val_loss, val.loss)

        for slot in self.slots:
            if slot.stage in (Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY):
                accs = {}
                for label, alpha in (("with_seed", 1.0), ("without_seed", 0.0)):
                    if slot.alpha == alpha:
                        accs[label] = val.accuracy
                    else:
                        with slot.forced_alpha(alpha):
                            accs[label] = evaluate(self.model, data.val_x, data.val_y, data.num_classes, bs).accuracy
                self.contributions[slot.index] = {**accs, "contribution": accs["with_seed"] - accs["without_seed"]}

        t0 = time.perf_counter()
        if c.telemetry.enabled:
            named = self.model.host_weight_tensors()
            self.telemetry.update(
                {
                    "per_class_accuracy": val.per_class_accuracy,
                    "sharpness": sharpness(self.model, data.val_x, data.val_y, c.telemetry, self.probe_generator),
                    "weight_norms": weight_norms(named),
                    "train_val_loss_gap": val.loss - self.train_loss,
                }
            )
        else:
            self.telemetry = {"per_class_accuracy": val.per_class_accuracy}
        return time.perf_counter() - t0

    # ----- one step --------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.epoch >= self.config.max_epochs

    def transition(self, action: Action) -> tuple[dict, float, dict]:
        """What happens after a decision: apply the action, train one epoch, tick the stage clocks, measure
        (and, in the last `score_epochs` epochs, score the test split), then reward the action by what followed.

        Returns (outcome, reward, info): the outcome record a raw run stores with the step (events, gate,
        accuracies before and after, reward and its parts), the reward, and timings. The episode runner, the
        branches and the Gymnasium environment all step through here, so they cannot drift apart.
        """
        if self.done:
            raise RuntimeError(f"the episode is over: all {self.config.max_epochs} epochs are trained")
        acc_before, best_before = self.val_accuracy_history[-1], self.best_val_accuracy
        charge_before = self.growth_charge()
        outcome = self.apply(action)
        telemetry_seconds = self.train_epoch()
        outcome["events"] += self.advance_clocks()
        telemetry_seconds += self.measure()
        test_seconds = 0.0
        if self.epoch > self.config.max_epochs - self.config.score_epochs:
            t0 = time.perf_counter()
            self.score_test()
            test_seconds = time.perf_counter() - t0
        acc_after, best_after = self.val_accuracy_history[-1], self.best_val_accuracy
        rent_charge = self.growth_charge() - charge_before if self.config.rent else None
        reward = step_reward(self.config.reward, acc_before, acc_after, best_before, best_after, rent_charge)
        outcome.update(
            val_accuracy_before=acc_before, val_accuracy_after=acc_after, val_loss_after=self.val_loss_history[-1],
            train_loss_after=self.train_loss, best_val_accuracy_before=best_before, best_val_accuracy_after=best_after,
            **reward,
        )  # fmt: skip
        return outcome, reward["reward"], {"telemetry_seconds": telemetry_seconds, "test_seconds": test_seconds}

    def parameter_count(self) -> int:
        """Parameters of the network as it stands: the host and every seed in a slot, whatever its stage."""
        return sum(p.numel() for p in self.model.parameters())

    def growth_charge(self) -> float:
        """What the network's size costs the score now (pp); 0.0 at rent 0."""
        return growth_charge(self.config.rent, self.parameter_count(), self.initial_parameters)

    def decision_state(self) -> tuple[dict, dict[str, float], tuple[bool, ...]]:
        """What a controller decides on: the raw observation record, its features and the legal actions."""
        record = self.observation_record()
        return record, observation_features(record), self.legal_mask()

    def test_summary(self) -> dict:
        """The footer's test-split fields. A run that stopped early (failed, or a branch ending at its horizon)
        has no test score: only the end of an episode is scored, so every score in a comparison means the same."""
        scores = self.test_scores
        final = scores[-1] if scores and scores[-1]["epoch"] == self.config.max_epochs else None
        return {
            "final_test_accuracy": final["accuracy"] if final else None,
            "final_test_loss": final["loss"] if final else None,
            "test_accuracy_last": sum(s["accuracy"] for s in scores) / len(scores) if final else None,
            "test_scores": list(scores) if final else [],
        }


def step_record(record: dict, features: dict, action_record: dict, outcome: dict, timing: dict) -> dict:
    """One step of a raw run (docs/raw-run-format.md): the observation decided on, the action, what followed."""
    record["red_flags"] = red_flags(record, features)
    return {"step": record["epoch"] + 1, "epoch": record["epoch"], "observation": record, "action": action_record,
            "outcome": outcome, "timing": timing}  # fmt: skip


def run_header(config: EpisodeConfig, episode: Episode, run_id: str, controller: dict) -> dict:
    """The raw run header: configuration, seeds, code, controller description, task and host sizes."""
    data = episode.data
    slot_channels = sorted({config.host.widths[s] for s in config.host.slots})
    return {
        "run_id": run_id,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "code_version": code_version(),
        "config": config.to_dict(),
        "seeds": {"episode": config.seed, "split": config.dataset.split_seed},
        "controller": controller,
        "action_space": list(episode.action_space),
        "task": {
            "dataset": data.name,
            "num_classes": data.num_classes,
            "input_shape": list(data.input_shape),
            "train_size": len(data.train_x),
            "val_size": len(data.val_x),
            "test_size": len(data.test_x),
            "noisy_labels": data.noisy_label_count,
        },
        # The episode's, not the network's now: a branch run starts from a snapshot that may hold a seed.
        "host_parameters": episode.initial_parameters,
        "blueprint_parameters": {b: {str(c): parameter_count(b, c) for c in slot_channels} for b in BLUEPRINTS},
        "torch_version": torch.__version__,
    }


def run_footer(episode: Episode, status: str, error: str | None, steps: int, episode_return: float, wall_seconds: float) -> dict:
    """The raw run footer: how the run ended and the episode's outcome, test score included."""
    test = episode.test_summary()
    parameters = episode.parameter_count()
    rent = episode.config.rent
    return {
        "status": status,
        "error": error,
        "steps": steps,
        "final_val_accuracy": episode.val_accuracy_history[-1],
        "best_val_accuracy": episode.best_val_accuracy,
        "seeds_created": episode.seeds_created,
        "seeds_fossilized": episode.seeds_fossilized,
        "seeds_culled": episode.seeds_culled,
        "return": episode_return,
        **test,
        "final_parameters": parameters,
        **({"dead_seeds": list(episode.dead_seeds)} if episode.config.seed_faults else {}),
        "rent": rent,
        "score": charged_score(test["final_test_accuracy"], rent, parameters, episode.initial_parameters),
        "wall_seconds": wall_seconds,
        "final_observation": episode.observation_record(),
        "final_legal": [a for a, ok in zip(episode.action_space, episode.legal_mask()) if ok],
    }


class EpisodeRun:
    """An episode in progress: its training state, its controller and the raw run file being written.

    `run_episode` drives one from start to end. Branching (tamiyo_models.episodes.branching) snapshots one between
    steps and continues copies of it with other actions.
    """

    def __init__(
        self,
        config: EpisodeConfig,
        out_dir: str | Path,
        controller: Controller | None = None,
        *,
        run_id: str | None = None,
        episode: Episode | None = None,
        extra_header: dict | None = None,
    ):
        self.started = time.perf_counter()
        self.config = config
        self.run_id = run_id or config.run_id()
        self.controller = controller or build_controller(config.controller)
        if episode is None:
            episode = Episode(config, load_task_data(config.dataset), self.run_id)
            self.controller.reset(episode.controller_rng)
            episode.measure(initial=True)
        self.episode = episode
        self.episode_return = 0.0
        self.steps_written = 0
        self.writer = RawRunWriter(out_dir, self.run_id)
        self.writer.write_header({**run_header(config, episode, self.run_id, self.controller.describe()), **(extra_header or {})})

    @property
    def done(self) -> bool:
        return self.episode.done

    def decide(self) -> tuple[dict, dict[str, float], tuple[bool, ...], Decision]:
        record, features, legal = self.episode.decision_state()
        return record, features, legal, self.controller.checked_decide(Observation(record, features, legal))

    def step(self, forced_action: Action | None = None) -> dict:
        """One decision and one epoch. `forced_action` overrides the controller's choice (a branch's first
        step); the controller still decides, so its state and the logged distribution stay what they were."""
        t0 = time.perf_counter()
        episode = self.episode
        record, features, legal, decision = self.decide()
        action_record = decision.to_record(self.controller.name, legal)
        action = decision.action
        if forced_action is not None:
            if not legal[forced_action.index]:
                raise ValueError(f"forced action {forced_action.fine} is not legal at step {episode.epoch + 1}")
            action = forced_action
            action_record.update(
                # An intervention, not a draw from the behaviour policy: no propensity. `probabilities` still
                # holds the controller's own distribution in this state.
                fine=action.fine, coarse=action.coarse, blueprint=action.blueprint, forced=True,
                propensity=None, stochastic=False, reason=f"branch: forced {action.fine}",
            )  # fmt: skip
        outcome, reward, info = episode.transition(action)
        self.episode_return += reward
        step = step_record(record, features, action_record, outcome, {"step_seconds": time.perf_counter() - t0, **info})
        self.writer.write_step(step)
        self.steps_written += 1
        return step

    def finish(self, error: str | None = None) -> EpisodeResult:
        """Close the run file with its footer: failed (an error), complete (every epoch trained) or truncated
        (stopped on purpose before the end, as a branch does at its horizon)."""
        episode = self.episode
        status = "failed" if error else ("complete" if episode.done else "truncated")
        footer = run_footer(episode, status, error, self.steps_written, self.episode_return, time.perf_counter() - self.started)
        self.writer.close(footer)
        return EpisodeResult.from_footer(self.writer.path, self.run_id, footer)

    def run_to(self, last_step: int) -> EpisodeResult:
        """Step until `last_step` (or the end), then close the file. An exception inside the episode is
        recorded in a footer with status "failed": a failed episode is never silently lost."""
        try:
            while not self.done and self.episode.epoch < last_step:
                self.step()
        except Exception as exc:
            return self.finish(error=f"{type(exc).__name__}: {exc}")
        return self.finish()


def run_episode(config: EpisodeConfig, out_dir: str | Path, controller: Controller | None = None) -> EpisodeResult:
    """Run one episode and write its raw telemetry run to `out_dir/<run_id>.jsonl`.

    A killed process leaves only a hidden `.partial` file, never a file that looks complete.
    """
    return EpisodeRun(config, out_dir, controller).run_to(config.max_epochs)
