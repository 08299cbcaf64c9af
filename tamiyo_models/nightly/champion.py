"""The champion: the controller the nightly loop stands behind, which moves only on evidence.

Every night each other controller (tonight's trained challengers, the reference grid, the heuristic) is
compared with the champion on the same held-out configurations: the paired difference on the original data
order, and again on fresh data orders, each with a bootstrap interval over configurations. The rule is fixed
before the night (`PromotionRule`): a controller passes when **both intervals lie above 0**, on at least
`min_pairs` pairs. Of those that pass, the one with the highest fresh-order mean is promoted; with none, the
champion is kept. Either way one row per compared controller goes into `champion_history`, with the reason.

The number compared is the score (`EpisodeOutcome.score("test")`): the final test accuracy charged for growth at
the spec's rent (docs/arena.md, "Compute rent"), which at rent 0 is the test accuracy itself. Each row also
records the rent and the raw test accuracy's paired differences with the same intervals: at rent > 0 the reports
show them beside the score, so a promotion bought by accuracy can be told from one bought by a smaller network;
they never decide.

The champion before the first night is the heuristic (what Tamiyo shipped with). The first night compares
the whole reference grid with it, so the first promoted champion is the best grid controller that beat the
heuristic by the rule: a fixed schedule is a policy too.

The current champion is read back from `champion_history` (the warehouse is the record); each promotion also
registers the controller as a version of the MLflow model `tamiyo-champion-<score>` with the alias `champion`.

A promotion can be luck: the rule's intervals are over one night's configurations, and one configuration where the
champion kept a failing seed can carry a fresh-order mean. So the night after a promotion, the champion it
dethroned (`dethroned`) is a challenger once more, under the same rule: a lucky promotion is undone by evidence,
for the cost of one arm on one night.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..common.stats import mean_ci, noise_floor, win_tie_loss
from ..controllers import ControllerConfig

HEURISTIC = "heuristic"

SCHEMA = """
CREATE TABLE IF NOT EXISTS champion_history (
    night              VARCHAR NOT NULL,
    score              VARCHAR NOT NULL,
    arm                VARCHAR NOT NULL,
    role               VARCHAR NOT NULL,
    champion           VARCHAR NOT NULL,
    controller_json    JSON,
    pairs              BIGINT,
    mean_arm           DOUBLE,
    mean_champion      DOUBLE,
    difference         DOUBLE,
    low                DOUBLE,
    high               DOUBLE,
    wins               BIGINT,
    ties               BIGINT,
    losses             BIGINT,
    fresh_orders       BIGINT,
    fresh_difference   DOUBLE,
    fresh_low          DOUBLE,
    fresh_high         DOUBLE,
    null_rms           DOUBLE,
    passes             BOOLEAN,
    decision           VARCHAR NOT NULL,
    reason             VARCHAR,
    champion_after     VARCHAR NOT NULL,
    heldout_batch_seed BIGINT,
    model_version      VARCHAR,
    recorded_at        TIMESTAMP DEFAULT current_timestamp,
    rent                      DOUBLE DEFAULT 0,
    accuracy_difference       DOUBLE,
    accuracy_low              DOUBLE,
    accuracy_high             DOUBLE,
    fresh_accuracy_difference DOUBLE,
    fresh_accuracy_low        DOUBLE,
    fresh_accuracy_high       DOUBLE,
    PRIMARY KEY (night, score, arm)
);
COMMENT ON TABLE champion_history IS 'one row per night and compared controller: its paired difference against the night''s champion on held-out configurations, and what the night decided (tamiyo_models/nightly/champion.py)';
COMMENT ON COLUMN champion_history.night IS 'the night (YYYY-MM-DD, the Dagster partition)';
COMMENT ON COLUMN champion_history.score IS 'the score that decides: test (final accuracy on the test split, pp, charged for growth at the night''s rent: see rent)';
COMMENT ON COLUMN champion_history.arm IS 'the compared controller (a challenger such as phase3-bcq, a reference such as fixed:conv_heavy@1, or heuristic)';
COMMENT ON COLUMN champion_history.role IS 'champion (tonight''s, the reference of every difference), challenger (trained tonight, a shipped policy on a first night, or the champion dethroned the night before), reference (the grid), heuristic';
COMMENT ON COLUMN champion_history.champion IS 'the champion at the start of the night';
COMMENT ON COLUMN champion_history.controller_json IS 'the controller settings (for a learned policy: its file)';
COMMENT ON COLUMN champion_history.pairs IS 'held-out configurations where both the arm and the champion completed on the original order';
COMMENT ON COLUMN champion_history.mean_arm IS 'mean score of the arm on those configurations (pp)';
COMMENT ON COLUMN champion_history.mean_champion IS 'mean score of the champion on the same configurations (pp)';
COMMENT ON COLUMN champion_history.difference IS 'mean paired difference arm - champion on the original data order (pp)';
COMMENT ON COLUMN champion_history.low IS 'lower end of its bootstrap interval over configurations';
COMMENT ON COLUMN champion_history.high IS 'upper end of that interval';
COMMENT ON COLUMN champion_history.wins IS 'configurations where the arm scored above the champion (ties within 5e-4 pp)';
COMMENT ON COLUMN champion_history.ties IS 'configurations tied';
COMMENT ON COLUMN champion_history.losses IS 'configurations where the arm scored below the champion';
COMMENT ON COLUMN champion_history.fresh_orders IS 'fresh data orders both sides were rerun on';
COMMENT ON COLUMN champion_history.fresh_difference IS 'mean paired difference on the fresh orders (per configuration, the mean over orders)';
COMMENT ON COLUMN champion_history.fresh_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN champion_history.fresh_high IS 'upper end of that interval';
COMMENT ON COLUMN champion_history.null_rms IS 'the null control: RMS of champion(fresh order) - champion(original order), the noise floor of one difference (pp)';
COMMENT ON COLUMN champion_history.passes IS 'whether the arm passed the promotion rule (both intervals above 0, enough pairs)';
COMMENT ON COLUMN champion_history.decision IS 'promoted (this arm became the champion), kept (it passed or not, the champion stayed), champion (the champion''s own row)';
COMMENT ON COLUMN champion_history.reason IS 'why, in words';
COMMENT ON COLUMN champion_history.champion_after IS 'the champion at the end of the night';
COMMENT ON COLUMN champion_history.heldout_batch_seed IS 'the batch seed that drew the night''s held-out configurations';
COMMENT ON COLUMN champion_history.model_version IS 'for the promoted arm: its version of the MLflow model tamiyo-champion-<score>';
COMMENT ON COLUMN champion_history.recorded_at IS 'when the row was written';
COMMENT ON COLUMN champion_history.rent IS 'the rent the night''s scores are charged at: pp of score per doubling of parameters (score = test accuracy - rent x log2(final / host parameters)); 0: the score is the test accuracy itself, and every difference equals its accuracy_ twin';
COMMENT ON COLUMN champion_history.accuracy_difference IS 'mean paired difference arm - champion of the raw test accuracy (no rent), original data order (pp): shown beside the score, never decides';
COMMENT ON COLUMN champion_history.accuracy_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN champion_history.accuracy_high IS 'upper end of that interval';
COMMENT ON COLUMN champion_history.fresh_accuracy_difference IS 'the raw test-accuracy difference on the fresh orders (per configuration, the mean over orders; pp)';
COMMENT ON COLUMN champion_history.fresh_accuracy_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN champion_history.fresh_accuracy_high IS 'upper end of that interval';
"""

# Columns added after champion_history first shipped (issue 34's rent): an existing table gains them on open. Every
# night recorded before them was a rent-0 night, hence the default; their accuracy columns stay NULL (the score
# columns of such a night are its accuracy differences already).
ADDED_COLUMNS = (("rent", "DOUBLE DEFAULT 0"), ("accuracy_difference", "DOUBLE"), ("accuracy_low", "DOUBLE"),
                 ("accuracy_high", "DOUBLE"), ("fresh_accuracy_difference", "DOUBLE"), ("fresh_accuracy_low", "DOUBLE"),
                 ("fresh_accuracy_high", "DOUBLE"))  # fmt: skip


@dataclass(frozen=True)
class PromotionRule:
    """Written down before the night: promote only on an interval above 0 against the champion, on the
    original data order and on the fresh orders, with enough pairs for an interval to mean something."""

    confidence: float = 0.95
    min_pairs: int = 6
    require_fresh: bool = True
    resamples: int = 10_000

    def describe(self) -> str:
        fresh = " and on the fresh data orders" if self.require_fresh else ""
        return (f"promote when the {self.confidence:.0%} interval of the paired difference against the champion is "
                f"above 0 on the original order{fresh}, over at least {self.min_pairs} pairs; among those, the "
                "highest fresh-order mean")  # fmt: skip


@dataclass
class Comparison:
    """One arm against the champion on the night's held-out configurations."""

    arm: str
    role: str
    controller: dict
    pairs: int
    mean_arm: float
    mean_champion: float
    difference: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    fresh_orders: int
    fresh_difference: float
    fresh_low: float
    fresh_high: float
    null_rms: float
    passes: bool = False
    reason: str = ""
    # What the score was charged at, and the raw test accuracy's paired differences beside it: at rent > 0 the
    # score decides (difference, fresh_difference above) and these say how much of it is accuracy and how much
    # the charge for growth; at rent 0 they equal the score's.
    rent: float = 0.0
    accuracy_difference: float = math.nan
    accuracy_low: float = math.nan
    accuracy_high: float = math.nan
    fresh_accuracy_difference: float = math.nan
    fresh_accuracy_low: float = math.nan
    fresh_accuracy_high: float = math.nan


