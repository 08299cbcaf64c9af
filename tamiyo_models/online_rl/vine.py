"""Branching policy iteration: improve a policy from the generator's exact branches (common random numbers).

Why not another policy gradient: REINFORCE, A2C and PPO compare the returns of *different* episodes, and on the
arena one episode's luck (its data order, its initialisation) moves the final accuracy by as much as any
decision does; at 16 episodes per update the signal stayed below that noise and 128 episodes did not improve
on the start (docs/online-rl.md). This generator can do what a real training run cannot: snapshot a whole
episode and replay it from the same state under another action, with the same data order, initialisation and
probe streams (branching.py). So at a state s the difference between two actions is measured, not estimated
across episodes:

    Q(s, a) = final validation accuracy after taking a in s and following the policy (greedy) to the end

Each iteration:
  1. Parent episodes on fresh training configurations, the current policy acting greedily (as it is judged).
  2. At `forks_per_episode` random steps of each parent (branching.py's "random" rule), one branch per other
     legal action, run to the end under the same policy. The parent supplies Q of its own action.
  3. Policy improvement (rollout classification policy iteration, Lagoudakis & Parr 2003; the branches with
     common random numbers are the "vine" of TRPO, Schulman et al. 2015): in each fork state where the best
     action beats the policy's own by more than `margin` pp, that action becomes the label; everywhere else the
     label is the current policy's own greedy action on every state the parents visited. The next actor is the
     current one fine-tuned on those labels (fork labels of every iteration so far kept, weighted up).
  2b. With `confirm_orders` K > 0, a candidate label (best action ahead by more than `margin`) is first replayed
     from its fork on K new data orders, the best action and the policy's own on each (branching.py's
     confirmation), and counts only if it is ahead by more than `margin` on their mean too. The common random
     numbers stop at the fork: the two trajectories then meet different batches at different times, so one
     pair's difference carries two draws of training luck, and the largest of several such differences is
     mostly luck (docs/online-rl.md measures how much).
  3b. With `label_rule="region"`, labels come from every fork measured so far, pooled by region (the task, the
     episode's length, the epoch bin, the seed's stage and the initial policy's action; fork_evidence.py): an
     alternative whose mean advantage over the initial policy's action, over the region's forks, is above 0 at a
     false discovery rate of `region_fdr` and above `margin` labels every visited state of that region, and
     nothing outside it. Each iteration's actor is then the *initial* one fine-tuned on those labels and on its
     own choices elsewhere: the policy is the start changed only where the pooled evidence says so, and a label
     the later forks no longer support is dropped rather than carried on by the actor that learned it. With
     `evidence_from`, the forks and visited states of earlier runs (targeted fork studies, other regimes) join
     the pool, so separate studies make one policy; with `evidence_warehouse`, so do the fork studies stored in
     a warehouse (the nightly loop's, night after night: stored_forks). With `iterations=0` no episode is run:
     the start is improved once on that earlier evidence alone.
Only validation accuracy is read (the reward's own quantity); the test split stays in the run footers. Every
parent and branch is written as a raw run, so the next night's offline phases learn from them as well.

The action space is the start policy's (`fine_actions`): masks, fork outcomes, a region's own action and the
labels are over it, and evidence of runs over another space (a single-slot run for a two-slot policy, or the
reverse) is left out, counted in the log, since its masks would hide or invent actions. On a multi-slot host
(the factored action, 1 + 7n actions) only `iterations=0` works: the region rule over fork studies stored in
a warehouse or earlier runs' folders. Its own iterations refuse such a policy: a fork there branches every
legal action, up to 1 + 7n of them, n times a single-slot fork's cost, on top of a region count multiplied by
the slots' stages (docs/online-rl.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..episodes.branching import BranchConfig
from ..world.actions import FINE_ACTIONS, Action, slots_of_space
from ..world.features import observation_features
from ..world.score import growth_charge
from .distil import fit_targets, smoothed_targets, teacher_actions
from .fork_evidence import EvidenceConfig, pooled_evidence, region_labels, task_names_of


@dataclass(frozen=True)
class VineConfig:
    iterations: int = 3
    episodes_per_iteration: int = 16  # parent episodes per iteration
    forks_per_episode: int = 2  # random steps of each parent where every other legal action is branched
    min_step: int = 2  # no forks on the untrained host
    max_step: int | None = None  # the last step a fork may start at (None: any); see BranchConfig.max_step
    # An alternative must beat the policy's own action by more than this (pp of final validation accuracy) to
    # become the label: one pair of branches is one sample, and the largest of several noisy differences is
    # biased upward.
    margin: float = 0.25
    smoothing: float = 0.05  # label smoothing over the other legal actions (the actor stays stochastic)
    fork_weight: float = 8.0  # a relabelled fork state's weight in the loss, against 1 for every other state
    learning_rate: float = 3e-4
    batch_size: int = 256
    updates: int = 2000  # fine-tuning steps per iteration, from the current actor
    # The training episodes' validation split size (None: the spec's). A branch's outcome is one validation
    # accuracy: on the arena's 2,000 images two branches' difference has a noise of about 0.5 pp, as large as
    # the effects to learn. The validation split comes from the training pool (never the test split), so a
    # larger one costs only its scoring time; the policy then also watches a smoother validation curve.
    val_subsample: int | None = None
    # Fresh data orders on which a candidate label is replayed before it counts (0: it counts at once). A fork's
    # branches share the data order, yet their trajectories diverge after it, so one pair's difference carries
    # each trajectory's luck; the label then needs its mean gain over these orders above `margin` as well.
    confirm_orders: int = 0
    # "region": a label per region where the pooled evidence of all forks so far says so (fork_evidence.py); the
    # default since its policy beat the best fixed schedule on held-out configurations (docs/online-rl.md), where
    # every fork-rule policy tied it. "fork": a label per fork state where an alternative won (and, with
    # confirm_orders, held on new orders): one fork is mostly luck at the arena's noise.
    label_rule: str = "region"
    region_min_forks: int = 3  # "region": forks that measured an alternative before it is tested
    region_fdr: float = 0.05  # "region": false discovery rate over every (region, alternative) tested
    # "region": folders of earlier vine runs (same feature set) whose forks and visited states join this run's
    # evidence, e.g. targeted fork studies in other regimes; a region never spans two tasks, so each keeps its
    # own evidence and only the false discovery control counts them together.
    evidence_from: tuple[str, ...] = ()
    # "region": a warehouse whose stored fork studies (branch runs beside their complete parents) join the
    # evidence, those of parents tagged with one of `evidence_nights` only when it is given (the nightly loop's).
    evidence_warehouse: str | None = None
    evidence_nights: tuple[str, ...] | None = None
    seed: int = 0  # training configurations, minibatches

    def __post_init__(self):
        if self.iterations < 0 or self.episodes_per_iteration < 1 or self.forks_per_episode < 1:
            raise ValueError("vine: iterations must be >= 0, episodes_per_iteration and forks_per_episode >= 1")
        if self.iterations == 0 and not (self.evidence_from or self.evidence_warehouse):
            raise ValueError("vine: iterations=0 improves the start on earlier evidence only; give evidence_from or evidence_warehouse")
        if self.margin < 0:
            raise ValueError(f"vine: margin must be >= 0 pp, got {self.margin}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"vine: smoothing must be in [0, 1), got {self.smoothing}")
        if self.val_subsample is not None and self.val_subsample < 1:
            raise ValueError(f"vine: val_subsample must be >= 1 (or None), got {self.val_subsample}")
        if self.confirm_orders < 0:
            raise ValueError(f"vine: confirm_orders must be >= 0, got {self.confirm_orders}")
        if self.label_rule not in ("fork", "region"):
            raise ValueError(f"vine: label_rule must be 'fork' or 'region', got {self.label_rule!r}")
        if self.confirm_orders and self.label_rule != "fork":  # the region rule pools forks instead of replaying them
            raise ValueError("vine: confirm_orders replays the fork rule's candidates; it needs label_rule='fork'")
        if (self.evidence_from or self.evidence_warehouse) and self.label_rule != "region":
            raise ValueError("vine: evidence_from and evidence_warehouse pool earlier forks by region: each needs label_rule='region'")
        self.evidence()  # the region rule's settings are checked there

    def evidence(self) -> EvidenceConfig:
        return EvidenceConfig(min_forks=self.region_min_forks, fdr=self.region_fdr, margin=self.margin)

    def branching(self) -> BranchConfig:
        return BranchConfig(horizon=None, fork_rule="random", max_forks=self.forks_per_episode, min_step=self.min_step,
                            max_step=self.max_step, confirm_orders=self.confirm_orders, confirm_margin=self.margin)  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ForkState:
    """One fork: the state's features (in the policy's order), its legal actions, the parent's action and the
    final validation accuracy measured after each action tried there."""

    run_id: str
    step: int
    features: list[float]
    legal: list[bool]
    taken: int
    outcome: dict[int, float]  # fine action index -> final validation accuracy (pp)
    # Confirmation replays (BranchConfig.confirm_orders): data order k -> fine action index -> final val accuracy
    fresh: dict[int, dict[int, float]] = field(default_factory=dict)

    def best(self) -> tuple[int, float]:
        """The best action (of tied ones, the first by index, as branching.confirm chooses) and its gain over the
        parent's own action (pp)."""
        action = max(sorted(self.outcome), key=self.outcome.__getitem__)
        return action, self.outcome[action] - self.outcome[self.taken]

    def fresh_gains(self, action: int) -> list[float]:
        """`action`'s gain over the parent's own action on each new data order where both were replayed (pp)."""
        return [o[action] - o[self.taken] for o in self.fresh.values() if action in o and self.taken in o]


