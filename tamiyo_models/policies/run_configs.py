"""Which run config each phase's training reads: what `tamiyo train PHASE --config FILE` and a study's [[train]]
settings are read into (field by field, by world.configs.from_mapping)."""

from __future__ import annotations


def run_config_class(phase: str) -> type:
    if phase == "phase3":
        from ..offline_rl.workflow import OfflineRunConfig

        return OfflineRunConfig
    if phase == "phase4":
        from ..online_rl.workflow import OnlineRunConfig

        return OnlineRunConfig
    if phase in ("phase1", "phase2"):
        from .workflow import PolicyRunConfig

        return PolicyRunConfig
    raise ValueError(f"unknown phase {phase!r}; known: phase1, phase2, phase3, phase4")
