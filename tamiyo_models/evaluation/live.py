"""Live paired evaluation: fresh episodes under the policy and under the heuristic, same seeds and configs.

For each configuration (dataset, host, optimiser, schedule, seed) both controllers run one episode; the seed
fixes the initialisation and the data order, so the only difference inside a pair is the controller, and the
paired difference policy - heuristic cancels the luck of the draw (headroom notes: best-of-N luck alone is
worth +1.3 pp). Seeds must be disjoint from the training data's seeds: a policy evaluated on the very episodes
it imitated would be graded on memory.

Reported: mean final accuracy of each, the mean paired difference with a percentile bootstrap interval over
pairs, win / tie / loss counts, action distributions, seeds created / fossilized / culled, the action mix per
epoch, and the agreement with the heuristic on the policy's *own* trajectories (the heuristic's decision
computed on each observation the policy saw; its round-robin blueprint counter advances on its own
germinations, so fine agreement on GERMINATE is approximate and coarse agreement is the headline).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..actions import COARSE_ACTIONS, FINE_ACTIONS, FINE_INDEX
from ..controllers import ControllerConfig, HeuristicController, Observation
from ..episode import EpisodeConfig
from ..features import observation_features
from ..policies.metrics import distribution
from ..rawrun import read_raw_run


@dataclass
class Pair:
    seed: int
    config_summary: str
    heuristic_run: str
    policy_run: str
    heuristic_final: float
    policy_final: float
    heuristic_seeds: tuple[int, int, int]  # created, fossilized, culled
    policy_seeds: tuple[int, int, int]

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
    tie_tolerance: float = 0.0

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
        }

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for pair, raw in zip(self.pairs, d["pairs"]):
            raw["difference"] = pair.difference
        return d


def bootstrap_mean_ci(differences, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling pairs (never the two sides separately)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_configs(configs: list[EpisodeConfig], policy_path: str | Path) -> tuple[list[EpisodeConfig], list[EpisodeConfig]]:
    """(heuristic configs, policy configs): identical except for the controller."""
    return _with_controller(configs, ControllerConfig(kind="heuristic")), _policy_configs(configs, policy_path)


def _policy_configs(configs: list[EpisodeConfig], policy_path: str | Path) -> list[EpisodeConfig]:
    return _with_controller(configs, ControllerConfig(kind="policy", policy=f"file:{Path(policy_path).resolve()}"))


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
    tie_tolerance: float = 0.0,
    seed: int = 0,
) -> LiveEvaluation:
    """One policy against the heuristic on `configs` (see `evaluate_live_many`)."""
    return evaluate_live_many(
        {"policy": policy_path}, configs, out_dir, training_seeds={"policy": training_seeds}, workers=workers,
        resamples=resamples, confidence=confidence, tie_tolerance=tie_tolerance, seed=seed,
    )["policy"]  # fmt: skip


def evaluate_live_many(
    policy_paths: dict[str, str | Path],
    configs: list[EpisodeConfig],
    out_dir: str | Path,
    *,
    training_seeds: dict[str, object] | None = None,
    workers: int = 1,
    resamples: int = 10_000,
    confidence: float = 0.95,
    tie_tolerance: float = 0.0,
    seed: int = 0,
) -> dict[str, LiveEvaluation]:
    """Several policies, each paired with the heuristic on the same configurations.

    The heuristic is deterministic, so its episode on a configuration is the same whichever policy it is
    paired with: it runs once per configuration and every policy is compared with that one run. All
    episodes go to the worker pool together, so the pool stays busy across policies.
    """
    from ..generation import generate

    if not configs:
        raise ValueError("no configurations to evaluate")
    if not policy_paths:
        raise ValueError("no policies to evaluate")
    for name, seeds in (training_seeds or {}).items():
        try:
            check_disjoint_seeds(configs, seeds)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    heuristic_configs = _with_controller(configs, ControllerConfig(kind="heuristic"))
    policy_configs = {name: _policy_configs(configs, path) for name, path in policy_paths.items()}
    everything = heuristic_configs + [c for group in policy_configs.values() for c in group]
    results = generate(everything, Path(out_dir), workers=workers)
    heuristic_results = results[: len(configs)]
    heuristic_runs = {r.run_id: read_raw_run(r.path) for r in heuristic_results if r.status == "complete"}
    evaluations = {}
    for i, name in enumerate(policy_configs):
        policy_results = results[len(configs) * (i + 1) : len(configs) * (i + 2)]
        evaluations[name] = _paired_evaluation(
            configs, heuristic_results, policy_results, heuristic_runs, resamples, confidence, tie_tolerance, seed
        )
    return evaluations


def _paired_evaluation(configs, heuristic_results, policy_results, heuristic_runs, resamples, confidence, tie_tolerance, seed) -> LiveEvaluation:
    pairs, failed = [], []
    runs = {"heuristic": [], "policy": []}
    for config, h, p in zip(configs, heuristic_results, policy_results):
        bad = [r for r in (h, p) if r.status != "complete"]
        if bad:
            failed += [f"{r.run_id}: {r.error}" for r in bad]
            continue
        pairs.append(
            Pair(
                seed=config.seed,
                config_summary=_summary(config),
                heuristic_run=h.run_id,
                policy_run=p.run_id,
                heuristic_final=h.final_val_accuracy,
                policy_final=p.final_val_accuracy,
                heuristic_seeds=(h.seeds_created, h.seeds_fossilized, h.seeds_culled),
                policy_seeds=(p.seeds_created, p.seeds_fossilized, p.seeds_culled),
            )
        )
        runs["heuristic"].append(heuristic_runs[h.run_id])
        runs["policy"].append(read_raw_run(p.path))
    if not pairs:
        raise RuntimeError(f"no pair completed; failures: {failed[:3]}")

    differences = np.array([pair.difference for pair in pairs])
    low, high = bootstrap_mean_ci(differences, resamples, confidence, seed)
    agree_coarse, agree_fine = agreement_on_trajectories(runs["policy"], configs)
    return LiveEvaluation(
        pairs=pairs,
        failed=failed,
        mean_policy=float(np.mean([p.policy_final for p in pairs])),
        mean_heuristic=float(np.mean([p.heuristic_final for p in pairs])),
        mean_difference=float(differences.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        wins=int((differences > tie_tolerance).sum()),
        ties=int((np.abs(differences) <= tie_tolerance).sum()),
        losses=int((differences < -tie_tolerance).sum()),
        action_distribution={k: _action_distribution(v) for k, v in runs.items()},
        action_mix_by_epoch={k: _mix_by_epoch(v) for k, v in runs.items()},
        seeds={
            "heuristic": dict(zip(("created", "fossilized", "culled"), np.mean([p.heuristic_seeds for p in pairs], axis=0).tolist())),
            "policy": dict(zip(("created", "fossilized", "culled"), np.mean([p.policy_seeds for p in pairs], axis=0).tolist())),
        },
        agreement_coarse=agree_coarse,
        agreement_fine=agree_fine,
        tie_tolerance=tie_tolerance,
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
            legal = tuple(name in step["action"]["legal"] for name in FINE_ACTIONS)
            decision = heuristic.decide(Observation(record, observation_features(record), legal))
            coarse_same += decision.action.coarse == step["action"]["coarse"]
            fine_same += decision.action.fine == step["action"]["fine"]
            total += 1
    return (coarse_same / total, fine_same / total) if total else (float("nan"), float("nan"))


def _action_distribution(runs) -> dict[str, float]:
    return distribution([FINE_INDEX[s["action"]["fine"]] for r in runs for s in r.steps], FINE_ACTIONS)


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
