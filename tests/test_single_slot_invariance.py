"""A single-slot configuration behaves exactly as before the factored action (issue 34): the same raw runs
(everything but timings and the code version), run ids, rewards, branch runs and environment steps.

PINNED is what these configurations gave at commit 82a0442, before slots became part of the action, on the
CPU. The digests cover every header, step and footer field (probabilities, legal actions, observations,
rewards, events) except `timing`, `wall_seconds`, `code_version`, `torch_version`, and measurements added since
that only read the episode (ADDED_SINCE_PIN, with the feature schema version they came with). Floats enter them
rounded (_rounded): the exact bits differ between CPUs. Run ids, actions and returns are compared exactly. The
rounded digests were taken on 2026-12-06 from the code that matched the exact 82a0442 digests on the machine
they were taken on, and they agree under ATEN_CPU_CAPABILITY=default, avx2 and avx512. If a deliberate change of
the world moves them, regenerate them, knowing why.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tamiyo_models.controllers.config import ControllerConfig, reference_controller
from tamiyo_models.env import TamiyoEnv
from tamiyo_models.episodes.branching import BranchConfig, run_with_branches
from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
from tamiyo_models.world.datasets import DatasetConfig
from tamiyo_models.world.rawrun import read_raw_run

PINNED = {
 "fixed": {
  "run_id": "run-83ac0348ae5f5c25",
  "digest": [
   "d5462ca6b274c69f1e69",
   2884.3846896925265
  ],
  "return": 46.0,
  "actions": [
   "WAIT",
   "GERMINATE_conv_heavy",
   "ADVANCE",
   "ADVANCE",
   "ADVANCE",
   "ADVANCE"
  ]
 },
 "eager": {
  "run_id": "run-4e446c104201aad4",
  "digest": [
   "838c8127c7c249b0dcc3",
   8266.265796017538
  ],
  "return": 57.0,
  "actions": [
   "WAIT",
   "WAIT",
   "WAIT",
   "WAIT",
   "WAIT",
   "WAIT",
   "GERMINATE_conv_light",
   "WAIT",
   "WAIT",
   "ADVANCE",
   "WAIT",
   "WAIT",
   "WAIT",
   "WAIT"
  ]
 },
 "random": {
  "run_id": "run-4c63c22328f67a5b",
  "digest": [
   "9c6ddab85ae5fd5de7cb",
   4992.40858310216
  ],
  "return": 48.5,
  "actions": [
   "WAIT",
   "WAIT",
   "GERMINATE_conv_light",
   "WAIT",
   "WAIT",
   "ADVANCE",
   "CULL",
   "WAIT",
   "WAIT",
   "WAIT"
  ]
 },
 "branched": {
  "parent": [
   "run-883642d10bc9cffe",
   [
    "c7c5d26fd87916b97bf9",
    4914.882123473043
   ]
  ],
  "branches": [
   [
    "run-883642d10bc9cffe-b004-germinate_attention",
    [
     "9987182094176f112603",
     1892.8002639414058
    ]
   ],
   [
    "run-883642d10bc9cffe-b004-germinate_conv_heavy",
    [
     "12deb3f802fa085233b8",
     1889.860682070373
    ]
   ],
   [
    "run-883642d10bc9cffe-b004-germinate_conv_light",
    [
     "517ac45e47f4069851d0",
     1889.6293326021419
    ]
   ],
   [
    "run-883642d10bc9cffe-b004-germinate_depthwise",
    [
     "c88cd1a2935c92828383",
     1891.7591436506495
    ]
   ],
   [
    "run-883642d10bc9cffe-b004-germinate_norm",
    [
     "8781bb006cfc3f93c88c",
     1890.8403559328303
    ]
   ]
  ]
 },
 "env": {
  "n": 8,
  "obs": [
   1100.4088134765625,
   1157.0740966796875,
   993.382568359375,
   1573.128662109375,
   1370.65185546875,
   1384.435546875,
   1421.1180419921875
  ],
  "rewards": [
   3.5,
   11.5,
   10.0,
   11.0,
   1.5,
   3.0
  ],
  "masks": [
   [
    1,
    0,
    0,
    0,
    0,
    0,
    1,
    1
   ],
   [
    1,
    0,
    0,
    0,
    0,
    0,
    1,
    1
   ],
   [
    1,
    0,
    0,
    0,
    0,
    0,
    1,
    1
   ],
   [
    1,
    0,
    0,
    0,
    0,
    0,
    1,
    1
   ],
   [
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0
   ],
   [
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0
   ]
  ]
 }
}

SYNTHETIC = DatasetConfig(name="synthetic")
CONFIGS = {
    "fixed": EpisodeConfig(dataset=SYNTHETIC, max_epochs=6, seed=3,
                           controller=ControllerConfig(kind="fixed-schedule", blueprint="conv_heavy", germinate_epoch=1)),
    "eager": EpisodeConfig(dataset=SYNTHETIC, max_epochs=14, seed=11, controller=reference_controller("eager")),
    "random": EpisodeConfig(dataset=SYNTHETIC, max_epochs=10, seed=2, controller=reference_controller("random")),
}  # fmt: skip


# Measurements added since the pin, which read the episode without changing it: feature schema 5's seed gradient
# share (a slot record field, its feature, and the header's schema version). Left out of the digest.
ADDED_SINCE_PIN = {"seed_zero_gradient_share"}


def _without_added(value):
    if isinstance(value, dict):
        return {k: _without_added(v) for k, v in value.items()
                if k not in ADDED_SINCE_PIN and not k.endswith("_zero_gradient_share")}  # fmt: skip
    if isinstance(value, list):
        return [_without_added(v) for v in value]
    return value


def _split_telemetry(value, inside: bool = False, floats: list | None = None):
    """(the value with every float under a `telemetry` key or a loss's key set to 0, those floats). The telemetry's
    reductions (gradient percentiles, sharpness) and the mean losses add in another order on another CPU's vector
    width (AVX2, AVX-512), which moves them by up to about 1e-4 relative; everything else (actions, probabilities,
    masks, accuracies, rewards, events) is bit for bit the same on any CPU and enters the digest exactly."""
    floats = [] if floats is None else floats
    if isinstance(value, dict):
        return {k: _split_telemetry(v, inside or k == "telemetry" or "loss" in k, floats)[0] for k, v in value.items()}, floats
    if isinstance(value, list):
        return [_split_telemetry(v, inside, floats)[0] for v in value], floats
    if inside and isinstance(value, float):
        floats.append(value)
        return 0.0, floats
    return value, floats


def digest(run) -> list:
    """The run's digest (telemetry floats at 0) and the size of its telemetry (the sum of |x| over those floats),
    which a tolerance compares."""
    header = {k: v for k, v in run.header.items() if k not in ("code_version", "torch_version")}
    header["feature_schema_version"] = "tamiyo-features/4"  # the pin's; schema 5 only added ADDED_SINCE_PIN
    footer = _without_added({k: v for k, v in run.footer.items() if k != "wall_seconds"})
    steps = [_without_added({k: v for k, v in s.items() if k != "timing"}) for s in run.steps]
    exact, telemetry = _split_telemetry({"header": header, "steps": steps, "footer": footer})
    canonical = json.dumps(exact, sort_keys=True)
    return [hashlib.sha256(canonical.encode()).hexdigest()[:20], pytest.approx(sum(abs(x) for x in telemetry), rel=1e-3)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_single_slot_episode_is_the_one_before_the_factored_action(tmp_path, name):
    result = run_episode(CONFIGS[name], tmp_path)
    run = read_raw_run(result.path)
    pinned = PINNED[name]
    assert result.run_id == pinned["run_id"]
    assert [s["action"]["fine"] for s in run.steps] == pinned["actions"]
    assert result.episode_return == pinned["return"]
    assert digest(run) == pinned["digest"]


def test_single_slot_branch_runs_are_the_ones_before_the_factored_action(tmp_path):
    config = EpisodeConfig(dataset=SYNTHETIC, max_epochs=10, seed=5,
                           controller=ControllerConfig(kind="epsilon-heuristic", epsilon=0.5))  # fmt: skip
    result = run_with_branches(config, tmp_path, BranchConfig(fork_rule="steps", steps=(4,), horizon=3))
    assert [result.parent.run_id, digest(read_raw_run(result.parent.path))] == PINNED["branched"]["parent"]
    branches = sorted([b.run_id, digest(read_raw_run(b.path))] for b in result.branches)
    assert branches == PINNED["branched"]["branches"]


def test_a_single_slot_environment_steps_as_before_the_factored_action():
    env = TamiyoEnv(EpisodeConfig(dataset=SYNTHETIC, max_epochs=6, seed=4), feature_set="full")
    obs, _ = env.reset(seed=1)
    # The observation carries telemetry features (see _split_telemetry): compared by size, within a tolerance.
    sizes, rewards, masks = [float(abs(obs).sum())], [], []
    for action in [1, 0, 6, 6, 7, 0]:
        obs, reward, _, _, info = env.step(action)
        sizes.append(float(abs(obs).sum()))
        rewards.append(reward)
        masks.append([int(x) for x in info["action_mask"]])
    pinned = PINNED["env"]
    assert env.action_space.n == pinned["n"]
    assert (rewards, masks) == (pinned["rewards"], pinned["masks"])
    assert sizes == pytest.approx(pinned["obs"], rel=1e-3)
