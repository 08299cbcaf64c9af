"""Run one vine iteration's parent episodes and their branches, and nothing else, on any machine with more cores.

vine's episodes are fixed by its configuration (online_rl/vine.py's `iteration_configs`: the policy file's path,
the training seed, the iteration), so they can be run first elsewhere and copied into the raw folder `tamiyo train
--algorithm vine` records to; with the same arguments it then reads them back instead of running them and only
learns. Only whole families (a parent and every branch it forked) are listed in `--done`, so a run stopped
early (Ctrl-C, SIGINT from `timeout -s INT`) leaves no half-measured fork behind to be taken as final.

    .venv/bin/python experiments/vine_episodes.py --parent POLICY.pt --regime fm-short --episodes 24 --forks 1 \
        --fork-min-step 1 --fork-max-step 1 --val-subsample 10000 --seed 3 --workers 16 --raw /tmp/raw --done /tmp/done.txt

The policy path is part of every run id: give it exactly as `tamiyo train` will see it (an absolute path). So are
the sampled hyperparameters, and another numpy build can round one in its last bit (seen: 1 configuration of 24
between the development VM and the H200 machine, a learning rate 0.055575356957106685 vs ...668): `tamiyo train`
then runs that family itself, and the stray one is best moved out of the raw folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", required=True, help="the acting policy file, as an absolute path (it names the runs)")
    parser.add_argument("--spec", default="arena")
    parser.add_argument("--regime", default=None)
    parser.add_argument("--episodes", type=int, default=16, help="parent episodes (one iteration's)")
    parser.add_argument("--iteration", type=int, default=1, help="which iteration's parents (1 = the first)")
    parser.add_argument("--forks", type=int, default=2)
    parser.add_argument("--fork-min-step", type=int, default=2)
    parser.add_argument("--fork-max-step", type=int, default=None)
    parser.add_argument("--val-subsample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--raw", required=True, help="folder the runs are written to")
    parser.add_argument("--done", required=True, help="file listing the run id of every finished family, one per line")
    args = parser.parse_args()
    if not Path(args.parent).is_absolute():
        parser.error(f"--parent {args.parent}: give the absolute path `tamiyo train` resolves it to (it names the runs)")
    from tamiyo_models.episodes.generation import GenerationSpec, generate
    from tamiyo_models.online_rl.vine import VineConfig, iteration_configs

    config = VineConfig(episodes_per_iteration=args.episodes, forks_per_episode=args.forks, min_step=args.fork_min_step,
                        max_step=args.fork_max_step, val_subsample=args.val_subsample, seed=args.seed)  # fmt: skip
    configs = iteration_configs(GenerationSpec.load(args.spec), args.regime, config, args.iteration - 1, Path(args.parent))
    done, started = Path(args.done), time.perf_counter()
    done.parent.mkdir(parents=True, exist_ok=True)

    def finished(result) -> None:
        if result.status == "complete":
            with done.open("a") as f:
                f.write(result.run_id + "\n")
        print(f"{result.run_id} {result.status}, {result.branches} branch runs, {time.perf_counter() - started:.0f} s", flush=True)

    try:
        generate(configs, args.raw, workers=args.workers, branching=config.branching(), reuse_existing=True, on_result=finished)
    except KeyboardInterrupt:
        print("stopped: the families listed in --done are whole", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
