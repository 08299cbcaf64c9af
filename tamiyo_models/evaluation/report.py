"""The evaluation report: Markdown beside its PNG plots, and one standalone HTML file rendered from the same
Markdown (real tables and headings, plots embedded as base64) that can be attached to an MLflow run or a
Dagster materialisation and opened anywhere.

Plots: confusion matrix (held-out episodes), learning curves (loss and balanced accuracy per epoch), final
accuracy per paired seed (policy vs heuristic), and the action mix over epochs (during training on the
validation split, and live per episode epoch for each controller).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common.html_report import markdown_page
from ..world.actions import COARSE_ACTIONS


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(COARSE_ACTIONS)), COARSE_ACTIONS, rotation=30)
    ax.set_yticks(range(len(COARSE_ACTIONS)), COARSE_ACTIONS)
    ax.set_xlabel("policy"), ax.set_ylabel("logged")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="black" if v < matrix.max() / 2 else "white")
    ax.set_title(title, fontsize=9)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def plot_learning_curves(history, path: Path) -> Path:
    plt = _figure()
    epochs = [m.epoch for m in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [m.train_loss for m in history], label="train loss")
    a.plot(epochs, [m.val_loss for m in history], label="validation loss")
    a.set_xlabel("epoch"), a.legend()
    b.plot(epochs, [m.val_balanced_accuracy for m in history], label="balanced accuracy")
    for name in COARSE_ACTIONS:
        b.plot(epochs, [m.val_per_class_accuracy[name] for m in history], lw=0.8, ls="--", label=name)
    b.set_xlabel("epoch"), b.set_ylim(0, 1.02), b.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def plot_paired(live, path: Path) -> Path:
    plt = _figure()
    pairs = sorted(live.pairs, key=lambda p: p.heuristic_final)
    x = np.arange(len(pairs))
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(pairs) + 2), 3.4))
    ax.scatter(x, [p.heuristic_final for p in pairs], marker="o", label="heuristic")
    ax.scatter(x, [p.policy_final for p in pairs], marker="x", label="policy")
    for i, p in enumerate(pairs):
        ax.plot([i, i], [p.heuristic_final, p.policy_final], color="grey", lw=0.7)
    ax.set_xticks(x, [str(p.seed) for p in pairs], rotation=90, fontsize=6)
    ax.set_xlabel("episode seed (paired)"), ax.set_ylabel("final test accuracy (pp)" if not live.rent else f"score at rent {live.rent:g} (pp)"), ax.legend()
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def plot_action_mix(history, live, path: Path) -> Path:
    plt = _figure()
    panels = [("validation predictions per training epoch", np.array([[m.val_action_mix[a] for a in COARSE_ACTIONS] for m in history]))] if history else []
    if live is not None:
        panels += [(f"live {k}, per episode epoch", np.array(v)) for k, v in live.action_mix_by_epoch.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, mix) in zip(axes[0], panels):
        if len(mix):
            ax.stackplot(np.arange(1, len(mix) + 1), mix.T, labels=COARSE_ACTIONS)
        ax.set_title(title, fontsize=8), ax.set_ylim(0, 1), ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def write_report(out_dir: str | Path, title: str, *, training=None, offline=None, live=None, extra: dict | None = None) -> dict[str, Path]:
    """Write report.md, report.html, report.json and the PNGs; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[tuple[str, Path]] = []
    md = [f"# {title}", ""]
    if extra:
        md += ["| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in extra.items()], ""]
    if offline is not None:
        md += ["## Offline, held-out episodes", "",
               f"{offline.decisions} decisions of {offline.episodes} held-out episodes (split by episode).", "",
               "| metric | value |", "|---|---|",
               f"| balanced accuracy (coarse) | {offline.balanced_accuracy:.4f} |",
               *[f"| accuracy {k} | {v:.4f} |" for k, v in offline.per_class_accuracy.items()],
               f"| agreement, fine action | {offline.agreement_fine:.4f} |",
               f"| agreement, coarse action | {offline.agreement_coarse:.4f} |", "",
               "| action | logged | policy |", "|---|---|---|",
               *[f"| {a} | {offline.logged_action_distribution[a]:.3f} | {offline.policy_action_distribution[a]:.3f} |"
                 for a in offline.logged_action_distribution], ""]  # fmt: skip
        plots.append(("Confusion matrix (held-out episodes)", plot_confusion(offline.confusion, out / "confusion.png", "held-out episodes")))
    if training is not None:
        md += ["## Training", "", f"Best epoch {training.best_epoch} of {len(training.history)}, "
               f"{training.n_train} training decisions, {training.updates_per_second:.0f} updates/s, "
               f"{training.train_seconds:.1f} s. Class weights: " + ", ".join(f"{k} {v:.3f}" for k, v in training.class_weights.items()), ""]  # fmt: skip
        plots.append(("Learning curves", plot_learning_curves(training.history, out / "learning_curves.png")))
    if live is not None:
        md += live_section(live)
        plots.append(("Final accuracy per paired seed", plot_paired(live, out / "paired_final_accuracy.png")))
    if training is not None or live is not None:
        plots.append(("Action mix over epochs", plot_action_mix(training.history if training else [], live, out / "action_mix.png")))
    md += ["## Plots", ""] + [f"### {caption}\n\n![{caption}]({path.name})\n" for caption, path in plots]
    markdown = "\n".join(md)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(markdown_page(markdown, title, out))
    payload = {
        "title": title,
        "extra": extra or {},
        "offline": None if offline is None else {**offline.summary(), "confusion": offline.confusion.tolist(),
                                                  "policy_actions": offline.policy_action_distribution,
                                                  "logged_actions": offline.logged_action_distribution},
        "live": None if live is None else live.to_dict(),
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(payload, indent=1, default=str))
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / "report.json", **{p.stem: p for _, p in plots}}


