"""What a night tried, saw and decided, and how the champion has moved night by night.

`champion_table` and `champion_trend` read `champion_history` (the same rows `tamiyo sql` sees);
`write_night_report` writes <nights>/<night>/report.md with the night's comparisons and the trend plot
(trend.png): on each night's held-out configurations, the mean test score of the champion, the heuristic and
the best fixed schedule of the grid. Each night's points are measured on that night's own configurations,
so they are comparable within a night (paired) and only roughly from one night to the next.

The number that decides is the score: the test accuracy charged for growth at the night's rent (docs/arena.md,
"Compute rent"). At rent > 0 the report and the table say so and show the raw test-accuracy differences beside
it; at rent 0 the score is the test accuracy and they print as before rent existed. Nights at different rents
are **split**, never drawn as one line: a score at rent 1 is not a score at rent 0 (a champion that grew the
network scores lower by the charge alone), so one line across a change of rent would show a step no controller
made. Refusing instead would stop every report after a spec changes its rent, and the nights before the change
stay a valid record at their own rent; so each run of consecutive nights at one rent is its own segment
(`champion_trend`'s `segment`), drawn and labelled apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..evaluation.paired import decided_by
from ..warehouse.seeds import has_table
from .champion import ADDED_COLUMNS
from .prediction import prediction_lines

TABLE_SQL = """
SELECT night, arm, role, pairs, difference, low, high, fresh_difference, fresh_low, fresh_high, null_rms,
       passes, decision, champion, champion_after, reason, rent, accuracy_difference, accuracy_low, accuracy_high,
       fresh_accuracy_difference, fresh_accuracy_low, fresh_accuracy_high
FROM {source} WHERE score = ? {where} ORDER BY night, (role = 'champion') DESC, difference DESC NULLS LAST, arm
"""

TREND_SQL = """
SELECT night,
       any_value(champion) AS champion,
       any_value(champion_after) AS champion_after,
       max(mean_champion) AS champion_score,
       coalesce(max(mean_arm) FILTER (WHERE arm = 'heuristic'), max(mean_champion) FILTER (WHERE champion = 'heuristic')) AS heuristic_score,
       -- the best fixed schedule, the champion included when it is one (it has no row of its own numbers)
       greatest(max(mean_arm) FILTER (WHERE arm LIKE 'fixed:%'),
                max(mean_champion) FILTER (WHERE champion LIKE 'fixed:%')) AS best_fixed_score,
       CASE WHEN coalesce(max(mean_champion) FILTER (WHERE champion LIKE 'fixed:%'), -1)
                 >= coalesce(max(mean_arm) FILTER (WHERE arm LIKE 'fixed:%'), -1)
            THEN any_value(champion) ELSE arg_max(arm, mean_arm) FILTER (WHERE arm LIKE 'fixed:%') END AS best_fixed,
       max(pairs) AS pairs,
       any_value(difference) FILTER (WHERE decision = 'promoted') AS promoted_difference,
       any_value(low) FILTER (WHERE decision = 'promoted') AS promoted_low,
       any_value(high) FILTER (WHERE decision = 'promoted') AS promoted_high,
       any_value(fresh_difference) FILTER (WHERE decision = 'promoted') AS promoted_fresh,
       any_value(fresh_low) FILTER (WHERE decision = 'promoted') AS promoted_fresh_low,
       any_value(fresh_high) FILTER (WHERE decision = 'promoted') AS promoted_fresh_high,
       max(null_rms) AS null_rms,
       max(rent) AS rent,  -- one per night: record_night refuses comparisons at different rents
       any_value(accuracy_difference) FILTER (WHERE decision = 'promoted') AS promoted_accuracy_difference,
       any_value(fresh_accuracy_difference) FILTER (WHERE decision = 'promoted') AS promoted_fresh_accuracy
