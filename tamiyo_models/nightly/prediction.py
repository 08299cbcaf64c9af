"""The night's off-policy prediction: every arm of the evaluation estimated from logged data before any of its
episodes runs, then scored against what the evaluation measured.

Off-policy evaluation is only worth trusting where it has been checked, and a check made once by hand says
little about the next night's arms. So each night checks it again: the `ope` stage (night.predict_night) fits
FQE for the champion, the challengers, the grid and the heuristic on every night's transitions, before the
evaluation; the decision (night.decide_night) then sets the estimates beside the live paired differences:
Spearman rank correlation, mean absolute error in pp, and intervals over the night's held-out configurations
with the ceiling live's own noise sets (ope.report.calibration_intervals). One row per arm in `night_ope`, so
`SELECT DISTINCT night, spearman, ceiling FROM night_ope ORDER BY night` is OPE's track record.

The prediction is made on the warehouse as it stands after the night's ingestion: it never sees the night's
held-out episodes (they are not ingested), so it is a prediction, not a fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS night_ope (
    night VARCHAR, score VARCHAR, arm VARCHAR, role VARCHAR, champion VARCHAR,
    fqe DOUBLE,               -- FQE's value of the arm (pp of validation accuracy gained over an episode)
    predicted DOUBLE,         -- its difference from the champion's estimate: the prediction
    live DOUBLE,              -- the live paired difference against the champion, original and fresh orders pooled
    arms INTEGER,             -- the night's calibration, repeated on each of its rows:
    spearman DOUBLE, mean_abs_error_pp DOUBLE, on_draws DOUBLE, spearman_low DOUBLE, spearman_high DOUBLE,
    ceiling DOUBLE, ceiling_low DOUBLE, ceiling_high DOUBLE, gap DOUBLE, gap_low DOUBLE, gap_high DOUBLE,
    transitions INTEGER, fqe_updates INTEGER
)
"""


