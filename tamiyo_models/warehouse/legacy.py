"""Legacy reference-system episodes and packs into the same warehouse tables.

Format: /work/shared/spec/reference-system.md §7 (summarised in docs/warehouse.md). A legacy episode is one JSON
object with `decisions[]` (V1: the 27-float observation as named keys, the histories as `loss_history_5` and
`accuracy_history_5`) and, in V2, `telemetry_history[]`; a pack is `{metadata: {num_episodes, ...}, episodes:
[...]}`. Files were written by Python's `json`, so bare `NaN`/`Infinity` are accepted here (and only here).

Known defects and how they are handled:
- reward timing: the reference stored with decision t the accuracy change that happened *before* it. We
  realign: the consequence of decision t is val(t+1) - val(t) (next decision's observation; the episode's
  `final_accuracy` after the last one), and reward = 10 x that (the reference scale). The value the reference
  logged stays in `steps.reward_as_logged`.
- non-finite numbers (bare NaN/Infinity) are stored as NULL, each with its literal in `non_finite_values`;
  `loss_delta` = +Infinity at the first decision (the previous loss started at +inf) is expected, any other is
  flagged. The feature default (0) applies when a policy reads the features, not in storage.
- `best_val_loss` was never filled (constant): recomputed as the running minimum of the finite `val_loss`.
- `outcome.loss_change` (previous accuracy minus current loss), `seed_still_alive` and `seed_stage_after`
  (never set) are not imported.
- episode ids are a counter per output folder, so they do not identify an episode: the run id is
  `legacy-` + the first 16 hex digits of the SHA-256 of the episode's canonical JSON. Inside one pack an id
  must not repeat with other content, and `metadata.num_episodes` must match the episodes present.
- the behaviour policy was the reference heuristic: `controller_kind` is `heuristic` (the rules our heuristic
  reimplements), `controller_name` `reference-heuristic`; it logged no probabilities: `propensity`, `prob_*`
  and `legal_actions` are null.
- the files hold no lifecycle events: they are derived from the actions and the `seed_stage` of consecutive
  observations (`_derive_events`).
- reference blueprint `conv_enhance` (~74K parameters) is our `conv_heavy`.
Features the reference did not have (lifecycle group; telemetry for V1) are null, never a made-up 0.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from ..world.actions import COARSE_ACTIONS, FINE_ACTIONS
from ..world.blueprint_names import BLUEPRINTS
from ..world.features import ALL_FEATURES, HISTORY_LENGTH, gradient_health
from ..world.lifecycle import ACTIVE_STAGES, Stage
from .tables import PERCENTILES, PROBABILITY_COLUMNS
from .units import MAX_RECORD_BYTES, ParsedFile, Problem, RecordError, Unit, depth_problem, get, json_type, too_deep

LEGACY_REWARD_SCALE = 10.0  # reward = 10 x accuracy change (pp) in the reference
SHAPING_GAMMA = 0.99
BLUEPRINT_ALIASES = {"conv_enhance": "conv_heavy"}
# The reference heuristic is the rule set our heuristic reimplements: one kind, so that training
# (`--controllers heuristic`) and every view count legacy decisions with ours; the name tells them apart.
LEGACY_CONTROLLER_KIND = "heuristic"
LEGACY_CONTROLLER_NAME = "reference-heuristic"
SCALAR_FIELDS = (
    "epoch", "global_step", "train_loss", "val_loss", "loss_delta", "train_accuracy", "val_accuracy",
    "accuracy_delta", "plateau_epochs", "best_val_accuracy", "best_val_loss", "has_active_seed", "seed_stage",
    "seed_epochs_in_stage", "seed_alpha", "seed_improvement", "available_slots",
)  # fmt: skip
# Real files name the 5-element histories `*_history_5`; early fixtures and docs said `*_history`: both read.
HISTORY_FIELDS = {
    "loss_history": ("loss_history_5", "loss_history"),
    "accuracy_history": ("accuracy_history_5", "accuracy_history"),
}


class NonFinite(float):
    """A bare `NaN` / `Infinity` / `-Infinity` literal. A float, so an episode's canonical JSON (and with it
    its run id) is what it always was; `text` keeps the literal as written."""

    text: str

    def __new__(cls, text: str) -> "NonFinite":
        value = super().__new__(cls, text.replace("Infinity", "inf"))
        value.text = text
        return value


def _literal(value: float) -> str:
    return value.text if isinstance(value, NonFinite) else json.dumps(value)  # 1e999 parses to inf


def _longest_quote_gap(data: bytes) -> tuple[int, int]:
    """(length, offset) of the longest stretch of the file without a double quote: any string longer than a
    record may be shows up as such a stretch, found without parsing (and allocating) it."""
    quotes = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 34)
    bounds = np.concatenate(([-1], quotes, [len(data)]))
    gaps = np.diff(bounds)
    at = int(gaps.argmax())
    return int(gaps[at]) - 1, int(bounds[at]) + 1


def parse_legacy(data: bytes) -> ParsedFile:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedFile("legacy", [], [Problem("file", "utf8", f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")])
    gap, offset = _longest_quote_gap(data)
    if gap > MAX_RECORD_BYTES:
        return ParsedFile("legacy", [], [Problem(
            "file", "record_too_large", f"{gap} bytes without a quote from offset {offset}: a value larger than a "
            f"record may be ({MAX_RECORD_BYTES} bytes)")])  # fmt: skip
    try:
        document = json.loads(text, parse_constant=NonFinite)  # NaN / Infinity literals: the reference wrote them
    except json.JSONDecodeError as exc:
        return ParsedFile(
            "legacy", [], [Problem("file", "json", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")]
        )
    except RecursionError:
        return ParsedFile("legacy", [], [depth_problem("file")])
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return ParsedFile("legacy", [], [Problem("file", "json", f"not valid JSON here: {exc}")])
    del text
    if too_deep(document):
        return ParsedFile("legacy", [], [depth_problem("file")])
    if type(document) is not dict:
        return ParsedFile("legacy", [], [Problem("file", "type", f"expected a JSON object, got {json_type(document)}")])
    if "decisions" in document:
        unit = _episode_unit(document, "")
        return ParsedFile(unit.source_format, [unit])
    if "episodes" in document:
        return _pack(document)
    return ParsedFile(
        "unknown", [], [Problem("file", "unknown_format", "a JSON object that is neither a legacy episode nor a pack")]
    )


def _pack(document: dict) -> ParsedFile:
    episodes = document["episodes"]
    if type(episodes) is not list:
        return ParsedFile("legacy-pack", [], [Problem("file", "type", f"episodes should be a JSON list, got {json_type(episodes)}", "episodes")])
    metadata = document.get("metadata")
    declared = metadata.get("num_episodes") if type(metadata) is dict else None
    if declared is not None and (type(declared) is not int or declared != len(episodes)):
        # A count that disagrees means a truncated or badly assembled pack: none of it is trusted.
        last = f"episodes[0]..episodes[{len(episodes) - 1}]" if episodes else "no episodes"
        return ParsedFile("legacy-pack", [], [Problem(
            "metadata", "episode_count", f"metadata.num_episodes is {declared!r} but the pack holds {len(episodes)} "
            f"episodes ({last})", "metadata.num_episodes")])  # fmt: skip
    units, by_id = [], {}
    for index, episode in enumerate(episodes):
        prefix = f"episodes[{index}]"
        if type(episode) is not dict or "decisions" not in episode:
            text = json.dumps(episode)
            problem = Problem(prefix, "type", f"{prefix} should be a legacy episode object, got {json_type(episode)}", prefix)
            units.append(Unit("legacy-pack", None, None, [(prefix, None, text)], [problem], hashlib.sha256(text.encode()).hexdigest()))
            continue
        unit = _episode_unit(episode, prefix + ".")
        units.append(unit)
        episode_id = episode.get("episode_id")
        if type(episode_id) in (int, str):
            by_id.setdefault(episode_id, []).append((index, unit))
    for episode_id, group in by_id.items():
        if len({unit.content_sha256 for _, unit in group}) < 2:
            continue  # the same episode twice: stored once (same run id, same content)
        where = ", ".join(f"episodes[{index}]" for index, _ in group)
        for index, unit in group:
            unit.rows, unit.steps = None, 0
            unit.problems.append(Problem(
                f"episodes[{index}].episode", "duplicate_episode_id",
                f"episode_id {episode_id!r} appears at {where} of this pack with different content", "episode_id"))  # fmt: skip
    return ParsedFile("legacy-pack", units)


def _records(episode: dict, prefix: str) -> list[tuple[str, None, str]]:
    head = {k: v for k, v in episode.items() if k not in ("decisions", "telemetry_history")}
    records = [(f"{prefix}episode", None, json.dumps(head))]
    decisions = episode.get("decisions")
    if type(decisions) is list:
        records += [(f"{prefix}decisions[{i}]", None, json.dumps(d)) for i, d in enumerate(decisions)]
    history = episode.get("telemetry_history")
    if type(history) is list:
        records += [(f"{prefix}telemetry_history[{i}]", None, json.dumps(h)) for i, h in enumerate(history)]
    return records


def _episode_unit(episode: dict, prefix: str) -> Unit:
    version = "v2" if "telemetry_history" in episode else "v1"
    canonical = json.dumps(episode, sort_keys=True, separators=(",", ":"))
    content = hashlib.sha256(canonical.encode()).hexdigest()
    del canonical
    run_id = f"legacy-{content[:16]}"
    records = _records(episode, prefix)
    unit = Unit(f"legacy-episode-{version}", run_id, None, records, [], content)
    for position, _, text in records:
        if len(text) > MAX_RECORD_BYTES:
            unit.problems.append(Problem(position, "record_too_large", f"{len(text)} bytes exceeds {MAX_RECORD_BYTES}"))
    if unit.problems:
        return unit
    try:
        rows = _episode_rows(run_id, episode, version, prefix, unit.problems)
    except RecordError as exc:
        unit.problems.append(Problem(f"{prefix}episode", exc.rule, exc.reason, exc.field))
        return unit
    if unit.problems:
        return unit
    rows["runs"][0]["source_position"] = prefix.rstrip(".") or None
    unit.rows, unit.steps = rows, len(rows["steps"])
    return unit


class _Numbers:
    """Reads legacy numbers: finite ones as floats, null as None, and a non-finite one as None with its
    literal kept (a `non_finite_values` row), so storage never holds a made-up value."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.rows: list[dict] = []

    def __call__(self, value, step: int | None, position: str, field: str, expected: bool = False) -> float | None:
        if value is None:
            return None
        if type(value) is bool or type(value) is int:
            try:
                return float(value)
            except OverflowError:
                raise RecordError(field, "in_range", f"field {field!r} is an integer beyond the range of a float") from None
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            self.rows.append({"run_id": self.run_id, "step": step, "position": position, "field": field,
                              "raw_text": _literal(value), "expected": expected, "_position": position})  # fmt: skip
            return None
        raise RecordError(field, "type", f"field {field!r} should be a number, got {json_type(value)}")


