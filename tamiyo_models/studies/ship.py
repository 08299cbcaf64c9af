"""Shipping a study's trained arm: `tamiyo study ship STUDY.toml ARM --name NAME`.

A policy ships (controllers.shipped) with a model card whose numbers must come from a study, never from memory.
So the card is written from what the study recorded: the arm's policy file and its metadata (what it is), the
study's data set (what it learned from), and the arm's rows of the warehouse's `study_results` table (what was
measured, each regime with its interval, fresh orders, null spread and pairs). "Where it stops" lists the
regimes where the arm did not beat the study's reference by the study's rule, and that nothing was measured
outside the study's spec. A card can be extended by hand afterwards (`--force` rewrites it whole).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..controllers.shipped import SHIPPED_DIR, ShippedPolicy, ShippedPolicyError, read_card, read_shipped, valid_name
from ..nightly.report import ci_text as _ci
from ..nightly.report import num_text
from .study import StudyConfig, StudyError, load_study, study_results
from .training import policy_dir, trained_policy


CHECKOUT = SHIPPED_DIR.parents[1]  # the repository root, when the package runs from a checkout


@dataclass(frozen=True)
class ShipConfig:
    study: str  # the study file
    arm: str  # one of its trained arms
    name: str  # the shipped name (shipped:<name>)
    warehouse: str = "warehouse/tamiyo.duckdb"  # where the study recorded its rows
    out_root: str = "var/studies"  # where its policies were trained
    folder: str | None = None  # where shipped policies live (default: the package's)
    force: bool = False  # overwrite a shipped policy of that name


def ship_arm(config: ShipConfig) -> ShippedPolicy:
    """Copy the arm's policy into the shipped folder and write its card from the study's record; StudyError
    naming what is missing (an arm the study does not train, a study not yet run, a name already shipped)."""
    from ..agents.saved import load_policy

    study = load_study(config.study)
    arms = {a.name: a for a in study.trained}
    if config.arm not in arms:
        raise StudyError(f"{study.source}: {config.arm!r} is not a trained arm of the study; its trained arms: "
                         f"{', '.join(arms) or 'none'} (a reference controller needs no shipping)")  # fmt: skip
    if not valid_name(config.name):
        raise StudyError(f"shipped name {config.name!r}: use letters, digits, '-' and '_'")
    root = Path(config.out_root) / study.name
    policy = trained_policy(root, config.arm)
    if policy is None or not policy.exists():
        raise StudyError(f"{study.source}: arm {config.arm!r} has no trained policy under {policy_dir(root, config.arm)} "
                         f"(run `tamiyo study run {study.source}` first)")  # fmt: skip
    rows = _rows(study, config)
    regions = _labelled_regions(policy)
    if config.folder is None and not (CHECKOUT / "pyproject.toml").exists():
        raise StudyError(f"{SHIPPED_DIR} is inside an installed package, not a checkout of the repository: ship into a "
                         "checkout (run from it) or name a folder (--folder)")  # fmt: skip
    folder = Path(config.folder) if config.folder else SHIPPED_DIR
    target, card = folder / f"{config.name}.pt", folder / f"{config.name}.md"
    if (target.exists() or card.exists()) and not config.force:
        raise StudyError(f"{target} is shipped already: choose another name, or --force to replace it and its card")
    _, payload = load_policy(policy)
    behaviour = _behaviour(study, config, root, payload)
    folder.mkdir(parents=True, exist_ok=True)
    # Written beside, checked, then moved into place: a failed write never leaves a card that breaks the folder.
    staged_card, staged_policy = folder / f".{config.name}.md.new", folder / f".{config.name}.pt.new"
    try:
        staged_card.write_text(card_text(study, arms[config.arm], config, payload, rows, regions, behaviour), encoding="utf-8")
        read_card(staged_card, name=config.name)
        shutil.copyfile(policy, staged_policy)
        staged_policy.replace(target)
        staged_card.replace(card)
    except ShippedPolicyError as exc:
        raise StudyError(f"the card written for {config.name} does not read back: {exc}") from None
    finally:
        staged_card.unlink(missing_ok=True)
        staged_policy.unlink(missing_ok=True)
    return read_shipped(target)


def _study_path(study: StudyConfig) -> tuple[str, bool]:
    """The study file as the card cites it: relative to the checkout when it is one of its files (the card then
    links it from tamiyo_models/shipped/), else its absolute path; and whether it is relative."""
    path = Path(study.source).resolve()
    try:
        return path.relative_to(CHECKOUT).as_posix(), True
    except ValueError:
        return str(path), False


def _rows(study: StudyConfig, config: ShipConfig) -> list[dict]:
    frame = study_results(config.warehouse) if Path(config.warehouse).exists() else None
    if frame is None or frame.is_empty():
        raise StudyError(f"{config.warehouse}: no study_results recorded (run `tamiyo study run {study.source}` first)")
    rows = [r for r in frame.iter_rows(named=True) if r["study"] == study.name and r["arm"] == config.arm]
    if not rows:
        raise StudyError(f"{config.warehouse}: no result of arm {config.arm!r} of study {study.name} is recorded "
                         f"(run `tamiyo study run {study.source}` to the end first)")  # fmt: skip
    return rows  # study_results orders them: "all" first, then the regimes


def _behaviour(study: StudyConfig, config: ShipConfig, root: Path, payload: dict) -> list[str] | None:
    """The card's "Where it acts differently from the reference" section, from the study's held-out episodes (behaviour.py); None
    when they are not on this machine (a card shipped from a results-only copy)."""
    from ..controllers import reference_controller
    from ..evaluation.behaviour import behaviour_markdown, read_behaviour, slot_keys

    episodes = root / "episodes"
    if not episodes.is_dir():
        return None
    found = read_behaviour(episodes, config.arm, study.reference, list(payload.get("feature_names") or []))
    try:  # the columns of the slot the reference acts on (a schedule's; slot 0 for the others)
        slot = reference_controller(study.reference).slot
    except ValueError:
        slot = 0
    return behaviour_markdown(found, config.arm, study.reference, keys=slot_keys(slot)) if found.episodes else None


def _labelled_regions(policy: Path) -> list[dict] | None:
    """A vine arm's region evidence (vine-history.json beside its policy file: fork_evidence.Cell rows): the
    (region, action) cells that became labels, i.e. the states where it acts differently from its start; None for
    an arm that is no vine."""
    history = policy.parent / "vine-history.json"
    if not history.exists():
        return None
    return [r for r in json.loads(history.read_text()).get("region_evidence", []) if r.get("label")]


def card_text(study: StudyConfig, arm, config: ShipConfig, payload: dict, rows: list[dict], regions: list[dict] | None = None,
              behaviour: list[str] | None = None) -> str:  # fmt: skip
    """The model card, every number from `rows` (study_results), the policy file's own metadata, for a vine its
    region evidence (`regions`: the labelled cells), and where it acts differently from the study's reference
    (`behaviour`: lines read from the held-out episodes)."""
    from ..episodes.generation import GenerationSpec

    metadata = payload.get("metadata") or {}
    overall = rows[0]
    rent = overall.get("rent") or 0.0
    score = "score (test accuracy charged at rent %g)" % rent if rent else "test accuracy"
    dataset = next((d for d in study.data if d.name == arm.data), None)
    settings = getattr(arm.settings, "algorithm", None) or arm.phase
    start = getattr(arm.settings, "initial_policy", None) or getattr(arm.settings, "parent_policy", None)
    seeds = metadata.get("data_seeds")
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else None
    spec = GenerationSpec.load(study.spec).name  # the name a night's spec is matched by, not a path
    summary = (f"{arm.phase} {settings} from study {study.name}: {overall['arm']} − {overall['reference']} "
               f"{_ci(overall['difference'], overall['low'], overall['high'])} pp, fresh orders "
               f"{_ci(overall['fresh_difference'], overall['fresh_low'], overall['fresh_high'])}, {overall['pairs']} held-out pairs")  # fmt: skip
    study_file, in_checkout = _study_path(study)
    cited = f"[`{study_file}`](../../{study_file})" if in_checkout else f"`{study_file}`"
    lines = ["+++", f"name = {json.dumps(config.name)}", f"spec = {json.dumps(spec)}", f"study = {json.dumps(study_file)}",
             f"summary = {json.dumps(summary, ensure_ascii=False)}", "+++", "", f"# {config.name}", "",
             "*Written by `tamiyo study ship` from the study's record; numbers are not typed by hand.*", "",
             "## What it is", "",
             f"A {arm.phase} policy, algorithm `{settings}`, network `{payload.get('network', {}).get('kind', '?')}` on "
             f"{len(payload.get('feature_names', []))} features ({metadata.get('feature_set') or 'the features named in the file'}), "
             f"{len(payload.get('fine_actions', []))} actions: the arm `{arm.name}` of the study "
             f"{cited}" + (f", started from `{start}`" if start else "") + ". "
             f"Run it as `shipped:{config.name}` (`tamiyo evaluate shipped:{config.name}`, or in any controller list).", "",
             "## What it learned from", ""]  # fmt: skip
    if dataset is not None:
        branching = f", forked with {dataset.branching}" if dataset.branching else ""
        under = f" under `{dataset.controller}`" if dataset.controller else ""
        lines.append(f"The study's data set `{dataset.name}`: {dataset.episodes} episodes of spec `{dataset.spec}`{under}"
                     f"{branching}, batch seed {dataset.batch_seed} (seeds registered as training seeds, never an "
                     f"evaluation seed).")  # fmt: skip
    else:
        lines.append("Its own live episodes (Phase 4), on configurations registered as training seeds before they ran.")
    if n_seeds is not None:
        lines.append(f"The policy file names the {n_seeds} configuration seeds it learned from (metadata `data_seeds`).")
    if regions is not None:
        lines += ["", f"Where it acts differently from its start `{start}`: the regions of the fork evidence where an "
                  "alternative beat the start's action at the false discovery rate and by more than the margin "
                  "(fork_evidence.py)" + (":" if regions else "; none passed, so it is its start refitted on its own choices."), ""]  # fmt: skip
        lines += [f"- {r['region']}: {r['action']} instead, {_ci(r['mean'], r['low'], r['high'])} pp over {r['forks']} forks"
                  for r in regions]  # fmt: skip
    lines += ["", "## Measured", "",
              f"Held-out: {overall['heldout']} (the study's own draw, used once); {score}, test split; paired with "
              f"`{overall['reference']}`; {overall['fresh_orders']} fresh data orders; recorded {str(overall['recorded_at'])[:10]} "
              f"on {overall['machine']}. Claim: {overall['claim']}. Verdict: {overall['verdict']}.", "",
              "| regime | pairs | original order | fresh orders | null RMS | W/T/L | holds |", "|---|---:|---|---|---:|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['regime']} | {r['pairs']} | {_ci(r['difference'], r['low'], r['high'])} | "
                     f"{_ci(r['fresh_difference'], r['fresh_low'], r['fresh_high'])} | {num_text(r['null_rms'])} | "
                     f"{r['wins']}/{r['ties']}/{r['losses']} | {'yes' if r['holds'] else 'no'} |")  # fmt: skip
    if overall.get("study_sha256") and overall["study_sha256"] != study.sha256:
        lines += ["", f"(The rows were recorded with an earlier version of the study file, sha256 {overall['study_sha256'][:12]}.)"]
    if behaviour:
        lines += ["", *behaviour]
    short = [r["regime"] for r in rows if r["regime"] != "all" and not r["holds"]]
    lines += ["", "## Where it stops", "",
              f"- Measured on spec `{spec}` only{f' (`{study.spec}`)' if study.spec != spec else ''}: another dataset, host, rent or number of seed slots is untested.",
              f"- Against `{overall['reference']}` over every regime: {'it holds by the study rule' if overall['holds'] else 'the study rule does not hold'}."]  # fmt: skip
    if short:
        lines.append(f"- The study rule does not hold in: {', '.join(short)} (per regime the pairs are few).")
    return "\n".join(lines) + "\n"
