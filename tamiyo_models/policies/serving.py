"""Serving a saved policy as a controller: the `file:PATH` policy scheme.

Importing this module registers the loader; `tamiyo_models.controllers.load_policy` imports it lazily, so a
fresh worker process resolves `ControllerConfig(kind="policy", policy="file:/abs/model.pt")` by itself.
The controller passes the features named in the file, computed by `observation_features` — the function
ingestion used for the training rows — and masks illegal actions; the network sees raw features and
normalises them itself.
"""

from __future__ import annotations

from pathlib import Path

from ..agents.saved import load_policy, policy_file_digest
from ..controllers import LearnedPolicyController, register_policy_loader


def policy_controller(path: str | Path, *, greedy: bool = True, name: str | None = None) -> LearnedPolicyController:
    """Any saved policy (any phase, any algorithm) as a controller: its unmasked scores in, the controller masks."""
    import torch

    model, payload = load_policy(path)

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
        metadata={"policy_file": str(Path(path).resolve()), "format": payload["format"], "algorithm": payload.get("algorithm"),
                  "phase": payload.get("phase"), **metadata},
    )


def _load(path: str) -> LearnedPolicyController:
    return policy_controller(path)


register_policy_loader("file", _load)
