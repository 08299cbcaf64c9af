"""The transition dataset every learning phase reads (docs/rl-contract.md).

    load_transitions(warehouse, feature_set)       dataset.py   (numpy arrays from the rl_transitions view)
    TransitionDataset.save_npz / load_npz          dataset.py
    to_minari(dataset, id, root) / load_minari     minari_export.py
    to_d3rlpy(dataset)                             d3rlpy_export.py
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "TransitionDataset": "dataset",
    "load_transitions": "dataset",
    "to_minari": "minari_export",
    "load_minari": "minari_export",
    "to_d3rlpy": "d3rlpy_export",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
