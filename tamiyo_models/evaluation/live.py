"""Live paired evaluation: fresh episodes under each policy and under the heuristic, same seeds and configs.

For each configuration (dataset, host, optimiser, schedule, seed) every controller runs one episode; the seed
fixes the initialisation and the data order, so the only difference inside a pair is the controller, and the
paired difference policy - heuristic cancels the luck of the draw. The score is the final accuracy on the
**test split**, which no controller saw, charged for growth at the configurations' rent (docs/arena.md,
Compute rent; at rent 0 the accuracy itself); the raw test accuracy and validation, which all controllers
watched, are reported beside it. Seeds
must be disjoint from the training data's seeds: a policy evaluated on the very episodes it imitated would be
graded on memory.

Beside every difference: the **null control** (the heuristic rerun on fresh data orders: its spread is the
noise floor, and from it the pairs needed to detect 0.5 and 1 pp) and, with `replicate=K`, the
**replication** of every pair on K fresh data orders. A result counts when it holds on both
(docs/arena.md). The episodes come from the shared paired engine (paired.py); reference controllers (never
grow, fixed schedules, ...) can be evaluated beside the policies on the same pairs.

Reported per controller: mean final accuracy, the mean paired difference with a bootstrap interval over pairs,
win / tie / loss counts, action distributions, seeds created / fossilized / culled, the action mix per epoch,
and the agreement with the heuristic on the controller's *own* trajectories (the heuristic's decision
computed on each observation it saw; its round-robin blueprint counter advances on its own germinations, so
fine agreement on GERMINATE is approximate and coarse agreement is the headline).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.stats import TIE_TOLERANCE, Interval, mean_ci, noise_floor, pairs_needed, win_tie_loss
from ..controllers import ControllerConfig, HeuristicController, Observation
from ..episodes.episode import EpisodeConfig
from ..policies.metrics import distribution
from ..world.actions import ACTION_INDEX, COARSE_ACTIONS, FINE_ACTIONS
from ..world.features import observation_features
from ..world.rawrun import read_raw_run


@dataclass
class Pair:
    seed: int
    config_summary: str
    heuristic_run: str
    policy_run: str
    heuristic_final: float  # the score that decides: test split, charged at the rent (paired.SCORES "test")
    policy_final: float
    heuristic_seeds: tuple[int, int, int]  # created, fossilized, culled
    policy_seeds: tuple[int, int, int]
    heuristic_val: float = math.nan  # validation split: what both controllers watched
    policy_val: float = math.nan
    fresh_difference: float = math.nan  # policy - heuristic on fresh data orders (mean over them), if replicated
    heuristic_accuracy: float = math.nan  # raw test accuracy, beside the score (they are equal at rent 0)
    policy_accuracy: float = math.nan
    heuristic_parameters: int = 0  # final parameters: what the rent charged
    policy_parameters: int = 0

    @property
    def difference(self) -> float:
        return self.policy_final - self.heuristic_final


@dataclass
class LiveEvaluation:
    pairs: list[Pair]
    failed: list[str]  # "run_id: error" of episodes that did not complete (their pair is left out)
    mean_policy: float
    mean_heuristic: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    wins: int
    ties: int
    losses: int
    action_distribution: dict[str, dict[str, float]]  # controller -> fine action -> share
    action_mix_by_epoch: dict[str, list[list[float]]]  # controller -> [epoch][coarse action] share
    seeds: dict[str, dict[str, float]]  # controller -> created/fossilized/culled (means per episode)
    agreement_coarse: float  # heuristic vs policy on the policy's own trajectories
    agreement_fine: float
    tie_tolerance: float = TIE_TOLERANCE
    score: str = "test"  # the split mean_* and the differences are measured on
    rent: float = 0.0  # pp per doubling of parameters the scores were charged (0: the score is the test accuracy)
    accuracy_difference: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))  # raw test
    val_difference: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))
    noise_floor: float = math.nan  # RMS of the null control's differences (pp)
    null_difference: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))
    pairs_for_half_pp: int = -1
    pairs_for_one_pp: int = -1
    fresh: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))  # n = 0: not replicated
    fresh_orders: int = 0

    @property
    def decided_by(self) -> str:
        from .paired import decided_by

        return decided_by(self.rent)

    @property
    def counts(self) -> bool:
        """The result counts as a win only when it holds on the original pairs and on fresh data orders."""
        return self.ci_low > 0 and self.fresh.n > 0 and self.fresh.low > 0

    def summary(self) -> dict[str, float]:
        return {
            "live_pairs": len(self.pairs),
            "live_mean_policy": self.mean_policy,
            "live_mean_heuristic": self.mean_heuristic,
            "live_mean_difference": self.mean_difference,
            "live_ci_low": self.ci_low,
            "live_ci_high": self.ci_high,
            "live_wins": self.wins,
            "live_ties": self.ties,
            "live_losses": self.losses,
            "live_agreement_coarse": self.agreement_coarse,
            "live_agreement_fine": self.agreement_fine,
            "live_rent": self.rent,
            "live_accuracy_mean_difference": self.accuracy_difference.mean,
            "live_val_mean_difference": self.val_difference.mean,
            "live_noise_floor": self.noise_floor,
            "live_pairs_for_half_pp": self.pairs_for_half_pp,
            "live_fresh_orders": self.fresh_orders,
            "live_fresh_mean_difference": self.fresh.mean,
            "live_fresh_ci_low": self.fresh.low,
            "live_fresh_ci_high": self.fresh.high,
        }

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for pair, raw in zip(self.pairs, d["pairs"]):
            raw["difference"] = pair.difference
        return d


def bootstrap_mean_ci(differences, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the mean, resampling pairs (never the two sides separately)."""
    interval = mean_ci(differences, confidence, resamples, seed)
    return interval.low, interval.high