def live_section(live) -> list[str]:
    """The live part of a report: the test-split result, validation beside it, the noise floor from the null
    control, and the replication on fresh data orders when it ran."""
    c = int(round(live.confidence * 100))
    fresh = ("not run (`--replicate K` reruns every pair on K fresh data orders; a result counts only if it holds there too)"
             if not live.fresh_orders else
             f"**{live.fresh.mean:+.2f} pp** [{live.fresh.low:+.2f}, {live.fresh.high:+.2f}] over {live.fresh_orders} fresh data order(s)"
             + (" — the interval is above 0 on the original and the fresh orders: **this result counts**." if live.counts else "."))  # fmt: skip
    return ["## Live, paired episodes", "",
            f"{len(live.pairs)} pairs: the same configuration and seed, once under the policy and once under the "
            f"heuristic; seeds disjoint from the training data. {len(live.failed)} episodes failed. Score: final accuracy "
            f"on the **{live.score} split**, which no controller saw, at rent {live.rent:g} (pp per doubling of "
            f"parameters): **{live.decided_by} decides**; the raw test accuracy and validation (what they watched) "
            "beside it.", "",
            "| | policy | heuristic |", "|---|---|---|",
            f"| mean score (pp) | {live.mean_policy:.2f} | {live.mean_heuristic:.2f} |",
            f"| mean final test accuracy (pp) | {_mean(p.policy_accuracy for p in live.pairs):.2f} | "
            f"{_mean(p.heuristic_accuracy for p in live.pairs):.2f} |",
            f"| mean final parameters | {_mean(p.policy_parameters for p in live.pairs):,.0f} | "
            f"{_mean(p.heuristic_parameters for p in live.pairs):,.0f} |",
            *[f"| seeds {k} per episode | {live.seeds['policy'][k]:.2f} | {live.seeds['heuristic'][k]:.2f} |" for k in ("created", "fossilized", "culled")],
            "",
            f"- Paired difference policy - heuristic (score): **{live.mean_difference:+.2f} pp**, {c}% bootstrap interval "
            f"[{live.ci_low:+.2f}, {live.ci_high:+.2f}]; wins / ties / losses {live.wins} / {live.ties} / {live.losses}. "
            f"Raw test accuracy: {live.accuracy_difference}. On validation: {live.val_difference}.",
            f"- Noise floor: the heuristic rerun with only the data order changed moves the score by "
            f"**{live.noise_floor:.2f} pp RMS** (null mean {live.null_difference}); at that spread, "
            f"{live.pairs_for_half_pp} pairs detect 0.5 pp and {live.pairs_for_one_pp} detect 1 pp (two-sided 5%, power 80%).",
            f"- Fresh data orders: {fresh}",
            f"- Agreement with the heuristic on the policy's own trajectories: coarse {live.agreement_coarse:.3f}, "
            f"fine {live.agreement_fine:.3f}.", "",
            "| action | policy | heuristic |", "|---|---|---|",
            *[f"| {a} | {live.action_distribution['policy'][a]:.3f} | {live.action_distribution['heuristic'][a]:.3f} |"
              for a in live.action_distribution["policy"]], "",
            "| seed | configuration | heuristic score | policy score | difference | heuristic test | policy test | heuristic val | policy val |",
            "|---|---|---|---|---|---|---|---|---|",
            *[f"| {p.seed} | {p.config_summary} | {p.heuristic_final:.2f} | {p.policy_final:.2f} | {p.difference:+.2f} | "
              f"{p.heuristic_accuracy:.2f} | {p.policy_accuracy:.2f} | {p.heuristic_val:.2f} | {p.policy_val:.2f} |" for p in live.pairs],
            ""]  # fmt: skip