@dataclass
class VineResult:
    policy_path: Path  # the last iteration's policy file
    history: list[dict] = field(default_factory=list)
    forks: list[ForkState] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)  # for the policy file the caller saves (e.g. data_seeds)


@dataclass
class Forks:
    """What one iteration's parents and branches measured, read back from their raw runs."""

    forks: list[ForkState]
    visited: list[tuple]  # (run_id, features, legal) of every state the parents visited
    epochs: int  # epochs trained in all, parents and branches: the compute the iteration spent
    runs: int  # parents and branches read back
    seeds: list[int] = field(default_factory=list)  # the parents' configuration seeds (stored_forks only)
    skipped: int = 0  # forked parents left out: their host's action space is not the policy's (stored_forks only)


def charged_val(header: dict, footer: dict) -> float:
    """A raw run's final validation accuracy charged for growth at its rent (pp), as its score charges the test
    accuracy: what forks compare, so that with rent a graft must pay for its parameters. Exact at rent 0."""
    value = float(footer["final_val_accuracy"])
    rent = float(footer.get("rent") or 0.0)
    return value - growth_charge(rent, int(footer["final_parameters"]), int(header["host_parameters"])) if rent else value


# The same in SQL over runs r and episodes e (stored_forks); no charge where the rent is 0, so old runs read as before.
CHARGED_VAL_SQL = ("CASE WHEN r.rent > 0 THEN e.final_val_accuracy - r.rent * log2(e.final_parameters / r.host_parameters) "
                   "ELSE e.final_val_accuracy END")  # fmt: skip