def estimate_arms(policies: dict, warehouse: Path, seed_slots: int, updates: int, out_dir: Path, *, champion: str,
                  title: str, log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """FQE (with PDWIS/WDR where identified) for every arm, name -> policy file or reference name; the heuristic is
    always estimated. Writes the off-policy report into `out_dir` and returns what the stage records: every row,
    each arm's difference from `champion`'s estimate, the data's summary and the time taken."""
    from ..ope.fqe import FQEConfig
    from ..ope.report import off_policy_table, write_ope_report
    from ..transitions.dataset import load_transitions

    started = time.perf_counter()
    data = load_transitions(warehouse, "full+slots", seed_slots=seed_slots)
    fqe = FQEConfig(updates=updates)
    rows = off_policy_table(policies, data, fqe, log=log)
    write_ope_report(rows, out_dir, title=title, data_summary=data.summary())
    values = {r.name: r.fqe for r in rows}
    if champion not in values:
        raise ValueError(f"the champion {champion!r} is not among the estimated arms ({', '.join(values)})")
    return {"champion": champion, "rows": [asdict(r) for r in rows],
            "predicted": {name: value - values[champion] for name, value in values.items()},
            "data": data.summary(), "fqe_updates": fqe.budget(data),
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def score_prediction(prediction: dict, runs, comparisons, champion: str) -> dict:
    """The prediction against the night's live result: per arm its predicted and live difference (original and
    fresh orders pooled, each order once), and the calibration with its intervals over the held-out
    configurations of `runs` (the evaluation's PairedRuns)."""
    from ..ope.report import OPERow, calibration, calibration_intervals, pooled_over_orders

    rows = [OPERow(**r) for r in prediction["rows"]]
    live = {champion: 0.0}
    for c in comparisons:
        if (pooled := pooled_over_orders(c.difference, c.fresh_difference, c.fresh_orders)) is not None:
            live[c.arm] = pooled
    calib = calibration(rows, live, champion)
    indices = list(range(len(runs.configs)))
    by_configuration = {}
    for arm in runs.arms:  # each configuration's orders pooled by the rule that pools `live`'s means
        orders = len([o for o in runs.orders(arm) if o > 0 and o in runs.orders(runs.reference)])
        pooled = [pooled_over_orders(o, f, orders) for o, f in zip(runs.differences(arm, indices, 0), runs.fresh_differences(arm, indices))]
        by_configuration[arm] = np.array([math.nan if p is None else p for p in pooled])
    intervals = calibration_intervals(rows, by_configuration, champion) or {}
    return {"champion": champion, "predicted": prediction["predicted"], "fqe": {r.name: r.fqe for r in rows},
            "live": live, "calibration": calib, "intervals": intervals,
            "transitions": prediction["data"].get("transitions"), "fqe_updates": prediction.get("fqe_updates")}  # fmt: skip


def record_prediction(con, night: str, score: str, scored: dict, roles: dict) -> None:
    """Replace the night's rows of night_ope with `scored` (score_prediction's), one per estimated arm."""
    con.execute(SCHEMA)
    calib, i = scored["calibration"], scored["intervals"]
    night_values = [calib.get("policies"), _db(calib.get("spearman")), _db(calib.get("mean_abs_error_pp")),
                    *(_db(i.get(k)) for k in ("on_draws", "spearman_low", "spearman_high", "ceiling", "ceiling_low",
                                              "ceiling_high", "gap", "gap_low", "gap_high"))]  # fmt: skip
    rows = [(night, score, arm, roles.get(arm, "heuristic" if arm == "heuristic" else "estimated"), scored["champion"],
             _db(scored["fqe"][arm]), _db(predicted), _db(scored["live"].get(arm)), *night_values,
             scored["transitions"], scored["fqe_updates"])
            for arm, predicted in scored["predicted"].items()]  # fmt: skip
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM night_ope WHERE night = ? AND score = ?", [night, score])
        if rows:
            con.executemany("INSERT INTO night_ope VALUES (" + ", ".join(["?"] * len(rows[0])) + ")", rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def prediction_lines(warehouse, night: str, score: str = "test") -> list[str]:
    """The night report's section: tonight's predictions beside live, the calibration, and OPE's record night by
    night. Nothing where the night made no prediction."""
    from ..warehouse import connect_read_only
    from ..warehouse.seeds import has_table

    with connect_read_only(warehouse) as con:
        if not has_table(con, "night_ope"):
            return []
        rows = con.execute("SELECT arm, predicted, live FROM night_ope WHERE night = ? AND score = ? "
                           "ORDER BY live DESC NULLS LAST, arm", [night, score]).fetchall()  # fmt: skip
        record = con.execute("SELECT night, any_value(arms), any_value(spearman), any_value(mean_abs_error_pp), "
                             "any_value(on_draws), any_value(ceiling), any_value(gap_low), any_value(gap_high) "
                             "FROM night_ope WHERE score = ? GROUP BY night ORDER BY night", [score]).fetchall()  # fmt: skip
    if not rows:
        return []
    tonight = next(r for r in record if r[0] == night)
    _, arms, rho, mae, on_draws, ceiling, gap_low, gap_high = tonight
    lines = ["## Off-policy prediction (made before the evaluation)", "",
             "FQE on every night's logged transitions, fitted before any held-out episode ran; each arm as its difference "
             "from the champion's estimate, beside the live paired difference (original and fresh orders pooled).", "",
             "| arm | predicted (pp) | live (pp) |", "|---|---:|---:|",
             *(f"| {arm} | {_num(p)} | {_num(live)} |" for arm, p, live in rows), ""]  # fmt: skip
    if rho is not None:
        verdict = ("within live's noise" if gap_low is not None and gap_low <= 0 else
                   "worse than live's noise explains" if gap_low is not None else "")  # fmt: skip
        lines += [f"Spearman {_num(rho)} over {arms} arms, mean absolute error {mae:.2f} pp. Resampling the held-out "
                  f"configurations: OPE {_num(on_draws)} on the draws, against a ceiling of {_num(ceiling)} (what "
                  f"live's own means score there); the gap's interval [{_num(gap_low)}, {_num(gap_high)}]: "
                  f"{verdict}.", ""]  # fmt: skip
    if len(record) > 1:
        lines += ["OPE's record, night by night (the ceiling: what live's own means score against its resampled "
                  "configurations; a Spearman near it is as good as this evaluation can tell):", "",
                  "| predicted night | arms | Spearman | error (pp) | ceiling |", "|---|---:|---:|---:|---:|",
                  *(f"| `{n}` | {a} | {_num(r)} | {m:.2f} | {_num(c)} |" if m is not None else f"| `{n}` | {a} | - | - | - |"
                    for n, a, r, m, _, c, _, _ in record), ""]  # fmt: skip
    return lines


def _num(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"


def _db(value):
    """NaN and None are stored as NULL."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
