"""Policy distillation: a near-deterministic policy into a stochastic actor that online RL can start from.

Phase 3's BCQ acts by the argmax of Q over the actions its data supports. At the shipped threshold (0.3) the
arena's data supports 1.08 actions per state on average (94% of states have exactly one), so its softmax is
near-deterministic (entropy 0.05 nats) and every action the data never took has probability 0: a policy-
gradient learner started from it can only reweight what the logged controllers already did. The student
here is a plain categorical actor trained on the teacher's greedy choices with label smoothing:

    target(a | s) = 1 - smoothing          if a is the teacher's greedy legal action in s
                    smoothing / (k - 1)    for each of the k - 1 other legal actions
    loss          = cross-entropy(target, student(s)), illegal actions masked out

on the states of the teacher's own training data. Where it fits, the student's greedy action is the teacher's
(so it starts where the teacher acts), and every legal action keeps a probability the learner can raise.
Agreement is reported on a held-out share of the *runs* (states of one episode are not independent).

The teacher can also be a fixed schedule (`fixed:<blueprint>@<epoch>`, controllers/reference.py): the best
reference controller on the arena is one, and a learner that is to beat it should start from it rather than
from a policy that trails it. `ScheduleTeacher` is that schedule written as a function of the observation
features, so it labels any state, including the ones its own episodes never reach (a branch's culled seed).
`HeuristicTeacher` does the same for the heuristic (the nightly loop's first champion), whose decision is a
function of a few features and the legal actions (policies/relabel.py says which).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..agents.base import PolicyModule, categorical_columns, mask_logits
from ..agents.learning import fit_encoders, optimiser
from ..agents.networks import MLPActor
from ..world.actions import ADVANCE, FINE_ACTIONS, WAIT, action_names, germinate, slots_of_space


@dataclass(frozen=True)
class DistilConfig:
    smoothing: float = 0.05  # probability spread over the other legal actions (about 0.25 nats with 4 legal)
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 1e-3
    batch_size: int = 256
    updates: int = 10_000
    held_out: float = 0.1  # share of runs kept out of training, for the agreement report
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"distil: smoothing must be in [0, 1), got {self.smoothing}")

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


@dataclass
class DistilResult:
    actor: MLPActor
    agreement_train: float  # share of states where the student's greedy action is the teacher's
    agreement_held_out: float  # the same on the held-out runs (nan when none were held out)
    entropy: float  # the student's mean entropy (nats) over all states
    history: list[dict] = field(default_factory=list)


class ScheduleTeacher(PolicyModule):
    """`fixed:<blueprint>@<epoch>` as scores over the observation features: graft the blueprint once the epoch
    is reached and no seed was ever grafted (none fossilized or culled), otherwise ADVANCE, otherwise WAIT.
    Masked and argmaxed, this is FixedSchedule.decide on every state (the host has one seed slot, so a graft is
    legal only while the slot is free; ADVANCE only with an active seed): the fixed schedule never grafts again
    after a cull, and neither does this. Not a learnable network and never saved; it only labels states."""

    kind = "schedule-teacher"

    def __init__(self, name: str, feature_names):
        from ..controllers import reference_controller

        super().__init__()
        config = reference_controller(name)
        if config.kind != "fixed-schedule":
            raise ValueError(f"distil: {name!r} is not a fixed schedule (fixed:<blueprint>@<epoch>); only those can teach")
        if config.slot:
            raise ValueError(f"distil: {name!r} grafts into slot {config.slot}; only slot-0 schedules can teach (yet)")
        names = list(feature_names)
        missing = [f for f in ("epoch", "seeds_fossilized", "seeds_culled") if f not in names]
        if missing:
            raise ValueError(f"distil: the schedule {name!r} reads features {missing} the feature set lacks")
        self.name, self.germinate_epoch = name, config.germinate_epoch
        self.columns = [names.index(f) for f in ("epoch", "seeds_fossilized", "seeds_culled")]
        self.graft = germinate(config.blueprint).index
        # Order of preference where legal: the due graft (3) > ADVANCE (2) > WAIT (1) > every other action (0).
        base = torch.zeros(len(FINE_ACTIONS))
        base[ADVANCE.index], base[WAIT.index] = 2.0, 1.0
        self.register_buffer("base", base)

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        epoch, fossilized, culled = (obs[:, c] for c in self.columns)
        due = (epoch >= self.germinate_epoch) & (fossilized + culled == 0)
        scores = self.base.expand(len(obs), -1).clone()
        scores[:, self.graft] = torch.where(due, 3.0, -1.0)
        return scores

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # The schedule acts on slot 0 only; on a wider host's mask, every other slot's actions score as the
        # least preferred (0), so the same choice is made wherever slot 0 has one.
        scores = self.raw_logits(obs)
        if mask is not None and mask.shape[-1] > scores.shape[-1]:
            scores = torch.nn.functional.pad(scores, (0, mask.shape[-1] - scores.shape[-1]))
        return mask_logits(scores, mask)


# The observation features the heuristic reads (controllers/heuristic.py); policies/relabel.py names the same.
HEURISTIC_INPUTS = ("epoch", "plateau_epochs", "has_active_seed", "seed_stage", "seed_epochs_in_stage", "seed_total_improvement")
SLOT_INPUTS = ("active", "stage", "epochs_in_stage", "total_improvement")  # of each slot k: slot{k}_active, ...


class HeuristicTeacher(PolicyModule):
    """The heuristic's decision in each state, as scores (its choice 1, every other action 0; masked like any
    policy's). Its blueprint is a round-robin over one episode's grafts; a fresh controller per state takes the
    first, the blueprint it grafts first in every episode (and most episodes graft once). Never saved."""

    kind = "heuristic-teacher"

    def __init__(self, feature_names):
        super().__init__()
        names = list(feature_names)
        missing = [f for f in HEURISTIC_INPUTS if f not in names]
        if missing:
            raise ValueError(f"distil: the heuristic reads features {missing} the feature set lacks")
        # On a multi-slot host the heuristic reads each slot's seed from the per-slot features, when present.
        self.inputs = HEURISTIC_INPUTS + tuple(f for f in names if f.startswith("slot") and f.endswith(SLOT_INPUTS))
        self.columns = [names.index(f) for f in self.inputs]

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs, torch.ones(len(obs), len(FINE_ACTIONS), dtype=torch.bool))

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        from ..controllers import HeuristicController, Observation

        # Scored over the mask's space: the heuristic reads which slots' actions are legal from its width.
        mask = torch.ones(len(obs), len(FINE_ACTIONS), dtype=torch.bool) if mask is None else mask
        scores = torch.zeros(len(obs), mask.shape[-1])
        slots = slots_of_space(mask.shape[-1])
        missing = [f"slot{k}_{f}" for k in range(slots) for f in SLOT_INPUTS if slots > 1 and f"slot{k}_{f}" not in self.inputs]
        if missing:
            raise ValueError(f"distil: the heuristic on {slots} slots reads features {missing} the feature set lacks "
                             "(a feature set with +slots)")  # fmt: skip
        for row, (values, legal) in enumerate(zip(obs[:, self.columns].tolist(), mask.tolist())):
            decision = HeuristicController().decide(Observation({}, dict(zip(self.inputs, values)), tuple(legal)))
            scores[row, decision.action.index] = 1.0
        return mask_logits(scores, mask)


def teacher_actions(teacher: PolicyModule, obs: torch.Tensor, legal: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    teacher.eval()
    with torch.no_grad():
        return torch.cat([teacher.logits(obs[i : i + chunk], legal[i : i + chunk]).argmax(dim=-1) for i in range(0, len(obs), chunk)])


def smoothed_targets(actions: torch.Tensor, legal: torch.Tensor, smoothing: float) -> torch.Tensor:
    legal = legal.to(torch.float32)
    others = legal.sum(dim=-1, keepdim=True) - 1
    # A state with one legal action keeps all its mass there (nothing to spread over).
    keep = 1 - smoothing * (others > 0).float()
    return (legal * smoothing / others.clamp(min=1)).scatter(1, actions[:, None], keep)


def fit_targets(student, obs: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, *, updates: int, learning_rate: float,
                batch_size: int, seed: int, weights: torch.Tensor | None = None, on_update=None) -> None:  # fmt: skip
    """Cross-entropy steps of `student` towards the target distributions (illegal actions masked out), on
    minibatches drawn uniformly or, with `weights`, in proportion to them; `on_update(update, loss)` after each.
    Leaves the student in eval mode. Shared by distillation and vine.py's improvement step."""
    opt = optimiser(student.parameters(), learning_rate)
    generator = torch.Generator().manual_seed(seed)
    student.train()
    for update in range(1, updates + 1):
        if weights is None:
            idx = torch.randint(len(obs), (batch_size,), generator=generator)
        else:
            idx = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        logp = torch.log_softmax(student.logits(obs[idx], mask[idx]), dim=-1).masked_fill(~mask[idx], 0.0)
        loss = -(targets[idx] * logp).sum(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_update is not None:
            on_update(update, float(loss.detach()))
    student.eval()


def distil_policy(teacher: PolicyModule, observations: np.ndarray, legal: np.ndarray, feature_names,
                  config: DistilConfig = DistilConfig(), *, groups: np.ndarray | None = None, log=print) -> DistilResult:  # fmt: skip
    """Train a student actor on `observations` (the teacher's feature columns) and their legal masks.
    `groups`: the run of each state, so the held-out share is whole runs."""
    obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
    mask = torch.as_tensor(np.asarray(legal), dtype=torch.bool)
    if obs.ndim != 2 or obs.shape[1] != len(feature_names) or mask.ndim != 2 or len(mask) != len(obs):
        raise ValueError(f"observations {tuple(obs.shape)} and legal {tuple(mask.shape)} do not match "
                         f"{len(feature_names)} features and one mask per state")  # fmt: skip
    n_actions = mask.shape[1]
    action_names(slots_of_space(n_actions))  # a mask of no action space is refused here, naming the width
    rng = np.random.default_rng(config.seed)
    groups = np.arange(len(obs)) if groups is None else np.asarray(groups)
    unique = np.unique(groups)
    held = set(rng.choice(unique, size=round(config.held_out * len(unique)), replace=False).tolist())
    test = torch.as_tensor(np.array([g in held for g in groups.tolist()]))
    train = ~test
    if not bool(train.any()):
        raise ValueError("no training states left after holding out runs")

    torch.manual_seed(config.seed)
    student = MLPActor(len(feature_names), config.hidden, n_actions, categorical=categorical_columns(feature_names))
    fit_encoders(obs[train].numpy(), student)
    greedy = teacher_actions(teacher, obs, mask)
    targets = smoothed_targets(greedy, mask, config.smoothing)
    history, started, report_every = [], time.perf_counter(), max(1, config.updates // 4)

    def report(update: int, loss: float) -> None:
        if update % report_every == 0 or update == config.updates:
            elapsed = time.perf_counter() - started
            history.append({"update": update, "loss": loss, "updates_per_second": update / elapsed})
            log(f"distil: update {update}/{config.updates}, loss {loss:.4f}, {update / elapsed:.0f} updates/s")

    fit_targets(student, obs[train], mask[train], targets[train], updates=config.updates, learning_rate=config.learning_rate,
                batch_size=config.batch_size, seed=config.seed, on_update=report)  # fmt: skip
    with torch.no_grad():
        chosen = student.logits(obs, mask).argmax(dim=-1)
        entropy = float(student.entropy(obs, mask).mean())
    agree = (chosen == greedy).float()
    result = DistilResult(student, float(agree[train].mean()), float(agree[test].mean()) if bool(test.any()) else float("nan"),
                          entropy, history)  # fmt: skip
    log(f"distil: greedy agreement with the teacher {result.agreement_train:.4f} on training runs, "
        f"{result.agreement_held_out:.4f} on {len(held)} held-out runs; mean entropy {entropy:.3f} nats")
    return result


def is_schedule(teacher: str | Path) -> bool:
    """Whether a teacher reference names a fixed schedule (or the heuristic) rather than a policy file."""
    return str(teacher).startswith("fixed:") or str(teacher) == "heuristic"


def schedule_or_policy_teacher(teacher: str | Path, feature_set: str) -> tuple:
    """(teacher module, its feature names, what identifies it, the lineage parent, the student's algorithm and
    phase) for a policy file or a fixed schedule's name (whose student reads `feature_set`)."""
    from ..agents.saved import load_policy, policy_file_digest
    from ..world.features import FEATURE_SETS

    if is_schedule(teacher):
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"distil: unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
        name, features = str(teacher), tuple(FEATURE_SETS[feature_set])
        identity = {"teacher_schedule": name, "feature_set": feature_set}
        module = HeuristicTeacher(features) if name == "heuristic" else ScheduleTeacher(name, features)
        return module, features, identity, name, f"distilled-{name}", "reference"
    path = Path(teacher)
    module, payload = load_policy(path)
    return (module, tuple(payload["feature_names"]), {"teacher_sha256": policy_file_digest(path)}, str(path.resolve()),
            f"distilled-{payload['algorithm']}", payload["phase"])  # fmt: skip


def distil_policy_file(teacher_path: str | Path, warehouse: str | Path, out_path: str | Path,
                       config: DistilConfig = DistilConfig(), *, feature_set: str = "base+lifecycle+task",
                       seed_slots: int | None = None, log=print) -> Path:  # fmt: skip
    """Distil the policy file `teacher_path` (or the fixed schedule it names, `fixed:<blueprint>@<epoch>`, whose
    student reads `feature_set`) on every state of `warehouse` (the data a Phase 3 policy was trained on; nothing
    an evaluation scores) and save the student as a policy file whose parent is the teacher.
    An existing student of the same teacher and settings is reused, so a resumed run starts from it again.
    `seed_slots`: the runs of that action space only (the student scores its 1 + 7n actions); None: the
    warehouse's one space (load_transitions refuses several)."""
    from ..agents.saved import load_policy, save_policy
    from ..transitions.dataset import load_transitions

    out_path = Path(out_path)
    teacher, features, identity, parent, algorithm, phase = schedule_or_policy_teacher(teacher_path, feature_set)
    if out_path.exists():
        meta = load_policy(out_path)[1]["metadata"]
        if all(meta.get(k) == v for k, v in identity.items()) and meta.get("distil") == config.to_dict():
            log(f"distil: reusing {out_path} (same teacher and settings)")
            return out_path
    # Every feature, the per-slot ones too: a student of a +slots teacher (a two-slot Phase 3 policy) reads them.
    data = load_transitions(warehouse, "full+slots", seed_slots=seed_slots).select_features(features)
    result = distil_policy(teacher, data.observations, data.legal, features, config, groups=data.run_ids, log=log)
    return save_policy(result.actor, features, out_path, algorithm=algorithm, phase=phase, parent=parent,
                       metadata={"distil": config.to_dict(), **identity, "agreement_train": result.agreement_train,
                                 "agreement_held_out": result.agreement_held_out, "entropy": result.entropy,
                                 "warehouse": str(Path(warehouse).resolve()), "states": len(data)})  # fmt: skip