# A run r's seed slots, as the rl_transitions view reads them (warehouse/sql/views.sql): its host's, and 1 for a
# legacy episode or a run recorded before hosts had several.
SEED_SLOTS_SQL = ("CASE WHEN r.source_format LIKE 'tamiyo-raw-run%' "
                  "THEN CAST(coalesce(json_array_length(r.config_json, '$.host.slots'), 1) AS INTEGER) ELSE 1 END")  # fmt: skip


def fork_states(raw_dir: str | Path, parent_ids: list[str], feature_names, space=FINE_ACTIONS) -> Forks:
    """Read the parents and their branches back from the raw runs: the fork states with every measured outcome,
    and every state the parents visited, with legal masks over `space` (the policy's action names). A failed
    branch is left out (its action is then simply not measured there); a failed parent contributes nothing; a
    parent over another action space is refused."""
    from ..world.rawrun import list_raw_runs, read_raw_run

    raw_dir, parents = Path(raw_dir), set(parent_ids)
    branches: dict[tuple[str, int], dict[int, float]] = {}
    fresh: dict[tuple[str, int], dict[int, dict[int, float]]] = {}  # confirmation replays, by data order
    epochs = runs = 0
    prefixes = tuple(f"{p}-{kind}" for p in parents for kind in "bo")  # branches and their confirmation replays
    for path in list_raw_runs(raw_dir):
        if not path.name.startswith(prefixes):
            continue
        run = read_raw_run(path)
        epochs, runs = epochs + len(run.steps), runs + 1
        info = run.header.get("branch") or {}
        if info.get("parent_run_id") in parents and run.footer and run.footer.get("status") == "complete":
            index, key = Action.from_fine(info["forced_action"]).index, (info["parent_run_id"], int(info["fork_step"]))
            final, order = charged_val(run.header, run.footer), int(info.get("data_order", 0))
            if order:
                fresh.setdefault(key, {}).setdefault(order, {})[index] = final
            else:
                branches.setdefault(key, {})[index] = final
    forks, visited = [], []
    for run_id in parent_ids:
        path = raw_dir / f"{run_id}.jsonl"
        if not path.exists():
            continue
        run = read_raw_run(path)
        if not run.footer or run.footer.get("status") != "complete":
            continue
        own_space = tuple(run.header.get("action_space", FINE_ACTIONS))  # a run before the factored action: single-slot
        if own_space != tuple(space):
            # Masks over the policy's space would silently drop another slot's legal actions, or invent some.
            raise ValueError(f"vine: {path} is a run over {len(own_space)} actions; this policy "
                             f"scores {len(space)}, and vine reads runs of its own action space only")  # fmt: skip
        final = charged_val(run.header, run.footer)
        epochs, runs = epochs + len(run.steps), runs + 1
        for record in run.steps:
            features = observation_features(record["observation"])
            vector = [float(features[name]) for name in feature_names]
            names = set(record["action"]["legal"])  # the legal actions by name
            legal = [name in names for name in space]
            visited.append((run_id, vector, legal))
            measured = branches.get((run_id, int(record["step"])))
            if measured:
                taken = Action.from_fine(record["action"]["fine"]).index
                forks.append(ForkState(run_id, int(record["step"]), vector, legal, taken, {taken: final, **measured},
                                       fresh.get((run_id, int(record["step"])), {})))  # fmt: skip
    return Forks(forks, visited, epochs, runs)


