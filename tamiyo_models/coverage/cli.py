"""`tamiyo coverage`: the counterfactual-coverage analysis of a warehouse, without the UI."""

from __future__ import annotations

import argparse
import sys


def cmd_coverage(args: argparse.Namespace) -> int:
    from .run import CoverageRunConfig, analyse_warehouse

    try:
        config = CoverageRunConfig.from_settings(
            abstraction=args.abstraction, k=args.k, feature_set=args.feature_set, min_samples=args.m,
            action_level=args.action_level, horizon=args.horizon, out_dir=args.out, model_dir=args.model_dir,
        )
        run = analyse_warehouse(args.warehouse, config, title=str(args.warehouse))
    except (ValueError, OSError) as exc:
        print(f"tamiyo coverage: {exc}", file=sys.stderr)
        return 2
    s = run.result.summary
    print(
        f"coverage {100 * s['coverage_clusters']:.1f}% of {s['clusters']} clusters ({100 * s['coverage_states']:.1f}% "
        f"of {s['states']} decision states); single-action clusters {100 * s['single_action_share']:.1f}%"
    )
    print(f"report: {run.files['html']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "coverage",
        help="how many abstract states have more than one action tried (counterfactual coverage)",
        description="Cluster the warehouse's decision states and report the share of clusters where at least "
        "two actions each have at least m samples, with the outcome of each action (Markdown + HTML report).",
    )
    p.add_argument("--warehouse", required=True, help="DuckDB warehouse file")
    p.add_argument("--abstraction", default="kmeans", choices=["kmeans", "reference-buckets"],
                   help="abstract states: k-means clusters of the standardised features (default), or the "
                   "reference system's (epoch // 5, plateau, has_active_seed) buckets")
    p.add_argument("--k", type=int, default=100, help="k-means clusters (default 100)")
    p.add_argument("--feature-set", default="base", choices=["base", "base+telemetry", "full"],
                   help="features the k-means clusters are fitted on (default base)")
    p.add_argument("--m", type=int, default=5, help="samples each of two actions needs in a cluster (default 5)")
    p.add_argument("--action-level", default="coarse", choices=["coarse", "fine"],
                   help="coarse: WAIT / GERMINATE / ADVANCE / CULL (default); fine: one GERMINATE per blueprint")
    p.add_argument("--horizon", type=int, default=5, help="epochs over which an action's outcome is measured")
    p.add_argument("--out", default="var/reports/coverage", help="report folder")
    p.add_argument("--model-dir", default="var/coverage", help="where the fitted k-means model is kept and reused")
    p.set_defaults(func=cmd_coverage)
