"""Studies: a claim, its held-out configurations, its arms and its pre-registered rule in one TOML file under
studies/, run by `tamiyo study run`; results in the warehouse's `study_results` table, from which
docs/results.md is generated (study.py)."""

from ..common.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "StudyConfig": "study", "StudyError": "study", "load_study": "study", "run_study": "study",
    "study_results": "study", "results_markdown": "study",
})  # fmt: skip