def _history(obs: dict, name: str) -> tuple[str, list]:
    for key in HISTORY_FIELDS[name]:
        if key in obs:
            return key, get(obs, key, "observation", "list")
    spelled = " or ".join(f"'observation.{k}'" for k in HISTORY_FIELDS[name])
    raise RecordError(f"observation.{HISTORY_FIELDS[name][0]}", "required", f"field {spelled} is missing")


def _episode_rows(run_id: str, episode: dict, version: str, prefix: str, problems: list[Problem]) -> dict:
    decisions = get(episode, "decisions", "", "list")
    max_epochs = get(episode, "max_epochs", "", "int")
    numbers = _Numbers(run_id)
    head_position = f"{prefix}episode"
    final_accuracy = numbers(get(episode, "final_accuracy", "", "number", nullable=True, finite=False), None, head_position, "final_accuracy")
    best_accuracy = numbers(get(episode, "best_accuracy", "", "number", nullable=True, finite=False), None, head_position, "best_accuracy")
    telemetry = {}
    if version == "v2":
        for index, entry in enumerate(get(episode, "telemetry_history", "", "list")):
            if type(entry) is not dict or type(entry.get("epoch")) is not int:
                problems.append(Problem(f"{prefix}telemetry_history[{index}]", "type", "a telemetry entry needs an integer epoch", "epoch"))
                continue
            # Matched on its own epoch: the history keeps only the last epochs of a long run.
            telemetry[entry["epoch"]] = (f"{prefix}telemetry_history[{index}]", entry)

    observations = []
    for index, decision in enumerate(decisions):
        position = f"{prefix}decisions[{index}]"
        try:
            if type(decision) is not dict:
                raise RecordError(None, "type", f"a decision should be a JSON object, got {json_type(decision)}")
            obs = get(decision, "observation", "", "object")
            for key in SCALAR_FIELDS:  # numbers, null, or the reference's NaN/Infinity (stored as NULL below)
                if key not in obs:
                    raise RecordError(f"observation.{key}", "required", f"field 'observation.{key}' is missing")
                if obs[key] is not None and not isinstance(obs[key], (int, float)):
                    raise RecordError(f"observation.{key}", "type", f"field 'observation.{key}' should be a number, got {json_type(obs[key])}")
            histories = {name: _history(obs, name) for name in HISTORY_FIELDS}
            get(decision, "action", "", "object")
            get(decision, "outcome", "", "object")
            observations.append((obs, histories))
        except RecordError as exc:
            problems.append(Problem(position, exc.rule, exc.reason, exc.field))
    if problems:
        return {}

    rows: dict[str, list[dict]] = {t: [] for t in ("steps", "observations", "layer_gradients", "lifecycle_events")}
    best_loss = None
    total_return = 0.0
    stages: list[Stage | None] = []
    for index, decision in enumerate(decisions):
        position = f"{prefix}decisions[{index}]"
        step = index + 1
        obs, histories = observations[index]
        try:
            epoch = _integral(obs["epoch"], "observation.epoch")
            values = {key: numbers(obs[key], step, position, f"observation.{key}", expected=_expected(key, obs[key], index))
                      for key in SCALAR_FIELDS}  # fmt: skip
            if values["val_loss"] is not None:
                best_loss = values["val_loss"] if best_loss is None else min(best_loss, values["val_loss"])
            entry = telemetry.get(epoch)
            layers = _layers(entry[1], numbers, step, entry[0]) if entry is not None else []
            features = _features(values, histories, numbers, step, position, entry, layers, max_epochs, best_loss, first=index == 0)
            action = decision["action"]
            coarse = get(action, "action", "action", "str")
            if coarse not in COARSE_ACTIONS:
                raise RecordError("action.action", "unknown_action", f"unknown action {coarse!r}; known: {', '.join(COARSE_ACTIONS)}")
            blueprint = None
            if coarse == "GERMINATE":
                raw_blueprint = get(action, "blueprint_id", "action", "str")
                blueprint = BLUEPRINT_ALIASES.get(raw_blueprint, raw_blueprint)
                if blueprint not in BLUEPRINTS:
                    raise RecordError("action.blueprint_id", "unknown_action", f"unknown blueprint {raw_blueprint!r}")
            fine = f"GERMINATE_{blueprint}" if blueprint else coarse
            before = values["val_accuracy"]
            if index + 1 < len(decisions):
                nxt = observations[index + 1][0]
                after, loss_after, train_loss_after = _opt(nxt["val_accuracy"]), _opt(nxt["val_loss"]), _opt(nxt["train_loss"])
            else:
                after, loss_after, train_loss_after = final_accuracy, None, None
            best_before = values["best_val_accuracy"]
            best_after = None if best_before is None or after is None else max(best_before, after)
            change = None if before is None or after is None else after - before
            reward = LEGACY_REWARD_SCALE * change if change is not None else 0.0
            total_return += reward
            stage_number = values["seed_stage"]
            stage = Stage(int(stage_number)) if stage_number is not None and stage_number in Stage._value2member_map_ else None
            stages.append(stage)
            outcome = decision["outcome"]
            rows["steps"].append(
                {
                    "run_id": run_id,
                    "step": step,
                    "epoch": epoch,
                    "action_fine": fine,
                    "action_coarse": coarse,
                    "blueprint": blueprint,
                    "action_index": FINE_ACTIONS.index(fine),
                    "propensity": None,
                    **{c: None for c in PROBABILITY_COLUMNS.values()},
                    "legal_actions": None,
                    "controller": LEGACY_CONTROLLER_NAME,
                    "reason": action.get("reason") if type(action.get("reason")) is str else None,
                    "greedy_fine": None,
                    "explored": None,
                    "applied": None,
                    "gate_passed": None,
                    "gate_reason": None,
                    "gate_from_stage": None,
                    "seed_stage": stage.name if stage is not None else None,
                    "val_accuracy_before": before,
                    "val_accuracy_after": after,
                    "best_val_accuracy_before": best_before,
                    "best_val_accuracy_after": best_after,
                    "val_loss_after": loss_after,
                    "train_loss_after": train_loss_after,
                    "accuracy_change": change,
                    "shaping": None if best_after is None else SHAPING_GAMMA * best_after - best_before,
                    "reward": reward,
                    "reward_as_logged": numbers(outcome.get("reward"), step, position, "outcome.reward"),
                    "is_last": index == len(decisions) - 1,
                    "step_seconds": None,
                    "telemetry_seconds": None,
                    "source_line": index,
                    "_position": position,
                }
            )
            rows["observations"].append(
                {"run_id": run_id, "step": step, "is_final": False, "feature_schema_version": f"legacy-{version}",
                 **features, "_position": position}
            )  # fmt: skip
            for layer in layers:
                rows["layer_gradients"].append({"run_id": run_id, "step": step, **layer, "_position": position})
        except RecordError as exc:
            problems.append(Problem(position, exc.rule, exc.reason, exc.field))
    if problems:
        return {}
    rows["lifecycle_events"] = _derive_events(run_id, rows["steps"], stages)
    rows["non_finite_values"] = numbers.rows

    head = {k: v for k, v in episode.items() if k not in ("decisions", "telemetry_history")}
    rows["runs"] = [
        {
            "run_id": run_id,
            "source_format": f"legacy-episode-{version}",
            "feature_schema_version": f"legacy-{version}",
            "format_version": None,
            "controller_kind": LEGACY_CONTROLLER_KIND,
            "controller_name": LEGACY_CONTROLLER_NAME,
            "dataset": _str(episode.get("dataset_name")),
            "max_epochs": max_epochs,
            "seed": None,
            "learning_rate": _opt(episode.get("initial_lr")),
            "reward_scale": LEGACY_REWARD_SCALE,
            "reward_shaped": False,
            "rent": 0.0,
            "started_at": _str(episode.get("started_at")),
            "ended_at": _str(episode.get("ended_at")),
            # Non-finite settings become null here: DuckDB's JSON type takes no NaN (their literals are in
            # non_finite_values when the parser read them, and always in the source file).
            "config_json": json.dumps(_finite(head), sort_keys=True),
            "controller_json": json.dumps({"kind": LEGACY_CONTROLLER_KIND, "name": LEGACY_CONTROLLER_NAME}),
            "task_json": None,
            "_position": head_position,
        }
    ]
    rows["episodes"] = [
        {
            "run_id": run_id,
            "status": "complete",
            "error": None,
            "steps": len(decisions),
            "final_val_accuracy": final_accuracy,
            "best_val_accuracy": best_accuracy,
            "seeds_created": get(episode, "total_seeds_created", "", "int", nullable=True),
            "seeds_fossilized": get(episode, "total_seeds_fossilized", "", "int", nullable=True),
            "seeds_culled": get(episode, "total_seeds_culled", "", "int", nullable=True),
            "return": total_return,
            "final_parameters": None,
            "wall_seconds": None,
            "_position": head_position,
        }
    ]
    return rows


