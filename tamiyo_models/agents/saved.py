"""One saved format for every phase's policy: weights + encoder statistics (inside the state dict) + feature
names + action space + what network to rebuild + algorithm + phase + parent, loaded with
`torch.load(weights_only=True)` whatever the algorithm, so opening a policy file runs no pickled code.

    {"format": "tamiyo-policy/2", "network": {"kind": ..., "spec": {...}}, "state_dict": {...},
     "feature_names": [...], "fine_actions": [...], "blueprints": [...], "feature_schema_version": ...,
     "algorithm": "imitation" | "cql" | ..., "phase": "phase1" | ..., "parent": "file or model ref" | None,
     "metadata": {...}}

`fine_actions` names the policy's action space, in index order: the 8 single-slot actions, or the factored
space of n seed slots (`world.actions.action_names(n)`, 1 + 7n names), which is what the network scores. The
key and the format keep their names so that every file written before the factored action (8 names) loads
unchanged; a controller refuses to act on a host whose space has another size.

Network kinds are a registry (`register_network`); the built-in ones are found by module, so a worker
process resolves any policy file without being told anything first. Files of the first format
("tamiyo-policy/1", Phase 1 and 2 before the RL phases) load as the imitation network they always were.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..world.actions import COARSE_ACTIONS, action_names, slots_of_space
from ..world.blueprints import BLUEPRINTS
from ..world.features import FEATURE_SCHEMA_VERSION

FORMAT = "tamiyo-policy/2"
LEGACY_FORMAT = "tamiyo-policy/1"
_NETWORKS: dict[str, type] = {}
# kind -> module that defines (and registers) it; imported on first use.
_BUILTIN_NETWORK_MODULES = {
    "imitation-two-head": "tamiyo_models.agents.imitation_network",
    "q-network": "tamiyo_models.agents.networks",
    "mlp-actor": "tamiyo_models.agents.networks",
    "actor-critic": "tamiyo_models.agents.networks",
    "bcq": "tamiyo_models.agents.networks",
    "ensemble": "tamiyo_models.agents.networks",
}


def register_network(cls: type) -> type:
    """Register a PolicyModule class under its `kind` (it must implement `spec()` and `from_spec`)."""
    _NETWORKS[cls.kind] = cls
    return cls


def network_class(kind: str) -> type:
    if kind not in _NETWORKS and kind in _BUILTIN_NETWORK_MODULES:
        module = importlib.import_module(_BUILTIN_NETWORK_MODULES[kind])
        for value in vars(module).values():
            if isinstance(value, type) and getattr(value, "kind", None) == kind:
                register_network(value)
    if kind not in _NETWORKS:
        raise ValueError(f"unknown policy network kind {kind!r}; known: {', '.join(sorted(set(_NETWORKS) | set(_BUILTIN_NETWORK_MODULES)))}")
    return _NETWORKS[kind]


def build_network(kind: str, spec: dict):
    cls = network_class(kind)
    # A network that wraps another (ActorCritic) is handed this function to rebuild it, so no network module
    # imports the registry that imports it.
    return cls.from_spec(spec, build_network) if getattr(cls, "wraps_networks", False) else cls.from_spec(spec)


def output_width(module, n_features: int) -> int:
    """How many actions a policy module scores, from one forward pass on zeros: generic over every registered
    kind. It runs in eval mode (a batch norm in training mode would move its statistics, or refuse a batch of
    one), every submodule's own mode is put back, and the caller's random stream is left as it was."""
    import torch

    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            return int(module.raw_logits(torch.zeros(1, n_features)).shape[-1])
    finally:
        for m, mode in modes:
            m.training = mode


def policy_action_space(width: int, where: str = "a policy") -> tuple[str, ...]:
    """The action names of a policy scoring `width` actions (an error naming `where` when no space has that size)."""
    try:
        return action_names(slots_of_space(width))
    except ValueError as error:
        raise ValueError(f"{where} scores {width} actions, which is not an action space ({error})") from None


def save_policy(module, feature_names, path: str | Path, *, algorithm: str, phase: str, parent: str | None = None,
                metadata: dict | None = None, actions=None) -> Path:  # fmt: skip
    """Write any PolicyModule as one self-contained file (atomically: a reader never sees half a policy).
    `actions`: the names of its action space (a learner passes its dataset's); by default the space of the
    module's output width. A module whose width differs from `actions` is refused."""
    import torch

    width = output_width(module, len(feature_names))
    space = policy_action_space(width, f"the module to save as {path}")
    if actions is not None and tuple(actions) != space:
        raise ValueError(f"{path}: the module scores {width} actions ({space[-1]} last), not the {len(actions)} "
                         f"given as its action space")  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": list(feature_names),
        "fine_actions": list(space),
        "coarse_actions": list(COARSE_ACTIONS),
        "blueprints": list(BLUEPRINTS),
        "network": {"kind": module.kind, "spec": module.spec()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "algorithm": algorithm,
        "phase": phase,
        "parent": parent,
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def policy_file_digest(path: str | Path) -> str:
    """Names the weights a policy file holds (the file's bytes), whatever its path."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_policy(path: str | Path):
    """(the PolicyModule in eval mode, the payload without its weights), for either format."""
    import torch

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise ValueError(f"{path}: not a tamiyo policy file (format {fmt!r}; expected {FORMAT} or {LEGACY_FORMAT})")
    saved = tuple(payload["fine_actions"])
    if saved != policy_action_space(len(saved), str(path)):
        raise ValueError(f"{path}: saved fine_actions {list(saved)} differ from this code's space of "
                         f"{len(saved)} actions {list(policy_action_space(len(saved), str(path)))}")  # fmt: skip
    if tuple(payload["blueprints"]) != tuple(BLUEPRINTS):
        raise ValueError(f"{path}: saved blueprints {payload['blueprints']} differ from this code's {list(BLUEPRINTS)}")
    if fmt == LEGACY_FORMAT:
        # The imitation network of Phases 1 and 2, as it was saved before the generic format.
        spec = {"n_features": len(payload["feature_names"]), "network": payload["network"],
                "categorical": payload.get("categorical", [])}  # fmt: skip
        payload = {**payload, "network": {"kind": "imitation-two-head", "spec": spec},
                   "algorithm": payload["metadata"].get("algorithm", "imitation"),
                   "phase": payload["metadata"].get("phase"), "parent": payload["metadata"].get("parent_policy")}  # fmt: skip
    module = build_network(payload["network"]["kind"], payload["network"]["spec"])
    module.load_state_dict(payload["state_dict"])
    module.eval()
    width = output_width(module, len(payload["feature_names"]))
    if width != len(saved):
        raise ValueError(f"{path}: the network scores {width} actions but the file names {len(saved)}")
    return module, {k: v for k, v in payload.items() if k != "state_dict"}