FROM {source} WHERE score = ? GROUP BY night ORDER BY night
"""


def _connect(warehouse):
    """A read connection that also works while no snapshot is published yet (a warehouse being built)."""
    from ..warehouse import connect_read_only

    return connect_read_only(warehouse)


def _source(con) -> str:
    """champion_history, read as it is now: a table no writer has opened since the rent columns were added (read
    here read-only, so not migrated) gets them as they would be migrated: rent 0, no accuracy columns."""
    have = {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'champion_history' "
                                      "AND schema_name = 'main'").fetchall()}  # fmt: skip
    missing = [(c, kind) for c, kind in ADDED_COLUMNS if c not in have]
    if not missing:
        return "champion_history"
    filled = ", ".join(("0.0" if c == "rent" else "CAST(NULL AS DOUBLE)") + f" AS {c}" for c, _ in missing)
    return f"(SELECT *, {filled} FROM champion_history) AS champion_history"


def champion_table(warehouse, score: str = "test", night: str | None = None):
    """champion_history as a polars frame (one night, or all)."""
    import polars as pl

    with _connect(warehouse) as con:
        if not has_table(con, "champion_history"):
            return pl.DataFrame()
        where, params = ("AND night = ?", [score, night]) if night else ("", [score])
        return con.sql(TABLE_SQL.format(where=where, source=_source(con)), params=params).pl()


def champion_trend(warehouse, score: str = "test"):
    """One row per night; `segment` numbers the runs of consecutive nights at one rent (module docstring)."""
    import polars as pl

    with _connect(warehouse) as con:
        if not has_table(con, "champion_history"):
            return pl.DataFrame()
        trend = con.sql(TREND_SQL.format(source=_source(con)), params=[score]).pl()
    changed = (trend["rent"] != trend["rent"].shift(1)).fill_null(True)
    return trend.with_columns(segment=changed.cast(pl.Int64).cum_sum())


def night_rent(frame) -> float:
    """The rent of a night's rows (0 for none)."""
    if frame.is_empty() or "rent" not in frame.columns:
        return 0.0
    rents = {r for r in frame["rent"].to_list() if r is not None}
    if len(rents) > 1:
        raise ValueError(f"rows at different rents ({sorted(rents)}): one night has one rent")
    return rents.pop() if rents else 0.0


def rent_changes(trend) -> list[tuple[str, float]]:
    """(first night, rent) of every segment after the first: where the trend's scores stop being comparable."""
    if trend.is_empty():
        return []
    rows = trend.select("night", "rent", "segment").iter_rows()
    seen, out = set(), []
    for night, rent, segment in rows:
        if segment not in seen:
            seen.add(segment)
            if len(seen) > 1:
                out.append((night, rent))
    return out


