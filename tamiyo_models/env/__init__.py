"""Tamiyo as a Gymnasium environment: the contract every learning phase (offline RL, online RL, curriculum)
builds on. Spaces and conventions: docs/rl-contract.md.

    TamiyoEnv(config | spec=..., feature_set=...)      tamiyo_env.py
    RecordRawRun(env, out_dir)                         recording.py  (every episode as a raw run)
    make_vector_env(n, record_dir=..., **env_kwargs)   vector.py     (AsyncVectorEnv over worker processes)
"""

from ..common.lazy import lazy_exports

_EXPORTS = {"TamiyoEnv": "tamiyo_env", "RecordRawRun": "recording", "make_vector_env": "vector"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
