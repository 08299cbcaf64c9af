"""The roadmap's phases as data: which registered model holds each phase's policies, how its candidates are
aliased, and what it is called. Evaluation, tracking and the Dagster assets read phases from here, so a new
phase (or a new algorithm of one) plugs in by registering instead of by editing every consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

CANDIDATE, CHAMPION = "candidate", "champion"


@dataclass(frozen=True)
class Phase:
    key: str  # "phase1", ...
    registered_name: str  # the MLflow registered model holding its versions
    title: str
    variants: tuple[str, ...] = ()  # algorithms or weightings with their own `candidate-<variant>` alias

    def candidate_alias(self, variant: str = "") -> str:
        return f"{CANDIDATE}-{variant.lower()}" if variant else CANDIDATE


_PHASES: dict[str, Phase] = {}


def register_phase(phase: Phase) -> Phase:
    existing = _PHASES.get(phase.key)
    if existing is not None and existing != phase:
        raise ValueError(f"phase {phase.key!r} is already registered as {existing}")
    _PHASES[phase.key] = phase
    return phase


def phase(key: str) -> Phase:
    if key not in _PHASES:
        raise ValueError(f"unknown phase {key!r}; registered: {', '.join(_PHASES)}")
    return _PHASES[key]


def all_phases() -> list[Phase]:
    return list(_PHASES.values())


def phase_of_model(registered_name: str) -> Phase:
    """The phase whose registered model this is (its champion and evaluations live there)."""
    for p in _PHASES.values():
        if p.registered_name == registered_name:
            return p
    raise ValueError(f"{registered_name!r} is not a registered policy model (known: "
                     f"{', '.join(p.registered_name for p in _PHASES.values())})")  # fmt: skip


for _phase in (
    Phase("phase1", "tamiyo-phase1-imitation", "Phase 1: imitation of the heuristic"),
    Phase("phase2", "tamiyo-phase2-weighted", "Phase 2: reward-weighted imitation", ("A", "B", "C")),
    Phase("phase3", "tamiyo-phase3-offline", "Phase 3: offline RL", ("cql", "iql", "bcq")),
    Phase("phase4", "tamiyo-phase4-online", "Phase 4: online RL", ("reinforce", "a2c", "ppo", "vine")),
    Phase("phase5", "tamiyo-phase5-curriculum", "Phase 5: curriculum"),
):
    register_phase(_phase)