def paired_configs(configs: list[EpisodeConfig], policy_path: str | Path) -> tuple[list[EpisodeConfig], list[EpisodeConfig]]:
    """(heuristic configs, policy configs): identical except for the controller."""
    return _with_controller(configs, ControllerConfig(kind="heuristic")), _with_controller(configs, policy_controller(policy_path))


def _with_controller(configs: list[EpisodeConfig], controller: ControllerConfig) -> list[EpisodeConfig]:
    return [dataclasses.replace(c, controller=controller) for c in configs]


def check_disjoint_seeds(configs: list[EpisodeConfig], training_seeds) -> None:
    shared = sorted({c.seed for c in configs} & {int(s) for s in training_seeds if s is not None})
    if shared:
        raise ValueError(
            f"{len(shared)} evaluation seeds were used for training data (e.g. {shared[:5]}): evaluate on held-out "
            "seeds, e.g. another batch seed"
        )


def evaluate_live(
    policy_path: str | Path,
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    *,
    training_seeds=(),
    workers: int = 1,
    resamples: int = 10_000,
    confidence: float = 0.95,
    tie_tolerance: float = TIE_TOLERANCE,
    seed: int = 0,
    null_orders: int = 1,
    replicate: int = 0,
) -> LiveEvaluation:
    """One policy against the heuristic on `configs` (see `evaluate_live_many`)."""
    return evaluate_live_many(
        {"policy": policy_path}, configs, out_dir, training_seeds={"policy": training_seeds}, workers=workers,
        resamples=resamples, confidence=confidence, tie_tolerance=tie_tolerance, seed=seed,
        null_orders=null_orders, replicate=replicate,
    )["policy"]  # fmt: skip


def policy_controller(policy_path: str | Path) -> ControllerConfig:
    return ControllerConfig(kind="policy", policy=f"file:{Path(policy_path).resolve()}")


