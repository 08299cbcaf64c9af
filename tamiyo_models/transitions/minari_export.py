"""Export a TransitionDataset as a Minari dataset (Farama's offline-RL format), and load it back.

One Minari episode per run: N+1 observations (the last is s' of the last transition), N actions, rewards,
terminations and truncations; per-step infos (N+1 rows, the last one padding; scalars as [N+1, 1] columns) carry what Minari's standard
does not: the legal actions of each state, the behaviour distribution mu, the propensity of the action
taken, whether the draw was stochastic and whether the step was a forced branch intervention. Each episode's
metadata holds its run id, family, behaviour and regime; the dataset's holds the feature names and the
feature schema version. The warehouse stays the source of truth: this is a derived copy, digested.

Minari keeps datasets under MINARI_DATASETS_PATH; `root` sets it for the call.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .dataset import TransitionDataset


@contextlib.contextmanager
def _datasets_path(root: str | Path):
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _spaces(dataset: TransitionDataset):
    import gymnasium as gym

    from ..world.features import feature_bounds

    low, high = zip(*(feature_bounds(n) for n in dataset.feature_names))
    observation_space = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)
    return observation_space, gym.spaces.Discrete(dataset.legal.shape[1])


def to_minari(dataset: TransitionDataset, dataset_id: str, root: str | Path, *, description: str = "",
              overwrite: bool = False) -> Path:  # fmt: skip
    """Write `dataset` as Minari dataset `dataset_id` (e.g. "tamiyo/arena-v0") under `root`; returns its folder.
    An existing dataset of that id is an error unless `overwrite` (Minari never overwrites one by itself)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    observation_space, action_space = _spaces(dataset)
    buffers = []
    for index, rows in enumerate(dataset.episode_slices()):
        obs = np.concatenate([dataset.observations[rows], dataset.next_observations[rows][-1:]])
        def pad(a: np.ndarray) -> np.ndarray:
            # Infos have one row per observation (N+1). Minari's arrow storage cannot read back 1-D infos (it
            # writes an empty shape), so per-step scalars are stored as [N+1, 1].
            a = np.concatenate([a, np.zeros_like(a[-1:])])
            return a[:, None] if a.ndim == 1 else a

        legal = np.concatenate([dataset.legal[rows], dataset.next_legal[rows][-1:]])
        infos = {
            "action_mask": legal,
            "behaviour_probabilities": pad(dataset.behaviour_probabilities[rows]),
            "propensity": pad(np.nan_to_num(dataset.propensity[rows], nan=-1.0)),  # -1: forced (no draw)
            "stochastic": pad(dataset.stochastic[rows]),
            "forced": pad(dataset.forced[rows]),
            "step": pad(dataset.steps[rows]),
        }
        first = rows.start
        buffers.append(EpisodeBuffer(
            id=index, observations=obs, actions=dataset.actions[rows], rewards=list(dataset.rewards[rows].astype(float)),
            terminations=list(dataset.terminated[rows]), truncations=list(dataset.truncated[rows]), infos=infos,
            options={"run_id": str(dataset.run_ids[first]), "family_id": str(dataset.family_ids[first]),
                     "behaviour": str(dataset.behaviours[first]), "regime": str(dataset.regimes[first])},
        ))  # fmt: skip
    from ..common.version import code_version

    with _datasets_path(root), warnings.catch_warnings():
        # Minari asks for a registered environment and an author e-mail; neither exists for a warehouse export.
        warnings.filterwarnings("ignore", category=UserWarning, module="minari")
        if overwrite and dataset_id in minari.list_local_datasets():
            minari.delete_dataset(dataset_id)
        version = code_version()
        created = minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=observation_space, action_space=action_space,
            algorithm_name="tamiyo behaviour controllers (see per-episode behaviour)", author="tamiyo",
            description=description or json.dumps({"feature_names": list(dataset.feature_names), **dataset.metadata,
                                                   "digest": dataset.digest()}),
            code_permalink=f"tamiyo {version.get('package')} source {version.get('source_sha256', '')[:12]} "
                           f"commit {version.get('git_commit') or 'unknown'}",
            data_format="arrow",
        )  # fmt: skip
        created.storage.update_metadata({"feature_names": json.dumps(list(dataset.feature_names)),
                                         "feature_schema_version": dataset.metadata.get("feature_schema_version", ""),
                                         "tamiyo_digest": dataset.digest()})  # fmt: skip
        return Path(created.storage.data_path).parent


def load_minari(dataset_id: str, root: str | Path):
    """The Minari dataset written by `to_minari` (a `minari.MinariDataset`)."""
    import minari

    with _datasets_path(root):
        return minari.load_dataset(dataset_id)
