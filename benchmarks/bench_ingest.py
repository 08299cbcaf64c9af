"""Benchmark: ingestion of 300 generated 75-step raw runs, against a plain DuckDB load of the same files.

    .venv/bin/python benchmarks/bench_ingest.py [--runs 300] [--repeats 3] [--work var/bench_ingest]

The files: three real 75-step episodes are generated once (cached under --work/seed_runs, reused by later
runs; one per controller kind, synthetic dataset), then copied to --runs files under new run ids (the run id is
rewritten everywhere in the text, so every copy is a distinct run, with its own content hash, and real step
content). Copies keep the set-up to seconds, and the parser's cost does not depend on which episode a line
comes from (same fields, same ~7 KB lines), so copies measure it.

Measured, each --repeats times into a fresh warehouse file, interleaved, median reported with every run:
- ingest: `tamiyo_models.warehouse.ingest_folder` with its defaults (parse, features, pandera validation,
  quarantine split, insert of all tables in one transaction per batch, ingest log); with 2 CPUs the default
  parses in the writing process (see `ingest.default_workers`);
- ingest, 2 worker processes: the same with IngestConfig(workers=2); its first run in a process also pays the
  forkserver's start (it imports the parser and torch), the later ones fork from it;
- ingest without validation (IngestConfig(validate=False)): the cost of the pandera pass alone;
- plain load: DuckDB `read_json` of the same files into one table (no features, no checks): the baseline;
- orjson only: read every file and `orjson.loads` every line, nothing else (no checks, features, storage):
  the floor under any Python ingestion of these files, to show how far 50,000 steps/s is.
Targets from issue 3: >= 50,000 steps/s and <= 2x the plain load.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson

from tamiyo_models.warehouse import IngestConfig, ingest_folder
from tamiyo_models.warehouse.ingest import default_workers


@dataclass
class BenchConfig:
    runs: int = 300
    epochs: int = 75
    repeats: int = 3
    work: Path = Path("var/bench_ingest")


def seed_runs(config: BenchConfig) -> list[Path]:
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.rawrun import list_raw_runs

    folder = config.work / "seed_runs"
    existing = list_raw_runs(folder) if folder.exists() else []
    if len(existing) >= 3:
        return existing
    for seed, kind in enumerate(("random", "epsilon-heuristic", "heuristic")):
        episode = EpisodeConfig(
            max_epochs=config.epochs,
            seed=seed,
            dataset=DatasetConfig(name="synthetic"),
            controller=ControllerConfig(kind=kind),
        )
        run_episode(episode, folder)
    return list_raw_runs(folder)


def landing_folder(config: BenchConfig, seeds: list[Path]) -> tuple[Path, int]:
    folder = config.work / f"landing_{config.runs}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    steps = 0
    texts = [(p.stem, p.read_text()) for p in seeds]
    for i in range(config.runs):
        old_id, text = texts[i % len(texts)]
        new_id = f"run-{i:016x}"
        (folder / f"{new_id}.jsonl").write_text(text.replace(old_id, new_id))
        steps += text.count('"type":"step"')
    return folder, steps


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(config: BenchConfig) -> None:
    seeds = seed_runs(config)
    folder, steps = landing_folder(config, seeds)
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=config.work))

    def fresh(name: str) -> Path:
        path = scratch / f"{name}.duckdb"
        path.unlink(missing_ok=True)
        return path

    def plain() -> None:
        with duckdb.connect(str(fresh("plain"))) as con:
            con.execute(
                f"CREATE TABLE raw AS SELECT * FROM read_json('{folder}/*.jsonl', format='newline_delimited')"
            )

    def ingest() -> None:
        summary = ingest_folder(folder, fresh("ingest"))
        assert summary.steps_loaded == steps, summary.line()

    def ingest_two_workers() -> None:
        summary = ingest_folder(folder, fresh("pool"), IngestConfig(workers=2))
        assert summary.steps_loaded == steps, summary.line()

    def ingest_unvalidated() -> None:
        ingest_folder(folder, fresh("novalid"), IngestConfig(validate=False))

    def orjson_only() -> None:
        for path in sorted(folder.iterdir()):
            for line in path.read_bytes().splitlines():
                orjson.loads(line)

    cases = {
        "plain duckdb load": plain,
        "ingest": ingest,
        "ingest, 2 worker procs": ingest_two_workers,
        "ingest without pandera": ingest_unvalidated,
        "orjson only (floor)": orjson_only,
    }
    results = {name: [] for name in cases}
    for _ in range(config.repeats):  # interleaved, so a burst of load from elsewhere hits every case alike
        for name, case in cases.items():
            results[name].append(timed(case))
    shutil.rmtree(scratch)

    print(f"machine: {platform.node()} {platform.machine()} {_cpu_model()}, {os.cpu_count()} logical CPUs, "
          f"python {platform.python_version()}, duckdb {duckdb.__version__}, load average {_load()}, "
          f"default parser processes {default_workers()}")  # fmt: skip
    print(f"data: {config.runs} runs x {config.epochs} steps = {steps} steps, {size_mb:.0f} MB of JSON Lines")
    baseline = statistics.median(results["plain duckdb load"])
    for name, seconds in results.items():
        median = statistics.median(seconds)
        print(
            f"{name:<24} median {median:6.2f} s  ({', '.join(f'{s:.2f}' for s in seconds)})  "
            f"{steps / median:9,.0f} steps/s  {median / baseline:4.2f}x plain"
        )
    median = statistics.median(results["ingest"])
    print(f"targets: >= 50,000 steps/s: {'met' if steps / median >= 50_000 else 'NOT met'}; "
          f"<= 2x plain load: {'met' if median <= 2 * baseline else 'NOT met'}")  # fmt: skip


def _load() -> str:
    # The VM's CPUs are shared: the load says how much of them the other tenants took during the run.
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=BenchConfig.runs)
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--work", type=Path, default=BenchConfig.work)
    args = parser.parse_args(argv)
    bench(BenchConfig(runs=args.runs, repeats=args.repeats, work=args.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
