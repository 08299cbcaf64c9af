"""Blueprints: the kinds of module a seed can be.

Every blueprint maps a feature map [B, C, H, W] to one of the same shape, and starts close to the identity
(residual form, or a gate around 1), so blending it in moves the host gradually rather than replacing what
it learned. Residual bodies end in BatchNorm, not ReLU (ResNet style), so a zero-initialised last scale still
receives gradient. Parameter counts at C = 64 match the reference system: conv_light ~37K, conv_heavy ~74K,
attention ~2K, norm ~130, depthwise ~4.8K (see `parameter_count`).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from .blueprint_names import BLUEPRINTS

__all__ = ["BLUEPRINTS", "build_blueprint", "parameter_count"]


class _Residual(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body
        # Zero-init the last BatchNorm scale: the seed starts as the exact identity, so grafting it changes
        # nothing until it has learned something (the usual zero-init-residual trick).
        last_bn = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        nn.init.zeros_(last_bn.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


def _conv_bn(channels: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]


class SqueezeExcitation(nn.Module):
    """Channel attention: rescale each channel by a gate computed from the global average."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean(dim=(2, 3))))))
        return h * gate[:, :, None, None]


class ScaledGroupNorm(nn.Module):
    """Residual GroupNorm with a learned scale that starts at 0, so the seed begins as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
        self.norm = nn.GroupNorm(groups, channels)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.norm(h)


def _depthwise(channels: int) -> nn.Module:
    return _Residual(
        nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
    )


_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "conv_light": lambda c: _Residual(nn.Sequential(*_conv_bn(c))),
    "conv_heavy": lambda c: _Residual(nn.Sequential(*_conv_bn(c), nn.ReLU(), *_conv_bn(c))),
    "attention": lambda c: SqueezeExcitation(c),
    "norm": lambda c: ScaledGroupNorm(c),
    "depthwise": _depthwise,
}


def build_blueprint(name: str, channels: int) -> nn.Module:
    if name not in _FACTORIES:
        raise ValueError(f"unknown blueprint {name!r}; known: {', '.join(BLUEPRINTS)}")
    return _FACTORIES[name](channels)


@functools.lru_cache(maxsize=None)
def parameter_count(name: str, channels: int) -> int:
    return sum(p.numel() for p in build_blueprint(name, channels).parameters())
