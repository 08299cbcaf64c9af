"""Policies by name: `load_policy("scheme:PATH")`. The built-in scheme `file:PATH` serves any saved policy file
(any phase, any algorithm) as a controller, `shipped:NAME` a policy shipped with the package (controllers.shipped);
other formats can `register_policy_loader(scheme, fn)`.

Nothing needs registering first, so a fresh worker process resolves
`ControllerConfig(kind="policy", policy="file:/abs/model.pt")` by itself. The controller passes the features named in the file, computed by `observation_features` — the function
ingestion used for the training rows — and masks illegal actions; the network sees raw features and
normalises them itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .learned import LearnedPolicyController

_LOADERS: dict[str, Callable[[str], LearnedPolicyController]] = {}


def policy_controller(path: str | Path, *, greedy: bool = True, name: str | None = None) -> LearnedPolicyController:
    """Any saved policy (any phase, any algorithm) as a controller: its unmasked scores in, the controller masks."""
    import torch  # here, not at the top: building any other controller must not pay for torch

    from ..agents.saved import load_policy as load_policy_file
    from ..agents.saved import policy_file_digest

    model, payload = load_policy_file(path)

    def score(features):
        with torch.no_grad():
            return model.raw_logits(torch.tensor([list(features)], dtype=torch.float32))[0].tolist()

    def masked_score(features, legal):
        # The module's own masked logits, exactly as it acted in training and off-policy evaluation.
        with torch.no_grad():
            x = torch.tensor([list(features)], dtype=torch.float32)
            return model.logits(x, torch.tensor([list(legal)], dtype=torch.bool))[0].tolist()

    metadata = {k: v for k, v in payload["metadata"].items() if isinstance(v, (str, int, float, bool))}
    # Recorded in every episode's header: an evaluation that finds an episode of this run id on disk reuses it
    # only if it was played by these very weights (a policy retrained in place keeps its path, not its digest).
    metadata["policy_sha256"] = policy_file_digest(path)
    return LearnedPolicyController(
        score,
        payload["feature_names"],
        name=name or f"policy:{Path(path).name}",
        greedy=greedy,
        masked_score=masked_score,
        n_actions=len(payload["fine_actions"]),
        metadata={"policy_file": str(Path(path).resolve()), "format": payload["format"], "algorithm": payload.get("algorithm"),
                  "phase": payload.get("phase"), **metadata},
    )


def register_policy_loader(scheme: str, loader: Callable[[str], LearnedPolicyController]) -> None:
    _LOADERS[scheme] = loader


def load_policy(spec: str) -> LearnedPolicyController:
    scheme, _, path = spec.partition(":")
    if scheme == "file" and scheme not in _LOADERS:
        return policy_controller(path)
    if scheme == "shipped" and scheme not in _LOADERS:
        from .shipped import shipped_policy

        shipped = shipped_policy(path)
        return policy_controller(shipped.path, name=shipped.label)
    if scheme not in _LOADERS:
        known = ", ".join(sorted({"file", "shipped", *_LOADERS}))
        raise ValueError(f"no policy loader for {scheme!r} (in {spec!r}); registered loaders: {known}")
    return _LOADERS[scheme](path)