def evaluate_live_many(
    policy_paths: dict[str, str | Path],
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    *,
    training_seeds: dict[str, object] | None = None,
    workers: int = 1,
    resamples: int = 10_000,
    confidence: float = 0.95,
    tie_tolerance: float = TIE_TOLERANCE,
    seed: int = 0,
    null_orders: int = 1,
    replicate: int = 0,
    references: dict[str, ControllerConfig] | None = None,
) -> dict[str, LiveEvaluation]:
    """Several policies (and reference controllers), each paired with the heuristic on the same configurations.

    The heuristic is deterministic, so its episode on a configuration is the same whichever controller it is
    paired with: it runs once per configuration (and once per fresh data order) and every controller is
    compared with that one run. All episodes go to the worker pool together, so the pool stays busy.
    `references`: reference controllers (label -> config) evaluated on the same pairs, e.g. never grow or the
    best fixed schedule of the arena, the bars every learned policy must also clear.
    """
    from .paired import run_paired

    if not configs:
        raise ValueError("no configurations to evaluate")
    if not policy_paths and not references:
        raise ValueError("no policies to evaluate")
    for name, seeds in (training_seeds or {}).items():
        try:
            check_disjoint_seeds(configs, seeds)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    arms = {REFERENCE: ControllerConfig(kind="heuristic")}
    arms.update({name: policy_controller(path) for name, path in policy_paths.items()})
    for name, controller in (references or {}).items():
        if name in arms:
            raise ValueError(f"reference controller {name!r} has the name of another evaluated controller")
        arms[name] = controller
    runs = run_paired(configs, arms, Path(out_dir), reference=REFERENCE, null_orders=null_orders, replicate=replicate,
                      workers=workers)  # fmt: skip
    ci = dict(resamples=resamples, confidence=confidence, seed=seed)
    return {name: _paired_evaluation(runs, name, tie_tolerance, **ci) for name in arms if name != REFERENCE}


REFERENCE = "heuristic"


def _paired_evaluation(runs, name: str, tie_tolerance: float, *, resamples: int, confidence: float, seed: int) -> LiveEvaluation:
    pairs, failed = [], []
    trajectories = {REFERENCE: [], "policy": []}
    indices = list(range(len(runs.configs)))
    fresh = runs.fresh_differences(name, indices)
    for i, config in enumerate(runs.configs):
        sides = {arm: runs.outcomes.get((i, arm, 0)) for arm in (REFERENCE, name)}
        missing = [arm for arm, o in sides.items() if o is None]
        if missing:
            failed += [f"{arm} on configuration {i} (seed {config.seed}): did not run" for arm in missing]
            continue
        h, p = sides[REFERENCE].result, sides[name].result
        bad = [o.result for o in sides.values() if not o.ok]  # a complete run without a finite test score is no pair
        if bad:
            failed += [f"{r.run_id}: {r.error or 'no finite test score'}" for r in bad]
            continue
        pairs.append(
            Pair(
                seed=config.seed,
                config_summary=_summary(config),
                heuristic_run=h.run_id,
                policy_run=p.run_id,
                heuristic_final=sides[REFERENCE].score("test"),
                policy_final=sides[name].score("test"),
                heuristic_seeds=(h.seeds_created, h.seeds_fossilized, h.seeds_culled),
                policy_seeds=(p.seeds_created, p.seeds_fossilized, p.seeds_culled),
                heuristic_val=h.final_val_accuracy,
                policy_val=p.final_val_accuracy,
                fresh_difference=float(fresh[i]),
                heuristic_accuracy=sides[REFERENCE].score("test_accuracy"),
                policy_accuracy=sides[name].score("test_accuracy"),
                heuristic_parameters=h.final_parameters,
                policy_parameters=p.final_parameters,
            )
        )
        trajectories[REFERENCE].append(read_raw_run(h.path))
        trajectories["policy"].append(read_raw_run(p.path))
    if not pairs:
        raise RuntimeError(f"no pair completed; failures: {failed[:3]}")

    ci = dict(resamples=resamples, confidence=confidence, seed=seed)
    differences = np.array([pair.difference for pair in pairs])
    interval = mean_ci(differences, **ci)
    wins, ties, losses = win_tie_loss(differences, tie_tolerance)
    null = runs.null_differences(indices)
    floor = noise_floor(null)
    fresh_orders = len([o for o in runs.orders(name) if o > 0])
    agree_coarse, agree_fine = agreement_on_trajectories(trajectories["policy"], runs.configs)
    return LiveEvaluation(
        pairs=pairs,
        failed=failed,
        mean_policy=float(np.mean([p.policy_final for p in pairs])),
        mean_heuristic=float(np.mean([p.heuristic_final for p in pairs])),
        mean_difference=float(differences.mean()),
        ci_low=interval.low,
        ci_high=interval.high,
        confidence=confidence,
        wins=wins,
        ties=ties,
        losses=losses,
        action_distribution={k: _action_distribution(v) for k, v in trajectories.items()},
        action_mix_by_epoch={k: _mix_by_epoch(v) for k, v in trajectories.items()},
        seeds={
            "heuristic": dict(zip(("created", "fossilized", "culled"), np.mean([p.heuristic_seeds for p in pairs], axis=0).tolist())),
            "policy": dict(zip(("created", "fossilized", "culled"), np.mean([p.policy_seeds for p in pairs], axis=0).tolist())),
        },
        agreement_coarse=agree_coarse,
        agreement_fine=agree_fine,
        tie_tolerance=tie_tolerance,
        rent=runs.rent(),
        accuracy_difference=mean_ci([p.policy_accuracy - p.heuristic_accuracy for p in pairs], **ci),
        val_difference=mean_ci([p.policy_val - p.heuristic_val for p in pairs], **ci),
        noise_floor=floor,
        null_difference=mean_ci(runs.null_by_configuration(indices), **ci),
        pairs_for_half_pp=pairs_needed(floor, 0.5),
        pairs_for_one_pp=pairs_needed(floor, 1.0),
        fresh=mean_ci([p.fresh_difference for p in pairs], **ci) if fresh_orders else Interval(math.nan, math.nan, math.nan, 0),
        fresh_orders=fresh_orders,
    )