def compare(runs, arm: str, role: str, controller: ControllerConfig, rule: PromotionRule, which: str = "test") -> Comparison:
    """`arm` against the design's reference arm (the champion) in a `PairedRuns`: decided on `which` (the
    charged score, "test"), with the raw test accuracy's differences beside it."""
    indices = list(range(len(runs.configs)))
    rent = runs.rent()  # a design at mixed rents fails here: its scores are not one number
    original = runs.differences(arm, indices, 0, which)
    fresh = runs.fresh_differences(arm, indices, which)
    ok = np.isfinite(original)
    ci, fresh_ci = _intervals(original, fresh, rule)
    accuracy_ci, fresh_accuracy_ci = _intervals(runs.differences(arm, indices, 0, "test_accuracy"),
                                                runs.fresh_differences(arm, indices, "test_accuracy"), rule)  # fmt: skip
    w, t, l = win_tie_loss(original)
    arm_scores = np.array([runs.score(i, arm, 0, which) for i in indices])
    champion_scores = np.array([runs.score(i, runs.reference, 0, which) for i in indices])
    orders = [o for o in runs.orders(arm) if o > 0 and o in runs.orders(runs.reference)]
    c = Comparison(
        arm=arm, role=role, controller=controller.to_dict(), pairs=int(ok.sum()),
        mean_arm=_mean(arm_scores[ok]), mean_champion=_mean(champion_scores[ok]),
        difference=ci.mean if ci else math.nan, low=ci.low if ci else math.nan, high=ci.high if ci else math.nan,
        wins=w, ties=t, losses=l, fresh_orders=len(orders),
        fresh_difference=fresh_ci.mean if fresh_ci else math.nan, fresh_low=fresh_ci.low if fresh_ci else math.nan,
        fresh_high=fresh_ci.high if fresh_ci else math.nan,
        null_rms=noise_floor(runs.null_differences(indices, which)), rent=rent,
        accuracy_difference=accuracy_ci.mean if accuracy_ci else math.nan,
        accuracy_low=accuracy_ci.low if accuracy_ci else math.nan, accuracy_high=accuracy_ci.high if accuracy_ci else math.nan,
        fresh_accuracy_difference=fresh_accuracy_ci.mean if fresh_accuracy_ci else math.nan,
        fresh_accuracy_low=fresh_accuracy_ci.low if fresh_accuracy_ci else math.nan,
        fresh_accuracy_high=fresh_accuracy_ci.high if fresh_accuracy_ci else math.nan,
    )  # fmt: skip
    c.passes, c.reason = judge(c, rule)
    return c


