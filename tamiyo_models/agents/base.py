"""One interface for every phase's policy: features in, one score per fine action out, illegal actions masked.

`PolicyModule` is what Phase 1's imitation network, Phase 3's Q-networks and actors and Phase 4's actors all
are. A subclass says how it scores (`raw_logits`); the base class masks (an illegal action gets -inf: no
probability, never in a max or a log-sum-exp), samples or takes the argmax, and gives log-probabilities.
Value-based and actor-critic policies add `q_values` / `value`. A module also says how to rebuild itself
(`spec()`), so one saved format (agents/saved.py) holds any of them.

`FeatureEncoder`: the normaliser fitted on the training split and the one-hot blocks of categorical
features, inside the module as buffers, so a saved policy needs nothing else to act and serving cannot apply
other statistics than training did.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..world.lifecycle import Stage

NEG_INF = float("-inf")
NORMALISED_CLIP = 10.0  # a live state far outside the training range must not blow up an MLP
# Observation features that also enter one-hot: name -> number of categories. The stage is a code, not a
# quantity; the epochs a seed has spent in its stage is a small count whose meaning changes at fixed values
# (gates and rules fire after 1, 3 or 5 epochs), so each count gets its own input and counts past the last
# bucket share it.
CATEGORICAL_FEATURES: dict[str, int] = {"seed_stage": len(Stage), "seed_epochs_in_stage": 12}


def categorical_columns(feature_names, one_hot: bool = True) -> tuple[tuple[int, int], ...]:
    """(column index, categories) of the categorical features present (none when one-hot is off)."""
    if not one_hot:
        return ()
    return tuple((i, CATEGORICAL_FEATURES[name]) for i, name in enumerate(feature_names) if name in CATEGORICAL_FEATURES)


class FeatureNormaliser(nn.Module):
    """(x - mean) / std per feature, clipped; statistics are buffers, so they travel in the state dict."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: np.ndarray) -> "FeatureNormaliser":
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        # A feature constant on the training split (e.g. telemetry of a task without it) keeps its scale.
        std[std < 1e-8] = 1.0
        self.mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-NORMALISED_CLIP, NORMALISED_CLIP)


class FeatureEncoder(nn.Module):
    """Normalised features, then a one-hot block per categorical feature (values past the ends share the
    first or last category). `width` is what the layers after it see."""

    def __init__(self, n_features: int, categorical: tuple[tuple[int, int], ...] = ()):
        super().__init__()
        self.n_features = n_features
        self.categorical = tuple((int(i), int(n)) for i, n in categorical)
        self.normaliser = FeatureNormaliser(n_features)
        self.width = n_features + sum(n for _, n in self.categorical)

    def fit(self, x: np.ndarray) -> "FeatureEncoder":
        self.normaliser.fit(x)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return with_one_hot(self.normaliser(x), x, self.categorical)


def with_one_hot(z: torch.Tensor, x: torch.Tensor, categorical: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Normalised features `z`, then one one-hot block per categorical column of the raw features `x`."""
    if not categorical:
        return z
    blocks = [z]
    for column, n in categorical:
        code = x[:, column].round().long().clamp(0, n - 1)
        blocks.append(nn.functional.one_hot(code, n).to(z.dtype))
    return torch.cat(blocks, dim=-1)


def mlp(width: int, hidden: tuple[int, ...], out: int, *, layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Illegal actions to -inf. A row with no legal action is a caller's bug: it would give NaN everywhere."""
    if mask is None:
        return logits
    if mask.shape[-1] != logits.shape[-1]:
        # Said here rather than as a broadcasting error: a policy of one action space given another's masks.
        raise ValueError(f"the policy scores {logits.shape[-1]} actions but the mask covers {mask.shape[-1]} "
                         "(a policy acts on the action space it was trained on: world.actions)")  # fmt: skip
    mask = mask.to(dtype=torch.bool, device=logits.device)
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("a state with no legal action: every row of the mask needs at least one True")
    return logits.masked_fill(~mask, float("-inf"))


def finite_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi, the actions pi can take): log-probabilities with every -inf logit (illegal, or unsupported by a
    BCQ actor) set to 0 *before* any product, so no NaN reaches a gradient even through a where that drops it."""
    possible = torch.isfinite(logits)
    return torch.where(possible, torch.log_softmax(logits, dim=-1), torch.zeros(())), possible


class PolicyModule(nn.Module):
    """The policy interface of every phase. Subclasses implement `raw_logits` (and optionally `value`,
    `q_values`) and `spec`; `kind` names them in the saved format's registry."""

    kind: str = "policy"

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict:
        """What rebuilds this module before its state dict is loaded (JSON-able)."""
        raise NotImplementedError

    # ----- shared behaviour ---------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Unmasked scores (what MLflow's pyfunc flavour serves)."""
        return self.raw_logits(obs)

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[N, A] scores in the flat action order of the policy's space (world.actions), -inf on illegal actions."""
        return mask_logits(self.raw_logits(obs), mask)

    def probabilities(self, obs: torch.Tensor, mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        return torch.softmax(self.logits(obs, mask) / temperature, dim=-1)

    def act(self, obs: torch.Tensor, mask: torch.Tensor | None = None, *, greedy: bool = False,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(actions [N], the probability each was drawn with [N]): greedy actions are drawn with probability 1."""
        probs = self.probabilities(obs, mask)
        if greedy:
            actions = probs.argmax(dim=-1)
            return actions, torch.ones_like(actions, dtype=probs.dtype)
        actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return actions, probs.gather(-1, actions[:, None]).squeeze(-1)

    def log_prob(self, obs: torch.Tensor, mask: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits(obs, mask), dim=-1).gather(-1, actions.long()[:, None]).squeeze(-1)

    def entropy(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logp, possible = finite_log_probs(self.logits(obs, mask))
        return -(logp.exp() * logp * possible).sum(dim=-1)

    @property
    def has_value(self) -> bool:
        return type(self).value is not PolicyModule.value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no state-value head")

    def q_values(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no action-value head")
