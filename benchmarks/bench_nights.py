"""Benchmark: nights of arena runs ingested one after another into one warehouse (issue 37).

    .venv/bin/python benchmarks/bench_nights.py [--nights 10] [--runs-per-night 1800] [--archive-after 0]
                                                [--query-repeats 3] [--no-baseline] [--work var/bench_nights]

The runs: a few real episodes (25 epochs, the arena's length; synthetic dataset; one per controller kind) are
generated once and cached under --work/seed_runs. Each night copies them to --runs-per-night files under fresh
run ids, and multiplies every per-layer gradient statistic, weight norm and sharpness value of every step by
(1 + 1% noise), so that no two files hold the same telemetry and compression is not flattered by identical
copies (decisions, rewards and accuracies are kept: they must stay consistent for validation).

Each night, in one process, as the nightly loop runs it:
- ingest: `ingest_files` into the one warehouse (a write connection, as `tamiyo ingest`); then the night's runs
  get `ingested_at` on a day of their own (2027-01-01 + night), since here nights run minutes apart;
- publish: `publish_snapshot`, the read snapshot readers use;
- archive: landing files stored --archive-after nights ago or more move, zstd-compressed, into the archive
  (tamiyo_models/warehouse/archive.py; --archive-after -1 keeps them);
- compact: the DuckDB file is rewritten without its free blocks once --compact-when-free of it is free (as
  the episode_tables asset does; `*` marks the nights it happened);
- sizes: the DuckDB file, the snapshot (hard-linked parts once), the landing folder, the archive;
- the five README questions (docs/warehouse.md) through the `tamiyo sql` command line, each --query-repeats
  times, median (start-up included: what a person waits for); and `SELECT 1`, the start-up alone;
- baseline: DuckDB's `read_json` of the same night's files into a fresh file (the plain load of issue 3).
Targets (issue 37): ingest and publication flat within 20% over the nights; at most 150 MB of disk per
1,800-episode night, all stores together; ingest within 1.5x the plain load.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

QUESTIONS = {
    "q1 outcomes": "SELECT * FROM outcomes_by_controller ORDER BY dataset, mean_final_accuracy DESC",
    "q2 actions": "SELECT controller_kind, action_coarse, sum(share_pct) AS pct FROM action_distribution GROUP BY ALL ORDER BY ALL",
    "q3 blueprints": "SELECT * FROM seed_success_rates ORDER BY success_pct DESC",
    "q4 plateaus": "SELECT plateau_epochs, count(*) AS germinations FROM plateau_before_germination GROUP BY ALL ORDER BY 1",
    "q5 reward": "SELECT * FROM reward_by_stage WHERE action_coarse = 'ADVANCE' ORDER BY mean_reward DESC",
    "select 1": "SELECT 1",
}
FIRST_NIGHT = date(2027, 1, 1)
KINDS = ("random", "epsilon-heuristic", "heuristic", "softmax-heuristic", "perturbed-heuristic", "never")


@dataclass
class Config:
    nights: int = 10
    runs_per_night: int = 1800
    epochs: int = 25
    archive_after: int = 0
    compact_when_free: float = 0.25  # as the episode_tables asset: compact once a quarter of the file is free
    query_repeats: int = 3
    baseline: bool = True
    work: Path = Path("var/bench_nights")


def seed_runs(config: Config) -> list[Path]:
    from tamiyo_models.controllers import ControllerConfig
    from tamiyo_models.episodes.episode import EpisodeConfig, run_episode
    from tamiyo_models.world.datasets import DatasetConfig
    from tamiyo_models.world.rawrun import list_raw_runs

    folder = config.work / f"seed_runs_{config.epochs}"
    existing = list_raw_runs(folder) if folder.exists() else []
    if len(existing) >= len(KINDS):
        return existing
    for seed, kind in enumerate(KINDS):
        episode = EpisodeConfig(max_epochs=config.epochs, seed=seed, dataset=DatasetConfig(name="synthetic"),
                                controller=ControllerConfig(kind=kind))  # fmt: skip
        run_episode(episode, folder)
    return list_raw_runs(folder)


def _jitter(value, rng: random.Random):
    # Rounded to float32, as the generator's values are (torch measures in float32): a float64 with 17 random
    # digits would be noise no real run has, and would hide what float32 storage gives.
    if type(value) is not float:
        return value
    return struct.unpack("f", struct.pack("f", value * (1.0 + rng.gauss(0.0, 0.01))))[0]


def _perturb_observation(observation: dict, rng: random.Random) -> None:
    telemetry = observation.get("telemetry")
    if type(telemetry) is not dict:
        return
    for layer in (telemetry.get("gradients") or {}).get("layers") or ():
        for key in ("norm", "norm_std", "mean", "std"):
            layer[key] = _jitter(layer.get(key), rng)
        percentiles = layer.get("percentiles") or {}
        for key in percentiles:
            percentiles[key] = _jitter(percentiles[key], rng)
    norms = telemetry.get("weight_norms") or {}
    for key in norms:
        norms[key] = _jitter(norms[key], rng)
    telemetry["sharpness"] = _jitter(telemetry.get("sharpness"), rng)


def fresh_copy(lines: list[bytes], old_id: str, new_id: str, rng: random.Random) -> bytes:
    out = []
    for line in lines:
        record = orjson.loads(line)
        if record.get("type") == "header":
            record["run_id"] = new_id
        elif record.get("type") == "step":
            _perturb_observation(record["observation"], rng)
        elif record.get("type") == "footer" and type(record.get("final_observation")) is dict:
            _perturb_observation(record["final_observation"], rng)
        out.append(orjson.dumps(record))
    text = b"\n".join(out) + b"\n"
    return text.replace(old_id.encode(), new_id.encode())


def write_night(config: Config, seeds: list[tuple[str, list[bytes]]], landing: Path, night: int) -> tuple[Path, int]:
    folder = landing / f"night-{night:03d}"
    folder.mkdir(parents=True)
    rng = random.Random(night)
    steps = 0
    for i in range(config.runs_per_night):
        old_id, lines = seeds[i % len(seeds)]
        new_id = f"run-{night:04x}{i:012x}"
        (folder / f"{new_id}.jsonl").write_bytes(fresh_copy(lines, old_id, new_id, rng))
        steps += len(lines) - 2
    return folder, steps


def tree_bytes(folder: Path) -> int:
    """Bytes under a folder, each inode once (snapshot versions share unchanged parts as hard links)."""
    seen, total = set(), 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        st = path.lstat()
        if path.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def sql_latency(warehouse: Path, sql: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tamiyo_models.cli", "sql", "--warehouse", str(warehouse),
                               "--format", "csv", sql], capture_output=True, text=True)  # fmt: skip
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"tamiyo sql failed: {done.stderr}")
    return statistics.median(times)


def plain_load(folder: Path, scratch: Path) -> float:
    path = scratch / "plain.duckdb"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE raw AS SELECT * FROM read_json('{folder}/*.jsonl', format='newline_delimited')")
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def bench(config: Config) -> None:
    from tamiyo_models.warehouse import IngestConfig
    from tamiyo_models.warehouse.archive import discover
    from tamiyo_models.warehouse.ingest import ingest_files
    from tamiyo_models.warehouse.snapshot import publish_snapshot, snapshot_dir
    from tamiyo_models.warehouse.store import open_warehouse

    if config.archive_after >= 0 or config.compact_when_free <= 1:
        from tamiyo_models.warehouse.archive import archivable, archive_landing
        from tamiyo_models.warehouse.disk import compact
    # Without archival and compaction the script runs on the code before issue 37 too (PYTHONPATH=<that tree>):
    # the baseline the sizes are compared with.
    seeds = [(p.stem, [line for line in p.read_bytes().splitlines() if line.strip()]) for p in seed_runs(config)]
    root = config.work / "run"
    if root.exists():
        shutil.rmtree(root)
    landing, scratch = root / "raw", root / "scratch"
    scratch.mkdir(parents=True)
    warehouse = root / "warehouse" / "tamiyo.duckdb"
    rows = []
    print(machine())
    print(f"{config.nights} nights x {config.runs_per_night} runs x {config.epochs} steps; archive after "
          f"{config.archive_after if config.archive_after >= 0 else 'never'} nights; seed runs: {len(seeds)} real episodes")  # fmt: skip
    header = (f"{'night':>5} {'steps':>7} {'raw MB':>7} {'ingest s':>8} {'plain s':>7} {'ratio':>5} {'publish s':>9} "
              f"{'archive s':>9} {'compact s':>9} {'db MB':>7} {'snap MB':>7} {'land MB':>7} {'arch MB':>7} {'total MB':>8} {'+MB':>6} "
              + " ".join(f"{q[:10]:>10}" for q in QUESTIONS))  # fmt: skip
    previous_total = 0
    for night in range(config.nights):
        folder, steps = write_night(config, seeds, landing, night)
        raw_mb = tree_bytes(folder) / 1e6
        baseline = plain_load(folder, scratch) if config.baseline else float("nan")
        con = open_warehouse(warehouse)
        try:
            started = time.perf_counter()
            summary = ingest_files(con, discover(landing), IngestConfig())
            ingest_s = time.perf_counter() - started
            assert summary.steps_loaded == steps, summary.line()
            # The nights run minutes apart here, not a day: stamp each night's runs with a day of their own, as
            # the nightly loop's would be, so that the snapshot's day parts and the archive's nights are real.
            day = (FIRST_NIGHT + timedelta(days=night)).isoformat()
            con.execute("UPDATE runs SET ingested_at = CAST(? AS TIMESTAMP) + INTERVAL 2 HOUR WHERE run_id LIKE ?",
                        [day, f"run-{night:04x}%"])  # fmt: skip
            started = time.perf_counter()
            publish_snapshot(con, warehouse)
            publish_s = time.perf_counter() - started
            eligible = archivable(con, config.archive_after, today=day) if config.archive_after >= 0 else {}
        finally:
            con.close()
        started = time.perf_counter()
        archive_landing(landing, eligible) if eligible else None
        archive_s = time.perf_counter() - started
        started = time.perf_counter()
        compacted = compact(warehouse, min_free_share=config.compact_when_free).done if config.compact_when_free <= 1 else False
        compact_s = time.perf_counter() - started
        sizes = {
            "db": sum(p.stat().st_size for p in warehouse.parent.glob("tamiyo.duckdb*") if p.is_file()),
            "snap": tree_bytes(snapshot_dir(warehouse)),
            "land": tree_bytes(landing) - tree_bytes(landing / ".archive"),
            "arch": tree_bytes(landing / ".archive"),
        }
        total = sum(sizes.values())
        latencies = {q: sql_latency(warehouse, sql, config.query_repeats) for q, sql in QUESTIONS.items()}
        row = dict(night=night + 1, steps=steps, raw=raw_mb, ingest=ingest_s, plain=baseline, publish=publish_s,
                   archive=archive_s, total=total, added=total - previous_total, **sizes, **latencies)  # fmt: skip
        rows.append(row)
        previous_total = total
        if night == 0:
            print(header)
        print(f"{row['night']:>5} {steps:>7,} {raw_mb:>7.1f} {ingest_s:>8.2f} {baseline:>7.2f} {ingest_s / baseline:>5.2f} "
              f"{publish_s:>9.2f} {archive_s:>9.2f} {compact_s:>8.2f}{'*' if compacted else ' '} {sizes['db'] / 1e6:>7.1f} {sizes['snap'] / 1e6:>7.1f} "
              f"{sizes['land'] / 1e6:>7.1f} {sizes['arch'] / 1e6:>7.1f} {total / 1e6:>8.1f} {row['added'] / 1e6:>6.1f} "
              + " ".join(f"{latencies[q]:>10.2f}" for q in QUESTIONS), flush=True)  # fmt: skip
    shutil.rmtree(scratch, ignore_errors=True)
    summarize(config, rows)


def summarize(config: Config, rows: list[dict]) -> None:
    def spread(key: str) -> tuple[float, float, bool]:
        values = [r[key] for r in rows[1:]] or [rows[0][key]]  # the first night also creates the file
        low, high = min(values), max(values)
        return low, high, high <= 1.2 * low

    scale = 1800 / config.runs_per_night
    # The slope from the first night's end to the last's: a compaction moves bytes between nights, not the trend.
    per_night = (rows[-1]["total"] - rows[0]["total"]) / (len(rows) - 1) if len(rows) > 1 else rows[0]["total"]
    ratio = statistics.median(r["ingest"] / r["plain"] for r in rows) if config.baseline else float("nan")
    print()
    print("targets (nights 2.. for the spreads; per-night disk scaled to 1,800 episodes):")
    for key, name in (("ingest", "ingest time"), ("publish", "publication time")):
        low, high, met = spread(key)
        # On a shared machine one slow night says more about the neighbours than about the warehouse: the
        # trend (last three nights' median over the first three's, nights 2..) is what growth would move.
        later = [r[key] for r in rows[1:]]
        trend = (f"{statistics.median(later[-3:]) / statistics.median(later[:3]):4.2f}: "
                 f"{'met' if abs(statistics.median(later[-3:]) / statistics.median(later[:3]) - 1) <= 0.2 else 'NOT met'}"
                 if len(later) >= 6 else "n/a (fewer than 7 nights)")  # fmt: skip
        print(f"  {name:<28} {low:6.2f}-{high:6.2f} s  max/min {high / low:4.2f}  flat within 20%: {'met' if met else 'NOT met'}; "
              f"trend (last 3 / first 3 medians) {trend}")  # fmt: skip
    disk = per_night * scale / 1e6
    print(f"  {'disk per night, all stores':<28} {per_night / 1e6:8.1f} MB per night (x{scale:.1f} = {disk:.0f} MB per "
          f"1,800 episodes)  <= 150 MB: {'met' if disk <= 150 else 'NOT met'}")  # fmt: skip
    print(f"  {'ingest / plain DuckDB load':<28} {ratio:8.2f}x median  <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}")
    last = rows[-1]
    print(f"  last night: db {last['db'] / 1e6:.1f} MB, snapshot {last['snap'] / 1e6:.1f} MB, landing "
          f"{last['land'] / 1e6:.1f} MB, archive {last['arch'] / 1e6:.1f} MB; `tamiyo sql` SELECT 1 {last['select 1']:.2f} s "
          f"(target < 0.5 s: {'met' if last['select 1'] < 0.5 else 'NOT met'})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=Config.nights)
    parser.add_argument("--runs-per-night", type=int, default=Config.runs_per_night)
    parser.add_argument("--epochs", type=int, default=Config.epochs, help="steps per seed run (default 25)")
    parser.add_argument("--archive-after", type=int, default=Config.archive_after,
                        help="archive landing files after this many nights (default 0: after their ingestion; -1: never)")
    parser.add_argument("--compact-when-free", type=float, default=Config.compact_when_free,
                        help="compact the DuckDB file after a night once this share of it is free (default 0.25; >1: never)")
    parser.add_argument("--query-repeats", type=int, default=Config.query_repeats)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain DuckDB load")
    parser.add_argument("--work", type=Path, default=Config.work)
    args = parser.parse_args(argv)
    bench(Config(args.nights, args.runs_per_night, args.epochs, args.archive_after, args.compact_when_free,
                 args.query_repeats, not args.no_baseline, args.work))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
