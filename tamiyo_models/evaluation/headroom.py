"""Headroom: where, and by how much, a controller's decisions can beat the heuristic — measured honestly.

Reference controllers (never grow, fixed schedules, the heuristic restricted to a blueprint, an eager
heuristic, random) run on paired configurations of a spec, regime by regime, and each is compared with the
heuristic (or another reference, `--reference`) on the *test* split. Beside every difference stands what luck
alone does:

- the **null control** (the heuristic rerun on fresh data orders): its RMS is the noise floor, and from it the
  pairs needed to detect a 0.5 pp and a 1 pp effect;
- the **best in hindsight** (per configuration, the best of the N alternatives) next to the **null best-of-N**
  (what picking the best of N luck-only runs gains on average): a best-in-hindsight that does not clear it is
  the winner's curse;
- the **replication on fresh data orders**: the best controller of each regime, and each configuration's
  hindsight winner, rerun with the heuristic on new orders. A controller *reproducibly* beats the heuristic
  in a regime when the interval of its paired difference is above zero on the original orders and on the
  fresh ones.

`analyse_headroom` is the library function behind `tamiyo headroom` and the Dagster asset `headroom_report`;
it writes headroom.md / .html / .json and plots, and resumes from the episodes already in its folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.stats import (
    TIE_TOLERANCE,
    Interval,
    expected_best_of,
    iqm,
    mean_ci,
    noise_floor,
    pairs_needed,
    probability_of_improvement,
    stratified_mean_ci,
    win_tie_loss,
)  # fmt: skip
from ..controllers.reference import DEFAULT_REFERENCES
from .paired import PairedRuns, run_paired


@dataclass(frozen=True)
class HeadroomConfig:
    spec: str = "arena"  # a generation spec with [[regimes]] (or without: one regime, "all")
    regimes: tuple[str, ...] = ()  # empty: every regime that can run on this machine
    configs_per_regime: int = 24
    controllers: tuple[str, ...] = DEFAULT_REFERENCES
    reference: str = "heuristic"
    null_orders: int = 1  # fresh data orders the reference reruns on, beyond those of the replication
    replicate: int = 2  # fresh data orders for the replication
    replicate_arms: str = "best"  # best: each regime's best controller + each configuration's hindsight winner; all
    batch_seed: int = 20_261_129  # draws the configurations; keep it apart from training batches
    workers: int = 2
    confidence: float = 0.95
    resamples: int = 10_000
    tie_tolerance: float = TIE_TOLERANCE
    # Where every episode runs ("cuda": several workers share one GPU). Part of each configuration, so episodes
    # run on a GPU are never read back as the CPU's, nor the other way round.
    device: str = "cpu"

    def __post_init__(self):
        if self.reference not in self.controllers:
            raise ValueError(f"the reference {self.reference!r} must be one of the controllers")
        if self.configs_per_regime < 2:
            raise ValueError("configs_per_regime must be >= 2 (an interval needs pairs)")
        if self.replicate_arms not in ("best", "all"):
            raise ValueError(f"replicate_arms must be 'best' or 'all', got {self.replicate_arms!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class ArmRow:
    arm: str
    pairs: int
    mean_test: float
    mean_val: float
    iqm_test: float
    difference: Interval  # arm - reference, test split, original orders
    wins: int
    ties: int
    losses: int
    improvement_probability: Interval
    val_difference: Interval  # the same on the validation split (what controllers watch)
    fresh: Interval  # arm - reference on fresh orders (n = 0: not replicated)
    fresh_wins: int = 0
    fresh_ties: int = 0
    fresh_losses: int = 0
    seeds: tuple[float, float, float] = (0.0, 0.0, 0.0)  # created / fossilized / culled per episode
    final_parameters: float = 0.0
    # The raw test accuracy beside the score (mean_test, difference), which at rent > 0 is charged for growth.
    mean_accuracy: float = math.nan
    accuracy_difference: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))

    @property
    def fresh_on_all(self) -> bool:
        """Rerun on every configuration of its pairs. An arm rerun only where it was a configuration's hindsight
        winner (replicate_arms="best") has a fresh interval over those configurations, chosen for their original
        win: not the same claim, and biased upwards by each configuration's own effect."""
        return self.fresh.n > 0 and self.fresh.n == self.difference.n

    @property
    def reproducible(self) -> bool:
        return self.difference.above_zero and self.fresh.above_zero and self.fresh_on_all


