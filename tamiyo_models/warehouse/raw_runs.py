"""Raw telemetry runs (docs/raw-run-format.md) into warehouse rows.

Strict about what the format promises (types, required fields, strict JSON, a header first and a footer last,
`epoch = step - 1`), tolerant of keys it does not know: the generator may add fields, and older ingestion must
keep working. Observation features are computed here with `tamiyo_models.world.features.observation_features`, the
same function a live controller calls.

The parser reads lines itself (rather than `rawrun.iter_lines`, which stops at the first bad line) because a
bad line must not hide the others: every record of a run ends up either stored or quarantined with a reason.
"""

from __future__ import annotations

import hashlib
import json

import orjson

from ..world.actions import ACTION_INDEX, ALL_ACTIONS
from ..world.features import FEATURE_SCHEMA_VERSION, TASK_FEATURES, focus_slot, observation_features

PRE_TASK_SCHEMA_VERSION = "tamiyo-features/3"  # observations without a task description (no task features)
from ..world.lifecycle import Stage
from ..world.rawrun import RAW_RUN_FORMAT, RAW_RUN_FORMAT_VERSION
from .tables import PERCENTILES, PROBABILITY_COLUMNS
from .units import MAX_JSON_DEPTH, MAX_LINE_BYTES, ParsedFile, Problem, RecordError, Unit, get, json_type, too_deep

SOURCE_FORMAT = f"{RAW_RUN_FORMAT}/{RAW_RUN_FORMAT_VERSION}"
FOOTER_STATUSES = ("complete", "truncated", "failed")  # truncated: stopped on purpose early (a branch at its horizon)

# Observation fields the feature function reads without a default: they must be present and numeric.
_OBSERVATION_NUMBERS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "best_val_accuracy", "best_val_loss")
_OBSERVATION_INTS = ("epoch", "max_epochs", "global_step", "plateau_epochs")
_LAYER_FIELDS = ("norm", "norm_std", "mean", "std", "vanishing_share", "exploding_share")
_PERCENTILE_COLUMNS = tuple((p, f"p{p}") for p in PERCENTILES)


def _reject_constant(name: str) -> float:
    # Raw runs are strict JSON: a bare NaN/Infinity means the file was not written by rawrun.py.
    raise RecordError(None, "strict_json", f"bare {name} literal (raw runs are strict JSON: non-finite numbers are null)")


