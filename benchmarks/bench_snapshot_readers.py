"""Benchmark: an ingestion of 300 runs while 8 reader processes query the warehouse's snapshot in a loop.

    .venv/bin/python benchmarks/bench_snapshot_readers.py [--runs 300] [--readers 8] [--repeats 5]
                                                          [--pause-ms 1000] [--sessions own|writer]

What it shows (issue 16): readers never wait for the writer and never stop it.
- every reader query answers (no lock errors, no missing files);
- no reader sees a partial ingestion: the ingestion commits in two transactions (200 + 100 files), and every
  state a reader sees is the one before the ingestion or the one after it, never the 200-file state between,
  and never the old one again once it saw the new one;
- the ingestion (publication of the snapshot included) takes at most 20% longer with the readers than
  without: each repeat runs both cases, into fresh warehouses, back to back in alternating order; the ratio of
  the medians is reported with every repeat's own ratio.

The data: the three generated 75-step seed runs of benchmarks/bench_ingest.py (cached under
--work/seed_runs) are ingested first as the warehouse's existing content, then 300 copies under new run ids
are the timed ingestion (see bench_ingest.py for why copies measure the parser fairly).

A reader is what a dashboard or a notebook loop does: it keeps a connection to the snapshot's views file and
opens the new version when `current` moves; each round it runs a consistency query (counts of four tables and
of ingestions) and a view (`outcomes_by_controller`), then pauses --pause-ms (default 1 s: eight people or
dashboards each re-querying every second, ~16 queries/s in all). A round costs a reader ~10-20 ms of CPU
(DuckDB binding the Parquet views), so with --pause-ms 100 the readers need ~0.8 of the two CPUs; that CPU is
taken from everybody, the ingestion included, however the readers read (see docs/warehouse.md, Speed).
Each reader runs in a session of its own (--sessions own), as separate terminals or notebook servers do:
with Linux's autogroup scheduling the CPUs are shared between sessions first. Everything is local files and
processes: no network. Bounded: the readers stop when the ingestion is done; --timeout caps the whole run.

The machine is shared (other people's jobs run on it), so the table says how busy its CPUs were during each
timed ingestion: all CPUs together (from /proc/stat), the part the ingestion used, and the part the readers
used; what is left is everybody else.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb

# Only light imports up here: each reader is a spawned process that imports this module, and the ingestion's
# modules (pandera, and torch through the action names) would cost every reader seconds of CPU at start-up.

STATE_SQL = (
    "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM episodes), (SELECT count(*) FROM steps), "
    "(SELECT count(*) FROM observations), (SELECT count(DISTINCT ingest_id) FROM ingest_log)"
)
BATCH_FILES = 200  # the default: 300 files commit in two transactions, so a partial state exists in the file


def reader(warehouse: str, pause: float, own_session: bool, stop, started, results) -> None:
    """One reader process: query the snapshot until told to stop, then report what it saw."""
    if own_session:
        # As a person's terminal or notebook server is: with Linux's autogroup scheduling (on by default) the
        # CPUs are shared between sessions first, so this says whose CPU share a reader's queries come out of.
        os.setsid()
    from tamiyo_models.warehouse.snapshot import current_snapshot, snapshot_dir

    link = snapshot_dir(warehouse) / "current"
    states: Counter = Counter()
    errors: list[str] = []
    latencies: list[float] = []
    order: list[tuple] = []
    con, version = None, None
    while not stop.is_set():
        began = time.perf_counter()
        try:
            if os.readlink(link) != version:  # a new version was published: open it
                snapshot = current_snapshot(warehouse)
                if con is not None:
                    con.close()
                con, version = snapshot.connect(), snapshot.path.name
            state = con.execute(STATE_SQL).fetchone()
            con.execute("SELECT * FROM outcomes_by_controller").fetchall()
        except Exception as exc:  # counted and reported: the benchmark fails if there is any
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            latencies.append(time.perf_counter() - began)
            states[state] += 1
            if not order or order[-1] != state:
                order.append(state)
        if len(latencies) + len(errors) == 1:
            started.release()
        stop.wait(pause)
    if con is not None:
        con.close()
    went_back = len(order) - len(set(order))  # a state seen again after another one: time went backwards
    results.put({"states": dict(states), "errors": errors, "latencies": latencies, "went_back": went_back})


@dataclass
class Case:
    seconds: float
    publish_seconds: float
    busy_cpus: float  # during the timed ingestion, in CPUs (2.0 = two CPUs fully busy): the whole machine
    ingest_cpus: float  # ... this process
    ingest_cpu_seconds: float  # CPU time the ingestion used: grows only if readers made the writer do more work
    reader_cpus: float  # ... the reader processes together
    load: float
    readers: list[dict]
    before_after: tuple[dict, dict] | None = None


def cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))


def prepare(work: Path, base: Path) -> Path:
    """A fresh warehouse holding the base runs, with its snapshot published."""
    from tamiyo_models.warehouse import ingest_folder

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    warehouse = work / "w.duckdb"
    ingest_folder(base, warehouse)
    return warehouse


def timed_ingest(warehouse: Path, landing: Path) -> tuple[float, float]:
    """What `tamiyo ingest` does (store.writing: ingest, then publish), with the publication timed apart."""
    from tamiyo_models.warehouse import IngestConfig, discover, ingest_files, publish_snapshot
    from tamiyo_models.warehouse.store import open_warehouse

    began = time.perf_counter()
    with open_warehouse(warehouse) as con:
        summary = ingest_files(con, discover(landing), IngestConfig(batch_files=BATCH_FILES))
        published = time.perf_counter()
        publish_snapshot(con, warehouse)
    ended = time.perf_counter()
    assert summary.count("loaded") == len(summary.files), summary.line()
    return ended - began, ended - published


def run_case(warehouse: Path, landing: Path, readers: int, pause: float, own_session: bool, timeout: float) -> Case:
    context = multiprocessing.get_context("spawn")
    stop, started, results = context.Event(), context.Semaphore(0), context.Queue()
    procs = [context.Process(target=reader, args=(str(warehouse), pause, own_session, stop, started, results))
             for _ in range(readers)]  # fmt: skip
    try:
        for p in procs:
            p.start()
        for _ in procs:  # every reader has answered once before the clock starts
            if not started.acquire(timeout=timeout):
                raise RuntimeError("a reader did not start")
        busy0, total0 = cpu_ticks()
        own0, readers0 = process_ticks(os.getpid()), sum(process_ticks(p.pid) for p in procs)
        wall0 = time.perf_counter()
        seconds, publish = timed_ingest(warehouse, landing)
        wall = time.perf_counter() - wall0
        busy1, total1 = cpu_ticks()
        own, readers_ticks = process_ticks(os.getpid()) - own0, sum(process_ticks(p.pid) for p in procs) - readers0
        load = os.getloadavg()[0]
        time.sleep(pause * 3 + 0.2)  # let every reader see the published state at least once
        stop.set()
        reports = [results.get(timeout=timeout) for _ in procs]
        for p in procs:
            p.join(timeout=timeout)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    cpus = os.cpu_count() or 1  # /proc/stat counts every CPU of the machine
    hz = os.sysconf("SC_CLK_TCK")
    return Case(
        seconds=seconds,
        publish_seconds=publish,
        busy_cpus=cpus * (busy1 - busy0) / max(1, total1 - total0),
        ingest_cpus=own / hz / wall,
        ingest_cpu_seconds=own / hz,
        reader_cpus=readers_ticks / hz / wall,
        load=load,
        readers=reports,
    )


def bench(args) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ingest import BenchConfig, landing_folder, seed_runs

    from tamiyo_models.warehouse import current_snapshot

    config = BenchConfig(runs=args.runs, work=args.work)
    seeds = seed_runs(config)
    landing, steps = landing_folder(config, seeds)
    base = args.work / "base"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir()
    for path in seeds:
        shutil.copy(path, base / path.name)
    scratch = Path(tempfile.mkdtemp(prefix="bench_snapshot_", dir=args.work))
    load_before = os.getloadavg()
    deadline = time.monotonic() + args.timeout
    results: dict[str, list[Case]] = {"no readers": [], f"{args.readers} readers": []}
    ratios = []
    try:
        for repeat in range(args.repeats):
            if time.monotonic() > deadline:
                print(f"stopping after {repeat} repeats: --timeout {args.timeout:.0f} s reached")
                break
            # alternate which case goes first, so a trend in the machine's load hits both alike
            order = [0, args.readers] if repeat % 2 == 0 else [args.readers, 0]
            pair = {}
            for readers in order:
                warehouse = prepare(scratch / "wh", base)
                before = current_snapshot(warehouse).counts
                own_session = args.sessions == "own"
                case = run_case(warehouse, landing, readers, args.pause_ms / 1000, own_session, timeout=120)
                after = current_snapshot(warehouse).counts
                case.before_after = (before, after)
                pair[readers] = case
                results["no readers" if readers == 0 else f"{args.readers} readers"].append(case)
            ratios.append(pair[args.readers].seconds / pair[0].seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report(args, config.epochs, steps, len(seeds), load_before, results, ratios)
    with_readers = results[f"{args.readers} readers"]
    return 0 if verdict(with_readers, results["no readers"]) else 1


def _median(values) -> float:
    return statistics.median(list(values))


def _listing(values, digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _state(counts: dict) -> tuple:
    return counts["runs"], counts["episodes"], counts["steps"], counts["observations"]


def report(args, epochs: int, steps: int, base_runs: int, load_before, results: dict, ratios: list[float]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ingest import _cpu_model

    commits = -(-args.runs // BATCH_FILES)
    sessions = "each in its own session (like separate terminals)" if args.sessions == "own" else (
        "children in the ingestion's session")  # fmt: skip
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    autogroup = "on" if autogroup.exists() and autogroup.read_text().strip() == "1" else "off"
    print(f"machine: {platform.node()} {platform.machine()} {_cpu_model()}, {len(os.sched_getaffinity(0))} usable "
          f"CPUs (shared with other users' jobs), python {platform.python_version()}, duckdb {duckdb.__version__}")
    print(f"data: {args.runs} runs x {epochs} steps = {steps} steps ingested into a warehouse holding {base_runs} "
          f"runs, {BATCH_FILES} files per transaction ({commits} commit{'s' if commits > 1 else ''}); snapshot "
          "published after")
    print(f"readers: {args.readers} processes, each round: consistency query + outcomes_by_controller view, then "
          f"{args.pause_ms:.0f} ms pause; reopen when `current` moves; {sessions}")
    print(f"scheduler: autogroup {autogroup}; load average before: {_listing(load_before, 1)}, "
          f"after: {_listing(os.getloadavg(), 1)}")
    print()
    header = (f"{'case':<11} | {'ingest+publish median (each repeat)':<44} | {'publish':>7} | {'ingest CPU':>10} | "
              f"{'CPUs busy':>9} | {'ingest':>6} | {'readers':>7} | {'load 1m':>7}")
    print(header)
    print("-" * len(header))
    for name, cases in results.items():
        seconds = [c.seconds for c in cases]
        timing = f"{_median(seconds):6.2f} s ({_listing(seconds)})"
        print(f"{name:<11} | {timing:<44} | {_median(c.publish_seconds for c in cases):5.2f} s | "
              f"{_median(c.ingest_cpu_seconds for c in cases):8.2f} s | {_median(c.busy_cpus for c in cases):9.2f} | "
              f"{_median(c.ingest_cpus for c in cases):6.2f} | {_median(c.reader_cpus for c in cases):7.2f} | "
              f"{_median(c.load for c in cases):7.2f}")
    print("(CPUs busy: the whole machine during the timed ingestion, in CPUs; ingest, readers: the shares of it "
          "that the ingestion and the readers used; the rest is other users' jobs)")
    print()
    alone, with_readers = results["no readers"], results[f"{args.readers} readers"]
    cpu_ratio = _median(c.ingest_cpu_seconds for c in with_readers) / _median(c.ingest_cpu_seconds for c in alone)
    ratio = _median(c.seconds for c in with_readers) / _median(c.seconds for c in alone)
    print(f"ingestion CPU time, {args.readers} readers / none: {cpu_ratio:.3f} (the work the writer does; wall "
          "time adds the waiting for a CPU on a shared machine)")
    print(f"ratio of medians ({args.readers} readers / none): {ratio:.3f} (per repeat: {_listing(ratios, 3)}; "
          f"median {_median(ratios):.3f}); target <= 1.20: {'met' if ratio <= 1.2 else 'NOT met'}")

    reports = [r for case in with_readers for r in case.readers]
    errors = [e for r in reports for e in r["errors"]]
    latencies = sorted(x for r in reports for x in r["latencies"]) or [float("nan")]
    seen: Counter = Counter()
    for r in reports:
        for state, n in r["states"].items():
            seen[tuple(state)] += n
    print(f"reader queries: {sum(len(r['latencies']) for r in reports)} answered, {len(errors)} errors"
          f"{' (' + errors[0] + ')' if errors else ''}; round trip median {1000 * _median(latencies):.1f} ms, "
          f"p99 {1000 * latencies[int(0.99 * (len(latencies) - 1))]:.1f} ms")
    print("states seen (runs, episodes, steps, observations, ingestions): "
          + ", ".join(f"{s}: {n}" for s, n in sorted(seen.items())))
    partial, went_back = _partial_states(with_readers), sum(r["went_back"] for r in reports)
    print(f"partial ingestions seen: {partial}; readers that saw an older state after a newer one: {went_back}")


def _partial_states(cases: list[Case]) -> int:
    """Reader answers that were neither the state before the ingestion nor the state after it."""
    allowed = {_state(c.before_after[0]) for c in cases} | {_state(c.before_after[1]) for c in cases}
    return sum(n for c in cases for r in c.readers for s, n in r["states"].items() if tuple(s[:4]) not in allowed)


def verdict(with_readers: list[Case], alone: list[Case]) -> bool:
    reports = [r for case in with_readers for r in case.readers]
    ratio = _median(c.seconds for c in with_readers) / _median(c.seconds for c in alone)
    ok = not any(r["errors"] for r in reports) and not _partial_states(with_readers)
    ok = ok and not any(r["went_back"] for r in reports) and ratio <= 1.2
    print(f"result: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pause-ms", type=float, default=1000.0, help="pause between a reader's rounds")
    parser.add_argument(
        "--sessions", choices=("own", "writer"), default="own",
        help="own: each reader in a session of its own, as people's terminals are (default); writer: readers "
        "are children in the ingestion's session, so they share its CPU share",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="start no new repeat after this many seconds")
    parser.add_argument("--work", type=Path, default=Path("var/bench_ingest"))
    args = parser.parse_args(argv)
    if args.readers < 1:
        parser.error("--readers must be at least 1")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
