"""Phase 5: a curriculum of tasks, and transfer to tasks never trained on (docs/curriculum.md).

    CurriculumSpec.load(name or file)           spec.py      stages (generation spec, held-out set, promotion
                                                             rule) and transfer tasks, as TOML
    pick_task(tasks, history, strategy)         auto.py      the automatic curriculum's next task (weakest
                                                             margin, or most learning progress)
    run_curriculum(spec, CurriculumRunConfig)   run.py       rounds of Phase 4 online RL, stage by stage
    zero_shot / fine_tune_efficiency            transfer.py  a policy on a task it never saw
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "CurriculumSpec": "spec", "Stage": "spec", "PromotionRule": "spec", "CurriculumError": "spec",
    "Measurement": "auto", "pick_task": "auto",
    "CurriculumRunConfig": "run", "CurriculumResult": "run", "run_curriculum": "run",
    "TransferResult": "transfer", "dataset_task": "transfer", "zero_shot": "transfer",
    "fine_tune_efficiency": "transfer", "write_transfer_report": "transfer",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
