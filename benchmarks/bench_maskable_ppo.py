"""Cross-check of our PPO against sb3-contrib's MaskablePPO on the same environment and the same episode budget.

Both learners start from scratch (a fresh 128x128 MLP), see the same observation (TamiyoEnv's
`base+lifecycle+task` features), the same reward (validation accuracy change x 0.1), gamma 1, GAE lambda 0.95,
clip 0.2, entropy coefficient 0.01, learning rate 3e-4, 8 episodes per update on 2 worker processes, and stop
after exactly `--episodes` training episodes. Then each acts greedily on held-out configurations (a batch seed
neither trained on) and is scored on the test split, paired with the heuristic on the same configurations
(same seed, initial weights and data order), and with the other learner.

    .venv/bin/python benchmarks/bench_maskable_ppo.py [--episodes 96] [--eval-configs 16] [--repeats 2]
        [--spec nightly --regime digits]

Target (issue 13): our PPO's test score per training episode is equal to or better than MaskablePPO's, i.e.
the paired difference ours - MaskablePPO is not below 0 beyond its interval. Each repeat is one training seed
of each learner; the table quotes the medians over repeats and the pooled paired interval. sb3-contrib is a
benchmark-only dependency (the `bench` extra).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, print_table  # benchmarks/_common.py (the script's folder is on sys.path)

FEATURES = "base+lifecycle+task"
REWARD_SCALE = 0.1


def _sb3_env(spec: str, regime: str | None, record_dir: str | None = None):
    import gymnasium as gym

    from tamiyo_models.env import TamiyoEnv
    from tamiyo_models.env.recording import RecordRawRun

    torch.set_num_threads(1)
    env = TamiyoEnv(spec=spec, regime=regime, feature_set=FEATURES, agent="maskable-ppo")
    if record_dir:
        env = RecordRawRun(env, record_dir)
    # The same scaling our learner applies to the rewards it learns from.
    return gym.wrappers.TransformReward(env, lambda r: REWARD_SCALE * r)


def train_ours(args, seed: int, out: Path) -> tuple[Path, float]:
    from tamiyo_models.online_rl.ppo import PPOConfig
    from tamiyo_models.online_rl.workflow import OnlineRunConfig, train_online_policy

    ppo = PPOConfig(episodes=args.episodes, episodes_per_iteration=8, kl_coef=0.0, critic_warmup_epochs=0, seed=seed,
                    reward_scale=REWARD_SCALE, entropy_coef=0.01, learning_rate=3e-4)  # fmt: skip
    config = OnlineRunConfig(algorithm="ppo", spec=args.spec, regime=args.regime, workers=2, initial_policy=None,
                             feature_set=FEATURES, hidden=(128, 128), record_dir=None, ppo=ppo)  # fmt: skip
    t0 = time.perf_counter()
    run = train_online_policy(config, out / f"ours-s{seed}", log=lambda *_: None)
    return run.policy_path, time.perf_counter() - t0


def train_maskable(args, seed: int, steps_per_episode: int):
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import SubprocVecEnv

    class EpisodeBudget(BaseCallback):
        """Stop after exactly the episode budget (MaskablePPO counts steps; our learners count episodes)."""

        def __init__(self, episodes: int):
            super().__init__()
            self.episodes, self.done = episodes, 0

        def _on_step(self) -> bool:
            self.done += int(np.sum(self.locals["dones"]))
            return self.done < self.episodes

    envs = SubprocVecEnv([functools.partial(_sb3_env, args.spec, args.regime)] * 2, start_method="forkserver")
    envs.seed(seed)
    # 4 episodes per environment between updates: 8 per update, as ours.
    model = MaskablePPO("MlpPolicy", envs, n_steps=4 * steps_per_episode, batch_size=max(8, 8 * steps_per_episode // 4),
                        n_epochs=4, gamma=1.0, gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, learning_rate=3e-4,
                        target_kl=0.02, policy_kwargs={"net_arch": [128, 128]}, seed=seed, device="cpu", verbose=0)  # fmt: skip
    t0 = time.perf_counter()
    model.learn(total_timesteps=10 * args.episodes * steps_per_episode, callback=EpisodeBudget(args.episodes))
    seconds = time.perf_counter() - t0
    envs.close()
    return model, seconds


def greedy_scores(act, configs, record_dir: Path, label: str) -> list[float]:
    """Final test accuracy of greedy episodes on these configurations (read from the recorded footers: the
    environment never hands the test score to an agent)."""
    from tamiyo_models.env import TamiyoEnv
    from tamiyo_models.env.recording import RecordRawRun
    from tamiyo_models.world.rawrun import read_raw_run

    env = RecordRawRun(TamiyoEnv(feature_set=FEATURES, agent=label), record_dir)
    scores = []
    for config in configs:
        obs, info = env.reset(options={"config": config})
        path, done = info["raw_run"], False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs, info["action_mask"]))
            done = terminated or truncated
        scores.append(float(read_raw_run(path).footer["final_test_accuracy"]))
    env.close()
    return scores


def heuristic_scores(configs, out: Path) -> list[float]:
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.evaluation.paired import run_paired

    runs = run_paired(configs, {"heuristic": ControllerConfig(kind="heuristic")}, out, reference="heuristic",
                      null_orders=0, workers=2)  # fmt: skip
    return [float(runs.outcomes[(i, "heuristic", 0)].result.final_test_accuracy) for i in range(len(configs))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=96, help="training episodes per learner and repeat")
    parser.add_argument("--eval-configs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="training seeds per learner")
    parser.add_argument("--spec", default="nightly")
    parser.add_argument("--regime", default="digits")
    parser.add_argument("--batch-seed", type=int, default=20_261_301, help="held-out configurations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sb3_contrib.common.maskable.utils import get_action_masks  # noqa: F401  (fails early without the extra)

    from tamiyo_models.agents.saved import load_policy
    from tamiyo_models.common.stats import mean_ci
    from tamiyo_models.episodes.generation import GenerationSpec

    spec = GenerationSpec.load(args.spec)
    configs = spec.sample_regime(args.regime, args.eval_configs, args.batch_seed) if args.regime else spec.sample(args.eval_configs, args.batch_seed)
    steps_per_episode = configs[0].max_epochs
    print(machine())
    print(f"{args.spec}/{args.regime}: {args.episodes} training episodes per learner, {args.repeats} seeds, "
          f"{len(configs)} held-out configurations (batch seed {args.batch_seed}), test split", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-maskable-") as tmp:
        out = Path(tmp)
        heuristic = np.array(heuristic_scores(configs, out / "heuristic"))
        rows = {"ours": [], "maskable": []}
        diffs = {"ours": [], "maskable": [], "ours-maskable": []}
        for seed in range(args.repeats):
            path, ours_s = train_ours(args, seed, out)
            module, _ = load_policy(path)
            module.eval()

            def ours_act(obs, mask, module=module):
                with torch.no_grad():
                    return int(module.act(torch.as_tensor(obs, dtype=torch.float32)[None], torch.as_tensor(mask)[None], greedy=True)[0])

            model, mask_s = train_maskable(args, seed, steps_per_episode)

            def mask_act(obs, mask, model=model):
                return int(model.predict(obs, action_masks=np.asarray(mask, bool), deterministic=True)[0])

            ours = np.array(greedy_scores(ours_act, configs, out / f"eval-ours-{seed}", f"ours-ppo-s{seed}"))
            mask = np.array(greedy_scores(mask_act, configs, out / f"eval-mask-{seed}", f"maskable-ppo-s{seed}"))
            rows["ours"].append((ours.mean(), ours_s))
            rows["maskable"].append((mask.mean(), mask_s))
            diffs["ours"] += list(ours - heuristic)
            diffs["maskable"] += list(mask - heuristic)
            diffs["ours-maskable"] += list(ours - mask)
            print(f"seed {seed}: ours {ours.mean():.2f}% ({ours_s:.0f} s), MaskablePPO {mask.mean():.2f}% ({mask_s:.0f} s), "
                  f"heuristic {heuristic.mean():.2f}%", flush=True)  # fmt: skip
    table = []
    for name, values in diffs.items():
        ci = mean_ci(np.array(values))
        table.append((f"{name} (test pp, paired)", f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]",
                      ">= 0" if name == "ours-maskable" else "", (ci.high >= 0) if name == "ours-maskable" else None))  # fmt: skip
    for name in ("ours", "maskable"):
        table.append((f"{name}: median test accuracy", f"{statistics.median(r[0] for r in rows[name]):.2f}%", "", None))
        table.append((f"{name}: median training seconds", f"{statistics.median(r[1] for r in rows[name]):.0f}", "", None))
    ratio = statistics.median(r[1] for r in rows["ours"]) / statistics.median(r[1] for r in rows["maskable"])
    table.append(("training time ours / MaskablePPO", f"{ratio:.2f}x", "", None))
    print_table(table, header=f"heuristic mean test accuracy {heuristic.mean():.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