def _loads(raw: bytes, text: str) -> object:
    # orjson parses these ~7 KB step lines ~3x faster than the stdlib. It is strict JSON, so everything it
    # accepts the stdlib reads the same way; what it rejects (bare NaN/Infinity, numbers beyond float range,
    # broken JSON) is parsed again by the stdlib, whose result or error (rule strict_json, or json with
    # message and column) is exactly what ingestion reported before orjson.
    try:
        record = orjson.loads(raw)  # refuses more than 1,024 levels itself
    except orjson.JSONDecodeError:
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise RecordError(None, "depth", f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
        except (json.JSONDecodeError, RecordError):
            raise
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise RecordError(None, "json", f"not valid JSON here: {exc}") from None
    # Counting brackets is cheap, the walk is not: only a line with that many containers can be that deep.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and too_deep(record):
        raise RecordError(None, "depth", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return record


def looks_like_raw_run(first_line: str) -> bool:
    """Recognise a raw run from its first line (the header), not from its file name."""
    return f'"format":"{RAW_RUN_FORMAT}"' in first_line.replace(" ", "") and '"type":"header"' in first_line.replace(
        " ", ""
    )


def parse_raw_run(data: bytes) -> ParsedFile:
    """Parse one raw run file (its bytes) into one unit."""
    lines: list[tuple[int, bytes, str]] = []
    records: list[tuple[str, int | None, str]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="backslashreplace")
            records.append((f"line {number}", number, text))
            problems.append(
                Problem(f"line {number}", "utf8", f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}", line=number)
            )
            continue
        records.append((f"line {number}", number, text))
        if len(raw) > MAX_LINE_BYTES:
            problems.append(
                Problem(f"line {number}", "line_too_long", f"line of {len(raw)} bytes exceeds {MAX_LINE_BYTES}", line=number)
            )
            continue
        lines.append((number, raw, text))

    unit = Unit(SOURCE_FORMAT, None, None, records, problems, hashlib.sha256(data).hexdigest())
    header, steps, footer = None, [], None
    for number, raw, text in lines:
        position = f"line {number}"
        try:
            record = _loads(raw, text)
            if type(record) is not dict:
                raise RecordError(None, "type", f"expected a JSON object, got {json_type(record)}")
            kind = record.get("type")
            if header is None:
                if kind != "header":
                    raise RecordError("type", "header_first", f"the first record must be the header, got type {kind!r}")
                header = _header(record)
                unit.run_id = header["run_id"]
            elif kind == "step":
                if footer is not None:
                    raise RecordError("type", "footer_last", "a step after the footer")
                steps.append((number, record))
            elif kind == "footer":
                if footer is not None:
                    raise RecordError("type", "footer_last", "a second footer")
                footer = (number, record)
            elif kind == "header":
                raise RecordError("type", "header_first", "a second header")
            else:
                raise RecordError("type", "record_type", f"unknown record type {kind!r}")
        except json.JSONDecodeError as exc:
            problems.append(Problem(position, "json", f"not valid JSON ({exc.msg} at column {exc.colno})", line=number))
        except RecordError as exc:
            problems.append(Problem(position, exc.rule, exc.reason, exc.field, number))

    if header is None:
        if not problems:
            problems.append(Problem("file", "header_first", "no header record"))
        return ParsedFile(SOURCE_FORMAT, [unit])
    if footer is None:
        problems.append(
            Problem("file", "footer_missing", "no footer: the run is incomplete (crashed generator or truncated file)")
        )

    run_id, first_step = header["run_id"], header["first_step"]
    rows: dict[str, list[dict]] = {t: [] for t in ("steps", "observations", "layer_gradients", "lifecycle_events")}
    if header["branch"] is not None:
        rows["branches"] = [{**header["branch"], "_position": f"line {lines[0][0]}"}]
    if steps and steps[0][1].get("step") != first_step:
        number = steps[0][0]
        problems.append(Problem(f"line {number}", "first_step", f"the first step must be {first_step} "
                                f"({'the fork step' if header['branch'] else 'a run starts at step 1'}), "
                                f"got {steps[0][1].get('step')!r}", "step", number))  # fmt: skip
    for index, (number, record) in enumerate(steps):
        try:
            _step_rows(run_id, number, record, is_last=index == len(steps) - 1, rows=rows)
        except RecordError as exc:
            problems.append(Problem(f"line {number}", exc.rule, exc.reason, exc.field, number))

    if footer is not None:
        number, record = footer
        try:
            episode = _footer(run_id, record, len(steps))
            final = record.get("final_observation")
            if final is not None:
                if type(final) is not dict:
                    raise RecordError("final_observation", "type", f"should be a JSON object, got {json_type(final)}")
                _observation_rows(run_id, first_step + len(steps), final, "final_observation", f"line {number}", True, rows)
        except RecordError as exc:
            problems.append(Problem(f"line {number}", exc.rule, exc.reason, exc.field, number))

    if problems:
        return ParsedFile(SOURCE_FORMAT, [unit])
    position = f"line {lines[0][0]}"
    run = {**header["row"], "_unit": 0, "_position": position}
    rows["runs"] = [run]
    rows["episodes"] = [{**episode, "_unit": 0, "_position": f"line {footer[0]}"}]
    for table_rows in rows.values():
        for row in table_rows:
            row["_unit"] = 0
    unit.rows, unit.steps = rows, len(steps)
    return ParsedFile(SOURCE_FORMAT, [unit])


def _header(record: dict) -> dict:
    if record.get("format") != RAW_RUN_FORMAT:
        raise RecordError("format", "format", f"format {record.get('format')!r} is not {RAW_RUN_FORMAT!r}")
    if record.get("format_version") != RAW_RUN_FORMAT_VERSION:
        raise RecordError(
            "format_version", "format_version", f"unsupported format_version {record.get('format_version')!r}"
        )
    run_id = get(record, "run_id", "", "str")
    if not run_id or len(run_id) > 200:
        raise RecordError("run_id", "run_id", f"run_id must be 1..200 characters, got {len(run_id)}")
    config = get(record, "config", "", "object")
    code = record.get("code_version") if type(record.get("code_version")) is dict else {}
    controller = record.get("controller") if type(record.get("controller")) is dict else {}
    dataset = config.get("dataset") if type(config.get("dataset")) is dict else {}
    reward = config.get("reward") if type(config.get("reward")) is dict else {}
    ctrl_cfg = config.get("controller") if type(config.get("controller")) is dict else {}
    row = {
        "run_id": run_id,
        "source_format": SOURCE_FORMAT,
        "source_position": None,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "format_version": RAW_RUN_FORMAT_VERSION,
        "code_package": _opt_str(code.get("package")),
        "code_source_sha256": _opt_str(code.get("source_sha256")),
        "git_commit": _opt_str(code.get("git_commit")),
        "git_dirty": code.get("git_dirty") if type(code.get("git_dirty")) is bool else None,
        "controller_kind": _opt_str(ctrl_cfg.get("kind")),
        "controller_name": _opt_str(controller.get("name")),
        "dataset": _opt_str(dataset.get("name")),
        "max_epochs": get(config, "max_epochs", "config", "int"),
        "seed": get(config, "seed", "config", "int"),
        "learning_rate": get(config, "learning_rate", "config", "number", nullable=True),
        "reward_scale": _opt_num(reward.get("scale")),
        "reward_shaped": reward.get("shaped") if type(reward.get("shaped")) is bool else None,
        "host_parameters": record.get("host_parameters") if type(record.get("host_parameters")) is int else None,
        "torch_version": _opt_str(record.get("torch_version")),
        "regime": _opt_str((config.get("tags") or {}).get("regime")) if type(config.get("tags")) is dict else None,
        "data_order_seed": config.get("data_order_seed") if type(config.get("data_order_seed")) is int else None,
        "controller_label": _opt_str(ctrl_cfg.get("label")),
        # A configuration written before rent existed, or at rent 0, has no `rent`: it paid none.
        "rent": get(config, "rent", "config", "number", optional=True) or 0.0,
        "started_at": None,
        "ended_at": None,
        "config_json": json.dumps(config, sort_keys=True),
        "controller_json": json.dumps(controller, sort_keys=True),
        "task_json": json.dumps(record.get("task"), sort_keys=True),
    }
    return {"run_id": run_id, "row": row, **_branch(record, run_id)}


def _branch(record: dict, run_id: str) -> dict:
    """A branch run (tamiyo_models.episodes.branching) links to its parent and starts at its fork step."""
    if "branch" not in record:
        return {"branch": None, "first_step": 1}
    link = get(record, "branch", "", "object")
    fork_step = get(link, "fork_step", "branch", "int")
    if fork_step < 1:
        raise RecordError("branch.fork_step", "in_range", f"fork_step must be >= 1, got {fork_step}")
    return {
        "branch": {
            "run_id": run_id,
            "parent_run_id": get(link, "parent_run_id", "branch", "str"),
            "fork_step": fork_step,
            "forced_action": get(link, "forced_action", "branch", "str"),
            "horizon": get(link, "horizon", "branch", "int", nullable=True),
        },
        "first_step": fork_step,
    }


def _opt_str(value: object) -> str | None:
    return value if type(value) is str else None


def _opt_num(value: object) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _step_rows(run_id: str, number: int, record: dict, is_last: bool, rows: dict) -> None:
    position = f"line {number}"
    step = get(record, "step", "", "int")
    epoch = get(record, "epoch", "", "int")
    if epoch != step - 1:
        raise RecordError("epoch", "epoch_sequence", f"epoch {epoch} should be step - 1 = {step - 1}")
    observation = get(record, "observation", "", "object")
    action = get(record, "action", "", "object")
    outcome = get(record, "outcome", "", "object")
    fine = get(action, "fine", "action", "str")
    if fine not in ACTION_INDEX:
        raise RecordError("action.fine", "unknown_action", f"unknown action {fine!r}; known: {', '.join(ALL_ACTIONS)}")
    coarse = get(action, "coarse", "action", "str")
    blueprint = get(action, "blueprint", "action", "str", nullable=True)
    probabilities = get(action, "probabilities", "action", "object")
    unknown = sorted(set(probabilities) - set(ALL_ACTIONS))
    if unknown:
        raise RecordError("action.probabilities", "unknown_action", f"probabilities of unknown actions {unknown}")
    legal = get(action, "legal", "action", "list")
    for name in legal:
        if name not in ACTION_INDEX:
            raise RecordError("action.legal", "unknown_action", f"unknown legal action {name!r}")
    greedy = get(action, "greedy_fine", "action", "str", nullable=True) if "greedy_fine" in action else None
    gate = get(outcome, "gate", "outcome", "object", nullable=True)
    events = get(outcome, "events", "outcome", "list")
    timing = record.get("timing") if type(record.get("timing")) is dict else {}

    row = {
        "run_id": run_id,
        "step": step,
        "epoch": epoch,
        "action_fine": fine,
        "action_coarse": coarse,
        "blueprint": blueprint,
        "action_index": ACTION_INDEX[fine],
        # Null only on a branch run's forced first step (an intervention, not a behaviour draw).
        "propensity": get(action, "propensity", "action", "number", nullable=action.get("forced") is True),
        "legal_actions": legal,
        "controller": get(action, "controller", "action", "str", nullable=True),
        "reason": get(action, "reason", "action", "str", nullable=True),
        "greedy_fine": greedy,
        "explored": None if greedy is None else greedy != fine,
        "applied": get(outcome, "applied", "outcome", "bool"),
        "gate_passed": None if gate is None else get(gate, "passed", "outcome.gate", "bool"),
        "gate_reason": None if gate is None else get(gate, "reason", "outcome.gate", "str", nullable=True),
        "gate_from_stage": None if gate is None else get(gate, "from_stage", "outcome.gate", "str", nullable=True),
        "seed_stage": None,
        "val_accuracy_before": get(outcome, "val_accuracy_before", "outcome", "number", nullable=True),
        "val_accuracy_after": get(outcome, "val_accuracy_after", "outcome", "number", nullable=True),
        "best_val_accuracy_before": get(outcome, "best_val_accuracy_before", "outcome", "number", nullable=True),
        "best_val_accuracy_after": get(outcome, "best_val_accuracy_after", "outcome", "number", nullable=True),
        "val_loss_after": get(outcome, "val_loss_after", "outcome", "number", nullable=True),
        "train_loss_after": get(outcome, "train_loss_after", "outcome", "number", nullable=True),
        "accuracy_change": get(outcome, "accuracy_change", "outcome", "number", nullable=True),
        "shaping": get(outcome, "shaping", "outcome", "number", nullable=True),
        "reward": get(outcome, "reward", "outcome", "number"),
        "reward_as_logged": None,
        "is_last": is_last,
        "step_seconds": _opt_num(timing.get("step_seconds")),
        "telemetry_seconds": _opt_num(timing.get("telemetry_seconds")),
        "source_line": number,
        "forced": action.get("forced") is True,
        # Whether mu was a real draw (importance weights identified); null in runs written before it was logged.
        "stochastic": get(action, "stochastic", "action", "bool", optional=True),
        "_position": position,
    }
    for name, column in PROBABILITY_COLUMNS.items():
        value = probabilities.get(name, 0.0)
        if type(value) not in (int, float):
            raise RecordError(f"action.probabilities.{name}", "type", f"probability of {name} is {json_type(value)}")
        row[column] = float(value)
    slot = _observation_rows(run_id, step, observation, "observation", position, False, rows)
    row["seed_stage"] = slot
    rows["steps"].append(row)

    for index, event in enumerate(events):
        where = f"outcome.events[{index}]"
        if type(event) is not dict:
            raise RecordError(where, "type", f"{where} should be a JSON object, got {json_type(event)}")
        rows["lifecycle_events"].append(
            {
                "run_id": run_id,
                "step": step,
                "event_index": index,
                "epoch": get(event, "epoch", where, "int", nullable=True),
                "slot": get(event, "slot", where, "int", nullable=True),
                "seed_id": get(event, "seed_id", where, "str", nullable=True),
                "from_stage": get(event, "from_stage", where, "str"),
                "to_stage": get(event, "to_stage", where, "str"),
                "cause": get(event, "cause", where, "str"),
                "detail": get(event, "detail", where, "str", nullable=True),
                "_position": position,
            }
        )


def _observation_rows(
    run_id: str, step: int, record: dict, path: str, position: str, is_final: bool, rows: dict
) -> str | None:
    """Append the features and layer gradients of one observation; return the focus slot's stage."""
    for key in _OBSERVATION_INTS:
        get(record, key, path, "int")
    for key in _OBSERVATION_NUMBERS:
        get(record, key, path, "number", nullable=True)
    slots = get(record, "slots", path, "list")
    for index, slot in enumerate(slots):
        where = f"{path}.slots[{index}]"
        if type(slot) is not dict:
            raise RecordError(where, "type", f"{where} should be a JSON object, got {json_type(slot)}")
        stage = get(slot, "stage", where, "str")
        if stage not in Stage.__members__:
            raise RecordError(f"{where}.stage", "unknown_stage", f"unknown lifecycle stage {stage!r}")
        get(slot, "index", where, "int")
    try:
        features = observation_features(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(path, "features", f"observation features could not be computed: {exc!r}") from None
    has_task = type(record.get("task")) is dict
    if not has_task:  # written before schema 4: the task is unknown, stored as null rather than NaN
        features.update(dict.fromkeys(TASK_FEATURES))
    rows["observations"].append(
        {
            "run_id": run_id,
            "step": step,
            "is_final": is_final,
            "feature_schema_version": FEATURE_SCHEMA_VERSION if has_task else PRE_TASK_SCHEMA_VERSION,
            **features,
            "_position": position,
        }
    )
    telemetry = record.get("telemetry")
    gradients = telemetry.get("gradients") if type(telemetry) is dict else None
    layers = gradients.get("layers") if type(gradients) is dict else None
    append = rows["layer_gradients"].append
    for index, layer in enumerate(layers or ()):
        # The widest table (~10 layers per step): built with inline conversions, no helper calls per value.
        if type(layer) is not dict:
            where = f"{path}.telemetry.gradients.layers[{index}]"
            raise RecordError(where, "type", f"{where} should be a JSON object, got {json_type(layer)}")
        name = layer.get("name")
        if type(name) is not str:
            get(layer, "name", f"{path}.telemetry.gradients.layers[{index}]", "str")
        pct = layer.get("percentiles")
        pct = pct if type(pct) is dict else {}
        row = {"run_id": run_id, "step": step, "layer": name, "_position": position}
        for key in _LAYER_FIELDS:
            v = layer.get(key)
            row[key] = v if type(v) is float else (float(v) if type(v) is int else None)
        for key, column in _PERCENTILE_COLUMNS:
            v = pct.get(key)
            row[column] = v if type(v) is float else (float(v) if type(v) is int else None)
        append(row)
    slot = focus_slot(slots)
    return slot["stage"] if slot else None


def _footer(run_id: str, record: dict, steps: int) -> dict:
    status = get(record, "status", "", "str")
    if status not in FOOTER_STATUSES:
        raise RecordError("status", "in_set", f"footer status {status!r} is not one of {FOOTER_STATUSES}")
    declared = get(record, "steps", "", "int")
    if declared != steps:
        raise RecordError("steps", "step_count", f"footer says {declared} steps, the file holds {steps}")
    test_accuracy = get(record, "final_test_accuracy", "", "number", nullable=True, optional=True)
    return {
        "run_id": run_id,
        "status": status,
        "error": get(record, "error", "", "str", nullable=True),
        "steps": steps,
        "final_val_accuracy": get(record, "final_val_accuracy", "", "number", nullable=True),
        "best_val_accuracy": get(record, "best_val_accuracy", "", "number", nullable=True),
        "seeds_created": get(record, "seeds_created", "", "int"),
        "seeds_fossilized": get(record, "seeds_fossilized", "", "int"),
        "seeds_culled": get(record, "seeds_culled", "", "int"),
        "return": get(record, "return", "", "number", nullable=True),
        "final_parameters": get(record, "final_parameters", "", "int", nullable=True),
        "wall_seconds": _opt_num(record.get("wall_seconds")),
        # Runs written before the test split existed have none: null, never their validation score.
        "final_test_accuracy": test_accuracy,
        # A footer written before rent existed was charged nothing: its score is its test accuracy.
        "score": get(record, "score", "", "number", nullable=True) if "score" in record else test_accuracy,
        "final_test_loss": get(record, "final_test_loss", "", "number", nullable=True, optional=True),
        "test_accuracy_last": get(record, "test_accuracy_last", "", "number", nullable=True, optional=True),
        "final_legal_actions": _legal_list(record),
    }


def _legal_list(footer: dict) -> list[str] | None:
    """The legal actions in the final observation's state (the next state of the last transition), or None."""
    legal = get(footer, "final_legal", "", "list", nullable=True, optional=True)
    if legal is None:
        return None
    unknown = [a for a in legal if a not in ACTION_INDEX]
    if unknown:
        raise RecordError("final_legal", "unknown_action", f"unknown legal actions {unknown}")
    return legal


__all__ = ["SOURCE_FORMAT", "looks_like_raw_run", "parse_raw_run"]
