"""The off-policy report: FQE, PDWIS and WDR for any set of policies (saved policy files of any phase, and
reference controllers by name) on the same logged transitions, each beside the heuristic's own estimate;
and, where a live paired evaluation of the same policies exists, how far the off-policy numbers can be trusted
(rank correlation across policies, error in pp).

Estimates are in pp of *validation* accuracy gained over an episode (the reward's units); a difference between
a policy's estimate and the heuristic's is what a live paired evaluation measures on the validation split. Live
results are scored on the test split; the gap between the two splits is part of what the calibration shows.

Reference controllers act on feature vectors here, without their per-episode state: the heuristic's blueprint
round-robin always starts at its first blueprint, so its off-policy value is that of a heuristic that always
grafts its first blueprint (live, it cycles).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..agents.base import PolicyModule
from ..world.actions import FINE_ACTIONS
from .fqe import FQEConfig, fit_fqe, policy_probabilities
from .importance import estimate_is


class ControllerPolicy(PolicyModule):
    """A controller (heuristic, fixed schedule, random, ...) seen as a policy over feature vectors: its logits
    are the log of the distribution it draws from (one-hot for a deterministic controller)."""

    kind = "controller"

    def __init__(self, controller, feature_names):
        super().__init__()
        self.controller, self.feature_names = controller, tuple(feature_names)

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        from ..controllers import Observation

        # A controller acts on whatever space the masks are over (the data's); unmasked, on the single-slot one.
        out = torch.full((len(obs), len(FINE_ACTIONS) if mask is None else mask.shape[-1]), float("-inf"))
        legal = torch.ones_like(out, dtype=torch.bool) if mask is None else mask.bool()
        for i, (row, ok) in enumerate(zip(obs.tolist(), legal.tolist())):
            self.controller.reset(np.random.default_rng(i))
            decision = self.controller.decide(Observation({}, dict(zip(self.feature_names, row)), tuple(ok)))
            probs = torch.tensor(decision.probabilities)
            out[i] = torch.where(probs > 0, probs.log(), out[i])
        return out

    def raw_logits(self, obs):
        return self.logits(obs, None)


@dataclass
class OPERow:
    name: str
    kind: str  # policy file or reference controller
    fqe: float
    fqe_low: float
    fqe_high: float
    versus_heuristic: float  # fqe - the heuristic's fqe (pp of validation accuracy)
    pdwis: dict = field(default_factory=dict)
    wdr: dict = field(default_factory=dict)
    greedy: bool = True


def _policies(policies: dict, feature_names) -> dict:
    """name -> (PolicyModule, its feature names, greedy?, kind)."""
    from ..agents.saved import load_policy
    from ..controllers import build_controller, reference_controller

    out = {}
    for name, what in policies.items():
        if isinstance(what, (str, Path)) and Path(what).exists():
            module, payload = load_policy(what)
            out[name] = (module, tuple(payload["feature_names"]), True, "policy file")
        else:
            controller = build_controller(reference_controller(str(what)))
            out[name] = (ControllerPolicy(controller, feature_names), tuple(feature_names), False, "reference controller")
    return out


def off_policy_table(policies: dict, data, config: FQEConfig = FQEConfig(), log=print) -> list[OPERow]:
    """Every policy (name -> policy file or reference name) estimated on `data` (a TransitionDataset with the
    "full+slots" feature set: every feature, so that a policy of any feature set and a controller that reads the
    per-slot features, the heuristic on a multi-slot host among them, find theirs); the heuristic is always
    estimated too, as the baseline of every difference."""
    resolved = _policies({"heuristic": "heuristic", **policies}, data.feature_names)
    obs, legal = torch.as_tensor(data.observations), torch.as_tensor(data.legal)
    rows = []
    for name, (module, features, greedy, kind) in resolved.items():
        index = [data.feature_names.index(n) for n in features]
        fqe = fit_fqe(module, data, config, policy_features=features, greedy=greedy)
        interval = fqe.interval()
        pi = policy_probabilities(module, obs[:, index], legal, greedy).numpy()
        pi_taken = pi[np.arange(len(data)), data.actions]
        with torch.no_grad():
            q = fqe.q_network.raw_logits(obs).masked_fill(~legal, 0.0).numpy() / config.reward_scale
        estimates = {e.method: e for e in estimate_is(data, pi_taken, gamma=config.gamma, q_taken=q[np.arange(len(data)), data.actions],
                                                     v=(pi * q).sum(axis=1))}  # fmt: skip
        rows.append(OPERow(name, kind, fqe.value, interval.low, interval.high, math.nan,
                           asdict(estimates["PDWIS"]), asdict(estimates["WDR"]), greedy))  # fmt: skip
        log(f"{name}: FQE {fqe.value:+.2f} pp [{interval.low:+.2f}, {interval.high:+.2f}]; {estimates['PDWIS']}; {estimates['WDR']}")
    base = rows[0].fqe
    for row in rows:
        row.versus_heuristic = row.fqe - base
    return rows


def read_estimates(path: str | Path, names: list[str]) -> tuple[list[OPERow], dict]:
    """The rows and data summary of an earlier report's ope.json (`tamiyo ope --estimates-from`), for the
    policies `names`, in that order: a new live side is set beside estimates that took minutes to fit. ValueError
    naming the file, row and field where it is not such a report or lacks a policy."""
    try:
        payload = json.loads(Path(path).read_text())
        summary, stored = payload["data"], payload["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an ope.json of tamiyo ope ({exc})") from None
    rows = {}
    for i, row in enumerate(stored):
        try:
            rows[row["name"]] = OPERow(**row)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: rows[{i}]: not an estimate row ({exc})") from None
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValueError(f"{path}: no estimate of {', '.join(missing)} (it estimated {', '.join(rows) or 'nothing'})")
    return [rows[n] for n in names], summary


def calibration(rows: list[OPERow], live: dict[str, float], baseline: str = "heuristic") -> dict:
    """OPE against live: for the policies with a live paired difference against `baseline` (name -> pp; the
    heuristic for `tamiyo evaluate`, a study's reference for --live-study), the Spearman rank correlation of FQE's
    difference from the baseline's estimate with the live one, and the mean absolute error in pp."""
    from scipy.stats import spearmanr

    base = next((r.fqe for r in rows if r.name == baseline), None)
    if base is None:
        raise ValueError(f"the live results are differences from {baseline!r}, which has no off-policy estimate here")
    pairs = [(r.fqe - base, live[r.name]) for r in rows if r.name in live and r.name != baseline]
    if len(pairs) < 2:
        return {"policies": len(pairs), "spearman": math.nan, "mean_abs_error_pp": math.nan, "baseline": baseline}
    ope, measured = map(np.array, zip(*pairs))
    rho = spearmanr(ope, measured).statistic if np.ptp(ope) > 0 and np.ptp(measured) > 0 else math.nan
    return {"policies": len(pairs), "spearman": float(rho), "mean_abs_error_pp": float(np.mean(np.abs(ope - measured))),
            "baseline": baseline}  # fmt: skip


def calibration_intervals(rows: list[OPERow], by_configuration: dict[str, np.ndarray], baseline: str, *,
                          confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict | None:  # fmt: skip
    """How much of the calibration is live's own noise: the held-out configurations of the live design resampled
    with replacement, every arm's difference from `baseline` taken again on each draw. `by_configuration`: arm ->
    its paired difference from the baseline on each configuration, the same configurations in the same order for
    every arm (NaN: none), each configuration's data orders pooled as the calibration pools them (each order
    once; live_by_configuration, or the night's PairedRuns). On every draw two rank correlations are taken
    against the resampled differences:
    - OPE's (`on_draws`, interval `spearman_low`/`spearman_high`; FQE is fixed: it never saw these configurations);
    - the full design's own means' (`ceiling`, `ceiling_low`/`ceiling_high`): what an estimate that knew live's
      means exactly would score against a rerun of the design on new configurations like these. A Spearman bar
      above this ceiling cannot be met by any estimator here.
    Both meet the same noise, so their paired gap (`gap`, `gap_low`/`gap_high`, ceiling minus OPE per draw) says
    whether OPE ranks worse than live's noise alone explains: an interval that holds 0 means it does not.
    The draws' correlations sit below a point estimate (resampling adds noise to one side); compare OPE with the
    ceiling on the draws, not the point estimate with either. None with fewer than 3 arms or 3 configurations
    where every arm has a difference."""
    from scipy.stats import rankdata

    base = next((r.fqe for r in rows if r.name == baseline), None)
    names = [r.name for r in rows if r.name in by_configuration and r.name != baseline]
    if base is None or len(names) < 3:
        return None
    live = np.array([np.asarray(by_configuration[n], dtype=np.float64) for n in names])  # arms x configurations
    live = live[:, np.isfinite(live).all(axis=0)]
    if live.shape[1] < 3:
        return None
    ope = np.array([next(r.fqe for r in rows if r.name == n) - base for n in names])
    full = live.mean(axis=1)

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1]) if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan

    rng = np.random.default_rng(seed)
    against_ope, ceiling = [], []
    for _ in range(resamples):
        draw = live[:, rng.integers(0, live.shape[1], live.shape[1])].mean(axis=1)
        against_ope.append(rho(ope, draw))
        ceiling.append(rho(full, draw))
    tail = 100 * (1 - confidence) / 2
    against_ope, ceiling = np.array(against_ope), np.array(ceiling)
    lo, hi = np.nanpercentile(against_ope, [tail, 100 - tail])
    c_lo, c_hi = np.nanpercentile(ceiling, [tail, 100 - tail])
    g_lo, g_hi = np.nanpercentile(ceiling - against_ope, [tail, 100 - tail])
    return {"arms": len(names), "configurations": int(live.shape[1]), "resamples": resamples, "confidence": confidence,
            "spearman": rho(ope, full), "on_draws": float(np.nanmean(against_ope)), "spearman_low": float(lo),
            "spearman_high": float(hi), "ceiling": float(np.nanmean(ceiling)), "ceiling_low": float(c_lo),
            "ceiling_high": float(c_hi), "gap": float(np.nanmean(ceiling - against_ope)), "gap_low": float(g_lo),
            "gap_high": float(g_hi)}  # fmt: skip


