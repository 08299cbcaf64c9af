"""The names of the blueprints, without the modules that build them.

Kept apart from `blueprints.py` (which needs torch) so that the action space, the feature schema and the
warehouse's parsers can name blueprints without importing torch: ingesting one small file used to cost
~1 GB of memory and seconds of start-up only because these names lived beside the torch modules.
"""

from __future__ import annotations

BLUEPRINTS: tuple[str, ...] = ("conv_light", "conv_heavy", "attention", "norm", "depthwise")

# Blueprints that a configuration's hidden `seed_faults` can make be born dead (world.blueprints.kill_units): those
# whose residual body has a ReLU behind a BatchNorm, so that one shifted BatchNorm silences the whole body.
FAULT_BLUEPRINTS: tuple[str, ...] = ("conv_heavy",)

# What a faulted seed suffers (EpisodeConfig.seed_fault_mode): "dead", born with silent ReLUs (blueprints.kill_units),
# adds almost nothing and costs its rent; "frozen", whose random body is switched on and never trains
# (blueprints.freeze_units), harms the host once blended in; "noisy", whose body never trains and whose output
# carries fresh noise in every forward pass (blueprints.make_noisy), harms in a way the host cannot learn around.
FAULT_MODES: tuple[str, ...] = ("dead", "frozen", "noisy")

# The modes that `seed_fault_scale` sizes: the frozen branch, or the noise, against the features.
SCALED_FAULT_MODES: tuple[str, ...] = ("frozen", "noisy")