def stored_forks(warehouse: str | Path, feature_names, nights=None, space=FINE_ACTIONS) -> Forks:
    """fork_states, read from a warehouse instead of a raw folder: every fork of a complete parent (its branch
    runs that reached the end, on the parent's own data order; a branch of shorter horizon, like the exploration
    spec's, and a confirmation replay on another order are left out, as fork_evidence.py explains), and every
    state those parents visited. `nights`: only parents whose configuration is tagged with one of them (the
    nightly loop's fork studies). `space`: the policy's action names; parents of hosts with another slot count
    are left out and counted (`Forks.skipped`). Features missing from a run
    (task features of runs without a task description) take the values the offline learners give them
    (transitions.dataset), so the states match what the policies were trained on."""
    from ..warehouse import query
    from ..world.features import TASK_FEATURES, task_feature_defaults

    names = tuple(feature_names)
    quote = lambda values: ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)  # noqa: E731
    night = "json_extract_string(r.config_json, '$.tags.night')"
    only = "" if nights is None else f"AND {night} IN ({quote(nights) or 'NULL'})"
    forked = f"""FROM runs r JOIN episodes e USING (run_id)
                 WHERE e.status = 'complete' AND r.run_id IN (SELECT parent_run_id FROM branches) {only}"""
    slots = slots_of_space(len(space))
    parents = f"SELECT r.run_id, r.seed, {CHARGED_VAL_SQL} AS final_val_accuracy {forked} AND {SEED_SLOTS_SQL} = {slots}"  # fmt: skip
    skipped = int(query(warehouse, f"SELECT count(*) AS n {forked} AND {SEED_SLOTS_SQL} <> {slots}")["n"][0])
    outcomes = query(warehouse, f"""
        WITH parents AS ({parents})
        SELECT b.parent_run_id, b.fork_step, b.forced_action, {CHARGED_VAL_SQL} AS final_val_accuracy, r.max_epochs AS branch_epochs
        FROM branches b JOIN episodes e USING (run_id) JOIN runs r USING (run_id)
        WHERE b.parent_run_id IN (SELECT run_id FROM parents) AND e.status = 'complete'
          AND NOT starts_with(b.run_id, b.parent_run_id || '-o')
          -- only branches that reached the end: a final accuracy compares with the parent's final accuracy
          AND (b.horizon IS NULL OR b.fork_step + b.horizon - 1 >= r.max_epochs)
        ORDER BY 1, 2, 3""")  # fmt: skip
    states = query(warehouse, f"""
        WITH parents AS ({parents})
        SELECT s.run_id, s.step, s.action_index, s.legal_actions, p.seed, p.final_val_accuracy,
               {", ".join(f"o.{n} AS f_{n}" for n in names)}
        FROM steps s JOIN observations o USING (run_id, step) JOIN parents p USING (run_id)
        ORDER BY s.run_id, s.step""")  # fmt: skip
    measured: dict[tuple[str, int], dict[int, float]] = {}
    branch_epochs = 0
    for parent, step, forced, final, _ in outcomes.iter_rows():
        measured.setdefault((parent, int(step)), {})[Action.from_fine(forced).index] = float(final)
    for parent, step, _forced, _final, length in outcomes.iter_rows():
        branch_epochs += int(length) - int(step) + 1
    defaults = task_feature_defaults()
    fill = np.array([defaults[n] if n in TASK_FEATURES else 0.0 for n in names])
    matrix = np.stack([states[f"f_{n}"].to_numpy().astype(np.float64) for n in names], axis=1) if len(states) else np.zeros((0, len(names)))
    matrix = np.where(np.isnan(matrix), fill, matrix)
    forks, visited, seeds, finals = [], [], {}, {}
    for row, (run_id, step, taken, legal_names, seed, final) in enumerate(
            states.select("run_id", "step", "action_index", "legal_actions", "seed", "final_val_accuracy").iter_rows()):  # fmt: skip
        vector = matrix[row].tolist()
        legal = [name in set(legal_names or ()) for name in space]
        visited.append((run_id, vector, legal))
        seeds[run_id], finals[run_id] = seed, final
        outcome = measured.get((run_id, int(step)))
        if outcome:
            forks.append(ForkState(run_id, int(step), vector, legal, int(taken), {int(taken): float(final), **outcome}))
    return Forks(forks, visited, len(visited) + branch_epochs, len(finals) + len(outcomes),
                 sorted(int(s) for s in seeds.values() if s is not None), skipped)  # fmt: skip