def live_by_configuration(folder: str | Path, baseline: str, score: str = "score") -> dict[str, np.ndarray]:
    """Every arm's paired difference from `baseline` on each configuration of a live design, read from its
    episode folder alone (a night's `evaluation/`): runs are placed by their headers (configuration by seed, arm
    by controller label, data order by `data_order_seed`), fork branches left out; on each configuration the
    difference is averaged over the data orders both sides completed, each order once, as the calibration pools
    them. Configurations in seed order, NaN where an arm has no pair. ValueError naming the file and field where a
    run cannot be placed, or when the baseline completed nothing."""
    from ..world.rawrun import RawRunError, list_raw_runs, read_raw_run

    scores: dict[int, dict[object, dict[str, float]]] = {}  # seed -> data order seed -> arm -> score
    for path in list_raw_runs(folder):
        if "-b" in path.stem.removeprefix("run-"):  # <run id>[-o<order>]-b<step>-<action>: a fork's branch
            continue
        try:
            run = read_raw_run(path)
        except (RawRunError, OSError) as exc:
            raise ValueError(f"{path}: not a readable raw run ({exc})") from None
        footer = run.footer or {}
        if footer.get("status") != "complete" or footer.get(score) is None:
            continue
        try:
            config = run.header["config"]
            seed, order, label = int(config["seed"]), config.get("data_order_seed"), config["controller"]["label"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: header field config.seed / config.controller.label: missing ({exc})") from None
        if not label:
            raise ValueError(f"{path}: header field config.controller.label is empty: the run names no arm")
        scores.setdefault(seed, {}).setdefault(order, {})[label] = float(footer[score])
    arms = sorted({arm for orders in scores.values() for found in orders.values() for arm in found})
    if baseline not in arms:
        raise ValueError(f"{folder}: no complete run of the baseline arm {baseline!r} (arms: {', '.join(arms) or 'none'})")

    def difference(arm: str, orders: dict) -> float:
        pairs = [found[arm] - found[baseline] for found in orders.values() if arm in found and baseline in found]
        return float(np.mean(pairs)) if pairs else math.nan

    return {arm: np.array([difference(arm, scores[seed]) for seed in sorted(scores)]) for arm in arms}


def live_differences(warehouse: str | Path, study: str) -> tuple[str, dict[str, float]]:
    """A recorded study's live result per arm, as the calibration reads it (`tamiyo ope --live-study`): (the
    study's reference, arm -> its paired difference against that reference over every regime, averaged over the
    original order and the fresh orders, each order weighted once; the reference itself at 0). Read from the
    warehouse's study_results table (studies/study.py writes it); arms without a difference (no complete pair) are
    left out. ValueError when nothing is recorded."""
    from ..warehouse import connect_read_only
    from ..warehouse.seeds import has_table

    rows = []
    if Path(warehouse).exists():
        with connect_read_only(warehouse) as con:
            if has_table(con, "study_results"):
                rows = con.execute("SELECT arm, reference, difference, fresh_difference, fresh_orders FROM study_results "
                                   "WHERE study = ? AND regime = 'all' ORDER BY arm", [study]).fetchall()  # fmt: skip
    if not rows:
        raise ValueError(f"{warehouse}: no result of study {study!r} is recorded (run `tamiyo study run` on its file first)")
    reference = rows[0][1]
    out = {reference: 0.0}
    for arm, _, original, fresh, orders in rows:
        if (pooled := pooled_over_orders(original, fresh, orders)) is not None:
            out[arm] = pooled
    return reference, out


def pooled_over_orders(original, fresh, orders) -> float | None:
    """A live paired difference averaged over the original order and the fresh orders, each order weighted once:
    the original alone where no replication is recorded; None where there is no difference (no complete pair)."""
    if original is None or original != original:
        return None
    if fresh is None or not orders or fresh != fresh:
        return float(original)
    return float((original + orders * fresh) / (1 + orders))


def live_night(warehouse: str | Path, night: str, score: str = "test") -> tuple[str, dict[str, float], dict[str, str]]:
    """A recorded night's live results, as the calibration reads them (`tamiyo ope --live-night`): (the night's
    champion, arm -> its paired difference against the champion on the held-out configurations, averaged over the
    original order and the fresh orders as live_differences does, the champion itself at 0, and arm -> what to
    estimate: its policy file, or its reference name). Read from champion_history (nightly/champion.py writes
    it). ValueError naming the night, arm and field when something cannot be read."""
    from ..controllers import ControllerConfig
    from ..warehouse import connect_read_only
    from ..warehouse.seeds import has_table

    rows = []
    if Path(warehouse).exists():
        with connect_read_only(warehouse) as con:
            if has_table(con, "champion_history"):
                rows = con.execute("SELECT arm, role, champion, controller_json, difference, fresh_difference, fresh_orders "
                                   "FROM champion_history WHERE night = ? AND score = ? ORDER BY arm", [night, score]).fetchall()  # fmt: skip
    if not rows:
        raise ValueError(f"{warehouse}: no night {night!r} is recorded in champion_history (score {score!r})")
    champion = rows[0][2]
    live, policies = {champion: 0.0}, {}
    for arm, role, _, controller_json, original, fresh, orders in rows:
        try:
            controller = ControllerConfig.from_dict(json.loads(controller_json))
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{warehouse}: champion_history night {night}, arm {arm!r}, field controller_json: "
                             f"not a controller ({exc})") from None  # fmt: skip
        if controller.kind == "policy":
            path = str(controller.policy or "").removeprefix("file:")
            if not Path(path).exists():
                raise ValueError(f"{warehouse}: champion_history night {night}, arm {arm!r}, field controller_json: "
                                 f"its policy file {path!r} is not here (the night's folder moved?)")  # fmt: skip
            policies[arm] = path
        elif arm != "heuristic":  # the heuristic is always estimated
            policies[arm] = arm
        if role != "champion" and (pooled := pooled_over_orders(original, fresh, orders)) is not None:
            live[arm] = pooled
    return champion, live, policies


