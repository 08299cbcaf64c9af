"""The main command: one night of the improvement loop (the `nightly` job) on the embedded default data, from
whatever state the project is in (an empty one included), with the project's Dagster instance; then the
champion table and where to look.

    python -m pipelines.run_all [--preset mini] [--night YYYY-MM-DD] [--workers 2]
    python -m pipelines.run_all --job full_refresh [--spec nightly] [--episodes 8] [--pairs 10] [--seed N]

`make run` calls the first: a mini-night (every stage on a tiny budget of short digits episodes, a few
minutes on 2 cores). `--preset arena-v2` runs the real night on arena v2 (rent 1, two slots; about 780 episodes,
2 hours on 2 cores), `--preset arena-v2-large` the same at about 1,800, `--preset arena` the Fashion-MNIST arena's
(about 2,000). Run again on
the same night, it resumes (nothing finished is redone); with `--night` of the next day, it is the next night.
The run is listed under its job in the Dagster UI (`make ui`). The console gets one line per finished step;
everything else (Dagster's events, torch and MLflow output, the episode workers' output) goes to a log file
under var/logs/, named on the first line.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOB = "nightly"


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes and C libraries
    too) to `path`; yields a stream that still writes to the original stdout."""
    sys.stdout.flush(), sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved_out, 1), os.dup2(saved_err, 2)
            os.close(saved_out), os.close(saved_err)
            terminal.close()


def _progress(instance, run_id: str, done: threading.Event, say) -> None:
    """One line per step as it finishes, read from the run's event log while the job runs."""
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    seen, started = 0, {}
    while True:
        finished = done.wait(2.0)
        try:
            events = instance.all_logs(run_id, of_type=kinds)
        except Exception:  # noqa: BLE001 - the run may not be stored yet; try again at the next tick
            events = []
        for entry in events[seen:]:
            event = entry.dagster_event
            step = event.step_key or "?"
            if event.event_type == DagsterEventType.STEP_START:
                started[step] = entry.timestamp
                continue
            seconds = entry.timestamp - started.get(step, entry.timestamp)
            status = "done" if event.event_type == DagsterEventType.STEP_SUCCESS else "FAILED"
            say(f"  {time.strftime('%H:%M:%S')}  {step:<40} {status} ({seconds:.0f} s)")
        seen = len(events)
        if finished:
            return


