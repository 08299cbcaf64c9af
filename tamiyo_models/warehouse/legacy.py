"""Legacy reference-system episodes and packs into the same warehouse tables.

Format: /work/shared/spec/reference-system.md §7 (summarised in docs/warehouse.md). A legacy episode is one JSON
object with `decisions[]` (V1: the 27-float observation as named keys) and, in V2, `telemetry_history[]`; a pack
is `{metadata, episodes: [...]}`. Files were written by Python's `json`, so bare `NaN`/`Infinity` are accepted
here (and only here).

Known defects and how they are handled:
- reward timing: the reference stored with decision t the accuracy change that happened *before* it. We
  realign: the consequence of decision t is val(t+1) - val(t) (next decision's observation; the episode's
  `final_accuracy` after the last one), and reward = 10 x that (the reference scale). The value the reference
  logged stays in `steps.reward_as_logged`.
- `loss_delta` is +Infinity at the first decision (previous loss started at +inf): stored as 0, like our schema.
- `best_val_loss` was never filled (constant): recomputed as the running minimum of `val_loss`.
- `outcome.loss_change` (previous accuracy minus current loss), `seed_still_alive` and `seed_stage_after`
  (never set) are not imported.
- episode ids are a counter per output folder, so they do not identify an episode: the run id is
  `legacy-` + the first 16 hex digits of the SHA-256 of the episode's canonical JSON.
- the behaviour policy (the heuristic) logged no probabilities: `propensity` and `prob_*` are null.
- reference blueprint `conv_enhance` (~74K parameters) is our `conv_heavy`.
Features the reference did not have (lifecycle group; telemetry for V1) are null, never a made-up 0.
"""

from __future__ import annotations

import hashlib
import json
import math

from ..actions import COARSE_ACTIONS, FINE_ACTIONS
from ..blueprints import BLUEPRINTS
from ..features import ALL_FEATURES, HISTORY_LENGTH, gradient_health
from ..lifecycle import Stage
from .tables import PERCENTILES, PROBABILITY_COLUMNS
from .units import ParsedFile, Problem, RecordError, Unit, get, json_type

LEGACY_REWARD_SCALE = 10.0  # reward = 10 x accuracy change (pp) in the reference
SHAPING_GAMMA = 0.99
BLUEPRINT_ALIASES = {"conv_enhance": "conv_heavy"}
V1_FIELDS = (
    "epoch", "global_step", "train_loss", "val_loss", "loss_delta", "train_accuracy", "val_accuracy",
    "accuracy_delta", "plateau_epochs", "best_val_accuracy", "best_val_loss", "loss_history", "accuracy_history",
    "has_active_seed", "seed_stage", "seed_epochs_in_stage", "seed_alpha", "seed_improvement", "available_slots",
)  # fmt: skip
_SCALARS = tuple(f for f in V1_FIELDS if not f.endswith("_history"))