def _expected(key: str, value, index: int) -> bool:
    """The one non-finite value the reference always wrote: +Infinity as the first decision's loss_delta."""
    return key == "loss_delta" and index == 0 and isinstance(value, float) and value == math.inf


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _derive_events(run_id: str, steps: list[dict], stages: list[Stage | None]) -> list[dict]:
    """Lifecycle events of a legacy episode, which logged none: from each decision's action and the focus
    seed's stage in the observation before it and in the next one.

    A GERMINATE taken with no active seed starts a new seed (DORMANT -> GERMINATED, detail = blueprint, as
    our runs record it), a CULL of an active seed moves it to CULLED, and any other change of `seed_stage`
    between two observations is one event (cause `controller` after ADVANCE or CULL, else `automatic`). The
    reference skipped stages our graph has (BLENDING -> FOSSILIZED), so events go from the stage seen to the
    stage seen next, never through stages nobody observed. After the last decision there is no observation:
    only its GERMINATE or CULL is recorded."""
    events: list[dict] = []
    seeds, seed_id = 0, None
    for index, row in enumerate(steps):
        step, coarse = row["step"], row["action_coarse"]
        current = stages[index]
        after = stages[index + 1] if index + 1 < len(stages) else None
        moves: list[tuple[Stage, Stage, str, str | None]] = []
        if current is None:
            continue
        if coarse == "GERMINATE" and current not in ACTIVE_STAGES and (after is None or after != current):
            seeds += 1
            seed_id = f"{run_id}/seed-{seeds}"
            moves.append((current if current == Stage.DORMANT else Stage.DORMANT, Stage.GERMINATED, "controller", row["blueprint"]))
            current = Stage.GERMINATED
        elif coarse == "CULL" and current in ACTIVE_STAGES and (after is None or after != current):
            moves.append((current, Stage.CULLED, "controller", "derived from the action and seed_stage"))
            current = Stage.CULLED
        if after is not None and after != current:
            if current == Stage.DORMANT and after in ACTIVE_STAGES:  # a seed nobody was seen germinating
                seeds += 1
                seed_id = f"{run_id}/seed-{seeds}"
            cause = "controller" if coarse in ("ADVANCE", "CULL") and not moves else "automatic"
            moves.append((current, after, cause, "derived from seed_stage"))
        for event_index, (source, target, cause, detail) in enumerate(moves):
            events.append({"run_id": run_id, "step": step, "event_index": event_index, "epoch": row["epoch"],
                           "slot": 0, "seed_id": seed_id, "from_stage": source.name, "to_stage": target.name,
                           "cause": cause, "detail": detail, "_position": row["_position"]})  # fmt: skip
    return events


