"""A small warehouse of arena states to distil a fixed schedule's student on, when the headroom study's
warehouse (experiments/phase3_arena.py's var/arena/warehouse.duckdb, hours of episodes) is not on this machine.

The student of `fixed:<blueprint>@<epoch>` (online_rl/distil.py's ScheduleTeacher) must act like the schedule on
the states the learner will meet: the untrained host (wait), a host with no seed yet (graft), a seed on its way
(advance when legal) and after a cull (wait). So the episodes mix the schedule itself, the heuristic, another
blueprint and time, and random actions, on training batch seeds that no evaluation uses.

    .venv/bin/python experiments/schedule_states.py [--episodes 16] [--out var/schedule-states]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

CONTROLLERS = ("fixed:conv_heavy@1", "heuristic", "fixed:conv_light@4", "random")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16, help="episodes, the controllers taking turns (default 16)")
    parser.add_argument("--batch-seed", type=int, default=7_100_000, help="a training batch seed (default 7100000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="var/schedule-states")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from tamiyo_models.controllers import reference_controller
    from tamiyo_models.episodes.generation import GenerationSpec, generate
    from tamiyo_models.warehouse import ingest_folder

    out = Path(args.out)
    configs = GenerationSpec.load("arena").sample(args.episodes, args.batch_seed)
    configs = [dataclasses.replace(c, controller=reference_controller(CONTROLLERS[i % len(CONTROLLERS)])) for i, c in enumerate(configs)]
    results = generate(configs, out / "raw", workers=args.workers, reuse_existing=True,
                       on_result=lambda r: print(r.summary_line(), flush=True))  # fmt: skip
    failed = [r for r in results if r.status != "complete"]
    print(ingest_folder(out / "raw", out / "warehouse.duckdb").line())
    print(f"warehouse: {out / 'warehouse.duckdb'} ({len(results) - len(failed)} episodes, {len(failed)} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
