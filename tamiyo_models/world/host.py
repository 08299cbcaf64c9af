"""Host networks of the reference family, with seed slots between stages.

    [ConvBlock -> MaxPool] x depth, a seed slot after the stages named in `slots`, global average pool, Linear

ConvBlock = Conv3x3 (no bias) + BatchNorm + ReLU. The reference host is widths (32, 64, 128) with one slot
after the second stage (~95K parameters on CIFAR-10). Pooling stops once the feature map is 1x1, so the same
family runs on 8x8 digits and 32x32 CIFAR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from .actions import MAX_SEED_SLOTS
from .blueprint_names import BLUEPRINTS
from .configs import known_fields
from .seed_slot import SeedSlot


@dataclass(frozen=True)
class HostConfig:
    # Default: a narrow host, where growth measurably changes final accuracy on digits (docs/headroom.md).
    widths: tuple[int, ...] = (2, 4, 8)  # channels per stage; depth = len(widths)
    slots: tuple[int, ...] = (1,)  # stage indices followed by a seed slot; more than one: the factored action
    # Per slot (in `slots` order), the blueprints it may germinate; empty: every slot takes every blueprint
    # the episode allows. A (slot, blueprint) pair outside it is illegal (masked) in every state.
    slot_blueprints: tuple[tuple[str, ...], ...] = ()
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"host widths must be positive integers, got {self.widths}")
        bad = [s for s in self.slots if not 0 <= s < len(self.widths) - 1]
        if bad or len(set(self.slots)) != len(self.slots):
            raise ValueError(
                f"seed slots {self.slots} must be distinct stage indices in [0, {len(self.widths) - 2}] "
                f"(a slot sits between two stages)"
            )
        if len(self.slots) > MAX_SEED_SLOTS:
            raise ValueError(f"a host has at most {MAX_SEED_SLOTS} seed slots (the action space's), got {len(self.slots)}")
        if self.slot_blueprints:
            if len(self.slot_blueprints) != len(self.slots):
                raise ValueError(f"slot_blueprints names {len(self.slot_blueprints)} slots, the host has {len(self.slots)}")
            unknown = sorted({b for names in self.slot_blueprints for b in names} - set(BLUEPRINTS))
            if unknown:
                raise ValueError(f"unknown blueprints {unknown} in slot_blueprints; known: {', '.join(BLUEPRINTS)}")

    def to_dict(self) -> dict:
        # slot_blueprints only when set: a host without it keeps the run id it always had.
        return {"widths": list(self.widths), "slots": list(self.slots),
                **({"slot_blueprints": [list(b) for b in self.slot_blueprints]} if self.slot_blueprints else {})}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> "HostConfig":
        d = known_fields(cls, d, "host settings")
        if "widths" not in d:
            raise ValueError("host settings need widths (channels per stage, e.g. [2, 4, 8])")
        return cls(widths=tuple(d["widths"]), slots=tuple(d.get("slots", (1,))),
                   slot_blueprints=tuple(tuple(b) for b in d.get("slot_blueprints", ())))  # fmt: skip

    def blueprints_of_slot(self, slot: int, allowed: tuple[str, ...]) -> tuple[str, ...]:
        """What slot `slot` (its index among the host's slots) may germinate, of the episode's `allowed`."""
        if not self.slot_blueprints:
            return allowed
        return tuple(b for b in allowed if b in self.slot_blueprints[slot])


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class HostNetwork(nn.Module):
    def __init__(self, config: HostConfig, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.config = config
        channels, height, width = input_shape
        stages, size = [], min(height, width)
        for cin, cout in zip((channels, *config.widths[:-1]), config.widths):
            block = conv_block(cin, cout)
            if size >= 2:
                block.append(nn.MaxPool2d(2))
                size //= 2
            stages.append(block)
        self.stages = nn.ModuleList(stages)
        self.seed_slots = nn.ModuleList(SeedSlot(i, config.widths[s]) for i, s in enumerate(config.slots))
        self._slot_after = {s: i for i, s in enumerate(config.slots)}
        self.head = nn.Linear(config.widths[-1], num_classes)

    def host_parameters(self) -> list[nn.Parameter]:
        """Parameters the host optimiser owns: stages and head (fossilized seeds are added when they join)."""
        return [*self.stages.parameters(), *self.head.parameters()]

    def host_weight_tensors(self) -> list[tuple[str, nn.Parameter]]:
        """Named host parameters that telemetry reports on (conv, BN and head tensors; seeds excluded)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("seed_slots.")]

    def forward(self, x: torch.Tensor, start_stage: int = 0) -> torch.Tensor:
        h = x
        for i in range(start_stage, len(self.stages)):
            h = self.stages[i](h)
            if i in self._slot_after:
                h = self.seed_slots[self._slot_after[i]](h)
        return self.head(h.mean(dim=(2, 3)))

    def isolated_seed_logits(self) -> list[torch.Tensor]:
        """Logits of each TRAINING seed's isolated path for the batch just forwarded.

        The seed sees the detached host features, and its output runs through the downstream layers with
        detached parameters and in eval mode (BatchNorm uses, and does not update, its running statistics).
        So the seed's loss trains the seed only, no gradient and no statistic reaches the host, and the seed
        learns to be useful to the downstream layers as they behave when the seed is later blended in.
        """
        outputs = []
        for slot_index, slot in enumerate(self.seed_slots):
            seed_out = slot.isolated_seed_output()
            if seed_out is None:
                continue
            start = self.config.slots[slot_index] + 1
            downstream = [*self.stages[start:], self.head, *self.seed_slots[slot_index + 1 :]]
            for module in downstream:
                module.eval()
            frozen = {n: p.detach() for n, p in self.named_parameters()}
            try:
                outputs.append(functional_call(self, frozen, (seed_out,), {"start_stage": start}))
            finally:
                for module in downstream:
                    module.train()
        return outputs
