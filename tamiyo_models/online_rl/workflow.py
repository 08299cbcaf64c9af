"""Phase 4 end to end: TamiyoEnv episodes on worker processes (one torch thread each), every one written as a
raw run into the landing folder (so the next night's offline phases learn from it, with the probabilities
actions were really drawn with), REINFORCE / A2C / PPO from an initial policy file (Phase 1 or 3) or from
scratch, a checkpoint every iteration, and the result tracked in MLflow with its learning curve.

The actor starts as the initial policy (its network, its features); a fresh value network beside it reads the
same features. Reward: the environment's (validation accuracy change, optional potential-based shaping); the
test split stays out of the learner's reach, in the raw runs' footers only.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .a2c import A2CConfig
from .distil import DistilConfig, distil_policy_file, is_schedule
from .hacking import HackingWatch
from .ppo import PPOConfig
from .reinforce import ReinforceConfig
from .vine import VineConfig

ALGORITHMS = ("reinforce", "a2c", "ppo", "vine")


@dataclass(frozen=True)
class OnlineRunConfig:
    algorithm: str = "ppo"
    spec: str = "arena"  # episodes' configurations are drawn from this generation spec
    regime: str | None = None  # or from one of its regimes
    workers: int = 2  # sub-environments stepped at once (worker processes, or Ray actors with ray_address)
    ray_address: str | None = None  # a Ray cluster (distributed.RayConfig's addresses): rollouts on Ray actors
    cpus_per_episode: float = 1.0  # what each Ray actor reserves
    initial_policy: str | None = None  # a policy file, MLflow ref (Phase 1 or 3) or fixed schedule (with distil); None: fresh
    # Start from a stochastic student of the initial policy instead (distil.py), distilled on the states of
    # `distil_warehouse`: for a near-deterministic actor such as BCQ's, whose unsupported actions have
    # probability 0 and so could never be tried.
    distil: DistilConfig | None = None
    distil_warehouse: str | None = None
    feature_set: str = "base+lifecycle+task"  # for a fresh actor or a schedule's student (a policy file brings its own)
    hidden: tuple[int, ...] = (128, 128)
    seed_slots: int = 1  # the hosts' seed slots: the environments' action space is 1 + 7n actions, the actor's too
    record_dir: str | None = "var/raw"  # the landing folder; None: no raw runs
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    a2c: A2CConfig = field(default_factory=A2CConfig)
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(kl_coef=0.1))
    vine: VineConfig = field(default_factory=VineConfig)  # branching policy iteration (vine.py): no env, no critic

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown online algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")

    @property
    def learner(self):
        return {"reinforce": self.reinforce, "a2c": self.a2c, "ppo": self.ppo, "vine": self.vine}[self.algorithm]

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("reinforce", "a2c", "ppo", "vine"):
            d[key] = getattr(self, key).to_dict()
        d["distil"] = self.distil.to_dict() if self.distil else None
        if self.seed_slots == 1:
            # Left out at its default: the dict names the training's episodes (online_run_label), and a
            # single-slot run must keep the run ids it had before the setting existed.
            del d["seed_slots"]
        return {**d, "hidden": list(self.hidden)}


@dataclass
class OnlineRun:
    config: OnlineRunConfig
    policy_path: Path
    history: list
    alerts: list
    mlflow_run_id: str | None = None
    model_version: str | None = None


def online_run_label(config: OnlineRunConfig, out_dir) -> str:
    """The behaviour label of a training run's episodes, e.g. `phase4-ppo-1a2b3c4d`.

    Episode run ids hash the configuration, the acting label included, and iteration k of every run with the
    same learner seed draws the same configurations: with the bare algorithm as label, two trainings (another
    initial policy, another algorithm's seed 0) would write different episodes under one run id, and the
    warehouse would quarantine the second as a run id conflict, losing its experience. The digest names the
    training (its whole configuration and its output folder); a resumed run keeps it, so its ids stay stable."""
    key = json.dumps({"config": config.to_dict(), "out": str(Path(out_dir).resolve())}, sort_keys=True)
    return f"phase4-{config.algorithm}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def build_agent(config: OnlineRunConfig, tracker=None, out_dir: Path | None = None, log=print):
    """(ActorCritic, its feature names, the parent reference or None). New weights (a fresh actor, the critic
    beside a loaded actor) are drawn from the learner's seed, not from torch's global stream: otherwise the
    same training started second in a process (a curriculum's rounds, a comparison of orders) starts elsewhere."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.learner.seed)
        return _build_agent(config, tracker, out_dir, log)


def initial_policy_file(config: OnlineRunConfig, tracker, out_dir: Path | None, log) -> tuple[Path, str]:
    """(the file the learner starts from, the lineage reference): `initial_policy` itself, or the model version
    it names in MLflow, downloaded; with `distil`, the student of either (distil.py). A fixed schedule's name
    (`fixed:conv_heavy@1`) is a teacher too: its student, distilled on `feature_set`."""
    path, ref = config.initial_policy, config.initial_policy  # a file, an MLflow reference or a schedule's name
    if is_schedule(ref):  # a fixed schedule has no network: the learner starts from its student
        if config.distil is None:
            raise ValueError(f"initial policy {ref!r} is a fixed schedule, not an actor: distil it (--distil SMOOTHING)")
    elif not Path(path).exists():
        if tracker is None:
            raise ValueError(f"initial policy {ref!r} is not a file and no MLflow tracker was given")
        version = tracker.resolve(ref)
        ref = f"{version.name}/{version.version}"
        path = tracker.download_policy(ref, (out_dir or Path("var/policies")) / "initial")
    if config.distil is not None:
        if not config.distil_warehouse:
            raise ValueError("distil: the student learns on a warehouse's states; give distil_warehouse (--warehouse)")
        path = distil_policy_file(path, config.distil_warehouse, (out_dir or Path("var/policies")) / "initial-distilled.pt",
                                  config.distil, feature_set=config.feature_set, seed_slots=config.seed_slots, log=log)  # fmt: skip
    return Path(path), ref


def _build_agent(config: OnlineRunConfig, tracker, out_dir: Path | None, log):
    from ..agents.base import categorical_columns
    from ..agents.networks import ActorCritic, MLPActor, ValueNetwork
    from ..world.actions import action_names
    from ..world.features import FEATURE_SETS

    space = action_names(config.seed_slots)
    if config.initial_policy:
        from ..agents.saved import load_policy

        path, ref = initial_policy_file(config, tracker, out_dir, log)
        actor, payload = load_policy(path)
        features = tuple(payload["feature_names"])
        if tuple(payload["fine_actions"]) != space:
            # Refused before any episode runs: the first masked step would fail anyway, further from the cause.
            raise ValueError(f"initial policy {ref}: it scores {len(payload['fine_actions'])} actions, the "
                             f"{config.seed_slots}-slot hosts' space {len(space)} (seed_slots)")  # fmt: skip
        if actor.kind == "ensemble":
            # Its members would be fine-tuned as one network through their mean: a student is what can be fine-tuned.
            raise ValueError(f"initial policy {ref}: an ensemble of {len(actor.members)} networks is not one network to "
                             "fine-tune; start from a student of it (distil; `tamiyo train phase4 --distil SMOOTHING --warehouse W`)")  # fmt: skip
        if getattr(actor, "has_value", False) and isinstance(actor, ActorCritic):
            return actor, features, ref
    else:
        if config.distil is not None:
            raise ValueError("distil: there is no initial policy to distil (initial_policy is empty)")
        features, ref = FEATURE_SETS[config.feature_set], None
        actor = MLPActor(len(features), config.hidden, len(space), categorical=categorical_columns(features))
    critic = ValueNetwork(len(features), config.hidden, categorical_columns(features))
    return ActorCritic(actor, critic), features, ref


def train_online_policy(config: OnlineRunConfig, out_dir, *, tracker=None, parent_run_id: str | None = None,
                        tags: dict | None = None, log=print, on_iteration=None, phase: str = "phase4",
                        episode_configs: dict | None = None, metadata: dict | None = None) -> OnlineRun:  # fmt: skip
    """`phase`: the registered phase the policy belongs to (the curriculum's rounds are Phase 5 policies, registered
    and evaluated as such, not as tonight's Phase 4 candidate). `episode_configs` ({reset seed: configurations},
    loop.episode_slots): the only configurations the environments may run, for a caller that registers their
    seeds first; `metadata` joins the policy file's (e.g. `data_seeds`, which live evaluation refuses)."""
    from ..env.vector import make_vector_env
    from ..world.features import ALL_FEATURES, FEATURE_SETS
    from .a2c import train_a2c
    from .ppo import train_ppo
    from .reinforce import train_reinforce

    out = Path(out_dir)
    if config.algorithm == "vine":
        if episode_configs is not None:
            raise ValueError("vine: its episodes are drawn by the generator (vine.iteration_configs), not handed over")
        return _train_vine(config, out, tracker, parent_run_id, tags, log, on_iteration, phase, metadata)
    agent, features, parent_ref = build_agent(config, tracker, out, log)
    ray = None
    if config.ray_address:
        from ..episodes.distributed import RayConfig

        ray = RayConfig(config.ray_address, cpus_per_episode=config.cpus_per_episode)
        log(f"rollouts on {config.workers} Ray actors on the cluster at {config.ray_address}")
    # The environments' observations cover the actor's features (picked out by obs_index); the per-slot ones
    # only when it reads them, so a single-slot run observes what it always did.
    observed = "full" if set(features) <= set(FEATURE_SETS["full"]) else "full+slots"
    envs = make_vector_env(config.workers, spec=config.spec, regime=config.regime, feature_set=observed,
                           record_dir=config.record_dir, agent=online_run_label(config, out), ray=ray,
                           configs=episode_configs, seed_slots=config.seed_slots)  # fmt: skip
    train = {"reinforce": train_reinforce, "a2c": train_a2c, "ppo": train_ppo}[config.algorithm]
    watch = HackingWatch()
    try:
        result = train(envs, agent, config.learner, checkpoint_dir=out / f"phase4-{config.algorithm}-checkpoint",
                       record=config.record_dir is not None, obs_index=[ALL_FEATURES.index(n) for n in features],
                       watch=watch, log=log, on_iteration=on_iteration)  # fmt: skip
    finally:
        envs.close()
    return _save_and_track(config, out, agent, features, parent_ref, result.episodes_used, result.history, result.alerts,
                           tracker, parent_run_id, tags, log, phase, metadata)  # fmt: skip


def _train_vine(config: OnlineRunConfig, out: Path, tracker, parent_run_id, tags, log, on_iteration, phase: str,
                metadata: dict | None = None) -> OnlineRun:  # fmt: skip
    """Branching policy iteration (vine.py) runs its episodes through the generator, not TamiyoEnv workers: it
    forks whole episodes, which an environment stepped from outside cannot. Acting greedily on the final
    validation accuracy, with no bonus to farm, it has no reward-hacking watch (docs/online-rl.md)."""
    from ..agents.saved import load_policy, save_policy
    from ..world.actions import action_names
    from .vine import train_vine

    if config.ray_address:
        raise ValueError("vine: its episodes run on local worker processes (the generator's); Ray is not supported yet")
    if config.seed_slots != 1 and config.vine.iterations:
        # Refused before any episode runs. On stored fork studies (iterations=0) a multi-slot policy is improved.
        raise ValueError(f"vine: single-slot hosts only for its own episodes (seed_slots {config.seed_slots}, iterations "
                         f"{config.vine.iterations}); it forks every legal action of a state, and a multi-slot host's are "
                         "1 + 7n: improve on stored fork studies with iterations=0 (evidence_warehouse), or train PPO, "
                         "A2C or REINFORCE there")  # fmt: skip
    if config.initial_policy:
        initial, parent_ref = initial_policy_file(config, tracker, out, log)
        space = tuple(load_policy(initial)[1]["fine_actions"])
        if space != action_names(config.seed_slots):
            raise ValueError(f"vine: initial policy {parent_ref} scores {len(space)} actions, the {config.seed_slots}-slot "
                             f"hosts' space {len(action_names(config.seed_slots))} (seed_slots)")  # fmt: skip
    else:  # a fresh actor is a policy like any other: its greedy choices get improved
        agent, features, parent_ref = build_agent(config, tracker, out, log)
        initial = save_policy(agent.actor, features, out / "initial-fresh.pt", algorithm="fresh-actor", phase=phase)
    result = train_vine(initial, out, config.vine, spec=config.spec, regime=config.regime, workers=config.workers,
                        raw_dir=config.record_dir, log=log, on_iteration=on_iteration)  # fmt: skip
    agent, payload = load_policy(result.policy_path)
    return _save_and_track(config, out, agent, tuple(payload["feature_names"]), parent_ref,
                           config.vine.iterations * config.vine.episodes_per_iteration, result.history, [],
                           tracker, parent_run_id, tags, log, phase, {**result.metadata, **(metadata or {})})  # fmt: skip


def _save_and_track(config: OnlineRunConfig, out: Path, agent, features, parent_ref, episodes: int, history: list,
                    alerts: list, tracker, parent_run_id, tags, log, phase: str, metadata: dict | None = None) -> OnlineRun:  # fmt: skip
    """The trained policy as `out/phase4-ALGORITHM.pt` with its lineage and history, then tracked in MLflow."""
    from ..agents.saved import save_policy

    policy_path = save_policy(
        agent, features, out / f"phase4-{config.algorithm}.pt", algorithm=config.algorithm, phase=phase, parent=parent_ref,
        metadata={"phase": phase, "variant": config.algorithm, "spec": config.spec, "regime": config.regime or "",
                  "episodes": episodes, "alerts": alerts, "config": json.dumps(config.to_dict()),
                  "history": json.dumps(history), "parent_policy": parent_ref or "",
                  "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **(metadata or {})},
    )  # fmt: skip
    run = OnlineRun(config, policy_path, history, alerts)
    log(f"policy: {policy_path}" + (f"; reward-hacking alerts: {'; '.join(alerts)}" if alerts else ""))
    if tracker is not None:
        _track(run, agent, features, tracker, parent_run_id, parent_ref, tags, log, phase)
    return run


def _track(run: OnlineRun, agent, features, tracker, parent_run_id, parent_ref, tags, log, phase: str) -> None:
    import mlflow
    import numpy as np

    from ..agents import tracking

    # The algorithm is the alias's variant where the phase has one per algorithm (Phase 4); Phase 5 has one candidate.
    registered = tracking.registered_phase(phase)
    variant = run.config.algorithm if run.config.algorithm in registered.variants else ""
    parent_run_id = parent_run_id or tracker.parent_run_id(f"local-{time.strftime('%Y%m%d-%H%M%S')}")
    run_tags = {"tamiyo.phase": phase, "tamiyo.algorithm": run.config.algorithm, **(tags or {})}
    if parent_ref:
        run_tags[tracking.PARENT_POLICY] = parent_ref
    if run.alerts:
        run_tags["tamiyo.reward_hacking_alerts"] = "; ".join(run.alerts)[:5000]
    with tracker.child_run(parent_run_id, f"{phase}-{run.config.algorithm}", run_tags) as run_id:
        mlflow.log_params({k: str(v)[:500] for k, v in run.config.to_dict().items() if not isinstance(v, dict)})
        for row in run.history:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and v == v},
                               step=int(row["episodes_used"]))  # fmt: skip
        run.mlflow_run_id = run_id
        run.model_version = tracker.log_policy(run_id, run.policy_path, agent, np.zeros((1, len(features)), np.float32),
                                               phase, variant=variant)  # fmt: skip
    log(f"MLflow run {run.mlflow_run_id}, registered {registered.registered_name} "
        f"v{run.model_version} as {registered.candidate_alias(variant)}")  # fmt: skip
