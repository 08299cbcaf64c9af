"""A single-slot configuration behaves exactly as before the factored action (issue 34): the same raw runs
(everything but timings and the code version), run ids, rewards, branch runs and environment steps.

PINNED is what these configurations gave at commit 82a0442, before slots became part of the action, on the
CPU: run ids, actions and returns, compared exactly. MEASURED (tests/snapshots/single_slot_measured.json) holds,
per run, a digest of every header, step and footer field (probabilities, legal actions, observations, rewards,
events) except `timing`, `wall_seconds`, `code_version`, `torch_version`, measurements added since that only
read the episode (ADDED_SINCE_PIN, with the feature schema version they came with), and the floats that differ
between CPUs (_split_measured: the telemetry and the losses), which are compared per field by their sums within
0.1%. It was taken on 2026-12-06 from the code that matched 82a0442's exact digests on the machine they were
taken on, and it passes under ATEN_CPU_CAPABILITY=default, avx2 and avx512. If a deliberate change of the world
moves them, regenerate them, knowing why.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
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
  "parent": "run-883642d10bc9cffe",
  "branches": [
   "run-883642d10bc9cffe-b004-germinate_attention",
   "run-883642d10bc9cffe-b004-germinate_conv_heavy",
   "run-883642d10bc9cffe-b004-germinate_conv_light",
   "run-883642d10bc9cffe-b004-germinate_depthwise",
   "run-883642d10bc9cffe-b004-germinate_norm"
  ]
 },
 "env": {
  "n": 8,
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

# The exact digests and the measured floats' sums of every pinned run (tests/snapshots/single_slot_measured.json).
MEASURED = json.loads((Path(__file__).parent / "snapshots" / "single_slot_measured.json").read_text())

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


def _split_measured(value, path: str = "", inside: bool = False, floats: dict | None = None):
    """(the value with every float under a `telemetry` key or a loss's key set to 0, those floats by their key
    path without list positions: path -> [sum, sum of |x|]). The telemetry's reductions (gradient percentiles,
    sharpness) and the mean losses add in another order on another CPU's vector width (AVX2, AVX-512), which moves
    them by up to about 1e-4 relative; everything else (actions, probabilities, masks, accuracies, rewards, events)
    is bit for bit the same on any CPU and enters the digest exactly. Per path, a swap of two losses, a sign flip
    or a change above 0.1% still shows."""
    floats = {} if floats is None else floats
    if isinstance(value, dict):
        return {k: _split_measured(v, f"{path}.{k}", inside or k == "telemetry" or "loss" in k, floats)[0]
                for k, v in value.items()}, floats  # fmt: skip
    if isinstance(value, list):
        return [_split_measured(v, path, inside, floats)[0] for v in value], floats
    if inside and isinstance(value, float):
        total = floats.setdefault(path, [0.0, 0.0])
        total[0] += value
        total[1] += abs(value)
        return 0.0, floats
    return value, floats


def digest(run) -> list:
    """[the digest of the run with its measured floats at 0, those floats' sums by path]."""
    header = {k: v for k, v in run.header.items() if k not in ("code_version", "torch_version")}
    header["feature_schema_version"] = "tamiyo-features/4"  # the pin's; schema 5 only added ADDED_SINCE_PIN
    footer = _without_added({k: v for k, v in run.footer.items() if k != "wall_seconds"})
    steps = [_without_added({k: v for k, v in s.items() if k != "timing"}) for s in run.steps]
    exact, measured = _split_measured({"header": header, "steps": steps, "footer": footer})
    canonical = json.dumps(exact, sort_keys=True)
    return [hashlib.sha256(canonical.encode()).hexdigest()[:20], measured]


def matches(found: list, run_id: str) -> bool:
    """The exact digest equal to the pin's, and every measured path's sums within 0.1% (or 1e-6) of the pin's."""
    pinned_hash, pinned = MEASURED[run_id]
    found_hash, measured = found
    assert set(measured) == set(pinned), f"{run_id}: measured fields {sorted(set(measured) ^ set(pinned))} differ"
    return found_hash == pinned_hash and all(measured[k] == pytest.approx(pinned[k], rel=1e-3, abs=1e-6) for k in pinned)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_single_slot_episode_is_the_one_before_the_factored_action(tmp_path, name):
    result = run_episode(CONFIGS[name], tmp_path)
    run = read_raw_run(result.path)
    pinned = PINNED[name]
    assert result.run_id == pinned["run_id"]
    assert [s["action"]["fine"] for s in run.steps] == pinned["actions"]
    assert result.episode_return == pinned["return"]
    assert matches(digest(run), result.run_id)


def test_single_slot_branch_runs_are_the_ones_before_the_factored_action(tmp_path):
    config = EpisodeConfig(dataset=SYNTHETIC, max_epochs=10, seed=5,
                           controller=ControllerConfig(kind="epsilon-heuristic", epsilon=0.5))  # fmt: skip
    result = run_with_branches(config, tmp_path, BranchConfig(fork_rule="steps", steps=(4,), horizon=3))
    assert result.parent.run_id == PINNED["branched"]["parent"]
    assert matches(digest(read_raw_run(result.parent.path)), result.parent.run_id)
    assert sorted(b.run_id for b in result.branches) == PINNED["branched"]["branches"]
    for b in result.branches:
        assert matches(digest(read_raw_run(b.path)), b.run_id)


def test_a_single_slot_environment_steps_as_before_the_factored_action():
    env = TamiyoEnv(EpisodeConfig(dataset=SYNTHETIC, max_epochs=6, seed=4), feature_set="full")
    obs, _ = env.reset(seed=1)
    # The observation carries telemetry and loss features (see _split_measured): each feature is compared by its
    # sum and its sum of |x| over the steps, within 0.1% (or 1e-6), so an order or a sign is checked too.
    observations, rewards, masks = [obs], [], []
    for action in [1, 0, 6, 6, 7, 0]:
        obs, reward, _, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        masks.append([int(x) for x in info["action_mask"]])
    pinned = PINNED["env"]
    assert env.action_space.n == pinned["n"]
    assert (rewards, masks) == (pinned["rewards"], pinned["masks"])
    stacked = np.asarray(observations, dtype=np.float64)
    columns = [[float(stacked[:, j].sum()), float(np.abs(stacked[:, j]).sum())] for j in range(stacked.shape[1])]
    assert env.feature_names == tuple(MEASURED["env"]["features"])
    flat = lambda rows: [x for row in rows for x in row]  # noqa: E731
    assert flat(columns) == pytest.approx(flat(MEASURED["env"]["columns"]), rel=1e-3, abs=1e-6)
