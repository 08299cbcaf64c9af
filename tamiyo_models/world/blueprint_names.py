"""The names of the blueprints, without the modules that build them.

Kept apart from `blueprints.py` (which needs torch) so that the action space, the feature schema and the
warehouse's parsers can name blueprints without importing torch: ingesting one small file used to cost
~1 GB of memory and seconds of start-up only because these names lived beside the torch modules.
"""

from __future__ import annotations

BLUEPRINTS: tuple[str, ...] = ("conv_light", "conv_heavy", "attention", "norm", "depthwise")