@dataclass
class RegimeResult:
    regime: str
    configurations: int
    rows: list[ArmRow]
    noise_floor_test: float
    noise_floor_val: float
    null_mean: Interval
    null_pairs: int
    pairs_for_half_pp: int
    pairs_for_one_pp: int
    best_in_hindsight: Interval
    best_in_hindsight_fresh: Interval
    hindsight_correlation: float  # original vs fresh difference of the hindsight winners
    null_best_of_n: float  # expected luck-only gain of the best of the N alternatives
    null_best_empirical: float  # mean over configurations of the best null difference (best of the fresh orders)
    alternatives: int
    best_arm: str | None
    failures: list[str] = field(default_factory=list)

    def row(self, arm: str) -> ArmRow | None:
        return next((r for r in self.rows if r.arm == arm), None)


@dataclass
class HeadroomResult:
    config: HeadroomConfig
    regimes: list[RegimeResult]
    aggregate: dict[str, Interval]  # arm -> mean over regimes of the paired difference (stratified bootstrap)
    skipped: dict[str, str]
    episodes: int
    seconds: float  # this invocation's wall time (a resumed study reuses episodes run earlier)
    episode_seconds: float = 0.0  # the episodes' own wall time, summed: what the whole study cost
    files: dict[str, Path] = field(default_factory=dict)
    rent: float = 0.0  # the spec's: scores are test accuracy - rent x log2(final / host parameters)

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "regimes": [_jsonable(asdict(r)) for r in self.regimes],
            "aggregate": {k: asdict(v) for k, v in self.aggregate.items()},
            "skipped": self.skipped,
            "episodes": self.episodes,
            "seconds": self.seconds,
            "episode_seconds": self.episode_seconds,
            "rent": self.rent,
        }


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def headroom_configs(config: HeadroomConfig) -> tuple[list, dict[str, str]]:
    """The paired configurations, regime by regime (each regime from its own stream of the batch seed), on the
    config's device, and the regimes skipped on this machine with the reason."""
    from ..episodes.generation import GenerationSpec

    spec = GenerationSpec.load(config.spec)
    skipped = dict(spec.unavailable)
    if not spec.regimes:
        configs = spec.sample(config.configs_per_regime, config.batch_seed)
    else:
        names = list(config.regimes) or spec.regime_names
        order = [r["name"] for r in spec.regimes]
        configs = []
        for name in names:
            if name in spec.unavailable:
                continue
            # Each regime's stream is keyed by its place in the spec, not in the selection: analysing a subset of
            # regimes draws the very configurations (and reuses the episodes) of an analysis of all of them.
            index = order.index(name) if name in order else len(order)
            configs += spec.sample_regime(name, config.configs_per_regime, config.batch_seed + 7919 * (index + 1))
        skipped = {k: v for k, v in skipped.items() if not config.regimes or k in config.regimes}
    if config.device != "cpu":
        configs = [replace(c, device=config.device) for c in configs]
    return configs, skipped


