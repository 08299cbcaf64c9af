"""Transfer: a policy judged on a task it never trained on.

- Zero-shot: the policy, unchanged, paired with the heuristic on the task's held-out configurations (test
  split), with the null control's spread and, optionally, a rerun on fresh data orders. The target of
  docs/curriculum.md: not worse than the heuristic by more than 0.25 pp (the interval's lower end above -0.25).
- Head to head: the same design with a second controller beside it (the best fixed schedule of the source
  tasks, the nightly champion): the policy minus that controller, with fresh orders and that controller's own
  reruns as the null, and the same difference on the configurations where the two act differently: where they
  take the same actions the episodes are the same and the difference is exactly 0, so this is the effect's size
  where the policy's own decisions make it (the overall mean times pairs over that count, not new evidence).
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

import numpy as np

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


@dataclass
class HeadToHead(TransferResult):
    """The transferred policy against another controller on a task's held-out configurations (test split): the
    margin is policy minus `against`, the null that controller rerun on fresh orders."""

    against: str = ""
    differ: int = 0  # configurations where the two took different actions
    differ_margin: float = float("nan")
    differ_low: float = float("nan")
    differ_high: float = float("nan")

    @property
    def verdict(self) -> str:
        if self.skipped or self.pairs == 0:
            return "-"
        if self.low > 0:
            return "beats it"
        return "not worse (low end > -0.25)" if self.low > ZERO_SHOT_BAR else "worse"

    def line(self) -> str:
        if self.skipped:
            return f"{self.task}: {self.policy} vs {self.against}: skipped: {self.skipped}"
        fresh = f"; fresh orders {self.fresh}" if self.fresh else ""
        where = (f"; where they act differently ({self.differ} of {self.pairs}) {self.differ_margin:+.2f} "
                 f"[{self.differ_low:+.2f}, {self.differ_high:+.2f}]" if self.differ >= 2 else
                 f"; they act differently on {self.differ} of {self.pairs}")  # fmt: skip
        return (f"{self.task}: {self.policy} - {self.against} {self.margin:+.2f} [{self.low:+.2f}, {self.high:+.2f}] pp over "
                f"{self.pairs} pairs, W/T/L {self.wins}/{self.ties}/{self.losses}, null {self.noise_floor:.2f}{fresh}{where}: "
                f"{self.verdict}")  # fmt: skip


def head_to_head(policy, against, task: Stage, out_dir, *, against_label: str, workers: int = 2, replicate: int = 0,
                 label: str | None = None, log=print) -> HeadToHead:  # fmt: skip
    """`policy` (a policy file or a ControllerConfig) against the controller `against` on the task's held-out
    configurations, in the design zero_shot runs in `out_dir` (its episodes are read back; only `against`'s run)."""
    from ..common.stats import mean_ci, noise_floor, win_tie_loss
    from ..controllers import ControllerConfig
    from ..evaluation.live import REFERENCE, policy_controller
    from ..evaluation.paired import run_paired
    from ..world.rawrun import read_raw_run

    result = HeadToHead(task.name, label or str(policy), against=against_label)
    missing = task.unavailable()
    if missing:
        result.skipped = missing
        log(result.line())
        return result
    subject = policy if isinstance(policy, ControllerConfig) else policy_controller(policy)
    arms = {REFERENCE: ControllerConfig(kind="heuristic"), "policy": subject, "against": against}
    # The other controller always reruns on at least one fresh order: its own reruns are the head to head's null.
    runs = run_paired(task.eval_configs_list(), arms, Path(out_dir), reference=REFERENCE, null_orders=1,
                      replicate=max(1, replicate), replicate_arms=["against", "policy"] if replicate else ["against"],
                      workers=workers)  # fmt: skip
    view = dataclasses.replace(runs, reference="against")
    indices = list(range(len(runs.configs)))
    original, fresh = view.differences("policy", indices), view.fresh_differences("policy", indices)
    ok = np.isfinite(original)
    if ok.sum() < 2:
        result.skipped = f"{int(ok.sum())} complete pair(s); failures: {'; '.join(runs.failures()[:3])}"
        log(result.line())
        return result
    interval = mean_ci(original[ok])
    result.pairs, result.margin, result.low, result.high = int(ok.sum()), interval.mean, interval.low, interval.high
    result.wins, result.ties, result.losses = win_tie_loss(original[ok])
    result.noise_floor = noise_floor(view.null_differences(indices))
    if np.isfinite(fresh).sum() >= 2:
        result.fresh = str(mean_ci(fresh[np.isfinite(fresh)]))
    actions = lambda arm, i: [s["action"]["fine"] for s in read_raw_run(runs.outcomes[(i, arm, 0)].result.path).steps]  # noqa: E731
    differ = [i for i in indices if ok[i] and actions("policy", i) != actions("against", i)]
    result.differ = len(differ)
    if len(differ) >= 2:
        where = mean_ci(original[differ])
        result.differ_margin, result.differ_low, result.differ_high = where.mean, where.low, where.high
    log(result.line())
    return result


def dataset_task(dataset: str, *, name: str | None = None, max_epochs: int = 20, widths=(8, 16, 32), eval_configs: int = 16,
                 eval_batch_seed: int = 20_270_201, image_size: int = 32) -> Stage:  # fmt: skip
    """A transfer task for any dataset name (`imagefolder:PATH`, `cifar10`, ...) with sensible host settings."""
    spec = {"base": {"max_epochs": max_epochs, "batch_size": 32, "lr_schedule": "cosine", "learning_rate": 0.05,
                     "dataset": {"name": dataset, "image_size": image_size}, "host": {"widths": list(widths)}}}  # fmt: skip
    return Stage(name=name or dataset.replace("imagefolder:", "imagefolder-").replace("/", "_").strip("_"), spec=spec,
                 eval_configs=eval_configs, eval_batch_seed=eval_batch_seed)  # fmt: skip


def zero_shot(policy, task: Stage, out_dir, *, workers: int = 2, replicate: int = 0, label: str | None = None,
              log=print) -> TransferResult:  # fmt: skip
    """`policy`: a policy file, or any controller (a ControllerConfig: a fixed schedule, the nightly champion)."""
    from ..controllers import ControllerConfig
    from ..evaluation import evaluate_live_many

    result = TransferResult(task.name, label or str(policy))
    missing = task.unavailable()
    if missing:
        result.skipped = missing
        log(result.line())
        return result
    controller = isinstance(policy, ControllerConfig)
    live = evaluate_live_many({} if controller else {"policy": policy}, task.eval_configs_list(), Path(out_dir), workers=workers,
                              replicate=replicate, references={"policy": policy} if controller else None)  # fmt: skip
    r = live["policy"]
    result.pairs, result.margin, result.low, result.high = len(r.pairs), r.mean_difference, r.ci_low, r.ci_high
    result.noise_floor, result.wins, result.ties, result.losses = r.noise_floor, r.wins, r.ties, r.losses
    result.fresh = str(r.fresh) if r.fresh.n else ""  # n = 0: not replicated
    log(result.line())
    return result


def fine_tune_efficiency(task: Stage, initial_policy: str | None, out_dir, *, budget_episodes: int = 96, episodes_per_round: int = 16,
                         workers: int = 2, record_dir: str | None = None, seed: int = 0, live_dir=None, target: str | None = None,
                         log=print) -> dict:  # fmt: skip
    """Episodes of online RL on `task`, starting from `initial_policy`, measured after every round (paired margin
    over the heuristic on the task's held-out configurations): {"episodes_to_bar": N or None, "rounds": [...]}, N
    the first round whose interval clears the zero-shot bar (None: not within the budget).

    `target`: a reference controller (the best fixed schedule, say) run on the same held-out configurations: its
    own margin over the heuristic is the score to reach, and "episodes_to_target" the first round whose mean
    margin is at least that (the curve and the line are what the report plots)."""
    from .run import CurriculumRunConfig, run_curriculum

    # The target first: a name it cannot run under fails before any training, not after it.
    margin = target_margin(task, target, Path(live_dir) if live_dir else Path(out_dir) / "live", workers=workers) if target else None
    stage = dataclasses.replace(task, episodes_per_round=episodes_per_round,
                                promotion=PromotionRule(min_margin_low=ZERO_SHOT_BAR, max_episodes=budget_episodes))  # fmt: skip
    single = CurriculumSpec(name=f"fine-tune-{task.name}", stages=(stage,))
    # live_dir: share the heuristic's episodes on the task's held-out configurations with the zero-shot run
    config = CurriculumRunConfig(order="manual", budget_episodes=budget_episodes, initial_policy=initial_policy, workers=workers,
                                 record_dir=record_dir, seed=seed, live_dir=str(live_dir) if live_dir else None)  # fmt: skip
    run = run_curriculum(single, config, out_dir, log=log)
    reached = next((r.episodes_total for r in run.rounds if r.low > ZERO_SHOT_BAR), None)
    result = {"task": task.name, "initial_policy": initial_policy or "fresh", "episodes_to_bar": reached,
              "budget_episodes": budget_episodes, "rounds": run.to_dict()["rounds"]}  # fmt: skip
    if target:
        result.update(target=target, target_margin=margin,
                      episodes_to_target=next((r.episodes_total for r in run.rounds if r.margin >= margin), None))  # fmt: skip
        log(f"fine-tuning {task.name} from {result['initial_policy']}: {target} is {margin:+.2f} pp over the heuristic; "
            f"reached after {result['episodes_to_target'] or 'more than ' + str(budget_episodes)} episodes")  # fmt: skip
    return result


def target_controller(target: str):
    """The ControllerConfig a fine-tuning target names; ValueError for the heuristic (every margin is measured
    against it, so its own is 0) or a name no controller has."""
    from ..controllers import reference_controller
    from ..evaluation.live import REFERENCE

    if target == REFERENCE:
        raise ValueError(f"the {REFERENCE} is what every margin is measured against (its own is 0); name another controller")
    return reference_controller(target)


def target_margin(task: Stage, target: str, live_dir: Path, *, workers: int = 2) -> float:
    """A reference controller's mean paired margin over the heuristic (test split, pp) on the task's held-out
    configurations, its episodes kept beside the heuristic's (which it reuses) in `live_dir/<task>`."""
    from ..evaluation import evaluate_live_many

    live = evaluate_live_many({}, task.eval_configs_list(), live_dir / task.name, workers=workers,
                              references={target: target_controller(target)})  # fmt: skip
    return float(live[target].mean_difference)


def plot_fine_tuning(fine_tuning: list[dict], path) -> Path | None:
    """One panel per task: each start's margin over the heuristic after every round (its 95% interval shaded),
    the target's margin as a line: the sample-efficiency curve."""
    if not fine_tuning:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(f["task"] for f in fine_tuning))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        runs = [f for f in fine_tuning if f["task"] == task]
        for f in runs:
            xs = [r["episodes_total"] for r in f["rounds"]]
            line = ax.plot(xs, [r["margin"] for r in f["rounds"]], "o-", label=f"from {Path(f['initial_policy']).name}")
            ax.fill_between(xs, [r["low"] for r in f["rounds"]], [r["high"] for r in f["rounds"]], alpha=0.15,
                            color=line[0].get_color())  # fmt: skip
        ax.axhline(0.0, color="grey", linewidth=0.8, label="heuristic")
        target = next((f for f in runs if "target" in f), None)
        if target:
            ax.axhline(target["target_margin"], color="black", linestyle="--", label=target["target"])
        ax.set(title=task, xlabel="training episodes on the task", ylabel="margin over the heuristic (pp, test)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_transfer_report(results: list[TransferResult], fine_tuning: list[dict], path, versus: list[HeadToHead] = ()) -> Path:
    """Markdown: the zero-shot table, the head-to-head table and, when run, the fine-tuning sample efficiency."""
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
    if versus:
        lines += ["", "## Head to head", "",
                  "The policy minus another controller on the same configurations and data orders (test split); the null is "
                  "that controller rerun on fresh orders. \"Where they act differently\": the configurations on which the two "
                  "took a different action at some step. Where they act alike the episodes are the same and the difference "
                  "is exactly 0, so the difference there is the effect's size where the policy's own decisions make it "
                  "(not new evidence: the overall mean times pairs over that count).", "",
                  "| task | policy - controller | pairs | difference (pp) | 95% CI | W/T/L | null RMS | fresh orders | act differently | difference there | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for v in versus:
            if v.skipped:
                lines.append(f"| {v.task} | {v.policy} - {v.against} | - | skipped: {v.skipped} | | | | | | | |")
                continue
            there = f"{v.differ_margin:+.2f} [{v.differ_low:+.2f}, {v.differ_high:+.2f}]" if v.differ >= 2 else "-"
            lines.append(f"| {v.task} | {v.policy} - {v.against} | {v.pairs} | {v.margin:+.2f} | [{v.low:+.2f}, {v.high:+.2f}] | "
                         f"{v.wins}/{v.ties}/{v.losses} | {v.noise_floor:.2f} | {v.fresh or '-'} | {v.differ} | {there} | {v.verdict} |")  # fmt: skip
    if fine_tuning:
        lines += ["", "## Fine-tuning sample efficiency", "",
                  "Online RL on each task from each start, measured after every round. Episodes to the bar: the first "
                  "round whose interval clears the zero-shot bar; to the target: the first round whose mean margin "
                  "reaches the target controller's own margin over the heuristic on the same configurations.", "",
                  "| task | initial policy | episodes to the bar | target (its margin, pp) | episodes to the target | budget |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for f in fine_tuning:
            reached = f["episodes_to_bar"] if f["episodes_to_bar"] is not None else "not within the budget"
            target = f"{f['target']} ({f['target_margin']:+.2f})" if "target" in f else "-"
            to_target = "-" if "target" not in f else (f["episodes_to_target"] if f["episodes_to_target"] is not None else "not within the budget")
            lines.append(f"| {f['task']} | {f['initial_policy']} | {reached} | {target} | {to_target} | {f['budget_episodes']} |")
        plot = plot_fine_tuning(fine_tuning, path.with_name(path.stem + "-fine-tuning.png"))
        lines += ["", f"![sample-efficiency curves]({plot.name})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"zero_shot": [dataclasses.asdict(r) for r in results],
                                                     "head_to_head": [dataclasses.asdict(v) for v in versus],
                                                     "fine_tuning": fine_tuning}, indent=1, default=float))  # fmt: skip
    return path
