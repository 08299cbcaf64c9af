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

from .blueprint_names import BLUEPRINTS, FAULT_BLUEPRINTS, FAULT_MODES

__all__ = ["BLUEPRINTS", "FAULT_BLUEPRINTS", "FAULT_MODES", "build_blueprint", "fault_seed", "freeze_units", "kill_units", "make_noisy", "parameter_count"]


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


# Where a dead seed's first BatchNorm shifts its output, in standard deviations: P(N(0, 1) > 8) is ~6e-16, so no
# pre-activation of any batch crosses zero and the ReLU never passes a gradient back.
DEAD_SHIFT = -8.0


def kill_units(seed: nn.Module, blueprint: str) -> None:
    """Make a freshly built seed dead from birth, the dying-ReLU failure (EpisodeConfig.seed_faults).

    Every hidden ReLU of its body sits behind a BatchNorm shifted 8 standard deviations below zero, so the ReLU
    outputs 0 for any input and passes no gradient: the body before it never learns, the convolution after it
    sees only zeros, and only the last BatchNorm's shift still trains (a per-channel constant). The seed keeps
    its full parameter count (and its rent) while adding almost nothing; its telemetry shows it (a contribution
    near 0 where a healthy seed's grows), which is what a controller reading the state can act on by culling.
    Training cannot revive it unless weight decay pulls the shift back towards 0 (the arena trains without).
    """
    if blueprint not in FAULT_BLUEPRINTS:
        raise ValueError(f"blueprint {blueprint!r} cannot be born dead; only {', '.join(FAULT_BLUEPRINTS)} can")
    first_norm = next(m for m in seed.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        first_norm.bias.fill_(DEAD_SHIFT)


def freeze_units(seed: nn.Module, blueprint: str, scale: float = 1.0) -> None:
    """Make a freshly built seed frozen from birth: its random body is switched on and never trains
    (EpisodeConfig.seed_fault_mode "frozen").

    Why a second fault: a dead seed adds almost nothing, so culling it saves only its rent, and the headroom that
    reading its state can win is bounded by a quarter of a healthy graft's raw gain (docs/arena.md, "Seeds born
    dead"). A frozen seed harms as well: its last BatchNorm scale starts at `scale` (1 by default) instead of 0,
    so its residual branch adds a random transform of the features, as large as they are at scale 1 (its
    BatchNorms still normalise each batch, but none of its weights ever learns), that it cannot shape; once it is blended in, the host has to learn around it.
    In TRAINING it runs isolated and harms nothing; culling it before it is fossilized removes it. Its telemetry
    shows it as a dead seed's does: no gradient reaches it, a zero-gradient share of exactly 1 (a dead seed's is
    just under 1, its last BatchNorm shift still trains).

    `scale` is how large the random branch is against the features it is added to: the larger, the harder for the
    host to learn around (EpisodeConfig.seed_fault_scale).

    Only a change of weights and of `requires_grad`, both of which a snapshot's deepcopy keeps, so a fork replays
    it bit for bit.
    """
    if blueprint not in FAULT_BLUEPRINTS:
        raise ValueError(f"blueprint {blueprint!r} cannot be born frozen; only {', '.join(FAULT_BLUEPRINTS)} can")
    last_norm = [m for m in seed.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    with torch.no_grad():
        last_norm.weight.fill_(scale)
    for parameter in seed.parameters():
        parameter.requires_grad_(False)


def make_noisy(seed: nn.Module, blueprint: str, scale: float = 1.0, key: int = 0) -> None:
    """Make a freshly built seed noisy from birth: its body never trains, and its output carries fresh Gaussian
    noise of `scale` times the spread of its input in every forward pass (EpisodeConfig.seed_fault_mode "noisy").

    Why a third fault: a frozen seed's harm saturates (about 1.5 pp of score in v2-narrow at branch scales 3 and
    10, docs/lab/2026-12-05-cifar-narrower-probe.md), because its branch is a fixed function of the features and
    the host's later layers learn around any fixed function. Noise drawn anew for every batch cannot be learned
    around: once the seed is blended in, the harm lasts until a cull removes it (a fossilized seed can no longer be
    culled). Its body starts as the identity, as every residual seed does, so the noise is the whole of what it
    adds. In TRAINING it runs isolated and harms nothing. Its telemetry shows it as a frozen seed's does: no
    gradient reaches its weights, a zero-gradient share of exactly 1.

    The noise comes from a generator seeded by `key` (the seed's own initialisation draw, so a fork that
    germinates the same blueprint at the same step meets the same noise) and by a counter of the training passes
    it has made, kept as a buffer. A snapshot's deepcopy keeps the counter and the hook, so a fork replays bit for
    bit. In eval mode (validation, test, contribution measurements) the counter stands still: each evaluation
    meets the same noise, and measuring the seed does not change what its training meets.
    """
    if blueprint not in FAULT_BLUEPRINTS:
        raise ValueError(f"blueprint {blueprint!r} cannot be born noisy; only {', '.join(FAULT_BLUEPRINTS)} can")
    for parameter in seed.parameters():
        parameter.requires_grad_(False)
    # Registered after the seed was moved to its device, so on a GPU the two buffers stay on the CPU: reading them
    # costs no device sync.
    seed.register_buffer("fault_noise_key", torch.tensor(int(key) % 2**62, dtype=torch.int64))
    seed.register_buffer("fault_noise_passes", torch.zeros((), dtype=torch.int64))
    seed.fault_noise_scale = float(scale)
    seed.register_forward_hook(_add_fault_noise)


# An odd 64-bit constant: consecutive passes get generator seeds far apart.
_NOISE_STRIDE = 0x9E3779B97F4A7C15


def _add_fault_noise(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """A noisy seed's forward hook (make_noisy): its output plus this pass's noise."""
    passes = int(module.fault_noise_passes)
    # A CPU generator on every device, as for every other draw of an episode: a CUDA run meets the same noise.
    # (Pass 0's seed is the key, the seed's own initialisation draw: harmless, its body adds exactly 0.)
    generator = torch.Generator()
    generator.manual_seed((int(module.fault_noise_key) + passes * _NOISE_STRIDE) % 2**63)
    if module.training:
        module.fault_noise_passes += 1
    noise = torch.randn(output.shape, generator=generator, dtype=output.dtype).to(output.device)
    return output + module.fault_noise_scale * inputs[0].detach().std() * noise


def fault_seed(seed: nn.Module, blueprint: str, mode: str, scale: float = 1.0, key: int = 0) -> None:
    """Apply the configured fault `mode` (FAULT_MODES) to a freshly built seed; `scale`: a frozen seed's branch or
    a noisy seed's noise; `key`: what seeds a noisy seed's noise."""
    if mode not in FAULT_MODES:
        raise ValueError(f"unknown seed fault mode {mode!r}; known: {', '.join(FAULT_MODES)}")
    if mode == "dead":
        kill_units(seed, blueprint)
    elif mode == "frozen":
        freeze_units(seed, blueprint, scale)
    else:
        make_noisy(seed, blueprint, scale, key)


@functools.lru_cache(maxsize=None)
def parameter_count(name: str, channels: int) -> int:
    return sum(p.numel() for p in build_blueprint(name, channels).parameters())