def analyse_headroom(config: HeadroomConfig, out_dir: str | Path, *, log: Callable[[str], None] = print,
                     progress: Callable[[int, int], None] | None = None, execute: bool = True) -> HeadroomResult:  # fmt: skip
    """Run (or resume) the paired design and write the report; returns the numbers. `execute=False` runs
    nothing and reports on the episodes already in the folder (a study in progress: pairs with a side missing
    are left out)."""
    from ..controllers import reference_controller

    started = time.perf_counter()
    out = Path(out_dir)
    configs, skipped = headroom_configs(config)
    for name, why in skipped.items():
        log(f"regime {name} skipped: {why}")
    if not configs:
        raise ValueError(f"spec {config.spec!r}: no regime can run here ({'; '.join(skipped.values()) or 'none selected'})")
    arms = {name: reference_controller(name) for name in config.controllers}
    done, planned = [0], [len(configs) * (len(arms) + max(config.null_orders, config.replicate))]

    def counted(result) -> None:
        done[0] += 1
        if progress:
            progress(done[0], planned[0])

    log(f"headroom: {len(configs)} configurations x {len(arms)} controllers, reference {config.reference}, "
        f"null + replication on up to {max(config.null_orders, config.replicate)} fresh data orders")  # fmt: skip
    runs = run_paired(configs, arms, out / "episodes", reference=config.reference, null_orders=config.null_orders,
                      replicate=0 if execute else config.replicate, workers=config.workers, on_result=counted,
                      execute=execute)  # fmt: skip
    if config.replicate > 0 and execute:
        plan = replication_plan(runs, config)
        planned[0] = done[0] + sum(len(arms_i) for arms_i in plan.values()) * config.replicate
        log("replication on fresh data orders: " + ", ".join(f"{r}: {', '.join(sorted(a))}" for r, a in _plan_summary(runs, plan).items()))
        runs = run_paired(configs, arms, out / "episodes", reference=config.reference, null_orders=config.null_orders,
                          replicate=config.replicate, replicate_arms=plan, workers=config.workers,
                          on_result=counted, existing=runs)  # fmt: skip
    result = summarise(runs, config, skipped, time.perf_counter() - started)
    result.files = write_headroom_report(result, out)
    return result


def replication_plan(runs: PairedRuns, config: HeadroomConfig) -> dict[int, list[str]]:
    """Which arms to rerun on fresh orders, per configuration: every arm, or each regime's best arm (by mean
    paired difference on the original orders) plus each configuration's hindsight winner."""
    alternatives = [a for a in runs.arms if a != runs.reference]
    plan: dict[int, list[str]] = {}
    for regime in runs.regimes():
        idx = runs.indices(regime)
        if config.replicate_arms == "all":
            for i in idx:
                plan[i] = list(alternatives)
            continue
        means = {a: np.nanmean(runs.differences(a, idx)) for a in alternatives}
        best = max(means, key=lambda a: -math.inf if not np.isfinite(means[a]) else means[a])
        for i in idx:
            winner = _winner(runs, i, alternatives)
            plan[i] = list(dict.fromkeys([best] + ([winner] if winner else [])))
    return plan


