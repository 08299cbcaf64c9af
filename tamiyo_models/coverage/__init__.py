"""Counterfactual coverage: how many states in the data have more than one action tried from them.

    load_decision_states(warehouse)      decision states with their action and measured outcome (data.py)
    ReferenceBuckets / KMeansAbstraction state abstractions (abstraction.py)
    analyse_coverage(states, labels)     per-cluster table and headline coverage (analysis.py)
    write_coverage_report(...)           Markdown with plots (report.py)
"""

from .abstraction import AbstractionConfig, KMeansAbstraction, ReferenceBuckets, build_abstraction
from .analysis import CoverageConfig, CoverageResult, analyse_coverage
from .data import load_decision_states

__all__ = [
    "AbstractionConfig", "CoverageConfig", "CoverageResult", "KMeansAbstraction", "ReferenceBuckets",
    "analyse_coverage", "build_abstraction", "load_decision_states",
]  # fmt: skip
