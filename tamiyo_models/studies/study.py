"""Studies: a claim, its held-out configurations, its arms and its rule in one TOML file, run by one command.

    tamiyo study run studies/NAME.toml        # run (or resume) the paired design, record the results
    tamiyo study results --write docs/results.md

A study file says, before any episode runs, what is compared and what would count:

    name = "digits-schedule-vs-heuristic"
    claim = "grafting conv_heavy at epoch 1 beats the heuristic on short digits episodes"
    [heldout]                      # drawn by the study, seeds registered as evaluation seeds (used once)
    spec = "smoke"                 # a shipped generation spec or a file
    regimes = []                   # empty: every regime the spec has (that can run here)
    configs_per_regime = 8
    batch_seed = 20261210
    max_epochs = 0                 # 0: the spec's episode length
    [design]
    reference = "heuristic"        # every difference is arm - reference, per configuration
    arms = ["fixed:conv_heavy@1"]  # reference controller names, NAME=policy-file, or a [[train]] name
    fresh_orders = 2               # the replication (and the reference's reruns: the null control)
    [rule]
    confidence = 0.95
    min_pairs = 6                  # a claim holds when both intervals are above 0 on at least this many pairs
    [compute]
    workers = 2

An arm can also be trained by the study itself, from data it generates: [[data]] and [[train]] tables
(studies/training.py), so a learned policy's result needs no file made by hand beforehand.

Results go to the `study_results` table of the warehouse (one row per arm and regime, "all" included) and to an
MLflow run; `docs/results.md` is generated from that table, never typed. The episodes live in
var/studies/<name>/episodes: a study killed halfway resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..controllers import ControllerConfig, reference_controller
from ..nightly.champion import ADDED_COLUMNS

SCHEMA = """
CREATE TABLE IF NOT EXISTS study_results (
    study            VARCHAR NOT NULL,
    claim            VARCHAR NOT NULL,
    arm              VARCHAR NOT NULL,
    reference        VARCHAR NOT NULL,
    regime           VARCHAR NOT NULL,
    pairs            BIGINT,
    mean_arm         DOUBLE,
    mean_reference   DOUBLE,
    difference       DOUBLE,
    low              DOUBLE,
    high             DOUBLE,
    wins             BIGINT,
    ties             BIGINT,
    losses           BIGINT,
    fresh_orders     BIGINT,
    fresh_difference DOUBLE,
    fresh_low        DOUBLE,
    fresh_high       DOUBLE,
    null_rms         DOUBLE,
    holds            BOOLEAN,
    verdict          VARCHAR,
    heldout          VARCHAR,
    study_file       VARCHAR,
    study_sha256     VARCHAR,
    episodes         BIGINT,
    seconds          DOUBLE,
    machine          VARCHAR,
    recorded_at      TIMESTAMP DEFAULT current_timestamp,
    rent                      DOUBLE DEFAULT 0,
    accuracy_difference       DOUBLE,
    accuracy_low              DOUBLE,
    accuracy_high             DOUBLE,
    fresh_accuracy_difference DOUBLE,
    fresh_accuracy_low        DOUBLE,
    fresh_accuracy_high       DOUBLE,
    PRIMARY KEY (study, arm, regime)
);
COMMENT ON TABLE study_results IS 'one row per study, arm and regime (all: every regime pooled): the paired difference arm - reference on the study''s held-out configurations, test split, with the null control and the fresh-order replication (tamiyo_models/studies/study.py); docs/results.md is generated from it';
COMMENT ON COLUMN study_results.study IS 'the study''s name (its file: studies/<name>.toml)';
COMMENT ON COLUMN study_results.claim IS 'the claim as the study file states it, before its episodes';
COMMENT ON COLUMN study_results.arm IS 'the compared controller';
COMMENT ON COLUMN study_results.reference IS 'the controller every difference is paired with';
COMMENT ON COLUMN study_results.regime IS 'the arena regime, or all (pooled over the study''s regimes)';
COMMENT ON COLUMN study_results.pairs IS 'held-out configurations where both sides completed on the original order';
COMMENT ON COLUMN study_results.mean_arm IS 'mean score of the arm on those configurations (pp; the test accuracy charged at the spec''s rent, the accuracy itself at rent 0)';
COMMENT ON COLUMN study_results.mean_reference IS 'mean score of the reference on the same configurations (pp)';
COMMENT ON COLUMN study_results.difference IS 'mean paired difference arm - reference, original data order (pp)';
COMMENT ON COLUMN study_results.low IS 'lower end of its bootstrap interval (the study''s confidence)';
COMMENT ON COLUMN study_results.high IS 'upper end of that interval';
COMMENT ON COLUMN study_results.wins IS 'configurations where the arm scored above the reference';
COMMENT ON COLUMN study_results.ties IS 'configurations tied (within 5e-4 pp)';
COMMENT ON COLUMN study_results.losses IS 'configurations where the arm scored below the reference';
COMMENT ON COLUMN study_results.fresh_orders IS 'fresh data orders both sides were rerun on';
COMMENT ON COLUMN study_results.fresh_difference IS 'mean paired difference on the fresh orders (pp)';
COMMENT ON COLUMN study_results.fresh_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN study_results.fresh_high IS 'upper end of that interval';
COMMENT ON COLUMN study_results.null_rms IS 'the null control: RMS of reference(fresh order) - reference(original order) (pp)';
COMMENT ON COLUMN study_results.holds IS 'whether the claim holds by the study''s rule: both intervals above 0 on enough pairs';
COMMENT ON COLUMN study_results.verdict IS 'the rule''s verdict in words';
COMMENT ON COLUMN study_results.heldout IS 'how the held-out configurations were drawn (spec, regimes, count, batch seed)';
COMMENT ON COLUMN study_results.study_file IS 'the study file, relative to the repository';
COMMENT ON COLUMN study_results.study_sha256 IS 'the study file''s content hash when it ran';
COMMENT ON COLUMN study_results.episodes IS 'episodes in the study''s design (its compute)';
COMMENT ON COLUMN study_results.seconds IS 'wall-clock seconds of the run that recorded the row (episodes read back cost little)';
COMMENT ON COLUMN study_results.machine IS 'where it ran: CPU count and platform';
COMMENT ON COLUMN study_results.recorded_at IS 'when the row was written';
COMMENT ON COLUMN study_results.rent IS 'the rent of the study''s spec: pp of score per doubling of parameters (score = test accuracy - rent x log2(final / host parameters)); 0: the score is the test accuracy itself';
COMMENT ON COLUMN study_results.accuracy_difference IS 'mean paired difference arm - reference of the raw test accuracy (no rent), original data order (pp): beside the score, never decides';
COMMENT ON COLUMN study_results.accuracy_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN study_results.accuracy_high IS 'upper end of that interval';
COMMENT ON COLUMN study_results.fresh_accuracy_difference IS 'the raw test-accuracy difference on the fresh orders (pp)';
COMMENT ON COLUMN study_results.fresh_accuracy_low IS 'lower end of its bootstrap interval';
COMMENT ON COLUMN study_results.fresh_accuracy_high IS 'upper end of that interval';
"""

# Added after study_results first shipped (issue 34's rent), the same columns champion_history gained: an existing table
# gains them when a study records. Every study recorded before them ran at rent 0, hence the default.
ACCURACY_COLUMNS = tuple(c for c, _ in ADDED_COLUMNS)


class StudyError(ValueError):
    """A study file that cannot be run, naming the file and the key."""


@dataclass(frozen=True)
class StudyConfig:
    name: str
    claim: str
    spec: str
    configs_per_regime: int
    batch_seed: int
    reference: str
    arms: tuple[str, ...]
    regimes: tuple[str, ...] = ()
    max_epochs: int = 0
    fresh_orders: int = 2
    confidence: float = 0.95
    min_pairs: int = 6
    workers: int = 2
    source: str = ""
    sha256: str = ""
    data: tuple = ()  # training.DataSet: what trained arms learn from
    trained: tuple = ()  # training.TrainedArm: arms the study trains itself

    def controllers(self, trained_files: dict[str, Path] | None = None) -> dict[str, ControllerConfig]:
        """arm name -> controller, the reference first. A trained arm is its policy file once trained
        (`trained_files`); before that (checking the file) only its name is checked."""
        out = {}
        trained_names = {a.name for a in self.trained}
        for entry in (self.reference, *self.arms):
            name, sep, policy = entry.partition("=")
            if name in trained_names and not sep:
                if trained_files is not None and name in trained_files:  # (not yet trained: left out of a look)
                    out[name] = ControllerConfig(kind="policy", policy=f"file:{trained_files[name]}", label=name)
                continue
            if sep:
                path = Path(policy)
                if not path.exists():
                    raise StudyError(f"{self.source}: design: policy file {policy!r} of arm {name!r} not found")
                out[name] = ControllerConfig(kind="policy", policy=f"file:{path.resolve()}", label=name)
            else:
                try:
                    out[name] = reference_controller(name)
                except ValueError as exc:
                    raise StudyError(f"{self.source}: design: {exc}") from None
        return out

    def heldout_text(self) -> str:
        regimes = ", ".join(self.regimes) or "every regime"
        cut = f", cut to {self.max_epochs} epochs" if self.max_epochs else ""
        return f"spec {self.spec} ({regimes}), {self.configs_per_regime} per regime, batch seed {self.batch_seed}{cut}"


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode())
    except FileNotFoundError:
        raise StudyError(f"no study file at {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: not a TOML file: {exc}") from None

    def need(table: str | None, key: str, kind):
        where = data if table is None else data.get(table)
        if not isinstance(where, dict) or key not in where:
            raise StudyError(f"{path}: missing {table + '.' if table else ''}{key}")
        value = where[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise StudyError(f"{path}: {table + '.' if table else ''}{key} must be {kind.__name__ if isinstance(kind, type) else kind}, got {value!r}")
        return value

    def opt(table: str, key: str, default):
        return (data.get(table) or {}).get(key, default)

    known = {"name", "claim", "heldout", "design", "rule", "compute", "data", "train"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {', '.join(unknown)}; a study has {', '.join(sorted(known))}")
    arms = need("design", "arms", list)
    if not arms or not all(isinstance(a, str) for a in arms):
        raise StudyError(f"{path}: design.arms must be a non-empty list of controller names")
    config = StudyConfig(
        name=need(None, "name", str), claim=need(None, "claim", str), spec=need("heldout", "spec", str),
        configs_per_regime=need("heldout", "configs_per_regime", int), batch_seed=need("heldout", "batch_seed", int),
        regimes=tuple(opt("heldout", "regimes", [])), max_epochs=int(opt("heldout", "max_epochs", 0)),
        reference=need("design", "reference", str), arms=tuple(arms), fresh_orders=int(opt("design", "fresh_orders", 2)),
        confidence=float(opt("rule", "confidence", 0.95)), min_pairs=int(opt("rule", "min_pairs", 6)),
        workers=int(opt("compute", "workers", 2)), source=str(path), sha256=hashlib.sha256(raw).hexdigest(),
    )  # fmt: skip
    if "data" in data or "train" in data:
        from .training import parse_data, parse_train

        try:
            datasets = parse_data(data.get("data", []), str(path))
            config = dataclasses.replace(config, data=datasets, trained=parse_train(data.get("train", []), datasets, str(path)))
        except ValueError as exc:
            raise StudyError(str(exc)) from None
        if config.reference in {a.name for a in config.trained}:
            raise StudyError(f"{path}: design.reference must be a controller every arm is compared with, not a trained arm")
    if config.configs_per_regime < 2 or config.fresh_orders < 1:
        raise StudyError(f"{path}: heldout.configs_per_regime must be >= 2 and design.fresh_orders >= 1")
    config.controllers()  # names and policy files checked before anything runs
    return config


@dataclass
class StudyRun:
    config: StudyConfig
    rows: list[dict] = field(default_factory=list)
    episodes: int = 0
    seconds: float = 0.0


def run_study(path: str | Path, *, warehouse: str | Path, out_root: str | Path = "var/studies", tracking=None,
              workers: int | None = None, log: Callable[[str], None] = print, on_result=None,
              execute: bool = True) -> StudyRun:  # fmt: skip
    """Run (or resume) a study and record its rows in `study_results` (and MLflow when `tracking` is given).
    `workers` overrides the study file's: the machine's cores change how fast it runs, never its results."""
    from ..evaluation.headroom import HeadroomConfig, headroom_configs
    from ..evaluation.paired import run_paired
    from ..nightly.champion import PromotionRule, compare
    from ..warehouse import writing
    from ..warehouse.seeds import EVALUATION, claim_seeds

    config = load_study(path)
    started = time.perf_counter()
    root = Path(out_root) / config.name
    if execute:
        trained_files, data_episodes = _train(config, warehouse, root, workers or config.workers, log, on_result)
    else:  # a look at a study in progress: the arms trained so far
        from .training import trained_policy

        trained_files = {a.name: f for a in config.trained if (f := trained_policy(root, a.name)) is not None}
        data_episodes = 0
    configs, skipped = headroom_configs(HeadroomConfig(spec=config.spec, regimes=config.regimes,
                                                       configs_per_regime=config.configs_per_regime,
                                                       batch_seed=config.batch_seed))  # fmt: skip
    for regime, why in skipped.items():
        log(f"study {config.name}: regime {regime} skipped: {why}")
    if not configs:
        raise StudyError(f"{config.source}: no regime of spec {config.spec!r} can run here")
    if config.max_epochs:
        configs = [dataclasses.replace(c, max_epochs=min(c.max_epochs, config.max_epochs)) for c in configs]
    configs = [dataclasses.replace(c, tags={**c.tags, "study": config.name}) for c in configs]
    with writing(warehouse) as con:  # the study's held-out seeds: odd, never used by a night or another study
        configs = claim_seeds(con, configs, EVALUATION, f"study:{config.name}", "heldout")
    arms = config.controllers(trained_files)
    heldout_seeds = {c.seed for c in configs}
    for name, file in trained_files.items():  # no arm is graded on a configuration it learned from
        from .training import learned_seeds

        if learned_seeds(file) & heldout_seeds:
            raise StudyError(f"{config.source}: {name} learned from held-out seeds {sorted(learned_seeds(file) & heldout_seeds)[:5]}")
    runs = run_paired(configs, arms, Path(out_root) / config.name / "episodes", reference=config.reference,
                      null_orders=config.fresh_orders, replicate=config.fresh_orders, workers=workers or config.workers,
                      on_result=on_result, execute=execute)  # fmt: skip
    rule = PromotionRule(confidence=config.confidence, min_pairs=config.min_pairs)
    result = StudyRun(config, episodes=len(runs.outcomes) + data_episodes)
    regimes = runs.regimes()
    for arm, controller in arms.items():
        if arm == config.reference:
            continue
        for regime in ["all", *regimes] if len(regimes) > 1 else ["all"]:
            part = runs if regime == "all" else _regime_runs(runs, regime)
            c = compare(part, arm, "arm", controller, rule)
            result.rows.append({
                "study": config.name, "claim": config.claim, "arm": arm, "reference": config.reference, "regime": regime,
                **{k: getattr(c, k) for k in ("pairs", "difference", "low", "high", "wins", "ties", "losses",
                                               "fresh_orders", "fresh_difference", "fresh_low", "fresh_high", "null_rms",
                                               *ACCURACY_COLUMNS)},
                "mean_arm": c.mean_arm, "mean_reference": c.mean_champion, "holds": c.passes, "verdict": c.reason,
                "heldout": config.heldout_text(), "study_file": _relative(config.source), "study_sha256": config.sha256,
            })  # fmt: skip
    result.seconds = time.perf_counter() - started
    machine = f"{_cpus()} CPUs, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    for row in result.rows:
        row.update(episodes=result.episodes, seconds=round(result.seconds, 1), machine=machine)
    with writing(warehouse) as con:
        record_study(con, config.name, result.rows)
    for row in result.rows:
        if row["regime"] == "all":
            log(f"study {config.name}: {row['arm']} - {row['reference']}: {row['verdict']}")
    if tracking is not None:
        _track(config, result, tracking)
    return result


def _train(config: StudyConfig, warehouse, root: Path, workers: int, log, on_result) -> tuple[dict[str, Path], int]:
    """The study's own training stage: each [[data]] set generated and ingested, each [[train]] arm trained."""
    from .training import prepare_data, train_arm

    if not config.trained:
        return {}, 0
    used = {a.data for a in config.trained if a.data}
    episodes = 0
    for dataset in config.data:
        if dataset.name in used:
            episodes += prepare_data(config.name, dataset, warehouse, root, workers=workers, log=log, on_result=on_result)["episodes"]
    episodes += sum(a.settings.learner.episodes for a in config.trained  # their own, live (a vine arm runs none)
                    if a.phase == "phase4" and a.settings.algorithm != "vine")  # fmt: skip
    by_name = {d.name: d for d in config.data}
    return {arm.name: train_arm(config.name, arm, by_name.get(arm.data), root, warehouse, log=log) for arm in config.trained}, episodes