def plot_paired_differences(rows: list[tuple[str, object]], path: Path) -> Path:
    """Forest plot: each controller's mean paired difference with its interval, on the same heuristic episodes
    (fresh orders beside, where replicated), over the null band of +-1 noise floor."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(rows) + 1.4))
    floor = rows[0][1].noise_floor if rows else float("nan")
    if floor == floor:
        ax.axvspan(-floor, floor, color="0.9", label="null ±1 RMS")
    for row, (name, live) in enumerate(rows):
        ax.errorbar(live.mean_difference, row, xerr=[[live.mean_difference - live.ci_low], [live.ci_high - live.mean_difference]],
                    fmt="o", capsize=4, color="tab:blue")  # fmt: skip
        if live.fresh_orders:
            f = live.fresh
            ax.errorbar(f.mean, row + 0.25, xerr=[[f.mean - f.low], [f.high - f.mean]], fmt="s", capsize=3, color="tab:orange")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("final test accuracy, controller - heuristic (pp): original orders (o), fresh orders (s)")
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def write_comparison(out_dir: str | Path, evaluations, configurations: str, references: dict | None = None) -> dict[str, Path]:
    """comparison.md / .html / .json: every evaluated policy (and reference controller) in one table, paired
    against the same heuristic runs, with the noise floor and the fresh-order replication."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    references = references or {}
    first = evaluations[0].live if evaluations else next(iter(references.values()), None)
    c = int(round(first.confidence * 100)) if first else 95
    md = ["# Policies against the heuristic", "",
          f"Live: {configurations}; the heuristic's episode on each configuration is shared by every controller. "
          f"Score: final **test** accuracy (no controller saw that split)"
          + (f", charged {first.rent:g} pp per doubling of parameters: {first.decided_by} decides, the raw "
             "accuracy difference is beside it." if first and first.rent else ".")
          + (f" Noise floor (heuristic rerun on fresh data orders): {first.noise_floor:.2f} pp RMS; "
             f"{first.pairs_for_half_pp} pairs detect 0.5 pp." if first else ""), "",
          f"| controller | phase | variant | offline balanced accuracy | score (pp) | heuristic (pp) | paired difference [{c}% interval] | W / T / L | fresh orders | counts | test accuracy difference | agreement |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [(e.name, e.metadata.get("phase", "-"), e.metadata.get("variant") or "-", e.offline, e.live) for e in evaluations]
    rows += [(name, "reference", "-", None, live) for name, live in references.items()]
    for name, phase, variant, offline, live in rows:
        fresh = str(live.fresh) if live.fresh_orders else "-"
        md.append(f"| {name} | {phase} | {variant} | "
                  f"{'-' if offline is None else f'{offline.balanced_accuracy:.4f}'} | {live.mean_policy:.2f} | {live.mean_heuristic:.2f} | "
                  f"{live.mean_difference:+.2f} [{live.ci_low:+.2f}, {live.ci_high:+.2f}] | {live.wins} / {live.ties} / {live.losses} | "
                  f"{fresh} | {'yes' if live.counts else 'no'} | {live.accuracy_difference.mean:+.2f} | {live.agreement_coarse:.3f} |")  # fmt: skip
    notes = [f"- **{e.name}**: degenerate weighting: {e.metadata['weighting_note']}" for e in evaluations
             if e.metadata.get("weighting_note")]  # fmt: skip
    if notes:
        md += ["", "## Warnings", "", *notes]
    plot = plot_paired_differences([(name, live) for name, _, _, _, live in rows], out / "paired_differences.png")
    md += ["", "## Plots", "", f"### Paired differences\n\n![Paired differences]({plot.name})\n"]
    markdown = "\n".join(md)
    (out / "comparison.md").write_text(markdown)
    (out / "comparison.html").write_text(markdown_page(markdown, "Policies against the heuristic", out))
    payload = [{"name": e.name, "policy": str(e.policy_path), "phase": e.metadata.get("phase"), "variant": e.metadata.get("variant"),
                "offline": None if e.offline is None else e.offline.summary(), "live": e.live.summary()} for e in evaluations]  # fmt: skip
    payload += [{"name": name, "reference": True, "live": live.summary()} for name, live in references.items()]
    (out / "comparison.json").write_text(json.dumps(payload, indent=1, default=str))
    return {"markdown": out / "comparison.md", "html": out / "comparison.html", "json": out / "comparison.json", "plot": plot}


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