def _integral(value, field: str) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise RecordError(field, "type", f"field {field!r} should be an integer, got {_literal(value) if isinstance(value, float) else json_type(value)}")


def _opt(value) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _str(value) -> str | None:
    return value if type(value) is str else None


def _features(values: dict, histories: dict, numbers: _Numbers, step: int, position: str, entry: tuple[str, dict] | None,
              layers: list[dict], max_epochs: int, best_loss: float | None, first: bool) -> dict:  # fmt: skip
    f: dict[str, float | None] = dict.fromkeys(ALL_FEATURES)
    f.update(values)
    if first and f["accuracy_delta"] is not None:
        f["accuracy_delta"] = 0.0  # the reference measured it against 0 at the first step; ours starts at 0
    f["best_val_loss"] = best_loss  # never filled by the reference
    for name, (key, history) in histories.items():
        # Left-padded with 0 to 5 values, as the reference built its vector; a non-finite entry is NULL.
        tail = history[-HISTORY_LENGTH:]
        padded = [0.0] * (HISTORY_LENGTH - len(tail)) + [
            numbers(v, step, position, f"observation.{key}[{len(history) - len(tail) + i}]") for i, v in enumerate(tail)
        ]
        for i, v in enumerate(padded):
            f[f"{name}_{i}"] = v
    f["epochs_remaining"] = float(max_epochs) - f["epoch"] if f["epoch"] is not None else None
    if entry is not None:
        where, telemetry = entry
        if all(layer["norm"] is not None for layer in layers):
            health = gradient_health(layers)
            f["grad_mean_layer_norm"] = health["mean"]
            f["grad_layer_norm_variance"] = health["variance"]
            f["grad_vanishing_layers"] = health["vanishing"]
            f["grad_exploding_layers"] = health["exploding"]
            f["grad_health"] = health["health"]
            f["flag_gradient_problem"] = float(
                bool(layers) and (health["vanishing"] > 0 or health["exploding"] > 0 or health["health"] < 0.5)
            )
        per_class = telemetry.get("per_class_accuracy")
        if type(per_class) is dict:
            keys = sorted(per_class, key=lambda k: int(k) if k.isdigit() else 1_000)
            classes = [numbers(per_class[k], step, where, f"per_class_accuracy.{k}") for k in keys]
            for i in range(10):
                f[f"class_accuracy_{i}"] = classes[i] if i < len(classes) else 0.0
            if None not in classes:
                mean = sum(classes) / len(classes) if classes else 0.0
                f["class_accuracy_variance"] = sum((v - mean) ** 2 for v in classes) / len(classes) if classes else 0.0
        f["sharpness"] = numbers(telemetry.get("sharpness"), step, where, "sharpness")
        if f["plateau_epochs"] is not None:
            f["flag_sustained_plateau"] = float(f["plateau_epochs"] >= 3)
        if f["val_loss"] is not None and f["train_loss"] is not None:
            f["flag_overfitting"] = float(f["val_loss"] - f["train_loss"] > 0.5)
    return f


