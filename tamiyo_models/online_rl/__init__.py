"""Phase 4: online RL in the live environment (docs/online-rl.md).

    train_reinforce(envs, agent, ReinforceConfig)   reinforce.py  (Monte-Carlo returns, learned baseline)
    train_a2c(envs, agent, A2CConfig)               a2c.py        (GAE advantages, one update per batch)
    train_ppo(envs, agent, PPOConfig)               ppo.py        (clipped objective, GAE, KL early stop)
    the shared loop                                 loop.py       (budget in episodes, critic warm-up, KL to the
                                                                   initial policy, checkpoint and resume)
    collect_episodes / gae / build_batch            rollout.py
    HackingWatch, ActionBonus                       hacking.py    (reward-hacking symptoms)
    distil_policy / distil_policy_file              distil.py     (a near-deterministic start, e.g. BCQ, as a
                                                                   stochastic actor, by label-smoothed imitation)
    train_vine(policy, out, VineConfig)             vine.py       (branching policy iteration: every action tried
                                                                   from the same state with common random numbers)
    train_online_policy(config, out)                workflow.py   (TamiyoEnv workers, raw runs, MLflow)
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    "ReinforceConfig": "reinforce", "train_reinforce": "reinforce",
    "A2CConfig": "a2c", "train_a2c": "a2c",
    "PPOConfig": "ppo", "train_ppo": "ppo",
    "OnlineConfig": "loop", "OnlineResult": "loop",
    "HackingWatch": "hacking", "ActionBonus": "hacking",
    "OnlineRunConfig": "workflow", "train_online_policy": "workflow",
    "DistilConfig": "distil", "distil_policy": "distil", "distil_policy_file": "distil",
    "VineConfig": "vine", "train_vine": "vine",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