def live_agreement(warehouse: str | Path, *, night: str | None = None, study: str | None = None,
                   score: str = "test") -> dict | None:  # fmt: skip
    """How firmly live ranks the arms: the Spearman correlation between every arm's paired difference on the
    original data order and on the fresh orders (the same configurations, new data orders), over the arms of a
    recorded night (against its champion) or study (against its reference, every regime) that have both. A
    calibration target is read beside it: it shows how much live reorders its own arms between data orders.
    None without at least 3 such arms; its Spearman is None where one side is the same for every arm."""
    from scipy.stats import spearmanr

    from ..warehouse import connect_read_only
    from ..warehouse.seeds import has_table

    table, sql, key = (("champion_history", "SELECT difference, fresh_difference FROM champion_history WHERE night = ? "
                        "AND score = ? AND role <> 'champion'", [night, score]) if night else
                       ("study_results", "SELECT difference, fresh_difference FROM study_results WHERE study = ? "
                        "AND regime = 'all'", [study]))  # fmt: skip
    rows = []
    if Path(warehouse).exists():
        with connect_read_only(warehouse) as con:
            if has_table(con, table):
                rows = [(a, b) for a, b in con.execute(sql, key).fetchall() if a is not None and b is not None and a == a and b == b]
    if len(rows) < 3:
        return None
    original, fresh = map(np.array, zip(*rows))
    rho = float(spearmanr(original, fresh).statistic) if np.ptp(original) > 0 and np.ptp(fresh) > 0 else None
    return {"arms": len(rows), "spearman": rho}  # None, not NaN: ope.json stays JSON