def agreement_on_trajectories(policy_runs, configs) -> tuple[float, float]:
    """Share of the policy's decisions where the heuristic, shown the same observation, decides the same."""
    coarse_same = fine_same = total = 0
    by_seed = {c.seed: c for c in configs}
    for run in policy_runs:
        config = by_seed.get(run.header["config"]["seed"])
        heuristic = HeuristicController(config.controller.heuristic if config else None)
        heuristic.reset(np.random.default_rng(0))  # deterministic: the rng is never drawn from
        for step in run.steps:
            record = step["observation"]
            legal = tuple(name in step["action"]["legal"] for name in _space(run))
            decision = heuristic.decide(Observation(record, observation_features(record), legal))
            coarse_same += decision.action.coarse == step["action"]["coarse"]
            fine_same += decision.action.fine == step["action"]["fine"]
            total += 1
    return (coarse_same / total, fine_same / total) if total else (float("nan"), float("nan"))


def _space(run) -> tuple[str, ...]:
    # A run written before the factored action has no action_space in its header: it was a single-slot one.
    return tuple(run.header.get("action_space", FINE_ACTIONS))


def _action_distribution(runs) -> dict[str, float]:
    # Over the widest space among the runs: each narrower one is its prefix (world.actions), so an index names
    # the same action in all of them, and single-slot runs give the 8 shares they always did.
    names = max((_space(r) for r in runs), key=len, default=FINE_ACTIONS)
    return distribution([ACTION_INDEX[s["action"]["fine"]] for r in runs for s in r.steps], names)


def _mix_by_epoch(runs) -> list[list[float]]:
    length = max((len(r.steps) for r in runs), default=0)
    counts = np.zeros((length, len(COARSE_ACTIONS)))
    for run in runs:
        for i, step in enumerate(run.steps):
            counts[i, COARSE_ACTIONS.index(step["action"]["coarse"])] += 1
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return (counts / totals).tolist()


def _summary(config: EpisodeConfig) -> str:
    d = config.dataset
    extra = "".join(
        [f", subsample {d.train_subsample}" if d.train_subsample else "", f", noise {d.label_noise}" if d.label_noise else ""]
    )
    return f"{d.name}{extra}, widths {list(config.host.widths)}, {config.max_epochs} epochs, lr {config.learning_rate:.3g}"
