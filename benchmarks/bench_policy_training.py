"""Updates per second of our Phase 1 imitation training vs d3rlpy's DiscreteBC, same data and network size.

Same decisions (from a warehouse, split by episode), same MLP 256-128-64 with BatchNorm and dropout 0.3,
batch 256, Adam-family optimiser at 1e-3, one CPU thread, coarse 4-way labels. Each side runs `--updates`
gradient updates, `--repeats` times; the table shows medians and the ratio, then the balanced accuracy each
reaches on the held-out episodes (so "faster" is at comparable accuracy). d3rlpy is a benchmark-only
dependency (`pip install d3rlpy==2.8.1 -c requirements.lock`).

    .venv/bin/python benchmarks/bench_policy_training.py --warehouse warehouse/tamiyo.duckdb
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import machine  # benchmarks/_common.py (the script's folder is on sys.path)


def ours(train, val, updates: int, seed: int):
    from tamiyo_models.policies import ImitationConfig, train_imitation

    epochs = max(1, round(updates / max(1, len(train) // 256)))
    result = train_imitation(train, val, ImitationConfig(feature_set=FEATURE_SET, epochs=epochs, seed=seed))
    return result.updates_per_second, sum(len(range(0, result.n_train, 256)) for _ in result.history), result.best.val_balanced_accuracy


def d3rlpy_bc(train, val, updates: int, seed: int):
    import d3rlpy
    import torch

    from tamiyo_models.policies.data import arrays, feature_names
    from tamiyo_models.policies.metrics import balanced_accuracy, confusion_matrix

    features = feature_names(FEATURE_SET)
    tr, va = arrays(train, features), arrays(val, features)
    terminals = np.zeros(len(tr["x"]), np.float32)
    terminals[np.r_[np.flatnonzero(train["run_id"].to_numpy()[1:] != train["run_id"].to_numpy()[:-1]), len(terminals) - 1]] = 1
    dataset = d3rlpy.dataset.MDPDataset(tr["x"], tr["coarse"][:, None], train["reward"].fill_null(0).to_numpy().astype(np.float32)[:, None],
                                        terminals, action_size=4)  # fmt: skip
    d3rlpy.seed(seed)
    torch.set_num_threads(1)
    bc = d3rlpy.algos.DiscreteBCConfig(
        batch_size=256, learning_rate=1e-3,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        encoder_factory=d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[256, 128, 64], use_batch_norm=True, dropout_rate=0.3),
    ).create(device="cpu")  # fmt: skip
    bc.build_with_dataset(dataset)
    started = time.perf_counter()
    bc.fit(dataset, n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10**9,
           logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    seconds = time.perf_counter() - started
    predicted = bc.predict(va["x"])
    return updates / seconds, updates, balanced_accuracy(confusion_matrix(va["coarse"], predicted, 4))


FEATURE_SET = "full"


def main() -> None:
    global FEATURE_SET
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--feature-set", default="full")
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    FEATURE_SET = args.feature_set

    from tamiyo_models.policies import load_decisions, split_episodes

    frame = load_decisions(args.warehouse, FEATURE_SET, controllers=("heuristic",))
    train, val = split_episodes(frame, 0.2, seed=0).frames(frame)
    print(f"machine: {machine()}")
    print(f"data: {len(train)} training / {len(val)} held-out decisions, feature set {FEATURE_SET} ({train['run_id'].n_unique()} episodes)")
    rows = {}
    for name, fn in (("tamiyo train_imitation", ours), ("d3rlpy DiscreteBC", d3rlpy_bc)):
        runs = [fn(train, val, args.updates, seed) for seed in range(args.repeats)]
        rows[name] = runs
        ups = [r[0] for r in runs]
        print(f"{name:24s} updates/s median {statistics.median(ups):8.1f} (runs: {', '.join(f'{u:.0f}' for u in ups)}), "
              f"~{runs[0][1]} updates, held-out balanced accuracy median {statistics.median(r[2] for r in runs):.4f}")  # fmt: skip
    ratio = statistics.median(r[0] for r in rows["tamiyo train_imitation"]) / statistics.median(r[0] for r in rows["d3rlpy DiscreteBC"])
    print(f"ratio (ours / d3rlpy): {ratio:.2f}x")


if __name__ == "__main__":
    main()