@dataclass
class VineRun:
    """A finished vine run as its vine-history.json tells it: its own forks, the policy's feature names, and
    where its parents' raw runs are."""

    folder: Path
    forks: list[ForkState]
    feature_names: tuple[str, ...]
    raw_dir: Path
    parents: list[str]
    config: dict


def read_vine_run(folder: str | Path) -> VineRun:
    """Read a finished vine run back (no episode runs). Runs written before the history kept its feature names,
    raw folder and parents fall back to the first policy's features, `folder/raw` and the parents with a fork."""
    from ..agents.saved import load_policy

    folder = Path(folder)
    history = folder / "vine-history.json"
    if not history.exists():
        raise FileNotFoundError(f"{history}: not found (a vine run writes it when it finishes)")
    data = json.loads(history.read_text())
    forks = [ForkState(f["run_id"], int(f["step"]), f["features"], f["legal"], int(f["taken"]),
                       {int(a): v for a, v in f["outcome"].items()},
                       {int(o): {int(a): v for a, v in d.items()} for o, d in f.get("fresh", {}).items()})
             for f in data["forks"]]  # fmt: skip
    names = data.get("feature_names") or load_policy(folder / "policies" / "vine-iter-01.pt")[1]["feature_names"]
    parents = data.get("parents") or list(dict.fromkeys(f.run_id for f in forks))
    return VineRun(folder, forks, tuple(names), Path(data.get("raw_dir") or folder / "raw"), parents, data["config"])


def prior_evidence(folders, feature_names, space=FINE_ACTIONS) -> tuple[list[ForkState], list[tuple]]:
    """The forks and visited states of earlier vine runs, for the region rule to pool with a run's own."""
    forks, visited = [], []
    for folder in folders:
        run = read_vine_run(folder)
        if run.feature_names != tuple(feature_names):
            raise ValueError(f"vine: evidence from {folder}: its policy reads other features than this run's start "
                             f"({len(run.feature_names)} vs {len(feature_names)}); regions would not line up")  # fmt: skip
        if any(len(f.legal) != len(space) for f in run.forks):
            raise ValueError(f"vine: evidence from {folder}: its forks are over another action space than this run's "
                             f"start ({len(space)} actions); its masks and actions would not line up")  # fmt: skip
        forks.extend(run.forks)
        visited.extend(fork_states(run.raw_dir, run.parents, feature_names, space).visited)
    return forks, visited


def _improve_on_evidence(result: VineResult, start, start_path: str, features: tuple, forks: list, visited: list,
                         out: Path, config: VineConfig, log) -> VineResult:  # fmt: skip
    """No episodes of its own (iterations=0): the start improved once by the region rule on the earlier evidence.
    With no labelled region it is the start refitted on its own choices: a challenger that should tie."""
    from ..agents.saved import save_policy

    started = time.perf_counter()
    labels, cells = region_rule_labels(start, forks, visited, features, config)
    log(f"vine: region evidence from {len(forks)} pooled forks: {sum(np.isfinite(c.p_value) for c in cells)} (region, "
        f"action) cells tested, {sum(c.label for c in cells)} labelled, {len(labels)} states relabelled")  # fmt: skip
    improved, on_labels, elsewhere = improve_actor(start, visited, labels, config, log=log)
    target = out / "policies" / "vine-evidence.pt"
    save_policy(improved, features, target, algorithm="vine", phase="phase4", parent=start_path,
                metadata={"vine": {**config.to_dict(), "iteration": 0, "parent_policy": start_path, "forks": len(forks),
                                   "labels": len(labels), "agreement_labels": on_labels, "agreement_elsewhere": elsewhere,
                                   "fine_tuned_from": start_path}})  # fmt: skip
    result.policy_path, result.forks = target.resolve(), list(forks)
    result.history.append({"iteration": 0, "episodes_used": 0, "forks": len(forks), "visited": len(visited),
                           "cells_tested": int(sum(np.isfinite(c.p_value) for c in cells)),
                           "cells_labelled": int(sum(c.label for c in cells)), "relabelled": len(labels),
                           "agreement_labels": on_labels, "agreement_elsewhere": elsewhere,
                           "seconds": time.perf_counter() - started, "policy": str(target)})  # fmt: skip
    (out / "vine-history.json").write_text(json.dumps({"config": config.to_dict(), "history": result.history,
                                                       "feature_names": list(features), "raw_dir": None, "parents": [],
                                                       "forks": [], "region_evidence": [c.row(task_names_of(features)) for c in cells]},
                                                      indent=1))  # fmt: skip
    return result


