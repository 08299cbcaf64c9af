"""The main command: materialize the whole asset graph on the embedded default data, from whatever state the
project is in (an empty one included), with the project's Dagster instance, then say where to look.

    python -m pipelines.run_all [--spec nightly] [--episodes 8] [--workers 2] [--seed N]

`make run` calls this. The runs appear in the Dagster UI (`make ui`) like any other run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="nightly", help="generation spec: nightly, exploration, imitation, smoke or a file")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=10,
                        help="live evaluation pairs per candidate (Phase 1 and each Phase 2 variant; the nightly job's default is 20)")
    parser.add_argument("--seed", type=int, default=-1, help="batch seed (default: the night's date, YYYYMMDD)")
    args = parser.parse_args(argv)

    os.chdir(ROOT)  # dagster.yaml and every default path are relative to the repository root
    os.environ.setdefault("DAGSTER_HOME", str(ROOT))
    (ROOT / "var").mkdir(exist_ok=True)

    import dagster as dg

    from pipelines.definitions import ALL_ASSETS, resources

    started = time.perf_counter()
    run_config = {"ops": {
        "generated_runs": {"config": {"spec": args.spec, "episodes": args.episodes, "workers": args.workers, "seed": args.seed}},
        "policy_evaluation_report": {"config": {"workers": args.workers, "episodes": args.pairs}},
    }}  # fmt: skip
    night = time.strftime("%Y-%m-%d", time.gmtime())  # tonight's generation partition
    with dg.DagsterInstance.get() as instance:
        nightly = [a for a in ALL_ASSETS if a.key != dg.AssetKey("headroom_report")]  # the study runs on demand
        result = dg.materialize(nightly, instance=instance, resources=resources(), run_config=run_config,
                                partition_key=night, raise_on_error=False)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    if not result.success:
        print(f"\nthe run failed after {minutes:.1f} min; see the log above and the run {result.run_id} in the UI (make ui)")
        return 1
    res = resources()
    print(f"\ndone in {minutes:.1f} min (Dagster run {result.run_id}). Where to look:")
    print(f"  raw runs           {res['raw_runs'].path}/")
    print(f"  warehouse          {res['warehouse'].path}   (tamiyo sql --warehouse {res['warehouse'].path} \"SELECT * FROM outcomes_by_controller\")")
    for path in sorted((ROOT / "var" / "reports").rglob("*.html")):
        print(f"  report             {path.relative_to(ROOT)}")
    mlflow = res["mlflow"]
    where = mlflow.tracking_uri or f"{mlflow.root}/ (sqlite backend + artifacts)"
    print(f"  MLflow             {where}   (make ui starts its UI too)")
    print("  Dagster UI         make ui   (http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