def _intervals(original: np.ndarray, fresh: np.ndarray, rule: PromotionRule):
    """The rule's intervals of the original-order and the fresh-order differences (None: fewer than 2 pairs)."""
    ok, fresh_ok = np.isfinite(original), np.isfinite(fresh)
    ci = mean_ci(original[ok], rule.confidence, rule.resamples) if ok.sum() >= 2 else None
    fresh_ci = mean_ci(fresh[fresh_ok], rule.confidence, rule.resamples) if fresh_ok.sum() >= 2 else None
    return ci, fresh_ci


def judge(c: Comparison, rule: PromotionRule) -> tuple[bool, str]:
    passes, reason = _judge_score(c, rule)
    if c.rent:
        # The reason is read alone (champion_history.reason, the report's "Why"): it says which number decided.
        reason = (f"score at rent {c.rent:g}: {reason}; raw test accuracy beside it (does not decide): original "
                  f"{_signed(c.accuracy_difference)}, fresh orders {_signed(c.fresh_accuracy_difference)}")  # fmt: skip
    return passes, reason


def _judge_score(c: Comparison, rule: PromotionRule) -> tuple[bool, str]:
    if c.pairs < rule.min_pairs:
        return False, f"{c.pairs} pairs, fewer than the rule's {rule.min_pairs}"
    if not c.low > 0:
        return False, f"original order {c.difference:+.2f} [{c.low:+.2f}, {c.high:+.2f}] pp: the interval is not above 0"
    if rule.require_fresh and not c.fresh_low > 0:
        if c.fresh_orders == 0:
            return False, "not rerun on fresh data orders"
        return False, (f"original {c.difference:+.2f} [{c.low:+.2f}, {c.high:+.2f}] pp but fresh orders "
                       f"{c.fresh_difference:+.2f} [{c.fresh_low:+.2f}, {c.fresh_high:+.2f}]: not replicated")  # fmt: skip
    return True, (f"original {c.difference:+.2f} [{c.low:+.2f}, {c.high:+.2f}] pp, fresh orders "
                  f"{c.fresh_difference:+.2f} [{c.fresh_low:+.2f}, {c.fresh_high:+.2f}], {c.pairs} pairs")  # fmt: skip