def _finite(value):
    """Legacy NaN/Infinity -> None, recursively (DuckDB's JSON type and our columns take no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _num(value) -> float:
    """A legacy vector value as the reference sanitised it: NaN, inf and None -> 0."""
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return 0.0


def parse_legacy(data: bytes) -> ParsedFile:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedFile("legacy", [], [Problem("file", "utf8", f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")])
    try:
        document = json.loads(text)  # NaN / Infinity literals allowed: the reference wrote them
    except json.JSONDecodeError as exc:
        return ParsedFile(
            "legacy", [], [Problem("file", "json", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")]
        )
    if type(document) is not dict:
        return ParsedFile("legacy", [], [Problem("file", "type", f"expected a JSON object, got {json_type(document)}")])
    if "decisions" in document:
        unit = _episode_unit(document, "")
        return ParsedFile(unit.source_format, [unit])
    if "episodes" in document:
        episodes = document["episodes"]
        if type(episodes) is not list:
            return ParsedFile("legacy-pack", [], [Problem("file", "type", f"episodes should be a JSON list, got {json_type(episodes)}", "episodes")])
        units = []
        for index, episode in enumerate(episodes):
            prefix = f"episodes[{index}]"
            if type(episode) is not dict or "decisions" not in episode:
                text = json.dumps(_finite(episode))
                problem = Problem(prefix, "type", f"{prefix} should be a legacy episode object, got {json_type(episode)}", prefix)
                units.append(Unit("legacy-pack", None, None, [(prefix, None, text)], [problem], hashlib.sha256(text.encode()).hexdigest()))
                continue
            units.append(_episode_unit(episode, prefix + "."))
        return ParsedFile("legacy-pack", units)
    return ParsedFile(
        "unknown", [], [Problem("file", "unknown_format", "a JSON object that is neither a legacy episode nor a pack")]
    )


def _episode_unit(episode: dict, prefix: str) -> Unit:
    version = "v2" if "telemetry_history" in episode else "v1"
    canonical = json.dumps(episode, sort_keys=True, separators=(",", ":"))
    content = hashlib.sha256(canonical.encode()).hexdigest()
    run_id = f"legacy-{content[:16]}"
    decisions = episode.get("decisions")
    head = {k: v for k, v in episode.items() if k not in ("decisions", "telemetry_history")}
    records = [(f"{prefix}episode", None, json.dumps(head))]
    if type(decisions) is list:
        records += [(f"{prefix}decisions[{i}]", None, json.dumps(d)) for i, d in enumerate(decisions)]
    history = episode.get("telemetry_history")
    if type(history) is list:
        records += [(f"{prefix}telemetry_history[{i}]", None, json.dumps(h)) for i, h in enumerate(history)]
    unit = Unit(f"legacy-episode-{version}", run_id, None, records, [], content)
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


def _episode_rows(run_id: str, episode: dict, version: str, prefix: str, problems: list[Problem]) -> dict:
    decisions = get(episode, "decisions", "", "list")
    max_epochs = get(episode, "max_epochs", "", "int")
    final_accuracy = get(episode, "final_accuracy", "", "number", nullable=True)
    telemetry = {}
    if version == "v2":
        for index, entry in enumerate(get(episode, "telemetry_history", "", "list")):
            if type(entry) is not dict or type(entry.get("epoch")) is not int:
                problems.append(Problem(f"{prefix}telemetry_history[{index}]", "type", "a telemetry entry needs an integer epoch", "epoch"))
                continue
            telemetry[entry["epoch"]] = entry  # matched on its own epoch: the history may not start at epoch 1

    observations = []
    for index, decision in enumerate(decisions):
        position = f"{prefix}decisions[{index}]"
        try:
            if type(decision) is not dict:
                raise RecordError(None, "type", f"a decision should be a JSON object, got {json_type(decision)}")
            obs = get(decision, "observation", "", "object")
            for key in _SCALARS:  # numbers, null, or the reference's NaN/Infinity (sanitised to 0 below)
                if key not in obs:
                    raise RecordError(f"observation.{key}", "required", f"field 'observation.{key}' is missing")
                if obs[key] is not None and type(obs[key]) not in (int, float, bool):
                    raise RecordError(f"observation.{key}", "type", f"field 'observation.{key}' should be a number, got {json_type(obs[key])}")
            for key in ("loss_history", "accuracy_history"):
                get(obs, key, "observation", "list")
            get(decision, "action", "", "object")
            get(decision, "outcome", "", "object")
            observations.append(obs)
        except RecordError as exc:
            problems.append(Problem(position, exc.rule, exc.reason, exc.field))
    if problems:
        return {}

    rows: dict[str, list[dict]] = {t: [] for t in ("steps", "observations", "layer_gradients", "lifecycle_events")}
    best_loss = math.inf
    total_return = 0.0
    for index, decision in enumerate(decisions):
        position = f"{prefix}decisions[{index}]"
        step = index + 1
        obs = observations[index]
        try:
            epoch = _integral(obs["epoch"], "observation.epoch")
            if math.isfinite(_num(obs["val_loss"])) and obs["val_loss"] is not None:
                best_loss = min(best_loss, _num(obs["val_loss"]))
            features = _features(obs, version, telemetry.get(epoch), max_epochs, best_loss, first=index == 0)
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
            before = _opt(obs["val_accuracy"])
            if index + 1 < len(decisions):
                nxt = observations[index + 1]
                after, loss_after, train_loss_after = _opt(nxt["val_accuracy"]), _opt(nxt["val_loss"]), _opt(nxt["train_loss"])
            else:
                after, loss_after, train_loss_after = final_accuracy, None, None
            best_before = _opt(obs["best_val_accuracy"])
            best_after = None if best_before is None or after is None else max(best_before, after)
            change = None if before is None or after is None else after - before
            reward = LEGACY_REWARD_SCALE * change if change is not None else 0.0
            total_return += reward
            stage_number = int(_num(obs["seed_stage"]))
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
                    "controller": None,
                    "reason": action.get("reason") if type(action.get("reason")) is str else None,
                    "greedy_fine": None,
                    "explored": None,
                    "applied": None,
                    "gate_passed": None,
                    "gate_reason": None,
                    "gate_from_stage": None,
                    "seed_stage": Stage(stage_number).name if stage_number in Stage._value2member_map_ else None,
                    "val_accuracy_before": before,
                    "val_accuracy_after": after,
                    "best_val_accuracy_before": best_before,
                    "best_val_accuracy_after": best_after,
                    "val_loss_after": loss_after,
                    "train_loss_after": train_loss_after,
                    "accuracy_change": change,
                    "shaping": None if best_after is None else SHAPING_GAMMA * best_after - best_before,
                    "reward": reward,
                    "reward_as_logged": _opt((decision["outcome"]).get("reward")),
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
            for layer in _layers(telemetry.get(epoch)):
                rows["layer_gradients"].append({"run_id": run_id, "step": step, **layer, "_position": position})
        except RecordError as exc:
            problems.append(Problem(position, exc.rule, exc.reason, exc.field))
    if problems:
        return {}

    head = _finite({k: v for k, v in episode.items() if k not in ("decisions", "telemetry_history")})
    rows["runs"] = [
        {
            "run_id": run_id,
            "source_format": f"legacy-episode-{version}",
            "feature_schema_version": f"legacy-{version}",
            "format_version": None,
            "controller_kind": None,
            "controller_name": None,
            "dataset": _str(episode.get("dataset_name")),
            "max_epochs": max_epochs,
            "seed": None,
            "learning_rate": _opt(episode.get("initial_lr")),
            "reward_scale": LEGACY_REWARD_SCALE,
            "reward_shaped": False,
            "started_at": _str(episode.get("started_at")),
            "ended_at": _str(episode.get("ended_at")),
            "config_json": json.dumps(head, sort_keys=True),
            "controller_json": None,
            "task_json": None,
            "_position": f"{prefix}episode",
        }
    ]
    rows["episodes"] = [
        {
            "run_id": run_id,
            "status": "complete",
            "error": None,
            "steps": len(decisions),
            "final_val_accuracy": final_accuracy,
            "best_val_accuracy": get(episode, "best_accuracy", "", "number", nullable=True),
            "seeds_created": get(episode, "total_seeds_created", "", "int", nullable=True),
            "seeds_fossilized": get(episode, "total_seeds_fossilized", "", "int", nullable=True),
            "seeds_culled": get(episode, "total_seeds_culled", "", "int", nullable=True),
            "return": total_return,
            "final_parameters": None,
            "wall_seconds": None,
            "_position": f"{prefix}episode",
        }
    ]
    return rows


def _integral(value, field: str) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise RecordError(field, "type", f"field {field!r} should be an integer, got {value!r}")


def _opt(value) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _str(value) -> str | None:
    return value if type(value) is str else None


def _padded(values: list) -> list[float]:
    tail = [_num(v) for v in values[-HISTORY_LENGTH:]]
    return [0.0] * (HISTORY_LENGTH - len(tail)) + tail


def _features(obs: dict, version: str, entry: dict | None, max_epochs: int, best_loss: float, first: bool) -> dict:
    f: dict[str, float | None] = dict.fromkeys(ALL_FEATURES)
    for key in _SCALARS:
        f[key] = _num(obs[key])
    if first or not math.isfinite(obs["loss_delta"] if type(obs["loss_delta"]) in (int, float) else math.nan):
        f["loss_delta"] = 0.0  # the reference's +Infinity at the first step
    if first:
        f["accuracy_delta"] = 0.0
    f["best_val_loss"] = best_loss if math.isfinite(best_loss) else 0.0  # never filled by the reference
    for i, v in enumerate(_padded(obs["loss_history"])):
        f[f"loss_history_{i}"] = v
    for i, v in enumerate(_padded(obs["accuracy_history"])):
        f[f"accuracy_history_{i}"] = v
    f["epochs_remaining"] = float(max_epochs) - f["epoch"]
    if version == "v2" and entry is not None:
        layers = _layers(entry)
        health = gradient_health(layers)
        f["grad_mean_layer_norm"] = health["mean"]
        f["grad_layer_norm_variance"] = health["variance"]
        f["grad_vanishing_layers"] = health["vanishing"]
        f["grad_exploding_layers"] = health["exploding"]
        f["grad_health"] = health["health"]
        per_class = entry.get("per_class_accuracy")
        if type(per_class) is dict:
            values = [_num(per_class[k]) for k in sorted(per_class, key=lambda k: int(k) if k.isdigit() else 1_000)]
            for i in range(10):
                f[f"class_accuracy_{i}"] = values[i] if i < len(values) else 0.0
            mean = sum(values) / len(values) if values else 0.0
            f["class_accuracy_variance"] = sum((v - mean) ** 2 for v in values) / len(values) if values else 0.0
        f["sharpness"] = _num(entry.get("sharpness"))
        f["flag_sustained_plateau"] = float(f["plateau_epochs"] >= 3)
        f["flag_gradient_problem"] = float(
            bool(layers) and (health["vanishing"] > 0 or health["exploding"] > 0 or health["health"] < 0.5)
        )
        f["flag_overfitting"] = float(f["val_loss"] - f["train_loss"] > 0.5)
    return f


def _layers(entry: dict | None) -> list[dict]:
    """Per-layer gradient statistics of a V2 telemetry entry, as layer_gradients rows.

    The reference keyed them as `gradient_stats`, a list of `{layer_name, norm, std, mean, vanishing_ratio,
    exploding_ratio, percentiles}` or a mapping from layer name to those; both are accepted, and the
    `name`/`*_share` spellings too."""
    if not entry:
        return []
    stats = entry.get("gradient_stats", entry.get("gradients"))
    if type(stats) is dict and type(stats.get("layers")) is list:
        stats = stats["layers"]
    if type(stats) is dict:
        stats = [{"layer_name": name, **value} for name, value in stats.items() if type(value) is dict]
    if type(stats) is not list:
        return []
    layers = []
    for item in stats:
        if type(item) is not dict:
            continue
        name = item.get("layer_name", item.get("name", item.get("layer")))
        if type(name) is not str:
            continue
        percentiles = item.get("percentiles") if type(item.get("percentiles")) is dict else {}
        layers.append(
            {
                "layer": name,
                "norm": _opt(item.get("norm")),
                "norm_std": _opt(item.get("norm_std")),
                "mean": _opt(item.get("mean")),
                "std": _opt(item.get("std")),
                "vanishing_share": _opt(item.get("vanishing_share", item.get("vanishing_ratio"))),
                "exploding_share": _opt(item.get("exploding_share", item.get("exploding_ratio"))),
                **{f"p{p}": _opt(percentiles.get(p)) for p in PERCENTILES},
            }
        )
    return layers