def main(argv: list[str] | None = None) -> int:
    from tamiyo_models.nightly.night import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=tuple(PRESETS),
                        help="the nightly job's night: mini (the quick demo, default), arena-v2, arena-v2-large or arena (real nights)")
    parser.add_argument("--night", default=None, help="the night (partition) to run, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--spec", default="nightly", help="full_refresh: generation spec (nightly, exploration, imitation, smoke or a file)")
    parser.add_argument("--episodes", type=int, default=8, help="full_refresh: episodes to generate (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for generation and live evaluation (default 2)")
    parser.add_argument("--pairs", type=int, default=10,
                        help="full_refresh: live evaluation pairs per candidate (Phase 1 and each Phase 2 variant)")
    parser.add_argument("--seed", type=int, default=-1, help="batch seed (default: the night's date, YYYYMMDD)")
    parser.add_argument("--log", type=Path, help="the full log (default var/logs/run-<time>.log)")
    parser.add_argument("--job", default=JOB, help=f"the job to run (default {JOB}; e.g. full_refresh, ingest_raw_runs)")
    parser.add_argument("--workdir", type=Path, default=ROOT,
                        help="folder the relative default paths (var/...) are under (default: the repository root)")  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("episodes", "workers", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    os.environ.setdefault("DAGSTER_HOME", str(ROOT))  # dagster.yaml lives at the repository root
    os.chdir(args.workdir)  # every default path (var/...) is relative to it
    log_path = args.log or Path("var") / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    night = args.night or time.strftime("%Y-%m-%d", time.gmtime())  # tonight's partition
    today = time.strftime("%Y-%m-%d", time.gmtime())
    if not (len(night) == 10 and "2026-01-01" <= night <= today):
        parser.error(f"--night {night}: a night is a date YYYY-MM-DD from 2026-01-01 to today ({today}, UTC)")
    if args.job == JOB:
        print(f"make run: night {night} of the {JOB} job ({args.preset} preset, {args.workers} workers); full log: {log_path}", flush=True)
    else:
        print(f"make run: the {args.job} job, {args.episodes} episodes of spec {args.spec}; full log: {log_path}", flush=True)

    started = time.perf_counter()
    run_config = {"ops": {
        "generated_runs": {"config": {"spec": args.spec, "episodes": args.episodes, "workers": args.workers, "seed": args.seed}},
        "policy_evaluation_report": {"config": {"workers": args.workers, "episodes": args.pairs}},
    }}  # fmt: skip
    with _output_to(log_path) as terminal:
        import dagster as dg
        from dagster._core.utils import make_new_run_id

        from pipelines.automation import full_refresh_run_config
        from pipelines.definitions import defs, resources

        # full_refresh's curriculum round (same curriculum, folder and round count), at this run's workers.
        curriculum = full_refresh_run_config()["ops"]["curriculum_policy"]["config"]
        run_config["ops"]["curriculum_policy"] = {"config": {**curriculum, "workers": args.workers}}

        def say(line: str) -> None:
            print(line, file=terminal, flush=True)

        job = defs.resolve_job_def(args.job)  # by name: the run is listed under the job in the UI
        ops = {node.name for node in job.graph.nodes}
        run_config = {"ops": {op: config for op, config in run_config["ops"].items() if op in ops}}
        if "champion" in ops:  # the nightly loop: the night's settings are the `nightly` resource's
            nightly = resources(resolved=True)["nightly"]
            settings = {**json.loads(nightly.settings_json or "{}"), "workers": args.workers}
            run_config["resources"] = {"nightly": {"config": {"preset": args.preset, "settings_json": json.dumps(settings),
                                                              "nights_dir": nightly.nights_dir}}}  # fmt: skip
        run_id = make_new_run_id()
        say(f"Dagster run {run_id}")
        with dg.DagsterInstance.get() as instance:
            done = threading.Event()
            watcher = threading.Thread(target=_progress, args=(instance, run_id, done, say), daemon=True)
            watcher.start()
            try:
                partitioned = job.partitions_def is not None
                result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                                partition_key=night if partitioned else None, run_id=run_id)  # fmt: skip
            finally:
                done.set()
                watcher.join()
        res = resources(resolved=True)
    minutes = (time.perf_counter() - started) / 60
    if not result.success:
        print(f"the run failed after {minutes:.1f} min; see {log_path} and the run {run_id} in the UI (make ui)")
        return 1
    if args.job == JOB:
        _print_champion(res, night)
    print(f"done in {minutes:.1f} min (Dagster run {run_id}, job {args.job}). Where to look:")
    print(f"  full log           {log_path}")
    print(f"  raw runs           {res['raw_runs'].path}/")
    print(f"  warehouse          {res['warehouse'].path}   (tamiyo sql --warehouse {res['warehouse'].path} \"SELECT * FROM outcomes_by_controller\")")
    for path in sorted(Path("var", "reports").rglob("*.html")):
        print(f"  report             {path}")
    night_report = Path(res["nightly"].nights_dir) / night / "report.md"
    if night_report.exists():
        print(f"  night's report     {night_report}   (the champion's trend: {night_report.parent / 'trend.png'})")
        print(f"  champion history   tamiyo sql --warehouse {res['warehouse'].path} \"SELECT * FROM champion_history\"")
    mlflow = res["mlflow"]
    where = mlflow.tracking_uri or f"{mlflow.root}/ (sqlite backend + artifacts)"
    print(f"  MLflow             {where}   (make ui starts its UI too)")
    print("  Dagster UI         make ui   (http://127.0.0.1:3000)")
    return 0


def _print_champion(res, night: str) -> None:
    """The night's decision and the champion table, as the run's last word."""
    from tamiyo_models.nightly.report import champion_table, champion_trend, format_table

    warehouse = res["warehouse"].path
    table = champion_table(warehouse, night=night)
    if table.is_empty():
        return
    print(f"night {night}: champion {table['champion'][0]} -> {table['champion_after'][0]}")
    print(format_table(table))
    trend = champion_trend(warehouse)
    print("champion by night: " + ", ".join(f"{r['night']} {r['champion_after']}" for r in trend.iter_rows(named=True)))


if __name__ == "__main__":
    sys.exit(main())