def choose(comparisons: list[Comparison]) -> Comparison | None:
    """The promoted arm: among those that pass, the highest fresh-order mean (then original-order mean)."""
    passing = [c for c in comparisons if c.passes]
    if not passing:
        return None
    return max(passing, key=lambda c: (c.fresh_difference, c.difference, c.arm))


@dataclass(frozen=True)
class Champion:
    name: str
    controller: ControllerConfig
    since: str | None  # the night it was promoted (None: the starting heuristic)

    def to_dict(self) -> dict:
        return {"name": self.name, "controller": self.controller.to_dict(), "since": self.since}


def starting_champion() -> Champion:
    return Champion(HEURISTIC, ControllerConfig(kind="heuristic", label=HEURISTIC), None)


def ensure_history(con) -> None:
    """champion_history in place, an existing one given the columns added since it was created (no row lost)."""
    from ..warehouse.seeds import has_table

    if has_table(con, "champion_history"):
        for column, kind in ADDED_COLUMNS:
            con.execute(f"ALTER TABLE champion_history ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute(SCHEMA)


def current_champion(con, score: str = "test", before: str | None = None) -> Champion:
    """The champion at the end of the last night recorded (before night `before`, when given)."""
    ensure_history(con)
    where, params = "score = ?", [score]
    if before is not None:
        where += " AND night < ?"
        params.append(before)
    row = con.execute(f"SELECT night FROM champion_history WHERE {where} ORDER BY night DESC LIMIT 1", params).fetchall()
    row = row[0] if row else None
    if row is None:
        return starting_champion()
    night = row[0]
    name = con.execute("SELECT DISTINCT champion_after FROM champion_history WHERE night = ? AND score = ?",
                       [night, score]).fetchall()[0][0]  # fmt: skip
    # The champion's settings: from the row where it was promoted (or its own champion row).
    found = con.execute(
        "SELECT controller_json, night FROM champion_history WHERE score = ? AND arm = ? AND decision IN ('promoted', 'champion') "
        "AND night <= ? ORDER BY (decision = 'promoted') DESC, night DESC LIMIT 1", [score, name, night]).fetchall()  # fmt: skip
    found = found[0] if found else None
    if found is None or found[0] is None:
        return starting_champion()
    since = con.execute("SELECT max(night) FROM champion_history WHERE score = ? AND arm = ? AND decision = 'promoted' "
                        "AND night <= ?", [score, name, night]).fetchall()[0][0]  # fmt: skip
    return Champion(name, ControllerConfig.from_dict(json.loads(found[0])), since)


def dethroned(con, night: str, score: str = "test") -> Champion | None:
    """The champion that the last night recorded before `night` replaced, with its settings; None when that night
    kept its champion or no night is recorded before `night` (the module docstring: it defends once)."""
    ensure_history(con)
    last = con.execute("SELECT max(night) FROM champion_history WHERE score = ? AND night < ?", [score, night]).fetchall()[0][0]
    if last is None:
        return None
    before, after = con.execute("SELECT any_value(champion), any_value(champion_after) FROM champion_history "
                                "WHERE score = ? AND night = ?", [score, last]).fetchall()[0]  # fmt: skip
    if before == after:
        return None
    former = current_champion(con, score, before=last)
    return former if former.name == before else None


def record_night(con, night: str, score: str, champion: Champion, comparisons: list[Comparison],
                 promoted: Comparison | None, heldout_batch_seed: int, rule: PromotionRule,
                 model_version: str | None = None) -> None:  # fmt: skip
    """Replace the night's rows (a rerun of a night records it once) in one transaction."""
    ensure_history(con)
    after = promoted.arm if promoted else champion.name
    # Every row of a night carries its rent, the champion's own too: the report and the trend read it from any row.
    rents = {c.rent for c in comparisons}
    if len(rents) > 1:
        raise ValueError(f"night {night}: comparisons at different rents ({sorted(rents)}) cannot be one night's decision")
    rent = rents.pop() if rents else 0.0
    rows = [(night, score, champion.name, "champion", champion.name, json.dumps(champion.controller.to_dict()),
             *([None] * 15), "champion", f"tonight's champion (since {champion.since or 'the start'}); rule: {rule.describe()}",
             after, heldout_batch_seed, None, rent, *([None] * 6))]  # fmt: skip
    for c in comparisons:
        if promoted is not None and c.arm == promoted.arm:
            decision, reason = "promoted", f"passed the rule: {c.reason}"
        else:
            decision = "kept"
            reason = (f"passed the rule but {promoted.arm} came first on fresh orders: {c.reason}" if c.passes and promoted
                      else f"the champion stays: {c.reason}")  # fmt: skip
        rows.append((night, score, c.arm, c.role, champion.name, json.dumps(c.controller), c.pairs, _db(c.mean_arm),
                     _db(c.mean_champion), _db(c.difference), _db(c.low), _db(c.high), c.wins, c.ties, c.losses,
                     c.fresh_orders, _db(c.fresh_difference), _db(c.fresh_low), _db(c.fresh_high), _db(c.null_rms),
                     c.passes, decision, reason, after, heldout_batch_seed,
                     model_version if decision == "promoted" else None, c.rent, _db(c.accuracy_difference),
                     _db(c.accuracy_low), _db(c.accuracy_high), _db(c.fresh_accuracy_difference),
                     _db(c.fresh_accuracy_low), _db(c.fresh_accuracy_high)))  # fmt: skip
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM champion_history WHERE night = ? AND score = ?", [night, score])
        con.executemany(
            "INSERT INTO champion_history (night, score, arm, role, champion, controller_json, pairs, mean_arm, "
            "mean_champion, difference, low, high, wins, ties, losses, fresh_orders, fresh_difference, fresh_low, "
            "fresh_high, null_rms, passes, decision, reason, champion_after, heldout_batch_seed, model_version, rent, "
            "accuracy_difference, accuracy_low, accuracy_high, fresh_accuracy_difference, fresh_accuracy_low, "
            "fresh_accuracy_high) VALUES (" + ", ".join(["?"] * 33) + ")", rows)  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def register_champion(tracking, score: str, night: str, comparison: Comparison, policy_file: str | None) -> str:
    """Register the promoted controller as a new version of `tamiyo-champion-<score>` and move the `champion`
    alias onto it; its run logs the controller settings, the comparison that promoted it and, for a learned
    policy, the policy file. Returns the version."""
    import mlflow

    from ..agents.tracking import Tracker

    tracker = Tracker(tracking)
    name = f"tamiyo-champion-{score}"
    with mlflow.start_run(experiment_id=tracker.experiment_id, run_name=f"champion {night} {comparison.arm}",
                          tags={"tamiyo.role": "champion", "tamiyo.night": night, "tamiyo.arm": comparison.arm}) as run:  # fmt: skip
        mlflow.log_dict(comparison.controller, "controller/controller.json")
        mlflow.log_dict(asdict(comparison), "controller/promotion.json")
        if policy_file:
            mlflow.log_artifact(policy_file, "controller")
        mlflow.log_metrics({k: v for k, v in {"difference": comparison.difference, "low": comparison.low,
                                             "fresh_difference": comparison.fresh_difference,
                                             "fresh_low": comparison.fresh_low, "rent": comparison.rent,
                                             "accuracy_difference": comparison.accuracy_difference,
                                             "fresh_accuracy_difference": comparison.fresh_accuracy_difference}.items()
                            if math.isfinite(v)})  # fmt: skip
        source = f"{run.info.artifact_uri}/controller"
        run_id = run.info.run_id
    client = tracker.client
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - MlflowException RESOURCE_DOES_NOT_EXIST: the first champion of this score
        client.create_registered_model(name, description=f"The nightly champion on the {score} score (tamiyo_models/nightly).")
    version = client.create_model_version(name, source, run_id=run_id, tags={"tamiyo.arm": comparison.arm, "tamiyo.night": night})
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def _signed(value: float) -> str:
    return f"{value:+.2f} pp" if math.isfinite(value) else "-"


def _db(value: float):
    return None if value is None or not math.isfinite(value) else float(value)
