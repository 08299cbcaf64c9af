"""The policy network: observation features in, one score per fine action out.

Architecture (the reference's Phase 1 network): per-feature normalisation, then an MLP 256 -> 128 -> 64 with
BatchNorm, ReLU and dropout 0.3, and two heads:

- a **coarse head** over WAIT / GERMINATE / ADVANCE / CULL (the decision), and
- a **blueprint head** over the blueprints, trained only on GERMINATE decisions (which seed to graft).

Why two heads rather than one 8-way fine head: the heuristic picks blueprints round-robin, a function of how
many seeds it created before, which the base 27 features do not show. An 8-way head would split GERMINATE
into five rare classes that are unpredictable from the observation, and the balanced accuracy the model is
selected on would measure that noise rather than the decision. The coarse label is also what the reference
reports (98.2-98.9%), so the numbers compare. The controller still needs 8 fine scores; they are the joint
log-probabilities log p(coarse) + log p(blueprint | GERMINATE), so the fine softmax equals the product of the
two heads' distributions, and a later phase can learn which blueprint pays off without touching the decision.

The normaliser lives inside the module as buffers (fitted on the training split only): a saved policy needs
nothing else to act, and serving cannot apply different statistics than training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..world.actions import COARSE_ACTIONS, FINE_ACTIONS
from ..world.blueprints import BLUEPRINTS
from .base import CATEGORICAL_FEATURES, NORMALISED_CLIP, FeatureNormaliser, PolicyModule, with_one_hot  # noqa: F401 (re-exported)
from .base import categorical_columns as _categorical_columns


@dataclass(frozen=True)
class NetworkConfig:
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.3
    batch_norm: bool = True
    # Categorical features (seed_stage) also enter one-hot: the heuristic's rules differ per stage, and an
    # ordinal stage code makes the MLP carve "== BLENDING" out of a number line (docs/policies.md).
    one_hot_categorical: bool = True

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        return cls(hidden=tuple(d["hidden"]), dropout=float(d["dropout"]), batch_norm=bool(d["batch_norm"]),
                   one_hot_categorical=bool(d.get("one_hot_categorical", False)))  # files before it: off  # fmt: skip


def categorical_columns(feature_names, config: NetworkConfig) -> tuple[tuple[int, int], ...]:
    """(column index, categories) of the categorical features present, when the config one-hot encodes them."""
    return _categorical_columns(feature_names, config.one_hot_categorical)


class PolicyNetwork(PolicyModule):
    """Phase 1's imitation network as a PolicyModule (kind "imitation-two-head"): its fine log-scores are its
    logits, so it acts, samples and is fine-tuned through the same interface as every later phase's policy."""

    kind = "imitation-two-head"

    def __init__(self, n_features: int, config: NetworkConfig = NetworkConfig(), categorical: tuple[tuple[int, int], ...] = ()):
        super().__init__()
        self.n_features, self.config = n_features, config
        self.categorical = tuple((int(i), int(n)) for i, n in categorical)
        self.normaliser = FeatureNormaliser(n_features)
        layers: list[nn.Module] = []
        width = n_features + sum(n for _, n in self.categorical)
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden)]
            if config.batch_norm:
                layers += [nn.BatchNorm1d(hidden)]
            layers += [nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.coarse_head = nn.Linear(width, len(COARSE_ACTIONS))
        self.blueprint_head = nn.Linear(width, len(BLUEPRINTS))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse logits [N, 4], blueprint logits [N, 5]) for raw (unnormalised) features."""
        return self.heads_from_encoded(self.encode(x))

    def heads_from_encoded(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads on already encoded features: training encodes its whole split once, as the normaliser and
        the one-hot blocks do not change while the weights learn."""
        h = self.trunk(z)
        return self.coarse_head(h), self.blueprint_head(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features, then a one-hot block per categorical feature (values past the ends share the
        first or last category)."""
        return with_one_hot(self.normaliser(x), x, self.categorical)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fine log-scores [N, 8] in FINE_ACTIONS order (what the controller and MLflow's pyfunc see)."""
        return fine_log_scores(*self.heads(x))

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)

    def spec(self) -> dict:
        return {"n_features": self.n_features, "network": self.config.to_dict(), "categorical": [list(c) for c in self.categorical]}

    @classmethod
    def from_spec(cls, spec: dict) -> "PolicyNetwork":
        return cls(spec["n_features"], NetworkConfig.from_dict(spec["network"]), tuple(tuple(c) for c in spec.get("categorical", [])))


def fine_log_scores(coarse_logits: torch.Tensor, blueprint_logits: torch.Tensor) -> torch.Tensor:
    coarse = torch.log_softmax(coarse_logits, dim=-1)
    blueprint = torch.log_softmax(blueprint_logits, dim=-1)
    germinate = coarse[:, COARSE_ACTIONS.index("GERMINATE")].unsqueeze(-1) + blueprint
    by_name = {"WAIT": coarse[:, 0:1], "ADVANCE": coarse[:, 2:3], "CULL": coarse[:, 3:4]}
    columns = []
    for name in FINE_ACTIONS:
        if name.startswith("GERMINATE_"):
            i = BLUEPRINTS.index(name.removeprefix("GERMINATE_"))
            columns.append(germinate[:, i : i + 1])
        else:
            columns.append(by_name[name])
    return torch.cat(columns, dim=-1)
