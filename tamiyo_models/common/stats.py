"""Statistics for paired comparisons of controllers, on scipy (no hand-rolled distributions).

Every comparison here is *paired*: two controllers on the same configuration and seed, so the luck of the
draw (initial weights, data order) cancels in their difference. What remains is measured by the *null
control*: the reference controller rerun on the same configuration with only the data order changed. Its
paired differences are pure luck, so their spread is the noise floor a real difference must clear.

- `mean_ci`: bootstrap interval of a mean of paired differences (scipy.stats.bootstrap, BCa; percentile
  when BCa is undefined, e.g. for very few distinct values).
- `noise_floor`: RMS of the null differences (their mean should be ~0).
- `pairs_needed`: pairs to detect an effect at that spread (two-sided test at alpha, given power).
- `expected_best_of`: what picking the best of N luck-only runs "gains" on average; the winner's curse
  that makes best-in-hindsight numbers meaningless without it.
- `probability_of_improvement`: P(difference > 0) + P(difference = 0)/2 over pairs, with its interval.
- `win_tie_loss`: wins, ties and losses, a tie being a difference within `TIE_TOLERANCE`.
- `iqm`: the interquartile mean (rliable's robust aggregate; rliable itself does not install beside
  pandas 3 today, and scipy's trimmed mean is the same statistic).
- `stratified_mean_ci`: interval of a mean over several regimes, resampling pairs within each regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A tie, in pp. Test accuracies are float32 percentages of 10,000 images: one image is 0.01 pp, so a true nonzero
# difference averaged over up to 6 episodes (2 seeds x 3 data orders) is at least 0.0017 pp, while the float32
# rounding of the scores leaves ~1e-5 pp in an average that is truly 0 (a +1 and a -1 image pooled). Comparing to
# exactly 0 counted those as wins and losses.
TIE_TOLERANCE = 5e-4


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"

    @property
    def above_zero(self) -> bool:
        return self.n > 0 and self.low > 0


def mean_ci(values, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Bootstrap interval of the mean of paired differences (resampling pairs, never the two sides apart)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) == 1 or np.ptp(x) == 0:
        return Interval(mean, mean, mean, len(x))
    rng = np.random.default_rng(seed)
    for method in ("BCa", "percentile"):
        result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples,
                                 method=method, random_state=rng, vectorized=True)  # fmt: skip
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return Interval(mean, float(low), float(high), len(x))
    return Interval(mean, math.nan, math.nan, len(x))


def noise_floor(null_differences) -> float:
    """RMS of the null control's paired differences: the spread of a difference caused by luck alone."""
    d = np.asarray(null_differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2))) if len(d) else math.nan


def pairs_needed(spread: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Pairs for a two-sided test at `alpha` to detect a mean paired difference of `effect` with `power`,
    when paired differences scatter by `spread` (the noise floor): n = ((z_{1-alpha/2} + z_power) s / effect)^2."""
    from scipy.stats import norm

    if not (spread > 0 and effect > 0):
        return 0 if spread == 0 else -1
    return int(math.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * spread / effect) ** 2))


def expected_best_of(n: int, spread: float) -> float:
    """Expected gain of the best of `n` luck-only alternatives over one reference run, when a paired
    difference of two luck-only runs scatters by `spread` (RMS).

    Each alternative's difference to the shared reference run is X_i - X_0 with X iid of SD spread/sqrt(2),
    so the best of n gains (spread / sqrt(2)) * E[max of n standard normals]."""
    from scipy import integrate
    from scipy.stats import norm

    if n < 1 or not spread >= 0:
        return math.nan
    if n == 1:
        return 0.0
    e_max, _ = integrate.quad(lambda z: z * n * norm.pdf(z) * norm.cdf(z) ** (n - 1), -np.inf, np.inf)
    return float(spread / math.sqrt(2) * e_max)


def win_tie_loss(differences, tolerance: float = TIE_TOLERANCE) -> tuple[int, int, int]:
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    return int((d > tolerance).sum()), int((np.abs(d) <= tolerance).sum()), int((d < -tolerance).sum())


def probability_of_improvement(differences, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0,
                               tolerance: float = TIE_TOLERANCE) -> Interval:  # fmt: skip
    """Share of pairs where the candidate is better (ties, as in `win_tie_loss`, count half), with its interval."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    scores = (d > tolerance).astype(np.float64) + 0.5 * (np.abs(d) <= tolerance)
    return mean_ci(scores, confidence, resamples, seed)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to a few chaotic episodes)."""
    from scipy.stats import trim_mean

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(trim_mean(x, 0.25)) if len(x) else math.nan


def stratified_mean_ci(groups: dict[str, list[float]], confidence: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> Interval:  # fmt: skip
    """Interval of the mean over regimes (each regime weighs the same) of per-regime mean differences,
    resampling pairs within each regime: a regime with few pairs does not borrow another's."""
    clean = {k: np.asarray([v for v in vs if np.isfinite(v)], dtype=np.float64) for k, vs in groups.items()}
    clean = {k: v for k, v in clean.items() if len(v)}
    if not clean:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    point = float(np.mean([v.mean() for v in clean.values()]))
    draws = np.zeros(resamples)
    for v in clean.values():
        idx = rng.integers(0, len(v), size=(resamples, len(v)))
        draws += v[idx].mean(axis=1)
    draws /= len(clean)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Interval(point, float(low), float(high), int(sum(len(v) for v in clean.values())))
