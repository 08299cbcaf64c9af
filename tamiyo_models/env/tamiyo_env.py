"""`TamiyoEnv`: one episode of growing a host network as a Gymnasium environment.

Each step is one epoch: the agent picks a fine action (WAIT, GERMINATE_<blueprint>, ADVANCE, CULL), the host
trains for an epoch, and the reward is what followed the action (the validation accuracy change, optionally
with potential-based shaping; `tamiyo_models.world.reward`). The transition is the episode runner's own
(`Episode.transition`), so an agent in this environment and a controller in the generator live in the same
world, step for step.

- Observation: the named feature vector (`feature_names`, schema `tamiyo-features/5`), float32, with the
  bounds the features really have (accuracies 0..100, alpha 0..1, stage 0..9, counts >= 0, else unbounded).
- Actions: `Discrete(n)` over the flat factored space of `seed_slots` slots (`world.actions.action_names`:
  8 for one slot, the fine actions as they always were; 1 + 7 x slots). A configuration whose host has fewer
  slots runs with the missing slots' actions masked off; one with more is refused. `action_masks()` and
  `info["action_mask"]` say which are legal
  (the convention of sb3-contrib's MaskablePPO). An illegal action is a wasted turn by default (WAIT is applied
  and `info["illegal_action"]` is set, the reference's "soft consequences"); `illegal_action="raise"` refuses it.
- `terminated` after the last epoch; `truncated` when `max_steps` stops the episode early.
- `reset(seed, options)`: `options["config"]` (an EpisodeConfig or its dict) runs that configuration;
  otherwise one is drawn from `spec` (a generation spec, optionally one regime) or the `config` template with
  a seed from the environment's RNG, so `reset(seed=k)` always gives the same episode. With `configs`
  ({reset seed: [configurations]}), the n-th episode after `reset(seed=k)` runs `configs[k][n]` and any other
  episode is refused: a learner whose episode seeds must be registered before they run (the nightly loop's
  seed registry) hands them over here.
- The test split is never in an observation or an info: the score that judges a policy is the raw run's
  footer (see `RecordRawRun`), which the learner never reads.

No global random state is touched (the host's initialisation forks torch's RNG), so a learner stepping this
environment in its own process keeps its own random streams.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np

from ..episodes.episode import Episode, EpisodeConfig
from ..world.actions import ALL_ACTIONS, WAIT, Action, action_names
from ..world.features import FEATURE_SETS, feature_bounds
from ..world.lifecycle import Stage

ILLEGAL_ACTION_RULES = ("wait", "raise")


class TamiyoEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        config: EpisodeConfig | None = None,
        *,
        spec: str | None = None,
        regime: str | None = None,
        feature_set: str = "full",
        max_steps: int | None = None,
        illegal_action: str = "wait",
        agent: str = "agent",
        configs: dict | None = None,
        seed_slots: int | None = None,
    ):
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
        if illegal_action not in ILLEGAL_ACTION_RULES:
            raise ValueError(f"illegal_action must be one of {ILLEGAL_ACTION_RULES}, got {illegal_action!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.template = config or EpisodeConfig()
        self.spec = None
        if spec is not None:
            from ..episodes.generation import GenerationSpec

            self.spec = GenerationSpec.load(spec)
            if regime is not None:
                self.spec._regime(regime)  # fails now, naming the regime, if it cannot run here
        self.regime, self.feature_set, self.max_steps = regime, feature_set, max_steps
        self.configs = None if configs is None else {int(k): list(v) for k, v in configs.items()}
        self._stream: tuple[int | None, int] = (None, 0)  # (the last reset seed, episodes drawn since)
        self.illegal_action, self.agent = illegal_action, agent
        self.feature_names: tuple[str, ...] = FEATURE_SETS[feature_set]
        low, high = zip(*(feature_bounds(name) for name in self.feature_names))
        self.observation_space = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)
        # Without a spec the template's host says how many slots; a spec's regimes may differ, so one slot
        # unless told (a wider configuration is then refused at reset, naming the setting).
        self.seed_slots = seed_slots or (1 if spec is not None else len(self.template.host.slots))
        self.action_names = action_names(self.seed_slots)
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self.episode: Episode | None = None
        self.config: EpisodeConfig | None = None
        self.steps = 0
        self.episode_return = 0.0
        self.culls_positive = 0  # culls of a seed whose measured contribution was positive (a hacking symptom)
        # The distribution the agent's next action is drawn from, when it says (RecordRawRun logs it as mu).
        self.next_behaviour = None
        self.last_transition: dict | None = None  # for wrappers (RecordRawRun): the step just taken
        self._state: tuple[dict, dict, tuple[bool, ...]] | None = None

    # ----- Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        from ..world.datasets import load_task_data

        super().reset(seed=seed)
        if seed is not None:
            self._stream = (int(seed), 0)
        config = (options or {}).get("config")
        if config is None:
            config = self._draw_config()
        elif isinstance(config, dict):
            config = EpisodeConfig.from_dict(config)
        # The configuration names who acts: an external agent, so its raw runs never collide with a controller's.
        config = dataclasses.replace(config, controller=dataclasses.replace(config.controller, kind="agent", label=self.agent))
        if len(config.host.slots) > self.seed_slots:
            raise ValueError(f"TamiyoEnv: the configuration's host has {len(config.host.slots)} seed slots, the action "
                             f"space {self.seed_slots} (TamiyoEnv(seed_slots=...))")  # fmt: skip
        self.config = config
        self.episode = Episode(config, load_task_data(config.dataset), config.run_id())
        self.episode.measure(initial=True)
        self.steps, self.episode_return, self.last_transition, self.culls_positive = 0, 0.0, None, 0
        self._state = self.episode.decision_state()
        return self._observation(), self._info()

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.episode is None or self._state is None:
            raise RuntimeError("call reset() before step()")
        if self.episode.done:
            raise RuntimeError("the episode is over: call reset()")
        index = int(action)
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"action {action!r} is outside 0..{self.action_space.n - 1}")
        record, features, legal = self._state  # legal: the episode's own space, a prefix of the env's
        chosen, illegal = Action.from_index(index), not (index < len(legal) and legal[index])
        if illegal:
            if self.illegal_action == "raise":
                raise ValueError(f"{chosen.fine} is not legal at step {self.steps + 1} (legal: "
                                 f"{', '.join(a for a, ok in zip(ALL_ACTIONS, legal) if ok)})")  # fmt: skip
            chosen = WAIT
        if chosen.coarse == "CULL" and features.get(f"slot{chosen.slot}_contribution", 0.0) > 0:
            self.culls_positive += 1
        outcome, reward, timing = self.episode.transition(chosen)
        self.steps += 1
        self.episode_return += reward
        self.last_transition = {"record": record, "features": features, "legal": legal, "requested": index,
                                "action": chosen, "illegal": illegal, "outcome": outcome, "timing": timing}  # fmt: skip
        self._state = self.episode.decision_state()
        terminated = self.episode.done
        truncated = not terminated and self.max_steps is not None and self.steps >= self.max_steps
        info = self._info()
        info.update(applied=outcome["applied"], illegal_action=illegal, accuracy_change=outcome["accuracy_change"])
        if terminated or truncated:
            info["episode_summary"] = {"return": self.episode_return, "length": self.steps,
                                       "final_val_accuracy": self.episode.val_accuracy_history[-1],
                                       "seeds_created": self.episode.seeds_created,
                                       "seeds_fossilized": self.episode.seeds_fossilized,
                                       "seeds_culled": self.episode.seeds_culled, "culls_positive": self.culls_positive,
                                       "final_stage": Stage(int(self._state[1]["seed_stage"])).name}  # fmt: skip
        return self._observation(), float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Legal fine actions in the current state (MaskablePPO's convention)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        legal = self._state[2]
        return np.array(legal + (False,) * (self.action_space.n - len(legal)), dtype=bool)

    # ----- helpers -----------------------------------------------------------------------------------
    def _draw_config(self) -> EpisodeConfig:
        if self.configs is not None:
            key, n = self._stream
            given = self.configs.get(key, []) if key is not None else []
            if n >= len(given):
                raise RuntimeError(f"TamiyoEnv: no configuration was given for episode {n + 1} after reset(seed={key}); "
                                   "this environment runs only the configurations it was handed (seeds registered first)")  # fmt: skip
            self._stream = (key, n + 1)
            config = given[n]
            return EpisodeConfig.from_dict(config) if isinstance(config, dict) else config
        draw = int(self.np_random.integers(0, 2**31 - 1))
        if self.spec is not None:
            configs = self.spec.sample_regime(self.regime, 1, draw) if self.regime else self.spec.sample(1, draw)
            return configs[0]
        return dataclasses.replace(self.template, seed=draw)

    def _observation(self) -> np.ndarray:
        features = self._state[1]
        values = [features[name] for name in self.feature_names]
        # A feature the record could not give (NaN: a task description missing) enters as 0, like any feature
        # the sanitiser cleans; live episodes always have one.
        return np.array([0.0 if math.isnan(v) else v for v in values], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.action_masks(), "run_id": self.episode.run_id, "epoch": self.episode.epoch}

    @property
    def features(self) -> dict[str, float]:
        """The named features of the current state (all groups, not only the observation's)."""
        return dict(self._state[1])
