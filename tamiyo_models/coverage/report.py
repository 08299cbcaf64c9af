"""The coverage report: headline numbers and three plots, as Markdown (PNG files beside it) and as one
standalone HTML file (plots embedded), for people and for the Dagster UI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..common.html_report import markdown_page
from .analysis import CoverageResult

ACTION_COLOURS = {"WAIT": "#9e9e9e", "GERMINATE": "#2e7d32", "ADVANCE": "#1565c0", "CULL": "#c62828"}


def _plots(result: CoverageResult, out_dir: Path, title: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    clusters = result.clusters.sort("states", descending=True)
    order = clusters["cluster"].to_list()
    position = {c: i for i, c in enumerate(order)}

    fig, ax = plt.subplots(figsize=(10, 3.2))
    colours = np.where(clusters["covered"].to_numpy(), "#2e7d32", "#c62828")
    ax.bar(range(len(order)), clusters["actions_with_m"].to_numpy(), color=colours, width=1.0)
    ax.axhline(2, color="black", lw=0.8, ls="--")
    ax.set(xlabel="cluster (by number of states)", ylabel=f"actions with >= {result.summary['min_samples']} samples",
           title=f"{title}: coverage by cluster (green = covered)")  # fmt: skip
    paths["coverage_by_cluster"] = out_dir / "coverage_by_cluster.png"
    fig.tight_layout(), fig.savefig(paths["coverage_by_cluster"], dpi=110), plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.2))
    # Shares, not counts: cluster sizes differ by orders of magnitude and stacked bars cannot use a log axis.
    totals = clusters["states"].to_numpy().astype(float)
    bottom = np.zeros(len(order))
    for action in sorted(result.actions["action"].unique().to_list()):
        part = result.actions.filter(pl.col("action") == action)
        heights = np.zeros(len(order))
        for cluster, n in zip(part["cluster"].to_list(), part["n"].to_list()):
            heights[position[cluster]] = n
        colour = ACTION_COLOURS.get(action.split("_")[0], None)
        ax.bar(range(len(order)), heights / totals, bottom=bottom, width=1.0, label=action, color=colour)
        bottom += heights / totals
    ax.set(xlabel="cluster (by number of states, largest first)", ylabel="share of decisions", ylim=(0, 1),
           title="action mix per cluster")  # fmt: skip
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    paths["action_mix"] = out_dir / "action_mix.png"
    fig.tight_layout(), fig.savefig(paths["action_mix"], dpi=110), plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.2))
    contrasts = result.contrasts.sort("difference")
    if contrasts.height:
        x = np.arange(contrasts.height)
        d = contrasts["difference"].to_numpy()
        ax.errorbar(x, d, yerr=[d - contrasts["ci_low"].to_numpy(), contrasts["ci_high"].to_numpy() - d], fmt="o", ms=3)
        ax.axhline(0, color="black", lw=0.8)
    else:
        ax.text(0.5, 0.5, "no cluster has both WAIT and another action with enough samples", ha="center", transform=ax.transAxes)
    ax.set(xlabel="covered cluster", ylabel=f"best alternative - WAIT ({result.summary['outcome']}, pp)",
           title="outcome difference where both were tried (95% CI)")  # fmt: skip
    paths["outcome_difference"] = out_dir / "outcome_difference.png"
    fig.tight_layout(), fig.savefig(paths["outcome_difference"], dpi=110), plt.close(fig)
    return paths


def coverage_markdown(result: CoverageResult, abstraction: dict, title: str, image_links: dict[str, str], slices: pl.DataFrame | None = None) -> str:
    s = result.summary
    lines = [
        f"# Counterfactual coverage: {title}",
        "",
        f"- **Coverage: {100 * s['coverage_clusters']:.1f}% of clusters** ({s['covered_clusters']} of {s['clusters']}) "
        f"have at least two {s['action_level']} actions with >= {s['min_samples']} samples each; "
        f"{100 * s['coverage_states']:.1f}% of the {s['states']} decision states lie in covered clusters.",
        f"- Single-action clusters: {s['single_action_clusters']} ({100 * s['single_action_share']:.1f}%) "
        "(the reference system found 87%).",
        f"- State abstraction: {abstraction.get('kind')}"
        + (f", k = {abstraction['k']} on the `{abstraction['feature_set']}` features" if abstraction.get("kind") == "kmeans" else f" {abstraction.get('buckets', '')}"),
        f"- Outcome: `{s['outcome']}`; covered clusters where an alternative beat WAIT with a 95% interval above 0: "
        f"{int((result.contrasts['ci_low'] > 0).sum()) if result.contrasts.height else 0} of {result.contrasts.height}.",
        "",
    ]
    for key, caption in (("coverage_by_cluster", "Coverage by cluster"), ("action_mix", "Action mix per cluster"),
                         ("outcome_difference", "Outcome difference between actions")):  # fmt: skip
        lines += [f"![{caption}]({image_links[key]})", ""]
    if slices is not None and slices.height:
        lines += ["## By slice", "", "| slice | value | clusters | coverage (clusters) | states | coverage (states) |", "|---|---|---|---|---|---|"]
        for r in slices.iter_rows(named=True):
            lines.append(f"| {r['slice']} | {r['value']} | {r['clusters']} | {100 * r['coverage_clusters']:.1f}% | "
                         f"{r['states']} | {100 * r['coverage_states']:.1f}% |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_coverage_report(result: CoverageResult, abstraction: dict, out_dir: str | Path, title: str,
                          slices: pl.DataFrame | None = None) -> dict[str, Path]:  # fmt: skip
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out_dir, title)
    markdown = coverage_markdown(result, abstraction, title, {k: p.name for k, p in plots.items()}, slices)
    (out_dir / "coverage.md").write_text(markdown)
    (out_dir / "coverage.html").write_text(markdown_page(markdown, title, out_dir))
    return {"markdown": out_dir / "coverage.md", "html": out_dir / "coverage.html", **plots}
