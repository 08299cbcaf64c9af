"""Our discrete CQL and FQE against d3rlpy's DiscreteCQL and DiscreteFQE: gradient updates per second on the
same transitions with the same network (MLP 256-256, ReLU, standardised inputs), one thread, and the held-out
TD error each reaches in the same number of updates.

    .venv/bin/python benchmarks/bench_offline_rl.py [--warehouse W] [--updates 3000] [--repeats 3]

Without --warehouse, a small warehouse of synthetic exploration episodes (with branches) is built first.
Target (issue 12): >= 2x d3rlpy's updates/s at equal or better held-out TD error. The TD error of both is
computed by the same function here: squared error of Q(s, a) against r + gamma * max over the legal actions
of s' of the model's own Q (d3rlpy's models know nothing of legal actions; the max is masked for both).
And the two FQEs' estimates of one policy whose actions are always legal (never grow), which must agree within
d3rlpy's own run-to-run spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, print_table  # benchmarks/_common.py (the script's folder is on sys.path)

GAMMA, REWARD_SCALE, HIDDEN, BATCH, LR = 1.0, 0.1, (256, 256), 256, 3e-4


def build_warehouse(root: Path) -> Path:
    from tamiyo_models.episodes.generation import GenerationSpec, generate
    from tamiyo_models.warehouse import ingest_folder

    spec = GenerationSpec.from_dict({
        "name": "bench", "base": {"max_epochs": 12, "dataset": {"name": "synthetic"}},
        "controllers": [{"kind": "epsilon-heuristic", "epsilon": 0.3, "weight": 1},
                        {"kind": "random", "random_weights": {"WAIT": 6, "GERMINATE": 1, "ADVANCE": 2, "CULL": 1}, "weight": 1}],
        "branching": {"horizon": 3, "max_forks": 2},
    })  # fmt: skip
    generate(spec.sample(40, 5), root / "raw", workers=2, branching=spec.branching)
    ingest_folder(root / "raw", root / "w.duckdb")
    return root / "w.duckdb"


def td_error(q_all, data) -> float:
    """Mean squared TD error on `data` for a function obs -> Q[N, A] (rewards scaled as in training)."""
    q, q_next = q_all(data.observations), q_all(data.next_observations)
    taken = q[np.arange(len(data)), data.actions]
    best_next = np.where(data.next_legal, q_next, -np.inf).max(axis=1)
    best_next = np.where(np.isfinite(best_next), best_next, 0.0)
    y = data.rewards * REWARD_SCALE + GAMMA * (1 - data.terminated) * best_next
    return float(np.mean((taken - y) ** 2))


def ours_cql(train, held, updates, seed):
    from tamiyo_models.offline_rl.cql import CQLConfig, train_cql

    config = CQLConfig(alpha=1.0, hidden=HIDDEN, learning_rate=LR, batch_size=BATCH, updates=updates, gamma=GAMMA,
                       reward_scale=REWARD_SCALE, checkpoints=1, seed=seed, layer_norm=False)  # fmt: skip
    t0 = time.perf_counter()
    result = train_cql(train, config, log=lambda *_: None)
    seconds = time.perf_counter() - t0
    q = result.module
    with torch.no_grad():
        error = td_error(lambda x: q.raw_logits(torch.as_tensor(x)).numpy(), held)
    return updates / seconds, error, q


def d3rlpy_cql(train, held, updates, seed):
    import d3rlpy

    from tamiyo_models.transitions import to_d3rlpy

    d3rlpy.seed(seed)
    algo = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=BATCH, gamma=GAMMA, learning_rate=LR, alpha=1.0, target_update_interval=200,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(REWARD_SCALE),
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN)),
    ).create(device="cpu:0")  # fmt: skip
    dataset = to_d3rlpy(train)
    t0 = time.perf_counter()
    algo.fit(dataset, n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10**9,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    seconds = time.perf_counter() - t0
    n_actions = held.legal.shape[1]

    def q_all(x):
        x = np.asarray(x, np.float32)
        return np.stack([algo.predict_value(x, np.full(len(x), a)) for a in range(n_actions)], axis=1)

    return updates / seconds, td_error(q_all, held), algo


def ours_fqe(policy, train, held, updates, seed):
    from tamiyo_models.ope.fqe import FQEConfig, fit_fqe

    # The learners' tau, as the cross-check in docs/offline-rl.md was recorded (FQE's own default is 0.02).
    config = FQEConfig(hidden=HIDDEN, learning_rate=LR, batch_size=BATCH, updates=updates, gamma=GAMMA,
                       reward_scale=REWARD_SCALE, seed=seed, layer_norm=False, target_tau=0.005)  # fmt: skip
    t0 = time.perf_counter()
    fit_fqe(policy, train, config)
    return updates / (time.perf_counter() - t0)


def d3rlpy_fqe(algo, train, updates, seed):
    import d3rlpy

    from tamiyo_models.transitions import to_d3rlpy

    d3rlpy.seed(seed)
    fqe = d3rlpy.ope.DiscreteFQE(algo=algo, config=d3rlpy.ope.FQEConfig(
        batch_size=BATCH, gamma=GAMMA, learning_rate=LR, target_update_interval=200,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(REWARD_SCALE),
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN))), device="cpu:0")  # fmt: skip
    t0 = time.perf_counter()
    fqe.fit(to_d3rlpy(train), n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10**9,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    return updates / (time.perf_counter() - t0)


def fqe_never_estimates(train, updates, seed) -> tuple[float, float]:
    """V(s0) of never-grow (WAIT at every decision, always legal) by our FQE and by d3rlpy's DiscreteFQE on the
    same data, in pp. d3rlpy evaluates one of its own algorithms: a DiscreteBC fitted to WAIT everywhere."""
    import d3rlpy
    from d3rlpy.dataset import MDPDataset

    from tamiyo_models.controllers import build_controller, reference_controller
    from tamiyo_models.ope.fqe import FQEConfig, episode_starts, fit_fqe
    from tamiyo_models.ope.report import ControllerPolicy
    from tamiyo_models.transitions import to_d3rlpy
    from tamiyo_models.world.actions import FINE_ACTIONS

    wait = FINE_ACTIONS.index("WAIT")
    config = FQEConfig(hidden=HIDDEN, learning_rate=LR, batch_size=BATCH, updates=updates, gamma=GAMMA,
                       reward_scale=REWARD_SCALE, seed=seed, layer_norm=False, target_tau=0.005)  # fmt: skip
    ours = fit_fqe(ControllerPolicy(build_controller(reference_controller("never")), train.feature_names), train, config).value

    d3rlpy.seed(seed)
    exported = to_d3rlpy(train)
    all_wait = MDPDataset(observations=train.observations.astype(np.float32), actions=np.full((len(train), 1), wait),
                          rewards=train.rewards.reshape(-1, 1).astype(np.float32),
                          terminals=np.zeros(len(train), np.float32), timeouts=_ends(train))  # fmt: skip
    never = d3rlpy.algos.DiscreteBCConfig(batch_size=BATCH).create(device="cpu:0")
    never.fit(all_wait, n_steps=300, n_steps_per_epoch=300, show_progress=False, save_interval=10**9,
              logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    assert (never.predict(train.observations.astype(np.float32)) == wait).all(), "the d3rlpy stand-in must always WAIT"
    fqe = d3rlpy.ope.DiscreteFQE(algo=never, config=d3rlpy.ope.FQEConfig(
        batch_size=BATCH, gamma=GAMMA, learning_rate=LR, target_update_interval=200,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(REWARD_SCALE),
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN))), device="cpu:0")  # fmt: skip
    fqe.fit(exported, n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10**9,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    starts = train.observations[episode_starts(train)].astype(np.float32)
    theirs = float(fqe.predict_value(starts, np.full(len(starts), wait)).mean()) / REWARD_SCALE
    return ours, theirs


def _ends(data) -> np.ndarray:
    ends = np.zeros(len(data), np.float32)
    for rows in data.episode_slices():
        ends[rows.stop - 1] = 1.0
    return ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument("--feature-set", default="base+lifecycle+task")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tamiyo_models.transitions import load_transitions

    with tempfile.TemporaryDirectory() as tmp:
        warehouse = args.warehouse or build_warehouse(Path(tmp))
        data = load_transitions(warehouse, args.feature_set)
        train, held = data.split_by_family(0.2, seed=0)
        speed = {k: [] for k in ("ours_cql", "d3_cql", "ours_fqe", "d3_fqe")}
        errors = {k: [] for k in ("ours_cql", "d3_cql")}
        never = {"ours": [], "d3rlpy": []}
        for r in range(args.repeats):  # interleaved
            s, e, q = ours_cql(train, held, args.updates, r)
            speed["ours_cql"].append(s), errors["ours_cql"].append(e)
            s, e, algo = d3rlpy_cql(train, held, args.updates, r)
            speed["d3_cql"].append(s), errors["d3_cql"].append(e)
            speed["ours_fqe"].append(ours_fqe(q, train, held, args.updates, r))
            speed["d3_fqe"].append(d3rlpy_fqe(algo, train, args.updates, r))
            ours, theirs = fqe_never_estimates(train, args.updates, r)
            never["ours"].append(ours), never["d3rlpy"].append(theirs)
    med = {k: statistics.median(v) for k, v in speed.items()}
    cql_ratio = statistics.median(a / b for a, b in zip(speed["ours_cql"], speed["d3_cql"]))
    fqe_ratio = statistics.median(a / b for a, b in zip(speed["ours_fqe"], speed["d3_fqe"]))
    e_ours, e_d3 = statistics.median(errors["ours_cql"]), statistics.median(errors["d3_cql"])
    # The estimates' agreement: medians apart by no more than d3rlpy's own spread over seeds (max - min).
    gap = abs(statistics.median(never["ours"]) - statistics.median(never["d3rlpy"]))
    d3_range = max(never["d3rlpy"]) - min(never["d3rlpy"])
    rows = [
        ("CQL updates/s, ours", f"{med['ours_cql']:.0f}", "", None),
        ("CQL updates/s, d3rlpy DiscreteCQL", f"{med['d3_cql']:.0f}", "", None),
        ("CQL speed, ours / d3rlpy", f"{cql_ratio:.2f}x", ">= 2x", cql_ratio >= 2),
        ("CQL held-out TD error, ours", f"{e_ours:.4f}", "", None),
        ("CQL held-out TD error, d3rlpy", f"{e_d3:.4f}", "", None),
        ("TD error, ours <= d3rlpy", f"{e_ours / e_d3:.2f}x", "<= 1x", e_ours <= e_d3),
        ("FQE updates/s, ours", f"{med['ours_fqe']:.0f}", "", None),
        ("FQE updates/s, d3rlpy DiscreteFQE", f"{med['d3_fqe']:.0f}", "", None),
        ("FQE speed, ours / d3rlpy", f"{fqe_ratio:.2f}x", ">= 2x", fqe_ratio >= 2),
        ("FQE V(s0) of never-grow, ours (pp)", _spread(never["ours"]), "", None),
        ("FQE V(s0) of never-grow, d3rlpy (pp)", _spread(never["d3rlpy"]), "", None),
        ("|ours - d3rlpy| within d3rlpy's run-to-run range", f"{gap:.2f} vs {d3_range:.2f}", "<=", gap <= d3_range),
    ]
    print(f"machine: {machine()}")
    print_table(rows, f"data: {len(train)} training / {len(held)} held-out transitions ({args.feature_set}); "
                f"{args.updates} updates, batch {BATCH}, MLP {HIDDEN}; repeats {args.repeats} (medians)\n")  # fmt: skip
    return 0


def _spread(values) -> str:
    return f"{statistics.median(values):+.2f} ({min(values):+.2f}..{max(values):+.2f})"


if __name__ == "__main__":
    sys.exit(main())
