"""Generation assets: episodes trained under controllers, written as raw runs into the landing folder."""


import datetime as dt
from dataclasses import replace
from pathlib import Path

import dagster as dg

from assets.resources import RawLandingResource
from tamiyo_models.episodes.distributed import RayConfig
from tamiyo_models.episodes.generation import GenerationSpec, generate

GROUP = "generation"
# One partition per night (UTC); today's exists already (end_offset), so tonight's run can fill it.
NIGHTS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1, timezone="UTC")


class GenerationConfig(dg.Config):
    spec: str = "nightly"  # a shipped spec name (nightly, exploration, imitation, smoke) or a spec file path
    episodes: int = 8
    workers: int = 2
    seed: int = -1  # -1: the night's date (partition key) as YYYYMMDD, so each night draws new configurations
    # When the spec branches and the last coverage analysis left a holes file, fork where coverage is missing
    # (active filling of holes) instead of at generic decision points.
    holes_file: str = "var/coverage/holes.json"
    # Empty: local worker processes. Otherwise the episodes run as tasks on this Ray cluster ("auto",
    # "host:port", "ray://host:port", or "local" for a cluster inside the step's process); the landing folder
    # must then be a path every node of the cluster sees.
    ray_address: str = ""
    cpus_per_episode: float = 1.0
    gpus_per_episode: float = 0.0  # fractions share a GPU between episodes
    max_retries: int = 2  # further attempts for an episode whose Ray task failed or whose worker died


@dg.asset(
    group_name=GROUP,
    partitions_def=NIGHTS,
    # A batch is reproducible (same spec and seed -> same run files), so retrying a step that died is safe;
    # individual episodes that fail are recorded by the generator and do not fail the step.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30),
    kinds={"pytorch"},
    description="A batch of episodes sampled from a generation spec, each written as one immutable raw run "
    "file (JSONL) in the landing folder; branch runs too when the spec branches.",
)
def generated_runs(
    context: dg.AssetExecutionContext, config: GenerationConfig, raw_runs: RawLandingResource
) -> dg.MaterializeResult:
    spec = GenerationSpec.load(config.spec)
    for regime, why in spec.unavailable.items():
        context.log.warning(f"regime {regime} of spec {spec.name} skipped: {why}")
    night = context.partition_key if context.has_partition_key else dt.date.today().isoformat()
    seed = config.seed if config.seed >= 0 else int(night.replace("-", ""))
    configs = spec.sample(config.episodes, seed)
    done = []

    def report(result) -> None:
        done.append(result)
        context.log.info(f"[{len(done)}/{len(configs)}] {result.summary_line()}")

    branching = spec.branching
    if branching is not None and Path(config.holes_file).exists():
        branching = replace(branching, fork_rule="holes", holes_file=str(Path(config.holes_file).resolve()))
        context.log.info(f"branching fills the coverage holes listed in {config.holes_file}")
    ray = None
    if config.ray_address:
        ray = RayConfig(config.ray_address, config.cpus_per_episode, config.gpus_per_episode, config.max_retries)
        context.log.info(f"episodes run as Ray tasks on the cluster at {config.ray_address}")
    results = generate(
        configs, raw_runs.path, workers=config.workers, on_result=report, branching=branching,
        executor="ray" if ray else "local", ray=ray,
    )  # fmt: skip
    complete = [r for r in results if r.status == "complete"]
    failed = [r for r in results if r.status != "complete"]
    for r in failed:
        context.log.error(f"episode {r.run_id} failed: {r.error}")
    if not complete:
        raise dg.Failure(f"all {len(results)} episodes failed; first error: {failed[0].error if failed else '-'}")
    return dg.MaterializeResult(
        metadata={
            "spec": spec.name,
            "night": night,
            "seed": seed,
            "episodes_complete": len(complete),
            "episodes_failed": len(failed),
            "branch_runs": sum(r.branches for r in complete),
            "fork_rule": branching.fork_rule if branching else "none",
            "mean_final_accuracy": round(sum(r.final_val_accuracy for r in complete) / len(complete), 2),
            "seeds_fossilized": sum(r.seeds_fossilized for r in complete),
            "landing_folder": dg.MetadataValue.path(str(raw_runs.path)),
        }
    )


GENERATION_ASSETS = [generated_runs]
