"""Where a policy acts differently from a reference, read from paired held-out episodes: a study's (the shipped
policy's model card, studies/ship.py) or a night's (the night report's "Where the challengers part from the
champion", nightly/report.py).

Two episodes of the same configuration and data order are in the same state until their controllers' first
different action: an episode is a deterministic function of its configuration, its order and its actions. So
the first divergence of an arm's episode from the reference's names exactly a state where the arm acts
differently, and what each would do there. After it the trajectories part, and the card describes the arm on its
own: each action other than WAIT (in how many episodes, at which steps), and a shallow tree over the policy's
own features that says in which states it takes which action (scikit-learn's `export_text`).

This is description, not selection: nothing here feeds back into training, a study's verdict or a night's
decision.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BehaviourConfig:
    max_depth: int = 3  # the tree's depth: enough for "when, and on what telemetry", small enough to read
    min_samples_leaf: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Behaviour:
    episodes: int  # the arm's original-order episodes paired with the reference's
    divergences: list[dict]  # per (step, arm action, reference action): count of episodes, features' means
    actions: list[dict]  # per action other than WAIT: episodes, decisions, first and last step
    rules: str  # the tree's rules (empty when the arm never does anything but one action)
    classes: tuple[str, ...] = ()  # the order of the tree's weights


def original_order_runs_by_label(folder: str | Path) -> dict[str, dict[str, object]]:
    """Controller label -> its complete raw runs on their original data order in `folder`, keyed by their
    configuration without the controller (so an arm's run and the reference's on the same configuration share a
    key, and an episode of other settings left in the folder shares none). One pass over the folder serves every
    arm (a night report asks for ten)."""
    import json

    from ..world.rawrun import list_raw_runs, read_raw_run

    out: dict[str, dict[str, object]] = defaultdict(dict)
    for path in list_raw_runs(folder):
        run = read_raw_run(path)
        config = dict(run.header.get("config") or {})
        if config.get("data_order_seed") is not None or (run.footer or {}).get("status") != "complete":
            continue
        config.pop("controller", None)
        config.pop("tags", None)
        out[(run.header.get("controller") or {}).get("name")][json.dumps(config, sort_keys=True)] = run
    return dict(out)


def read_behaviour(folder: str | Path, arm: str, reference: str, feature_names: list[str],
                   config: BehaviourConfig = BehaviourConfig(), *, runs: dict | None = None) -> Behaviour:  # fmt: skip
    """The arm's behaviour on the study's held-out episodes in `folder`, beside the reference's (see the module
    docstring). `feature_names`: the policy's own inputs, which the tree is allowed to split on (none: no tree).
    `runs`: the folder already read (`original_order_runs_by_label`)."""
    from ..world.features import observation_features

    runs = original_order_runs_by_label(folder) if runs is None else runs
    arm_runs, reference_runs = runs.get(arm, {}), runs.get(reference, {})
    paired = sorted(set(arm_runs) & set(reference_runs))
    divergences: dict[tuple, list] = defaultdict(list)
    paired = [k for k in paired if len(arm_runs[k].steps) == len(reference_runs[k].steps)]  # both ran to the end
    for key in paired:
        for mine, theirs in zip(arm_runs[key].steps, reference_runs[key].steps):
            a, b = mine["action"]["fine"], theirs["action"]["fine"]
            if a != b:
                divergences[(mine["step"], a, b)].append(observation_features(mine["observation"]))
                break
    states, chosen, taken = [], [], defaultdict(list)
    for key in paired:
        for step in arm_runs[key].steps:
            action = step["action"]["fine"]
            if feature_names:  # the tree's inputs; without them no tree is fitted, so no step is read for it
                features = observation_features(step["observation"])
                states.append([features[n] for n in feature_names])
            chosen.append(action)
            if action != "WAIT":
                taken[action].append((key, step["step"]))
    actions = [{"action": a, "episodes": len({s for s, _ in t}), "decisions": len(t), "first_step": min(k for _, k in t),
                "last_step": max(k for _, k in t)} for a, t in sorted(taken.items(), key=lambda kv: -len(kv[1]))]  # fmt: skip
    rows = [{"step": step, "arm": a, "reference": b, "episodes": len(found), "features": _means(found)}
            for (step, a, b), found in sorted(divergences.items(), key=lambda kv: (-len(kv[1]), kv[0]))]  # fmt: skip
    return Behaviour(len(paired), rows, actions, *_rules(states, chosen, feature_names, config))


def _means(found: list[dict]) -> dict[str, float]:
    return {k: sum(f[k] for f in found) / len(found) for k in found[0]} if found else {}


def _rules(states: list, chosen: list, feature_names: list[str], config: BehaviourConfig) -> tuple[str, tuple[str, ...]]:
    if len(set(chosen)) < 2 or not feature_names:
        return "", ()
    from sklearn.tree import DecisionTreeClassifier, export_text

    tree = DecisionTreeClassifier(max_depth=config.max_depth, min_samples_leaf=config.min_samples_leaf,
                                  random_state=config.seed).fit(states, chosen)  # fmt: skip
    text = export_text(tree, feature_names=list(feature_names), show_weights=True, decimals=2)
    return text, tuple(str(c) for c in tree.classes_)


def behaviour_markdown(b: Behaviour, arm: str, reference: str, keys: tuple[str, ...] = ()) -> list[str]:
    """The card's section. `keys`: features whose means the divergence table shows (by default those the reader's
    rule and the schedules' timing turn on, for slot 0; `slot_keys` gives them for another slot)."""
    keys = keys or slot_keys(0)
    lines = ["## Where it acts differently from the reference", "",
             f"Read from the study's held-out episodes on their original data order ({b.episodes} configurations), beside "
             f"`{reference}`'s on the same configurations. Until their first different action the two episodes are in the "
             "same state, so each row below is a state where this policy acts differently from the reference (the "
             "features' means over those states).", ""]  # fmt: skip
    if b.divergences:
        shown = [k for k in keys if k in b.divergences[0]["features"]]
        lines += ["| step | this policy | the reference | episodes | " + "".join(f"{k} | " for k in shown),
                  "|---:|---|---|---:|" + "---:|" * len(shown)]  # fmt: skip
        for r in b.divergences:
            lines.append(f"| {r['step']} | {r['arm']} | {r['reference']} | {r['episodes']} | "
                         + "".join(f"{r['features'][k]:.2f} | " for k in shown))  # fmt: skip
    never = b.episodes - sum(r["episodes"] for r in b.divergences)
    if never:
        lines.append(f"\nIn {never} configuration(s) it took the reference's every action.")
    lines += ["", "What it does over the whole episode (every action other than WAIT):", "",
              "| action | episodes | decisions | steps |", "|---|---:|---:|---|"]  # fmt: skip
    lines += [f"| {a['action']} | {a['episodes']} | {a['decisions']} | {a['first_step']}–{a['last_step']} |" for a in b.actions]
    if b.rules:
        lines += ["", "In which states it takes which action: a shallow tree fitted to its own decisions in "
                  "those episodes, on its own features (weights: decisions per action, in the order "
                  f"{', '.join(b.classes)}):", "", "```text", b.rules.rstrip(), "```"]  # fmt: skip
    return lines



def slot_keys(slot: int) -> tuple[str, ...]:
    """The divergence table's default columns for a reference that acts on `slot`."""
    return ("epoch", f"slot{slot}_zero_gradient_share", f"slot{slot}_stage", f"slot{slot}_alpha", "val_accuracy")
