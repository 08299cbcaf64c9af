"""Transfer: a policy judged on a task it never trained on.

- Zero-shot: the policy, unchanged, paired with the heuristic on the task's held-out configurations (test
  split), with the null control's spread and, optionally, a rerun on fresh data orders. The target of
  docs/curriculum.md: not worse than the heuristic by more than 0.25 pp (the interval's lower end above -0.25).
- Fine-tuning sample efficiency: online RL on the new task from a given initial policy, in rounds, until the
  margin's interval clears the same bar; the episodes it took (or "not within the budget"). Run it from the
  curriculum policy and from another start (Phase 1, or a fresh actor) to see what the curriculum buys.

A task is a curriculum transfer entry, a stage, or any dataset (`imagefolder:PATH`, for instance) dropped into
a generation spec by `dataset_task`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .spec import CurriculumSpec, PromotionRule, Stage

ZERO_SHOT_BAR = -0.25  # pp: "not worse than the heuristic by more than 0.25 pp"


@dataclass
class TransferResult:
    task: str
    policy: str
    pairs: int = 0
    margin: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    noise_floor: float = float("nan")
    fresh: str = ""  # the fresh-order rerun's interval, when run
    wins: int = 0
    ties: int = 0
    losses: int = 0
    skipped: str = ""  # why the task could not run here

    @property
    def meets_bar(self) -> bool | None:
        return None if self.skipped or self.pairs == 0 else self.low > ZERO_SHOT_BAR

    def line(self) -> str:
        if self.skipped:
            return f"{self.task}: skipped: {self.skipped}"
        verdict = {True: "meets", False: "misses", None: "-"}[self.meets_bar]
        fresh = f"; fresh orders {self.fresh}" if self.fresh else ""
        return (f"{self.task}: {self.margin:+.2f} [{self.low:+.2f}, {self.high:+.2f}] pp vs heuristic over {self.pairs} "
                f"pairs, W/T/L {self.wins}/{self.ties}/{self.losses}, null {self.noise_floor:.2f} pp{fresh}; "
                f"{verdict} the zero-shot bar (low end > {ZERO_SHOT_BAR:+.2f})")  # fmt: skip


def dataset_task(dataset: str, *, name: str | None = None, max_epochs: int = 20, widths=(8, 16, 32), eval_configs: int = 16,
                 eval_batch_seed: int = 20_270_201, image_size: int = 32) -> Stage:  # fmt: skip
    """A transfer task for any dataset name (`imagefolder:PATH`, `cifar10`, ...) with sensible host settings."""
    spec = {"base": {"max_epochs": max_epochs, "batch_size": 32, "lr_schedule": "cosine", "learning_rate": 0.05,
                     "dataset": {"name": dataset, "image_size": image_size}, "host": {"widths": list(widths)}}}  # fmt: skip
    return Stage(name=name or dataset.replace("imagefolder:", "imagefolder-").replace("/", "_").strip("_"), spec=spec,
                 eval_configs=eval_configs, eval_batch_seed=eval_batch_seed)  # fmt: skip


def zero_shot(policy_path, task: Stage, out_dir, *, workers: int = 2, replicate: int = 0, log=print) -> TransferResult:
    from ..evaluation import evaluate_live_many

    result = TransferResult(task.name, str(policy_path))
    missing = task.unavailable()
    if missing:
        result.skipped = missing
        log(result.line())
        return result
    live = evaluate_live_many({"policy": policy_path}, task.eval_configs_list(), Path(out_dir), workers=workers, replicate=replicate)
    r = live["policy"]
    result.pairs, result.margin, result.low, result.high = len(r.pairs), r.mean_difference, r.ci_low, r.ci_high
    result.noise_floor, result.wins, result.ties, result.losses = r.noise_floor, r.wins, r.ties, r.losses
    result.fresh = str(r.fresh) if r.fresh.n else ""  # n = 0: not replicated
    log(result.line())
    return result


def fine_tune_efficiency(task: Stage, initial_policy: str | None, out_dir, *, budget_episodes: int = 96, episodes_per_round: int = 16,
                         workers: int = 2, record_dir: str | None = None, seed: int = 0, live_dir=None, log=print) -> dict:  # fmt: skip
    """Episodes of online RL on `task`, starting from `initial_policy`, until the margin's interval has its low
    end above the zero-shot bar: {"episodes_to_bar": N or None, "rounds": [...]} (None: not within the budget)."""
    from .run import CurriculumRunConfig, run_curriculum

    stage = dataclasses.replace(task, episodes_per_round=episodes_per_round,
                                promotion=PromotionRule(min_margin_low=ZERO_SHOT_BAR, max_episodes=budget_episodes))  # fmt: skip
    single = CurriculumSpec(name=f"fine-tune-{task.name}", stages=(stage,))
    # live_dir: share the heuristic's episodes on the task's held-out configurations with the zero-shot run
    config = CurriculumRunConfig(order="manual", budget_episodes=budget_episodes, initial_policy=initial_policy, workers=workers,
                                 record_dir=record_dir, seed=seed, live_dir=str(live_dir) if live_dir else None)  # fmt: skip
    run = run_curriculum(single, config, out_dir, log=log)
    reached = next((r.episodes_total for r in run.rounds if r.low > ZERO_SHOT_BAR), None)
    return {"task": task.name, "initial_policy": initial_policy or "fresh", "episodes_to_bar": reached,
            "budget_episodes": budget_episodes, "rounds": run.to_dict()["rounds"]}  # fmt: skip


def write_transfer_report(results: list[TransferResult], fine_tuning: list[dict], path) -> Path:
    """Markdown: the zero-shot table and, when run, the fine-tuning sample efficiency."""
    path = Path(path)
    intro = (f"Zero-shot: the policy unchanged on tasks it never trained on, paired with the heuristic (test split). "
             f"Bar: the interval's low end above {ZERO_SHOT_BAR:+.2f} pp.")  # fmt: skip
    lines = ["# Transfer report", "", intro, "",
             "| task | pairs | margin vs heuristic (pp) | 95% CI | W/T/L | null RMS | fresh orders | bar |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        if r.skipped:
            lines.append(f"| {r.task} | - | skipped: {r.skipped} | | | | | |")
            continue
        bar = {True: "met", False: "missed", None: "-"}[r.meets_bar]
        lines.append(f"| {r.task} | {r.pairs} | {r.margin:+.2f} | [{r.low:+.2f}, {r.high:+.2f}] | {r.wins}/{r.ties}/{r.losses} | "
                     f"{r.noise_floor:.2f} | {r.fresh or '-'} | {bar} |")  # fmt: skip
    if fine_tuning:
        lines += ["", "## Fine-tuning sample efficiency", "",
                  "| task | initial policy | episodes to the bar | budget |", "|---|---|---|---|"]  # fmt: skip
        for f in fine_tuning:
            reached = f["episodes_to_bar"] if f["episodes_to_bar"] is not None else "not within the budget"
            lines.append(f"| {f['task']} | {f['initial_policy']} | {reached} | {f['budget_episodes']} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"zero_shot": [dataclasses.asdict(r) for r in results],
                                                     "fine_tuning": fine_tuning}, indent=1, default=float))  # fmt: skip
    return path
