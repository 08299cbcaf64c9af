"""Importance-sampling estimates of a policy's value: per-decision weighted importance sampling (PDWIS) and
per-decision weighted doubly robust (WDR, with FQE as its model), with bootstrap intervals over episodes.

Both reweight logged rewards by rho_t = pi(a_t|s_t) / mu(a_t|s_t), which is only *identified* where the
behaviour really drew its action at random with mu > 0 on everything pi might do. A deterministic controller
(the heuristic, a fixed schedule, a greedy policy) logs a one-hot mu: on its steps pi's other actions were
never possible, and no reweighting can tell what they would have done. So only episodes whose every step was
a stochastic, unforced draw (`TransitionDataset.stochastic`) enter; with none, the estimate says
"not identified" instead of printing a number.

    PDWIS = sum_t gamma^t sum_i w_it r_it / sum_i w_it,            w_it = prod_{k<=t} rho_ik
    WDR   = sum_i sum_t gamma^t [ w~_it (r_it - Q(s_it, a_it)) + w~_i,t-1 V(s_it) ]   (w~: normalised per t)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..transitions.dataset import TransitionDataset


@dataclass
class ISEstimate:
    method: str
    identified: bool
    value: float = math.nan  # in reward units (pp)
    low: float = math.nan
    high: float = math.nan
    episodes: int = 0  # episodes that entered
    effective_sample_size: float = math.nan  # of the final weights: how many episodes the estimate really rests on
    reason: str = ""

    def __str__(self) -> str:
        if not self.identified:
            return f"{self.method}: not identified ({self.reason})"
        return f"{self.method}: {self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}] pp over {self.episodes} episodes (ESS {self.effective_sample_size:.1f})"


def eligible_episodes(data: TransitionDataset) -> list[slice]:
    """Whole episodes from their first decision whose every step was drawn at random from the logged mu, or had
    a single legal action (then mu = pi = 1 there: nothing to reweight)."""
    out = []
    only_choice = data.legal.sum(axis=1) == 1
    for rows in data.episode_slices():
        if data.steps[rows.start] != 1:
            continue  # a branch run starts mid-episode, on a forced step
        drawn = data.stochastic[rows] | only_choice[rows]
        if drawn.all() and not data.forced[rows].any() and np.all(data.propensity[rows] > 0):
            out.append(rows)
    return out


def _matrices(data: TransitionDataset, episodes: list[slice], pi_taken: np.ndarray):
    horizon = max(s.stop - s.start for s in episodes)
    n = len(episodes)
    rho = np.ones((n, horizon))
    rewards = np.zeros((n, horizon))
    alive = np.zeros((n, horizon), dtype=bool)
    rows = np.full((n, horizon), -1, dtype=np.int64)
    for i, s in enumerate(episodes):
        length = s.stop - s.start
        rho[i, :length] = pi_taken[s] / data.propensity[s]
        rewards[i, :length] = data.rewards[s]
        alive[i, :length] = True
        rows[i, :length] = np.arange(s.start, s.stop)
    # Per-decision cumulative weights. After an episode ends its weight stays and its rewards are 0, so every
    # time step is normalised over all episodes (with pi = mu every weight is 1 and PDWIS is the mean return).
    weights = np.cumprod(rho, axis=1)
    return weights, rewards, alive, rows


def _pdwis(weights, rewards, gamma) -> float:
    totals = weights.sum(axis=0)
    if not (totals > 0).all():
        return math.nan  # no episode agrees with pi up to some step: what follows is not identified
    per_t = (weights * rewards).sum(axis=0) / totals
    return float((gamma ** np.arange(weights.shape[1]) * per_t).sum())


def _wdr(weights, rewards, q_taken, v, gamma) -> float:
    totals = weights.sum(axis=0)
    if not (totals > 0).all():
        return math.nan
    w = weights / totals
    previous = np.concatenate([np.full((weights.shape[0], 1), 1.0 / weights.shape[0]), w[:, :-1]], axis=1)
    discounts = gamma ** np.arange(weights.shape[1])
    return float((discounts * (w * (rewards - q_taken) + previous * v)).sum())


def _bootstrap(estimator, n: int, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = [estimator(rng.integers(0, n, size=n)) for _ in range(resamples)]
    alpha = (1 - confidence) / 2
    # A resample may hold no episode that agrees with pi to the end; it says nothing, rather than a truncated sum.
    low, high = np.nanquantile(draws, [alpha, 1 - alpha]) if np.isfinite(draws).any() else (math.nan, math.nan)
    return float(low), float(high)


def estimate_is(data: TransitionDataset, pi_taken: np.ndarray, *, gamma: float = 1.0, q_taken: np.ndarray | None = None,
                v: np.ndarray | None = None, resamples: int = 2_000, confidence: float = 0.95, seed: int = 0) -> list[ISEstimate]:  # fmt: skip
    """PDWIS, and WDR when the model's Q(s, a_taken) and V^pi(s) are given (per transition row of `data`).
    `pi_taken`: pi(a_t | s_t) of the evaluated policy for each row's logged action."""
    episodes = eligible_episodes(data)
    methods = ["PDWIS"] + (["WDR"] if q_taken is not None and v is not None else [])
    if not episodes:
        kinds = sorted(set(data.behaviours.tolist()))
        reason = f"no episode was drawn at random at every step (behaviours: {', '.join(kinds)}; mu is one-hot there)"
        return [ISEstimate(m, False, reason=reason) for m in methods]
    weights, rewards, alive, rows = _matrices(data, episodes, pi_taken)
    if not np.isfinite(weights).all():
        return [ISEstimate(m, False, reason="importance weights overflowed") for m in methods]
    final = weights[:, -1]
    if not final.sum() > 0:
        reason = (f"none of the {len(episodes)} episodes drawn at random took the policy's actions at every step "
                  f"(effective sample size 0)")  # fmt: skip
        return [ISEstimate(m, False, episodes=len(episodes), effective_sample_size=0.0, reason=reason) for m in methods]
    ess = float(final.sum() ** 2 / (final**2).sum())
    out = []
    pdwis = _pdwis(weights, rewards, gamma)
    low, high = _bootstrap(lambda i: _pdwis(weights[i], rewards[i], gamma), len(episodes), resamples, confidence, seed)
    out.append(ISEstimate("PDWIS", True, pdwis, low, high, len(episodes), ess))
    if "WDR" in methods:
        q_m = np.where(rows >= 0, q_taken[np.maximum(rows, 0)], 0.0)
        v_m = np.where(rows >= 0, v[np.maximum(rows, 0)], 0.0)
        wdr = _wdr(weights, rewards, q_m, v_m, gamma)
        low, high = _bootstrap(lambda i: _wdr(weights[i], rewards[i], q_m[i], v_m[i], gamma), len(episodes),
                               resamples, confidence, seed)  # fmt: skip
        out.append(ISEstimate("WDR", True, wdr, low, high, len(episodes), ess))
    return out