def _plan_summary(runs: PairedRuns, plan: dict[int, list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for i, arms in plan.items():
        out.setdefault(runs.configs[i].regime() or "all", set()).update(arms)
    return out


def _winner(runs: PairedRuns, i: int, alternatives: list[str]) -> str | None:
    scores = {a: runs.score(i, a) for a in alternatives}
    scores = {a: s for a, s in scores.items() if np.isfinite(s)}
    return max(scores, key=scores.get) if scores else None


def summarise(runs: PairedRuns, config: HeadroomConfig, skipped: dict[str, str] | None = None,
              seconds: float = 0.0) -> HeadroomResult:  # fmt: skip
    """The headroom tables from a run design (pure: a test can feed it hand-made outcomes)."""
    ci = dict(confidence=config.confidence, resamples=config.resamples)
    alternatives = [a for a in runs.arms if a != runs.reference]
    regimes = []
    for regime in runs.regimes():
        idx = runs.indices(regime)
        rows = []
        for arm in runs.arms:
            test = np.array([runs.score(i, arm) for i in idx])
            val = np.array([runs.score(i, arm, which="val") for i in idx])
            outcomes = [runs.outcomes[(i, arm, 0)] for i in idx if (i, arm, 0) in runs.outcomes]
            complete = [o.result for o in outcomes if o.result.status == "complete"]
            diff = runs.differences(arm, idx)
            fresh = runs.fresh_differences(arm, idx) if arm != runs.reference else np.full(len(idx), math.nan)
            w, t, l = win_tie_loss(diff, config.tie_tolerance)
            fw, ft, fl = win_tie_loss(fresh, config.tie_tolerance)
            rows.append(ArmRow(
                arm=arm, pairs=int(np.isfinite(diff).sum()), mean_test=_nanmean(test), mean_val=_nanmean(val),
                iqm_test=iqm(test), difference=mean_ci(diff, **ci), wins=w, ties=t, losses=l,
                improvement_probability=probability_of_improvement(diff, **ci, tolerance=config.tie_tolerance),
                val_difference=mean_ci(runs.differences(arm, idx, which="val"), **ci), fresh=mean_ci(fresh, **ci),
                fresh_wins=fw, fresh_ties=ft, fresh_losses=fl,
                seeds=tuple(float(np.mean([getattr(r, k) for r in complete])) if complete else 0.0
                            for k in ("seeds_created", "seeds_fossilized", "seeds_culled")),
                final_parameters=float(np.mean([r.final_parameters for r in complete])) if complete else 0.0,
                mean_accuracy=_nanmean([runs.score(i, arm, which="test_accuracy") for i in idx]),
                accuracy_difference=mean_ci(runs.differences(arm, idx, which="test_accuracy"), **ci),
            ))  # fmt: skip
        null = runs.null_differences(idx)
        floor = noise_floor(null)
        winners = [_winner(runs, i, alternatives) for i in idx]
        hindsight = np.array([runs.score(i, w) - runs.score(i, runs.reference) if w else math.nan for i, w in zip(idx, winners)])
        hindsight_fresh = np.array([runs.fresh_differences(w, [i])[0] if w else math.nan for i, w in zip(idx, winners)])
        both = np.isfinite(hindsight) & np.isfinite(hindsight_fresh)
        varied = both.sum() >= 3 and np.ptp(hindsight[both]) > 0 and np.ptp(hindsight_fresh[both]) > 0
        correlation = float(np.corrcoef(hindsight[both], hindsight_fresh[both])[0, 1]) if varied else math.nan
        null_orders = [o for o in runs.orders(runs.reference) if o > 0]
        best_null = [np.nanmax([runs.score(i, runs.reference, o) - runs.score(i, runs.reference, 0) for o in null_orders])
                     for i in idx] if null_orders else []  # fmt: skip
        ranked = [r for r in rows if r.arm != runs.reference and r.pairs]
        best = max(ranked, key=lambda r: r.difference.mean).arm if ranked else None
        regimes.append(RegimeResult(
            regime=regime, configurations=len(idx), rows=rows, noise_floor_test=floor,
            noise_floor_val=noise_floor(runs.null_differences(idx, which="val")),
            null_mean=mean_ci(runs.null_by_configuration(idx), **ci),
            null_pairs=int(np.isfinite(null).sum()), pairs_for_half_pp=pairs_needed(floor, 0.5),
            pairs_for_one_pp=pairs_needed(floor, 1.0), best_in_hindsight=mean_ci(hindsight, **ci),
            best_in_hindsight_fresh=mean_ci(hindsight_fresh, **ci), hindsight_correlation=correlation,
            null_best_of_n=expected_best_of(len(alternatives), floor),
            null_best_empirical=_nanmean(best_null) if best_null else math.nan,
            alternatives=len(alternatives), best_arm=best,
            failures=runs.failures(regime),
        ))  # fmt: skip
    aggregate = {}
    for arm in alternatives:
        groups = {r.regime: list(runs.differences(arm, runs.indices(r.regime))) for r in regimes}
        aggregate[arm] = stratified_mean_ci(groups, config.confidence, config.resamples)
    episodes = len(runs.outcomes)
    cost = float(np.nansum([o.result.wall_seconds for o in runs.outcomes.values()]))
    return HeadroomResult(config, regimes, aggregate, dict(skipped or {}), episodes, seconds, cost, rent=runs.rent())


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


# ----- report ---------------------------------------------------------------------------------------------
def markdown_report(result: HeadroomResult) -> str:
    c = result.config
    level = int(round(c.confidence * 100))
    if result.rent:
        score = (f"**final accuracy on the test split** (no controller saw it) **charged {result.rent:g} pp per doubling "
                 f"of parameters** (rent {result.rent:g}: score = test accuracy - {result.rent:g} x log2(final / host "
                 "parameters); the score decides, the raw test accuracy and its difference are beside it)")
    else:
        score = "**final accuracy on the test split** (no controller saw it; rent 0: the accuracy decides)"
    md = [f"# Headroom: reference controllers against `{c.reference}`", "",
          f"Spec `{c.spec}`, {c.configs_per_regime} paired configurations per regime (batch seed {c.batch_seed}), "
          f"{result.episodes} episodes ({result.episode_seconds / 3600:.1f} h of episode time; this run "
          f"{result.seconds / 60:.0f} min). Score: {score}, in pp; paired difference = controller - {c.reference} on the same configuration "
          f"and seed, mean with its {level}% bootstrap interval. *Fresh orders*: the same pairs rerun on "
          f"{c.replicate} new data orders (same initial weights). **Reproducible** = interval above 0 on both, "
          f"the fresh one over every pair (an arm rerun only where it won in hindsight shows `on n of N`, "
          f"never reproducible).", ""]  # fmt: skip
    for name, why in result.skipped.items():
        md += [f"- Regime `{name}` skipped on this machine: {why}"]
    if result.skipped:
        md.append("")
    for r in result.regimes:
        md += [f"## Regime `{r.regime}` ({r.configurations} configurations)", "",
               f"| controller | {'score' if result.rent else 'test'} | vs {c.reference} [{level}% CI] | W/T/L | P(better) | fresh orders [{level}% CI] | fresh W/T/L | val diff | seeds c/f/x | params |"
               + (" test accuracy | test accuracy diff |" if result.rent else ""),
               "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if result.rent else "")]  # fmt: skip
        for row in sorted(r.rows, key=lambda x: (x.arm != c.reference, -(x.difference.mean if x.pairs else -1e9))):
            if row.arm == c.reference:
                md.append(f"| **{row.arm}** | {row.mean_test:.2f} | — | — | — | — | — | — | "
                          f"{row.seeds[0]:.2f}/{row.seeds[1]:.2f}/{row.seeds[2]:.2f} | {row.final_parameters:,.0f} |"
                          + (f" {row.mean_accuracy:.2f} | — |" if result.rent else ""))  # fmt: skip
                continue
            mark = " ✔" if row.reproducible else ""
            fresh = "not rerun" if row.fresh.n == 0 else f"{row.fresh}{mark}" + (
                "" if row.fresh_on_all else f" on {row.fresh.n} of {row.difference.n}")
            fresh_wtl = "" if row.fresh.n == 0 else f"{row.fresh_wins}/{row.fresh_ties}/{row.fresh_losses}"
            md.append(f"| {row.arm} | {row.mean_test:.2f} | {row.difference} | {row.wins}/{row.ties}/{row.losses} | "
                      f"{row.improvement_probability.mean:.2f} | {fresh} | {fresh_wtl} | {row.val_difference} | "
                      f"{row.seeds[0]:.2f}/{row.seeds[1]:.2f}/{row.seeds[2]:.2f} | {row.final_parameters:,.0f} |"
                      + (f" {row.mean_accuracy:.2f} | {row.accuracy_difference} |" if result.rent else ""))  # fmt: skip
        md += ["",
               f"- Noise floor (null control, {c.reference} rerun on a fresh data order, {r.null_pairs} reruns): "
               f"**{r.noise_floor_test:.2f} pp RMS** on test ({r.noise_floor_val:.2f} on validation); null mean {r.null_mean}. "
               f"Pairs needed at this spread (two-sided 5%, power 80%): {r.pairs_for_half_pp} for 0.5 pp, {r.pairs_for_one_pp} for 1 pp.",
               f"- Best of the {r.alternatives} alternatives in hindsight: {r.best_in_hindsight} pp; luck alone picks "
               f"+{r.null_best_of_n:.2f} pp on average from {r.alternatives} (null best-of-N"
               + (f"; best of the fresh-order reruns {r.null_best_empirical:+.2f}" if math.isfinite(r.null_best_empirical) else "") + "). "
               f"The winners rerun on fresh orders: {r.best_in_hindsight_fresh} (correlation original vs fresh "
               f"{r.hindsight_correlation:+.2f}).",
               f"- Best controller here: `{r.best_arm}`" + (" — reproducible." if r.best_arm and r.row(r.best_arm).reproducible else "."),
               ""]  # fmt: skip
        if r.failures:
            md += [f"- {len(r.failures)} episodes failed (left out of their pairs): {r.failures[0]}", ""]
    if len(result.regimes) > 1:
        md += ["## Across regimes", "", "Mean over regimes of each controller's mean paired difference (each regime weighs "
               "the same; pairs resampled within regimes).", "", f"| controller | vs {c.reference} [CI] |", "|---|---|"]  # fmt: skip
        md += [f"| {arm} | {interval} |" for arm, interval in sorted(result.aggregate.items(), key=lambda kv: -kv[1].mean)]
        md.append("")
    return "\n".join(md)


def plot_headroom(result: HeadroomResult, path: Path) -> Path:
    """Forest plot per regime: each controller's paired difference (original orders, and fresh orders where
    rerun), the null band (+-1 noise floor) and the luck-only best-of-N."""
    from .report import _figure

    plt = _figure()
    regimes = result.regimes
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.2 * len(regimes), 0.45 * len(result.config.controllers) + 1.8), squeeze=False)
    for ax, r in zip(axes[0], regimes):
        rows = [row for row in r.rows if row.arm != result.config.reference]
        ax.axvspan(-r.noise_floor_test, r.noise_floor_test, color="0.9", label="null ±1 RMS")
        ax.axvline(0, color="grey", lw=1)
        if math.isfinite(r.null_best_of_n):
            ax.axvline(r.null_best_of_n, color="tab:red", lw=0.8, ls=":", label=f"luck: best of {r.alternatives}")
        for y, row in enumerate(rows):
            d = row.difference
            ax.errorbar(d.mean, y, xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color="tab:blue", capsize=3)
            if row.fresh.n:
                f = row.fresh
                ax.errorbar(f.mean, y + 0.25, xerr=[[f.mean - f.low], [f.high - f.mean]], fmt="s", color="tab:orange", capsize=3)
        ax.set_yticks(range(len(rows)), [row.arm for row in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{r.regime} ({r.configurations} pairs)", fontsize=9)
        ax.set_xlabel(f"{'score' if result.rent else 'test accuracy'} - {result.config.reference} (pp)")
    handles = [plt.Line2D([], [], marker="o", color="tab:blue", ls="", label="original orders"),
               plt.Line2D([], [], marker="s", color="tab:orange", ls="", label="fresh orders")]  # fmt: skip
    axes[0][0].legend(handles=handles + axes[0][0].get_legend_handles_labels()[0], fontsize=7, loc="lower right")
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
    return path


def write_headroom_report(result: HeadroomResult, out_dir: str | Path) -> dict[str, Path]:
    from ..common.html_report import markdown_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(result)
    plot = plot_headroom(result, out / "headroom.png")
    markdown_with_plot = markdown + f"\n## Plots\n\n### Paired differences per regime\n\n![Paired differences]({plot.name})\n"
    (out / "headroom.md").write_text(markdown_with_plot)
    (out / "headroom.html").write_text(markdown_page(markdown_with_plot, "Headroom", out))
    (out / "headroom.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return {"markdown": out / "headroom.md", "html": out / "headroom.html", "json": out / "headroom.json", "plot": plot}