def improvement_labels(forks: list[ForkState], margin: float, confirm: bool = False) -> list[tuple[list[float], list[bool], int]]:
    """(features, legal, action) for every fork state where an action beat the parent's own by more than `margin`;
    with `confirm`, also by more than `margin` on average over the new data orders it was replayed on (a
    candidate whose replays all failed does not count)."""
    labels = []
    for fork in forks:
        action, gain = fork.best()
        fresh = fork.fresh_gains(action)
        if gain > margin and (not confirm or (fresh and float(np.mean(fresh)) > margin)):
            labels.append((fork.features, fork.legal, action))
    return labels


def reference_actions(actor, states) -> list[int]:
    """`actor`'s greedy legal action in each state (anything with `features` and `legal`, or a visited tuple)."""
    if not states:
        return []
    rows = [(s.features, s.legal) if hasattr(s, "features") else (s[1], s[2]) for s in states]
    obs = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    return teacher_actions(actor, obs, torch.tensor([r[1] for r in rows], dtype=torch.bool)).tolist()


def region_rule_labels(start, forks: list[ForkState], visited: list[tuple], feature_names, config: VineConfig) -> tuple[list, list]:
    """The region rule (fork_evidence.py): every fork pooled by region against `start`'s action there, and the
    labels: every visited state whose region (with `start`'s action as its own) has one. Returns (labels, cells)."""
    cells = pooled_evidence(forks, feature_names, config.evidence(), reference_actions(start, forks))
    own = reference_actions(start, visited)
    labels = region_labels(cells, [(v[0], v[1], v[2], a) for v, a in zip(visited, own)], feature_names, config.evidence())
    return labels, cells


def improve_actor(actor, visited: list[tuple], labels: list[tuple], config: VineConfig, log=print):
    """The next actor: a copy of `actor` fine-tuned to take its own greedy action on every visited state and the
    improved action on every labelled fork state. Returns (actor, agreement on the labels, agreement elsewhere)."""
    obs = torch.tensor([v[1] for v in visited] + [x[0] for x in labels], dtype=torch.float32)
    mask = torch.tensor([v[2] for v in visited] + [x[1] for x in labels], dtype=torch.bool)
    actor.eval()
    with torch.no_grad():
        own = actor.logits(obs, mask).argmax(dim=-1)
    targets_idx = own.clone()
    n_keep = len(visited)
    if labels:
        targets_idx[n_keep:] = torch.tensor([x[2] for x in labels])
    targets = smoothed_targets(targets_idx, mask, config.smoothing)
    weights = torch.ones(len(obs))
    weights[n_keep:] = config.fork_weight
    student = copy.deepcopy(actor)
    started = time.perf_counter()
    fit_targets(student, obs, mask, targets, updates=config.updates, learning_rate=config.learning_rate,
                batch_size=config.batch_size, seed=config.seed, weights=weights)  # fmt: skip
    with torch.no_grad():
        chosen = student.logits(obs, mask).argmax(dim=-1)
    agree = (chosen == targets_idx).float()
    on_labels = float(agree[n_keep:].mean()) if labels else float("nan")
    elsewhere = float(agree[:n_keep].mean()) if n_keep else float("nan")
    labelled = (f"takes the improved action in {on_labels:.2%} of {len(labels)} fork states" if labels
                else "no state labelled (it is refitted on its own choices)")  # fmt: skip
    log(f"vine: improved actor, {config.updates / (time.perf_counter() - started):.0f} updates/s, {labelled}, "
        f"keeps its own in {elsewhere:.2%} of {n_keep} others")  # fmt: skip
    return student, on_labels, elsewhere


def iteration_configs(generation, regime: str | None, config: VineConfig, iteration: int, policy: Path) -> list:
    """The parent episodes of one iteration: training configurations (batch seeds no evaluation set uses), the
    policy file `policy` acting. Their run ids are fixed by these configurations, so the episodes can be run
    anywhere first (`generate` with `VineConfig.branching()`) and `train_vine` reads them back."""
    from ..controllers import ControllerConfig

    batch_seed = 7_000_000 + 1_000 * config.seed + iteration  # training configurations only; never an evaluation batch
    configs = generation.sample_regime(regime, config.episodes_per_iteration, batch_seed) if regime else \
        generation.sample(config.episodes_per_iteration, batch_seed)  # fmt: skip
    controller = ControllerConfig(kind="policy", policy=f"file:{policy}")  # as given: the path is part of the run id
    configs = [dataclasses.replace(c, controller=controller) for c in configs]
    if config.val_subsample is not None:
        configs = [dataclasses.replace(c, dataset=dataclasses.replace(c.dataset, val_subsample=config.val_subsample)) for c in configs]
    return configs