def _layers(entry: dict, numbers: _Numbers, step: int, where: str) -> list[dict]:
    """Per-layer gradient statistics of a V2 telemetry entry, as layer_gradients rows.

    The reference keyed them as `gradient_stats`, a list of `{layer_name, norm, std, mean, vanishing_ratio,
    exploding_ratio, percentiles}` or a mapping from layer name to those; both are accepted, and the
    `name`/`*_share` spellings too. Each entry is read once per decision it is matched to, so its
    non-finite values are recorded once."""
    stats = entry.get("gradient_stats", entry.get("gradients"))
    if type(stats) is dict and type(stats.get("layers")) is list:
        stats = stats["layers"]
    if type(stats) is dict:
        stats = [{"layer_name": name, **value} for name, value in stats.items() if type(value) is dict]
    if type(stats) is not list:
        return []
    layers = []
    for index, item in enumerate(stats):
        if type(item) is not dict:
            continue
        name = item.get("layer_name", item.get("name", item.get("layer")))
        if type(name) is not str:
            continue
        percentiles = item.get("percentiles") if type(item.get("percentiles")) is dict else {}
        field = f"gradient_stats[{index}]"

        def read(*keys: str):
            key = next((k for k in keys if k in item), keys[0])
            return numbers(item.get(key), step, where, f"{field}.{key}") if type(item.get(key)) is not str else None

        layers.append(
            {
                "layer": name,
                "norm": read("norm"),
                "norm_std": read("norm_std"),
                "mean": read("mean"),
                "std": read("std"),
                "vanishing_share": read("vanishing_share", "vanishing_ratio"),
                "exploding_share": read("exploding_share", "exploding_ratio"),
                **{
                    f"p{p}": numbers(percentiles.get(p), step, where, f"{field}.percentiles.{p}")
                    if type(percentiles.get(p)) is not str else None
                    for p in PERCENTILES
                },  # fmt: skip
            }
        )
    return layers
