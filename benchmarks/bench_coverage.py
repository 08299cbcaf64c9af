"""Counterfactual coverage at equal compute: heuristic-only data vs exploration alone vs exploration + branching.

    .venv/bin/python benchmarks/bench_coverage.py [--epochs 6000] [--workers 2] [--k 100] [--m 5]

Three batches on the embedded task (digits), each grown until it has trained about `--epochs` epochs in total
(branch epochs included), with the same diversity of hosts and data regimes (the shipped `exploration` spec's
[vary] table):
  A  heuristic only (the reference's situation: a deterministic behaviour policy);
  B  exploration controllers only (epsilon-greedy, softmax and perturbed heuristics, random; no branching);
  C  the same controllers plus branching: the first half of the budget forks at decision points (the shipped
     `exploration` spec); then a coverage analysis finds the clusters with fewer than two well-sampled actions
     (holes), and the second half forks exactly in those (active filling of holes).
Each batch is ingested into its own warehouse. One k-means abstraction (k clusters on the base features),
fitted on A, B and the first half of C and saved, assigns the states of all three batches, and coverage is
computed with the same m. "Covered action pairs"
counts (cluster, action, other action) triples where both actions have >= m samples: the comparisons an
offline learner can make. Prints the table, CPU seconds, and pairs per CPU-hour, and the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from tamiyo_models.coverage import AbstractionConfig, CoverageConfig, KMeansAbstraction, analyse_coverage
from tamiyo_models.coverage.data import load_decision_states
from tamiyo_models.coverage.holes import write_holes
from tamiyo_models.episodes.branching import BranchConfig
from tamiyo_models.episodes.generation import GenerationSpec, generate
from tamiyo_models.warehouse import ingest_folder

sys.path.insert(0, str(Path(__file__).parent))
from bench_generation import machine  # noqa: E402


def batch_specs() -> dict[str, GenerationSpec]:
    exploration = GenerationSpec.load("exploration")
    heuristic = copy.deepcopy(exploration)
    heuristic.name, heuristic.controllers, heuristic.branching = "heuristic-only", [{"kind": "heuristic", "weight": 1}], None
    no_branching = copy.deepcopy(exploration)
    no_branching.name, no_branching.branching = "exploration-only", None
    return {"A heuristic only": heuristic, "B exploration, no branching": no_branching, "C exploration + branching": exploration}


def count_epochs(folder: Path) -> int:
    return sum(sum(1 for line in p.open() if '"type":"step"' in line) for p in folder.glob("*.jsonl"))


def grow(spec: GenerationSpec, out: Path, epochs: int, workers: int, seed: int, offset: int = 0) -> tuple[int, float, int]:
    """Generate chunks until about `epochs` more epochs are trained; returns (epochs, CPU seconds, next offset)."""
    start = count_epochs(out) if out.exists() else 0
    trained, cpu, per_episode, generated = 0, 0.0, None, 0
    while trained < epochs:
        # Chunks sized from the epochs per episode measured so far (branching adds an unknown number; a small
        # first chunk measures it), so the batch ends close to the budget without many pool start-ups.
        chunk = 2 * workers if per_episode is None else max(workers, round((epochs - trained) / per_episode))
        configs = spec.sample(offset + chunk, seed)[offset:]
        offset += chunk
        results = generate(configs, out, workers=workers, branching=spec.branching)
        cpu += sum(r.wall_seconds for r in results)  # a parent's wall time includes its branches
        trained = count_epochs(out) - start
        generated += chunk
        per_episode = max(1.0, trained / generated)
    return trained, cpu, offset


def covered_pairs(actions: pl.DataFrame, m: int) -> int:
    per_cluster = actions.filter(pl.col("n") >= m).group_by("cluster").len()
    return int(sum(n * (n - 1) // 2 for n in per_cluster["len"].to_list()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6000, help="training epochs per batch (compute budget)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--keep", help="keep the batches and warehouses in this folder")
    parser.add_argument("--reuse", action="store_true", help="with --keep: reuse batches A and B found there")
    parser.add_argument("--fill-forks", type=int, default=6, help="forks per episode while filling holes")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_coverage_"))
    specs = batch_specs()
    rows, states = {}, {}
    half = args.epochs // 2
    for label, spec in specs.items():
        folder = work / spec.name
        if args.reuse and not label.startswith("C") and (folder / "rows.json").exists():
            rows[label] = json.loads((folder / "rows.json").read_text())
            states[label] = load_decision_states(folder / "warehouse.duckdb", feature_set="full")
            print(f"{label}: reused {rows[label]}", file=sys.stderr)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        budget = half if label.startswith("C") else args.epochs
        trained, cpu, offset = grow(spec, folder / "raw", budget, args.workers, args.seed)
        rows[label] = {"epochs": trained, "cpu_s": cpu, "wall_s": time.perf_counter() - t0, "offset": offset}
        ingest_folder(folder / "raw", folder / "warehouse.duckdb")
        states[label] = load_decision_states(folder / "warehouse.duckdb", feature_set="full")
        (folder / "rows.json").write_text(json.dumps(rows[label]))
        print(f"{label}: {rows[label]}", file=sys.stderr)

    # One abstraction for everything, saved: fitted on A, B and the first half of C.
    abstraction = AbstractionConfig(k=args.k)
    model = KMeansAbstraction.fit(pl.concat(list(states.values()), how="vertical_relaxed"), abstraction)
    model_file = model.save(work / "abstraction.json")
    c_label, c_spec = "C exploration + branching", specs["C exploration + branching"]
    c_folder = work / c_spec.name
    holes = write_holes(work / "holes.json", model_file, analyse_coverage(states[c_label], model.assign(states[c_label]), CoverageConfig(min_samples=args.m)))
    filling = copy.deepcopy(c_spec)
    filling.branching = BranchConfig(horizon=c_spec.branching.horizon, max_forks=args.fill_forks, coarse_only=True,
                                     fork_rule="holes", holes_file=str(holes))  # fmt: skip
    t0 = time.perf_counter()
    trained, cpu, _ = grow(filling, c_folder / "raw", args.epochs - rows[c_label]["epochs"], args.workers, args.seed,
                           offset=rows[c_label]["offset"])  # fmt: skip
    rows[c_label] = {"epochs": rows[c_label]["epochs"] + trained, "cpu_s": rows[c_label]["cpu_s"] + cpu,
                     "wall_s": rows[c_label]["wall_s"] + time.perf_counter() - t0}  # fmt: skip
    ingest_folder(c_folder / "raw", c_folder / "warehouse.duckdb")
    states[c_label] = load_decision_states(c_folder / "warehouse.duckdb", feature_set="full")
    for label, spec in specs.items():
        rows[label]["runs"] = len(list((work / spec.name / "raw").glob("*.jsonl")))
    print(f"{c_label} after filling holes: {rows[c_label]}", file=sys.stderr)

    config = CoverageConfig(min_samples=args.m)
    print(f"machine: {machine()}")
    print(f"compute budget: ~{args.epochs} epochs per batch; k-means k={args.k} on the '{abstraction.feature_set}' "
          f"features (fitted on A, B and the first half of C, saved); m={args.m}; coarse actions\n")  # fmt: skip
    header = f"{'batch':<30} {'runs':>5} {'epochs':>7} {'CPU s':>7} {'states':>7} {'clusters':>8} {'coverage':>9} {'states in':>9} {'1-action':>9} {'pairs':>6} {'pairs/CPU-h':>11}"
    print(header)
    for label, frame in states.items():
        result = analyse_coverage(frame, model.assign(frame), config)
        s, r = result.summary, rows[label]
        pairs = covered_pairs(result.actions, args.m)
        print(
            f"{label:<30} {r['runs']:>5} {r['epochs']:>7} {r['cpu_s']:>7.0f} {s['states']:>7} {s['clusters']:>8} "
            f"{100 * s['coverage_clusters']:>8.1f}% {100 * s['coverage_states']:>8.1f}% {100 * s['single_action_share']:>8.1f}% "
            f"{pairs:>6} {pairs / (r['cpu_s'] / 3600):>11.0f}"
        )
    print("\ncoverage: share of clusters where >= 2 actions have >= m samples; states in: share of decision states in "
          "covered clusters; 1-action: share of clusters with a single action; pairs: covered (cluster, action pair)s.")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
