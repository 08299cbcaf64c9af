"""What a night tried, saw and decided, and how the champion has moved night by night.

`champion_table` and `champion_trend` read `champion_history` (the same rows `tamiyo sql` sees);
`write_night_report` writes <nights>/<night>/report.md with the night's comparisons and the trend plot
(trend.png): on each night's held-out configurations, the mean test score of the champion, the heuristic and
the best fixed schedule of the grid. Each night's points are measured on that night's own configurations,
so they are comparable within a night (paired) and only roughly from one night to the next.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..warehouse.seeds import has_table

TABLE_SQL = """
SELECT night, arm, role, pairs, difference, low, high, fresh_difference, fresh_low, fresh_high, null_rms,
       passes, decision, champion, champion_after, reason
FROM champion_history WHERE score = ? {where} ORDER BY night, (role = 'champion') DESC, difference DESC NULLS LAST, arm
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
       max(null_rms) AS null_rms
FROM champion_history WHERE score = ? GROUP BY night ORDER BY night
"""


def _connect(warehouse):
    """A read connection that also works while no snapshot is published yet (a warehouse being built)."""
    from ..warehouse import connect_read_only

    return connect_read_only(warehouse)


def champion_table(warehouse, score: str = "test", night: str | None = None):
    """champion_history as a polars frame (one night, or all)."""
    import polars as pl

    with _connect(warehouse) as con:
        if not has_table(con, "champion_history"):
            return pl.DataFrame()
        where, params = ("AND night = ?", [score, night]) if night else ("", [score])
        return con.sql(TABLE_SQL.format(where=where), params=params).pl()


def champion_trend(warehouse, score: str = "test"):
    import polars as pl

    with _connect(warehouse) as con:
        return con.sql(TREND_SQL, params=[score]).pl() if has_table(con, "champion_history") else pl.DataFrame()


def plot_trend(trend, path: Path) -> Path | None:
    if trend.is_empty():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = trend["night"].to_list()
    x = list(range(len(nights)))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(nights) + 3), 3.6))
    for column, label, style in (("champion_score", "champion (start of night)", "o-"),
                                 ("heuristic_score", "heuristic", "s--"),
                                 ("best_fixed_score", "best fixed schedule of the grid", "^:")):  # fmt: skip
        values = [v if v is not None else math.nan for v in trend[column].to_list()]
        ax.plot(x, values, style, label=label)
    for i, (before, after) in enumerate(zip(trend["champion"].to_list(), trend["champion_after"].to_list())):
        if before != after:
            ax.annotate(f"→ {after}", (i, trend["champion_score"][i]), textcoords="offset points", xytext=(4, 8), fontsize=8)
    ax.set_xticks(x, nights, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean test accuracy (pp)")
    ax.set_title("The champion, night by night\n(each night on its own held-out configurations)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(frame) -> str:
    """The night's comparisons as a Markdown table."""
    if frame.is_empty():
        return "(no night recorded yet)"
    lines = ["| night | controller | role | pairs | vs champion (original order) | fresh orders | null RMS | decision |",
             "|---|---|---|---:|---|---|---:|---|"]  # fmt: skip
    for r in frame.iter_rows(named=True):
        if r["role"] == "champion":
            lines.append(f"| {r['night']} | **{r['arm']}** | champion | | | | | → {r['champion_after']} |")
            continue
        lines.append(f"| {r['night']} | {r['arm']} | {r['role']} | {r['pairs']} | {ci_text(r['difference'], r['low'], r['high'])} | "
                     f"{ci_text(r['fresh_difference'], r['fresh_low'], r['fresh_high'])} | {num_text(r['null_rms'])} | {r['decision']} |")  # fmt: skip
    return "\n".join(lines)


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
             f"Score: final accuracy on the test split (pp), which no controller sees; held-out configurations drawn "
             f"for this night only ({config.heldout_per_regime} per regime of spec `{config.spec}`), each controller on "
             f"the original data order and {config.fresh_orders} fresh ones; the null control is the champion rerun "
             "on the fresh orders.", "",
             format_table(table), ""]  # fmt: skip
    if plot is not None:
        lines += ["![the champion night by night](trend.png)", ""]
    reasons = [f"- {r['arm']}: {r['reason']}" for r in table.iter_rows(named=True) if r["role"] != "champion"]
    lines += ["## Why", "", *reasons, ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path



def num_text(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def ci_text(mean, low, high) -> str:
    """`+0.12 [-0.03, +0.30]`: a mean difference and its interval (`-` for none)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if low is None or high is None:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"