def plot_trend(trend, path: Path) -> Path | None:
    if trend.is_empty():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = trend["night"].to_list()
    x = list(range(len(nights)))
    rents = [r or 0.0 for r in trend["rent"].to_list()]
    segments = trend["segment"].to_list()
    charged = any(rents)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(nights) + 3), 3.6))
    for column, label, style in (("champion_score", "champion (start of night)", "o-"),
                                 ("heuristic_score", "heuristic", "s--"),
                                 ("best_fixed_score", "best fixed schedule of the grid", "^:")):  # fmt: skip
        values = [v if v is not None else math.nan for v in trend[column].to_list()]
        color = None
        for segment in dict.fromkeys(segments):  # one line per rent segment (module docstring: split)
            xs = [i for i in x if segments[i] == segment]
            line = ax.plot(xs, [values[i] for i in xs], style, color=color, label=label if color is None else None)
            color = line[0].get_color()
    if charged or len(set(segments)) > 1:
        for segment in dict.fromkeys(segments):
            first = segments.index(segment)
            if first > 0:
                ax.axvline(first - 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"rent {rents[first]:g}", (first, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
    for i, (before, after) in enumerate(zip(trend["champion"].to_list(), trend["champion_after"].to_list())):
        if before != after:
            ax.annotate(f"→ {after}", (i, trend["champion_score"][i]), textcoords="offset points", xytext=(4, 8), fontsize=8)
    ax.set_xticks(x, nights, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean score (pp; test accuracy − rent charge)" if charged else "mean test accuracy (pp)")
    ax.set_title("The champion, night by night\n(each night on its own held-out configurations)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(frame) -> str:
    """The night's comparisons as a Markdown table; at rent > 0 the raw test-accuracy differences beside the
    score's (rent 0: as before rent existed)."""
    if frame.is_empty():
        return "(no night recorded yet)"
    if "rent" in frame.columns and any(frame["rent"].fill_null(0.0).to_list()):
        return _charged_table(frame)
    lines = ["| night | controller | role | pairs | vs champion (original order) | fresh orders | null RMS | decision |",
             "|---|---|---|---:|---|---|---:|---|"]  # fmt: skip
    for r in frame.iter_rows(named=True):
        if r["role"] == "champion":
            lines.append(f"| {r['night']} | **{r['arm']}** | champion | | | | | → {r['champion_after']} |")
            continue
        lines.append(f"| {r['night']} | {r['arm']} | {r['role']} | {r['pairs']} | {ci_text(r['difference'], r['low'], r['high'])} | "
                     f"{ci_text(r['fresh_difference'], r['fresh_low'], r['fresh_high'])} | {num_text(r['null_rms'])} | {r['decision']} |")  # fmt: skip
    return "\n".join(lines)


def _charged_table(frame) -> str:
    lines = ["| night | rent | controller | role | pairs | score vs champion (original order) | score: fresh orders | "
             "test accuracy vs champion (original order) | test accuracy: fresh orders | null RMS | decision |",
             "|---|---:|---|---|---:|---|---|---|---|---:|---|"]  # fmt: skip
    for r in frame.iter_rows(named=True):
        rent = f"{r['rent'] or 0.0:g}"
        if r["role"] == "champion":
            lines.append(f"| {r['night']} | {rent} | **{r['arm']}** | champion | | | | | | | → {r['champion_after']} |")
            continue
        lines.append(f"| {r['night']} | {rent} | {r['arm']} | {r['role']} | {r['pairs']} | "
                     f"{ci_text(r['difference'], r['low'], r['high'])} | "
                     f"{ci_text(r['fresh_difference'], r['fresh_low'], r['fresh_high'])} | "
                     f"{ci_text(r['accuracy_difference'], r['accuracy_low'], r['accuracy_high'])} | "
                     f"{ci_text(r['fresh_accuracy_difference'], r['fresh_accuracy_low'], r['fresh_accuracy_high'])} | "
                     f"{num_text(r['null_rms'])} | {r['decision']} |")  # fmt: skip
    return "\n".join(lines)


def score_text(rent: float) -> str:
    """What the night's score is, in words (the first sentence of the report's Score paragraph)."""
    if not rent:
        return "Score: final accuracy on the test split (pp), which no controller sees"
    return (f"Score: final accuracy on the test split (pp), which no controller sees, charged {rent:g} pp per doubling "
            "of the network's parameters (score = test accuracy − rent × log2(final / host parameters); docs/arena.md, "
            f"\"Compute rent\"). Decided by {decided_by(rent)}: the rule's intervals are the score's; the raw test-"
            "accuracy differences are shown beside them and decide nothing")  # fmt: skip


def write_night_report(night: str, paths, config) -> Path:
    table = champion_table(paths.warehouse, config.score, night)
    trend = champion_trend(paths.warehouse, config.score)
    folder = paths.night_dir(night)
    plot = plot_trend(trend, folder / "trend.png")
    after = table["champion_after"][0] if not table.is_empty() else "?"
    before = table["champion"][0] if not table.is_empty() else "?"
    lines = [f"# Night {night}", "",
             f"Champion at the start: **{before}**; at the end: **{after}**.", "",
             f"Rule (fixed before the night): {config.rule.describe()}.", "",
             f"{score_text(night_rent(table))}; held-out configurations drawn "
             f"for this night only ({config.heldout_per_regime} per regime of spec `{config.spec}`), each controller on "
             f"the original data order and {config.fresh_orders} fresh ones; the null control is the champion rerun "
             "on the fresh orders.", "",
             format_table(table), ""]  # fmt: skip
    if plot is not None:
        lines += ["![the champion night by night](trend.png)", ""]
        changes = rent_changes(trend)
        if changes:
            lines += ["Nights at different rents are drawn as separate lines (their scores are not comparable): "
                      + "; ".join(f"rent {rent:g} from {first}" for first, rent in changes) + ".", ""]  # fmt: skip
    reasons = [f"- {r['arm']}: {r['reason']}" for r in table.iter_rows(named=True) if r["role"] != "champion"]
    trained = json.loads((folder / "train.json").read_text()) if (folder / "train.json").exists() else {}
    reasons += [f"- {name}: not evaluated: {info['reason']}" for name, info in trained.get("not_evaluated", {}).items()]
    lines += ["## Why", "", *reasons, ""]
    challengers = [r["arm"] for r in table.iter_rows(named=True) if r["role"] == "challenger"]
    lines += behaviour_lines(folder / "evaluation", before, challengers)
    lines += fork_plan_lines(folder / "fork-plan.json", forked_steps(paths.warehouse, night))
    lines += prediction_lines(paths.warehouse, night, config.score)
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


def behaviour_lines(folder: Path, champion: str, challengers: list[str], top: int = 3) -> list[str]:
    """Where each challenger first parts from the champion on the night's held-out episodes (original order), and
    how often each grafts and culls: what a learner that lost actually did differently (evaluation/behaviour.py).
    Nothing without the evaluation folder or a challenger."""
    from ..evaluation.behaviour import original_order_runs_by_label, read_behaviour

    if not challengers or not folder.is_dir():
        return []
    runs = original_order_runs_by_label(folder)
    rows = []
    for arm in [champion, *challengers]:
        found = read_behaviour(folder, arm, champion, [], runs=runs)
        if not found.episodes:
            continue
        per = lambda prefix: sum(a["decisions"] for a in found.actions if a["action"].startswith(prefix)) / found.episodes  # noqa: E731
        parts = "; ".join(f"step {d['step']}: {d['arm']} / {d['reference']} ({d['episodes']})" for d in found.divergences[:top])
        more = len(found.divergences) - top
        parts = "-" if arm == champion else (parts + (f"; {more} more" if more > 0 else "") if parts else "none")
        same = found.episodes - sum(d["episodes"] for d in found.divergences)
        rows.append(f"| {arm} | {found.episodes} | {parts} | {same if arm != champion else '-'} | {per('GERMINATE'):.2f} | {per('CULL'):.2f} |")
    if len(rows) < 2:
        return []
    return ["## Where the challengers part from the champion", "",
            "Read from tonight's held-out episodes on the original data order, paired by configuration. Two episodes of "
            "one configuration and order are in the same state until their first different action, so each entry is a "
            "state where the challenger acts differently from the champion: the step, its action / the champion's, and "
            "in how many configurations (most frequent first). Grafts and culls are decisions per episode over the "
            "whole episode.", "",
            "| controller | configurations | first parting from the champion | same actions throughout | grafts per episode | culls per episode |",
            "|---|---:|---|---:|---:|---:|", *rows, ""]  # fmt: skip


def forked_steps(warehouse, night: str) -> dict[int, int]:
    """Fork step -> parents of the night forked there, as ingested (a planned step may have moved to the next
    choice, branching.BranchConfig.defer)."""
    with _connect(warehouse) as con:
        if not has_table(con, "branches"):
            return {}
        rows = con.execute("SELECT b.fork_step, count(DISTINCT b.parent_run_id) FROM branches b JOIN runs p ON p.run_id = b.parent_run_id "
                           "WHERE json_extract_string(p.config_json, '$.tags.night') = ? GROUP BY 1 ORDER BY 1", [night]).fetchall()  # fmt: skip
    return {int(step): int(n) for step, n in rows}


def fork_plan_lines(path: Path, forked: dict[int, int] | None = None) -> list[str]:
    """The night's fork studies, where its fork plan (night.fork_plan) sent them and why, and where they forked
    (`forked`: step -> parents); nothing without a plan."""
    if not path.exists():
        return []
    plan = json.loads(path.read_text())
    directed = [p for p in plan["parents"] if p["step"] is not None]
    nights = ", ".join(plan["nights"]) or "none"
    lines = ["## Fork studies", "",
             f"{len(directed)} of {len(plan['parents'])} fork parents were sent where the region rule needs evidence, from "
             f"the forks of {plan['champion']}'s parents on earlier nights ({nights}); the rest forked at a random step.", ""]  # fmt: skip
    if forked:
        lines += ["Forked, as ingested: " + ", ".join(f"step {step} ({n} parent{'s' if n > 1 else ''})" for step, n in forked.items()) + ".", ""]
    if plan["cells"]:
        lines += ["| regime | length | epochs | stored forks | status | target | sent tonight | why |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {c['regime'] or '-'} | {c['length']} | {c['epochs']} | {c['forks']} | {c['status']} | {c['target']} | "
                  f"{c['planned']} | {c['why']} |" for c in plan["cells"]]  # fmt: skip
        lines.append("")
    return lines


def num_text(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def ci_text(mean, low, high) -> str:
    """`+0.12 [-0.03, +0.30]`: a mean difference and its interval (`-` for none)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if low is None or high is None:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"