def write_ope_report(rows: list[OPERow], out_dir, *, title: str, data_summary: dict, live: dict | None = None,
                     live_baseline: str = "heuristic", agreement: dict | None = None,
                     intervals: dict | None = None) -> dict:  # fmt: skip
    from ..common.html_report import markdown_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    live = live or {}
    md = [f"# {title}", "",
          f"Logged data: {data_summary['transitions']} transitions of {data_summary['episodes']} runs "
          f"({data_summary['families']} families); {data_summary['stochastic_share']:.0%} of steps were random draws "
          f"(where importance sampling is identified). Values: pp of validation accuracy gained over an episode; "
          f"intervals: FQE over episode starts, PDWIS/WDR bootstrap over episodes.", "",
          f"| policy | kind | FQE [interval] | vs heuristic (FQE) | PDWIS | WDR | live vs {live_baseline} (test) |",
          "|---|---|---|---|---|---|---|"]  # fmt: skip

    def fmt(e: dict) -> str:
        if not e.get("identified"):
            return "not identified"
        return f"{e['value']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}] (ESS {e['effective_sample_size']:.0f})"

    for r in rows:
        measured = f"{live[r.name]:+.2f}" if r.name in live else "-"
        md.append(f"| {r.name} | {r.kind} | {r.fqe:+.2f} [{r.fqe_low:+.2f}, {r.fqe_high:+.2f}] | {r.versus_heuristic:+.2f} | "
                  f"{fmt(r.pdwis)} | {fmt(r.wdr)} | {measured} |")  # fmt: skip
    calib = calibration(rows, live, live_baseline) if live else None
    if calib:
        md += ["", f"**OPE against live** over {calib['policies']} policies, each as its difference from {live_baseline}: "
               f"Spearman rank correlation {calib['spearman']:+.2f}, mean absolute error {calib['mean_abs_error_pp']:.2f} pp."]  # fmt: skip
    if intervals:
        i = intervals
        md += ["", f"**How much of that is live's noise** ({i['configurations']} held-out configurations resampled "
               f"{i['resamples']:,} times, every arm's live difference taken again on each draw; {i['confidence']:.0%} "
               f"intervals): against the draws, OPE's Spearman is {i['on_draws']:+.2f} [{i['spearman_low']:+.2f}, "
               f"{i['spearman_high']:+.2f}], and an estimate that knew live's own means exactly scores {i['ceiling']:+.2f} "
               f"[{i['ceiling_low']:+.2f}, {i['ceiling_high']:+.2f}]: the ceiling that live's noise sets on any "
               f"estimator here. The ceiling minus OPE, paired by draw: {i['gap']:+.2f} [{i['gap_low']:+.2f}, "
               f"{i['gap_high']:+.2f}]" + (": live's noise alone could explain OPE's shortfall." if i['gap_low'] <= 0
                                            else ": OPE ranks worse than live's noise alone explains.")]  # fmt: skip
    if agreement:
        rho = agreement["spearman"]
        ranked = f"with Spearman {rho:+.2f}" if rho is not None else "without a ranking (one side is the same for every arm)"
        md += ["", f"**Live against itself**: the original data order's differences and the fresh orders' rank the "
               f"{agreement['arms']} arms {ranked} (the same configurations, new data orders), for reference: the "
               "calibration above pools every order, so it is steadier than either side here, but where live reorders "
               "its own arms between orders, a rank correlation against it is bounded by that noise too."]  # fmt: skip
    markdown = "\n".join(md) + "\n"
    (out / "ope.md").write_text(markdown)
    (out / "ope.html").write_text(markdown_page(markdown, title, out))
    (out / "ope.json").write_text(json.dumps({"rows": [asdict(r) for r in rows], "calibration": calib, "data": data_summary,
                                              "live_agreement": agreement, "calibration_intervals": intervals},
                                             indent=1, default=str))  # fmt: skip
    return {"markdown": out / "ope.md", "html": out / "ope.html", "json": out / "ope.json"}

