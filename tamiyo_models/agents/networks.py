"""Networks of the RL phases, each a PolicyModule that the generic saved format can rebuild:

- `QNetwork` ("q-network"): one Q-value per fine action (discrete CQL, IQL's critics, FQE); acting greedily
  takes the best legal Q, sampling uses softmax(Q).
- `MLPActor` ("mlp-actor"): a categorical policy over fine actions (IQL's advantage-weighted actor, PPO).
- `ValueNetwork`: a state-value head (IQL's V, the critic of actor-critic methods).
- `BCQPolicy` ("bcq"): a Q-network acting only among the actions a behaviour model finds plausible
  (offline_rl/bcq.py trains it).
- `ActorCritic` ("actor-critic"): any registered actor (Phase 1's network included, so online RL can start
  from it) with a value network beside it.
- `Ensemble` ("ensemble"): several policies of one kind trained alike from different seeds, acting on their
  mean scores (offline_rl/workflow.py trains it when `ensemble` > 1).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import NEG_INF, FeatureEncoder, PolicyModule, mask_logits, mlp


class QNetwork(PolicyModule):
    kind = "q-network"

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (256, 256), n_actions: int = 8,
                 categorical: tuple[tuple[int, int], ...] = (), layer_norm: bool = True):  # fmt: skip
        super().__init__()
        self.hidden, self.n_actions, self.layer_norm = tuple(hidden), n_actions, layer_norm
        self.encoder = FeatureEncoder(n_features, categorical)
        self.net = mlp(self.encoder.width, self.hidden, n_actions, layer_norm=layer_norm)

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(obs))

    def from_encoded(self, z: torch.Tensor) -> torch.Tensor:
        """The outputs for features already through the encoder: learners encode their whole data set once,
        as the encoder's statistics do not move while the weights learn."""
        return self.net(z)

    def q_values(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mask_logits(self.raw_logits(obs), mask)

    def spec(self) -> dict:
        return {"n_features": self.encoder.n_features, "hidden": list(self.hidden), "n_actions": self.n_actions,
                "categorical": [list(c) for c in self.encoder.categorical], "layer_norm": self.layer_norm}  # fmt: skip

    @classmethod
    def from_spec(cls, spec: dict) -> "QNetwork":
        return cls(spec["n_features"], tuple(spec["hidden"]), spec["n_actions"],
                   tuple(tuple(c) for c in spec["categorical"]), spec.get("layer_norm", True))  # fmt: skip


class MLPActor(QNetwork):
    """The same body as a Q-network, read as logits of a categorical policy."""

    kind = "mlp-actor"

    def q_values(self, obs, mask=None):
        raise NotImplementedError("an actor's outputs are logits, not action values")


class ValueNetwork(nn.Module):
    def __init__(self, n_features: int, hidden: tuple[int, ...] = (256, 256), categorical: tuple[tuple[int, int], ...] = (),
                 layer_norm: bool = True):  # fmt: skip
        super().__init__()
        self.hidden, self.layer_norm = tuple(hidden), layer_norm
        self.encoder = FeatureEncoder(n_features, categorical)
        self.net = mlp(self.encoder.width, self.hidden, 1, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(obs)).squeeze(-1)

    def from_encoded(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def spec(self) -> dict:
        return {"n_features": self.encoder.n_features, "hidden": list(self.hidden),
                "categorical": [list(c) for c in self.encoder.categorical], "layer_norm": self.layer_norm}  # fmt: skip

    @classmethod
    def from_spec(cls, spec: dict) -> "ValueNetwork":
        return cls(spec["n_features"], tuple(spec["hidden"]), tuple(tuple(c) for c in spec["categorical"]),
                   spec.get("layer_norm", True))  # fmt: skip


class ActorCritic(PolicyModule):
    kind = "actor-critic"
    wraps_networks = True  # from_spec is handed the registry's build_network to rebuild the actor

    def __init__(self, actor: PolicyModule, critic: ValueNetwork):
        super().__init__()
        self.actor, self.critic = actor, critic

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.raw_logits(obs)

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # The actor's own masking: a BCQ actor judges support among the *legal* actions, so masking its
        # unmasked scores afterwards could leave a state with no finite logit (NaN probabilities).
        return self.actor.logits(obs, mask)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs)

    def spec(self) -> dict:
        return {"actor": {"kind": self.actor.kind, "spec": self.actor.spec()}, "critic": self.critic.spec()}

    @classmethod
    def from_spec(cls, spec: dict, build_network) -> "ActorCritic":
        return cls(build_network(spec["actor"]["kind"], spec["actor"]["spec"]), ValueNetwork.from_spec(spec["critic"]))


class BCQPolicy(PolicyModule):
    """Q over the supported legal actions: unsupported or illegal actions score -inf."""

    kind = "bcq"

    def __init__(self, q: QNetwork, behaviour: QNetwork, threshold: float):
        super().__init__()
        self.q, self.behaviour, self.threshold = q, behaviour, threshold

    def supported(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        probs = torch.softmax(mask_logits(self.behaviour.raw_logits(obs), mask), dim=-1)
        keep = probs / probs.max(dim=-1, keepdim=True).values > self.threshold
        return keep if mask is None else keep & mask.to(torch.bool)

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q.raw_logits(obs).masked_fill(~self.supported(obs, None), NEG_INF)

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # Support is judged among the legal actions: the most plausible legal action is always supported.
        return self.q.raw_logits(obs).masked_fill(~self.supported(obs, mask), NEG_INF)

    def q_values(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(obs, mask)

    def spec(self) -> dict:
        return {"q": self.q.spec(), "behaviour": self.behaviour.spec(), "threshold": self.threshold}

    @classmethod
    def from_spec(cls, spec: dict) -> "BCQPolicy":
        return cls(QNetwork.from_spec(spec["q"]), QNetwork.from_spec(spec["behaviour"]), float(spec["threshold"]))


class Ensemble(PolicyModule):
    """Members of one kind, trained alike on the same data from different seeds, acting on their mean scores
    (action values for BCQ, logits for an actor).

    Why: at the arena's first decision the action values of the candidates differ by less than one learner's
    seed-to-seed noise, so a single network's greedy choice there is a draw of its seed (docs/lab,
    2026-12-06). The mean of K members cuts that noise by about sqrt(K) without changing what each learns.
    An action that some member scores -inf (BCQ: outside that member's supported set) is left out, unless no
    action is finite for every member, where each action gets the mean over the members that score it."""

    kind = "ensemble"
    wraps_networks = True

    def __init__(self, members: list[PolicyModule]):
        super().__init__()
        if not members or len({m.kind for m in members}) != 1:
            raise ValueError(f"an ensemble needs members of one kind, got {[m.kind for m in members]}")
        self.members = nn.ModuleList(members)

    def _mean(self, scores: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(scores)  # [K, N, A]
        every = finite.all(dim=0)
        some = finite.any(dim=0)
        total = torch.where(finite, scores, torch.zeros_like(scores)).sum(dim=0)
        mean = total / finite.sum(dim=0).clamp(min=1)
        keep = torch.where(every.any(dim=-1, keepdim=True), every, some)
        return mean.masked_fill(~keep, NEG_INF)

    def raw_logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self._mean(torch.stack([m.raw_logits(obs) for m in self.members]))

    def logits(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # Each member's own masking (a BCQ member judges support among the legal actions), then the mean.
        return mask_logits(self._mean(torch.stack([m.logits(obs, mask) for m in self.members])), mask)

    def q_values(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mask_logits(self._mean(torch.stack([m.q_values(obs, mask) for m in self.members])), mask)

    def spec(self) -> dict:
        return {"members": [{"kind": m.kind, "spec": m.spec()} for m in self.members]}

    @classmethod
    def from_spec(cls, spec: dict, build_network) -> "Ensemble":
        return cls([build_network(m["kind"], m["spec"]) for m in spec["members"]])