def parent_reporter(iteration: int, total: int, started: float, log):
    """A parent and its branches take minutes on the arena and an iteration hours: a line as each parent ends."""
    done = 0

    def report(episode) -> None:
        nonlocal done
        done += 1
        log(f"vine: iteration {iteration}: parent {done}/{total} {episode.status}, {episode.branches} branch runs, "
            f"{time.perf_counter() - started:.0f} s")  # fmt: skip

    return report


def train_vine(initial_policy: str | Path, out_dir: str | Path, config: VineConfig = VineConfig(), *,
               spec: str = "arena", regime: str | None = None, workers: int = 2, raw_dir: str | Path | None = None,
               log=print, on_iteration=None) -> VineResult:  # fmt: skip
    """Run `config.iterations` iterations from the policy file `initial_policy`; every iteration's policy is
    saved as `out_dir/policies/vine-iter-KK.pt` (parent: the previous one); `policy_path` is the last one.
    Parents and branches are written to `raw_dir` (default `out_dir/raw`; a landing folder puts them in the
    warehouse). Resumable: the episodes are deterministic and read back when their run files exist, and a
    finished iteration's policy file is reused. `on_iteration(row)` after each iteration (a progress bar)."""
    from ..agents.saved import load_policy, save_policy
    from ..episodes.generation import GenerationSpec, generate

    out = Path(out_dir)
    raw = Path(raw_dir) if raw_dir else out / "raw"
    policies = out / "policies"
    generation = GenerationSpec.load(spec)
    current = Path(initial_policy).resolve()
    result = VineResult(current)
    all_visited: list[tuple] = []
    all_labels: list[tuple] = []
    cells: list = []  # the region rule's evidence, as of the last iteration
    epochs_total = 0
    start, payload = load_policy(current)
    space = tuple(payload["fine_actions"])  # the run's action space: masks, forks, regions and labels are over it
    if space != FINE_ACTIONS and config.iterations:
        raise ValueError(f"vine: {current} scores {len(space)} actions ({slots_of_space(len(space))} seed slots); vine runs "
                         f"its own parents and forks on single-slot hosts only, since a fork branches every legal action "
                         f"(up to {len(space)} here, 1 + 7 per slot): improve it with iterations=0 on stored fork studies "
                         f"(evidence_warehouse, evidence_from), or train PPO, A2C or REINFORCE")  # fmt: skip
    start_path, start_features = str(current), tuple(payload["feature_names"])  # the region rule measures and improves against it
    prior_forks, prior_visited = prior_evidence(config.evidence_from, start_features, space)
    if config.evidence_from:
        log(f"vine: pooling {len(prior_forks)} forks and {len(prior_visited)} visited states of {len(config.evidence_from)} earlier run(s)")
    if config.evidence_warehouse:
        stored = stored_forks(config.evidence_warehouse, start_features, config.evidence_nights, space)
        prior_forks, prior_visited = prior_forks + stored.forks, prior_visited + stored.visited
        result.metadata["data_seeds"] = stored.seeds  # live evaluation refuses the seeds a policy learned from
        which = "every night" if config.evidence_nights is None else f"nights {', '.join(config.evidence_nights) or 'none'}"
        log(f"vine: pooling {len(stored.forks)} stored forks of {len(stored.seeds)} parents ({which}) and their "
            f"{len(stored.visited)} visited states from {config.evidence_warehouse}")  # fmt: skip
        if stored.skipped:
            log(f"vine: left out {stored.skipped} forked parent(s) of hosts with another action space than the "
                f"policy's {len(space)} actions ({slots_of_space(len(space))} seed slot(s))")  # fmt: skip
    if config.iterations == 0:
        return _improve_on_evidence(result, start, start_path, start_features, prior_forks, prior_visited, out, config, log)
    parents_done: list[str] = []
    for iteration in range(config.iterations):
        started = time.perf_counter()
        actor, payload = load_policy(current)
        features = tuple(payload["feature_names"])
        configs = iteration_configs(generation, regime, config, iteration, current)
        report = parent_reporter(iteration + 1, len(configs), started, log)
        parents = generate(configs, raw, workers=workers, branching=config.branching(), reuse_existing=True, on_result=report)
        done = [p.run_id for p in parents if p.status == "complete"]
        parents_done.extend(done)
        measured = fork_states(raw, done, features, space)
        forks, visited = measured.forks, measured.visited
        epochs_total += measured.epochs
        result.forks.extend(forks)
        if config.label_rule == "region":  # all the evidence so far decides, and its labels replace the last ones
            labels, cells = region_rule_labels(start, prior_forks + result.forks, prior_visited + all_visited + visited, features, config)
            log(f"vine: region evidence from {len(prior_forks) + len(result.forks)} forks: {sum(np.isfinite(c.p_value) for c in cells)} "
                f"(region, action) cells tested, {sum(c.label for c in cells)} labelled, {len(labels)} states relabelled")
        else:
            labels = improvement_labels(forks, config.margin, confirm=config.confirm_orders > 0)
        # How the candidates fared on new data orders: the selection-free estimate of what a label is worth.
        candidates = [f for f in forks if f.best()[1] > config.margin]
        replayed = [np.mean(g) for g in (f.fresh_gains(f.best()[0]) for f in candidates) if g]
        all_visited.extend(visited)
        all_labels = labels if config.label_rule == "region" else all_labels + labels
        gains = [f.best()[1] for f in forks]
        episodes = measured.runs  # read back, so a resumed iteration counts its branches too
        target = policies / f"vine-iter-{iteration + 1:02d}.pt"
        settings = {**config.to_dict(), "iteration": iteration + 1, "parent_policy": str(current)}
        saved = load_policy(target)[1]["metadata"].get("vine", {}) if target.exists() else {}
        if {k: saved.get(k) for k in settings} == settings:  # same parent and settings: reuse it
            log(f"vine: iteration {iteration + 1}: reusing {target}")
        else:
            # The region rule improves the start every time; the fork rule the last iteration's actor.
            base, base_path = (start, start_path) if config.label_rule == "region" else (actor, str(current))
            # The earlier runs' states (region rule only; none otherwise) anchor the student too: it keeps its own
            # choices in their tasks where no label says otherwise.
            improved, on_labels, elsewhere = improve_actor(base, prior_visited + all_visited, all_labels, dataclasses.replace(config, seed=config.seed + iteration), log=log)
            save_policy(improved, features, target, algorithm="vine", phase="phase4", parent=str(current),
                        metadata={"vine": {**settings, "forks": len(forks), "labels": len(labels), "agreement_labels": on_labels,
                                           "agreement_elsewhere": elsewhere,
                                           "fine_tuned_from": base_path}})  # fmt: skip
        row = {"iteration": iteration + 1, "parents": len(done), "episodes_used": config.episodes_per_iteration * (iteration + 1),
               "runs_with_branches": episodes, "epochs": measured.epochs, "epochs_total": epochs_total,
               "episode_equivalents_total": float(epochs_total / np.mean([c.max_epochs for c in configs])), "forks": len(forks),
               "relabelled": len(labels), "relabelled_total": len(all_labels),
               "candidates": len(candidates), "candidates_replayed": len(replayed),
               "candidates_fresh_gain": float(np.mean(replayed)) if replayed else float("nan"),
               "mean_best_gain": float(np.mean(gains)) if gains else float("nan"),
               "parent_final_val": float(np.mean([p.final_val_accuracy for p in parents if p.status == "complete"])),
               "seconds": time.perf_counter() - started, "policy": str(target)}  # fmt: skip
        result.history.append(row)
        log(f"vine: iteration {row['iteration']}/{config.iterations}: {len(done)} parents, {episodes} runs with branches "
            f"({measured.epochs} epochs, {row['episode_equivalents_total']:.0f} episode-equivalents so far), "
            f"{len(forks)} forks, {row['candidates']} candidates ({len(replayed)} replayed on new data orders, gaining "
            f"{row['candidates_fresh_gain']:+.2f} pp there on average), {len(labels)} relabelled (best gain {row['mean_best_gain']:+.2f} pp on average), "
            f"parents' final val {row['parent_final_val']:.2f}%, {row['seconds']:.0f} s")  # fmt: skip
        if on_iteration:
            on_iteration(row)
        current = target.resolve()
    result.policy_path = current
    # The region rule's evidence as it stood at the end: what was tested, what passed (fork_evidence.Cell.row).
    evidence = {"region_evidence": [c.row(task_names_of(features)) for c in cells]} if config.label_rule == "region" else {}
    # Its own forks only (an earlier run's stay in its folder), and what read_vine_run needs to pool them later.
    (out / "vine-history.json").write_text(json.dumps({"config": config.to_dict(), "history": result.history,
                                                       "feature_names": list(start_features), "raw_dir": str(raw),
                                                       "parents": parents_done, "forks": [asdict(f) for f in result.forks],
                                                       **evidence}, indent=1))  # fmt: skip
    return result