def _regime_runs(runs, regime: str):
    """The design restricted to one regime (a view with re-indexed outcomes)."""
    from ..evaluation.paired import PairedRuns

    keep = runs.indices(regime)
    index = {old: new for new, old in enumerate(keep)}
    part = PairedRuns([runs.configs[i] for i in keep], runs.arms, runs.reference)
    part.outcomes = {(index[i], a, o): v for (i, a, o), v in runs.outcomes.items() if i in index}
    return part


def record_study(con, study: str, rows: list[dict]) -> None:
    """Replace the study's rows in one transaction (a rerun records it once)."""
    import math

    from ..warehouse.seeds import has_table

    if has_table(con, "study_results"):
        for column, kind in ADDED_COLUMNS:
            con.execute(f"ALTER TABLE study_results ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute(SCHEMA)
    columns = ["study", "claim", "arm", "reference", "regime", "pairs", "mean_arm", "mean_reference", "difference", "low",
               "high", "wins", "ties", "losses", "fresh_orders", "fresh_difference", "fresh_low", "fresh_high",
               "null_rms", "holds", "verdict", "heldout", "study_file", "study_sha256", "episodes", "seconds", "machine",
               *ACCURACY_COLUMNS]  # fmt: skip
    # A row from before the rent (a caller that builds its own) is a rent-0 row without accuracy columns.
    values = [[None if isinstance(v, float) and not math.isfinite(v) else v
               for v in (r.get(c, 0.0 if c == "rent" else None) for c in columns)] for r in rows]  # fmt: skip
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM study_results WHERE study = ?", [study])
        if values:
            con.executemany(f"INSERT INTO study_results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _track(config: StudyConfig, result: StudyRun, tracking) -> None:
    import math

    import mlflow

    from ..agents.tracking import Tracker

    tracker = Tracker(dataclasses.replace(tracking, experiment="tamiyo-studies"))
    with mlflow.start_run(experiment_id=tracker.experiment_id, run_name=f"study {config.name}",
                          tags={"tamiyo.role": "study", "tamiyo.study": config.name}):  # fmt: skip
        mlflow.log_params({"claim": config.claim[:500], "heldout": config.heldout_text(), "reference": config.reference,
                           "arms": ",".join(config.arms), "fresh_orders": config.fresh_orders, "study_sha256": config.sha256})  # fmt: skip
        mlflow.log_artifact(config.source, "study")
        mlflow.log_dict(result.rows, "study/results.json")
        for row in result.rows:
            if row["regime"] == "all":
                key = row["arm"].replace(":", "_").replace("@", "_at_")
                mlflow.log_metrics({f"{key}.{m}": row[m] for m in ("difference", "low", "fresh_difference", "fresh_low")
                                    if isinstance(row[m], float) and math.isfinite(row[m])})  # fmt: skip


def _relative(source: str) -> str:
    path = Path(source).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _charged_trend(trend, warehouse, _ci, _num) -> list[str]:
    """The champion's nights when some night had a rent: each night's rent, the promotion's raw test-accuracy
    difference beside its score's, and a break row at every change of rent (its scores are not comparable)."""
    lines = [f"## The nightly champion ({_relative(str(warehouse))})", "",
             "Each night's champion, on that night's own held-out configurations (`champion_history`; "
             "[docs/nightly.md](nightly.md)): mean score (pp): the test accuracy charged at the night's rent, which "
             "decides; the promotion's raw test-accuracy difference beside it. Nights at different rents are not "
             "comparable: a row marks each change.", "",
             "| night | rent | champion at start | at end | promotion: new − old (original order) | fresh orders | "
             "test accuracy: original | test accuracy: fresh | null RMS | pairs | champion | heuristic | best fixed schedule |",
             "|---|---:|---|---|---|---|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    segment = None
    for r in trend.iter_rows(named=True):
        if segment is not None and r["segment"] != segment:
            lines.append(f"| *rent {r['rent'] or 0.0:g} from here* | | | | | | | | | | | | |")
        segment = r["segment"]
        best = f"{r['best_fixed_score']:.2f} ({r['best_fixed']})" if r["best_fixed_score"] is not None else "-"
        lines.append(f"| {r['night']} | {r['rent'] or 0.0:g} | {r['champion']} | {r['champion_after']} | "
                     f"{_ci(r['promoted_difference'], r['promoted_low'], r['promoted_high'])} | "
                     f"{_ci(r['promoted_fresh'], r['promoted_fresh_low'], r['promoted_fresh_high'])} | "
                     f"{_ci(r['promoted_accuracy_difference'], None, None)} | {_ci(r['promoted_fresh_accuracy'], None, None)} | "
                     f"{_num(r['null_rms'])} | {r['pairs']} | {_num(r['champion_score'])} | {_num(r['heuristic_score'])} | {best} |")  # fmt: skip
    return [*lines, ""]


def study_results(warehouse: str | Path):
    """Every recorded study row (a polars frame; empty when none)."""
    import polars as pl

    from ..warehouse import connect_read_only
    from ..warehouse.seeds import has_table

    with connect_read_only(warehouse) as con:
        if not has_table(con, "study_results"):
            return pl.DataFrame()
        return con.sql("SELECT * FROM study_results ORDER BY study, arm, regime = 'all' DESC, regime").pl()


KEPT_NOTE = ("*Kept from the earlier file: no warehouse read this time holds this section (it was recorded on "
             "another machine, or in a warehouse since removed).*")  # fmt: skip


def merge_results(earlier: str, fresh: str) -> str:
    """`tamiyo study results --write FILE --keep`: the fresh Markdown, plus every section (a `## ` heading and what
    follows it) of the earlier file that the fresh one lacks, marked as kept. Study sections stay before the nightly
    champion's, each group in the earlier file's order with new sections after; a section the fresh Markdown has
    replaces the earlier one whole. Running it again changes nothing."""

    def split(text: str) -> tuple[str, list[tuple[str, str]]]:
        head, *parts = ("\n" + text).split("\n## ")
        return head.lstrip("\n"), [(p.split("\n", 1)[0], "## " + p.rstrip("\n") + "\n") for p in parts]

    head, new = split(fresh)
    _, old = split(earlier)
    new_by = dict(new)
    kept = {}
    for heading, body in old:
        if heading not in new_by and heading not in kept:  # a heading the file holds twice (edited by hand): the first
            title, _, rest = body.partition("\n\n")
            kept[heading] = body if KEPT_NOTE in body else f"{title}\n\n{KEPT_NOTE}\n\n{rest}"
    earlier_headings = {h for h, _ in old}
    order = [h for h, _ in old if h in new_by or h in kept] + [h for h, _ in new if h not in earlier_headings]
    order = list(dict.fromkeys(order))  # each section once, where it first stood
    nightly = lambda h: h.startswith("The nightly champion")  # noqa: E731
    merged = [h for h in order if not nightly(h)] + [h for h in order if nightly(h)]
    if any(not nightly(h) for h in merged):
        head = head.replace("No study recorded yet.\n", "")
    return head.rstrip("\n") + "\n\n" + "\n".join(new_by.get(h) or kept[h] for h in merged)


def results_markdown(warehouses: list) -> str:
    """docs/results.md: every recorded study and every night's decision, from the tables of these warehouses (a
    study recorded in several, the first one's rows)."""
    import polars as pl

    from ..evaluation.paired import decided_by
    from ..nightly.report import champion_trend
    from ..nightly.report import ci_text as _ci
    from ..nightly.report import num_text as _num

    frames = [f for f in (study_results(w) for w in warehouses if Path(w).exists()) if not f.is_empty()]
    frame = pl.concat(frames, how="diagonal_relaxed").unique(["study", "arm", "regime"], keep="first", maintain_order=True) if frames else pl.DataFrame()
    lines = ["# Results", "",
             "<!-- Generated by `tamiyo study results --write docs/results.md` from the warehouse tables study_results "
             "and champion_history. Do not edit by hand: change a study file and rerun it. -->", "",
             "Every row is a paired comparison on held-out configurations (seeds registered as evaluation seeds, used "
             "once), scored on the test split that no controller sees: the mean difference arm − reference in pp of "
             "test accuracy with its bootstrap interval, the same on fresh data orders, the null control (the reference "
             "rerun on the fresh orders: RMS of its differences) and the number of pairs. A claim holds when both "
             "intervals are above 0 on enough pairs (the study file's rule, written before its episodes). Each study "
             "reruns with `tamiyo study run studies/<name>.toml` (episodes already on disk are read back).", ""]  # fmt: skip
    if frame.is_empty():
        lines += ["No study recorded yet.", ""]
    for study in frame["study"].unique(maintain_order=True).to_list() if not frame.is_empty() else []:
        rows = frame.filter(frame["study"] == study)
        first = rows.row(0, named=True)
        rent = first.get("rent") or 0.0  # a row recorded before the rent existed: rent 0
        lines += [f"## {study}", "", f"Claim: {first['claim']}", "",
                  f"Held-out: {first['heldout']}. Study file: [`{first['study_file']}`](../{first['study_file']}). "
                  f"Compute: {first['episodes']} episodes, {first['machine']}.", ""]  # fmt: skip
        if rent:
            # A rent-0 study prints as before the rent existed; at rent > 0 the score decides and the raw accuracy
            # difference stands beside it, so a claim bought by a smaller network reads as one.
            lines += [f"Rent {rent:g}: decided by {decided_by(rent)}; the raw test-accuracy difference is shown beside "
                      "it and decides nothing.", "",
                      "| arm − reference | regime | pairs | score: original order | score: fresh orders | test accuracy: "
                      "original order | test accuracy: fresh orders | null RMS | W/T/L | holds |",
                      "|---|---|---:|---|---|---|---|---:|---|---|"]  # fmt: skip
        else:
            lines += ["| arm − reference | regime | pairs | original order | fresh orders | null RMS | W/T/L | holds |",
                      "|---|---|---:|---|---|---:|---|---|"]  # fmt: skip
        for r in rows.iter_rows(named=True):
            accuracy = (f"{_ci(r['accuracy_difference'], r['accuracy_low'], r['accuracy_high'])} | "
                        f"{_ci(r['fresh_accuracy_difference'], r['fresh_accuracy_low'], r['fresh_accuracy_high'])} | ") if rent else ""  # fmt: skip
            lines.append(f"| {r['arm']} − {r['reference']} | {r['regime']} | {r['pairs']} | "
                         f"{_ci(r['difference'], r['low'], r['high'])} | {_ci(r['fresh_difference'], r['fresh_low'], r['fresh_high'])} | "
                         f"{accuracy}{_num(r['null_rms'])} | {r['wins']}/{r['ties']}/{r['losses']} | {'yes' if r['holds'] else 'no'} |")  # fmt: skip
        lines.append("")
    for warehouse in warehouses:
        trend = champion_trend(warehouse) if Path(warehouse).exists() else None
        if trend is None or trend.is_empty():
            continue
        if any(trend["rent"].fill_null(0.0).to_list()):
            lines += _charged_trend(trend, warehouse, _ci, _num)
            continue
        lines += [f"## The nightly champion ({_relative(str(warehouse))})", "",
                  "Each night's champion, on that night's own held-out configurations (`champion_history`; "
                  "[docs/nightly.md](nightly.md)): mean test accuracy (pp).", "",
                  "| night | champion at start | at end | promotion: new − old (original order) | fresh orders | null RMS | pairs | champion | heuristic | best fixed schedule |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in trend.iter_rows(named=True):
            best = f"{r['best_fixed_score']:.2f} ({r['best_fixed']})" if r["best_fixed_score"] is not None else "-"
            lines.append(f"| {r['night']} | {r['champion']} | {r['champion_after']} | "
                         f"{_ci(r['promoted_difference'], r['promoted_low'], r['promoted_high'])} | "
                         f"{_ci(r['promoted_fresh'], r['promoted_fresh_low'], r['promoted_fresh_high'])} | {_num(r['null_rms'])} | "
                         f"{r['pairs']} | {_num(r['champion_score'])} | {_num(r['heuristic_score'])} | {best} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)
